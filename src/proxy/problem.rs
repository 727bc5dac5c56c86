//! Writing the gateway's own answers to the client: a [`Problem`] as the
//! whole response (as a gRPC status to a gRPC call), and the redirect to
//! HTTPS.

use bytes::Bytes;
use pingora_error::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use crate::decide::Refusal;
pub use crate::problem::Problem;
use crate::problem::FIXED_HEADERS;
use crate::request_id;

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
    if is_grpc(session) {
        return write_grpc(
            session,
            problem.status(),
            problem.detail(),
            request_id,
            &extra,
        )
        .await;
    }
    let body = problem.body(request_id::id_text(request_id));
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
    if is_grpc(session) {
        let message = detail.unwrap_or(problem.detail());
        return write_grpc(session, problem.status(), message, request_id, extra).await;
    }
    let body = problem.body_with(request_id::id_text(request_id), detail, limit);
    write(session, problem.status(), body, request_id, extra).await
}

/// A gRPC call (`Content-Type: application/grpc…`): its client reads
/// `grpc-status`, not a problem+json body.
fn is_grpc(session: &Session) -> bool {
    session
        .req_header()
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The gateway's answer to a gRPC call, as gRPC has it: `200` with
/// `grpc-status` and `grpc-message` and no body (a "Trailers-Only"
/// response); `extra` fields (`WWW-Authenticate`, `Retry-After`,
/// `RateLimit`…) go along.
async fn write_grpc(
    session: &mut Session,
    status: u16,
    message: &str,
    request_id: &http::HeaderValue,
    extra: &[(&'static str, http::HeaderValue)],
) -> Result<()> {
    let mut resp = ResponseHeader::build(200, Some(5 + extra.len()))?;
    resp.insert_header("content-type", "application/grpc")?;
    resp.insert_header(
        "grpc-status",
        crate::problem::grpc_status(status).to_string(),
    )?;
    resp.insert_header("grpc-message", crate::problem::grpc_message(message))?;
    if session.req_header().version < http::Version::HTTP_2 {
        resp.insert_header("content-length", "0")?;
    }
    if !request_id.is_empty() {
        resp.insert_header(request_id::REQUEST_ID, request_id.clone())?;
    }
    for (name, value) in extra {
        resp.append_header(*name, value.clone())?;
    }
    session.write_response_header(Box::new(resp), true).await
}

/// Write the decision's `refusal`, closing the connection after it when it
/// says so.
pub async fn refuse(
    session: &mut Session,
    refusal: &Refusal,
    request_id: &http::HeaderValue,
) -> Result<()> {
    if refusal.close {
        session.set_keepalive(None);
    }
    respond_detailed(
        session,
        refusal.problem,
        refusal.detail.as_deref(),
        refusal.limit.as_deref(),
        request_id,
        &refusal.headers,
    )
    .await
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
        resp.insert_header(request_id::REQUEST_ID, request_id.clone())?;
    }
    for (name, value) in extra {
        resp.append_header(*name, value.clone())?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}

/// `204 No Content` to a CORS preflight the route allows, with the
/// allowance's fields.
pub async fn preflight(
    session: &mut Session,
    fields: &[(&'static str, http::HeaderValue)],
    request_id: &http::HeaderValue,
) -> Result<()> {
    let mut resp = ResponseHeader::build(204, Some(2 + fields.len()))?;
    for (name, value) in fields {
        resp.append_header(*name, value.clone())?;
    }
    resp.insert_header(request_id::REQUEST_ID, request_id.clone())?;
    session.write_response_header(Box::new(resp), true).await?;
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
    resp.insert_header(request_id::REQUEST_ID, request_id.clone())?;
    session.write_response_header(Box::new(resp), true).await?;
    Ok(())
}
