//! W3C Trace Context (`traceparent`, `tracestate`).
//!
//! The gateway is one hop of the trace: it keeps the trace id (and flags)
//! of a valid incoming `traceparent` and sends the backend a
//! `traceparent` whose parent id is a new span id of its own, so the
//! backend's spans hang under the gateway's hop. Without a valid
//! `traceparent` (absent, malformed, repeated) it starts a new trace with
//! the sampled flag set, as a backend without a gateway in front would
//! have, and drops any `tracestate` (which belongs to the discarded
//! context). `tracestate` of a valid context is passed through unchanged.
//! Ids come from the thread's CSPRNG.

use http::HeaderValue;
use pingora_http::RequestHeader;

pub const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
pub const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");

/// The trace context of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    /// The gateway's span: the parent id the backend sees.
    pub span_id: [u8; 8],
    pub flags: u8,
    /// Whether the trace id came from the client's `traceparent`.
    pub continued: bool,
}

impl TraceContext {
    /// The context for `req`: the client's trace continued, or a new trace.
    pub fn for_request(req: &RequestHeader) -> TraceContext {
        let mut values = req.headers.get_all(TRACEPARENT).iter();
        let parsed = match (values.next(), values.next()) {
            (Some(v), None) => parse(v.as_bytes()),
            _ => None,
        };
        let span_id = nonzero(rand::random);
        match parsed {
            Some((trace_id, flags)) => TraceContext {
                trace_id,
                span_id,
                flags,
                continued: true,
            },
            None => TraceContext {
                trace_id: nonzero(rand::random),
                span_id,
                flags: 0x01,
                continued: false,
            },
        }
    }

    /// The `traceparent` for the backend (version 00).
    pub fn traceparent(&self) -> HeaderValue {
        let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
        crate::request_id::write_hex(&mut out[3..35], &self.trace_id);
        crate::request_id::write_hex(&mut out[36..52], &self.span_id);
        crate::request_id::write_hex(&mut out[53..55], &[self.flags]);
        HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        crate::request_id::write_hex(&mut out, &self.trace_id);
        out
    }

    /// Put this context on the upstream request.
    pub fn apply(&self, upstream: &mut RequestHeader) -> pingora_error::Result<()> {
        upstream.insert_header(TRACEPARENT, self.traceparent())?;
        if !self.continued {
            upstream.remove_header(&TRACESTATE);
        }
        Ok(())
    }
}

/// A random id that is not all zeros (all zeros is invalid).
fn nonzero<const N: usize>(random: impl Fn() -> [u8; N]) -> [u8; N] {
    loop {
        let id = random();
        if id.iter().any(|b| *b != 0) {
            return id;
        }
    }
}

/// `(trace id, flags)` of a valid `traceparent` (W3C Trace Context §3.2):
/// `version-traceid-parentid-flags` in lowercase hex; version `ff`, an
/// all-zero trace or parent id are invalid. A future version may append
/// fields after a `-`; version 00 may not.
fn parse(v: &[u8]) -> Option<([u8; 16], u8)> {
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let version = hex::<1>(&v[0..2])?[0];
    if version == 0xff || (version == 0 && v.len() != 55) || (v.len() > 55 && v[55] != b'-') {
        return None;
    }
    let trace_id = hex::<16>(&v[3..35])?;
    let parent_id = hex::<8>(&v[36..52])?;
    let flags = hex::<1>(&v[53..55])?[0];
    if trace_id.iter().all(|b| *b == 0) || parent_id.iter().all(|b| *b == 0) {
        return None;
    }
    Some((trace_id, flags))
}

/// `N` bytes from `2N` lowercase hex digits.
fn hex<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    let nibble = |d: u8| match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        *out.get_mut(i)? = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(traceparents: &[&str]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for t in traceparents {
            r.append_header(TRACEPARENT, *t).unwrap();
        }
        r
    }

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_keeps_its_trace_id_and_flags_with_a_new_parent() {
        let t = TraceContext::for_request(&req(&[VALID]));
        assert!(t.continued);
        let sent = t.traceparent();
        let sent = sent.to_str().unwrap();
        assert_eq!(&sent[..36], "00-4bf92f3577b34da6a3ce929d0e0e4736-");
        assert_ne!(&sent[36..52], "00f067aa0ba902b7");
        assert_eq!(&sent[52..], "-01");
        assert_eq!(parse(sent.as_bytes()).unwrap().0, t.trace_id);
        let unsampled = VALID.replace("-01", "-00");
        assert_eq!(TraceContext::for_request(&req(&[&unsampled])).flags, 0);
        // A future version with an extra field.
        let future = VALID.replacen("00", "cc", 1) + "-what-the-future-holds";
        assert!(TraceContext::for_request(&req(&[&future])).continued);
    }

    #[test]
    fn invalid_or_repeated_traceparents_start_a_new_trace() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            let t = TraceContext::for_request(&req(&[bad]));
            assert!(!t.continued, "{bad:?}");
            assert_eq!(t.flags, 1);
        }
        let twice = TraceContext::for_request(&req(&[VALID, VALID]));
        assert!(!twice.continued);
    }

    #[test]
    fn new_ids_are_random_and_well_formed() {
        let a = TraceContext::for_request(&req(&[]));
        let b = TraceContext::for_request(&req(&[]));
        assert_ne!(a.trace_id, b.trace_id);
        assert_ne!(a.span_id, b.span_id);
        assert!(parse(a.traceparent().as_bytes()).is_some());
    }
}
