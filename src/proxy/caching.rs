//! The cache phases of a request on a caching route, between Pingora's
//! cache machinery and [`crate::cache`]: enable the cache for `GET`/`HEAD`
//! after the request was admitted, compute its key and variance, apply the
//! request's directives to a stored object, decide whether a response is
//! stored, when stale may be served, and what `Cache-Status` says; and
//! the fast path that answers a plain fresh hit before those phases
//! ([`fresh_hit`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::Method;
use pingora_cache::key::HashBinary;
use pingora_cache::{
    CacheKey, CacheMeta, CacheOptionOverrides, CachePhase, ForcedFreshness, RespCacheable,
};
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;

use super::{forward, RequestCtx};
use crate::cache::key::{self, KeyParts};
use crate::cache::policy::{self, RequestDirectives};
use crate::cache::status::CacheOutcome;
use crate::cache::{Purge, RouteCaching, LOCK_WAIT_TIMEOUT};
use crate::config::model::QueryKey;
use crate::metrics::cache::CacheResult;

const CACHE_STATUS: http::HeaderName = http::HeaderName::from_static("cache-status");

/// A request on a caching route.
pub struct CacheCtx {
    pub route: Arc<RouteCaching>,
    directives: RequestDirectives,
    /// Not looked up: the method is not `GET` or `HEAD`.
    method_bypass: bool,
    /// Not looked up: a protocol upgrade.
    upgrade: bool,
    /// Nothing usable was stored (Pingora called `cache_miss`).
    missed: bool,
    /// Why the response was not stored.
    detail: Option<&'static str>,
    /// Served stale because the backend failed.
    stale_if_error: bool,
    /// The backend's `304` to a revalidation, to update the stored header.
    not_modified: Option<Box<ResponseHeader>>,
    outcome: Option<CacheOutcome>,
    /// The key [`fresh_hit`] computed and found nothing fresh under, for
    /// Pingora's lookup (`cache_key_callback`) to use instead of another.
    key: Option<CacheKey>,
    /// Answered by [`fresh_hit`] with an object fresh until then.
    fresh_hit: Option<SystemTime>,
}

impl CacheCtx {
    fn of(route: Arc<RouteCaching>, req: &RequestHeader) -> CacheCtx {
        CacheCtx {
            route,
            directives: policy::request_directives(req),
            method_bypass: !matches!(req.method, Method::GET | Method::HEAD),
            // A protocol upgrade (WebSocket) is never answered from the cache.
            upgrade: req.headers.contains_key(http::header::UPGRADE),
            missed: false,
            detail: None,
            stale_if_error: false,
            not_modified: None,
            outcome: None,
            key: None,
            fresh_hit: None,
        }
    }
}

/// `request_cache_filter`: turn the cache on for this request if its route
/// caches and the method is `GET` or `HEAD`. Runs after authentication,
/// scopes and limits, so an unadmitted request never reaches the cache.
pub fn enable(session: &mut Session, ctx: &mut RequestCtx) {
    let Some(caching) = ctx.route().and_then(|r| r.cache.clone()) else {
        return;
    };
    // Made by `fresh_hit` already when it looked for a fresh object.
    let cache = match &mut ctx.cache {
        Some(cache) => cache,
        None => ctx
            .cache
            .insert(CacheCtx::of(caching.clone(), session.req_header())),
    };
    // Set when the snapshot committed, before it served.
    let Some(store) = caching.store() else {
        return;
    };
    if cache.method_bypass || cache.upgrade {
        return;
    }
    let mut overrides = CacheOptionOverrides::default();
    overrides.wait_timeout = Some(LOCK_WAIT_TIMEOUT);
    overrides.max_lock_retries = Some(3);
    // Called once per request (enabling twice panics in pingora-cache).
    session
        .cache
        .enable(store, None, None, Some(caching.lock), Some(overrides));
}

/// Request fields that make a stored response need more than sending it
/// as it is: a conditional (`304`) or a range (`206`, `416`).
const NOT_AS_STORED: [http::HeaderName; 6] = [
    http::header::RANGE,
    http::header::IF_RANGE,
    http::header::IF_NONE_MATCH,
    http::header::IF_MODIFIED_SINCE,
    http::header::IF_MATCH,
    http::header::IF_UNMODIFIED_SINCE,
];

