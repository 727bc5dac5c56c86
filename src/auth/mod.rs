//! API-key authentication: reading the key from where the route says,
//! finding its consumer by digest, checking validity and scope, and taking
//! the key off the request before it goes upstream.
//!
//! The key itself lives only in the request being processed: it is hashed
//! at once and never logged, counted or echoed. Logs and the admin API name
//! a key by its non-secret prefix.

pub mod index;

use std::borrow::Cow;

use pingora_error::{OrErr, Result};
use pingora_http::RequestHeader;

use crate::config::model::KeySource;
pub use index::{ConsumerEntry, ConsumerIndex, KeyEntry};

/// Why a request was not let through; the status and the log's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No key where the route reads it.
    Missing,
    /// No consumer has a key with this digest.
    Unknown,
    /// The key's consumer is disabled.
    Disabled,
    /// Past the key's `expires`.
    Expired,
    /// Before the key's `not_before`.
    NotYetValid,
    /// A valid key whose consumer may not call this route or method.
    OutOfScope,
}

impl Rejection {
    /// `401` for a missing or invalid key, `403` for one out of scope.
    pub fn status(self) -> u16 {
        match self {
            Rejection::OutOfScope => 403,
            _ => 401,
        }
    }

    /// Every rejection, in declaration order.
    pub const ALL: [Rejection; 6] = [
        Rejection::Missing,
        Rejection::Unknown,
        Rejection::Disabled,
        Rejection::Expired,
        Rejection::NotYetValid,
        Rejection::OutOfScope,
    ];

    /// [`Rejection::reason`] of each of [`Rejection::ALL`].
    pub const REASONS: [&'static str; 6] = {
        let mut out = [""; 6];
        let mut i = 0;
        while i < out.len() {
            out[i] = Rejection::ALL[i].reason();
            i += 1;
        }
        out
    };

    /// For the access log.
    pub const fn reason(self) -> &'static str {
        match self {
            Rejection::Missing => "missing_key",
            Rejection::Unknown => "unknown_key",
            Rejection::Disabled => "consumer_disabled",
            Rejection::Expired => "key_expired",
            Rejection::NotYetValid => "key_not_yet_valid",
            Rejection::OutOfScope => "out_of_scope",
        }
    }

    /// Whether this counts as a failed key attempt for brute-force
    /// damping: a key was presented and it was not good. (A missing key is
    /// not a guess; a valid key out of scope is not a guess either.)
    pub fn is_failed_attempt(self) -> bool {
        matches!(
            self,
            Rejection::Unknown | Rejection::Disabled | Rejection::Expired | Rejection::NotYetValid
        )
    }
}

/// Who a request was authenticated as.
#[derive(Debug, Clone, Copy)]
pub struct Authenticated<'a> {
    pub consumer_index: u32,
    pub consumer: &'a ConsumerEntry,
    pub key: &'a KeyEntry,
}

/// A refused key, and the key entry when the key is a known one (disabled,
/// expired, not yet valid, out of scope): it names whose key it was.
#[derive(Debug, Clone, Copy)]
pub struct Refused<'a> {
    pub rejection: Rejection,
    pub key: Option<&'a KeyEntry>,
}

/// Authenticate `key` for a call of route index `route` with `method` at
/// `now` (Unix seconds).
pub fn authenticate<'i>(
    index: &'i ConsumerIndex,
    key: Option<&[u8]>,
    route: usize,
    method: &http::Method,
    now: i64,
) -> Result<Authenticated<'i>, Refused<'i>> {
    let unnamed = |rejection| Refused {
        rejection,
        key: None,
    };
    let key = key.ok_or(unnamed(Rejection::Missing))?;
    let entry = index
        .find(&crate::keys::digest(key))
        .ok_or(unnamed(Rejection::Unknown))?;
    let consumer = index
        .consumer(entry.consumer)
        .ok_or(unnamed(Rejection::Unknown))?;
    let named = |rejection| {
        Err(Refused {
            rejection,
            key: Some(entry),
        })
    };
    if consumer.disabled {
        return named(Rejection::Disabled);
    }
    if entry.not_before.is_some_and(|t| now < t) {
        return named(Rejection::NotYetValid);
    }
    if entry.expires.is_some_and(|t| now >= t) {
        return named(Rejection::Expired);
    }
    if !consumer.may_call(route, method) {
        return named(Rejection::OutOfScope);
    }
    Ok(Authenticated {
        consumer_index: entry.consumer,
        consumer,
        key: entry,
    })
}

/// Where a route reads keys, compiled from its [`KeySource`]: the header
/// name is parsed once, not on every request.
#[derive(Debug, Clone)]
pub enum KeyPlace {
    Header(http::HeaderName),
    Bearer,
    Query(String),
}

impl From<&KeySource> for KeyPlace {
    fn from(source: &KeySource) -> KeyPlace {
        match source {
            // Validated as a header name; should that ever fail, the default.
            KeySource::Header(name) => {
                KeyPlace::Header(http::HeaderName::from_bytes(name.as_bytes()).unwrap_or(
                    http::HeaderName::from_static(crate::config::model::DEFAULT_KEY_HEADER),
                ))
            }
            KeySource::Bearer => KeyPlace::Bearer,
            KeySource::Query(name) => KeyPlace::Query(name.clone()),
        }
    }
}

