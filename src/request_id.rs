//! The request id: the client's `X-Request-Id` when well formed, else a
//! new random one; sent upstream, echoed to the client, named in problem
//! bodies and the access log.

use http::HeaderValue;
use pingora_http::RequestHeader;

pub const REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");
/// Longest client-supplied request id kept as is.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A client's request id is kept when it is 1..=128 characters of
/// `[A-Za-z0-9._:-]`; anything else is replaced, so ids are safe to log.
pub fn is_well_formed_request_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// A new request id: 128 random bits in hex, from the thread's CSPRNG
/// (ChaCha, seeded and periodically reseeded by the OS): unguessable and
/// unique without a syscall per request. Written on the stack; the header
/// value is the only allocation.
pub fn new_request_id() -> HeaderValue {
    let mut hex = [0u8; 32];
    write_hex(&mut hex, &rand::random::<[u8; 16]>());
    HeaderValue::from_bytes(&hex).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// The request id to use: the client's when well formed (shared, not
/// copied), else a new one.
///
/// Marked sensitive, which only changes how HTTP/2 encodes it: as a
/// literal never put in the HPACK dynamic table. A value unique to each
/// response would otherwise enter the connection's table on every
/// response and evict the entries that do repeat (`content-type`,
/// `server`, ...), so those are sent in full again too.
pub fn request_id(req: &RequestHeader) -> HeaderValue {
    let mut id = match req.headers.get(REQUEST_ID) {
        Some(v) if is_well_formed_request_id(v.as_bytes()) => v.clone(),
        _ => new_request_id(),
    };
    id.set_sensitive(true);
    id
}

/// The id as text (ids are ASCII by construction).
pub fn id_text(id: &HeaderValue) -> &str {
    id.to_str().unwrap_or("")
}

/// `bytes` as lowercase hex into `out` (`out.len() == 2 * bytes.len()`).
pub fn write_hex(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_validated() {
        assert!(is_well_formed_request_id(b"abc-123_x.y:z"));
        assert!(!is_well_formed_request_id(b""));
        assert!(!is_well_formed_request_id(b"has space"));
        assert!(!is_well_formed_request_id(b"new\nline"));
        assert!(!is_well_formed_request_id(&[b'a'; 129]));
    }

    #[test]
    fn generated_ids_are_unique_and_well_formed() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(is_well_formed_request_id(a.as_bytes()));
        assert!(id_text(&a).bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn request_ids_stay_out_of_hpack_tables_and_keep_their_text() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        let new = request_id(&req);
        assert!(new.is_sensitive());
        req.insert_header(REQUEST_ID, "client-id-1").unwrap();
        let kept = request_id(&req);
        assert!(kept.is_sensitive());
        assert_eq!(id_text(&kept), "client-id-1");
    }
}
