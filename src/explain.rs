//! `portcullis explain`: what the gateway would do with one request, from
//! a prepared config, without sending anything.
//!
//! It runs the same router, key lookup and limit planning as the proxy and
//! prints, one fact a line: the route and why it matched (host tier, path
//! match, methods), the pool and its balancing, timeouts, authentication
//! (and, when the request carries a key, whose it is — by prefix, never the
//! key), the rate limits and quotas that apply, header rules, and the
//! request line the backend would see.

use std::fmt::Write as _;
use std::time::Duration;

use pingora_http::RequestHeader;

use crate::auth::{self, Rejection};
use crate::config::model::{self, Balance, HashKey, HealthCheckKind, HostPattern, PathMatch};
use crate::limits::{self, Per, PlannedLimit};
use crate::policy::{HeaderOps, PathRewrite};
use crate::proxy::forward;
use crate::ratelimit::{Limit, Period};
use crate::router::{strip_port, RouteLookup};
use crate::snapshot::Snapshot;

/// What `explain` found.
#[derive(Debug)]
pub struct Explanation {
    /// The report, one fact a line.
    pub text: String,
    /// The status the gateway would answer itself with (404, 405, 401,
    /// 403, 503), or `None` when the request would be forwarded.
    pub refused: Option<u16>,
}

/// Why a request could not be explained (it is not a request).
#[derive(Debug, thiserror::Error)]
pub enum BadRequest {
    #[error("{0:?} is not an HTTP method")]
    Method(String),
    #[error("{0:?} is not a URL or a path")]
    Url(String),
    #[error("{0:?} is not a header (write -H 'Name: value')")]
    Header(String),
}

/// Build the request `METHOD URL` with `headers` (`Name: value`). The URL
/// is absolute (`http://host/path?q`: the host becomes `Host` unless a
/// header sets it) or a path.
pub fn request(method: &str, url: &str, headers: &[String]) -> Result<RequestHeader, BadRequest> {
    let method = http::Method::from_bytes(method.as_bytes())
        .map_err(|_| BadRequest::Method(method.to_string()))?;
    let uri: http::Uri = url.parse().map_err(|_| BadRequest::Url(url.to_string()))?;
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    if !path_and_query.starts_with('/') {
        return Err(BadRequest::Url(url.to_string()));
    }
    let mut req = RequestHeader::build(method, path_and_query.as_bytes(), None)
        .map_err(|_| BadRequest::Url(url.to_string()))?;
    for h in headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| BadRequest::Header(h.clone()))?;
        let name = http::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| BadRequest::Header(h.clone()))?;
        let value =
            http::HeaderValue::from_str(value.trim()).map_err(|_| BadRequest::Header(h.clone()))?;
        req.append_header(name, value)
            .map_err(|_| BadRequest::Header(h.clone()))?;
    }
    if let Some(authority) = uri.authority() {
        if !req.headers.contains_key(http::header::HOST) {
            let host = http::HeaderValue::from_str(authority.as_str())
                .map_err(|_| BadRequest::Url(url.to_string()))?;
            req.insert_header(http::header::HOST, host)
                .map_err(|_| BadRequest::Url(url.to_string()))?;
        }
    }
    Ok(req)
}

