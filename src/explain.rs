//! `portcullis explain`: what the gateway would do with one request, from
//! a prepared config, without sending anything.
//!
//! It takes the proxy's own decision ([`crate::decide`]) and prints, one
//! fact a line: the route and why it matched (host tier, path
//! match, methods), the pool and its balancing, timeouts, authentication
//! (and, when the request carries a key, whose it is — by prefix, never the
//! key), the rate limits and quotas that apply, header rules, and the
//! request line the backend would see.

use std::fmt::Write as _;
use std::time::Duration;

use pingora_http::RequestHeader;

use crate::auth::{self, Rejection};
use crate::config::model::{self, Balance, HashKey, HealthCheckKind, HostPattern, PathMatch};
use crate::decide::{self, Arrival, Decision, Refusal, Verdict};
use crate::plans::{self, Per, PlannedLimit};
use crate::policy::split::{Choice, SplitBy};
use crate::policy::{HeaderOps, PathRewrite};
use crate::problem::Problem;
use crate::proxy::forward;
use crate::ratelimit::{Limit, LimitStore, Period};
use crate::router::strip_port;
use crate::snapshot::Snapshot;

/// What `explain` found.
#[derive(Debug)]
pub struct Explanation {
    /// The report, one fact a line.
    pub text: String,
    /// The status the gateway would answer itself with (a refusal, or a
    /// CORS preflight's 204), or `None` when the request would be
    /// forwarded.
    pub refused: Option<u16>,
    /// The limit a 429 names.
    pub limit: Option<std::sync::Arc<str>>,
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
/// header sets it) or a path (without a `Host` header: an HTTP/1.0
/// request, which matches only routes that list no hosts).
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
    if !req.headers.contains_key(http::header::HOST) {
        match uri.authority() {
            Some(authority) => {
                let host = http::HeaderValue::from_str(authority.as_str())
                    .map_err(|_| BadRequest::Url(url.to_string()))?;
                req.insert_header(http::header::HOST, host)
                    .map_err(|_| BadRequest::Url(url.to_string()))?;
            }
            // A path and no Host: as an HTTP/1.0 client sends it (HTTP/1.1
            // needs a Host, and would get 400).
            None => req.set_version(http::Version::HTTP_10),
        }
    }
    Ok(req)
}

