//! Readiness: is every proxy listener accepting connections? Read from the
//! kernel's socket tables (`/proc/net/tcp`, `/proc/net/tcp6`), so a probe
//! never opens a connection (which, on a TLS listener, would log a failed
//! handshake).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why the gateway is not ready to serve; empty when it is (`/readyz`,
/// and systemd's `READY=1`). `bound`: every start-up proxy listener's
/// bound address (empty until the server bound them).
pub fn not_ready(bound: &[SocketAddr]) -> Vec<String> {
    let mut reasons = Vec::new();
    if bound.is_empty() {
        reasons.push("the proxy listeners are not bound yet".to_string());
    }
    for addr in bound {
        if listening(*addr) == Some(false) {
            reasons.push(format!("listener {addr} is not accepting connections"));
        }
    }
    reasons
}

/// TCP state `LISTEN` in `/proc/net/tcp*`.
const LISTEN: &str = "0A";

/// Whether a socket listens on `addr`; `None` when the tables cannot be
/// read (not Linux).
pub fn listening(addr: SocketAddr) -> Option<bool> {
    let table = match addr {
        SocketAddr::V4(_) => "/proc/net/tcp",
        SocketAddr::V6(_) => "/proc/net/tcp6",
    };
    let text = std::fs::read_to_string(table).ok()?;
    Some(listens_in(&text, addr))
}

fn listens_in(table: &str, addr: SocketAddr) -> bool {
    table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        let (Some(local), Some(state)) = (fields.nth(1), fields.nth(1)) else {
            return false;
        };
        state == LISTEN && parse_local(local) == Some(addr)
    })
}

/// `0100007F:1F90` (an address as the kernel prints it: 32-bit words in
/// native byte order) and a port in hex.
fn parse_local(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |hex: &str| u32::from_str_radix(hex, 16).ok().map(u32::to_ne_bytes);
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(ip)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&word(ip.get(i * 8..i * 8 + 8)?)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_listening_sockets_in_the_kernel_table() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        assert_eq!(listening(addr), Some(true));
        drop(l);
        assert_eq!(listening(addr), Some(false));
        // Bound but not listening (how port-0 listeners are reserved).
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&addr.into()).unwrap();
        assert_eq!(listening(addr), Some(false));
    }

    #[test]
    fn parses_v4_and_v6_entries() {
        let v6 = "00000000000000000000000001000000:1F90";
        assert_eq!(
            parse_local(v6),
            Some("[::1]:8080".parse().unwrap()),
            "the loopback address, as a little-endian kernel prints it"
        );
    }
}
