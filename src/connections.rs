//! Client connections, seen from an app wrapped around the proxy: counted
//! per listener (`portcullis_downstream_open_connections{listener}`) from
//! the accept to the close (TLS handshakes and idle keep-alive time
//! included), limited to `[server.client] max_connections` per process,
//! their TLS handshakes bounded by `handshake_timeout`, and their streams
//! wrapped for the header and keep-alive timeouts (see `guarded/mod.rs`).

use std::any::Any;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::listeners::ConnectionFilter;
use pingora_core::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora_core::protocols::{SocketDigest, Stream};
use pingora_core::server::ShutdownWatch;
use prometheus::{IntCounter, IntGauge};
use tracing::warn;

use crate::gateway::Gateway;
use crate::guarded::{GuardedStream, Refusals, Timeouts};

/// Wraps `A`, the proxy app.
pub struct ClientConnections<A> {
    inner: Arc<A>,
    gateway: Arc<Gateway>,
    listeners: Vec<ListenerSlot>,
    /// Some listener is `h2c`: connections are told which.
    any_h2c: bool,
    open: Arc<AtomicUsize>,
    refusals: Refusals,
    handshake_timeouts: IntCounter,
    handshake_failures: IntCounter,
    proxy_protocol_refusals: IntCounter,
    ip_refusals: IntCounter,
    handshake_log: LogEvery,
}

/// A proxy listener, as its connections need it.
pub struct ListenerSlot {
    /// The bound address (port 0 resolved).
    pub bound: SocketAddr,
    /// `portcullis_downstream_open_connections{listener}`
    pub gauge: IntGauge,
    /// Also HTTP/2 with prior knowledge on plain connections.
    pub h2c: bool,
}

/// At most one log line of a kind per this.
pub const HANDSHAKE_LOG_EVERY: Duration = Duration::from_secs(10);

/// Lets a log line through at most once per interval; counts the events
/// in between.
struct LogEvery {
    interval: Duration,
    last: Mutex<Option<Instant>>,
    since: AtomicU64,
}

impl LogEvery {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: Mutex::new(None),
            since: AtomicU64::new(0),
        }
    }

    /// One more event at `now`; `Some(events since the last line)` when a
    /// line is due.
    fn note(&self, now: Instant) -> Option<u64> {
        let n = self.since.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last.lock().ok()?;
        if last.is_some_and(|l| now.duration_since(l) < self.interval) {
            return None;
        }
        *last = Some(now);
        self.since.fetch_sub(n, Ordering::Relaxed);
        Some(n)
    }
}

impl<A> ClientConnections<A> {
    pub fn new(inner: A, gateway: Arc<Gateway>, listeners: Vec<ListenerSlot>) -> Self {
        let metrics = gateway.metrics();
        let refusals = Refusals {
            header_timeout: metrics.downstream_refused("header_timeout"),
            bad_head: metrics.downstream_refused("bad_head"),
        };
        Self {
            inner: Arc::new(inner),
            handshake_timeouts: metrics.downstream_refused("handshake_timeout"),
            handshake_failures: metrics.downstream_refused("handshake_failed"),
            proxy_protocol_refusals: metrics.downstream_refused("proxy_protocol"),
            ip_refusals: metrics.downstream_refused("ip_denied"),
            handshake_log: LogEvery::new(HANDSHAKE_LOG_EVERY),
            gateway,
            any_h2c: listeners.iter().any(|l| l.h2c),
            listeners,
            open: Arc::new(AtomicUsize::new(0)),
            refusals,
        }
    }

    /// The filter that refuses connections at accept, before a TLS
    /// handshake, while `max_connections` are open.
    pub fn filter(&self) -> Arc<dyn ConnectionFilter> {
        Arc::new(AtMost {
            open: self.open.clone(),
            gateway: self.gateway.clone(),
            refused: self.gateway.metrics().downstream_refused("max_connections"),
        })
    }

    /// The listener that accepted a connection to `local` (a wildcard
    /// listener accepts on any address of its port).
    fn listener(&self, local: Option<SocketAddr>) -> Option<&ListenerSlot> {
        let local = local?;
        self.listeners
            .iter()
            .find(|l| crate::config::model::accepts_on(l.bound, local))
    }
}

fn local_addr(digest: Option<&SocketDigest>) -> Option<SocketAddr> {
    digest?.local_addr()?.as_inet().copied()
}

