//! The PROXY protocol (HAProxy's, v1 text and v2 binary): on a listener
//! with `proxy_protocol`, a balancer (HAProxy `send-proxy-v2`, AWS NLB,
//! Google's and Azure's L4 balancers) sends a header naming the client's
//! address before anything else, TLS included. It is read here, during the
//! connection's handshake (bounded by `handshake_timeout`, by
//! `crate::accept`), and its source becomes the connection's peer: every later reader of the peer address
//! (`crate::client_addr`, the access log) sees the client.
//!
//! A connection without a valid header of the listener's version is
//! closed (counted as `portcullis_downstream_refused_total{reason=
//! "proxy_protocol"}`), as nginx and HAProxy do. When `[server.
//! trusted_proxies]` is set, only its peers may send one. A `LOCAL`
//! command (a balancer's own health check) or an address family without
//! an IP keeps the real peer. Parsing is the `ppp` crate's.

use std::net::SocketAddr;

use pingora_error::{Error, ErrorType, Result};
use ppp::PartialResult;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::config::model::ProxyProtocol;

/// The error type of a connection refused here: `crate::connections`
/// counts it apart from TLS failures.
pub const REFUSED: ErrorType = ErrorType::Custom("PROXY protocol");

/// A v1 header is at most 107 bytes (the spec's limit).
const V1_MAX: usize = 107;
/// A v2 header: 16 bytes and the addresses, plus TLVs (AWS NLB sends a
/// few dozen bytes of them). More than this is refused.
const V2_MAX: usize = 16 + 1024;

pub(crate) fn refused(why: impl Into<String>) -> Box<Error> {
    Error::explain(REFUSED, why.into())
}

/// Read one header of `version` from `r`: the client's address it names
/// (none for `LOCAL`, `UNKNOWN` or a non-IP family) and the bytes read
/// past it, which belong to the connection.
pub async fn read_header<R: AsyncRead + Unpin>(
    r: &mut R,
    version: ProxyProtocol,
) -> Result<(Option<SocketAddr>, Vec<u8>)> {
    let max = match version {
        ProxyProtocol::V1 => V1_MAX,
        ProxyProtocol::V2 => V2_MAX,
    };
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        let n = r
            .read(&mut chunk)
            .await
            .map_err(|e| refused(format!("reading the PROXY header: {e}")))?;
        if n == 0 {
            return Err(refused("connection closed before a complete PROXY header"));
        }
        buf.extend_from_slice(&chunk[..n]);
        let parsed = match version {
            ProxyProtocol::V1 => parse_v1(&buf),
            ProxyProtocol::V2 => parse_v2(&buf),
        };
        match parsed {
            Parsed::Done(source, len) => return Ok((source, buf.split_off(len))),
            Parsed::More if buf.len() < max => continue,
            Parsed::More => {
                return Err(refused(format!(
                    "no complete PROXY {version:?} header in {} bytes",
                    buf.len()
                )))
            }
            Parsed::Bad(why) => {
                return Err(refused(format!("bad PROXY {version:?} header: {why}")))
            }
        }
    }
}

enum Parsed {
    /// The source (if the header names an IP one) and the header's length.
    Done(Option<SocketAddr>, usize),
    More,
    Bad(String),
}

fn parse_v1(buf: &[u8]) -> Parsed {
    use ppp::v1::{Addresses, Header};
    match Header::try_from(buf) {
        Ok(h) => {
            let source = match h.addresses {
                Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                Addresses::Unknown => None,
            };
            Parsed::Done(source, h.header.len())
        }
        Err(e) if e.is_incomplete() => Parsed::More,
        Err(e) => Parsed::Bad(e.to_string()),
    }
}

fn parse_v2(buf: &[u8]) -> Parsed {
    use ppp::v2::{Addresses, Command, Header};
    match Header::try_from(buf) {
        Ok(h) => {
            let source = match (h.command, h.addresses) {
                (Command::Proxy, Addresses::IPv4(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (Command::Proxy, Addresses::IPv6(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                _ => None,
            };
            Parsed::Done(source, h.len())
        }
        Err(e) if e.is_incomplete() => Parsed::More,
        Err(e) => Parsed::Bad(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(source: SocketAddr, destination: SocketAddr, tlv: bool) -> Vec<u8> {
        let mut b = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (source, destination),
        );
        if tlv {
            b = b.write_tlv(ppp::v2::Type::NoOp, &[0u8; 40]).unwrap();
        }
        b.build().unwrap()
    }

    async fn read(bytes: &[u8], version: ProxyProtocol) -> Result<(Option<SocketAddr>, Vec<u8>)> {
        let mut r = bytes;
        read_header(&mut r, version).await
    }

    #[tokio::test]
    async fn v1_and_v2_headers_give_the_source_and_keep_what_follows() {
        let (source, rest) = read(
            b"PROXY TCP4 203.0.113.9 127.0.0.1 4711 80\r\nGET / HTTP/1.1\r\n",
            ProxyProtocol::V1,
        )
        .await
        .unwrap();
        assert_eq!(source, Some("203.0.113.9:4711".parse().unwrap()));
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");

        let (source, rest) = read(b"PROXY UNKNOWN\r\nX", ProxyProtocol::V1)
            .await
            .unwrap();
        assert_eq!((source, rest.as_slice()), (None, &b"X"[..]));

        for tlv in [false, true] {
            let mut bytes = v2(
                "[2001:db8::9]:4711".parse().unwrap(),
                "[::1]:443".parse().unwrap(),
                tlv,
            );
            bytes.extend_from_slice(b"\x16\x03\x01");
            let (source, rest) = read(&bytes, ProxyProtocol::V2).await.unwrap();
            assert_eq!(source, Some("[2001:db8::9]:4711".parse().unwrap()));
            assert_eq!(rest, b"\x16\x03\x01");
        }
    }

    #[tokio::test]
    async fn wrong_version_garbage_and_truncation_are_refused() {
        let v2 = v2(
            "192.0.2.1:1".parse().unwrap(),
            "192.0.2.2:2".parse().unwrap(),
            false,
        );
        let cases: [(&[u8], ProxyProtocol); 6] = [
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", ProxyProtocol::V1),
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", ProxyProtocol::V2),
            (&v2, ProxyProtocol::V1),
            (
                b"PROXY TCP4 203.0.113.9 127.0.0.1 4711 80\r\n",
                ProxyProtocol::V2,
            ),
            (b"PROXY TCP4 203.0.113.9", ProxyProtocol::V1),
            (&v2[..20], ProxyProtocol::V2),
        ];
        for (bytes, version) in cases {
            let e = read(bytes, version).await.unwrap_err();
            assert_eq!(e.etype(), &REFUSED, "{bytes:?} as {version:?}");
        }
        // A v1 line that never ends is cut at the spec's limit.
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat();
        assert!(read(&long, ProxyProtocol::V1).await.is_err());
    }
}
