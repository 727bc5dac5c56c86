//! The client side of a request: the `[server.client]` timeouts, and a
//! streamed body that grows over the route's `max_body_size` (a declared
//! one is refused by the decision, see `crate::decide`).

use bytes::Bytes;
use pingora_error::Result;
use pingora_proxy::Session;

use super::{errors, RequestCtx};
use crate::config::model::ClientLimits;

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