/// The key the client presented where `place` says, if any (an empty
/// value counts as none).
pub fn presented_key<'r>(req: &'r RequestHeader, place: &KeyPlace) -> Option<Cow<'r, [u8]>> {
    let key: Cow<'r, [u8]> = match place {
        KeyPlace::Header(name) => Cow::Borrowed(req.headers.get(name)?.as_bytes().trim_ascii()),
        KeyPlace::Bearer => {
            let value = req.headers.get(http::header::AUTHORIZATION)?.as_bytes();
            let (scheme, token) = split_once(value, b' ')?;
            if !scheme.eq_ignore_ascii_case(b"bearer") {
                return None;
            }
            Cow::Borrowed(token.trim_ascii())
        }
        KeyPlace::Query(name) => {
            let value = query_params(req.uri.query()?)
                .find(|(k, _)| *k == name.as_bytes())
                .map(|(_, v)| v)?;
            // A malformed escape: the value as sent (no key has one).
            crate::target::percent_decode(value, true).unwrap_or(Cow::Borrowed(value))
        }
    };
    (!key.is_empty()).then_some(key)
}

/// Remove the key from the request sent upstream: the header, the
/// `Authorization` header, or every query parameter of that name.
pub fn remove_key(upstream: &mut RequestHeader, place: &KeyPlace) -> Result<()> {
    match place {
        KeyPlace::Header(name) => {
            upstream.remove_header(name);
        }
        KeyPlace::Bearer => {
            upstream.remove_header(&http::header::AUTHORIZATION);
        }
        KeyPlace::Query(name) => {
            let Some(query) = upstream.uri.query() else {
                return Ok(());
            };
            if !query_params(query).any(|(k, _)| k == name.as_bytes()) {
                return Ok(());
            }
            let kept: Vec<&str> = query
                .split('&')
                .filter(|p| p.split('=').next() != Some(name.as_str()))
                .collect();
            let path = upstream.uri.path();
            let pq = if kept.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{}", kept.join("&"))
            };
            let uri: http::Uri = pq.parse().or_err(
                pingora_error::ErrorType::InternalError,
                "rebuilding the request URI without the key",
            )?;
            upstream.set_uri(uri);
        }
    }
    Ok(())
}

fn split_once(value: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let at = value.iter().position(|&b| b == sep)?;
    Some((&value[..at], &value[at + 1..]))
}

/// `name=value` pairs of a query string, undecoded (`name` alone has an
/// empty value).
fn query_params(query: &str) -> impl Iterator<Item = (&[u8], &[u8])> {
    query.split('&').filter(|p| !p.is_empty()).map(|p| {
        let p = p.as_bytes();
        split_once(p, b'=').unwrap_or((p, b""))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", uri.as_bytes(), None).unwrap();
        for (n, v) in headers {
            r.insert_header(n.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn keys_are_read_from_each_source() {
        let header = KeyPlace::from(&KeySource::Header("x-api-key".into()));
        let r = req("/", &[("x-api-key", " k1 ")]);
        assert_eq!(presented_key(&r, &header).as_deref(), Some(&b"k1"[..]));
        assert_eq!(
            presented_key(&req("/", &[("x-api-key", "")]), &header),
            None
        );
        assert_eq!(presented_key(&req("/", &[]), &header), None);

        let r = req("/", &[("authorization", "bEaReR  tok")]);
        assert_eq!(
            presented_key(&r, &KeyPlace::Bearer).as_deref(),
            Some(&b"tok"[..])
        );
        let r = req("/", &[("authorization", "Basic dXNlcjpwYXNz")]);
        assert_eq!(presented_key(&r, &KeyPlace::Bearer), None);

        let q = KeyPlace::Query("api_key".into());
        let r = req("/x?a=1&api_key=pk_ab%2Dc&b", &[]);
        assert_eq!(presented_key(&r, &q).as_deref(), Some(&b"pk_ab-c"[..]));
        assert_eq!(presented_key(&req("/x?api_keyx=1", &[]), &q), None);
        assert_eq!(presented_key(&req("/x?api_key=", &[]), &q), None);
        assert_eq!(
            presented_key(&req("/x?api_key=%", &[]), &q).as_deref(),
            Some(&b"%"[..])
        );
        assert_eq!(
            presented_key(&req("/x?api_key=%4", &[]), &q).as_deref(),
            Some(&b"%4"[..])
        );
    }

    #[test]
    fn keys_are_removed_from_the_upstream_request() {
        let q = KeyPlace::Query("api_key".into());
        let mut r = req("/x?a=1&api_key=secret&b=2&api_key=again", &[]);
        remove_key(&mut r, &q).unwrap();
        assert_eq!(r.uri.to_string(), "/x?a=1&b=2");
        let mut r = req("/x?api_key=secret", &[]);
        remove_key(&mut r, &q).unwrap();
        assert_eq!(r.uri.to_string(), "/x");
        let mut r = req("/x?keep=1", &[]);
        remove_key(&mut r, &q).unwrap();
        assert_eq!(r.uri.to_string(), "/x?keep=1");

        let mut r = req("/", &[("authorization", "Bearer s"), ("x-api-key", "s")]);
        remove_key(&mut r, &KeyPlace::Bearer).unwrap();
        remove_key(
            &mut r,
            &KeyPlace::from(&KeySource::Header("x-api-key".into())),
        )
        .unwrap();
        assert!(r.headers.is_empty());
    }

    #[test]
    fn failed_attempts_and_statuses() {
        assert_eq!(Rejection::OutOfScope.status(), 403);
        assert_eq!(Rejection::Expired.status(), 401);
        assert!(Rejection::Unknown.is_failed_attempt());
        assert!(!Rejection::Missing.is_failed_attempt());
        assert!(!Rejection::OutOfScope.is_failed_attempt());
    }
}
