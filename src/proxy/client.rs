//! Refusing what a client sends over the limits: a request head that
//! breaks the rules of `proxy/strict.rs` or the `[server.client]` limits
//! (400, 414, 431, 501), and a body over the route's `max_body_size`
//! (413): at once when `Content-Length` says so, else as it streams.
//! The connection is closed after such an answer: the rest of the request
//! is never read.

use bytes::Bytes;
use pingora_error::Result;
use pingora_proxy::Session;

use super::problem::{self, Problem};
use super::{errors, forward, owned, strict, RequestCtx};
use crate::config::model::ClientLimits;
use crate::target;

/// The `[server.client]` timeouts from here on: the head is in (the
/// header timeout stops until the next request), a body read may wait at
/// most `body_timeout` (not on an upgrade: a WebSocket's idle time is the
/// route's `read_timeout` upstream, and Pingora's 60 s per read here), and
/// `keepalive_timeout = "0s"` closes the connection after the response.
pub fn apply_timeouts(session: &mut Session, limits: &ClientLimits) {
    crate::guarded::request_started(session);
    if !session.is_upgrade_req() {
        session.set_read_timeout(Some(limits.body_timeout));
    }
    if limits.keepalive_timeout.is_zero() {
        session.set_keepalive(None);
    }
}

/// Check the request head; answer and return `true` when it is refused.
pub async fn refused_head(session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
    let Some(snapshot) = ctx.snapshot.as_ref() else {
        return Ok(false);
    };
    let limits = &snapshot.config.server.client;
    let seen = match strict::check(session.req_header(), limits) {
        Ok(seen) => seen,
        Err(refusal) => {
            let (problem, detail) = refusal.problem();
            refuse(session, ctx, problem, detail).await?;
            return Ok(true);
        }
    };
    strict::normalize_content_length(session.req_header_mut());
    if seen.via && forward::has_looped(session.req_header(), snapshot.config.server.via()) {
        let detail = "The request has already passed through this gateway (its Via): a pool leads back to it.";
        refuse(session, ctx, Problem::LoopDetected, detail).await?;
        return Ok(true);
    }
    let policy = limits.headers_with_underscores;
    let underscores = if seen.underscores {
        owned::underscores(session.req_header_mut(), policy)
    } else {
        Ok(())
    };
    if let Err(name) = underscores {
        let detail = format!("Header names with underscores are refused ({name}).");
        refuse(session, ctx, Problem::BadRequest, &detail).await?;
        return Ok(true);
    }
    let tls = session
        .digest()
        .and_then(|d| d.ssl_digest.as_ref())
        .is_some();
    if let Err(refusal) = target::canonicalize(session.req_header_mut(), tls, &limits.paths) {
        refuse(session, ctx, Problem::BadRequest, &refusal.to_string()).await?;
        return Ok(true);
    }
    Ok(false)
}

/// On a route with `max_body_size`: answer 413 and return `true` when the
/// declared length is over it; else count the body as it streams.
pub async fn refused_body(
    session: &mut Session,
    ctx: &mut RequestCtx,
    max: Option<u64>,
) -> Result<bool> {
    let Some(max) = max else {
        return Ok(false);
    };
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        let detail = format!("The request body is larger than {max} bytes.");
        refuse(session, ctx, Problem::PayloadTooLarge, &detail).await?;
        return Ok(true);
    }
    ctx.body_limit = Some((max, 0));
    Ok(false)
}

/// `request_body_filter`: a streamed body that grows over the limit ends
/// the request with a 413 (when no response has started).
pub fn count_body(ctx: &mut RequestCtx, body: &Option<Bytes>) -> Result<()> {
    let (Some((max, read)), Some(chunk)) = (ctx.body_limit.as_mut(), body) else {
        return Ok(());
    };
    *read += chunk.len() as u64;
    if *read > *max {
        return Err(errors::body_too_large(*max));
    }
    Ok(())
}

async fn refuse(
    session: &mut Session,
    ctx: &RequestCtx,
    problem: Problem,
    detail: &str,
) -> Result<()> {
    session.set_keepalive(None);
    problem::respond_detailed(session, problem, Some(detail), None, &ctx.request_id, &[]).await
}
