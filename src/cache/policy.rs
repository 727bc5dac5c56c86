//! RFC 9111 as a shared cache applies it, case by case: may a response be
//! stored (§3), for how long is it fresh (§4.2.1), how old is it (§4.2.3),
//! may it be served stale (§4.2.4, RFC 5861), and what does the request's
//! own `Cache-Control` ask (§5.2.1). Pure functions of their inputs and
//! `now`, so every rule is unit-tested without a clock.
//!
//! Beyond the RFC, by the gateway's contract: responses with `Set-Cookie`
//! are never stored, nor `Vary: *` ones (they could never be used).

use std::time::{Duration, SystemTime};

use http::header;
use pingora_cache::cache_control::{CacheControl, DirectiveKey, InterpretCacheControl};
use pingora_cache::{CacheMeta, NoCacheReason, RespCacheable};
use pingora_http::{RequestHeader, ResponseHeader};

use crate::config::model::RouteCache;

/// Status codes a cache may give heuristic (here: `ttl`) freshness to
/// (RFC 9110 §15.1).
const HEURISTIC_STATUSES: [u16; 11] = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];

/// Why a response was not stored, for `Cache-Status: detail=`.
pub fn reason_text(reason: &NoCacheReason) -> &'static str {
    match reason {
        NoCacheReason::Custom(s) => s,
        NoCacheReason::OriginNotCache => "origin-not-cacheable",
        NoCacheReason::ResponseTooLarge | NoCacheReason::PredictedResponseTooLarge => "too-large",
        _ => "not-stored",
    }
}

/// Everything about the exchange the storing decision needs.
pub struct Exchange<'a> {
    pub request: &'a RequestHeader,
    pub response: &'a ResponseHeader,
    /// The request's `Authorization` reaches the backend (it is not the
    /// gateway's own API key, which the backend never sees).
    pub authorization_forwarded: bool,
    /// When the request went upstream (for the age correction).
    pub request_time: SystemTime,
    pub now: SystemTime,
}

/// May the response be stored, and with which freshness (§3, §4.2)?
pub fn response_cacheable(x: &Exchange<'_>, settings: &RouteCache) -> RespCacheable {
    let resp = x.response;
    let status = resp.status.as_u16();
    let uncacheable = |why: &'static str| RespCacheable::Uncacheable(NoCacheReason::Custom(why));
    if request_directives(x.request).no_store {
        return uncacheable("request-no-store");
    }
    // Final responses only; 206 and 304 are never stored as such.
    if status < 200 || status == 206 || status == 304 {
        return uncacheable("status");
    }
    let Directives { cc, targeted } = directives(resp, settings);
    if cc.as_ref().is_some_and(|c| c.no_store()) {
        return uncacheable("no-store");
    }
    if cc.as_ref().is_some_and(|c| c.private()) {
        return uncacheable("private");
    }
    if resp.headers.contains_key(header::SET_COOKIE) {
        return uncacheable("set-cookie");
    }
    if crate::cache::key::varies_on_everything(&resp.headers) {
        return uncacheable("vary-star");
    }
    if x.authorization_forwarded
        && !cc
            .as_ref()
            .is_some_and(|c| c.allow_caching_authorized_req())
    {
        return uncacheable("authorization");
    }
    if let Some(len) = content_length(resp) {
        if len > settings.max_object_size {
            return RespCacheable::Uncacheable(NoCacheReason::ResponseTooLarge);
        }
    }

    let public = cc.as_ref().is_some_and(|c| c.public());
    let no_cache = cc.as_ref().is_some_and(|c| c.no_cache());
    // `no-cache`: stored, but always stale (§5.2.2.4).
    let lifetime = if no_cache {
        Duration::ZERO
    } else {
        match explicit_lifetime(cc.as_ref(), resp, x.now, targeted) {
            Some(l) => l,
            // A heuristic (the route's `ttl`) only where the RFC allows one.
            None => match settings.ttl {
                Some(ttl) if public || HEURISTIC_STATUSES.contains(&status) => ttl,
                _ => return uncacheable("no-freshness"),
            },
        }
    };
    if lifetime.is_zero() && !has_validator(resp) {
        // Always stale and nothing to revalidate with: storing is useless.
        return uncacheable("always-stale");
    }

    // The response is already this old (§4.2.3); the stored object's age
    // counts from `created`.
    let age = initial_age(resp, x.request_time, x.now);
    let created = x.now.checked_sub(age).unwrap_or(x.now);
    let fresh_until = if lifetime.is_zero() {
        // §5.2.2.4: stale at once, so every use revalidates.
        created
            .checked_sub(Duration::from_secs(1))
            .unwrap_or(created)
    } else {
        created + lifetime
    };

    let (swr, sie) = stale_windows(cc.as_ref(), settings, no_cache);
    let mut header = resp.clone();
    if let Some(c) = &cc {
        c.strip_private_headers(&mut header);
    }
    // Hop-by-hop and per-response fields are not part of what is stored.
    header.remove_header(&header::AGE);
    RespCacheable::Cacheable(CacheMeta::new(fresh_until, created, swr, sie, header))
}

