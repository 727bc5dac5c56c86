//! The answers the gateway gives itself, as `application/problem+json`
//! (RFC 9457): which problem, its status, title and body. Writing one to a
//! client is the proxy's (`proxy/problem.rs`).
//!
//! Bodies name the status and a short, fixed explanation; never a backend
//! address, pool name or internal error text.

use bytes::Bytes;

/// One kind of problem the gateway answers with itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    NotFound,
    MethodNotAllowed,
    BadRequest,
    /// The request head (header_timeout) or the next piece of the body
    /// (body_timeout) did not arrive in time.
    RequestTimeout,
    /// No API key where the route reads it.
    KeyRequired,
    /// An unknown, expired, not yet valid or disabled key: which of these is
    /// not told, so keys cannot be probed.
    KeyInvalid,
    /// A valid key out of its consumer's scope.
    Forbidden,
    /// The client's address is refused by the route's `[routes.ip]`.
    AddressForbidden,
    /// A CORS preflight the route's `[routes.cors]` does not allow.
    CorsForbidden,
    /// No bearer token where the route reads it.
    TokenRequired,
    /// A token that does not verify, has expired, is for another issuer
    /// or audience…: which, is not told.
    TokenInvalid,
    /// A valid token without a scope the route requires.
    InsufficientScope,
    /// A rate limit or quota was hit.
    TooManyRequests,
    /// Too many failed key attempts from this address.
    TooManyFailedAttempts,
    /// The shared limit store cannot be reached and its `on_error` is
    /// `deny`.
    LimitsUnavailable,
    NoHealthyBackend,
    /// The request target is longer than `max_uri_length`.
    UriTooLong,
    /// The request head is over `max_header_size` or `max_headers`.
    HeadersTooLarge,
    /// The request body is over the route's `max_body_size`.
    PayloadTooLarge,
    /// A transfer coding the gateway does not implement.
    NotImplemented,
    /// The pool's circuit breaker is open: failing fast.
    CircuitOpen,
    /// `max_in_flight` requests are already in flight to the pool.
    PoolSaturated,
    /// The route's sunset has passed (`sunset_action = "gone"`).
    Gone,
    BadGateway,
    GatewayTimeout,
    /// The request already passed through this gateway (its `Via`).
    LoopDetected,
    Internal,
}

impl Problem {
    pub fn status(self) -> u16 {
        match self {
            Problem::NotFound => 404,
            Problem::MethodNotAllowed => 405,
            Problem::BadRequest => 400,
            Problem::RequestTimeout => 408,
            Problem::UriTooLong => 414,
            Problem::HeadersTooLarge => 431,
            Problem::PayloadTooLarge => 413,
            Problem::NotImplemented => 501,
            Problem::KeyRequired
            | Problem::KeyInvalid
            | Problem::TokenRequired
            | Problem::TokenInvalid => 401,
            Problem::Forbidden
            | Problem::InsufficientScope
            | Problem::AddressForbidden
            | Problem::CorsForbidden => 403,
            Problem::TooManyRequests | Problem::TooManyFailedAttempts => 429,
            Problem::NoHealthyBackend
            | Problem::CircuitOpen
            | Problem::PoolSaturated
            | Problem::LimitsUnavailable => 503,
            Problem::Gone => 410,
            Problem::BadGateway => 502,
            Problem::GatewayTimeout => 504,
            Problem::LoopDetected => 508,
            Problem::Internal => 500,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Problem::NotFound => "Not Found",
            Problem::MethodNotAllowed => "Method Not Allowed",
            Problem::BadRequest => "Bad Request",
            Problem::RequestTimeout => "Request Timeout",
            Problem::UriTooLong => "URI Too Long",
            Problem::HeadersTooLarge => "Request Header Fields Too Large",
            Problem::PayloadTooLarge => "Content Too Large",
            Problem::NotImplemented => "Not Implemented",
            Problem::KeyRequired
            | Problem::KeyInvalid
            | Problem::TokenRequired
            | Problem::TokenInvalid => "Unauthorized",
            Problem::Forbidden
            | Problem::InsufficientScope
            | Problem::AddressForbidden
            | Problem::CorsForbidden => "Forbidden",
            Problem::TooManyRequests | Problem::TooManyFailedAttempts => "Too Many Requests",
            Problem::NoHealthyBackend
            | Problem::CircuitOpen
            | Problem::PoolSaturated
            | Problem::LimitsUnavailable => "Service Unavailable",
            Problem::Gone => "Gone",
            Problem::BadGateway => "Bad Gateway",
            Problem::GatewayTimeout => "Gateway Timeout",
            Problem::LoopDetected => "Loop Detected",
            Problem::Internal => "Internal Server Error",
        }
    }

