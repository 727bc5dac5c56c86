//! When a failed upstream attempt is tried again, and how.
//!
//! - A **connect failure** sent nothing, so any method may be retried, on a
//!   backend not tried yet.
//! - A failure **after the request was sent** is retried only when it
//!   happened on a *reused* keep-alive connection before any response byte
//!   (the backend had closed it: Node.js, gunicorn and most app servers
//!   close idle connections after a few seconds), the method is idempotent
//!   and the request body can be replayed. The retry goes to an untried
//!   backend if there is one, else to the same backend, and always over a
//!   fresh connection — as nginx does — so a one-backend pool never answers
//!   "no healthy backend" because of a stale connection.
//!
//! Both kinds count against the pool's `retries` and stop at the route's
//! deadline.

use std::time::Instant;

use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, Result};
use pingora_http::RequestHeader;
use pingora_proxy::Session;

use super::RequestCtx;

/// Connections for fresh-connection retries live in a reuse bucket of
/// their own (Pingora keys its pool by the peer's hash, which includes
/// `group_key`), and are never put back into it (`Connection: close`): so
/// that bucket is always empty and the connector always dials.
const FRESH_CONNECTION_GROUP: u64 = 0x706f_7274_6375_6c6c;

/// Whether another attempt fits the pool's retry budget and the deadline.
fn within_budget(ctx: &RequestCtx) -> bool {
    let Some(route) = ctx.route() else {
        return false;
    };
    let in_time = ctx.deadline.is_none_or(|d| Instant::now() < d);
    ctx.attempts() <= route.pool.config.retries as usize && in_time
}

/// Decide the retry of a failed connect: on an untried backend only.
pub fn after_connect_failure(ctx: &mut RequestCtx, mut e: Box<Error>) -> Box<Error> {
    let untried = ctx.route().is_some_and(|r| r.pool.has_untried(&ctx.tried));
    ctx.fresh_connection = false;
    e.set_retry(untried && within_budget(ctx));
    e
}

/// Decide the retry of a request that failed after connecting.
pub fn after_proxy_error(
    peer: &HttpPeer,
    session: &mut Session,
    ctx: &mut RequestCtx,
    e: Box<Error>,
    reused: bool,
) -> Box<Error> {
    let mut e = e.more_context(format!("peer: {peer}"));
    let replayable =
        session.req_header().method.is_idempotent() && !session.as_ref().retry_buffer_truncated();
    // Pingora marks the errors that a closed reused connection causes as
    // `ReusedOnly`: retryable exactly when the connection was reused.
    e.retry.decide_reuse(reused);
    let retry = e.retry() && reused && replayable && within_budget(ctx);
    ctx.fresh_connection = retry;
    e.set_retry(retry);
    e
}

/// Make `peer` bypass the pool of idle connections.
pub fn use_fresh_connection(peer: &mut HttpPeer) {
    peer.group_key = FRESH_CONNECTION_GROUP;
}

/// Ask the backend to close the fresh connection after this response, so
/// it never lands in the (otherwise unused) fresh-connection bucket.
pub fn close_after(upstream: &mut RequestHeader) -> Result<()> {
    upstream.insert_header(http::header::CONNECTION, "close")?;
    Ok(())
}
