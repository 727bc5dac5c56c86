//! Admitting a request to an upstream pool: the breaker, the pool's
//! `max_in_flight`, usable backends and the fallback chain decide on the
//! first attempt (`upstream::Pool::admit`); a retry is refused while the
//! pool's breaker is open. A refusal answers 503 at once, before any
//! backend sees the request — or a caching route serves stale.

use std::sync::Arc;
use std::time::Duration;

use pingora_error::Result;

use super::ctx::Decisions;
use super::{errors, RequestCtx};
use crate::upstream::{Pool, PoolRefusal};

/// Admit the request to `first`, the route's pool (first attempt), or
/// check that its retry may still go (later attempts: `first` is `None`).
pub fn enter(ctx: &mut RequestCtx, first: Option<Arc<Pool>>, now: u64) -> Result<()> {
    let Some(pool) = first else {
        let Some(ticket) = &ctx.pool else {
            return Err(errors::no_healthy_backend());
        };
        if ticket.pool.admits_retry() {
            return Ok(());
        }
        let retry_after = ticket
            .pool
            .state
            .breaker
            .as_ref()
            .and_then(|b| b.open_until())
            .map_or(Duration::ZERO, |until| {
                Duration::from_nanos(until.saturating_sub(now))
            });
        return Err(refuse(ctx, PoolRefusal::BreakerOpen { retry_after }));
    };
    match pool.admit(now) {
        Ok(ticket) => {
            if ticket.fell_back {
                ctx.decisions.add(Decisions::FALLBACK);
            }
            ctx.pool = Some(ticket);
            Ok(())
        }
        Err(refusal) => Err(refuse(ctx, refusal)),
    }
}

fn refuse(ctx: &mut RequestCtx, refusal: PoolRefusal) -> Box<pingora_error::Error> {
    ctx.decisions.add(match refusal {
        PoolRefusal::NoUsableBackend => Decisions::NO_USABLE_BACKEND,
        PoolRefusal::BreakerOpen { .. } => Decisions::BREAKER_OPEN,
        PoolRefusal::Saturated => Decisions::MAX_IN_FLIGHT,
    });
    ctx.refusal = Some(refusal);
    errors::refused(refusal)
}

/// `Retry-After` for a 503 from an open breaker: whole seconds until it
/// lets probes through, at least 1.
pub fn retry_after(ctx: &RequestCtx) -> Vec<(&'static str, String)> {
    match ctx.refusal {
        Some(PoolRefusal::BreakerOpen { retry_after }) => {
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            vec![("retry-after", secs.max(1).to_string())]
        }
        _ => Vec::new(),
    }
}
