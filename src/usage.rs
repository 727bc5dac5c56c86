//! Usage per consumer and route (`GET /-/usage`): requests, refusals by
//! reason and when the consumer last called, without a metric label per
//! consumer.
//!
//! Cells live in the [`UsageTable`] (long-lived), one per consumer id and
//! route id that the consumer has called: memory is bounded by the config
//! (consumers × routes they call). A consumer's cells survive reloads that
//! keep its id; those of routes that leave go at commit.
//!
//! On the request path, each consumer of a snapshot has a few lock-free
//! slots, claimed by route index on first use, that point at its cells:
//! recording is a slot scan and two atomic adds. A consumer calling more
//! distinct routes than it has slots goes through its (locked) cell map for
//! the others.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use crate::slots::Slots;

/// Why a known consumer's request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageRefusal {
    OutOfScope,
    ConsumerDisabled,
    KeyExpired,
    KeyNotYetValid,
    RateLimited,
    QuotaExhausted,
}

impl UsageRefusal {
    pub const ALL: [UsageRefusal; 6] = [
        UsageRefusal::OutOfScope,
        UsageRefusal::ConsumerDisabled,
        UsageRefusal::KeyExpired,
        UsageRefusal::KeyNotYetValid,
        UsageRefusal::RateLimited,
        UsageRefusal::QuotaExhausted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UsageRefusal::OutOfScope => "out_of_scope",
            UsageRefusal::ConsumerDisabled => "consumer_disabled",
            UsageRefusal::KeyExpired => "key_expired",
            UsageRefusal::KeyNotYetValid => "key_not_yet_valid",
            UsageRefusal::RateLimited => "rate_limited",
            UsageRefusal::QuotaExhausted => "quota_exhausted",
        }
    }

    /// The refusal of an authentication failure reason (`Rejection::reason`)
    /// or a limit label (`daily-quota`, `route-consumer`, …).
    pub fn of(auth_failure: Option<&str>, limit: Option<&str>) -> Option<UsageRefusal> {
        match (auth_failure, limit) {
            (Some("out_of_scope" | "insufficient_scope"), _) => Some(UsageRefusal::OutOfScope),
            (Some("consumer_disabled"), _) => Some(UsageRefusal::ConsumerDisabled),
            (Some("key_expired"), _) => Some(UsageRefusal::KeyExpired),
            (Some("key_not_yet_valid"), _) => Some(UsageRefusal::KeyNotYetValid),
            (_, Some(l)) if l.ends_with("quota") => Some(UsageRefusal::QuotaExhausted),
            (_, Some(_)) => Some(UsageRefusal::RateLimited),
            _ => None,
        }
    }
}

/// What one consumer did on one route.
#[derive(Debug, Default)]
pub struct UsageCell {
    requests: AtomicU64,
    refused: [AtomicU64; UsageRefusal::ALL.len()],
    /// Unix seconds of the latest request.
    last_seen: AtomicU64,
}

/// A copy of a cell's counts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CellCounts {
    pub requests: u64,
    /// Only reasons that happened.
    pub refused: std::collections::BTreeMap<&'static str, u64>,
    pub last_seen: u64,
}

impl UsageCell {
    /// One request at `now` (Unix seconds), refused for `refusal` if any.
    pub fn record(&self, refusal: Option<UsageRefusal>, now: u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(r) = refusal {
            self.refused[r as usize].fetch_add(1, Ordering::Relaxed);
        }
        self.last_seen.fetch_max(now, Ordering::Relaxed);
    }

    pub fn counts(&self) -> CellCounts {
        CellCounts {
            requests: self.requests.load(Ordering::Relaxed),
            refused: UsageRefusal::ALL
                .iter()
                .map(|r| {
                    (
                        r.as_str(),
                        self.refused[*r as usize].load(Ordering::Relaxed),
                    )
                })
                .filter(|(_, n)| *n > 0)
                .collect(),
            last_seen: self.last_seen.load(Ordering::Relaxed),
        }
    }
}

/// Every cell of one consumer, by route id; long-lived.
#[derive(Debug, Default)]
pub struct ConsumerUsage {
    routes: Mutex<HashMap<Arc<str>, Arc<UsageCell>>>,
}

impl ConsumerUsage {
    /// The cell of `route` (made on first use).
    pub fn cell(&self, route: &str) -> Arc<UsageCell> {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = routes.get(route) {
            return c.clone();
        }
        let cell = Arc::new(UsageCell::default());
        routes.insert(Arc::from(route), cell.clone());
        cell
    }

    /// Every route called so far, with its counts, by route id.
    pub fn routes(&self) -> Vec<(Arc<str>, CellCounts)> {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<_> = routes
            .iter()
            .map(|(r, c)| (r.clone(), c.counts()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn keep_routes(&self, keep: &HashSet<&str>) {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        routes.retain(|r, _| keep.contains(&**r));
    }
}

/// Lock-free slots a consumer of one snapshot has for the routes it calls.
const SLOTS: usize = 8;

/// A consumer's usage, as one snapshot reaches it.
pub struct ConsumerSlots {
    usage: Arc<ConsumerUsage>,
    /// Keyed by route index + 1.
    slots: OnceLock<Box<Slots<Arc<UsageCell>, SLOTS>>>,
}

impl std::fmt::Debug for ConsumerSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerSlots").finish_non_exhaustive()
    }
}

impl ConsumerSlots {
    pub fn new(usage: Arc<ConsumerUsage>) -> Self {
        Self {
            usage,
            slots: OnceLock::new(),
        }
    }