/// A stored response ready to be sent: the header as Pingora's hit path
/// makes it (`Age`, HTTP/1.1, chunked without a length, `Accept-Ranges`);
/// no body for `HEAD`.
pub struct FreshHit {
    pub header: Box<ResponseHeader>,
    pub body: Option<Bytes>,
}

/// The fast path of a cache hit, in `request_filter` once the request is
/// admitted: a `GET` or `HEAD` without conditionals, ranges or
/// `Cache-Control`/`Pragma` of its own, whose key holds a fresh object
/// without `Vary`, is answered from it without Pingora's cache machinery
/// (its per-request state, lock, lookup future and stored-meta rebuild).
/// Everything else (and every miss) goes the general way, which reuses the
/// key computed here. The key, and so per-consumer entries, is the one
/// `cache_key` computes for Pingora.
pub fn fresh_hit(session: &Session, ctx: &mut RequestCtx) -> Option<FreshHit> {
    let caching = ctx.route()?.cache.clone()?;
    let store = caching.store()?;
    let req = session.req_header();
    let cache = ctx.cache.insert(CacheCtx::of(caching, req));
    if cache.method_bypass
        || cache.upgrade
        || cache.directives != RequestDirectives::default()
        || NOT_AS_STORED.iter().any(|h| req.headers.contains_key(h))
    {
        return None;
    }
    let key = cache_key(session, ctx).ok()?;
    let now = SystemTime::now();
    let found = store.fresh(&key, now);
    let cache = ctx.cache.as_mut()?;
    let Some(object) = found else {
        cache.key = Some(key);
        return None;
    };
    let fresh_until = object.fresh_until;
    let mut header = Box::new(object.header);
    // As `pingora_proxy::proxy_cache::cache_hit_header` does.
    header
        .insert_header(http::header::AGE, object.age.as_secs())
        .ok()?;
    header.set_version(http::Version::HTTP_11);
    let status = header.status.as_u16();
    let length = header
        .headers
        .get(http::header::CONTENT_LENGTH)
        .map(|v| std::str::from_utf8(v.as_bytes()).map(str::parse::<usize>));
    match length {
        None if !matches!(status, 204 | 304) && !header.status.is_informational() => {
            header
                .insert_header(http::header::TRANSFER_ENCODING, "chunked")
                .ok()?;
        }
        // As `range_filter::range_header_filter` does for a request
        // without `Range`: a whole 200 of known length may be asked for
        // in ranges.
        Some(Ok(Ok(_))) if status == 200 => {
            header
                .insert_header(http::header::ACCEPT_RANGES, "bytes")
                .ok()?;
        }
        _ => {}
    }
    let body = (req.method != Method::HEAD).then_some(object.body);
    // Only now: a header that could not be made leaves the request to the
    // general path, which must not report it as this hit.
    cache.fresh_hit = Some(fresh_until);
    Some(FreshHit { header, body })
}