fn content_length(resp: &ResponseHeader) -> Option<u64> {
    resp.headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn has_validator(resp: &ResponseHeader) -> bool {
    resp.headers.contains_key(header::ETAG) || resp.headers.contains_key(header::LAST_MODIFIED)
}

fn date_of(resp: &ResponseHeader, name: header::HeaderName) -> Option<SystemTime> {
    let mut values = resp.headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    httpdate::parse_http_date(first.to_str().ok()?).ok()
}

/// The cache directives the gateway's own storage follows, and whether
/// they came from a targeted field.
pub struct Directives {
    pub cc: Option<CacheControl>,
    /// From `targeted_cache_control` or `CDN-Cache-Control`: then
    /// `Cache-Control` and `Expires` are ignored (RFC 9213 §2.2).
    pub targeted: bool,
}

/// RFC 9213: the first targeted field present with a valid, non-empty
/// value (the route's own `targeted_cache_control`, then
/// `CDN-Cache-Control` unless turned off) replaces `Cache-Control` and
/// `Expires` for the gateway's storage; else `Cache-Control`.
pub fn directives(resp: &ResponseHeader, settings: &RouteCache) -> Directives {
    let targeted = settings
        .targeted_cache_control
        .as_deref()
        .into_iter()
        .chain(settings.cdn_cache_control.then_some("cdn-cache-control"));
    for name in targeted {
        let mut values = resp.headers.get_all(name).iter().peekable();
        if values.peek().is_none() {
            continue;
        }
        let joined: Vec<&[u8]> = values.map(|v| v.as_bytes()).collect();
        if is_sf_dictionary(&joined.join(&b","[..])) {
            let mut cc = CacheControl::from_resp_headers_named(name, resp);
            if let Some(cc) = cc.as_mut() {
                // A structured field types its values: `max-age="60"` is a
                // string, not seconds, so the directive does not count.
                for key in [
                    "max-age",
                    "s-maxage",
                    "stale-while-revalidate",
                    "stale-if-error",
                ] {
                    let key = DirectiveKey::from_lowercase(key);
                    let quoted = cc.directives.get(&key).is_some_and(|v| {
                        v.as_ref()
                            .is_some_and(|v| v.as_ref().first() == Some(&b'"'))
                    });
                    if quoted {
                        cc.directives.remove(&key);
                    }
                }
            }
            return Directives { cc, targeted: true };
        }
    }
    Directives {
        cc: CacheControl::from_resp_headers(resp),
        targeted: false,
    }
}

/// A non-empty Structured Fields dictionary (RFC 8941 §3.2), as targeted
/// fields must be: `key[=value][;param]`, comma-separated; keys lower
/// case; values integers, decimals, strings, tokens, byte sequences or
/// booleans. Anything else invalidates the whole field.
fn is_sf_dictionary(v: &[u8]) -> bool {
    let text = match std::str::from_utf8(v) {
        Ok(t) => t.trim_matches(|c| c == ' ' || c == '\t'),
        Err(_) => return false,
    };
    !text.is_empty()
        && text.split(',').all(|member| {
            let member = member.trim_matches(|c| c == ' ' || c == '\t');
            let mut parts = member.split(';');
            let item = parts.next().unwrap_or_default();
            sf_member(item) && parts.all(|p| sf_member(p.trim_start_matches(' ')))
        })
}

/// `key` or `key=bare-item`.
fn sf_member(m: &str) -> bool {
    let (key, value) = match m.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (m, None),
    };
    let key_ok = key
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'*')
        && key.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.' | b'*')
        });
    key_ok && value.is_none_or(sf_bare_item)
}