/// Explain what `snapshot` would do with `req`, arriving as `arrival`, at
/// `now` (Unix nanoseconds): the proxy's own decision
/// ([`crate::decide::decide`]), taken against `store` (never the running
/// gateway's counters), then printed.
pub async fn explain(
    snapshot: &Snapshot,
    req: &RequestHeader,
    arrival: &Arrival,
    now: u64,
    store: &dyn LimitStore,
) -> Explanation {
    let mut out = Lines::default();
    let mut head = req.clone();
    let decision = decide::decide(snapshot, &mut head, arrival, now, store).await;
    let refusal = decision.refusal();
    let Some(index) = decision.route else {
        return match refusal {
            Some(r) if !matches!(r.problem, Problem::NotFound | Problem::MethodNotAllowed) => {
                // Refused on its head: nothing was routed.
                out.answer(r);
                out.done(&decision)
            }
            _ => {
                request_lines(&mut out, req, &head);
                match refusal {
                    Some(r) if r.problem == Problem::MethodNotAllowed => out.line(
                        "answer",
                        format!(
                            "405 Method Not Allowed: routes match host and path but accept only {}",
                            r.headers
                                .iter()
                                .find(|(n, _)| *n == "allow")
                                .map_or("", |(_, v)| v.to_str().unwrap_or(""))
                        ),
                    ),
                    Some(_) => out.line(
                        "answer",
                        "404 Not Found: no route matches this host and path",
                    ),
                    None => {
                        if let Verdict::RedirectHttps(port) = decision.verdict {
                            out.line(
                                "answer",
                                format!("308 Permanent Redirect to https on port {port}"),
                            );
                        }
                    }
                }
                out.done(&decision)
            }
        };
    };
    request_lines(&mut out, req, &head);
    let req = &head;
    let host = crate::router::request_host(req);
    let path = req.uri.path();
    let method = req.method.as_str();
    let (Some(route), Some(model)) = (
        snapshot.routes.get(index),
        snapshot.config.routes.get(index),
    ) else {
        out.line("answer", "500: the route table is inconsistent");
        return out.done(&decision);
    };
    out.line("route", &route.id);
    out.line("  host", host_reason(model, host));
    out.line(
        "  path",
        path_reason(&model.path, path, decision.prefix_len),
    );
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
    let choice = decision.split.or_else(|| {
        route
            .split
            .as_ref()
            .map(|s| s.choose(&req.headers, arrival.roll as u16))
    });
    if let (model::RouteUpstream::Split(split), Some(choice)) = (&model.upstream, choice) {
        explain_split(&mut out, split, choice);
    }
    let side = choice.map_or(0, |c| c.side);
    explain_pool(&mut out, route.side(side));
    if let Some(c) = &model.compression {
        let algorithms: Vec<String> = c
            .algorithms
            .iter()
            .map(|(a, level)| format!("{} {level}", a.as_str()))
            .collect();
        let this = match decision.coding {
            Some(coding) => format!("this client gets {}", coding.as_str()),
            None => "this client accepts none of them: sent as it is".to_string(),
        };
        out.line(
            "compression",
            format!(
                "{} for {} from {} bytes; {this}",
                algorithms.join(", "),
                c.types.join(", "),
                c.min_size
            ),
        );
    }
    if let Some(m) = &model.mirror {
        let body = if m.include_body {
            format!("body up to {} bytes", m.max_body_size)
        } else {
            "without the body".to_string()
        };
        let this = if decision.mirror {
            "this request would be copied"
        } else {
            "this request would not be copied"
        };
        out.line(
            "mirror",
            format!(
                "pool {}, {}% of forwarded requests, {body}, at most {} in flight; {this} (a random draw)",
                m.pool, m.percent, m.max_in_flight
            ),
        );
    }
    if let Some(cors) = &model.cors {
        let outcome = decision
            .cors
            .label()
            .unwrap_or("no Origin: not a cross-origin request");
        out.line(
            "cors",
            format!("origins {}: {outcome}", cors.allow_origins.join(", ")),
        );
        if let Verdict::Preflight(fields) = &decision.verdict {
            let shown: Vec<String> = fields
                .iter()
                .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap_or("")))
                .collect();
            out.line(
                "answer",
                format!("204 No Content (CORS preflight): {}", shown.join("; ")),
            );
            return out.done(&decision);
        }
    }
    if let Some(rules) = &route.ip {
        let list = |v: &[ipnet::IpNet]| {
            v.iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut text = Vec::new();
        if !rules.allow.is_empty() {
            text.push(format!("allow {}", list(&rules.allow)));
        }
        if !rules.deny.is_empty() {
            text.push(format!("deny {}", list(&rules.deny)));
        }
        let client = arrival
            .ip
            .map_or("unknown".to_string(), |ip| ip.to_string());
        let verdict = if decision.auth_failure == Some(crate::decide::IP_DENIED) {
            "refused (403)"
        } else {
            "passes"
        };
        out.line(
            "ip",
            format!("{}: client {client} {verdict}", text.join("; ")),
        );
        if let (Some(r), Some(crate::decide::IP_DENIED)) = (refusal, decision.auth_failure) {
            out.answer(r);
            return out.done(&decision);
        }
    }

    // Authentication, then limits: as the decision took them.
    let consumer = decision
        .consumer
        .and_then(|i| snapshot.consumers.consumers.get(i as usize));
    let valid = consumer.filter(|_| decision.auth_failure.is_none());
    match &route.auth {
        None if route.bearer.is_some() => {}
        None => out.line("auth", "none (the route is open)"),
        Some(a) => {
            out.line("auth", format!("api_key, {}", key_place(&a.source)));
            match (decision.auth_failure, valid) {
                _ if decision.denied_by == Some("failed-attempts") => out.line(
                    "  key",
                    "not looked at: too many failed key attempts from this address",
                ),
                (None, Some(c)) => out.line(
                    "  key",
                    format!(
                        "valid: consumer {:?}, key {} (the key is removed; the backend gets {}: {})",
                        &*c.id,
                        decision.key_prefix.as_deref().unwrap_or(""),
                        snapshot.consumer_header,
                        &*c.id
                    ),
                ),
                (Some(reason), _) if reason == Rejection::Missing.reason() => out.line(
                    "  key",
                    "none presented (add the key with -H to see its consumer)",
                ),
                (Some(reason), _) => out.line(
                    "  key",
                    format!(
                        "refused ({reason}){}",
                        consumer.map_or(String::new(), |c| format!(
                            ": consumer {:?}, key {}",
                            &*c.id,
                            decision.key_prefix.as_deref().unwrap_or("")
                        ))
                    ),
                ),
                (None, None) => {}
            }
        }
    }
    if let Some(b) = &route.bearer {
        explain_bearer(
            &mut out,
            snapshot,
            b,
            &decision,
            method,
            route.auth.is_some(),
        );
    }
    let bearer = decision
        .bearer
        .as_ref()
        .filter(|_| decision.auth_failure.is_none());
    let token_consumer = bearer.and_then(|b| {
        let issuer = snapshot.issuers.list.get(b.issuer)?;
        Some((&b.subject, &issuer.limits))
    });
    let plan = plans::plan(
        &route.limits,
        index,
        valid
            .map(|c| (c.limits.consumer(), &c.limits))
            .or(token_consumer),
        arrival.ip,
    );
    if plan.limits.is_empty() {
        out.line("limits", "none");
    }
    for (i, l) in plan.limits.iter().enumerate() {
        out.line(if i == 0 { "limits" } else { "" }, limit_text(l));
    }
    let credential = match (route.auth.is_some(), route.bearer.is_some()) {
        (true, true) => "key or token",
        (false, true) => "token",
        _ => "key",
    };
    if (route.auth.is_some() || route.bearer.is_some()) && valid.is_none() && bearer.is_none() {
        out.line(
            "",
            format!(
                "(the consumer's own limits and quotas apply once a valid {credential} is given)"
            ),
        );
    }
    if let Some(f) = snapshot
        .failed_attempts
        .as_ref()
        .filter(|_| route.auth.is_some() || route.bearer.is_some())
    {
        out.line(
            "",
            format!(
                "failed {credential} attempts per client IP: {}",
                bucket_of(f)
            ),
        );
    }
    if let Some(max) = route.max_body_size {
        out.line("max body size", format!("{max} bytes"));
    }
    if let Some(lifecycle) = route.lifecycle.as_deref() {
        let headers: Vec<String> = lifecycle
            .headers()
            .iter()
            .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap_or("")))
            .collect();
        out.line("lifecycle", headers.join("; "));
    }
    headers_line(&mut out, "request headers", &route.request_headers);
    headers_line(&mut out, "response headers", &route.response_headers);

    let upstream_path = forward::rewritten_path(path, decision.prefix_len, &route.rewrite)
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
    // The pool's own refusal comes later, in `upstream_peer`.
    let pool = &route.side(side).pool;
    let unusable = refusal.is_none() && !pool.any_usable(now) && pool.fallback().is_none();
    match refusal {
        Some(r) => out.answer(r),
        None if unusable => out.line(
            "answer",
            format!(
                "503 Service Unavailable: no backend of pool {} is usable",
                pool.config.name
            ),
        ),
        None => {}
    }
    let mut explained = out.done(&decision);
    if unusable {
        explained.refused = Some(503);
    }
    explained
}

