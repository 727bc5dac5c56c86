//! The shared limit store: rate limits and quotas counted across a fleet of
//! instances in Redis (`[limit_store] kind = "redis"`).
//!
//! - [`redis`]: the connection and the scripts (check-and-charge in one
//!   atomic call, on Redis's clock).
//! - [`approx`]: approximate rate limits, decided on local buckets whose
//!   charges are sent in batches, within a published error bound.
//!
//! [`SharedStore`] puts them behind [`LimitStore`]: a request's checks are
//! split into approximate ones (local buckets), exact ones (one round trip
//! for all of them) and per-instance ones (failed-attempt damping, in a
//! [`LocalStore`]). When Redis fails or is slower than `timeout`, the
//! request is decided by `on_error` and a breaker stops calling Redis for
//! [`RETRY_AFTER`]; then one call (a request's, or the periodic batch)
//! tries again, and its success closes the breaker.

pub mod approx;
pub mod redis;

use std::sync::Arc;

use smallvec::SmallVec;

use self::approx::{Buckets, Local};
use self::redis::{Redis, StoreError};
use crate::clock::Clock;
use crate::config::model::{LimitStoreSettings, OnStoreError, RedisStoreConfig};
use crate::metrics::limit_store::LimitStoreFamilies;
use crate::ratelimit::{
    Accuracy, Bucket, Check, CheckState, Limit, LimitStore, LocalStore, Outcome, Quota,
    DEFAULT_MAX_COUNTERS,
};

pub use crate::redis_conn::RETRY_AFTER;
use crate::redis_conn::{Breaker, OwnedRuntime};

/// The store `settings` name: a [`LocalStore`], or a [`SharedStore`]
/// (whose connection is made in the background; an unreadable password
/// or CA file is an error here).
pub fn build(
    settings: &LimitStoreSettings,
    metrics: LimitStoreFamilies,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn LimitStore>, String> {
    Ok(match settings {
        LimitStoreSettings::Local => Arc::new(LocalStore::new(DEFAULT_MAX_COUNTERS)),
        LimitStoreSettings::Redis(config) => SharedStore::start(config, metrics, clock)?,
    })
}

/// Counters shared through Redis.
pub struct SharedStore {
    redis: Arc<Redis>,
    buckets: Buckets,
    /// Per-instance checks, and every check under `on_error = "local"`.
    local: LocalStore,
    on_error: OnStoreError,
    instances: u32,
    sync_interval: u64,
    breaker: Breaker,
    metrics: LimitStoreFamilies,
    clock: Arc<dyn Clock>,
    runtime: OwnedRuntime,
}

/// How the store keeps one check.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Approximate(u32),
    Exact,
    PerInstance,
}