fn sf_bare_item(v: &str) -> bool {
    let b = v.as_bytes();
    match b.first() {
        Some(b'"') => {
            b.len() >= 2
                && b.ends_with(b"\"")
                && b[1..b.len() - 1].iter().all(|c| (0x20..0x7f).contains(c))
        }
        Some(b':') => b.len() >= 2 && b.ends_with(b":"),
        Some(b'?') => v == "?0" || v == "?1",
        Some(c) if c.is_ascii_digit() || *c == b'-' => {
            let digits = v.strip_prefix('-').unwrap_or(v);
            let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
            !int.is_empty()
                && int.len() <= 15
                && int.bytes().all(|c| c.is_ascii_digit())
                && frac.len() <= 3
                && frac.bytes().all(|c| c.is_ascii_digit())
                && !(digits.contains('.') && frac.is_empty())
        }
        Some(c) if c.is_ascii_alphabetic() || *c == b'*' => b
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(c)),
        _ => false,
    }
}

/// §4.2.1: `s-maxage`, else `max-age`, else `Expires` − `Date` (not with
/// a targeted field). An invalid or repeated `Expires` means "already
/// expired".
fn explicit_lifetime(
    cc: Option<&CacheControl>,
    resp: &ResponseHeader,
    now: SystemTime,
    targeted: bool,
) -> Option<Duration> {
    if let Some(c) = cc {
        if let Ok(Some(s)) = c.s_maxage() {
            return Some(Duration::from_secs(s.into()));
        }
        if let Ok(Some(s)) = c.max_age() {
            return Some(Duration::from_secs(s.into()));
        }
    }
    if targeted || !resp.headers.contains_key(header::EXPIRES) {
        return None;
    }
    let Some(expires) = date_of(resp, header::EXPIRES) else {
        return Some(Duration::ZERO);
    };
    let date = date_of(resp, header::DATE).unwrap_or(now);
    Some(expires.duration_since(date).unwrap_or(Duration::ZERO))
}

/// §4.2.3: `corrected_initial_age = max(apparent_age, Age + response_delay)`,
/// in whole seconds like the clocks it compares (`Date` has no fractions:
/// a sub-second apparent age would eat into a short `max-age`).
pub fn initial_age(resp: &ResponseHeader, request_time: SystemTime, now: SystemTime) -> Duration {
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    let apparent = date_of(resp, header::DATE)
        .map(|d| secs(now).saturating_sub(secs(d)))
        .unwrap_or(0);
    // The first value of a list (`Age: 7200, 0`, §5.1); an invalid one
    // is ignored.
    let age_value = resp
        .headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next()?.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let delay = now.duration_since(request_time).map_or(0, |d| d.as_secs());
    Duration::from_secs(apparent.max(age_value.saturating_add(delay)))
}

/// Seconds a stale object may be served while one request refreshes it,
/// and when the backend fails. The response's own `stale-while-revalidate`
/// / `stale-if-error` win over the route's; `must-revalidate`,
/// `proxy-revalidate`, `s-maxage` (§5.2.2.10) and `no-cache` forbid both.
fn stale_windows(cc: Option<&CacheControl>, settings: &RouteCache, no_cache: bool) -> (u32, u32) {
    let secs = |d: Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
    let forbidden = no_cache
        || cc.is_some_and(|c| {
            c.must_revalidate() || c.proxy_revalidate() || matches!(c.s_maxage(), Ok(Some(_)))
        });
    if forbidden {
        return (0, 0);
    }
    let swr = cc
        .and_then(|c| c.stale_while_revalidate().ok().flatten())
        .unwrap_or_else(|| secs(settings.stale_while_revalidate));
    let sie = cc
        .and_then(|c| c.stale_if_error().ok().flatten())
        .unwrap_or_else(|| secs(settings.stale_if_error));
    (swr, sie)
}

/// Whether a stored response may never be served stale:
/// `must-revalidate`, `proxy-revalidate`, `s-maxage` or `no-cache` in the
/// directives the gateway follows for it.
pub fn forbids_stale(resp: &ResponseHeader, settings: &RouteCache) -> bool {
    directives(resp, settings).cc.is_some_and(|c| {
        c.must_revalidate()
            || c.proxy_revalidate()
            || c.no_cache()
            || matches!(c.s_maxage(), Ok(Some(_)))
    })
}

/// What the request's `Cache-Control` (or `Pragma: no-cache`) asks of the
/// cache (§5.2.1).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RequestDirectives {
    /// `no-cache` or `max-age=0`: only a response validated with the
    /// origin will do.
    pub revalidate: bool,
    /// `max-age=N`: nothing older.
    pub max_age: Option<u32>,
    /// `min-fresh=N`: fresh for at least N more seconds.
    pub min_fresh: Option<u32>,
    /// `max-stale[=N]`: stale is acceptable (for N seconds past freshness).
    pub max_stale: Option<u32>,
    pub no_store: bool,
    /// `only-if-cached`: never forward; 504 when nothing stored will do.
    pub only_if_cached: bool,
}

