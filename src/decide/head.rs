//! What a request must look like before the gateway routes it, beyond what
//! Pingora's parser already refuses (see docs/http.md, *Malformed
//! requests*): a `Host` on HTTP/1.1 that is a valid authority, no transfer
//! coding but `chunked`, and the `[server.client]` limits on the request
//! target, the header count and the size of the head. Also: a
//! `Content-Length` list of identical values is forwarded as one value.
//!
//! [`settle`] runs every check on the head, in the proxy's order: these
//! rules, a request that looped back through the gateway (508), header
//! names with underscores (`headers_with_underscores`), and the request
//! target, made canonical (see [`crate::target`]).

use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING, VIA};
use http::{HeaderValue, Version};
use pingora_http::RequestHeader;

use http::HeaderName;

use super::Refusal;
use crate::config::model::{ClientLimits, ServerSettings, Underscores};
use crate::problem::Problem;

/// Check the head of `req` (which came over TLS when `tls`) and make it
/// what the gateway forwards: one `Content-Length` value, no underscore
/// names when they are dropped, the canonical target. The answer when it
/// is refused; the connection closes after it.
pub fn settle(req: &mut RequestHeader, server: &ServerSettings, tls: bool) -> Result<(), Refusal> {
    let limits = &server.client;
    let seen = check(req, limits).map_err(|refusal| {
        let (problem, detail) = refusal.problem();
        Refusal::closing(problem, detail.to_string())
    })?;
    normalize_content_length(req);
    if seen.via && has_looped(req, server.via()) {
        return Err(Refusal::closing(
            Problem::LoopDetected,
            "The request has already passed through this gateway (its Via): a pool leads back to it.".to_string(),
        ));
    }
    if seen.underscores {
        underscores(req, limits.headers_with_underscores).map_err(|name| {
            Refusal::closing(
                Problem::BadRequest,
                format!("Header names with underscores are refused ({name})."),
            )
        })?;
    }
    crate::target::canonicalize(req, tls, &limits.paths)
        .map_err(|refusal| Refusal::closing(Problem::BadRequest, refusal.to_string()))
}

/// Whether the request already passed through the gateway named
/// `pseudonym`: one of its `Via` entries was received by it.
pub fn has_looped(req: &RequestHeader, pseudonym: &str) -> bool {
    req.headers
        .get_all(http::header::VIA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|entry| entry.split_whitespace().nth(1))
        .any(|by| by.eq_ignore_ascii_case(pseudonym))
}

fn has_underscore(name: &HeaderName) -> bool {
    name.as_str().as_bytes().contains(&b'_')
}

/// Apply `[server.client] headers_with_underscores` to the client's
/// request, before anything reads it. `Err(name)` when it is refused.
pub fn underscores(req: &mut RequestHeader, policy: Underscores) -> Result<(), HeaderName> {
    if policy == Underscores::Allow {
        return Ok(());
    }
    let Some(first) = req.headers.keys().find(|n| has_underscore(n)) else {
        return Ok(());
    };
    if policy == Underscores::Reject {
        return Err(first.clone());
    }
    let found: Vec<HeaderName> = req
        .headers
        .keys()
        .filter(|n| has_underscore(n))
        .cloned()
        .collect();
    for name in &found {
        req.remove_header(name);
    }
    Ok(())
}

/// Why a request is refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadRule {
    /// HTTP/1.1 without `Host` (RFC 9112 §3.2).
    MissingHost,
    /// A `Host` that is not a valid `host[:port]`.
    InvalidHost,
    /// The request target is longer than `max_uri_length`.
    UriTooLong,
    /// More header fields than `max_headers`.
    TooManyHeaders,
    /// Request line and headers larger than `max_header_size`.
    HeadTooLarge,
    /// A transfer coding other than `chunked` (RFC 9112 §6.1: 501).
    UnsupportedTransferCoding,
}

