//! The `ProxyHttp` implementation: one method per request phase, each
//! handing off to the module that owns the concern. Read top to bottom, it is
//! the life of a request.

mod admission;
mod caching;
mod client;
mod compress;
mod ctx;
pub mod errors;
pub mod forward;
mod mirror;
pub mod owned;
pub mod problem;
mod record;
mod retry;
pub mod trace;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora_cache::key::HashBinary;
use pingora_cache::{CacheKey, CacheMeta, ForcedFreshness, HitHandler, RespCacheable};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use crate::decide::{self, Arrival, Verdict};
use crate::gateway::Gateway;
use crate::metrics::{FailureReason, RetryReason};
use crate::upstream::InflightGuard;
pub use ctx::RequestCtx;
use problem::Problem;

/// The gateway's proxy logic, shared by every worker.
pub struct GatewayProxy {
    gateway: Arc<Gateway>,
    /// Sends `[routes.mirror]` copies.
    mirrors: mirror::Mirrors,
}

impl GatewayProxy {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self {
            gateway,
            mirrors: mirror::Mirrors::default(),
        }
    }

    /// A fresh stored response answers the request: shaped by
    /// `response_filter` as on Pingora's hit path, then sent.
    async fn serve_fresh_hit(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        hit: caching::FreshHit,
    ) -> Result<()> {
        let mut header = hit.header;
        self.response_filter(session, &mut header, ctx).await?;
        caching::send_hit(session, header, hit.body).await
    }
}

/// An attempt got no response: count it against its backend (metrics,
/// last error) and, when it `counts`, in outlier detection and the
/// breaker; count the retry decided above.
fn count_failure(
    ctx: &mut RequestCtx,
    e: &Error,
    retry: Option<RetryReason>,
    counts: bool,
    now: u64,
) {
    if let Some(backend) = ctx.backend() {
        backend.state.failed(e);
    }
    if let (Some(ticket), Some(&i)) = (ctx.pool.as_mut(), ctx.tried.last()) {
        if let (true, Some(reason)) = (e.retry(), retry) {
            ticket.pool.state.metrics.retry(reason);
        }
        if counts {
            let outcome = ticket.failed(i, now, FailureReason::of(e));
            record::decisions(&mut ctx.decisions, outcome);
        }
    }
}

fn route_index(ctx: &RequestCtx) -> Result<usize> {
    ctx.route.ok_or_else(|| {
        Error::explain(
            pingora_error::ErrorType::InternalError,
            "request admitted without a matched route",
        )
    })
}

#[async_trait]
impl ProxyHttp for GatewayProxy {
    type CTX = RequestCtx;