pub fn request_directives(req: &RequestHeader) -> RequestDirectives {
    let Some(cc) = CacheControl::from_req_headers(req) else {
        let pragma = req
            .headers
            .get_all(header::PRAGMA)
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(b"no-cache"));
        return RequestDirectives {
            revalidate: pragma,
            ..Default::default()
        };
    };
    let seconds = |name: &str| {
        cc.directives
            .get(&DirectiveKey::from_lowercase(name))
            .map(|v| {
                v.as_ref()
                    .and_then(|v| v.parse_as_delta_seconds().ok())
                    .unwrap_or(u32::MAX)
            })
    };
    let max_age = cc.max_age().ok().flatten();
    RequestDirectives {
        revalidate: cc.has_key("no-cache") || max_age == Some(0),
        max_age,
        min_fresh: seconds("min-fresh"),
        max_stale: seconds("max-stale"),
        no_store: cc.no_store(),
        only_if_cached: cc.only_if_cached(),
    }
}

/// What to do with a stored object given the request's directives:
/// `Some(true)` use it as fresh, `Some(false)` treat it as stale,
/// `None` as its own freshness says.
pub fn request_override(
    d: &RequestDirectives,
    meta: &CacheMeta,
    settings: &RouteCache,
    now: SystemTime,
) -> Option<bool> {
    if d.revalidate {
        return Some(false);
    }
    let age = now
        .duration_since(meta.epoch())
        .unwrap_or_default()
        .as_secs();
    if d.max_age.is_some_and(|m| age > u64::from(m)) {
        return Some(false);
    }
    let fresh_until = meta.fresh_until();
    if let Some(min) = d.min_fresh {
        let left = fresh_until
            .duration_since(now)
            .unwrap_or_default()
            .as_secs();
        if left < u64::from(min) {
            return Some(false);
        }
    }
    if let Some(max_stale) = d.max_stale {
        let stale_for = now.duration_since(fresh_until).map(|d| d.as_secs());
        if let Ok(s) = stale_for {
            // Within the request's own bound, unless the stored response
            // forbids serving it stale (§5.2.2.2, §5.2.2.8, §5.2.2.10):
            // max-stale cannot override that.
            if s <= u64::from(max_stale) && !forbids_stale(meta.response_header(), settings) {
                return Some(true);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::CacheKeySpec;

    fn settings(ttl: Option<u64>) -> RouteCache {
        RouteCache {
            ttl: ttl.map(Duration::from_secs),
            max_object_size: 1000,
            stale_while_revalidate: Duration::from_secs(10),
            stale_if_error: Duration::from_secs(300),
            shared: false,
            key: CacheKeySpec::default(),
            cdn_cache_control: true,
            targeted_cache_control: Some("portcullis-cache-control".into()),
        }
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn resp(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    /// Seconds of freshness left at `now`, or the reason it is not stored.
    fn decide(
        status: u16,
        headers: &[(&str, &str)],
        ttl: Option<u64>,
        auth: bool,
    ) -> Result<(i64, u32, u32), &'static str> {
        let response = resp(status, headers);
        let request = req(&[]);
        let x = Exchange {
            request: &request,
            response: &response,
            authorization_forwarded: auth,
            request_time: now(),
            now: now(),
        };
        match response_cacheable(&x, &settings(ttl)) {
            RespCacheable::Cacheable(meta) => {
                let left = match meta.fresh_until().duration_since(now()) {
                    Ok(d) => d.as_secs() as i64,
                    Err(e) => -(e.duration().as_secs() as i64),
                };
                Ok((
                    left,
                    meta.stale_while_revalidate_sec(),
                    meta.stale_if_error_sec(),
                ))
            }
            RespCacheable::Uncacheable(r) => Err(reason_text(&r)),
        }
    }

    #[test]
    fn freshness_comes_from_s_maxage_then_max_age_then_expires_then_ttl() {
        let date = httpdate::fmt_http_date(now());
        let expires = httpdate::fmt_http_date(now() + Duration::from_secs(120));
        assert_eq!(
            decide(
                200,
                &[("cache-control", "max-age=60, s-maxage=30")],
                None,
                false
            ),
            Ok((30, 0, 0))
        );
        assert_eq!(
            decide(200, &[("cache-control", "max-age=60")], None, false),
            Ok((60, 10, 300))
        );
        assert_eq!(
            decide(200, &[("date", &date), ("expires", &expires)], None, false).map(|r| r.0),
            Ok(120)
        );
        assert_eq!(decide(200, &[], Some(5), false).map(|r| r.0), Ok(5));
        assert_eq!(decide(200, &[], None, false), Err("no-freshness"));
        // ttl is a heuristic: not for a 500 unless public.
        assert_eq!(decide(500, &[], Some(5), false), Err("no-freshness"));
        assert_eq!(
            decide(500, &[("cache-control", "public")], Some(5), false).map(|r| r.0),
            Ok(5)
        );
        // An invalid Expires is already expired; without a validator, useless.
        assert_eq!(
            decide(200, &[("expires", "0")], Some(5), false),
            Err("always-stale")
        );
    }

    #[test]
    fn age_and_date_count_against_freshness() {
        let old_date = httpdate::fmt_http_date(now() - Duration::from_secs(20));
        assert_eq!(
            decide(
                200,
                &[("cache-control", "max-age=60"), ("age", "15")],
                None,
                false
            )
            .map(|r| r.0),
            Ok(45)
        );
        assert_eq!(
            decide(
                200,
                &[
                    ("cache-control", "max-age=60"),
                    ("date", &old_date),
                    ("age", "5")
                ],
                None,
                false
            )
            .map(|r| r.0),
            Ok(40)
        );
    }

    #[test]
    fn never_stored() {
        for (cc, why) in [
            ("no-store", "no-store"),
            ("private", "private"),
            ("private, max-age=60", "private"),
        ] {
            assert_eq!(
                decide(200, &[("cache-control", cc)], Some(60), false),
                Err(why)
            );
        }
        assert_eq!(
            decide(
                200,
                &[("cache-control", "max-age=60"), ("set-cookie", "a=b")],
                None,
                false
            ),
            Err("set-cookie")
        );
        assert_eq!(
            decide(
                200,
                &[("cache-control", "max-age=60"), ("vary", "*")],
                None,
                false
            ),
            Err("vary-star")
        );
        assert_eq!(
            decide(206, &[("cache-control", "max-age=60")], None, false),
            Err("status")
        );
        assert_eq!(
            decide(
                200,
                &[("cache-control", "max-age=60"), ("content-length", "1001")],
                None,
                false
            ),
            Err("too-large")
        );
    }

    #[test]
    fn authorization_needs_public_s_maxage_or_must_revalidate() {
        assert_eq!(
            decide(200, &[("cache-control", "max-age=60")], None, true),
            Err("authorization")
        );
        for cc in [
            "public, max-age=60",
            "s-maxage=60",
            "must-revalidate, max-age=60",
        ] {
            assert!(
                decide(200, &[("cache-control", cc)], None, true).is_ok(),
                "{cc}"
            );
        }
    }

    #[test]
    fn no_cache_is_stored_stale_and_never_served_stale() {
        let (left, swr, sie) = decide(
            200,
            &[("cache-control", "no-cache, max-age=60"), ("etag", "\"1\"")],
            None,
            false,
        )
        .unwrap();
        assert!(left < 0);
        assert_eq!((swr, sie), (0, 0));
        assert_eq!(
            decide(200, &[("cache-control", "no-cache")], None, false),
            Err("always-stale")
        );
        let (_, swr, sie) = decide(
            200,
            &[("cache-control", "max-age=5, must-revalidate")],
            None,
            false,
        )
        .unwrap();
        assert_eq!((swr, sie), (0, 0));
        let (_, swr, sie) = decide(
            200,
            &[(
                "cache-control",
                "max-age=5, stale-while-revalidate=3, stale-if-error=7",
            )],
            None,
            false,
        )
        .unwrap();
        assert_eq!((swr, sie), (3, 7));
    }

    #[test]
    fn request_directives_are_read() {
        assert!(request_directives(&req(&[("cache-control", "no-cache")])).revalidate);
        assert!(request_directives(&req(&[("cache-control", "max-age=0")])).revalidate);
        assert!(request_directives(&req(&[("pragma", "no-cache")])).revalidate);
        let d = request_directives(&req(&[("cache-control", "only-if-cached, max-stale")]));
        assert!(d.only_if_cached && d.max_stale == Some(u32::MAX));
        assert!(request_directives(&req(&[("cache-control", "no-store")])).no_store);

        let meta = CacheMeta::new(
            now() + Duration::from_secs(30),
            now() - Duration::from_secs(30),
            0,
            0,
            resp(200, &[]),
        );
        let at = now();
        let s = settings(None);
        let d = |cc: &str| request_directives(&req(&[("cache-control", cc)]));
        assert_eq!(
            request_override(&d("max-age=10"), &meta, &s, at),
            Some(false)
        );
        assert_eq!(request_override(&d("max-age=100"), &meta, &s, at), None);
        assert_eq!(
            request_override(&d("min-fresh=60"), &meta, &s, at),
            Some(false)
        );
    }

    #[test]
    fn max_stale_is_honoured_within_its_bound_unless_the_response_forbids_it() {
        let s = settings(None);
        let stale_by_10s = |cc: &str| {
            CacheMeta::new(
                now() - Duration::from_secs(10),
                now() - Duration::from_secs(70),
                0,
                0,
                resp(200, &[("cache-control", cc)]),
            )
        };
        let d = |cc: &str| request_directives(&req(&[("cache-control", cc)]));
        // No stale window configured or sent: the request's own bound.
        assert_eq!(
            request_override(&d("max-stale=20"), &stale_by_10s("max-age=60"), &s, now()),
            Some(true)
        );
        assert_eq!(
            request_override(&d("max-stale"), &stale_by_10s("max-age=60"), &s, now()),
            Some(true)
        );
        assert_eq!(
            request_override(&d("max-stale=5"), &stale_by_10s("max-age=60"), &s, now()),
            None
        );
        for forbids in [
            "max-age=60, must-revalidate",
            "max-age=60, proxy-revalidate",
            "s-maxage=60",
            "no-cache",
        ] {
            assert_eq!(
                request_override(&d("max-stale"), &stale_by_10s(forbids), &s, now()),
                None,
                "{forbids}"
            );
        }
    }

    #[test]
    fn the_first_value_of_an_age_list_counts() {
        let r = resp(200, &[("age", "7200, 0")]);
        assert_eq!(initial_age(&r, now(), now()), Duration::from_secs(7200));
        let r = resp(200, &[("age", "junk")]);
        assert_eq!(initial_age(&r, now(), now()), Duration::ZERO);
    }

    #[test]
    fn a_targeted_field_replaces_cache_control_and_expires() {
        let s = settings(None);
        let lifetime = |headers: &[(&str, &str)]| {
            decide(200, headers, None, false)
                .ok()
                .map(|(fresh, _, _)| fresh)
        };
        // CDN-Cache-Control wins over Cache-Control, both ways.
        assert_eq!(
            lifetime(&[
                ("cache-control", "no-store"),
                ("cdn-cache-control", "max-age=30")
            ]),
            Some(30)
        );
        assert_eq!(
            lifetime(&[
                ("cache-control", "max-age=300"),
                ("cdn-cache-control", "no-store")
            ]),
            None
        );
        // A string where seconds belong: no freshness from it (and
        // Cache-Control is still ignored).
        assert_eq!(
            lifetime(&[
                ("cache-control", "max-age=60"),
                ("cdn-cache-control", "max-age=\"10000\"")
            ]),
            None
        );
        // Expires is ignored with a targeted field.
        assert_eq!(
            lifetime(&[
                ("expires", "Thu, 01 Jan 2099 00:00:00 GMT"),
                ("cdn-cache-control", "public")
            ]),
            None
        );
        // The gateway's own field wins over CDN-Cache-Control.
        assert_eq!(
            lifetime(&[
                ("cdn-cache-control", "max-age=30"),
                ("portcullis-cache-control", "max-age=90")
            ]),
            Some(90)
        );
        // An invalid targeted field is ignored: Cache-Control applies.
        for invalid in [
            "max-age=\"60\"x",
            "Max-Age=60",
            "max-age=6 0",
            "",
            "max-age=60,,",
        ] {
            assert_eq!(
                lifetime(&[
                    ("cache-control", "max-age=10"),
                    ("cdn-cache-control", invalid)
                ]),
                Some(10),
                "{invalid:?}"
            );
        }
        // Turned off: Cache-Control applies.
        let mut off = s.clone();
        off.cdn_cache_control = false;
        off.targeted_cache_control = None;
        let r = resp(
            200,
            &[
                ("cache-control", "max-age=10"),
                ("cdn-cache-control", "max-age=30"),
            ],
        );
        assert!(!directives(&r, &off).targeted);
        assert!(directives(&r, &s).targeted);
    }
}
