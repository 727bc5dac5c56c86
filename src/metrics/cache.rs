//! Response cache metrics.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `portcullis_cache_requests_total` | counter | `route`, `result` ([`CacheResult`]) |
//! | `portcullis_cache_stored_bytes` | gauge (bytes held, keys, headers and bodies) | |
//! | `portcullis_cache_objects` | gauge | |
//! | `portcullis_cache_evictions_total` | counter (pushed out by `max_size`) | |
//! | `portcullis_cache_lock_waits_total` | counter (requests that waited for another's fetch) | |
//! | `portcullis_cache_purged_objects_total` | counter | `reason` (`admin`, `invalidation`, `reload`) |
//! | `portcullis_cache_shared_lookups_total` | counter (local misses looked up in `[cache.shared]`) | `result` (`hit`, `miss`, `error`) |
//! | `portcullis_cache_shared_stores_total` | counter | `result` (`stored`, `too_large`, `error`) |
//! | `portcullis_cache_shared_up` | gauge (1 while the shared tier answers) | |
//!
//! The per-route result counters are resolved when a snapshot is built.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// What the cache did for one request on a caching route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    /// Served from a fresh stored object.
    Hit,
    /// Nothing stored: fetched from the backend.
    Miss,
    /// Served from a stale object (stale-while-revalidate, stale-if-error).
    Stale,
    /// A stale object was replaced by a full response from the backend.
    Expired,
    /// A stale object was confirmed by a `304` and served.
    Revalidated,
    /// Not looked up (method, `no-store`…): forwarded as is.
    Bypass,
}

impl CacheResult {
    pub const ALL: [CacheResult; 6] = [
        CacheResult::Hit,
        CacheResult::Miss,
        CacheResult::Stale,
        CacheResult::Expired,
        CacheResult::Revalidated,
        CacheResult::Bypass,
    ];

    pub fn label(self) -> &'static str {
        match self {
            CacheResult::Hit => "hit",
            CacheResult::Miss => "miss",
            CacheResult::Stale => "stale",
            CacheResult::Expired => "expired",
            CacheResult::Revalidated => "revalidated",
            CacheResult::Bypass => "bypass",
        }
    }
}

/// Why objects were purged.
#[derive(Debug, Clone, Copy)]
pub enum PurgeReason {
    Admin,
    Invalidation,
    Reload,
}

/// The families; cheap to clone.
#[derive(Clone)]
pub struct CacheFamilies {
    requests: IntCounterVec,
    pub stored_bytes: IntGauge,
    pub objects: IntGauge,
    pub evictions: IntCounter,
    pub lock_waits: IntCounter,
    purged: IntCounterVec,
    shared_lookups: IntCounterVec,
    shared_stores: IntCounterVec,
    pub shared_up: IntGauge,
}

impl CacheFamilies {
    pub fn new() -> prometheus::Result<CacheFamilies> {
        Ok(CacheFamilies {
            requests: IntCounterVec::new(
                Opts::new(
                    "portcullis_cache_requests_total",
                    "Requests on caching routes by what the cache did: hit, miss, stale, expired, revalidated, bypass.",
                ),
                &["route", "result"],
            )?,
            stored_bytes: IntGauge::new(
                "portcullis_cache_stored_bytes",
                "Bytes the response cache holds (keys, headers and bodies), at most [cache] max_size.",
            )?,
            objects: IntGauge::new(
                "portcullis_cache_objects",
                "Responses the cache holds.",
            )?,
            evictions: IntCounter::new(
                "portcullis_cache_evictions_total",
                "Cached responses pushed out to keep within [cache] max_size.",
            )?,
            lock_waits: IntCounter::new(
                "portcullis_cache_lock_waits_total",
                "Requests that waited for another request's fetch of the same object instead of going to the backend.",
            )?,
            purged: IntCounterVec::new(
                Opts::new(
                    "portcullis_cache_purged_objects_total",
                    "Cached responses removed by purge (admin), by invalidation after an unsafe method, or by a reload that changed a route's cache settings.",
                ),
                &["reason"],
            )?,
            shared_lookups: IntCounterVec::new(
                Opts::new(
                    "portcullis_cache_shared_lookups_total",
                    "Local cache misses looked up in the shared tier ([cache.shared]): hit, miss, error (Redis failed, was slower than timeout, or its breaker is open).",
                ),
                &["result"],
            )?,
            shared_stores: IntCounterVec::new(
                Opts::new(
                    "portcullis_cache_shared_stores_total",
                    "Responses written to the shared tier: stored, too_large (over its max_object_size: local only), error.",
                ),
                &["result"],
            )?,
            shared_up: IntGauge::new(
                "portcullis_cache_shared_up",
                "1 while the shared cache tier answers; 0 when it is off or Redis is unreachable.",
            )?,
        })
    }

    /// `portcullis_cache_shared_lookups_total{result}`.
    pub fn shared_lookup(&self, result: &str) -> IntCounter {
        self.shared_lookups.with_label_values(&[result])
    }

    /// `portcullis_cache_shared_stores_total{result}`.
    pub fn shared_store(&self, result: &str) -> IntCounter {
        self.shared_stores.with_label_values(&[result])
    }

    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.requests.clone()))?;
        registry.register(Box::new(self.stored_bytes.clone()))?;
        registry.register(Box::new(self.objects.clone()))?;
        registry.register(Box::new(self.evictions.clone()))?;
        registry.register(Box::new(self.lock_waits.clone()))?;
        registry.register(Box::new(self.purged.clone()))?;
        registry.register(Box::new(self.shared_lookups.clone()))?;
        registry.register(Box::new(self.shared_stores.clone()))?;
        registry.register(Box::new(self.shared_up.clone()))?;
        Ok(())
    }

    /// The result counters of one route, in [`CacheResult::ALL`] order.
    pub fn for_route(&self, route: &str) -> [IntCounter; 6] {
        CacheResult::ALL.map(|r| self.requests.with_label_values(&[route, r.label()]))
    }

    /// Stop exporting a route's series (it left, or stopped caching).
    pub fn forget_route(&self, route: &str) {
        for r in CacheResult::ALL {
            let _ = self.requests.remove_label_values(&[route, r.label()]);
        }
    }

    pub fn purged(&self, reason: PurgeReason, n: usize) {
        let label = match reason {
            PurgeReason::Admin => "admin",
            PurgeReason::Invalidation => "invalidation",
            PurgeReason::Reload => "reload",
        };
        self.purged.with_label_values(&[label]).inc_by(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::CacheResult;

    #[test]
    fn all_is_in_declaration_order() {
        // `RouteCaching::count` indexes its counters by `result as usize`.
        for (i, r) in CacheResult::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
    }
}
