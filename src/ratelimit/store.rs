//! Where counters live: the per-instance [`LocalStore`].
//!
//! Every counter is one `AtomicU64` (a bucket's TAT, or a quota's count)
//! in a bounded concurrent cache (moka). A bucket entry may expire once it
//! has been idle for its full refill time, when a fresh bucket is the same
//! thing; a quota entry expires at the end of its period. So expiry never
//! lets anyone exceed a limit. Only when the cache is full (more live
//! counters than `max_counters`, e.g. a flood of client addresses) does it
//! evict counters early, and those restart: the bounded store fails open
//! for them rather than grow without limit.
//!
//! **Concurrency.** Each bucket is updated with a compare-and-swap, each
//! quota with an atomic add, so no counter ever admits more than its limit.
//! A request is charged check by check; when a later check denies, the
//! earlier charges are given back. Meanwhile a racing request may see such
//! a charge and be denied where it would have passed a moment later: racing
//! requests can be refused too eagerly, never let through too generously.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;
use moka::Expiry;
use smallvec::SmallVec;

use super::gcra::{retry_secs, Gcra};
use super::quota::Window;
use super::{Check, CheckState, Limit, LimitKey, LimitStore, Outcome, Period};

/// Default bound on live counters. An entry takes about 200 bytes, so the
/// store stays under about 100 MiB.
pub const DEFAULT_MAX_COUNTERS: u64 = 500_000;

/// How long a counter is kept past the moment it stops mattering.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(1);

const NANOS_PER_SEC: u64 = 1_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum CounterKey {
    Bucket(LimitKey),
    Quota(LimitKey, Period, u64),
}

#[derive(Debug)]
struct Counter {
    value: AtomicU64,
    /// Buckets: the idle time after which the entry may go. Quotas: the
    /// time left in the period when the entry was made.
    ttl: Duration,
    idle: bool,
}

struct CounterExpiry;

impl Expiry<CounterKey, Arc<Counter>> for CounterExpiry {
    fn expire_after_create(
        &self,
        _key: &CounterKey,
        value: &Arc<Counter>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_read(
        &self,
        _key: &CounterKey,
        value: &Arc<Counter>,
        _read_at: Instant,
        duration_until_expiry: Option<Duration>,
        _last_modified_at: Instant,
    ) -> Option<Duration> {
        if value.idle {
            Some(value.ttl)
        } else {
            duration_until_expiry
        }
    }
}

/// Counters of this process.
pub struct LocalStore {
    counters: Cache<CounterKey, Arc<Counter>, ahash::RandomState>,
}

/// A charge to give back if a later check denies: a bucket's interval, or
/// one request of a quota.
#[derive(Clone, Copy)]
enum Charge {
    Bucket(u64),
    Quota,
}

impl LocalStore {
    /// A store of at most `max_counters` live counters.
    pub fn new(max_counters: u64) -> LocalStore {
        LocalStore {
            counters: Cache::builder()
                .max_capacity(max_counters)
                .expire_after(CounterExpiry)
                .build_with_hasher(ahash::RandomState::new()),
        }
    }

