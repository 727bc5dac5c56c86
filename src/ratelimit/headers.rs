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

use http::HeaderValue;

use super::gcra::Gcra;
use super::quota::Window;
use super::{CheckState, Limit};

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// `RateLimit-Policy` for `policies` (name, limit) at `now_nanos`.
pub fn policy_value<'a>(
    policies: impl IntoIterator<Item = (&'a str, Limit)>,
    now_nanos: u64,
) -> HeaderValue {
    let mut out = Vec::with_capacity(96);
    for (i, (name, limit)) in policies.into_iter().enumerate() {
        let (q, w) = match limit {
            Limit::Bucket(b) => (
                u64::from(b.burst),
                Gcra::of(&b).refill_nanos().div_ceil(NANOS_PER_SEC).max(1),
            ),
            Limit::Quota(q) => (
                q.limit,
                Window::of(q.period, now_nanos / NANOS_PER_SEC).length(),
            ),
        };
        item(&mut out, i, name, [(b"q", q), (b"w", w)]);
    }
    value(out)
}

/// `RateLimit` for `states` (name, state).
pub fn ratelimit_value<'a>(states: impl IntoIterator<Item = (&'a str, CheckState)>) -> HeaderValue {
    let mut out = Vec::with_capacity(64);
    for (i, (name, s)) in states.into_iter().enumerate() {
        item(
            &mut out,
            i,
            name,
            [(b"r", s.remaining), (b"t", s.reset_secs)],
        );
    }
    value(out)
}

/// `, "name";a=1;b=2` (no comma before the first item).
fn item(out: &mut Vec<u8>, index: usize, name: &str, params: [(&[u8; 1], u64); 2]) {
    if index > 0 {
        out.extend_from_slice(b", ");
    }
    sf_string(out, name);
    let mut digits = itoa::Buffer::new();
    for (key, n) in params {
        out.push(b';');
        out.extend_from_slice(key);
        out.push(b'=');
        out.extend_from_slice(digits.format(n).as_bytes());
    }
}

/// A structured-field string: quoted, `"` and `\` escaped, printable ASCII only.
fn sf_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    // Limit names are plain (letters, digits, '-'): copied as they are.
    if s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    for b in s.bytes().filter(|b| (b' '..=b'~').contains(b)) {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

fn value(bytes: Vec<u8>) -> HeaderValue {
    // Printable ASCII by construction.
    HeaderValue::from_maybe_shared(bytes::Bytes::from(bytes))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
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
                [("consumer", bucket), ("daily-quota", day), ("m", month)],
                FEB
            ),
            "\"consumer\";q=200;w=2, \"daily-quota\";q=10000;w=86400, \"m\";q=5;w=2419200"
        );
        let s = CheckState {
            remaining: 150,
            reset_secs: 1,
        };
        assert_eq!(
            ratelimit_value([("consumer", s), ("a\"b", s)]),
            "\"consumer\";r=150;t=1, \"a\\\"b\";r=150;t=1"
        );
        assert_eq!(ratelimit_value([]), "");
    }
}
