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
    NoHealthyBackend,
    BadGateway,
    GatewayTimeout,
    Internal,
}

impl Problem {
    pub fn status(self) -> u16 {
        match self {
            Problem::NotFound => 404,
            Problem::MethodNotAllowed => 405,
            Problem::BadRequest => 400,
            Problem::NoHealthyBackend => 503,
            Problem::BadGateway => 502,
            Problem::GatewayTimeout => 504,
            Problem::Internal => 500,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Problem::NotFound => "Not Found",
            Problem::MethodNotAllowed => "Method Not Allowed",
            Problem::BadRequest => "Bad Request",
            Problem::NoHealthyBackend => "Service Unavailable",
            Problem::BadGateway => "Bad Gateway",
            Problem::GatewayTimeout => "Gateway Timeout",
            Problem::Internal => "Internal Server Error",
        }
    }

    fn detail(self) -> &'static str {
        match self {
            Problem::NotFound => "No route matches this request.",
            Problem::MethodNotAllowed => "The route does not accept this method.",
            Problem::BadRequest => "The request could not be understood.",
            Problem::NoHealthyBackend => "No healthy upstream server is available.",
            Problem::BadGateway => "The upstream server could not be reached or failed.",
            Problem::GatewayTimeout => "The upstream server did not answer in time.",
            Problem::Internal => "The gateway failed to process the request.",
        }
    }

    /// The JSON body. `request_id` is echoed so a client can quote it.
    pub fn body(self, request_id: &str) -> Bytes {
        let body = serde_json::json!({
            "type": "about:blank",
            "title": self.title(),
            "status": self.status(),
            "detail": self.detail(),
            "request_id": request_id,
        });
        Bytes::from(body.to_string())
    }
}

/// Write `problem` as the whole response. `extra` headers (e.g. `Allow`) are added.
pub async fn respond(
    session: &mut Session,
    problem: Problem,
    request_id: &http::HeaderValue,
    extra: &[(&'static str, String)],
) -> Result<()> {
    let body = problem.body(super::forward::id_text(request_id));
    let mut resp = ResponseHeader::build(problem.status(), Some(5))?;
    resp.insert_header("content-type", "application/problem+json")?;
    resp.insert_header("content-length", body.len().to_string())?;
    resp.insert_header("cache-control", "no-store")?;
    if !request_id.is_empty() {
        resp.insert_header(super::forward::REQUEST_ID, request_id.clone())?;
    }
    for (name, value) in extra {
        resp.insert_header(*name, value.as_str())?;
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
    let host = crate::router::strip_port(super::forward::request_host(req));
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
    resp.insert_header(super::forward::REQUEST_ID, request_id.clone())?;
    session.write_response_header(Box::new(resp), true).await?;
    Ok(())
}