    pub fn detail(self) -> &'static str {
        match self {
            Problem::NotFound => "No route matches this request.",
            Problem::MethodNotAllowed => "The route does not accept this method.",
            Problem::BadRequest => "The request could not be understood.",
            Problem::RequestTimeout => "The request was not received in time.",
            Problem::UriTooLong => "The request target is too long.",
            Problem::HeadersTooLarge => "The request line and headers are too large.",
            Problem::PayloadTooLarge => "The request body is larger than this API accepts.",
            Problem::NotImplemented => "The request uses a feature the gateway does not implement.",
            Problem::KeyRequired => "An API key is required.",
            Problem::KeyInvalid => "The API key is not valid.",
            Problem::Forbidden => "The API key does not allow this request.",
            Problem::AddressForbidden => "Requests from this address are not allowed here.",
            Problem::CorsForbidden => "This cross-origin request is not allowed by this API's CORS policy.",
            Problem::TokenRequired => "A bearer token is required.",
            Problem::TokenInvalid => "The bearer token is not valid.",
            Problem::InsufficientScope => "The bearer token lacks a scope this request requires.",
            Problem::TooManyRequests => "Too many requests.",
            Problem::TooManyFailedAttempts => {
                "Too many requests with invalid API keys from this address."
            }
            Problem::LimitsUnavailable => {
                "Rate limits cannot be checked right now; try again shortly (see Retry-After)."
            }
            Problem::NoHealthyBackend => "No healthy upstream server is available.",
            Problem::CircuitOpen => {
                "The upstream service is failing; requests are refused until it recovers (see Retry-After)."
            }
            Problem::PoolSaturated => {
                "The upstream service has too many requests in flight; try again shortly."
            }
            Problem::Gone => "This API has been retired; see the Sunset and Link headers.",
            Problem::BadGateway => "The upstream server could not be reached or failed.",
            Problem::GatewayTimeout => "The upstream server did not answer in time.",
            Problem::LoopDetected => "The request has already passed through this gateway: a pool leads back to it.",
            Problem::Internal => "The gateway failed to process the request.",
        }
    }

    /// The JSON body. `request_id` is echoed so a client can quote it.
    pub fn body(self, request_id: &str) -> Bytes {
        self.body_with(request_id, None, None)
    }

    /// The JSON body with `detail` in place of the fixed one, and the name
    /// of the `limit` that was hit (429s).
    pub fn body_with(self, request_id: &str, detail: Option<&str>, limit: Option<&str>) -> Bytes {
        let mut body = serde_json::json!({
            "type": "about:blank",
            "title": self.title(),
            "status": self.status(),
            "detail": detail.unwrap_or(self.detail()),
            "request_id": request_id,
        });
        if let Some(limit) = limit {
            body["limit"] = limit.into();
        }
        Bytes::from(body.to_string())
    }
}

impl Problem {
    /// The whole HTTP/1.1 response, for answers written below Pingora's
    /// session (see `guarded/mod.rs`): the connection is closed after it.
    pub fn http1_response(self) -> Bytes {
        let id = crate::request_id::new_request_id();
        let id = crate::request_id::id_text(&id);
        let body = self.body(id);
        let status = self.status();
        let mut out = format!("HTTP/1.1 {status} {}\r\n", self.title());
        for (name, value) in FIXED_HEADERS {
            out += &format!("{name}: {value}\r\n");
        }
        out += &format!(
            "content-length: {}\r\n{}: {id}\r\nconnection: close\r\n\r\n",
            body.len(),
            crate::request_id::REQUEST_ID,
        );
        let mut out = out.into_bytes();
        out.extend_from_slice(&body);
        Bytes::from(out)
    }

    /// The problem for a status Pingora answers with itself before any
    /// hook runs (a request head its parser refused, `CONNECT`).
    pub fn for_pingora_status(status: u16) -> Option<Problem> {
        Some(match status {
            400 => Problem::BadRequest,
            405 => Problem::MethodNotAllowed,
            408 => Problem::RequestTimeout,
            414 => Problem::UriTooLong,
            431 => Problem::HeadersTooLarge,
            501 => Problem::NotImplemented,
            500 => Problem::Internal,
            _ => return None,
        })
    }
}

/// The gRPC status a gRPC client gets for one of the gateway's answers
/// with HTTP status `http` (gRPC's HTTP-to-status mapping, with 429 as
/// RESOURCE_EXHAUSTED and 504 as DEADLINE_EXCEEDED).
pub fn grpc_status(http: u16) -> u8 {
    match http {
        400 => 13,                  // INTERNAL: the request was malformed
        401 => 16,                  // UNAUTHENTICATED
        403 => 7,                   // PERMISSION_DENIED
        404 | 405 | 410 => 12,      // UNIMPLEMENTED: no such method here
        408 | 504 => 4,             // DEADLINE_EXCEEDED
        413 | 414 | 431 | 429 => 8, // RESOURCE_EXHAUSTED
        500 => 13,                  // INTERNAL
        502 | 503 => 14,            // UNAVAILABLE
        _ => 2,                     // UNKNOWN
    }
}

/// A `grpc-message` value: the text percent-encoded where gRPC asks
/// (outside printable ASCII, and `%`).
pub fn grpc_message(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The headers every problem response carries, whichever way it is written.
pub const FIXED_HEADERS: [(&str, &str); 2] = [
    ("content-type", "application/problem+json"),
    ("cache-control", "no-store"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_statuses_follow_grpcs_http_mapping() {
        for (http, grpc) in [
            (401, 16),
            (403, 7),
            (429, 8),
            (503, 14),
            (502, 14),
            (504, 4),
            (404, 12),
            (400, 13),
            (413, 8),
            (418, 2),
        ] {
            assert_eq!(grpc_status(http), grpc, "{http}");
        }
    }

    #[test]
    fn grpc_messages_are_percent_encoded_where_grpc_asks() {
        assert_eq!(grpc_message("No API key."), "No API key.");
        assert_eq!(grpc_message("100% \"done\"\n"), "100%25 \"done\"%0A");
        assert_eq!(grpc_message("é"), "%C3%A9");
    }
}
