//! Error responses as `application/problem+json` (RFC 9457).
//!
//! Bodies name the status and a short, fixed explanation; never a backend
//! address, pool name or internal error text.

use bytes::Bytes;
use pingora_error::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

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
    /// A rate limit or quota was hit.
    TooManyRequests,
    /// Too many failed key attempts from this address.
    TooManyFailedAttempts,
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
            Problem::KeyRequired | Problem::KeyInvalid => 401,
            Problem::Forbidden => 403,
            Problem::TooManyRequests | Problem::TooManyFailedAttempts => 429,
            Problem::NoHealthyBackend | Problem::CircuitOpen | Problem::PoolSaturated => 503,
            Problem::Gone => 410,
            Problem::BadGateway => 502,
            Problem::GatewayTimeout => 504,
            Problem::LoopDetected => 508,
            Problem::Internal => 500,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Problem::NotFound => "Not Found",
            Problem::MethodNotAllowed => "Method Not Allowed",
            Problem::BadRequest => "Bad Request",
            Problem::RequestTimeout => "Request Timeout",
            Problem::UriTooLong => "URI Too Long",
            Problem::HeadersTooLarge => "Request Header Fields Too Large",
            Problem::PayloadTooLarge => "Content Too Large",
            Problem::NotImplemented => "Not Implemented",
            Problem::KeyRequired | Problem::KeyInvalid => "Unauthorized",
            Problem::Forbidden => "Forbidden",
            Problem::TooManyRequests | Problem::TooManyFailedAttempts => "Too Many Requests",
            Problem::NoHealthyBackend | Problem::CircuitOpen | Problem::PoolSaturated => {
                "Service Unavailable"
            }
            Problem::Gone => "Gone",
            Problem::BadGateway => "Bad Gateway",
            Problem::GatewayTimeout => "Gateway Timeout",
            Problem::LoopDetected => "Loop Detected",
            Problem::Internal => "Internal Server Error",
        }
    }

    fn detail(self) -> &'static str {
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
            Problem::TooManyRequests => "Too many requests.",
            Problem::TooManyFailedAttempts => {
                "Too many requests with invalid API keys from this address."
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
        let id = super::request_id::new_request_id();
        let id = super::request_id::id_text(&id);
        let body = self.body(id);
        let status = self.status();
        let mut out = format!("HTTP/1.1 {status} {}\r\n", self.title());
        for (name, value) in FIXED_HEADERS {
            out += &format!("{name}: {value}\r\n");
        }
        out += &format!(
            "content-length: {}\r\n{}: {id}\r\nconnection: close\r\n\r\n",
            body.len(),
            super::request_id::REQUEST_ID,
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

/// The headers every problem response carries, whichever way it is written.
const FIXED_HEADERS: [(&str, &str); 2] = [
    ("content-type", "application/problem+json"),
    ("cache-control", "no-store"),
];

/// Write `problem` as the whole response. `extra` headers (e.g. `Allow`) are added.
pub async fn respond(
    session: &mut Session,
    problem: Problem,
    request_id: &http::HeaderValue,
    extra: &[(&'static str, String)],
) -> Result<()> {
    let extra: Vec<(&'static str, http::HeaderValue)> = extra
        .iter()
        .filter_map(|(n, v)| Some((*n, http::HeaderValue::from_str(v).ok()?)))
        .collect();
    let body = problem.body(super::request_id::id_text(request_id));
    write(session, problem.status(), body, request_id, &extra).await
}

/// Write `problem` with a `detail` of its own and the `limit` hit.
pub async fn respond_detailed(
    session: &mut Session,
    problem: Problem,
    detail: Option<&str>,
    limit: Option<&str>,
    request_id: &http::HeaderValue,
    extra: &[(&'static str, http::HeaderValue)],
) -> Result<()> {
    let body = problem.body_with(super::request_id::id_text(request_id), detail, limit);
    write(session, problem.status(), body, request_id, extra).await
}

async fn write(
    session: &mut Session,
    status: u16,
    body: Bytes,
    request_id: &http::HeaderValue,
    extra: &[(&'static str, http::HeaderValue)],
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(5 + extra.len()))?;
    for (name, value) in FIXED_HEADERS {
        resp.insert_header(name, value)?;
    }
    resp.insert_header("content-length", body.len().to_string())?;
    if !request_id.is_empty() {
        resp.insert_header(super::request_id::REQUEST_ID, request_id.clone())?;
    }
    for (name, value) in extra {
        resp.append_header(*name, value.clone())?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}

/// `308 Permanent Redirect` to the same host, path and query over HTTPS on
/// `port` (left out of the URL when 443). Without a `Host`: 400.
pub async fn redirect_to_https(
    session: &mut Session,
    port: u16,
    request_id: &http::HeaderValue,
) -> Result<()> {
    let req = session.req_header();
    let host = crate::router::strip_port(crate::router::request_host(req));
    if host.is_empty() {
        return respond(session, Problem::BadRequest, request_id, &[]).await;
    }
    let path = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let location = if port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{port}{path}")
    };
    let mut resp = ResponseHeader::build(308, Some(4))?;
    resp.insert_header("location", location)?;
    resp.insert_header("content-length", "0")?;
    resp.insert_header(super::request_id::REQUEST_ID, request_id.clone())?;
    session.write_response_header(Box::new(resp), true).await?;
    Ok(())
}
