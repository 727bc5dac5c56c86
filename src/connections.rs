//! Open downstream connections per listener
//! (`portcullis_downstream_open_connections{listener}`), counted by an
//! app wrapped around the proxy: a connection counts while the proxy
//! serves it, idle keep-alive time included.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use prometheus::IntGauge;

/// Wraps `A`, counting the connections it serves by accepting listener.
pub struct CountConnections<A> {
    inner: Arc<A>,
    /// (bound listener address, its gauge)
    listeners: Vec<(SocketAddr, IntGauge)>,
}

impl<A> CountConnections<A> {
    pub fn new(inner: A, listeners: Vec<(SocketAddr, IntGauge)>) -> Self {
        Self {
            inner: Arc::new(inner),
            listeners,
        }
    }

    /// The gauge of the listener that accepted a connection to `local`
    /// (a wildcard listener accepts on any address of its port).
    fn gauge(&self, local: SocketAddr) -> Option<&IntGauge> {
        let matches = |l: &SocketAddr| {
            l.port() == local.port() && (l.ip() == local.ip() || l.ip().is_unspecified())
        };
        self.listeners
            .iter()
            .find(|(l, _)| matches(l))
            .map(|(_, g)| g)
    }
}

/// Counts one open connection until dropped.
struct Open<'a>(&'a IntGauge);

impl<'a> Open<'a> {
    fn new(gauge: &'a IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for CountConnections<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let local = session
            .get_socket_digest()
            .and_then(|d| d.local_addr().and_then(|a| a.as_inet()).copied());
        let _open = local.and_then(|a| self.gauge(a)).map(Open::new);
        self.inner.process_new(session, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}
