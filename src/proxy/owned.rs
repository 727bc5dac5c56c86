//! The request headers the gateway owns: it sets them itself (the
//! consumer, the client certificate's subject, `X-Forwarded-Proto`/`-Host`,
//! which a trusted proxy's well-formed values replace: see
//! `forward::Relayed`)
//! or they claim facts only a trusted proxy may state (`Forwarded`,
//! `X-Real-IP`, `True-Client-IP`, `X-Original-URL`, `X-Forwarded-Prefix`;
//! `X-Portcullis-Mirror`, which marks a mirror's copy).
//! A client's copies are removed from every request on every listener
//! before the gateway sets its own, in either spelling: CGI-style backends
//! (WSGI, PHP-FPM, Rack) read `X_Consumer_Id` as `HTTP_X_CONSUMER_ID`, the
//! same variable as `X-Consumer-Id`.
//!
//! Header names holding `_` are dropped, refused or allowed before
//! anything reads them (`crate::decide::head::underscores`); allowed ones
//! still never stand in for a header the gateway owns or sets.
//!
//! `X-Forwarded-For` is not owned: `forward::set_forwarded` extends a
//! trusted proxy's chain and replaces anyone else's. A trusted proxy's
//! `Forwarded` is extended by `forward::shape` when
//! `[server.trusted_proxies] header = "forwarded"`.

use http::HeaderName;
use pingora_http::RequestHeader;

/// Marks a `[routes.mirror]` copy; a client's would make a backend take
/// a real request for a shadow one.
pub const MIRROR_HEADER: &str = "x-portcullis-mirror";

/// Owned whatever the config says: removed from every client request.
/// A `match` on the name, which compiles to a switch on its length.
fn always_owned(name: &str) -> bool {
    matches!(
        name,
        MIRROR_HEADER
            | "forwarded"
            | "x-real-ip"
            | "true-client-ip"
            | "x-original-url"
            | "x-rewrite-url"
            | "x-forwarded-prefix"
            | "x-forwarded-host"
            | "x-forwarded-proto"
            | "x-forwarded-port"
            | "x-forwarded-server"
    )
}

/// Set or extended by the gateway, so a client's underscore spelling of
/// them is never forwarded beside the real one.
fn gateway_set(name: &str) -> bool {
    matches!(
        name,
        "x-forwarded-for" | "x-request-id" | "via" | "traceparent" | "tracestate"
    )
}

/// Whether `name` (lower case, as `http` keeps names) is owned: one of
/// `always_owned` or of `configured` (the consumer header, every
/// listener's client-subject header), in either spelling.
pub fn is_owned(name: &str, configured: &[HeaderName]) -> bool {
    let mut buf = [0u8; 64];
    let Some(dashed) = dashed(name, &mut buf) else {
        return false;
    };
    always_owned(dashed) || configured.iter().any(|c| c.as_str() == dashed)
}

/// `name` with `_` read as `-`, in `buf` when it had any; `None` when too
/// long to be one of ours.
fn dashed<'a>(name: &'a str, buf: &'a mut [u8; 64]) -> Option<&'a str> {
    if !name.as_bytes().contains(&b'_') {
        return Some(name);
    }
    let out = buf.get_mut(..name.len())?;
    for (o, b) in out.iter_mut().zip(name.bytes()) {
        *o = if b == b'_' { b'-' } else { b };
    }
    std::str::from_utf8(out).ok()
}

/// Remove the client's copies of owned headers, and underscore spellings
/// of the headers the gateway sets, from the request to be forwarded.
/// One pass over the names; nothing is allocated unless one is found.
pub fn strip(req: &mut RequestHeader, configured: &[HeaderName]) {
    let mut found: smallvec::SmallVec<[HeaderName; 2]> = smallvec::SmallVec::new();
    for name in req.headers.keys() {
        let n = name.as_str();
        let hit = if n.as_bytes().contains(&b'_') {
            let mut buf = [0u8; 64];
            dashed(n, &mut buf).is_some_and(|d| {
                gateway_set(d) || always_owned(d) || configured.iter().any(|c| c.as_str() == d)
            })
        } else {
            always_owned(n) || configured.iter().any(|c| c == name)
        };
        if hit {
            found.push(name.clone());
        }
    }
    for name in &found {
        req.remove_header(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(names: &[&str]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for n in names {
            r.append_header(n.to_string(), "v").unwrap();
        }
        r
    }

    #[test]
    fn owned_headers_go_in_both_spellings_and_x_forwarded_for_stays() {
        let configured = [
            HeaderName::from_static("x-consumer-id"),
            HeaderName::from_static("x-client-cert-subject"),
        ];
        let mut r = request(&[
            "X-Consumer-Id",
            "X_Consumer_Id",
            "x_client_cert_subject",
            "Forwarded",
            "X-Real-IP",
            "True-Client-IP",
            "X-Original-URL",
            "X-Forwarded-Prefix",
            "x_forwarded_host",
            "X-Forwarded-For",
            "x_forwarded_for",
            "X_Request_Id",
            "accept",
            "x_custom",
        ]);
        strip(&mut r, &configured);
        let mut left: Vec<&str> = r.headers.keys().map(|n| n.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "x-forwarded-for", "x_custom"]);
    }
}