/// Counts one open connection, from its accept until its task ends.
struct Open {
    gauge: Option<IntGauge>,
    open: Arc<AtomicUsize>,
}

impl Open {
    fn new(gauge: Option<IntGauge>, open: Arc<AtomicUsize>) -> Self {
        if let Some(g) = &gauge {
            g.inc();
        }
        open.fetch_add(1, Ordering::Relaxed);
        Self { gauge, open }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(g) = &self.gauge {
            g.dec();
        }
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for ClientConnections<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        self.gateway.metrics().note_proxy_runtime();
        let limits = &self.gateway.snapshot().config.server.client;
        let timeouts = Timeouts {
            header: limits.header_timeout,
            keepalive: limits.keepalive_timeout,
        };
        let h2c = self.any_h2c
            && self
                .listener(local_addr(session.get_socket_digest().as_deref()))
                .is_some_and(|l| l.h2c);
        let session: Stream = Box::new(GuardedStream::new(
            session,
            timeouts,
            self.refusals.clone(),
            h2c,
        ));
        self.inner.process_new(session, shutdown).await
    }

    /// Read for every accepted connection: `[server.client]
    /// handshake_timeout`, live from the config.
    fn handshake_timeout(&self) -> Duration {
        self.gateway
            .snapshot()
            .config
            .server
            .client
            .handshake_timeout
    }

    /// Counted from the accept: a connection in its TLS handshake counts
    /// against `max_connections` and in its listener's gauge.
    fn connection_accepted(&self, digest: Option<&SocketDigest>) -> Option<Box<dyn Any + Send>> {
        let gauge = self.listener(local_addr(digest)).map(|l| l.gauge.clone());
        Some(Box::new(Open::new(gauge, self.open.clone())))
    }

    /// Counted by reason; logged at most once per [`HANDSHAKE_LOG_EVERY`]
    /// with the number of failures since (a flood of silent connections
    /// once wrote an error line each).
    fn handshake_failed(&self, peer: Option<&PingoraAddr>, error: &pingora_error::Error) {
        match error.etype() {
            pingora_error::ErrorType::TLSHandshakeTimedout => self.handshake_timeouts.inc(),
            e if e == &crate::proxy_protocol::REFUSED => self.proxy_protocol_refusals.inc(),
            e if e == &crate::accept::IP_DENIED => {
                // Refused on purpose, and cheap to cause: counted, not logged.
                self.ip_refusals.inc();
                return;
            }
            _ => self.handshake_failures.inc(),
        }
        if let Some(n) = self.handshake_log.note(Instant::now()) {
            let peer = peer.map(|p| p.to_string()).unwrap_or_default();
            warn!(failed = n, last_peer = %peer, last_error = %error, "handshakes (TLS or PROXY protocol) failed or timed out (one line per 10 s at most; counted in portcullis_downstream_refused_total)");
        }
    }

    /// Not passed on. Pingora's proxy would wake every connection waiting
    /// for its next request and drop it: a request a client sent at that
    /// moment is lost (reset or cut). Left alone while the process drains,
    /// each such connection has its next request served with
    /// `Connection: close` (Pingora does so once shutdown began), and what
    /// is still idle when `grace_period` ends closes with the process.
    async fn cleanup(&self) {}
}

/// Refuses a connection while `max_connections` (live from the config)
/// are open, connections in their TLS handshake included.
struct AtMost {
    open: Arc<AtomicUsize>,
    gateway: Arc<Gateway>,
    refused: IntCounter,
}

impl std::fmt::Debug for AtMost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtMost")
            .field("open", &self.open.load(Ordering::Relaxed))
            .finish()
    }
}

#[async_trait]
impl ConnectionFilter for AtMost {
    async fn should_accept(&self, _addr: Option<&SocketAddr>) -> bool {
        let max = self.gateway.snapshot().config.server.client.max_connections;
        let ok = self.open.load(Ordering::Relaxed) < max as usize;
        if !ok {
            self.refused.inc();
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_at_most_once_per_interval_with_the_count_since() {
        let log = LogEvery::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(log.note(t0), Some(1));
        assert_eq!(log.note(t0 + Duration::from_secs(1)), None);
        assert_eq!(log.note(t0 + Duration::from_secs(9)), None);
        assert_eq!(log.note(t0 + Duration::from_secs(10)), Some(3));
        assert_eq!(log.note(t0 + Duration::from_secs(11)), None);
        assert_eq!(log.note(t0 + Duration::from_secs(25)), Some(2));
    }
}
