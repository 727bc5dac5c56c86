//! API version lifecycle on the request path: `410 Gone` from the sunset
//! on when the route asks for it (the headers themselves are compiled in
//! [`crate::policy::RouteLifecycle`]).

use http::HeaderValue;
use pingora_proxy::Session;

use super::problem::{self, Problem};
use crate::snapshot::Route;

/// Answer `410 Gone` (with the lifecycle headers) when `route` is past a
/// `gone` sunset at `now` (Unix nanoseconds, read only for such routes).
pub async fn answered_gone(
    session: &mut Session,
    route: &Route,
    now: impl FnOnce() -> u64,
    request_id: &HeaderValue,
) -> pingora_error::Result<bool> {
    let Some(lifecycle) = route.lifecycle.as_deref() else {
        return Ok(false);
    };
    if lifecycle.gone_from.is_none()
        || !lifecycle.gone(i64::try_from(now() / 1_000_000_000).unwrap_or(i64::MAX))
    {
        return Ok(false);
    }
    let headers = lifecycle.headers();
    problem::respond_detailed(session, Problem::Gone, None, None, request_id, headers).await?;
    Ok(true)
}
