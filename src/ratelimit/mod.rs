//! Rate limits and quotas: the engine behind usage plans.
//!
//! - [`gcra`]: token buckets enforced with GCRA (the generic cell rate
//!   algorithm): one timestamp per counter, updated lock-free.
//! - [`quota`]: UTC calendar days and months.
//! - [`store`]: where counters live: [`LimitStore`] is the interface,
//!   [`LocalStore`] the per-instance implementation (bounded in memory).
//! - [`headers`]: the IETF `RateLimit-Policy` and `RateLimit` fields.
//!
//! Everything here takes `now` as an argument (the time source is
//! [`crate::clock`]), so tests drive time explicitly and never sleep. It
//! knows nothing of HTTP sessions or config files: which limits apply to a
//! request is [`crate::plans`]' business.

pub mod gcra;
pub mod headers;
pub mod quota;
pub mod store;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use smallvec::SmallVec;

pub use store::{LocalStore, DEFAULT_MAX_COUNTERS};

/// Largest request count a rate may name.
pub const MAX_RATE_COUNT: u32 = 1_000_000_000;

/// A sustained rate: `count` requests per `period`.
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    pub count: u32,
    #[serde(with = "humantime_serde")]
    pub period: Duration,
}

impl Rate {
    /// Parse `"100/s"`, `"10/m"`, `"5000/h"`, `"100000/d"` (units may also
    /// be written `sec`, `second`, `min`, `minute`, `hour`, `day`). The
    /// error completes `rate "TEXT" …`.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let err = || {
            format!(
                r#"is not a rate: write e.g. "100/s", "10/m", "5000/h" or "100000/d" (1 to {MAX_RATE_COUNT} requests)"#
            )
        };
        let (count, unit) = text.split_once('/').ok_or_else(err)?;
        let count: u32 = count.trim().parse().map_err(|_| err())?;
        if count == 0 || count > MAX_RATE_COUNT {
            return Err(err());
        }
        let period = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3_600),
            "d" | "day" => Duration::from_secs(86_400),
            _ => return Err(err()),
        };
        Ok(Rate { count, period })
    }
}

/// A token bucket enforced with GCRA: `rate` sustained, up to `burst`
/// requests at once (`burst` ≥ 1).
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bucket {
    pub rate: Rate,
    pub burst: u32,
}

/// Calendar periods of quotas, in UTC.
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    Month,
}

/// At most `limit` requests per calendar `period` (`limit` ≥ 1).
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    pub period: Period,
    pub limit: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    Bucket(Bucket),
    Quota(Quota),
}

/// Whose requests a counter counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    All,
    Consumer(Arc<str>),
    ClientIp(IpAddr),
}

/// The stable identity of one counter. `policy` is built by the caller
/// from the limit's place and definition, so a counter survives a config
/// reload exactly when its definition did not change.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LimitKey {
    pub policy: Arc<str>,
    pub subject: Subject,
}

/// How a shared store keeps a rate limit (quotas are always exact).
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum Accuracy {
    /// Checked and charged in the shared store on every request.
    Exact,
    /// Decided on a local bucket whose charges reach the shared store in
    /// batches; over the limit by a published bound at most.
    #[default]
    Approximate,
    /// Kept by each instance even with a shared store: failed-attempt
    /// damping, peeked at on every guarded request (a round trip each
    /// would cost more than it protects).
    PerInstance,
}

/// One limit to apply to one request.
#[derive(Debug, Clone)]
pub struct Check {
    pub key: LimitKey,
    pub limit: Limit,
    /// How a shared store keeps it; a local store ignores it.
    pub accuracy: Accuracy,
}

/// The state of one check after the decision, for the response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckState {
    /// Requests still allowed right now (bucket: whole tokens left; quota:
    /// the limit minus what was used).
    pub remaining: u64,
    /// Seconds until the counter is back to full (bucket: refilled; quota:
    /// the end of the period), rounded up.
    pub reset_secs: u64,
}

/// What the store decided about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every check allowed it; one state per check, in order.
    Allowed(SmallVec<[CheckState; 4]>),
    /// Check `index` denied it; `retry_after_secs` (≥ 1) is when that
    /// check would allow one request again. `states` has one entry per
    /// check, as they stand after the decision (nothing was charged).
    Denied {
        index: usize,
        retry_after_secs: u64,
        states: SmallVec<[CheckState; 4]>,
    },
    /// The store could not decide (a shared store unreachable, and its
    /// `on_error` is `deny`): the request is refused, not for its own
    /// sake (503).
    Unavailable,
}

/// Where counters live: per instance ([`LocalStore`]) or shared by a fleet
/// (`crate::limit_store`, in Redis), which is why it is async and takes
/// every check of a request at once (one round trip). A shared store that
/// cannot be reached answers as its `on_error` says: per-instance limits,
/// allowed, or [`Outcome::Unavailable`].
#[async_trait::async_trait]
pub trait LimitStore: Send + Sync + 'static {
    /// Count one request against every check at `now_nanos` (Unix time,
    /// ns). If any check denies, the request is denied and none of the
    /// checks stays charged.
    async fn acquire(&self, checks: &[Check], now_nanos: u64) -> Outcome;

    /// What `acquire` would decide now, charging nothing.
    async fn peek(&self, checks: &[Check], now_nanos: u64) -> Outcome;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        let r = Rate::parse("100/s").unwrap();
        assert_eq!((r.count, r.period), (100, Duration::from_secs(1)));
        assert_eq!(
            Rate::parse(" 10 / minute ").unwrap().period,
            Duration::from_secs(60)
        );
        assert_eq!(
            Rate::parse("5000/h").unwrap().period,
            Duration::from_secs(3_600)
        );
        assert_eq!(
            Rate::parse("1/day").unwrap().period,
            Duration::from_secs(86_400)
        );
        assert_eq!(Rate::parse("1000000000/s").unwrap().count, MAX_RATE_COUNT);
        for bad in [
            "",
            "100",
            "0/s",
            "-1/s",
            "1.5/s",
            "10/fortnight",
            "10/",
            "/s",
            "1000000001/s",
            "99999999999999999999/s",
            "10/s/s",
        ] {
            let e = Rate::parse(bad).unwrap_err();
            assert!(e.starts_with("is not a rate: write e.g."), "{bad}: {e}");
        }
    }
}