/// Explain what `snapshot` would do with `req` at `now` (Unix seconds).
pub fn explain(snapshot: &Snapshot, req: &RequestHeader, now: i64) -> Explanation {
    let mut out = Lines::default();
    // The proxy decides on the canonical target; so does this.
    let mut canonical = req.clone();
    if let Err(why) =
        crate::target::canonicalize(&mut canonical, false, &snapshot.config.server.client.paths)
    {
        out.line("answer", format!("400 Bad Request: {why}"));
        return out.done(Some(400));
    }
    if canonical.uri != req.uri {
        out.line("canonical", canonical.raw_path().escape_ascii().to_string());
    }
    let req = &canonical;
    let host = crate::router::request_host(req);
    let path = req.uri.path();
    let method = req.method.as_str();
    out.line(
        "request",
        format!(
            "{method} {path} (host {})",
            if host.is_empty() { "none" } else { host }
        ),
    );
    let (index, prefix_len) = match snapshot.router.find(host, path, method) {
        RouteLookup::Found { route, prefix_len } => (route, prefix_len),
        RouteLookup::MethodNotAllowed { allowed } => {
            out.line(
                "answer",
                format!(
                    "405 Method Not Allowed: routes match host and path but accept only {}",
                    allowed.join(", ")
                ),
            );
            return out.done(Some(405));
        }
        RouteLookup::NotFound => {
            out.line(
                "answer",
                "404 Not Found: no route matches this host and path",
            );
            return out.done(Some(404));
        }
    };
    let (Some(route), Some(model)) = (
        snapshot.routes.get(index),
        snapshot.config.routes.get(index),
    ) else {
        out.line("answer", "500: the route table is inconsistent");
        return out.done(Some(500));
    };
    out.line("route", &route.id);
    out.line("  host", host_reason(model, host));
    out.line("  path", path_reason(&model.path, path, prefix_len));
    out.line(
        "  methods",
        if model.methods.is_empty() {
            "any method".to_string()
        } else {
            format!("{} (request: {method})", model.methods.join(", "))
        },
    );
    if !model.tags.is_empty() {
        out.line("  tags", model.tags.join(", "));
    }
    explain_pool(&mut out, route);

    // Authentication, then limits: as the proxy checks them.
    let mut consumer = None;
    let mut refused = None;
    match &route.auth {
        None => out.line("auth", "none (the route is open)"),
        Some(a) => {
            out.line("auth", format!("api_key, {}", key_place(&a.source)));
            let key = auth::presented_key(req, &a.source);
            match auth::authenticate(&snapshot.consumers, key.as_deref(), index, &req.method, now) {
                Ok(who) => {
                    out.line(
                        "  key",
                        format!(
                            "valid: consumer {:?}, key {} (the key is removed; the backend gets {}: {})",
                            &*who.consumer.id,
                            who.key.prefix,
                            snapshot.consumer_header,
                            &*who.consumer.id
                        ),
                    );
                    consumer = Some(who.consumer);
                }
                Err(auth::Refused {
                    rejection: Rejection::Missing,
                    ..
                }) => {
                    out.line(
                        "  key",
                        "none presented: the gateway answers 401 (add the key with -H to see its consumer)",
                    );
                    refused = Some(401);
                }
                Err(auth::Refused { rejection: r, .. }) => {
                    out.line(
                        "  key",
                        format!(
                            "refused ({}): the gateway answers {}",
                            r.reason(),
                            r.status()
                        ),
                    );
                    refused = Some(r.status());
                }
            }
        }
    }
    let plan = limits::plan(&route.limits, index, consumer, None);
    if plan.limits.is_empty() {
        out.line("limits", "none");
    }
    for (i, l) in plan.limits.iter().enumerate() {
        out.line(if i == 0 { "limits" } else { "" }, limit_text(l));
    }
    if route.auth.is_some() && consumer.is_none() {
        out.line(
            "",
            "(the consumer's own limits and quotas apply once a valid key is given)",
        );
    }
    if let Some(f) = snapshot
        .failed_attempts
        .as_ref()
        .filter(|_| route.auth.is_some())
    {
        out.line(
            "",
            format!("failed key attempts per client IP: {}", bucket_of(f)),
        );
    }
    headers_line(&mut out, "request headers", &route.request_headers);
    headers_line(&mut out, "response headers", &route.response_headers);

    let upstream_path = forward::rewritten_path(path, prefix_len, &route.rewrite)
        .unwrap_or_else(|| path.to_string());
    let mut shown = req.clone();
    if let Some(a) = &route.auth {
        // The key never leaves the gateway, nor this report.
        let _ = auth::remove_key(&mut shown, &a.source);
    }
    let query = shown
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    out.line(
        "upstream",
        format!(
            "{method} {upstream_path}{query}{}",
            rewrite_note(&route.rewrite)
        ),
    );
    let now = crate::ratelimit::clock::Clock::now_nanos(&crate::ratelimit::clock::SystemClock);
    if !route.pool.any_usable(now) && route.pool.fallback().is_none() {
        refused = refused.or(Some(503));
    }
    out.done(refused)
}

#[derive(Default)]
struct Lines(String);

impl Lines {
    fn line(&mut self, label: &str, text: impl AsRef<str>) {
        let _ = writeln!(self.0, "{label:<18}{}", text.as_ref());
    }

    fn done(self, refused: Option<u16>) -> Explanation {
        Explanation {
            text: self.0,
            refused,
        }
    }
}

fn host_reason(route: &model::Route, host: &str) -> String {
    if route.hosts.is_empty() {
        return "any host (the route lists none)".to_string();
    }
    let h = strip_port(host).trim_end_matches('.').to_ascii_lowercase();
    for pattern in &route.hosts {
        match pattern {
            HostPattern::Exact(name) if *name == h => return format!("exact host {name:?}"),
            HostPattern::Wildcard(suffix)
                if h.ends_with(suffix.as_str()) && h.len() > suffix.len() =>
            {
                return format!("wildcard host \"*{suffix}\"")
            }
            _ => {}
        }
    }
    format!("host {h:?}")
}

