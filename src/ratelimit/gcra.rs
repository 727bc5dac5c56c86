//! GCRA, the generic cell rate algorithm: a token bucket kept as one
//! number, the *theoretical arrival time* (TAT) of the next request.
//!
//! With emission interval `T = period / count` and tolerance
//! `τ = (burst − 1)·T`, a request at `now` conforms when
//! `max(TAT, now) − now ≤ τ`; it then moves TAT to `max(TAT, now) + T`.
//! A fresh bucket (TAT = 0) allows `burst` requests at one instant and one
//! more every `T` after that. All arithmetic is in integer nanoseconds and
//! saturates: no input can overflow or panic.

use super::{Bucket, CheckState};

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// The constants of one bucket, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Emission interval `T`: time for one token to come back (≥ 1 ns).
    pub interval: u64,
    /// Tolerance `τ = (burst − 1)·T`.
    pub tolerance: u64,
}

impl Gcra {
    pub fn of(bucket: &Bucket) -> Gcra {
        let period = crate::clock::nanos(bucket.rate.period);
        let interval = (period / u64::from(bucket.rate.count.max(1))).max(1);
        let tolerance = interval.saturating_mul(u64::from(bucket.burst.max(1)) - 1);
        Gcra {
            interval,
            tolerance,
        }
    }

    /// The decision for a request at `now` against stored `tat`: the new
    /// TAT when it conforms, or the nanoseconds until it would.
    pub fn decide(&self, tat: u64, now: u64) -> Result<u64, u64> {
        let start = tat.max(now);
        let ahead = start - now;
        if ahead > self.tolerance {
            return Err(ahead - self.tolerance);
        }
        Ok(start.saturating_add(self.interval))
    }

    /// Whether a request at `now` would conform, without a new TAT.
    pub fn conforms(&self, tat: u64, now: u64) -> bool {
        self.decide(tat, now).is_ok()
    }

    /// The bucket's state at `now` when its TAT is `tat`.
    pub fn state(&self, tat: u64, now: u64) -> CheckState {
        let ahead = tat.saturating_sub(now);
        // Whole tokens left: requests that would still conform at `now`.
        let room = self
            .tolerance
            .saturating_add(self.interval)
            .saturating_sub(ahead);
        CheckState {
            remaining: room / self.interval,
            reset_secs: ahead.div_ceil(NANOS_PER_SEC),
        }
    }

    /// Time to refill the whole burst: after this long untouched, a bucket
    /// is the same as a fresh one.
    pub fn refill_nanos(&self) -> u64 {
        self.tolerance.saturating_add(self.interval)
    }
}

/// Whole seconds (at least 1) of a wait in nanoseconds.
pub fn retry_secs(nanos: u64) -> u64 {
    nanos.div_ceil(NANOS_PER_SEC).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::Rate;
    use std::time::Duration;

    const SEC: u64 = NANOS_PER_SEC;
    const MS: u64 = 1_000_000;

    fn bucket(count: u32, period: Duration, burst: u32) -> Gcra {
        Gcra::of(&Bucket {
            rate: Rate { count, period },
            burst,
        })
    }

    /// Requests at the given instants against one bucket: how many pass.
    fn allowed(g: &Gcra, instants: impl Iterator<Item = u64>) -> u64 {
        let mut tat = 0;
        let mut n = 0;
        for now in instants {
            if let Ok(t) = g.decide(tat, now) {
                tat = t;
                n += 1;
            }
        }
        n
    }

    #[test]
    fn a_fresh_bucket_allows_the_burst_then_one_per_interval() {
        let g = bucket(10, Duration::from_secs(1), 3);
        assert_eq!(g.interval, 100 * MS);
        let now = 1_000 * SEC;
        let mut tat = 0;
        for i in 0..3 {
            tat = g.decide(tat, now).unwrap_or_else(|_| panic!("request {i}"));
        }
        // The fourth must wait one interval.
        assert_eq!(g.decide(tat, now), Err(100 * MS));
        assert_eq!(g.decide(tat, now + 99 * MS), Err(MS));
        let tat = g.decide(tat, now + 100 * MS).unwrap();
        assert!(g.decide(tat, now + 100 * MS).is_err());
    }

    #[test]
    fn sustained_rate_is_enforced_within_one_request() {
        // 100/s, burst 10, a request every millisecond for 10 s.
        let g = bucket(100, Duration::from_secs(1), 10);
        let start = 5 * SEC;
        let n = allowed(&g, (0..10_000).map(|i| start + i * MS));
        assert!((1_009..=1_011).contains(&n), "{n}");
        // Slower than the rate: everything passes.
        let n = allowed(&g, (0..1_000).map(|i| start + i * 20 * MS));
        assert_eq!(n, 1_000);
    }

    #[test]
    fn state_reports_tokens_left_and_time_to_full() {
        let g = bucket(2, Duration::from_secs(60), 2);
        let now = 100 * SEC;
        let s = g.state(0, now);
        assert_eq!((s.remaining, s.reset_secs), (2, 0));
        let tat = g.decide(0, now).unwrap();
        assert_eq!(
            g.state(tat, now),
            CheckState {
                remaining: 1,
                reset_secs: 30
            }
        );
        let tat = g.decide(tat, now).unwrap();
        assert_eq!(
            g.state(tat, now),
            CheckState {
                remaining: 0,
                reset_secs: 60
            }
        );
        assert_eq!(retry_secs(g.decide(tat, now).unwrap_err()), 30);
        // Half a token back after 15 s: still none whole.
        assert_eq!(g.state(tat, now + 15 * SEC).remaining, 0);
        assert_eq!(g.state(tat, now + 30 * SEC).remaining, 1);
        assert_eq!(g.refill_nanos(), 60 * SEC);
    }

    #[test]
    fn extreme_rates_and_times_do_not_panic() {
        for g in [
            bucket(1, Duration::from_secs(86_400), 1),
            bucket(1_000_000_000, Duration::from_secs(1), u32::MAX),
            bucket(u32::MAX, Duration::from_secs(1), 1),
            bucket(1, Duration::MAX, u32::MAX),
        ] {
            for (tat, now) in [(0, 0), (u64::MAX, 0), (0, u64::MAX), (u64::MAX, u64::MAX)] {
                let _ = g.decide(tat, now);
                let _ = g.state(tat, now);
            }
            assert!(g.interval >= 1);
        }
        let g = bucket(1, Duration::from_secs(86_400), 1);
        assert_eq!(
            retry_secs(g.decide(g.decide(0, SEC).unwrap(), SEC).unwrap_err()),
            86_400
        );
        assert_eq!(retry_secs(0), 1);
    }
}
