//! What happens to a client connection between its accept and its TLS
//! handshake (or, on a plain listener, its first request): the PROXY
//! protocol header where the listener expects one (`crate::proxy_protocol`),
//! then the listener's `[listeners.ip]` rules against the peer it names.
//! A Pingora pre-TLS callback that runs on plaintext endpoints too
//! (patches/pingora-core/0008), within `handshake_timeout`; an error closes
//! the connection before anything else is read.
//!
//! Listener rules see the connection's peer (the PROXY header's source on
//! a `proxy_protocol` listener), never a forwarding header: those are
//! request-level, for `[routes.ip]`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::listeners::PreTlsProcess;
use pingora_core::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::{GetSocketDigest, SocketDigest};
use pingora_error::{Error, ErrorType, Result};

use crate::config::model::ProxyProtocol;
use crate::proxy_protocol::{read_header, refused};

/// The error type of a connection `[listeners.ip]` refused:
/// `crate::connections` counts it apart.
pub const IP_DENIED: ErrorType = ErrorType::Custom("listener ip rules");

/// What the live config says of a connection: whether a TCP peer may send
/// a PROXY header (`[server.trusted_proxies]`), and whether `listener`
/// admits a peer (`[listeners.ip]`).
pub trait LivePolicy: Send + Sync {
    fn may_send_proxy_header(&self, peer: IpAddr) -> bool;
    fn listener_admits(&self, listener: &ListenerEntry, peer: IpAddr) -> bool;
}

/// One proxy listener as the step knows it.
#[derive(Debug, Clone, Copy)]
pub struct ListenerEntry {
    /// Where it is bound (port 0 resolved).
    pub bound: SocketAddr,
    /// Its place in the config's `[[listeners]]` and its address as
    /// written there: how the live config's entry is found.
    pub index: usize,
    pub configured: SocketAddr,
    pub proxy_protocol: Option<ProxyProtocol>,
}

/// The step, for every proxy listener.
pub struct AcceptStep {
    listeners: Vec<ListenerEntry>,
    live: Arc<dyn LivePolicy>,
}

impl AcceptStep {
    pub fn new(listeners: Vec<ListenerEntry>, live: Arc<dyn LivePolicy>) -> Self {
        Self { listeners, live }
    }
}

#[async_trait]
impl PreTlsProcess for AcceptStep {
    fn runs_on_plaintext(&self) -> bool {
        true
    }

    async fn process(&self, stream: &mut L4Stream) -> Result<()> {
        let Some(digest) = stream.get_socket_digest() else {
            return Ok(());
        };
        let inet = |a: Option<&PingoraAddr>| a.and_then(|a| a.as_inet()).copied();
        let (Some(local), Some(mut peer)) = (inet(digest.local_addr()), inet(digest.peer_addr()))
        else {
            return Ok(());
        };
        let Some(listener) = self
            .listeners
            .iter()
            .find(|l| crate::config::model::accepts_on(l.bound, local))
        else {
            return Ok(());
        };
        if let Some(version) = listener.proxy_protocol {
            if !self.live.may_send_proxy_header(peer.ip().to_canonical()) {
                return Err(refused(format!(
                    "PROXY header from {peer}, which is not in [server.trusted_proxies] cidrs"
                )));
            }
            let (source, rest) = read_header(stream, version).await?;
            stream.rewind(&rest);
            if let Some(source) = source {
                use std::os::unix::io::AsRawFd;
                let new = SocketDigest::from_raw_fd(stream.as_raw_fd());
                let _ = new.peer_addr.set(Some(PingoraAddr::Inet(source)));
                let _ = new.local_addr.set(Some(PingoraAddr::Inet(local)));
                stream.set_socket_digest(new);
                peer = source;
            }
        }
        if !self
            .live
            .listener_admits(listener, peer.ip().to_canonical())
        {
            return Err(Error::explain(
                IP_DENIED,
                format!("{} refused by the listener's ip rules", peer.ip()),
            ));
        }
        Ok(())
    }
}
