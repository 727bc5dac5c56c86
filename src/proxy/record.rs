//! What is recorded about a request: the upstream's status and time to
//! first byte when its response head arrives; when it ends, the request
//! metrics, the counters of requests the gateway refused itself, the
//! consumer's usage and the access-log line.

use pingora_error::Error;
use pingora_proxy::Session;

use super::ctx::Decisions;
use super::RequestCtx;
use crate::accesslog::Entry;
use crate::gateway::Gateway;
use crate::upstream::AttemptOutcome;

/// Count the request and its refusal (if any), and write the access-log
/// line.
pub fn request_done(gateway: &Gateway, session: &Session, e: Option<&Error>, ctx: &RequestCtx) {
    let route = ctx.route();
    let route_id = route.map_or("", |r| r.id.as_str());
    if let Some(reason) = ctx.auth_failure {
        gateway.metrics().auth_rejected(route_id, reason);
    }
    if let Some(limit) = ctx.denied_by {
        gateway.metrics().rate_limited(route_id, limit);
    }
    if let Some(result) = ctx.cors.label() {
        gateway.metrics().cors(route_id, result);
    }
    let split = ctx
        .split
        .zip(route)
        .map(|(c, r)| (r.side(c.side).pool.config.name.as_str(), c.by.as_str()));
    if let Some((pool, by)) = split {
        gateway.metrics().split(route_id, pool, by);
    }
    let compressed = super::compress::stats(session);
    if let Some(c) = &compressed {
        gateway
            .metrics()
            .compressed(route_id, c.coding, c.bytes_in, c.bytes_out);
    }
    count(session, ctx);
    let now = std::time::SystemTime::now();
    count_usage(gateway, ctx, now);
    let log = gateway.access_log();
    if !log.enabled() {
        return;
    }
    let req = session.req_header();
    let consumer = ctx
        .consumer
        .zip(ctx.snapshot.as_ref())
        .and_then(|(c, s)| s.consumers.consumer(c))
        .map(|c| &*c.id)
        .or(ctx.bearer.as_ref().map(|b| &*b.consumer));
    let ssl = session.digest().and_then(|d| d.ssl_digest.as_ref());
    let identity = ssl.and_then(|ssl| ssl.extension.get::<crate::tls::ClientIdentity>());
    let subject = identity
        .and_then(|id| id.subject.as_ref())
        .and_then(|s| s.to_str().ok());
    let http2 = req.version == http::Version::HTTP_2;
    let tls = ssl.map(|ssl| crate::accesslog::Tls {
        version: match &*ssl.version {
            "TLSv1_3" => "TLSv1.3",
            "TLSv1_2" => "TLSv1.2",
            other => other,
        },
        sni: identity.and_then(|id| id.sni.as_deref()),
        alpn: alpn(session, http2),
    });
    let trace_id = ctx.trace.trace_id_hex();
    let upstream = ctx.backend().map(|b| b.address);
    let entry = Entry {
        request_id: crate::request_id::id_text(&ctx.request_id),
        // Before `early_request_filter` (a head that never parsed), the peer.
        client: ctx.client.ip.or_else(|| super::forward::peer_ip(session)),
        peer: ctx.client.peer.or_else(|| super::forward::peer_ip(session)),
        method: req.method.as_str(),
        host: crate::router::request_host(req),
        path: req.uri.path(),
        protocol: match req.version {
            http::Version::HTTP_2 => "HTTP/2",
            http::Version::HTTP_10 => "HTTP/1.0",
            http::Version::HTTP_09 => "HTTP/0.9",
            _ => "HTTP/1.1",
        },
        status: session
            .response_written()
            .map_or(CLIENT_CLOSED, |r| r.status.as_u16()),
        route: route.map(|r| r.id.as_str()),
        upstream,
        attempts: ctx.attempts(),
        duration: ctx.started.elapsed(),
        bytes_sent: session.body_bytes_sent(),
        consumer,
        key_prefix: ctx.key_prefix.as_deref(),
        issuer: ctx.bearer.as_ref().map(|b| &*b.issuer_id),
        auth_failure: ctx.auth_failure,
        limit: ctx.denied_by,
        client_cert_subject: subject,
        trace_id: std::str::from_utf8(&trace_id).unwrap_or(""),
        upstream_ttfb: ctx.upstream_ttfb,
        bytes_received: session.body_bytes_read(),
        tls,
        error: e.map(|e| e.etype().as_str()),
        cache: super::caching::result_label(ctx),
        pool: ctx.pool.as_ref().map(|t| t.pool.config.name.as_str()),
        decisions: ctx.decisions.names().collect(),
        cors: ctx.cors.label(),
        split: split.map(|(pool, _)| pool),
        split_by: split.map(|(_, by)| by),
        mirror: ctx.mirror.label(),
        compression: compressed.as_ref().map(|c| c.coding),
    };
    log.write(entry.to_json(now));
}

