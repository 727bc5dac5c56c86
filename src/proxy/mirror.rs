//! `[routes.mirror]`: a copy of a forwarded request sent to a shadow pool,
//! fire-and-forget.
//!
//! The copy is the request as the backend sees it (key removed, consumer
//! and forwarding headers on, path rewritten), taken from the first
//! attempt, with `X-Portcullis-Mirror: ROUTE-ID`. With `include_body` its
//! body is the request's, kept as the chunks stream to the backend (no
//! copy of the bytes) up to `max_body_size`; without, the copy has an
//! empty body. It leaves when the request body has been read, on a task of
//! its own: the real request never waits for it, and its answer (or
//! failure) is counted and discarded. It never reaches the cache, the
//! consumer's usage or limits, or the shadow pool's breaker and outlier
//! detection. `max_in_flight` copies at most are outstanding per route;
//! beyond, a copy is dropped and counted.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pingora_core::connectors::http::Connector;
use pingora_http::RequestHeader;

use super::RequestCtx;
use crate::gateway::Gateway;

/// Where a request's copy is.
#[derive(Debug, Default)]
pub enum MirrorState {
    /// Not copied (no mirror on the route, or not sampled).
    #[default]
    None,
    /// Sampled; the copy is made when the request is shaped.
    Chosen,
    /// The head is taken; the body is being gathered.
    Gathering {
        head: Box<RequestHeader>,
        body: Vec<Bytes>,
        size: u64,
    },
    /// Settled: `sent`, `dropped` or `too_large`.
    Done(&'static str),
}

impl MirrorState {
    /// For the access log: what became of the copy, once settled.
    pub fn label(&self) -> Option<&'static str> {
        match self {
            MirrorState::Done(what) => Some(what),
            _ => None,
        }
    }
}

/// Sends the copies: one connector (its own connection pool) for every
/// shadow pool.
pub struct Mirrors {
    connector: Arc<Connector>,
}

impl Default for Mirrors {
    fn default() -> Self {
        Mirrors {
            connector: Arc::new(Connector::new(None)),
        }
    }
}

/// A copy of a request that takes longer than this in all is abandoned
/// (when its pool sets no `total` timeout).
const LONGEST: Duration = Duration::from_secs(60);

impl Mirrors {
    /// The first attempt's shaped head: keep a copy when the request was
    /// sampled. A later attempt replays the body from its start, so what
    /// was gathered of it is dropped.
    pub fn take_head(ctx: &mut RequestCtx, upstream: &RequestHeader) {
        match &mut ctx.mirror {
            MirrorState::Chosen => {}
            MirrorState::Gathering { body, size, .. } => {
                body.clear();
                *size = 0;
                return;
            }
            MirrorState::None | MirrorState::Done(_) => return,
        }
        let Some(mirror) = ctx.route().and_then(|r| r.mirror.as_deref()) else {
            return;
        };
        let mut head = Box::new(upstream.clone());
        let _ = head.insert_header(super::owned::MIRROR_HEADER, mirror.marker.clone());
        head.remove_header(&http::header::EXPECT);
        ctx.mirror = MirrorState::Gathering {
            head,
            body: Vec::new(),
            size: 0,
        };
    }

    /// A chunk of the request body on its way to the backend; at its end
    /// the copy leaves.
    pub fn body(
        &self,
        gateway: &Arc<Gateway>,
        ctx: &mut RequestCtx,
        data: &Option<Bytes>,
        end: bool,
    ) {
        let MirrorState::Gathering { body, size, .. } = &mut ctx.mirror else {
            return;
        };
        let Some(mirror) = ctx
            .snapshot
            .as_ref()
            .zip(ctx.route)
            .and_then(|(s, i)| s.routes.get(i)?.mirror.as_deref())
        else {
            return;
        };
        if let (true, Some(chunk)) = (mirror.include_body, data) {
            *size += chunk.len() as u64;
            if *size > mirror.max_body_size {
                ctx.mirror = MirrorState::Done("too_large");
                count(gateway, ctx, "too_large");
                return;
            }
            if !chunk.is_empty() {
                body.push(chunk.clone());
            }
        }
        if end {
            self.send(gateway, ctx);
        }
    }

