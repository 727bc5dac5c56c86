//! `[routes.compression]`, compiled: which coding a client gets (from its
//! `Accept-Encoding`, q-values and all, and the gateway's preference) and
//! which responses are compressed.
//!
//! A response is compressed when the client accepts one of the route's
//! algorithms, its media type is listed, its `Content-Length` (when it
//! has one) is at least `min_size`, it has no `Content-Encoding` of its
//! own, it is not a range (`206`, `Content-Range`, or a request with
//! `Range`), it does not say `Cache-Control: no-transform`, and it is not
//! the answer to `HEAD` or to an HTTP/1.0 request (which cannot take the
//! chunked framing a streamed body needs). Every response of a listed type gets `Vary:
//! Accept-Encoding`, compressed or not, so caches downstream keep the
//! encodings apart.

use http::{HeaderMap, HeaderValue};
use pingora_core::protocols::http::compression::{Algorithm, Encode};
use pingora_http::ResponseHeader;

use crate::config::model::{Coding, CompressionConfig};

#[derive(Debug)]
pub struct Compression {
    /// The gateway's preference, first best, with levels.
    algorithms: Vec<(Coding, u32)>,
    min_size: u64,
    types: Vec<MediaRange>,
}

#[derive(Debug)]
enum MediaRange {
    /// `application/json`
    Exact(String),
    /// `text/*`, kept as `text/`; `text/event-stream` only when listed
    /// itself (compressing a stream holds its events back).
    Type(String),
}

impl Compression {
    pub fn build(c: &CompressionConfig) -> Compression {
        Compression {
            algorithms: c.algorithms.clone(),
            min_size: c.min_size,
            types: c
                .types
                .iter()
                .map(|t| match t.strip_suffix('*') {
                    Some(prefix) => MediaRange::Type(prefix.to_string()),
                    None => MediaRange::Exact(t.clone()),
                })
                .collect(),
        }
    }