fn path_reason(path: &PathMatch, request_path: &str, prefix_len: usize) -> String {
    match path {
        PathMatch::Exact(p) => format!("exact path {p:?}"),
        PathMatch::Prefix(p) => format!(
            "prefix {p:?} (longest matching prefix; matched {:?})",
            request_path
                .get(..prefix_len)
                .filter(|s| !s.is_empty())
                .unwrap_or("/")
        ),
    }
}

fn explain_pool(out: &mut Lines, route: &crate::snapshot::Route) {
    let pool = &route.pool;
    let c = &pool.config;
    let balance = match &c.balance {
        Balance::RoundRobin => "round_robin".to_string(),
        Balance::Random => "random".to_string(),
        Balance::LeastRequests => "least_requests".to_string(),
        Balance::ConsistentHash(k) => format!(
            "consistent_hash on {}",
            match k {
                HashKey::Header(h) => format!("header {h}"),
                HashKey::Cookie(n) => format!("cookie {n}"),
                HashKey::ClientIp => "client_ip".to_string(),
                HashKey::Path => "path".to_string(),
            }
        ),
    };
    out.line(
        "pool",
        format!(
            "{} ({balance}, {} backend(s), retries {})",
            c.name,
            pool.backends.len(),
            c.retries
        ),
    );
    for b in &pool.backends {
        out.line(
            "  backend",
            format!(
                "{} weight {}{}",
                b.address,
                b.weight,
                if b.state.is_healthy() {
                    ""
                } else {
                    " (unhealthy)"
                }
            ),
        );
    }
    if let Some(hc) = &c.health_check {
        let kind = match &hc.kind {
            HealthCheckKind::Tcp => "tcp connect".to_string(),
            HealthCheckKind::Http {
                path,
                expected_status,
                ..
            } => format!(
                "http GET {path}, expecting {}-{}",
                expected_status.0, expected_status.1
            ),
        };
        out.line(
            "  health check",
            format!(
                "{kind} every {}, down after {}, up after {}",
                dur(hc.interval),
                hc.unhealthy_threshold,
                hc.healthy_threshold
            ),
        );
    }
    if let Some(tls) = &pool.tls {
        out.line(
            "  tls",
            format!(
                "sni {:?}, verify {}, {}",
                tls.sni,
                tls.verify,
                if tls.h2 { "h2" } else { "http1" }
            ),
        );
    }
    let t = &route.timeouts;
    let opt = |d: Option<Duration>| d.map_or("none".to_string(), dur);
    out.line(
        "timeouts",
        format!(
            "connect {}, read {}, write {}, idle {}, total {}",
            opt(t.connect),
            opt(t.read),
            opt(t.write),
            opt(t.idle),
            opt(t.total)
        ),
    );
}

fn dur(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn key_place(place: &auth::KeyPlace) -> String {
    match place {
        auth::KeyPlace::Header(h) => format!("key in header {h}"),
        auth::KeyPlace::Bearer => "key as Authorization: Bearer".to_string(),
        auth::KeyPlace::Query(q) => format!("key in query parameter {q}"),
    }
}

fn bucket_of(l: &PlannedLimit) -> String {
    match l.limit {
        Limit::Bucket(b) => format!(
            "{} per {}, burst {}",
            b.rate.count,
            dur(b.rate.period),
            b.burst
        ),
        Limit::Quota(q) => format!(
            "{} per calendar {} (UTC)",
            q.limit,
            match q.period {
                Period::Day => "day",
                Period::Month => "month",
            }
        ),
    }
}

fn limit_text(l: &PlannedLimit) -> String {
    let per = match l.per {
        Per::Shared => "shared",
        Per::Consumer => "per consumer",
        Per::ClientIp => "per client IP",
    };
    format!("{:?}: {} ({per})", &*l.name, bucket_of(l))
}

fn headers_line(out: &mut Lines, label: &str, ops: &HeaderOps) {
    if ops.is_empty() {
        return;
    }
    let mut parts: Vec<String> = ops.remove.iter().map(|n| format!("remove {n}")).collect();
    parts.extend(
        ops.set
            .iter()
            .map(|(n, v)| format!("set {n}: {}", String::from_utf8_lossy(v.as_bytes()))),
    );
    out.line(label, parts.join("; "));
}

fn rewrite_note(rewrite: &PathRewrite) -> String {
    match rewrite {
        PathRewrite::None => String::new(),
        PathRewrite::Strip => " (prefix stripped)".to_string(),
        PathRewrite::Replace(to) => format!(" (prefix rewritten to {to:?})"),
    }
}
