//! Client connections, seen from an app wrapped around the proxy: counted
//! per listener (`portcullis_downstream_open_connections{listener}`, idle
//! keep-alive time included), limited to `[server.client]
//! max_connections` per process, and their HTTP/1 streams wrapped for the
//! header and keep-alive timeouts (see `guarded.rs`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::listeners::ConnectionFilter;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use prometheus::{IntCounter, IntGauge};

use crate::gateway::Gateway;
use crate::guarded::{GuardedStream, Refusals, Timeouts};

/// Wraps `A`, the proxy app.
pub struct ClientConnections<A> {
    inner: Arc<A>,
    gateway: Arc<Gateway>,
    /// (bound listener address, its gauge)
    listeners: Vec<(SocketAddr, IntGauge)>,
    open: Arc<AtomicUsize>,
    refusals: Refusals,
}

impl<A> ClientConnections<A> {
    pub fn new(inner: A, gateway: Arc<Gateway>, listeners: Vec<(SocketAddr, IntGauge)>) -> Self {
        let metrics = gateway.metrics();
        let refusals = Refusals {
            header_timeout: metrics.downstream_refused("header_timeout"),
            bad_head: metrics.downstream_refused("bad_head"),
        };
        Self {
            inner: Arc::new(inner),
            gateway,
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
struct Open<'a> {
    gauge: Option<&'a IntGauge>,
    open: &'a AtomicUsize,
}

impl<'a> Open<'a> {
    fn new(gauge: Option<&'a IntGauge>, open: &'a AtomicUsize) -> Self {
        if let Some(g) = gauge {
            g.inc();
        }
        open.fetch_add(1, Ordering::Relaxed);
        Self { gauge, open }
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        if let Some(g) = self.gauge {
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
        let local = session
            .get_socket_digest()
            .and_then(|d| d.local_addr().and_then(|a| a.as_inet()).copied());
        let _open = Open::new(local.and_then(|a| self.gauge(a)), &self.open);
        self.gateway.metrics().note_proxy_runtime();
        let session: Stream = if GuardedStream::wraps(&session) {
            let limits = &self.gateway.snapshot().config.server.client;
            let timeouts = Timeouts {
                header: limits.header_timeout,
                keepalive: limits.keepalive_timeout,
            };
            Box::new(GuardedStream::new(session, timeouts, self.refusals.clone()))
        } else {
            session
        };
        self.inner.process_new(session, shutdown).await
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
/// are open. Connections in their TLS handshake are not counted yet.
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
