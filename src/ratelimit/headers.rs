//! The `RateLimit-Policy` and `RateLimit` response fields of the IETF
//! httpapi draft (draft-ietf-httpapi-ratelimit-headers, the versions with
//! two fields), as structured-field lists:
//!
//! - `RateLimit-Policy: "consumer";q=200;w=2, "daily-quota";q=10000;w=86400`:
//!   each policy's quota `q` and window `w` in seconds. For a token bucket,
//!   `q` is the burst and `w` the time to refill it; for a quota, the limit
//!   and the length of the calendar period.
//! - `RateLimit: "consumer";r=150;t=1`: requests remaining `r` and seconds
//!   `t` until the policy is back to full.

use std::fmt::Write;

use http::HeaderValue;

use super::gcra::Gcra;
use super::quota::Window;
use super::{CheckState, Limit};

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// `RateLimit-Policy` for `policies` (name, limit) at `now_nanos`.
pub fn policy_value(policies: &[(&str, Limit)], now_nanos: u64) -> HeaderValue {
    let mut out = String::with_capacity(policies.len() * 32);
    for (i, (name, limit)) in policies.iter().enumerate() {
        let (q, w) = match limit {
            Limit::Bucket(b) => (
                u64::from(b.burst),
                Gcra::of(b).refill_nanos().div_ceil(NANOS_PER_SEC).max(1),
            ),
            Limit::Quota(q) => (
                q.limit,
                Window::of(q.period, now_nanos / NANOS_PER_SEC).length(),
            ),
        };
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{};q={q};w={w}", sf_string(name));
    }
    value(out)
}

/// `RateLimit` for `states` (name, state).
pub fn ratelimit_value(states: &[(&str, CheckState)]) -> HeaderValue {
    let mut out = String::with_capacity(states.len() * 24);
    for (i, (name, s)) in states.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(
            out,
            "{};r={};t={}",
            sf_string(name),
            s.remaining,
            s.reset_secs
        );
    }
    value(out)
}

/// A structured-field string: quoted, `"` and `\` escaped, printable ASCII only.
fn sf_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars().filter(|c| (' '..='~').contains(c)) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn value(s: String) -> HeaderValue {
    // Printable ASCII by construction.
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::{Bucket, Period, Quota, Rate};
    use std::time::Duration;

    /// 2026-02-10T00:00:00Z
    const FEB: u64 = 1_770_681_600 * NANOS_PER_SEC;

    #[test]
    fn policy_and_state_fields() {
        let bucket = Limit::Bucket(Bucket {
            rate: Rate {
                count: 100,
                period: Duration::from_secs(1),
            },
            burst: 200,
        });
        let day = Limit::Quota(Quota {
            period: Period::Day,
            limit: 10_000,
        });
        let month = Limit::Quota(Quota {
            period: Period::Month,
            limit: 5,
        });
        assert_eq!(
            policy_value(
                &[("consumer", bucket), ("daily-quota", day), ("m", month)],
                FEB
            ),
            "\"consumer\";q=200;w=2, \"daily-quota\";q=10000;w=86400, \"m\";q=5;w=2419200"
        );
        let s = CheckState {
            remaining: 150,
            reset_secs: 1,
        };
        assert_eq!(
            ratelimit_value(&[("consumer", s), ("a\"b", s)]),
            "\"consumer\";r=150;t=1, \"a\\\"b\";r=150;t=1"
        );
        assert_eq!(ratelimit_value(&[]), "");
    }
}