/// Send a [`FreshHit`] whose header went through `response_filter`.
pub async fn send_hit(
    session: &mut Session,
    header: Box<ResponseHeader>,
    body: Option<Bytes>,
) -> Result<()> {
    session
        .write_response_header(header, body.is_none())
        .await?;
    if let Some(body) = body {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// `cache_key_callback`: the key [`fresh_hit`] computed, else
/// [`cache_key`].
pub fn lookup_key(session: &Session, ctx: &mut RequestCtx) -> Result<CacheKey> {
    match ctx.cache.as_mut().and_then(|c| c.key.take()) {
        Some(key) => Ok(key),
        None => cache_key(session, ctx),
    }
}

/// The request's cache key: see [`crate::cache::key`].
pub fn cache_key(session: &Session, ctx: &RequestCtx) -> Result<CacheKey> {
    let Some(cache) = &ctx.cache else {
        return Error::e_explain(
            ErrorType::InternalError,
            "cache key without a caching route",
        );
    };
    let caching = &cache.route;
    let consumer = if caching.per_consumer {
        let entry = ctx
            .snapshot
            .as_ref()
            .zip(ctx.consumer)
            .and_then(|(s, c)| s.consumers.consumer(c));
        // A token's consumer is keyed with its issuer: two issuers may
        // name different callers alike.
        let token = ctx.bearer.as_ref().map(|b| b.subject.clone());
        match entry.map(|e| e.id.clone()).or(token) {
            Some(id) => Some(id),
            // Never share an entry because the consumer is unknown.
            None => {
                return Error::e_explain(
                    ErrorType::InternalError,
                    "per-consumer cache key without a consumer",
                )
            }
        }
    } else {
        None
    };
    let req = session.req_header();
    let settings = &caching.settings;
    let query = match (&caching.key_param, req.uri.query()) {
        (Some(name), Some(q)) => Some(key::without_param(q, name)),
        (_, q) => q.map(std::borrow::Cow::Borrowed),
    };
    Ok(key::cache_key(
        &KeyParts {
            route: &caching.route,
            host: crate::router::request_host(req),
            path: req.uri.path(),
            query: query.as_deref(),
            headers: &req.headers,
            consumer: consumer.as_deref(),
            side: ctx
                .split
                .zip(ctx.route())
                .map(|(c, r)| r.side(c.side).pool.config.name.as_str()),
        },
        &settings.key,
        usize::try_from(settings.max_object_size).unwrap_or(usize::MAX),
    ))
}

/// `cache_vary_filter`: the variance of this request against a stored
/// response's `Vary`. RFC 9111 §4.1 matches the fields of the request
/// that produced the stored response; for a gateway that is the request
/// it forwarded, not the client's: the consumer header is the gateway's,
/// a client's copy never picks a variant. When `Vary` names a header the
/// gateway sets, removes or rewrites, the request is shaped as it would
/// be forwarded (`forward::shape`) and that is matched.
pub fn variance(meta: &CacheMeta, ctx: &RequestCtx, req: &RequestHeader) -> Option<HashBinary> {
    let vary = meta.headers();
    let forwarding = ctx.forwarding()?;
    let shaped = key::vary_names(vary).any(|name| forward::shapes(&name, &forwarding));
    if !shaped {
        return key::variance(vary, &req.headers);
    }
    let mut forwarded = req.clone();
    if let Err(e) = forward::shape(&mut forwarded, &forwarding) {
        tracing::debug!(error = %e, "could not shape the request for Vary: not served from the cache");
        // A variance no stored response has: a miss, never another's variant.
        let mut builder = pingora_cache::VarianceBuilder::new();
        builder.add_value("portcullis-unshaped", ctx.request_id.as_bytes());
        return builder.finalize();
    }
    key::variance(vary, &forwarded.headers)
}

/// `cache_miss`: remember that nothing stored could be used.
pub fn missed(ctx: &mut RequestCtx) {
    if let Some(c) = &mut ctx.cache {
        c.missed = true;
    }
}

/// `cache_hit_filter`: what the request's `Cache-Control` makes of a
/// stored object (`no-cache`, `max-age`, `min-fresh`, `max-stale`).
pub fn hit_freshness(
    meta: &CacheMeta,
    is_fresh: bool,
    ctx: &RequestCtx,
) -> Option<ForcedFreshness> {
    let cache = ctx.cache.as_ref()?;
    // Forced expiry also rules out serving it stale: the client asked for
    // something newer.
    let settings = &cache.route.settings;
    match policy::request_override(&cache.directives, meta, settings, SystemTime::now()) {
        Some(false) => Some(ForcedFreshness::ForceExpired),
        Some(true) if !is_fresh => Some(ForcedFreshness::ForceFresh),
        _ => None,
    }
}

/// `proxy_upstream_filter`: `only-if-cached` never goes to the backend.
pub fn only_if_cached(ctx: &RequestCtx) -> bool {
    ctx.cache
        .as_ref()
        .is_some_and(|c| c.directives.only_if_cached && !c.method_bypass && !c.upgrade)
}

/// `upstream_response_filter`: keep a `304`'s header, whose fields update
/// the stored ones (Pingora merges only a few of them).
pub fn upstream_response(resp: &ResponseHeader, ctx: &mut RequestCtx) {
    if let (Some(cache), 304) = (&mut ctx.cache, resp.status.as_u16()) {
        cache.not_modified = Some(Box::new(resp.clone()));
    }
}

/// Fields a `304` does not update in the stored header (RFC 9111 §3.2).
const NOT_UPDATED: [http::HeaderName; 5] = [
    http::header::CONTENT_LENGTH,
    http::header::CONTENT_ENCODING,
    http::header::CONTENT_RANGE,
    http::header::TRANSFER_ENCODING,
    http::header::CONNECTION,
];

/// `response_cache_filter`: may this response be stored, and how fresh?
pub fn response_cacheable(
    session: &Session,
    resp: &ResponseHeader,
    ctx: &mut RequestCtx,
) -> RespCacheable {
    let now = SystemTime::now();
    let request_time = ctx
        .upstream_started
        .map(|t| now.checked_sub(t.elapsed()).unwrap_or(now))
        .unwrap_or(now);
    let Some(cache) = &mut ctx.cache else {
        return RespCacheable::Uncacheable(pingora_cache::NoCacheReason::NeverEnabled);
    };
    let req = session.req_header();
    // After a 304: the stored header updated with the 304's fields (its
    // `Date` above all, or the refreshed object would look as old as the
    // first response).
    let updated = cache.not_modified.take().map(|nm| {
        let mut merged = resp.clone();
        for name in nm.headers.keys() {
            if NOT_UPDATED.contains(name) {
                continue;
            }
            merged.remove_header(name);
            for v in nm.headers.get_all(name) {
                let _ = merged.append_header(name.clone(), v.clone());
            }
        }
        merged
    });
    let x = policy::Exchange {
        request: req,
        response: updated.as_ref().unwrap_or(resp),
        authorization_forwarded: req.headers.contains_key(http::header::AUTHORIZATION)
            && !cache.route.key_in_authorization,
        request_time,
        now,
    };
    let decision = policy::response_cacheable(&x, &cache.route.settings);
    if let RespCacheable::Uncacheable(reason) = &decision {
        cache.detail = Some(policy::reason_text(reason));
    }
    decision
}

/// `should_serve_stale`: during revalidation (`error` is `None`) whenever
/// the object's stale-while-revalidate window allows (Pingora checks it);
/// on an error unless the client caused it.
pub fn serve_stale(session: &mut Session, ctx: &mut RequestCtx, error: Option<&Error>) -> bool {
    let Some(cache) = &mut ctx.cache else {
        return false;
    };
    match error {
        None => true,
        Some(e) if e.esource() == &ErrorSource::Downstream => false,
        Some(_) => {
            cache.stale_if_error = true;
            // Pingora does not reuse a client connection whose upstream
            // attempt failed, even when a stale copy answered it: say so
            // (`Connection: close`) instead of announcing keep-alive.
            session.set_keepalive(None);
            true
        }
    }
}

/// `Cache-Status` for an answer the gateway makes itself on a caching
/// route (the 502 or 504 when the backend failed and nothing stale may
/// be served, the 504 of `only-if-cached`), with `detail`; `None` off
/// caching routes. The outcome is kept for the access log and metrics.
pub fn own_answer_status(
    session: &Session,
    ctx: &mut RequestCtx,
    detail: &'static str,
) -> Option<(&'static str, String)> {
    let cache = ctx.cache.as_mut()?;
    let mut outcome = outcome(session, cache);
    outcome.stored = false;
    if outcome.result != CacheResult::Bypass {
        outcome.detail = Some(detail);
    }
    cache.outcome = Some(outcome);
    Some(("cache-status", outcome.header()))
}

/// `response_filter`: add `Cache-Status`; after a successful unsafe
/// method, invalidate what is stored for its URL.
pub fn response(session: &Session, resp: &mut ResponseHeader, ctx: &mut RequestCtx) -> Result<()> {
    let req = session.req_header();
    if !req.method.is_safe() && (200..400).contains(&resp.status.as_u16()) {
        invalidate(session, resp, ctx);
    }
    let Some(cache) = &mut ctx.cache else {
        return Ok(());
    };
    let outcome = outcome(session, cache);
    resp.insert_header(CACHE_STATUS, outcome.header())?;
    cache.outcome = Some(outcome);
    Ok(())
}

fn outcome(session: &Session, cache: &CacheCtx) -> CacheOutcome {
    if cache.method_bypass || cache.upgrade {
        return CacheOutcome::bypass(cache.method_bypass);
    }
    if let Some(until) = cache.fresh_hit {
        // What the general path reports for a fresh hit.
        return CacheOutcome {
            result: CacheResult::Hit,
            stored: false,
            forced_by_request: false,
            stale_if_error: false,
            ttl: Some(seconds_left(until)),
            method: false,
            detail: None,
        };
    }
    let phase = session.cache.phase();
    let mut result = CacheOutcome::from_phase(phase);
    if result == CacheResult::Bypass && cache.missed {
        result = CacheResult::Miss;
    }
    if cache.stale_if_error
        && matches!(
            phase,
            CachePhase::Stale | CachePhase::Expired | CachePhase::Miss
        )
    {
        result = CacheResult::Stale;
    }
    let stored = matches!(phase, CachePhase::Miss | CachePhase::Expired) && session.cache.enabled();
    let ttl = matches!(result, CacheResult::Hit | CacheResult::Stale)
        .then(|| session.cache.maybe_cache_meta())
        .flatten()
        .map(|m| seconds_left(m.fresh_until()));
    CacheOutcome {
        result,
        stored,
        forced_by_request: cache.directives.revalidate,
        stale_if_error: cache.stale_if_error,
        ttl,
        method: false,
        detail: if stored { None } else { cache.detail },
    }
}

fn seconds_left(until: SystemTime) -> i64 {
    match until.duration_since(SystemTime::now()) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// RFC 9111 §4.4: a successful unsafe method invalidates the stored
/// responses for its URL, and for `Location` / `Content-Location` on the
/// same host.
fn invalidate(session: &Session, resp: &ResponseHeader, ctx: &RequestCtx) {
    let Some(caching) = ctx.snapshot.as_ref().and_then(|s| s.cache.clone()) else {
        return;
    };
    let req = session.req_header();
    let host = crate::router::request_host(req).to_ascii_lowercase();
    let mode = ctx
        .cache
        .as_ref()
        .map_or(QueryKey::All, |c| c.route.settings.key.query.clone());
    let rules = ctx
        .snapshot
        .as_ref()
        .map(|s| s.config.server.client.paths)
        .unwrap_or_default();
    // The request's target is canonical already.
    let mut gone = drop_url(
        &caching,
        &host,
        (
            req.uri.path().to_string(),
            req.uri.query().map(str::to_string),
        ),
        &mode,
    );
    for name in [http::header::LOCATION, http::header::CONTENT_LOCATION] {
        let Some(uri) = resp
            .headers
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<http::Uri>().ok())
        else {
            continue;
        };
        let same_host = uri
            .authority()
            .is_none_or(|a| a.as_str().eq_ignore_ascii_case(&host));
        let Some(pq) = uri.path_and_query().filter(|p| p.as_str().starts_with('/')) else {
            continue;
        };
        // The backend's URL, spelled as a request for it would be.
        if let (true, Ok(target)) = (
            same_host,
            crate::target::canonical_split(pq.as_str(), &rules),
        ) {
            gone += drop_url(&caching, &host, target, &mode);
        }
    }
    if gone > 0 {
        tracing::debug!(objects = gone, "cache invalidated after an unsafe method");
    }
}

fn drop_url(
    caching: &RouteCaching,
    host: &str,
    (path, query): (String, Option<String>),
    mode: &QueryKey,
) -> usize {
    let query = key::normalize_query(query.as_deref().unwrap_or(""), mode);
    caching.invalidate(Purge::Url {
        host,
        path: &path,
        query: &query,
    })
}

/// What the cache did for the request, for the access log: `None` off
/// caching routes.
pub fn result_label(ctx: &RequestCtx) -> Option<&'static str> {
    Some(ctx.cache.as_ref()?.outcome?.result.label())
}

/// `logging`: count what the cache did (and keep it for the access log).
pub fn record(session: &Session, ctx: &mut RequestCtx) {
    let Some(cache) = &mut ctx.cache else {
        return;
    };
    let result = match &cache.outcome {
        Some(o) => o.result,
        None => {
            let o = outcome(session, cache);
            cache.outcome = Some(o);
            o.result
        }
    };
    cache.route.count(result);
    if session
        .cache
        .lock_duration()
        .is_some_and(|d| d > Duration::ZERO)
    {
        cache.route.lock_waited();
    }
}
