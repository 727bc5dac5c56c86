//! `health_check type = "grpc"`: the standard gRPC health protocol
//! (`grpc.health.v1.Health/Check`) over HTTP/2 — cleartext with prior
//! knowledge, or TLS with the pool's settings. A backend is healthy when
//! the call ends with `grpc-status: 0` and the answer says SERVING.
//!
//! The two messages have one field each (`HealthCheckRequest.service`, a
//! string; `HealthCheckResponse.status`, an enum), so their protobuf
//! encoding is written here rather than generated.

use bytes::{BufMut, Bytes, BytesMut};
use pingora_core::connectors::http::Connector;
use pingora_core::protocols::http::client::HttpSession;
use pingora_http::RequestHeader;

use super::{Backend, Pool};

const PATH: &str = "/grpc.health.v1.Health/Check";
/// `HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: u64 = 1;

/// One pool's gRPC probe: the connector (its own connections) and the
/// request, framed once.
pub struct GrpcProbe {
    connector: Connector,
    message: Bytes,
}

impl GrpcProbe {
    /// A probe asking about `service` (`""`: the server as a whole).
    pub fn new(service: &str) -> GrpcProbe {
        GrpcProbe {
            connector: Connector::new(None),
            message: frame(&request(service)),
        }
    }

    /// Whether `backend` of `pool` says SERVING within `timeout` (each
    /// step; the caller bounds the whole).
    pub async fn serving(
        &self,
        pool: &Pool,
        backend: &Backend,
        timeout: std::time::Duration,
    ) -> bool {
        self.call(pool, backend, timeout).await.unwrap_or(false)
    }

    async fn call(
        &self,
        pool: &Pool,
        backend: &Backend,
        timeout: std::time::Duration,
    ) -> pingora_error::Result<bool> {
        // gRPC is HTTP/2 only: prior knowledge in cleartext, ALPN h2 over TLS.
        let peer =
            super::peer::probe_peer(pool, backend, timeout, pingora_core::protocols::ALPN::H2);
        let (session, _) = self.connector.get_http_session(&peer).await?;
        let HttpSession::H2(mut h2) = session else {
            return Ok(false);
        };
        let mut req = RequestHeader::build("POST", PATH.as_bytes(), Some(4))?;
        req.insert_header(http::header::HOST, backend.address.to_string())?;
        req.insert_header(http::header::CONTENT_TYPE, "application/grpc")?;
        req.insert_header(http::header::TE, "trailers")?;
        req.insert_header(http::header::USER_AGENT, "portcullis-health-check")?;
        h2.write_request_header(Box::new(req), false)?;
        h2.write_request_body(self.message.clone(), true).await?;
        h2.read_response_header().await?;
        let ok_head = h2.response_header().is_some_and(|r| r.status == 200);
        let mut body = BytesMut::new();
        while let Some(chunk) = h2.read_response_body().await? {
            body.extend_from_slice(&chunk);
            if body.len() > 1024 {
                return Ok(false);
            }
        }
        let trailers = h2.read_trailers().await?;
        // A Trailers-Only answer carries grpc-status in its head.
        let status = trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status"))
            .or_else(|| h2.response_header()?.headers.get("grpc-status"))
            .map(|v| v.as_bytes() == b"0")
            .unwrap_or(false);
        Ok(ok_head && status && unframe(&body).and_then(response_status) == Some(SERVING))
    }
}

/// `HealthCheckRequest { service }`.
fn request(service: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(service.len() + 3);
    if !service.is_empty() {
        out.push(0x0a); // field 1, length-delimited
        varint(&mut out, service.len() as u64);
        out.extend_from_slice(service.as_bytes());
    }
    out
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// One gRPC message frame: uncompressed, its length, the message.
fn frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.put_u8(0);
    out.put_u32(message.len() as u32);
    out.put_slice(message);
    out.freeze()
}

/// The message of an uncompressed single-frame body.
fn unframe(body: &[u8]) -> Option<&[u8]> {
    let (&flag, rest) = body.split_first()?;
    let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    (flag == 0).then(|| rest.get(4..4 + len))?
}

/// `HealthCheckResponse.status` (field 1, a varint); 0 (UNKNOWN) when
/// absent, as protobuf has it. Other fields are skipped.
fn response_status(mut msg: &[u8]) -> Option<u64> {
    let mut status = 0;
    while !msg.is_empty() {
        let (key, rest) = read_varint(msg)?;
        msg = rest;
        match (key >> 3, key & 7) {
            (field, 0) => {
                let (v, rest) = read_varint(msg)?;
                msg = rest;
                if field == 1 {
                    status = v;
                }
            }
            (_, 2) => {
                let (len, rest) = read_varint(msg)?;
                msg = rest.get(usize::try_from(len).ok()?..)?;
            }
            (_, 1) => msg = msg.get(8..)?,
            (_, 5) => msg = msg.get(4..)?,
            _ => return None,
        }
    }
    Some(status)
}

fn read_varint(mut b: &[u8]) -> Option<(u64, &[u8])> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = b.split_first()?;
        b = rest;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((v, b));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_encode_and_decode() {
        assert_eq!(request(""), Vec::<u8>::new());
        assert_eq!(request("orders.Orders"), b"\x0a\x0dorders.Orders");
        let framed = frame(&request("a"));
        assert_eq!(&framed[..], b"\x00\x00\x00\x00\x03\x0a\x01a");
        assert_eq!(unframe(&framed), Some(&b"\x0a\x01a"[..]));
        assert_eq!(unframe(b"\x01\x00\x00\x00\x00"), None, "compressed");
        assert_eq!(unframe(b"\x00\x00\x00\x00\x09ab"), None, "short");
        assert_eq!(response_status(b"\x08\x01"), Some(1));
        assert_eq!(response_status(b"\x08\x02"), Some(2));
        assert_eq!(response_status(b""), Some(0));
        // An unknown string field first is skipped.
        assert_eq!(response_status(b"\x12\x02hi\x08\x01"), Some(1));
        assert_eq!(response_status(b"\x08"), None, "truncated");
        let mut long = Vec::new();
        varint(&mut long, 300);
        assert_eq!(read_varint(&long), Some((300, &[][..])));
    }
}