    /// Live counters (an estimate while moka has pending work; see
    /// [`LocalStore::sync`]).
    pub fn len(&self) -> u64 {
        self.counters.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Run moka's pending housekeeping (evictions, expiry): for tests.
    pub fn sync(&self) {
        self.counters.run_pending_tasks();
    }

    fn key(check: &Check, now: u64) -> CounterKey {
        match check.limit {
            Limit::Bucket(_) => CounterKey::Bucket(check.key.clone()),
            Limit::Quota(q) => {
                let window = Window::of(q.period, now / NANOS_PER_SEC);
                CounterKey::Quota(check.key.clone(), q.period, window.index)
            }
        }
    }

    /// The counter of `check`, made when there is none.
    fn counter(&self, check: &Check, now: u64) -> Arc<Counter> {
        self.counters.get_with(Self::key(check, now), || {
            let (ttl, idle) = match check.limit {
                Limit::Bucket(b) => (Duration::from_nanos(Gcra::of(&b).refill_nanos()), true),
                Limit::Quota(q) => {
                    let now_secs = now / NANOS_PER_SEC;
                    let left = Window::of(q.period, now_secs).secs_left(now_secs);
                    (Duration::from_secs(left), false)
                }
            };
            Arc::new(Counter {
                value: AtomicU64::new(0),
                ttl: ttl + EXPIRY_MARGIN,
                idle,
            })
        })
    }

    /// The counter of `check` if there is one (a fresh one is all zero).
    /// Asking first with `contains_key`, which leaves moka's popularity
    /// estimate alone, makes the common miss (e.g. an address that never
    /// sent a bad key) cheap.
    fn existing(&self, check: &Check, now: u64) -> Option<Arc<Counter>> {
        let key = Self::key(check, now);
        if !self.counters.contains_key(&key) {
            return None;
        }
        self.counters.get(&key)
    }

    fn state(check: &Check, counter: Option<&Counter>, now: u64) -> CheckState {
        let value = counter.map_or(0, |c| c.value.load(Ordering::Acquire));
        match check.limit {
            Limit::Bucket(b) => Gcra::of(&b).state(value, now),
            Limit::Quota(q) => {
                let now_secs = now / NANOS_PER_SEC;
                CheckState {
                    remaining: q.limit.saturating_sub(value),
                    reset_secs: Window::of(q.period, now_secs).secs_left(now_secs),
                }
            }
        }
    }

    /// Charge one request to `counter` for `check`: `Err(seconds)` to wait
    /// when it is over its limit (nothing charged then).
    fn charge(check: &Check, counter: &Counter, now: u64) -> Result<Charge, u64> {
        match check.limit {
            Limit::Bucket(b) => {
                let g = Gcra::of(&b);
                let mut current = counter.value.load(Ordering::Acquire);
                loop {
                    let next = g.decide(current, now).map_err(retry_secs)?;
                    match counter.value.compare_exchange_weak(
                        current,
                        next,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => return Ok(Charge::Bucket(g.interval)),
                        Err(actual) => current = actual,
                    }
                }
            }
            Limit::Quota(q) => {
                let before = counter.value.fetch_add(1, Ordering::AcqRel);
                if before >= q.limit {
                    counter.value.fetch_sub(1, Ordering::AcqRel);
                    let now_secs = now / NANOS_PER_SEC;
                    return Err(Window::of(q.period, now_secs).secs_left(now_secs));
                }
                Ok(Charge::Quota)
            }
        }
    }

    /// Whether `check` would allow a request now: `Err(seconds)` otherwise.
    fn would_allow(check: &Check, counter: Option<&Counter>, now: u64) -> Result<(), u64> {
        let value = counter.map_or(0, |c| c.value.load(Ordering::Acquire));
        match check.limit {
            Limit::Bucket(b) => Gcra::of(&b)
                .decide(value, now)
                .map(|_| ())
                .map_err(retry_secs),
            Limit::Quota(q) if value >= q.limit => {
                let now_secs = now / NANOS_PER_SEC;
                Err(Window::of(q.period, now_secs).secs_left(now_secs))
            }
            Limit::Quota(_) => Ok(()),
        }
    }

    fn give_back(charged: &[(Arc<Counter>, Charge)]) {
        for (counter, charge) in charged {
            match *charge {
                Charge::Bucket(interval) => {
                    let _ = counter
                        .value
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                            Some(t.saturating_sub(interval))
                        });
                }
                Charge::Quota => {
                    let _ = counter
                        .value
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                            Some(n.saturating_sub(1))
                        });
                }
            }
        }
    }

    /// Charge every check, or none.
    pub fn acquire_now(&self, checks: &[Check], now: u64) -> Outcome {
        let mut charged: SmallVec<[(Arc<Counter>, Charge); 4]> = SmallVec::new();
        for (index, check) in checks.iter().enumerate() {
            let counter = self.counter(check, now);
            match Self::charge(check, &counter, now) {
                Ok(charge) => charged.push((counter, charge)),
                Err(retry_after_secs) => {
                    Self::give_back(&charged);
                    return Outcome::Denied {
                        index,
                        retry_after_secs: retry_after_secs.max(1),
                        states: self.states(checks, now),
                    };
                }
            }
        }
        Outcome::Allowed(
            checks
                .iter()
                .zip(&charged)
                .map(|(c, (counter, _))| Self::state(c, Some(counter), now))
                .collect(),
        )
    }

    /// What [`LocalStore::acquire_now`] would decide, charging nothing
    /// (and making no counter).
    pub fn peek_now(&self, checks: &[Check], now: u64) -> Outcome {
        for (index, check) in checks.iter().enumerate() {
            let counter = self.existing(check, now);
            if let Err(retry_after_secs) = Self::would_allow(check, counter.as_deref(), now) {
                return Outcome::Denied {
                    index,
                    retry_after_secs: retry_after_secs.max(1),
                    states: self.states(checks, now),
                };
            }
        }
        Outcome::Allowed(self.states(checks, now))
    }

    fn states(&self, checks: &[Check], now: u64) -> SmallVec<[CheckState; 4]> {
        checks
            .iter()
            .map(|c| Self::state(c, self.existing(c, now).as_deref(), now))
            .collect()
    }
}

#[async_trait::async_trait]
impl LimitStore for LocalStore {
    async fn acquire(&self, checks: &[Check], now_nanos: u64) -> Outcome {
        self.acquire_now(checks, now_nanos)
    }