    /// The coding for a request with `headers`: of the route's algorithms
    /// the one the client gives the highest q-value (an unlisted one gets
    /// `*`'s), ties going to the route's order; `None` without
    /// `Accept-Encoding` or when the client takes none (q = 0).
    pub fn negotiate(&self, headers: &HeaderMap) -> Option<Coding> {
        let fields = headers.get_all(http::header::ACCEPT_ENCODING);
        let mut listed = fields.iter().peekable();
        listed.peek()?;
        let mut q = [None::<u16>; 3];
        let mut star = None::<u16>;
        for item in listed
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
        {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            let weight = parts
                .find_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("q").then(|| qvalue(v.trim()))
                })
                .unwrap_or(Some(1000));
            let Some(weight) = weight else {
                continue;
            };
            if name == "*" {
                star = Some(weight);
            } else if let Some(i) = Coding::ALL
                .iter()
                .position(|c| name.eq_ignore_ascii_case(c.as_str()))
            {
                q[i] = Some(weight);
            }
        }
        let mut best: Option<(Coding, u16)> = None;
        for (coding, _) in &self.algorithms {
            let i = Coding::ALL.iter().position(|c| c == coding).unwrap_or(0);
            let weight = q[i].or(star).unwrap_or(0);
            if weight > 0 && best.is_none_or(|(_, b)| weight > b) {
                best = Some((*coding, weight));
            }
        }
        best.map(|(c, _)| c)
    }

    /// The response's media type is one the route compresses, and it is
    /// not known to be smaller than `min_size`.
    pub fn compressible(&self, resp: &ResponseHeader) -> bool {
        let Some(media) = resp
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
        else {
            return false;
        };
        let listed = self.types.iter().any(|t| match t {
            MediaRange::Exact(e) => *e == media,
            MediaRange::Type(prefix) => {
                media.starts_with(prefix.as_str()) && media != "text/event-stream"
            }
        });
        let length = resp
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
        listed && length.is_none_or(|l| l >= self.min_size)
    }

    /// Whether this response, compressible, may be compressed: it has a
    /// body (not `204`, `304`), not encoded already, not a range, no
    /// `no-transform`.
    pub fn may_transform(resp: &ResponseHeader, request_range: bool) -> bool {
        let h = &resp.headers;
        let encoded = h
            .get(http::header::CONTENT_ENCODING)
            .is_some_and(|e| !e.as_bytes().eq_ignore_ascii_case(b"identity"));
        let no_transform = h
            .get_all(http::header::CACHE_CONTROL)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .any(|d| d.trim_ascii().eq_ignore_ascii_case(b"no-transform"));
        let bodiless = matches!(resp.status.as_u16(), 204 | 304);
        !encoded
            && !no_transform
            && !request_range
            && !bodiless
            && resp.status != http::StatusCode::PARTIAL_CONTENT
            && !h.contains_key(http::header::CONTENT_RANGE)
    }

    /// A streaming encoder for `coding` at the route's level.
    pub fn encoder(&self, coding: Coding) -> Option<Box<dyn Encode + Send + Sync>> {
        let level = self
            .algorithms
            .iter()
            .find(|(c, _)| *c == coding)
            .map(|(_, l)| *l)?;
        let algorithm = match coding {
            Coding::Zstd => Algorithm::Zstd,
            Coding::Br => Algorithm::Brotli,
            Coding::Gzip => Algorithm::Gzip,
        };
        algorithm.compressor(level)
    }

    /// The head of a response about to be compressed with `coding`:
    /// `Content-Encoding` on, the length off and chunked framing on (the
    /// body streams), a strong `ETag` weakened (the bytes differ),
    /// `Accept-Ranges` off.
    pub fn encoded_head(resp: &mut ResponseHeader, coding: Coding) {
        let _ = resp.insert_header(
            http::header::CONTENT_ENCODING,
            HeaderValue::from_static(coding.as_str()),
        );
        resp.remove_header(&http::header::CONTENT_LENGTH);
        resp.remove_header(&http::header::ACCEPT_RANGES);
        // Framed in chunks on HTTP/1.1, so the connection stays open (an
        // HTTP/2 writer drops the field).
        let _ = resp.insert_header(
            http::header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        let weak = resp
            .headers
            .get(http::header::ETAG)
            .filter(|e| !e.as_bytes().starts_with(b"W/"))
            .and_then(|e| {
                let mut v = b"W/".to_vec();
                v.extend_from_slice(e.as_bytes());
                HeaderValue::from_bytes(&v).ok()
            });
        if let Some(weak) = weak {
            let _ = resp.insert_header(http::header::ETAG, weak);
        }
    }
}