/// The canonical target, when it differs, and the request line.
fn request_lines(out: &mut Lines, req: &RequestHeader, head: &RequestHeader) {
    if head.uri != req.uri {
        out.line("canonical", head.raw_path().escape_ascii().to_string());
    }
    let host = crate::router::request_host(head);
    out.line(
        "request",
        format!(
            "{} {} (host {})",
            head.method.as_str(),
            head.uri.path(),
            if host.is_empty() { "none" } else { host }
        ),
    );
}

#[derive(Default)]
struct Lines(String);

impl Lines {
    fn line(&mut self, label: &str, text: impl AsRef<str>) {
        let _ = writeln!(self.0, "{label:<18}{}", text.as_ref());
    }

    /// The gateway's own answer: status, title and detail.
    fn answer(&mut self, refusal: &Refusal) {
        let p = refusal.problem;
        let detail = refusal.detail.as_deref().unwrap_or(p.detail());
        self.line("answer", format!("{} {}: {detail}", p.status(), p.title()));
    }

    fn done(self, decision: &Decision) -> Explanation {
        Explanation {
            text: self.0,
            refused: match &decision.verdict {
                Verdict::Preflight(_) => Some(204),
                _ => decision.refusal().map(Refusal::status),
            },
            limit: decision.refusal().and_then(|r| r.limit.clone()),
        }
    }
}

