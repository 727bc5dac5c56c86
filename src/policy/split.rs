//! `[[routes.split]]`, compiled: which of a route's pools takes a request.
//!
//! 1. A side whose `match` headers the request carries (all of them,
//!    exact values) takes it, first such side in the order written.
//! 2. Otherwise the request gets a bucket in `0..10_000`: from the sticky
//!    cookie the gateway set earlier, from a hash of the sticky header's
//!    value, or at random. Sides own consecutive ranges of buckets in the
//!    order written (5 % = 500 buckets), so a reload that moves weight from
//!    one side to the next moves only the clients in the slice between the
//!    old and the new boundary: a canary grown from 5 to 10 % keeps the
//!    clients it had.
//!
//! The bucket is not a secret: a client that edits its cookie chooses its
//! side, as it could with a `match` header. A split is not access control.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::model::{SplitConfig, Sticky};

/// Buckets in all: weights are percentages, so 100 buckets per percent.
pub const BUCKETS: u16 = 10_000;

#[derive(Debug)]
pub struct Split {
    sides: Box<[Side]>,
    sticky: Option<StickyBy>,
}

#[derive(Debug)]
struct Side {
    /// The first bucket past this side's range.
    upto: u16,
    when: Box<[(HeaderName, HeaderValue)]>,
}

#[derive(Debug)]
enum StickyBy {
    Cookie(String),
    Header(HeaderName),
}

/// Why a request went to its side (the metric's `by` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitBy {
    Match,
    Sticky,
    Weight,
}

impl SplitBy {
    pub fn as_str(self) -> &'static str {
        match self {
            SplitBy::Match => "match",
            SplitBy::Sticky => "sticky",
            SplitBy::Weight => "weight",
        }
    }
}

/// The side a request goes to, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// Index into the route's sides.
    pub side: usize,
    pub by: SplitBy,
    /// A bucket rolled for a client without the sticky cookie: the
    /// response sets it.
    pub set_cookie: Option<u16>,
}

impl Split {
    /// Compiled from a validated config; a name that no longer parses is
    /// left out rather than trusted.
    pub fn build(config: &SplitConfig) -> Split {
        let mut upto = 0u16;
        let sides = config
            .sides
            .iter()
            .map(|s| {
                upto = upto.saturating_add(u16::from(s.weight) * 100).min(BUCKETS);
                Side {
                    upto,
                    when: s
                        .match_headers
                        .iter()
                        .filter_map(|(n, v)| {
                            Some((HeaderName::from_bytes(n.as_bytes()).ok()?, v.parse().ok()?))
                        })
                        .collect(),
                }
            })
            .collect();
        let sticky = match &config.sticky {
            None => None,
            Some(Sticky::Cookie(name)) => Some(StickyBy::Cookie(name.clone())),
            Some(Sticky::Header(name)) => HeaderName::from_bytes(name.as_bytes())
                .ok()
                .map(StickyBy::Header),
        };
        Split { sides, sticky }
    }

    /// The side for a request with `headers`; `roll` is a random bucket
    /// (any `u16`; reduced here) used when nothing else decides.
    pub fn choose(&self, headers: &HeaderMap, roll: u16) -> Choice {
        let matched = self.sides.iter().position(|s| {
            !s.when.is_empty()
                && s.when
                    .iter()
                    .all(|(n, v)| headers.get_all(n).iter().any(|h| h == v))
        });
        if let Some(side) = matched {
            return Choice {
                side,
                by: SplitBy::Match,
                set_cookie: None,
            };
        }
        let rolled = roll % BUCKETS;
        let (bucket, by, set_cookie) = match &self.sticky {
            Some(StickyBy::Cookie(name)) => {
                match crate::cookie::find(headers, name).and_then(parse_bucket) {
                    Some(b) => (b, SplitBy::Sticky, None),
                    None => (rolled, SplitBy::Weight, Some(rolled)),
                }
            }
            Some(StickyBy::Header(name)) => match headers.get(name) {
                Some(v) => (bucket_of(v.as_bytes()), SplitBy::Sticky, None),
                None => (rolled, SplitBy::Weight, None),
            },
            None => (rolled, SplitBy::Weight, None),
        };
        Choice {
            side: self.side_of(bucket),
            by,
            set_cookie,
        }
    }

    /// The side that owns `bucket`.
    fn side_of(&self, bucket: u16) -> usize {
        self.sides
            .iter()
            .position(|s| bucket < s.upto)
            .unwrap_or(self.sides.len().saturating_sub(1))
    }

    /// `Set-Cookie` for a rolled bucket; `Secure` when the client came
    /// over TLS. A session cookie, readable by no script.
    pub fn cookie(&self, bucket: u16, tls: bool) -> Option<HeaderValue> {
        let Some(StickyBy::Cookie(name)) = &self.sticky else {
            return None;
        };
        let secure = if tls { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{name}={bucket}; Path=/; HttpOnly; SameSite=Lax{secure}"
        ))
        .ok()
    }
}