impl HeadRule {
    /// The problem answered, with its detail.
    pub fn problem(self) -> (Problem, &'static str) {
        match self {
            HeadRule::MissingHost => (Problem::BadRequest, "HTTP/1.1 requests need a Host header."),
            HeadRule::InvalidHost => (
                Problem::BadRequest,
                "The Host header is not a valid host[:port].",
            ),
            HeadRule::UriTooLong => (Problem::UriTooLong, "The request target is too long."),
            HeadRule::TooManyHeaders => (
                Problem::HeadersTooLarge,
                "The request has too many header fields.",
            ),
            HeadRule::HeadTooLarge => (
                Problem::HeadersTooLarge,
                "The request line and headers are too large.",
            ),
            HeadRule::UnsupportedTransferCoding => (
                Problem::NotImplemented,
                "Only the chunked transfer coding is supported.",
            ),
        }
    }
}

/// What the one pass over the head's fields saw, for the checks that
/// come after [`check`]: they skip their own look-ups when it saw nothing.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// A `Via` field (the request may have looped).
    pub via: bool,
    /// A field name holding `_`.
    pub underscores: bool,
}

/// Check `req` against the rules and `limits`.
pub fn check(req: &RequestHeader, limits: &ClientLimits) -> Result<Seen, HeadRule> {
    let target = req.raw_path().len();
    if target > limits.max_uri_length as usize {
        return Err(HeadRule::UriTooLong);
    }
    if req.headers.len() > limits.max_headers as usize {
        return Err(HeadRule::TooManyHeaders);
    }
    // "METHOD TARGET HTTP/1.1\r\n" and "name: value\r\n" per field.
    let mut head = req.method.as_str().len() + target + 11;
    let mut seen = Seen::default();
    for (name, value) in &req.headers {
        head += name.as_str().len() + value.len() + 4;
        seen.via |= name == VIA;
        seen.underscores |= name.as_str().as_bytes().contains(&b'_');
    }
    if head as u64 > limits.max_header_size {
        return Err(HeadRule::HeadTooLarge);
    }
    match req.headers.get(HOST) {
        None if req.version == Version::HTTP_11 => return Err(HeadRule::MissingHost),
        Some(h) if !h.is_empty() && !is_host(h.as_bytes()) => return Err(HeadRule::InvalidHost),
        _ => {}
    }
    let unsupported = req
        .headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|coding| !coding.trim_ascii().eq_ignore_ascii_case(b"chunked"));
    if unsupported {
        return Err(HeadRule::UnsupportedTransferCoding);
    }
    Ok(seen)
}

/// `host[:port]` with a numeric port (`http` accepts any text after `:`).
fn is_host(value: &[u8]) -> bool {
    let Ok(authority) = http::uri::Authority::try_from(value) else {
        return false;
    };
    // After the last `]` (an IPv6 literal), a `:` starts the port.
    let after_literal = authority.as_str().rsplit(']').next().unwrap_or_default();
    !after_literal.contains(':') || authority.port_u16().is_some()
}

