//! The connection to a chosen backend, as Pingora's [`HttpPeer`]: its
//! address, TLS to it (SNI, verification, CA, client certificate, ALPN)
//! or HTTP/2 in cleartext (`h2c`), the streams one HTTP/2 connection
//! carries (`max_h2_streams`)
//! and the route's timeouts, each cut to the time left before the
//! request's deadline.

use std::time::{Duration, Instant};

use pingora_core::upstreams::peer::HttpPeer;

use super::{Backend, Pool};
use crate::config::model::TimeoutsConfig;

/// The peer for `backend` of `pool` under `timeouts`, none longer than
/// what is left before `deadline`.
pub fn http_peer(
    pool: &Pool,
    backend: &Backend,
    timeouts: &TimeoutsConfig,
    deadline: Option<Instant>,
) -> HttpPeer {
    let mut peer = match &pool.tls {
        None => {
            let mut peer = HttpPeer::new(backend.address, false, String::new());
            if pool.config.h2c {
                // Prior knowledge: with HTTP/2 as the least version on a
                // plaintext peer, Pingora speaks h2c at once.
                peer.options.alpn = pingora_core::protocols::ALPN::H2;
            }
            peer
        }
        Some(tls) => {
            let mut peer = HttpPeer::new(backend.address, true, tls.sni.clone());
            peer.options.verify_cert = tls.verify;
            peer.options.verify_hostname = tls.verify && !tls.sni.is_empty();
            peer.options.ca = tls.ca.clone();
            peer.client_cert_key = tls.client.clone();
            if tls.h2 {
                peer.options.alpn = pingora_core::protocols::ALPN::H2;
            }
            peer
        }
    };
    peer.options.connection_timeout = within_deadline(timeouts.connect, deadline);
    peer.options.total_connection_timeout = within_deadline(timeouts.connect, deadline);
    peer.options.read_timeout = within_deadline(timeouts.read, deadline);
    peer.options.write_timeout = within_deadline(timeouts.write, deadline);
    peer.options.idle_timeout = timeouts.idle;
    peer.options.max_h2_streams = pool.config.max_h2_streams as usize;
    peer
}

/// The peer a health probe of `backend` uses: the pool's connection
/// settings (TLS, SNI, CA, client certificate), `timeout` for connect,
/// read and write, and the HTTP version the probe speaks (`alpn`),
/// whatever the pool speaks to its backends.
pub fn probe_peer(
    pool: &Pool,
    backend: &Backend,
    timeout: Duration,
    alpn: pingora_core::protocols::ALPN,
) -> HttpPeer {
    let timeouts = TimeoutsConfig {
        connect: Some(timeout),
        read: Some(timeout),
        write: Some(timeout),
        idle: None,
        total: None,
    };
    let mut peer = http_peer(pool, backend, &timeouts, None);
    peer.options.alpn = alpn;
    peer
}

/// `min(limit, time left before the deadline)`, never zero.
fn within_deadline(limit: Option<Duration>, deadline: Option<Instant>) -> Option<Duration> {
    let Some(deadline) = deadline else {
        return limit;
    };
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    Some(limit.map_or(left, |l| l.min(left)))
}

#[cfg(test)]
mod tests {
    use pingora_core::upstreams::peer::HttpPeer;

    /// Getting an upstream session is awaited by every request; with
    /// connecting boxed (patches/pingora-core/0005) its future stays small,
    /// so the request's future does not carry a TCP and TLS handshake.
    #[test]
    fn getting_an_upstream_session_is_a_small_future() {
        let connector = pingora_core::connectors::http::Connector::new(None);
        let peer = HttpPeer::new("127.0.0.1:1", false, String::new());
        let size = std::mem::size_of_val(&connector.get_http_session(&peer));
        eprintln!("get_http_session future: {size} bytes");
        assert!(size < 2048, "get_http_session's future is {size} bytes");
    }
}