/// Count the request in its consumer's usage of its route: an API key's
/// consumer, or a bearer token's.
fn count_usage(gateway: &Gateway, ctx: &RequestCtx, now: std::time::SystemTime) {
    let (Some(snapshot), Some(index)) = (&ctx.snapshot, ctx.route) else {
        return;
    };
    let Some(route) = snapshot.routes.get(index) else {
        return;
    };
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let refusal = crate::usage::UsageRefusal::of(ctx.auth_failure, ctx.denied_by);
    if let Some(consumer) = ctx.consumer.and_then(|c| snapshot.consumers.consumer(c)) {
        consumer.usage.record(index, &route.id, refusal, secs);
    } else if let Some(bearer) = &ctx.bearer {
        let usage = gateway.usage().for_token_consumer(&bearer.subject);
        usage.cell(&route.id).record(refusal, secs);
    }
}

/// The protocol the TLS handshake negotiated with ALPN, if any.
fn alpn(session: &Session, http2: bool) -> Option<&'static str> {
    if http2 {
        // HTTP/2 over TLS is only ever negotiated with ALPN.
        return Some("h2");
    }
    use pingora_core::protocols::ALPN;
    match session.as_downstream().stream()?.selected_alpn_proto()? {
        ALPN::H2 => Some("h2"),
        _ => Some("http/1.1"),
    }
}

/// The backend of the latest attempt answered with `status`.
pub fn upstream_response(ctx: &mut RequestCtx, status: u16, now: u64) {
    let took = ctx.upstream_started.map(|t| t.elapsed());
    ctx.upstream_ttfb = took;
    let (Some(ticket), Some(&i)) = (ctx.pool.as_mut(), ctx.tried.last()) else {
        return;
    };
    let Some(backend) = ticket.pool.backends.get(i) else {
        return;
    };
    backend.state.metrics.response(status);
    if let Some(took) = took {
        ticket.pool.state.metrics.response_head(took);
    }
    let outcome = ticket.responded(i, now, status);
    decisions(&mut ctx.decisions, outcome);
}

/// Note what an attempt's outcome did to the backend and the pool.
pub fn decisions(decisions: &mut Decisions, outcome: AttemptOutcome) {
    if outcome.ejected {
        decisions.add(Decisions::BACKEND_EJECTED);
    }
    if outcome.tripped {
        decisions.add(Decisions::BREAKER_TRIPPED);
    }
}

/// Status recorded for a request whose client went away before any
/// response was written (nginx's convention).
pub const CLIENT_CLOSED: u16 = 499;

/// The request metrics, through the handles resolved at snapshot build.
fn count(session: &Session, ctx: &RequestCtx) {
    let Some(snapshot) = ctx.snapshot.as_ref() else {
        return;
    };
    let metrics = ctx
        .route()
        .map_or(&snapshot.unmatched_metrics, |r| &r.metrics);
    let status = session
        .response_written()
        .map_or(CLIENT_CLOSED, |r| r.status.as_u16());
    metrics.record(
        crate::metrics::method_index(&session.req_header().method),
        status,
        ctx.started.elapsed(),
        session.body_bytes_read(),
        session.body_bytes_sent(),
    );
}