/// Forward a `Content-Length` sent as a list of identical values (`5, 5`,
/// or the field repeated), which Pingora accepts for framing, as the one
/// value (RFC 9110 §8.6). Returns whether it changed anything.
pub fn normalize_content_length(req: &mut RequestHeader) -> bool {
    let mut values = req.headers.get_all(CONTENT_LENGTH).iter();
    let (Some(first), more) = (values.next(), values.next().is_some()) else {
        return false;
    };
    if !more && !first.as_bytes().contains(&b',') {
        return false;
    }
    // Pingora refused lists whose values differ: take the first token.
    let one = first
        .as_bytes()
        .split(|&b| b == b',')
        .next()
        .map(|t| t.trim_ascii().to_vec())
        .unwrap_or_default();
    let Ok(value) = HeaderValue::from_bytes(&one) else {
        return false;
    };
    req.insert_header(CONTENT_LENGTH, value).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(lines: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/orders?id=1", None).unwrap();
        for (n, v) in lines {
            r.append_header(n.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn host_is_required_on_http_1_1_and_must_be_an_authority() {
        let limits = ClientLimits::default();
        assert_eq!(check(&req(&[]), &limits), Err(HeadRule::MissingHost));
        let mut http10 = req(&[]);
        http10.set_version(Version::HTTP_10);
        assert_eq!(check(&http10, &limits), Ok(Seen::default()));
        assert_eq!(
            check(&req(&[("host", "api.example.com:8080")]), &limits),
            Ok(Seen::default())
        );
        assert_eq!(check(&req(&[("host", "")]), &limits), Ok(Seen::default()));
        assert_eq!(
            check(&req(&[("host", "[::1]:8080")]), &limits),
            Ok(Seen::default())
        );
        for bad in ["a b", "a/b", "[::1", "host:port"] {
            assert_eq!(
                check(&req(&[("host", bad)]), &limits),
                Err(HeadRule::InvalidHost),
                "{bad}"
            );
        }
    }

    #[test]
    fn only_chunked_is_a_supported_transfer_coding() {
        let limits = ClientLimits::default();
        let h = ("host", "a");
        assert_eq!(
            check(&req(&[h, ("transfer-encoding", "Chunked")]), &limits),
            Ok(Seen::default())
        );
        for bad in ["gzip, chunked", "chunked, identity", "x"] {
            assert_eq!(
                check(&req(&[h, ("transfer-encoding", bad)]), &limits),
                Err(HeadRule::UnsupportedTransferCoding),
                "{bad}"
            );
        }
    }

    #[test]
    fn limits_on_target_fields_and_head_size() {
        let limits = ClientLimits {
            max_header_size: 200,
            max_headers: 3,
            max_uri_length: 12,
            ..ClientLimits::default()
        };
        assert_eq!(check(&req(&[("host", "a")]), &limits), Ok(Seen::default()));
        assert_eq!(
            check(
                &req(&[("host", "a"), ("via", "1.1 x"), ("x_y", "1")]),
                &limits
            ),
            Ok(Seen {
                via: true,
                underscores: true
            })
        );
        let long = RequestHeader::build("GET", b"/orders?id=12", None).unwrap();
        assert_eq!(check(&long, &limits), Err(HeadRule::UriTooLong));
        let many = req(&[("host", "a"), ("x-a", "1"), ("x-b", "2"), ("x-c", "3")]);
        assert_eq!(check(&many, &limits), Err(HeadRule::TooManyHeaders));
        let big = "v".repeat(170);
        assert_eq!(
            check(&req(&[("host", "a"), ("x-big", &big)]), &limits),
            Err(HeadRule::HeadTooLarge)
        );
    }

    #[test]
    fn identical_content_lengths_become_one() {
        let mut r = req(&[("content-length", "5, 5")]);
        assert!(normalize_content_length(&mut r));
        assert_eq!(r.headers.get_all(CONTENT_LENGTH).iter().count(), 1);
        assert_eq!(r.headers[CONTENT_LENGTH], "5");
        let mut twice = req(&[("content-length", "7"), ("content-length", "7")]);
        assert!(normalize_content_length(&mut twice));
        assert_eq!(twice.headers.get_all(CONTENT_LENGTH).iter().count(), 1);
        let mut plain = req(&[("content-length", "7")]);
        assert!(!normalize_content_length(&mut plain));
    }

    #[test]
    fn underscore_names_are_dropped_refused_or_allowed() {
        let mut r = names(&["x_a", "x-b", "x_c"]);
        assert_eq!(underscores(&mut r, Underscores::Drop), Ok(()));
        assert_eq!(
            r.headers.keys().map(|n| n.as_str()).collect::<Vec<_>>(),
            ["x-b"]
        );
        let mut r = names(&["x-b", "x_a"]);
        assert_eq!(
            underscores(&mut r, Underscores::Reject),
            Err(HeaderName::from_static("x_a"))
        );
        let mut r = names(&["x_a"]);
        assert_eq!(underscores(&mut r, Underscores::Allow), Ok(()));
        assert!(r.headers.contains_key("x_a"));
    }

    fn names(names: &[&str]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for n in names {
            r.append_header(n.to_string(), "v").unwrap();
        }
        r
    }
}