/// A q-value (RFC 9110 §12.4.2) in thousandths; `None` when malformed
/// (the item is then ignored).
fn qvalue(text: &str) -> Option<u16> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole = match int {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    let thousandths = format!("{frac:0<3}").parse::<u16>().ok()?;
    if whole == 1000 && thousandths > 0 {
        return None;
    }
    Some(whole + thousandths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(algorithms: &[Coding]) -> Compression {
        Compression::build(&CompressionConfig {
            algorithms: algorithms.iter().map(|c| (*c, c.default_level())).collect(),
            min_size: 1024,
            types: vec!["application/json".into(), "text/*".into()],
        })
    }

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("accept-encoding", v.parse().unwrap());
        h
    }

    #[test]
    fn negotiation_weighs_q_values_then_the_routes_order() {
        let p = policy(&[Coding::Zstd, Coding::Br, Coding::Gzip]);
        assert_eq!(p.negotiate(&HeaderMap::new()), None);
        // What Chromium sends.
        assert_eq!(
            p.negotiate(&accept("gzip, deflate, br, zstd")),
            Some(Coding::Zstd)
        );
        assert_eq!(p.negotiate(&accept("gzip")), Some(Coding::Gzip));
        assert_eq!(
            p.negotiate(&accept("gzip;q=1.0, br;q=0.8")),
            Some(Coding::Gzip)
        );
        assert_eq!(
            p.negotiate(&accept("GZIP; Q=0.5, br;q=0.9")),
            Some(Coding::Br)
        );
        assert_eq!(
            p.negotiate(&accept("zstd;q=0, br;q=0, gzip;q=0.001")),
            Some(Coding::Gzip)
        );
        assert_eq!(p.negotiate(&accept("*;q=0.5, zstd;q=0")), Some(Coding::Br));
        assert_eq!(p.negotiate(&accept("identity")), None);
        assert_eq!(p.negotiate(&accept("*;q=0")), None);
        assert_eq!(
            p.negotiate(&accept("gzip;q=2, br;q=0.x")),
            None,
            "malformed q: ignored"
        );
        assert_eq!(p.negotiate(&accept("")), None);
        let gzip_first = policy(&[Coding::Gzip, Coding::Zstd]);
        assert_eq!(
            gzip_first.negotiate(&accept("zstd, gzip, br")),
            Some(Coding::Gzip)
        );
        assert_eq!(gzip_first.negotiate(&accept("br")), None);
    }

    #[test]
    fn qvalues_parse_to_thousandths() {
        for (t, q) in [
            ("1", Some(1000)),
            ("1.000", Some(1000)),
            ("0.5", Some(500)),
            ("0.05", Some(50)),
            ("0", Some(0)),
            ("0.", Some(0)),
        ] {
            assert_eq!(qvalue(t), q, "{t}");
        }
        for t in ["1.5", "2", "0.1234", "-1", "", "0.x", ".5"] {
            assert_eq!(qvalue(t), None, "{t}");
        }
    }

    fn resp(status: u16, fields: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        for (n, v) in fields {
            r.append_header(n.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn what_is_compressed() {
        let p = policy(&[Coding::Gzip]);
        let json = |len: &str| {
            resp(
                200,
                &[
                    ("content-type", "application/json; charset=utf-8"),
                    ("content-length", len),
                ],
            )
        };
        assert!(p.compressible(&json("1024")));
        assert!(!p.compressible(&json("1023")));
        assert!(
            p.compressible(&resp(200, &[("content-type", "text/html")])),
            "no length: streamed"
        );
        assert!(!p.compressible(&resp(200, &[("content-type", "text/event-stream")])));
        assert!(!p.compressible(&resp(200, &[("content-type", "image/png")])));
        assert!(!p.compressible(&resp(200, &[])));
        assert!(Compression::may_transform(&json("5000"), false));
        assert!(
            !Compression::may_transform(&json("5000"), true),
            "a range was asked for"
        );
        let encoded = resp(200, &[("content-encoding", "br")]);
        assert!(!Compression::may_transform(&encoded, false));
        assert!(!Compression::may_transform(&resp(206, &[]), false));
        assert!(!Compression::may_transform(
            &resp(304, &[("content-type", "application/json")]),
            false
        ));
        assert!(!Compression::may_transform(&resp(204, &[]), false));
        assert!(!Compression::may_transform(
            &resp(200, &[("cache-control", "public, No-Transform")]),
            false
        ));
        assert!(Compression::may_transform(
            &resp(200, &[("content-encoding", "identity")]),
            false
        ));
    }

    #[test]
    fn the_encoded_head_weakens_the_etag_and_drops_the_length() {
        let mut r = resp(
            200,
            &[
                ("content-length", "5000"),
                ("etag", "\"v1\""),
                ("accept-ranges", "bytes"),
            ],
        );
        Compression::encoded_head(&mut r, Coding::Br);
        assert_eq!(r.headers["content-encoding"], "br");
        assert_eq!(r.headers["etag"], "W/\"v1\"");
        assert!(
            !r.headers.contains_key("content-length") && !r.headers.contains_key("accept-ranges")
        );
        let mut weak = resp(200, &[("etag", "W/\"v1\"")]);
        Compression::encoded_head(&mut weak, Coding::Gzip);
        assert_eq!(weak.headers["etag"], "W/\"v1\"");
    }
}
