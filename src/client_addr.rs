//! The client's address: the one function every user of it (rate limits
//! per client IP, failed-attempt damping, consistent hashing, the access
//! log, `X-Forwarded-For`) reads it from.
//!
//! The connection's peer is the client, unless the peer is one of
//! `[server.trusted_proxies] cidrs`. Then the forwarding header it names
//! (`X-Forwarded-For`, or RFC 7239 `Forwarded`) is read right to left,
//! skipping trusted proxies: the right-most address that is not a trusted
//! proxy is the client, as nginx's `real_ip_recursive` and Envoy's trusted
//! CIDRs do. Everything left of it was written by the client and may be
//! forged. A header from an untrusted peer is never read. An entry that is
//! not an address (`unknown`, an obfuscated `_name`, garbage) stops the
//! walk at the last trusted hop, which is the nearest address known.
//!
//! On a `proxy_protocol` listener the peer is the PROXY header's source
//! (see `crate::proxy_protocol`); the walk starts there.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName};

use crate::config::model::{ForwardingHeader, TrustedProxies};

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The client's address, as the connection from `peer` and its headers
/// tell it.
pub fn client(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    if !trusted.trusts(peer) {
        return peer;
    }
    match trusted.header {
        ForwardingHeader::XForwardedFor => walk(peer, x_forwarded_for(headers), trusted),
        ForwardingHeader::Forwarded => {
            walk(peer, forwarded_for(headers).into_iter().rev(), trusted)
        }
    }
}

/// From the trusted `peer` leftwards through `hops` (right to left; `None`
/// for an entry that is not an address).
fn walk(
    peer: IpAddr,
    hops: impl Iterator<Item = Option<IpAddr>>,
    trusted: &TrustedProxies,
) -> IpAddr {
    let mut nearest = peer;
    for hop in hops {
        let Some(ip) = hop else {
            return nearest;
        };
        if !trusted.trusts(ip) {
            return ip;
        }
        nearest = ip;
    }
    // Every hop is a trusted proxy: the left-most is where the chain began.
    nearest
}

/// The entries of every `X-Forwarded-For` line, right to left.
fn x_forwarded_for(headers: &HeaderMap) -> impl Iterator<Item = Option<IpAddr>> + '_ {
    headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .rev()
        .flat_map(|v| v.as_bytes().rsplit(|&b| b == b','))
        // An empty line or `a,,b` said nothing: skipped.
        .filter_map(|entry| node(entry.trim_ascii()))
}

/// The `for=` of each element of every `Forwarded` line, left to right
/// (RFC 7239 §4; a quoted value may hold `,` or `;`).
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut out = Vec::new();
    for line in headers.get_all(http::header::FORWARDED) {
        for element in split_unquoted(line.as_bytes(), b',') {
            if element.trim_ascii().is_empty() {
                continue;
            }
            let value = split_unquoted(element, b';').find_map(|pair| {
                let pair = pair.trim_ascii();
                let eq = pair.iter().position(|&b| b == b'=')?;
                let name = pair[..eq].trim_ascii();
                name.eq_ignore_ascii_case(b"for").then(|| &pair[eq + 1..])
            });
            // An element without `for=` names no client: stop there.
            out.push(value.and_then(|v| node(unquote(v.trim_ascii())).flatten()));
        }
    }
    out
}

/// `a` split at each `sep` outside a quoted string.
fn split_unquoted(a: &[u8], sep: u8) -> impl Iterator<Item = &[u8]> {
    let mut quoted = false;
    let mut escaped = false;
    a.split(move |&b| {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        }
        b == sep && !quoted
    })
}

fn unquote(v: &[u8]) -> &[u8] {
    v.strip_prefix(b"\"")
        .and_then(|v| v.strip_suffix(b"\""))
        .unwrap_or(v)
}

