//! Mapping proxy errors to the problem a client sees, and the retry policy.

use pingora_error::{Error, ErrorSource, ErrorType};

use super::problem::Problem;

/// The problem response for `e`, or `None` when the client is gone.
pub fn problem_for(e: &Error) -> Option<Problem> {
    use ErrorType::*;
    Some(match e.etype() {
        HTTPStatus(503) => Problem::NoHealthyBackend,
        Custom(BREAKER_OPEN) => Problem::CircuitOpen,
        Custom(POOL_SATURATED) => Problem::PoolSaturated,
        Custom(BODY_TOO_LARGE) => Problem::PayloadTooLarge,
        HTTPStatus(504) => Problem::GatewayTimeout,
        HTTPStatus(400) => Problem::BadRequest,
        HTTPStatus(_) => Problem::BadGateway,
        // `[server.client] body_timeout`: the client stopped sending its body.
        ReadTimedout if e.esource() == &ErrorSource::Downstream => Problem::RequestTimeout,
        ConnectTimedout | ReadTimedout | WriteTimedout | TLSHandshakeTimedout
            if e.esource() == &ErrorSource::Upstream =>
        {
            Problem::GatewayTimeout
        }
        _ => match e.esource() {
            ErrorSource::Upstream => Problem::BadGateway,
            ErrorSource::Downstream => match e.etype() {
                ReadError | WriteError | ConnectionClosed => return None,
                _ => Problem::BadRequest,
            },
            ErrorSource::Internal | ErrorSource::Unset => Problem::Internal,
        },
    })
}

/// The error `upstream_peer` returns when no backend can take the request.
pub fn no_healthy_backend() -> Box<Error> {
    Error::explain(ErrorType::HTTPStatus(503), "no healthy backend in pool")
}

const BREAKER_OPEN: &str = "circuit breaker open";
const POOL_SATURATED: &str = "pool saturated";
const BODY_TOO_LARGE: &str = "request body too large";

/// The error a request body over the route's `max_body_size` ends with.
pub fn body_too_large(max: u64) -> Box<Error> {
    Error::explain(
        ErrorType::Custom(BODY_TOO_LARGE),
        format!("the request body is over max_body_size ({max} bytes)"),
    )
}

/// The error `upstream_peer` returns when the pool refused the request.
pub fn refused(r: crate::upstream::PoolRefusal) -> Box<Error> {
    use crate::upstream::PoolRefusal;
    match r {
        PoolRefusal::NoUsableBackend => no_healthy_backend(),
        PoolRefusal::BreakerOpen { .. } => Error::explain(
            ErrorType::Custom(BREAKER_OPEN),
            "the pool's circuit breaker is open",
        ),
        PoolRefusal::Saturated => Error::explain(
            ErrorType::Custom(POOL_SATURATED),
            "max_in_flight requests already in flight to the pool",
        ),
    }
}

/// The error for a backend status line outside 100–599 (502).
pub fn invalid_upstream_status(status: u16) -> Box<Error> {
    let mut e = Error::explain(
        ErrorType::HTTPStatus(502),
        format!("the backend answered with status {status}, outside 100-599"),
    );
    e.as_up();
    e
}

/// The error returned when the route's total deadline has passed.
pub fn deadline_exceeded() -> Box<Error> {
    Error::explain(ErrorType::HTTPStatus(504), "request deadline exceeded")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_errors_map_to_502_and_504() {
        let refused = Error::new_up(ErrorType::ConnectRefused);
        assert_eq!(problem_for(&refused), Some(Problem::BadGateway));
        let timeout = Error::new_up(ErrorType::ReadTimedout);
        assert_eq!(problem_for(&timeout), Some(Problem::GatewayTimeout));
        let gone = Error::new_down(ErrorType::ConnectionClosed);
        assert_eq!(problem_for(&gone), None);
        assert_eq!(
            problem_for(&no_healthy_backend()),
            Some(Problem::NoHealthyBackend)
        );
        use crate::upstream::PoolRefusal;
        let open = super::refused(PoolRefusal::BreakerOpen {
            retry_after: std::time::Duration::from_secs(3),
        });
        assert_eq!(problem_for(&open), Some(Problem::CircuitOpen));
        assert_eq!(
            problem_for(&super::refused(PoolRefusal::Saturated)),
            Some(Problem::PoolSaturated)
        );
        let mut big = body_too_large(10);
        assert_eq!(problem_for(&big), Some(Problem::PayloadTooLarge));
        big.as_down();
        assert_eq!(problem_for(&big), Some(Problem::PayloadTooLarge));
    }
}