fn parse_bucket(text: &str) -> Option<u16> {
    let b: u16 = text.trim_matches('"').parse().ok()?;
    (b < BUCKETS).then_some(b)
}

/// A stable bucket for a sticky header's value: the same on every
/// instance and across restarts and versions (FNV-1a, then a finaliser so
/// that similar values spread).
fn bucket_of(value: &[u8]) -> u16 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in value {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    // Below 10,000, so the cast keeps every bit.
    (h % u64::from(BUCKETS)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::SplitSide;

    fn split(weights: &[(u8, &[(&str, &str)])], sticky: Option<Sticky>) -> Split {
        Split::build(&SplitConfig {
            sides: weights
                .iter()
                .enumerate()
                .map(|(i, (w, m))| SplitSide {
                    pool: format!("p{i}"),
                    weight: *w,
                    match_headers: m
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.to_string()))
                        .collect(),
                })
                .collect(),
            sticky,
        })
    }

    #[test]
    fn buckets_map_to_sides_in_order() {
        let s = split(&[(5, &[]), (95, &[])], None);
        let h = HeaderMap::new();
        assert_eq!(s.choose(&h, 0).side, 0);
        assert_eq!(s.choose(&h, 499).side, 0);
        assert_eq!(s.choose(&h, 500).side, 1);
        assert_eq!(s.choose(&h, 9_999).side, 1);
        // Reduced, never out of range.
        assert_eq!(s.choose(&h, u16::MAX).side, 1);
        let zero = split(&[(0, &[]), (100, &[])], None);
        assert!((0..BUCKETS).all(|b| zero.choose(&h, b).side == 1));
    }

    #[test]
    fn a_match_wins_over_weights_and_needs_every_header() {
        let s = split(
            &[(100, &[]), (0, &[("x-canary", "always"), ("x-team", "a")])],
            None,
        );
        let mut h = HeaderMap::new();
        h.insert("x-canary", HeaderValue::from_static("always"));
        assert_eq!(s.choose(&h, 1).side, 0);
        h.insert("x-team", HeaderValue::from_static("a"));
        let c = s.choose(&h, 1);
        assert_eq!((c.side, c.by), (1, SplitBy::Match));
        h.insert("x-canary", HeaderValue::from_static("Always"));
        assert_eq!(s.choose(&h, 1).side, 0, "values are exact");
    }

    #[test]
    fn a_sticky_cookie_is_set_once_and_read_back() {
        let s = split(&[(50, &[]), (50, &[])], Some(Sticky::Cookie("pc".into())));
        let first = s.choose(&HeaderMap::new(), 7_000);
        assert_eq!(
            (first.side, first.by, first.set_cookie),
            (1, SplitBy::Weight, Some(7_000))
        );
        assert_eq!(
            s.cookie(7_000, true).unwrap(),
            "pc=7000; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
        let mut h = HeaderMap::new();
        h.insert("cookie", HeaderValue::from_static("a=b; pc=7000"));
        let again = s.choose(&h, 1);
        assert_eq!(
            (again.side, again.by, again.set_cookie),
            (1, SplitBy::Sticky, None)
        );
        // A damaged or out-of-range cookie is rolled again and replaced.
        for bad in ["pc=10000", "pc=-1", "pc=abc", "pc="] {
            h.insert("cookie", HeaderValue::from_static(bad));
            assert_eq!(s.choose(&h, 3).set_cookie, Some(3), "{bad}");
        }
    }

    #[test]
    fn a_sticky_header_hashes_stably_and_spreads() {
        let s = split(
            &[(30, &[]), (70, &[])],
            Some(Sticky::Header("x-user".into())),
        );
        let mut on_first = 0;
        for i in 0..10_000 {
            let mut h = HeaderMap::new();
            h.insert(
                "x-user",
                HeaderValue::from_str(&format!("user-{i}")).unwrap(),
            );
            let c = s.choose(&h, (i % 100) as u16);
            assert_eq!(c.by, SplitBy::Sticky);
            assert_eq!(c, s.choose(&h, 9_999), "the roll does not matter");
            on_first += usize::from(c.side == 0);
        }
        assert!((2_800..3_200).contains(&on_first), "{on_first}");
        // Fixed values: the hash must not change between versions, or
        // every client moves on upgrade.
        assert_eq!(bucket_of(b"user-1"), bucket_of(b"user-1"));
        assert_eq!(bucket_of(b""), 7_458);
        assert_eq!(bucket_of(b"alice"), bucket_of(b"alice"));
    }

    #[test]
    fn growing_the_first_side_keeps_its_clients() {
        let h = HeaderMap::new();
        let before = split(&[(5, &[]), (95, &[])], None);
        let after = split(&[(10, &[]), (90, &[])], None);
        for b in 0..BUCKETS {
            let (x, y) = (before.choose(&h, b).side, after.choose(&h, b).side);
            if x == 0 {
                assert_eq!(y, 0);
            }
            if y == 1 {
                assert_eq!(x, 1);
            }
        }
    }
}