    fn send(&self, gateway: &Arc<Gateway>, ctx: &mut RequestCtx) {
        let MirrorState::Gathering { head, body, size } =
            std::mem::replace(&mut ctx.mirror, MirrorState::Done("sent"))
        else {
            return;
        };
        let Some(route) = ctx.route() else {
            return;
        };
        let Some(mirror) = route.mirror.as_deref() else {
            return;
        };
        let Ok(permit) = mirror.slots.clone().try_acquire_owned() else {
            ctx.mirror = MirrorState::Done("dropped");
            count(gateway, ctx, "dropped");
            return;
        };
        let copy = Copy {
            head: with_length(head, size, mirror.include_body),
            body,
            pool: mirror.pool.clone(),
            route: route.id.clone(),
        };
        let (gateway, connector) = (gateway.clone(), self.connector.clone());
        tokio::spawn(async move {
            let result = copy.send(&gateway, &connector).await;
            gateway.metrics().mirror(&copy.route, result);
            drop(permit);
        });
    }
}

fn count(gateway: &Gateway, ctx: &RequestCtx, result: &str) {
    gateway
        .metrics()
        .mirror(ctx.route().map_or("", |r| r.id.as_str()), result);
}

/// The head framed for the body the copy carries: its length, never
/// chunked.
fn with_length(mut head: Box<RequestHeader>, size: u64, include_body: bool) -> Box<RequestHeader> {
    let had_body = head.headers.contains_key(http::header::CONTENT_LENGTH)
        || head.headers.contains_key(http::header::TRANSFER_ENCODING);
    head.remove_header(&http::header::TRANSFER_ENCODING);
    head.remove_header(&http::header::CONTENT_LENGTH);
    let length = if include_body { size } else { 0 };
    if had_body || length > 0 {
        let _ = head.insert_header(http::header::CONTENT_LENGTH, length);
    }
    head
}

/// A copy on its way.
struct Copy {
    head: Box<RequestHeader>,
    body: Vec<Bytes>,
    pool: Arc<crate::upstream::Pool>,
    route: String,
}

impl Copy {
    /// Send it to a usable backend of the shadow pool and read the answer
    /// to its end; the metric's result (`2xx` … `5xx`, or `failed`).
    async fn send(&self, gateway: &Gateway, connector: &Connector) -> &'static str {
        let timeouts = &self.pool.config.timeouts;
        let longest = timeouts.total.unwrap_or(LONGEST);
        match tokio::time::timeout(longest, self.exchange(gateway, connector)).await {
            Ok(Ok(status)) => match status {
                200..=299 => "2xx",
                300..=399 => "3xx",
                400..=499 => "4xx",
                _ => "5xx",
            },
            Ok(Err(_)) | Err(_) => "failed",
        }
    }

    async fn exchange(
        &self,
        gateway: &Gateway,
        connector: &Connector,
    ) -> pingora_error::Result<u16> {
        let now = gateway.clock().now_nanos();
        let index = self
            .pool
            .select(b"", &[], now)
            .ok_or_else(super::errors::no_healthy_backend)?;
        let backend = &self.pool.backends[index];
        let timeouts = &self.pool.config.timeouts;
        let peer = crate::upstream::peer::http_peer(&self.pool, backend, timeouts, None);
        let (mut session, _) = connector.get_http_session(&peer).await?;
        session.write_request_header(self.head.clone()).await?;
        let last = self.body.len();
        for (i, chunk) in self.body.iter().enumerate() {
            session
                .write_request_body(chunk.clone(), i + 1 == last)
                .await?;
        }
        session.finish_request_body().await?;
        session.read_response_header().await?;
        let status = session.response_header().map_or(0, |r| r.status.as_u16());
        while session.read_response_body().await?.is_some() {}
        if session.response_done() {
            connector
                .release_http_session(session, &peer, timeouts.idle)
                .await;
        } else {
            session.shutdown().await;
        }
        Ok(status)
    }
}