/// One hop: `Some(Some(ip))` for an address (with or without a port,
/// IPv6 with or without brackets), `Some(None)` for anything else that
/// is not empty, `None` for an empty entry.
fn node(entry: &[u8]) -> Option<Option<IpAddr>> {
    if entry.is_empty() {
        return None;
    }
    let Ok(text) = std::str::from_utf8(entry) else {
        return Some(None);
    };
    let ip = text
        .parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            text.strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<std::net::Ipv6Addr>().ok())
                .map(IpAddr::V6)
        })
        .map(|ip| ip.to_canonical());
    Some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(cidrs: &[&str], header: ForwardingHeader) -> TrustedProxies {
        TrustedProxies {
            cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
            header,
        }
    }

    fn headers(name: &str, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn x_forwarded_for_right_most_untrusted() {
        let t = trusted(&["10.0.0.0/8"], ForwardingHeader::XForwardedFor);
        let peer = ip("10.0.0.1");
        let cases: &[(&[&str], &str)] = &[
            // No header: the proxy itself.
            (&[], "10.0.0.1"),
            (&["203.0.113.9"], "203.0.113.9"),
            // The client forged the left part; the proxy appended the truth.
            (&["6.6.6.6, 203.0.113.9"], "203.0.113.9"),
            (&["6.6.6.6", "203.0.113.9, 10.1.1.1"], "203.0.113.9"),
            (&["203.0.113.9:4711, 10.1.1.1"], "203.0.113.9"),
            (&["[2001:db8::7]:80"], "2001:db8::7"),
            (&["[2001:db8::7]"], "2001:db8::7"),
            (&["::ffff:198.51.100.2"], "198.51.100.2"),
            // All trusted: the left-most.
            (&["10.2.2.2, 10.1.1.1"], "10.2.2.2"),
            // Garbage stops the walk at the nearest trusted hop.
            (&["203.0.113.9, unknown, 10.1.1.1"], "10.1.1.1"),
            (&["203.0.113.9, , 10.1.1.1"], "203.0.113.9"),
        ];
        for (values, want) in cases {
            let got = client(peer, &headers("x-forwarded-for", values), &t);
            assert_eq!(got, ip(want), "{values:?}");
        }
    }

    #[test]
    fn untrusted_peer_is_the_client() {
        let t = trusted(&["10.0.0.0/8"], ForwardingHeader::XForwardedFor);
        let h = headers("x-forwarded-for", &["10.9.9.9"]);
        assert_eq!(client(ip("192.0.2.1"), &h, &t), ip("192.0.2.1"));
        let none = TrustedProxies::default();
        assert_eq!(client(ip("10.0.0.1"), &h, &none), ip("10.0.0.1"));
    }

    #[test]
    fn forwarded_for_parameters() {
        let t = trusted(
            &["10.0.0.0/8", "2001:db8:ffff::/48"],
            ForwardingHeader::Forwarded,
        );
        let peer = ip("10.0.0.1");
        let cases: &[(&[&str], &str)] = &[
            (&["for=192.0.2.60;proto=http;by=203.0.113.43"], "192.0.2.60"),
            (&[r#"for="[2001:db8:cafe::17]:4711""#], "2001:db8:cafe::17"),
            (
                &["For=6.6.6.6, for=192.0.2.60", "for=10.3.3.3"],
                "192.0.2.60",
            ),
            (
                &[r#"for=192.0.2.60;host="a,b;c", for=10.3.3.3"#],
                "192.0.2.60",
            ),
            (&["for=192.0.2.60, for=_hidden"], "10.0.0.1"),
            (&["for=unknown"], "10.0.0.1"),
            (&["proto=https"], "10.0.0.1"),
            (&[r#"for="[2001:db8:ffff::1]""#], "2001:db8:ffff::1"),
        ];
        for (values, want) in cases {
            let got = client(peer, &headers("forwarded", values), &t);
            assert_eq!(got, ip(want), "{values:?}");
        }
        // The other header is not read.
        let xff = headers("x-forwarded-for", &["192.0.2.60"]);
        assert_eq!(client(peer, &xff, &t), peer);
    }
}
