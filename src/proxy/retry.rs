//! When a failed upstream attempt is tried again, and how.
//!
//! - A **connect failure** sent nothing, so any method may be retried, on a
//!   backend not tried yet.
//! - A failure **after the request was sent** is retried when it happened
//!   on a *reused* keep-alive connection before any response byte (the
//!   backend had closed it: Node.js, gunicorn and most app servers close
//!   idle connections after a few seconds), the method is idempotent and
//!   the request body can be replayed. The retry goes to an untried
//!   backend if there is one, else to the same backend, and always over a
//!   fresh connection — as nginx does — so a one-backend pool never
//!   answers "no healthy backend" because of a stale connection.
//! - The route's **`retry_on`** adds resets, timeouts and response
//!   statuses after the request was sent: idempotent, replayable requests
//!   only, and only on another backend.
//!
//! Every kind counts against the pool's `retries` and stops at the route's
//! deadline. All but stale-connection replays (an artefact of keep-alive,
//! not a sign of failure) also take a retry from the pool's **retry
//! budget**, so that retries cannot multiply an outage.

use std::time::Instant;

use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::RequestHeader;
use pingora_proxy::Session;

use super::ctx::Decisions;
use super::RequestCtx;
use crate::metrics::{FailureReason, RetryReason};

/// Connections for fresh-connection retries live in a reuse bucket of
/// their own (Pingora keys its pool by the peer's hash, which includes
/// `group_key`), and are never put back into it (`Connection: close`): so
/// that bucket is always empty and the connector always dials.
const FRESH_CONNECTION_GROUP: u64 = 0x706f_7274_6375_6c6c;

/// The error `upstream_response_filter` returns to retry a response whose
/// status the route's `retry_on` lists.
const STATUS_RETRY: &str = "retry_on status";

/// Whether another attempt fits the pool's `retries` and the deadline.
fn within_bounds(ctx: &RequestCtx) -> bool {
    let Some(ticket) = &ctx.pool else {
        return false;
    };
    let in_time = ctx.deadline.is_none_or(|d| Instant::now() < d);
    ctx.attempts() <= ticket.pool.config.retries as usize && in_time
}

/// Take a retry from the pool's budget; a spent budget is counted.
fn budget_allows(ctx: &mut RequestCtx, now: u64) -> bool {
    let Some(ticket) = &ctx.pool else {
        return false;
    };
    let Some(budget) = &ticket.pool.state.budget else {
        return true;
    };
    if budget.try_retry(now) {
        return true;
    }
    ticket.pool.state.metrics.budget_exhausted();
    ctx.decisions.add(Decisions::RETRY_BUDGET_EXHAUSTED);
    false
}

/// Whether a backend not tried yet by this request is usable.
fn untried(ctx: &RequestCtx, now: u64) -> bool {
    ctx.pool
        .as_ref()
        .is_some_and(|t| t.pool.has_untried(&ctx.tried, now))
}

/// Whether the request can be sent again: idempotent, and its body still
/// in the retry buffer.
fn replayable(session: &Session) -> bool {
    session.req_header().method.is_idempotent() && !session.as_ref().retry_buffer_truncated()
}

/// Decide the retry of a failed connect: on an untried backend only.
pub fn after_connect_failure(ctx: &mut RequestCtx, mut e: Box<Error>, now: u64) -> Box<Error> {
    ctx.fresh_connection = false;
    let retry = untried(ctx, now) && within_bounds(ctx) && budget_allows(ctx, now);
    e.set_retry(retry);
    e
}

/// Decide the retry of a request that failed after connecting; returns
/// the error and why it is retried, if it is.
pub fn after_proxy_error(
    peer: &HttpPeer,
    session: &mut Session,
    ctx: &mut RequestCtx,
    e: Box<Error>,
    reused: bool,
    now: u64,
) -> (Box<Error>, Option<RetryReason>) {
    if is_status_retry(&e) {
        // Decided (bounds and budget included) by `on_status`.
        return (e, Some(RetryReason::Status));
    }
    let mut e = e.more_context(format!("peer: {peer}"));
    let replayable = replayable(session);
    // Pingora marks the errors that a closed reused connection causes as
    // `ReusedOnly`: retryable exactly when the connection was reused.
    e.retry.decide_reuse(reused);
    let stale = e.retry() && reused && replayable && within_bounds(ctx);
    ctx.fresh_connection = stale;
    if stale {
        e.set_retry(true);
        return (e, Some(RetryReason::StaleConnection));
    }
    let retry_on = ctx.route().map(|r| &r.retry_on);
    let listed = match FailureReason::of(&e) {
        FailureReason::Reset if retry_on.is_some_and(|r| r.reset) => Some(RetryReason::Reset),
        FailureReason::Timeout if retry_on.is_some_and(|r| r.timeout) => Some(RetryReason::Timeout),
        _ => None,
    };
    let retry = listed.filter(|_| {
        e.esource() == &pingora_error::ErrorSource::Upstream
            && replayable
            && untried(ctx, now)
            && within_bounds(ctx)
            && budget_allows(ctx, now)
    });
    e.set_retry(retry.is_some());
    (e, retry)
}

/// After a response head with `status`: whether the route's `retry_on`
/// has it tried again on another backend (idempotent, replayable, within
/// bounds and budget).
pub fn on_status(session: &Session, ctx: &mut RequestCtx, status: u16, now: u64) -> bool {
    let listed = ctx
        .route()
        .is_some_and(|r| r.retry_on.statuses.binary_search(&status).is_ok());
    listed
        && replayable(session)
        && untried(ctx, now)
        && within_bounds(ctx)
        && budget_allows(ctx, now)
}

/// The error that makes Pingora retry a response `on_status` chose.
pub fn status_retry(status: u16) -> Box<Error> {
    let mut e = Error::explain(
        ErrorType::Custom(STATUS_RETRY),
        format!("the backend answered {status}, which the route retries"),
    );
    e.set_retry(true);
    e
}

/// Whether `e` is a [`status_retry`] (its status was counted already).
pub fn is_status_retry(e: &Error) -> bool {
    e.etype() == &ErrorType::Custom(STATUS_RETRY)
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