    /// Every request gets a [`compress::Compress`] module (idle unless its
    /// route compresses), in place of Pingora's idle default one.
    fn init_downstream_modules(&self, modules: &mut pingora_core::modules::http::HttpModules) {
        modules.add_module(Box::new(compress::CompressBuilder));
    }

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(Some(self.gateway.requests().enter()))
    }

    /// Runs first: pin the snapshot this request will use to the end, set
    /// the client timeouts for the rest of the request, settle the
    /// client's address, drop an `Upgrade: h2c`, settle the request id,
    /// the trace context and the listener's policy.
    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let snapshot = self.gateway.snapshot();
        client::apply_timeouts(session, &snapshot.config.server.client);
        // Pipelined HTTP/1.1 requests are served in order (RFC 9112 §9.3.2),
        // as nginx does, instead of closing the connection on them.
        session.as_downstream_mut().set_pipelining_enabled(true);
        ctx.client = forward::ClientFacts::of(session, &snapshot.config.server.trusted_proxies);
        ctx.snapshot = Some(snapshot);
        forward::drop_h2c_upgrade(session.req_header_mut());
        ctx.request_id = crate::request_id::request_id(session.req_header());
        ctx.trace = trace::TraceContext::for_request(session.req_header());
        let local = || session.server_addr().and_then(|a| a.as_inet()).copied();
        if let Some(policy) = self.gateway.listener_policy(local) {
            ctx.redirect_https = policy.redirect_https;
            ctx.hsts = policy.hsts.clone();
        }
        Ok(())
    }

    /// Decide what happens to the request (see [`crate::decide`]: the
    /// head's rules, the redirect to HTTPS, the route, the key, its scope
    /// and the limits, the declared body size, the route's sunset) and
    /// answer it here when the gateway answers itself (returns `Ok(true)`):
    /// a refusal, the redirect, or a fresh cache hit on an admitted request
    /// that needs nothing but the stored response (`caching::fresh_hit`;
    /// other hits go through Pingora's cache phases below). A pool that
    /// cannot take the request answers from `upstream_peer`, after the
    /// cache had its say.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let Some(snapshot) = ctx.snapshot.clone() else {
            return Err(Error::explain(
                pingora_error::ErrorType::InternalError,
                "no config snapshot pinned by early_request_filter",
            ));
        };
        let arrival = Arrival {
            ip: ctx.client.ip,
            tls: ctx.client.tls,
            redirect_https: ctx.redirect_https,
            roll: rand::random(),
        };
        let decision = decide::decide(
            &snapshot,
            session.req_header_mut(),
            &arrival,
            self.gateway.clock().now_nanos(),
            self.gateway.limit_store(),
        )
        .await;
        match ctx.take(decision) {
            Verdict::Forward => {
                let route = route_index(ctx)?;
                if let Some(policy) = &snapshot.routes[route].compression {
                    compress::plan(session, policy.clone(), ctx.coding);
                }
                ctx.deadline = snapshot.routes[route]
                    .side(ctx.side())
                    .timeouts
                    .total
                    .map(|t| ctx.started + t);
                let Some(hit) = caching::fresh_hit(session, ctx) else {
                    return Ok(false);
                };
                // Boxed: only hits pay for the size of its future.
                Box::pin(self.serve_fresh_hit(session, ctx, hit)).await?;
                Ok(true)
            }
            Verdict::Preflight(fields) => {
                problem::preflight(session, &fields, &ctx.request_id).await?;
                Ok(true)
            }
            Verdict::RedirectHttps(port) => {
                problem::redirect_to_https(session, port, &ctx.request_id).await?;
                Ok(true)
            }
            Verdict::Refuse(refusal) => {
                problem::refuse(session, &refusal, &ctx.request_id).await?;
                Ok(true)
            }
        }
    }

    /// On a caching route, turn the cache on for `GET` and `HEAD`; runs
    /// after `request_filter` admitted the request.
    fn request_cache_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        caching::enable(session, ctx);
        Ok(())
    }

    /// Route, host, normalized path and query, key headers, consumer.
    fn cache_key_callback(&self, session: &Session, ctx: &mut RequestCtx) -> Result<CacheKey> {
        caching::lookup_key(session, ctx)
    }

    fn cache_miss(&self, session: &mut Session, ctx: &mut RequestCtx) {
        caching::missed(ctx);
        session.cache.cache_miss();
    }

    /// The request's own `Cache-Control` may demand revalidation of a
    /// fresh object or accept a stale one.
    async fn cache_hit_filter(
        &self,
        _session: &mut Session,
        meta: &CacheMeta,
        _hit_handler: &mut HitHandler,
        is_fresh: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<ForcedFreshness>> {
        Ok(caching::hit_freshness(meta, is_fresh, ctx))
    }

    /// Variants by the stored response's `Vary`, matched against the
    /// request as forwarded (RFC 9111 §4.1).
    fn cache_vary_filter(
        &self,
        meta: &CacheMeta,
        ctx: &mut RequestCtx,
        req: &RequestHeader,
    ) -> Option<HashBinary> {
        caching::variance(meta, ctx, req)
    }

    /// Not served from the cache: `only-if-cached` gets a 504 instead of a
    /// trip to the backend.
    async fn proxy_upstream_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        if !caching::only_if_cached(ctx) {
            return Ok(true);
        }
        let status = caching::own_answer_status(session, ctx, "only-if-cached");
        let extra: Vec<_> = status.into_iter().collect();
        // Boxed: inline, the rare answer's future would make the future of
        // every request's call of this hook as large as itself (1.2 KiB,
        // copied into its box each time).
        Box::pin(problem::respond(
            session,
            Problem::GatewayTimeout,
            &ctx.request_id,
            &extra,
        ))
        .await?;
        Ok(false)
    }

    /// RFC 9111 storing rules and freshness (`cache/policy.rs`).
    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<RespCacheable> {
        Ok(caching::response_cacheable(session, resp, ctx))
    }

    /// Stale while revalidating, or when the backend fails.
    fn should_serve_stale(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        error: Option<&Error>,
    ) -> bool {
        caching::serve_stale(session, ctx, error)
    }

    /// Admit the request to its pool (or the pool's fallback) on the first
    /// attempt: 503 at once when the breaker is open, the pool saturated or
    /// no backend usable (see `upstream::Pool::admit`). Then pick a usable
    /// backend not tried yet by this request and describe the connection to
    /// it. After a failure on a reused connection, the retry goes to an
    /// untried backend if there is one, else to the same backend, and always
    /// over a fresh connection (see `error_while_proxy`).
    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        if ctx.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(errors::deadline_exceeded());
        }
        let now = self.gateway.clock().now_nanos();
        let first = match &ctx.pool {
            None => Some(
                ctx.route()
                    .ok_or_else(errors::no_healthy_backend)?
                    .side(ctx.side())
                    .pool
                    .clone(),
            ),
            Some(_) => None,
        };
        admission::enter(ctx, first, now)?;
        let (Some(route), Some(ticket)) = (ctx.route(), ctx.pool.as_ref()) else {
            return Err(errors::no_healthy_backend());
        };
        let pool = &ticket.pool;
        let mut ip = String::new();
        // The admitting pool's key: a fallback may balance differently.
        let key = match &pool.config.balance {
            crate::config::model::Balance::ConsistentHash(k) => {
                forward::hash_key(session, k, ctx.client.ip, &mut ip)
            }
            _ => b"",
        };
        let index = pool
            .select(key, &ctx.tried, now)
            .or_else(|| {
                ctx.fresh_connection
                    .then(|| ctx.tried.last().copied())
                    .flatten()
            })
            .ok_or_else(errors::no_healthy_backend)?;
        let backend = &pool.backends[index];
        let timeouts = &route.side(ctx.side()).timeouts;
        let mut peer = crate::upstream::peer::http_peer(pool, backend, timeouts, ctx.deadline);
        if ctx.fresh_connection {
            retry::use_fresh_connection(&mut peer);
        }
        let state = backend.state.clone();
        if ticket.admission == crate::upstream::breaker::Admission::Probe {
            ctx.decisions.add(ctx::Decisions::BREAKER_PROBE);
        }
        ctx.tried.push(index);
        ctx.inflight = Some(InflightGuard::new(state));
        ctx.upstream_started = Some(Instant::now());
        Ok(Box::new(peer))
    }

    /// Connecting failed: retry on another backend (any method: nothing was
    /// sent) while the pool's retry budget and the deadline allow.
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        ctx.inflight = None;
        let now = self.gateway.clock().now_nanos();
        let e = retry::after_connect_failure(ctx, e, now);
        count_failure(ctx, &e, Some(RetryReason::Connect), true, now);
        e
    }

    /// The request failed after the connection was made. Retried only when
    /// it failed on a reused connection before any response byte, the
    /// method is idempotent and the body can be replayed; then on a fresh
    /// connection, within the pool's retry budget and the deadline.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        ctx.inflight = None;
        let now = self.gateway.clock().now_nanos();
        let (e, retry) = retry::after_proxy_error(peer, session, ctx, e, client_reused, now);
        // A stale keep-alive connection says nothing about the backend, a
        // status retry was counted with its response, and a client that
        // went away is not the backend's failure.
        let counts = retry != Some(RetryReason::StaleConnection)
            && !retry::is_status_retry(&e)
            && e.esource() == &pingora_error::ErrorSource::Upstream;
        count_failure(ctx, &e, retry, counts, now);
        e
    }

    /// Count a streamed request body against the route's `max_body_size`.
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        client::count_body(ctx, body)?;
        self.mirrors.body(&self.gateway, ctx, body, end_of_stream);
        Ok(())
    }

    /// Shape the request the backend sees: the API key taken off and the
    /// consumer id put on, path rewrite, header rules, `X-Forwarded-*`, the
    /// request id and the trace context. A sampled request's mirror copy
    /// is taken from it.
    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(forwarding) = ctx.forwarding() else {
            return Ok(());
        };
        let route = forwarding.route;
        let h2 = ctx.pool.as_ref().is_some_and(|t| t.pool.speaks_h2());
        if ctx.fresh_connection && !h2 {
            retry::close_after(upstream)?;
        }
        forward::rewrite_path(upstream, ctx.prefix_len, &route.rewrite)?;
        forward::shape(upstream, &forwarding)?;
        mirror::Mirrors::take_head(ctx, upstream);
        Ok(())
    }

    /// The backend's response head arrived: its status and time to first
    /// byte are counted against the backend and its pool (outlier
    /// detection and the breaker included); the head is made the
    /// gateway's (hop-by-hop fields off, HTTP/1.1, `Date` kept or set, 502
    /// for a status outside 100–599) before the cache stores it. A status
    /// the route's `retry_on` lists is retried on another backend when
    /// allowed.
    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let now = self.gateway.clock().now_nanos();
        let status = upstream.status.as_u16();
        record::upstream_response(ctx, status, now);
        forward::upstream_response(upstream)?;
        if retry::on_status(session, ctx, status, now) {
            return Err(retry::status_retry(status));
        }
        caching::upstream_response(upstream, ctx);
        Ok(())
    }

    /// Shape the response the client sees: lifecycle headers (deprecation,
    /// sunset), header rules, CORS fields, a split's sticky cookie, the
    /// request id and the rate-limit headers.
    async fn response_filter(
        &self,
        session: &mut Session,
        upstream: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(route) = ctx.route() {
            if let Some(lifecycle) = route.lifecycle.as_deref() {
                lifecycle.apply(upstream)?;
            }
            forward::apply_header_ops(upstream, &route.response_headers)?;
            if let Some(cors) = &route.cors {
                forward::set_cors(upstream, cors, &ctx.cors)?;
            }
            forward::set_split_cookie(upstream, route, ctx.split, ctx.client.tls)?;
        }
        caching::response(session, upstream, ctx)?;
        upstream.insert_header(forward::REQUEST_ID, ctx.request_id.clone())?;
        if let Some(hsts) = &ctx.hsts {
            upstream.insert_header(http::header::STRICT_TRANSPORT_SECURITY, hsts.clone())?;
        }
        if let Some((policy, current)) = ctx.rate_limit_headers.take() {
            upstream.insert_header("ratelimit-policy", policy)?;
            upstream.insert_header("ratelimit", current)?;
        }
        Ok(())
    }

    /// Enforce the route's total deadline while the response streams.
    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        match ctx.deadline {
            Some(d) if Instant::now() >= d => Err(errors::deadline_exceeded()),
            _ => Ok(None),
        }
    }

    /// The request failed: answer with a problem body unless the response
    /// already started or the client is gone.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        ctx.inflight = None;
        let problem = errors::problem_for(e);
        let code = problem.map_or(0, |p| p.status());
        if let Some(p) = problem {
            if session.response_written().is_none() {
                // The connection is not reused after a failed proxy
                // (`can_reuse_downstream: false`): say so, or a client may
                // send its next request on a connection being closed.
                session.set_keepalive(None);
                let mut extra = admission::retry_after(ctx);
                extra.extend(caching::own_answer_status(session, ctx, "upstream-error"));
                if let Err(err) = problem::respond(session, p, &ctx.request_id, &extra).await {
                    tracing::debug!(error = %err, "could not send error response");
                }
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// Runs last, for every request: the access-log line and counters.
    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        ctx.inflight = None;
        crate::guarded::request_done(session);
        caching::record(session, ctx);
        record::request_done(&self.gateway, session, e, ctx);
    }
}