    /// The long-lived usage these slots point into.
    pub fn usage(&self) -> &Arc<ConsumerUsage> {
        &self.usage
    }

    /// Record one request to route `index` (id `route`) of this snapshot.
    pub fn record(&self, index: usize, route: &str, refusal: Option<UsageRefusal>, now: u64) {
        let key = u32::try_from(index).map_or(0, |i| i.saturating_add(1));
        let slots = self.slots.get_or_init(Default::default);
        if let Some(cell) = slots.get_or_claim(key, || self.usage.cell(route)) {
            cell.record(refusal, now);
            return;
        }
        self.usage.cell(route).record(refusal, now);
    }
}

/// Most bearer-token consumers whose usage is kept: they are not listed
/// in the config, so any number of subjects could call; beyond this, the
/// least recently seen are forgotten.
pub const MAX_TOKEN_CONSUMERS: u64 = 10_000;

/// The usage of every consumer, by consumer id; long-lived.
pub struct UsageTable {
    consumers: Mutex<HashMap<Arc<str>, Arc<ConsumerUsage>>>,
    /// Consumers named by bearer tokens, by `issuer-id:consumer`.
    tokens: moka::sync::Cache<Arc<str>, Arc<ConsumerUsage>>,
    since: SystemTime,
}

impl std::fmt::Debug for UsageTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageTable").finish_non_exhaustive()
    }
}

impl Default for UsageTable {
    fn default() -> Self {
        Self {
            consumers: Mutex::default(),
            tokens: moka::sync::Cache::new(MAX_TOKEN_CONSUMERS),
            since: SystemTime::now(),
        }
    }
}

impl UsageTable {
    /// The usage of consumer `id`: the live one, or a fresh one (not in the
    /// table until a commit adopts it).
    pub fn for_consumer(&self, id: &str) -> Arc<ConsumerUsage> {
        let consumers = self.consumers.lock().unwrap_or_else(|p| p.into_inner());
        consumers.get(id).cloned().unwrap_or_default()
    }

    /// Make `consumers` (id, usage) the table's contents, keeping only the
    /// cells of `routes`.
    pub fn adopt<'a>(
        &self,
        consumers: impl IntoIterator<Item = (&'a Arc<str>, &'a Arc<ConsumerUsage>)>,
        routes: &HashSet<&str>,
    ) {
        let kept: HashMap<Arc<str>, Arc<ConsumerUsage>> = consumers
            .into_iter()
            .map(|(id, u)| (id.clone(), u.clone()))
            .collect();
        for usage in kept.values() {
            usage.keep_routes(routes);
        }
        for (_, usage) in self.tokens.iter() {
            usage.keep_routes(routes);
        }
        *self.consumers.lock().unwrap_or_else(|p| p.into_inner()) = kept;
    }

    /// The usage of the bearer-token consumer `subject`
    /// (`issuer-id:consumer`), made on first use.
    pub fn for_token_consumer(&self, subject: &Arc<str>) -> Arc<ConsumerUsage> {
        self.tokens.get_with_by_ref(subject, Arc::default)
    }

    /// Every bearer-token consumer seen (and not yet forgotten), by
    /// subject, sorted.
    pub fn token_consumers(&self) -> Vec<(Arc<str>, Arc<ConsumerUsage>)> {
        let mut out: Vec<_> = self.tokens.iter().map(|(k, v)| ((*k).clone(), v)).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Since when usage has been counted (process start).
    pub fn since(&self) -> SystemTime {
        self.since
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_and_overflow_count_per_route_and_cells_survive_adoption() {
        let table = UsageTable::default();
        let usage = table.for_consumer("acme");
        let slots = ConsumerSlots::new(usage.clone());
        for i in 0..20 {
            slots.record(i, &format!("r{i}"), None, 100 + i as u64);
        }
        slots.record(0, "r0", Some(UsageRefusal::RateLimited), 50);
        slots.record(19, "r19", Some(UsageRefusal::QuotaExhausted), 500);
        let routes = usage.routes();
        assert_eq!(routes.len(), 20);
        let r0 = &routes.iter().find(|(r, _)| &**r == "r0").unwrap().1;
        assert_eq!(r0.requests, 2);
        assert_eq!(r0.refused["rate_limited"], 1);
        assert_eq!(r0.last_seen, 100, "the latest, not the last recorded");
        let r19 = &routes.iter().find(|(r, _)| &**r == "r19").unwrap().1;
        assert_eq!((r19.requests, r19.last_seen), (2, 500));
        assert_eq!(r19.refused["quota_exhausted"], 1);

        // Adopted with only r0 still configured: r0 kept, the rest go.
        let id: Arc<str> = Arc::from("acme");
        table.adopt([(&id, &usage)], &HashSet::from(["r0"]));
        assert!(Arc::ptr_eq(&table.for_consumer("acme"), &usage));
        assert_eq!(usage.routes().len(), 1);
        // A consumer that leaves loses its usage.
        table.adopt([], &HashSet::new());
        assert!(!Arc::ptr_eq(&table.for_consumer("acme"), &usage));
    }

    #[test]
    fn refusal_reasons() {
        assert_eq!(
            UsageRefusal::of(Some("out_of_scope"), None),
            Some(UsageRefusal::OutOfScope)
        );
        assert_eq!(
            UsageRefusal::of(None, Some("daily-quota")),
            Some(UsageRefusal::QuotaExhausted)
        );
        assert_eq!(
            UsageRefusal::of(None, Some("route-consumer")),
            Some(UsageRefusal::RateLimited)
        );
        assert_eq!(UsageRefusal::of(None, None), None);
    }
}