    async fn peek(&self, checks: &[Check], now_nanos: u64) -> Outcome {
        self.peek_now(checks, now_nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::{Bucket, Quota, Rate, Subject};

    const SEC: u64 = NANOS_PER_SEC;
    /// 2026-11-24T12:00:00Z
    const NOON: u64 = 1_795_521_600 * SEC;

    fn bucket(policy: &str, count: u32, burst: u32) -> Check {
        Check {
            key: LimitKey {
                policy: Arc::from(policy),
                subject: Subject::All,
            },
            limit: Limit::Bucket(Bucket {
                rate: Rate {
                    count,
                    period: Duration::from_secs(60),
                },
                burst,
            }),
            accuracy: Default::default(),
        }
    }

    fn quota(policy: &str, period: Period, limit: u64) -> Check {
        Check {
            key: LimitKey {
                policy: Arc::from(policy),
                subject: Subject::Consumer(Arc::from("acme")),
            },
            limit: Limit::Quota(Quota { period, limit }),
            accuracy: Default::default(),
        }
    }

    fn allowed(o: &Outcome) -> bool {
        matches!(o, Outcome::Allowed(_))
    }

    #[test]
    fn buckets_and_quotas_count_and_report() {
        let store = LocalStore::new(1_000);
        let checks = [bucket("b", 60, 2), quota("q", Period::Day, 3)];
        let Outcome::Allowed(states) = store.acquire_now(&checks, NOON) else {
            panic!("first request denied")
        };
        assert_eq!(
            states[0],
            CheckState {
                remaining: 1,
                reset_secs: 1
            }
        );
        assert_eq!(
            states[1],
            CheckState {
                remaining: 2,
                reset_secs: 12 * 3600
            }
        );
        assert!(allowed(&store.acquire_now(&checks, NOON)));
        // The bucket is empty: denied by check 0, one second to wait.
        match store.acquire_now(&checks, NOON) {
            Outcome::Denied {
                index,
                retry_after_secs,
                states,
            } => {
                assert_eq!((index, retry_after_secs), (0, 1));
                assert_eq!(states[1].remaining, 1, "the quota was not charged");
            }
            o => panic!("{o:?}"),
        }
        assert!(allowed(&store.acquire_now(&checks, NOON + SEC)));
        // The quota is used up: denied by check 1 until midnight; the
        // bucket's token is given back.
        match store.acquire_now(&checks, NOON + 5 * SEC) {
            Outcome::Denied {
                index,
                retry_after_secs,
                states,
            } => {
                assert_eq!((index, retry_after_secs), (1, 12 * 3600 - 5));
                assert_eq!(states[0].remaining, 2, "the bucket was not charged");
            }
            o => panic!("{o:?}"),
        }
        // Next day: a fresh quota.
        assert!(allowed(&store.acquire_now(&checks, NOON + 12 * 3600 * SEC)));
    }

    #[test]
    fn peek_charges_nothing() {
        let store = LocalStore::new(1_000);
        let checks = [bucket("b", 1, 1)];
        for _ in 0..5 {
            assert!(allowed(&store.peek_now(&checks, NOON)));
        }
        store.sync();
        assert_eq!(store.len(), 0, "peeking makes no counter");
        assert!(allowed(&store.acquire_now(&checks, NOON)));
        assert!(!allowed(&store.peek_now(&checks, NOON)));
        assert!(!allowed(&store.acquire_now(&checks, NOON)));
    }

    #[test]
    fn racing_threads_never_get_more_than_the_burst() {
        let store = Arc::new(LocalStore::new(1_000));
        let checks = Arc::new([bucket("b", 1, 50), quota("q", Period::Month, 80)]);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (store, checks) = (store.clone(), checks.clone());
                std::thread::spawn(move || {
                    (0..100)
                        .filter(|_| allowed(&store.acquire_now(&*checks, NOON)))
                        .count()
                })
            })
            .collect();
        let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, 50);
        // Every denial gave its quota charge back: 50 used of 80.
        match store.peek_now(&*checks, NOON + 60 * SEC) {
            Outcome::Allowed(states) => assert_eq!(states[1].remaining, 30),
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn counters_are_identified_by_policy_and_subject() {
        let store = LocalStore::new(1_000);
        let a = bucket("consumer:a:1/60000ms:1", 1, 1);
        assert!(allowed(&store.acquire_now(std::slice::from_ref(&a), NOON)));
        assert!(!allowed(&store.acquire_now(std::slice::from_ref(&a), NOON)));
        // The same definition (after a reload): the same counter.
        let again = bucket("consumer:a:1/60000ms:1", 1, 1);
        assert!(!allowed(&store.acquire_now(&[again], NOON)));
        // A changed definition: a fresh counter.
        let changed = bucket("consumer:a:2/60000ms:2", 2, 2);
        assert!(allowed(&store.acquire_now(&[changed], NOON)));
        // Another subject under the same policy: its own counter.
        let mut other = a;
        other.key.subject = Subject::ClientIp("10.0.0.1".parse().unwrap());
        assert!(allowed(&store.acquire_now(&[other], NOON)));
    }

    #[test]
    fn the_number_of_counters_is_bounded() {
        let store = LocalStore::new(500);
        for i in 0..5_000u32 {
            let mut c = bucket("ip", 10, 10);
            c.key.subject = Subject::ClientIp(std::net::IpAddr::from(i.to_be_bytes()));
            store.acquire_now(&[c], NOON);
        }
        store.sync();
        assert!(store.len() <= 500, "{}", store.len());
    }
}