impl SharedStore {
    /// Start the store: its runtime, the (lazy) connection and the
    /// periodic batch of approximate buckets.
    pub fn start(
        config: &RedisStoreConfig,
        metrics: LimitStoreFamilies,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<SharedStore>, String> {
        let runtime = OwnedRuntime::start("portcullis-limits")?;
        let handle = runtime.get().map(|rt| rt.handle().clone());
        let handle = handle.ok_or("the limit store's runtime is gone")?;
        let redis = Arc::new(Redis::connect(config, &handle, metrics.clone())?);
        let store = Arc::new(SharedStore {
            redis,
            buckets: Buckets::new(DEFAULT_MAX_COUNTERS),
            local: LocalStore::new(DEFAULT_MAX_COUNTERS),
            on_error: config.on_error,
            instances: config.instances.max(1),
            sync_interval: crate::clock::nanos(config.sync_interval),
            breaker: Breaker::default(),
            metrics,
            clock,
            runtime,
        });
        let weak = Arc::downgrade(&store);
        let period = config.sync_interval;
        if let Some(rt) = store.runtime.get() {
            rt.spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(store) = weak.upgrade() else { return };
                    store.flush().await;
                }
            });
        }
        Ok(store)
    }

    /// The periodic batch: send every approximate bucket's pending
    /// requests, when the breaker lets it.
    async fn flush(&self) {
        let now = self.clock.now_nanos();
        if !self.breaker.allow(now) {
            return;
        }
        let clock = self.clock.clone();
        match self
            .buckets
            .flush(&self.redis, move || clock.now_nanos())
            .await
        {
            Ok(sent) => {
                self.metrics.synced.inc_by(sent);
                self.up();
            }
            Err(_) => self.down(now),
        }
    }

    fn up(&self) {
        self.breaker.success();
        self.metrics.up.set(1);
    }

    fn down(&self, now: u64) {
        self.breaker.failure(now);
        self.metrics.up.set(0);
    }

    fn kind(&self, check: &Check) -> Kind {
        match (check.accuracy, check.limit) {
            (Accuracy::PerInstance, _) => Kind::PerInstance,
            (Accuracy::Approximate, Limit::Bucket(b)) => {
                approx::allowance(&b, self.sync_interval).map_or(Kind::Exact, Kind::Approximate)
            }
            _ => Kind::Exact,
        }
    }

    /// Decide `checks` with Redis: charging (`charge`) or looking.
    async fn decide(
        &self,
        checks: &[Check],
        now: u64,
        charge: bool,
    ) -> Result<Outcome, StoreError> {
        let kinds: SmallVec<[Kind; 6]> = checks.iter().map(|c| self.kind(c)).collect();
        let mut states: SmallVec<[CheckState; 4]> = SmallVec::from_elem(
            CheckState {
                remaining: 0,
                reset_secs: 0,
            },
            checks.len(),
        );
        let mut refused: Option<(usize, u64)> = None;

        // Approximate checks, on local buckets, in order.
        let mut charged = Vec::new();
        for (i, (check, kind)) in checks.iter().zip(&kinds).enumerate() {
            let (Kind::Approximate(allowance), Limit::Bucket(bucket)) = (*kind, check.limit) else {
                continue;
            };
            let entry = self
                .buckets
                .entry(&check.key, &bucket, allowance, &self.redis);
            if !charge {
                match entry.peek(now) {
                    Local::Passed(state) => states[i] = state,
                    Local::Refused(wait, state) => {
                        states[i] = state;
                        refused.get_or_insert((i, wait));
                    }
                }
                continue;
            }
            let clock = self.clock.clone();
            match self
                .buckets
                .decide(&entry, &self.redis, move || clock.now_nanos())
                .await
            {
                Ok(Local::Passed(state)) => {
                    states[i] = state;
                    charged.push(entry);
                }
                Ok(Local::Refused(wait, state)) => {
                    states[i] = state;
                    refused = Some((i, wait));
                    break;
                }
                Err(e) => {
                    give_back(&charged);
                    return Err(e);
                }
            }
        }
        if let Some((index, retry_after_secs)) = refused.filter(|_| charge) {
            give_back(&charged);
            return Ok(Outcome::Denied {
                index,
                retry_after_secs,
                states,
            });
        }

        // Exact checks: one round trip for all of them.
        let exact: SmallVec<[(usize, &Check); 4]> = checks
            .iter()
            .enumerate()
            .filter(|(i, _)| kinds[*i] == Kind::Exact)
            .collect();
        if !exact.is_empty() {
            let list: SmallVec<[&Check; 4]> = exact.iter().map(|(_, c)| *c).collect();
            let answers = match self.redis.check(&list, i64::from(charge)).await {
                Ok(a) => a,
                Err(e) => {
                    give_back(&charged);
                    return Err(e);
                }
            };
            let mut to_refund = Vec::new();
            for ((i, check), answer) in exact.iter().zip(&answers) {
                states[*i] = answer.state;
                if answer.allowed {
                    to_refund.push((*check).clone());
                } else if refused.is_none_or(|(r, _)| *i < r) {
                    refused = Some((*i, answer.retry_secs.max(1)));
                }
            }
            if let (Some(_), true) = (refused, charge) {
                give_back(&charged);
                self.refund(to_refund);
            }
        }
        if let Some((index, retry_after_secs)) = refused {
            return Ok(Outcome::Denied {
                index,
                retry_after_secs,
                states,
            });
        }

        // Per-instance checks.
        let per_instance: SmallVec<[usize; 2]> = (0..checks.len())
            .filter(|i| kinds[*i] == Kind::PerInstance)
            .collect();
        if !per_instance.is_empty() {
            let list: Vec<Check> = per_instance.iter().map(|i| checks[*i].clone()).collect();
            match self.local(&list, now, charge) {
                Outcome::Allowed(s) => {
                    for (i, s) in per_instance.iter().zip(s) {
                        states[*i] = s;
                    }
                }
                Outcome::Denied {
                    index,
                    retry_after_secs,
                    states: s,
                } => {
                    for (i, s) in per_instance.iter().zip(s) {
                        states[*i] = s;
                    }
                    if charge {
                        give_back(&charged);
                        let refund = exact.iter().map(|(_, c)| (*c).clone()).collect();
                        self.refund(refund);
                    }
                    return Ok(Outcome::Denied {
                        index: per_instance[index],
                        retry_after_secs,
                        states,
                    });
                }
                Outcome::Unavailable => return Ok(Outcome::Unavailable),
            }
        }
        Ok(Outcome::Allowed(states))
    }

    /// Give back, in the background, the charges of exact checks that
    /// passed in a request another check refused.
    fn refund(&self, checks: Vec<Check>) {
        if checks.is_empty() {
            return;
        }
        let Some(rt) = self.runtime.get() else {
            return;
        };
        let redis = self.redis.clone();
        rt.spawn(async move {
            let list: Vec<&Check> = checks.iter().collect();
            // A refund that fails leaves the charge: refused too eagerly,
            // never let through too generously.
            let _ = redis.check(&list, -1).await;
        });
    }

    /// The request decided by `on_error`.
    fn fall_back(&self, checks: &[Check], now: u64, charge: bool) -> Outcome {
        let label = match self.on_error {
            OnStoreError::Local => "local",
            OnStoreError::Allow => "allow",
            OnStoreError::Deny => "deny",
        };
        self.metrics.fallback(label).inc();
        match self.on_error {
            OnStoreError::Deny => Outcome::Unavailable,
            // Known nothing: no states, so no RateLimit fields.
            OnStoreError::Allow => Outcome::Allowed(SmallVec::new()),
            OnStoreError::Local => {
                let scaled: Vec<Check> =
                    checks.iter().map(|c| self.per_instance_share(c)).collect();
                self.local(&scaled, now, charge)
            }
        }
    }

    /// `checks` on this instance's own counters.
    fn local(&self, checks: &[Check], now: u64, charge: bool) -> Outcome {
        if charge {
            self.local.acquire_now(checks, now)
        } else {
            self.local.peek_now(checks, now)
        }
    }

    /// `check` as one instance's share of it: the limit divided by
    /// `instances` (at least 1), in a counter apart from the shared one.
    fn per_instance_share(&self, check: &Check) -> Check {
        if check.accuracy == Accuracy::PerInstance || self.instances == 1 {
            return check.clone();
        }
        let n = self.instances;
        let share = |v: u32| v.div_ceil(n).max(1);
        let limit = match check.limit {
            Limit::Bucket(b) => Limit::Bucket(Bucket {
                rate: crate::ratelimit::Rate {
                    count: share(b.rate.count),
                    period: b.rate.period,
                },
                burst: share(b.burst),
            }),
            Limit::Quota(q) => Limit::Quota(Quota {
                period: q.period,
                limit: q.limit.div_ceil(u64::from(n)).max(1),
            }),
        };
        Check {
            key: check.key.clone(),
            limit,
            accuracy: check.accuracy,
        }
    }

    async fn run(&self, checks: &[Check], now: u64, charge: bool) -> Outcome {
        // Only per-instance checks (damping): Redis is not asked, and
        // on_error never applies.
        if checks.iter().all(|c| c.accuracy == Accuracy::PerInstance) {
            return self.local(checks, now, charge);
        }
        if !self.breaker.allow(now) {
            return self.fall_back(checks, now, charge);
        }
        match self.decide(checks, now, charge).await {
            Ok(outcome) => {
                self.up();
                outcome
            }
            Err(_) => {
                self.down(now);
                self.fall_back(checks, now, charge)
            }
        }
    }
}

fn give_back(charged: &[Arc<approx::Entry>]) {
    for e in charged {
        e.give_back();
    }
}

#[async_trait::async_trait]
impl LimitStore for SharedStore {
    async fn acquire(&self, checks: &[Check], now_nanos: u64) -> Outcome {
        self.run(checks, now_nanos, true).await
    }

    async fn peek(&self, checks: &[Check], now_nanos: u64) -> Outcome {
        self.run(checks, now_nanos, false).await
    }
}