fn host_reason(route: &model::RouteConfig, host: &str) -> String {
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

/// The sides of a split, and the one this request takes.
fn explain_split(out: &mut Lines, split: &model::SplitConfig, choice: Choice) {
    let sides: Vec<String> = split
        .sides
        .iter()
        .map(|s| {
            let when: Vec<String> = s
                .match_headers
                .iter()
                .map(|(n, v)| format!("{n}: {v}"))
                .collect();
            if when.is_empty() {
                format!("{} {}%", s.pool, s.weight)
            } else {
                format!("{} {}% (or with {})", s.pool, s.weight, when.join(" and "))
            }
        })
        .collect();
    let sticky = match &split.sticky {
        None => String::new(),
        Some(model::Sticky::Cookie(c)) => format!("; sticky by cookie {c}"),
        Some(model::Sticky::Header(h)) => format!("; sticky by header {h}"),
    };
    out.line("split", format!("{}{sticky}", sides.join(", ")));
    let name = split.sides.get(choice.side).map_or("", |s| s.pool.as_str());
    let how = match choice.by {
        SplitBy::Match => "the request's headers (its match)".to_string(),
        SplitBy::Sticky => "the client's sticky value".to_string(),
        SplitBy::Weight if choice.set_cookie.is_some() => {
            "weights (a new client; the response sets the cookie)".to_string()
        }
        SplitBy::Weight => "weights (a random draw: another request may differ)".to_string(),
    };
    out.line("  chosen", format!("{name}, by {how}"));
}

fn explain_pool(out: &mut Lines, side: &crate::snapshot::RouteSide) {
    let pool = &side.pool;
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
    let streams = if c.max_h2_streams > 1 {
        format!(", up to {} streams per connection", c.max_h2_streams)
    } else {
        String::new()
    };
    out.line(
        "pool",
        format!(
            "{} ({balance}, {} backend(s), retries {}{}{streams})",
            c.name,
            pool.backends.len(),
            c.retries,
            if c.h2c { ", HTTP/2 cleartext" } else { "" }
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
            HealthCheckKind::Grpc { service } if service.is_empty() => {
                "grpc.health.v1 Check of the server".to_string()
            }
            HealthCheckKind::Grpc { service } => format!("grpc.health.v1 Check of {service}"),
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
    let t = &side.timeouts;
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

/// The token part of a route's auth: the issuers and the claims a token
/// is checked against, and what became of the token presented (never the
/// token itself).
fn explain_bearer(
    out: &mut Lines,
    snapshot: &Snapshot,
    b: &crate::bearer::RouteBearer,
    decision: &Decision,
    method: &str,
    or_key: bool,
) {
    use crate::config::model::TokenSource;
    let place = match &b.token_from {
        TokenSource::Bearer => "token as Authorization: Bearer".to_string(),
        TokenSource::Header(h) => format!("token in header {h}"),
        TokenSource::Cookie(c) => format!("token in cookie {c}"),
    };
    if or_key {
        out.line("", format!("or jwt, {place} (a token shaped like a JWT)"));
    } else {
        out.line("auth", format!("jwt, {place}"));
    }
    for (i, issuer) in snapshot.issuers.list.iter().enumerate() {
        if !b.issuers.is_empty() && !b.issuers.contains(&i) {
            continue;
        }
        let c = &issuer.config;
        let algorithms: Vec<&str> = c.algorithms.iter().map(|a| a.as_str()).collect();
        let keys = issuer.key_set().map_or("no key set yet".to_string(), |k| {
            format!("{} key(s)", k.keys.len())
        });
        out.line(
            "  issuer",
            format!(
                "{}: iss {:?}, aud one of {:?}, {} ({keys}), exp/nbf/iat with {}s leeway; consumer from claim {:?}, scopes from {:?}",
                issuer.id,
                c.issuer,
                c.audiences,
                algorithms.join(", "),
                c.leeway.as_secs(),
                c.consumer_claim,
                c.scopes_claim,
            ),
        );
    }
    let scopes: Vec<&str> = b
        .required_scopes
        .for_method(method)
        .map(String::as_str)
        .collect();
    if !scopes.is_empty() {
        out.line("  scopes", format!("{} (for {method})", scopes.join(" ")));
    }
    if !b.forward_claims.is_empty() {
        let claims: Vec<String> = b
            .forward_claims
            .iter()
            .map(|(h, c)| format!("{h} <- {c}"))
            .collect();
        out.line("  claims", claims.join(", "));
    }
    let kept = if b.keep_token { "kept" } else { "removed" };
    match (&decision.bearer, decision.auth_failure) {
        (_, _) if decision.denied_by == Some("failed-attempts") => out.line(
            "  token",
            "not looked at: too many failed attempts from this address",
        ),
        (Some(t), None) => out.line(
            "  token",
            format!(
                "valid: consumer {:?} of issuer {}, scopes [{}] (the token is {kept}; the backend gets {}: {})",
                &*t.consumer,
                t.issuer_id,
                t.scopes.join(" "),
                snapshot.consumer_header,
                &*t.consumer
            ),
        ),
        (Some(t), Some(reason)) => out.line(
            "  token",
            format!(
                "refused ({reason}): consumer {:?} of issuer {}, scopes [{}]",
                &*t.consumer,
                t.issuer_id,
                t.scopes.join(" ")
            ),
        ),
        (None, Some(_)) if decision.token_rejection.is_some() => out.line(
            "  token",
            format!(
                "refused (token_invalid: {})",
                decision.token_rejection.map_or("", |r| r.label())
            ),
        ),
        (None, Some(r)) if r == crate::bearer::Failure::Missing.reason() => out.line(
            "  token",
            "none presented (add the token with -H to see its consumer)",
        ),
        _ => {}
    }
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
