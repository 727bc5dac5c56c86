//! Assembles the Pingora server: the proxy service on every listener, the
//! admin API, the control-plane service (health checks, file watcher,
//! SIGHUP) and, for
//! `portcullis demo`, the sample backends.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::{Server, ShutdownWatch};
use pingora_core::services::background::{background_service, BackgroundService};
use pingora_core::services::listening::Service;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

use crate::admin::AdminApp;
use crate::connections::{ClientConnections, ListenerSlot};
use crate::gateway::{Gateway, ListenerPolicy};
use crate::proxy::GatewayProxy;

/// Extra services to run in the same server (the demo's sample backends).
pub type ExtraServices = Vec<Box<dyn pingora_core::services::ServiceWithDependents>>;

/// What [`run`] runs beside the gateway, what stops it, and what happens
/// once a graceful stop has no request left in flight.
#[derive(Default)]
pub struct RunOptions {
    /// Services to run beside the gateway's (the demo's sample backends).
    pub extra: ExtraServices,
    /// Stop when this is triggered (a gateway run inside a test), instead
    /// of on the process's signals (`SIGTERM`, `SIGINT`, `SIGQUIT`,
    /// `SIGUSR2` for a binary upgrade).
    pub stop: Option<Stop>,
    /// Called on a graceful stop as soon as no request is in flight, after
    /// the access log is written out: the binary exits there instead of
    /// sitting out Pingora's fixed grace period.
    pub drained: Option<Box<dyn Fn() + Send + Sync>>,
}

/// Stops a gateway [`run`] in-process, gracefully.
#[derive(Clone, Default)]
pub struct Stop(Arc<tokio::sync::Notify>);

impl Stop {
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Begin the graceful stop (remembered if the server is not waiting
    /// for it yet).
    pub fn stop(&self) {
        self.0.notify_one();
    }
}

#[async_trait]
impl pingora_core::server::ShutdownSignalWatch for Stop {
    async fn recv(&self) -> pingora_core::server::ShutdownSignal {
        self.0.notified().await;
        pingora_core::server::ShutdownSignal::GracefulTerminate
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot bind {what} {address}: {source}")]
    Bind {
        what: &'static str,
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("listener {address}: {source}")]
    Tls {
        address: SocketAddr,
        source: Box<pingora_error::Error>,
    },
}

/// Port 0 means "any free port". Pingora binds listeners itself, by
/// address, so the port must be known before it starts: bind a socket to
/// port 0 (with `SO_REUSEADDR`, never listening) to learn the port, and keep
/// it for the life of the process. While it is bound, the kernel hands that
/// port to no other port-0 bind, and Pingora's own `SO_REUSEADDR` bind of
/// the concrete address succeeds because this socket does not listen.
fn concrete(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    let bound = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| std::io::Error::other("bound address is not an IP address"))?;
    RESERVED_PORTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(socket);
    Ok(bound)
}

/// Sockets holding the ports picked for port-0 listeners (see [`concrete`]).
static RESERVED_PORTS: Mutex<Vec<Socket>> = Mutex::new(Vec::new());

/// Starts the health checks, reloads on SIGHUP and reopens the access log
/// on SIGUSR1; on a graceful stop, waits for the requests in flight.
struct ControlPlane {
    gateway: Arc<Gateway>,
    drained: Option<Box<dyn Fn() + Send + Sync>>,
}

#[async_trait]
impl BackgroundService for ControlPlane {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        self.gateway.start_health_checks();
        if crate::notify::enabled() {
            tokio::spawn(notify_ready(self.gateway.clone()));
        }
        if let Some(period) = crate::notify::watchdog_period() {
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                loop {
                    tick.tick().await;
                    crate::notify::watchdog();
                }
            });
        }
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGHUP; reload via the admin API only");
                None
            }
        };
        let mut usr1 = match signal(SignalKind::user_defined1()) {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGUSR1; the access log is reopened on reload only");
                None
            }
        };
        loop {
            tokio::select! {
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => None } } => {
                    // Errors are logged by `reload`; the old snapshot keeps serving.
                    let _ = self.gateway.reload("SIGHUP", false).await;
                }
                Some(()) = async { match usr1.as_mut() { Some(s) => s.recv().await, None => None } } => {
                    let gateway = self.gateway.clone();
                    let _ = tokio::task::spawn_blocking(move || gateway.reopen_access_log()).await;
                    info!("access log reopened (SIGUSR1)");
                }
                _ = shutdown.changed() => {
                    crate::notify::stopping(crate::upgrade::handed_over());
                    break;
                }
            }
        }
        if crate::upgrade::handed_over() {
            // A successor serves: keep kept-alive connections usable for the
            // grace period (their next request is answered with
            // `Connection: close`), so no request sent on one is lost.
            return;
        }
        // Stopping: Pingora's grace period is a fixed sleep; end it as soon
        // as no request is left in flight (idle keep-alive connections are
        // closed with the process, as nginx closes them at shutdown).
        let requests = self.gateway.requests().clone();
        info!(
            in_flight = requests.count(),
            "shutting down: waiting for the requests in flight"
        );
        requests.idle().await;
        info!("no request in flight");
        if let Some(drained) = &self.drained {
            self.gateway.access_log().close();
            drained();
        }
    }
}

/// How often readiness is re-checked until the listeners accept.
const READY_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// Tell systemd the gateway is ready once every proxy listener accepts
/// connections (what `/readyz` checks).
async fn notify_ready(gateway: Arc<Gateway>) {
    let mut tick = tokio::time::interval(READY_POLL);
    while !crate::admin::ready::not_ready(gateway.bound_listeners()).is_empty() {
        tick.tick().await;
    }
    let status = format!("serving {}", gateway.snapshot().summary());
    crate::notify::ready(&status, crate::upgrade::is_successor());
}

/// Build and run the server until it is stopped (see [`RunOptions`]), then
/// write out the access-log lines still queued and return. It returns
/// early with the reason when a listener cannot be set up.
pub fn run(gateway: Arc<Gateway>, options: RunOptions) -> Result<(), ServerError> {
    let RunOptions {
        extra,
        stop,
        drained,
    } = options;
    let snapshot = gateway.snapshot();
    let config = &snapshot.config;
    let mut conf = ServerConf {
        threads: config.server.threads,
        upstream_keepalive_pool_size: config.server.upstream_keepalive,
        ..ServerConf::default()
    };
    let grace = config.server.grace_period.as_secs().max(1);
    conf.grace_period_seconds = Some(grace);
    conf.graceful_shutdown_timeout_seconds = Some(grace);
    let sock = crate::upgrade::socket_path();
    conf.upgrade_sock = sock.to_string_lossy().into_owned();
    let successor = crate::upgrade::Successor::new(sock)
        .map_err(|e| warn!(error = %e, "cannot find this binary's path; SIGUSR2 upgrades are off"))
        .ok();
    let opt = Opt {
        upgrade: crate::upgrade::is_successor(),
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    // A successor receives its listening sockets from its predecessor here.
    server.bootstrap();
    if crate::upgrade::is_successor() {
        info!(
            pid = std::process::id(),
            "took over the listening sockets (binary upgrade)"
        );
    }

    let addrs = config
        .listeners
        .iter()
        .map(|l| {
            concrete(l.address).map_err(|source| ServerError::Bind {
                what: "proxy listener",
                address: l.address,
                source,
            })
        })
        .collect::<Result<Vec<SocketAddr>, ServerError>>()?;
    let slots = config
        .listeners
        .iter()
        .zip(&addrs)
        .map(|(l, a)| ListenerSlot {
            bound: *a,
            gauge: gateway.metrics().open_connections(&a.to_string()),
            h2c: l.h2c,
        })
        .collect();
    let mut app =
        pingora_proxy::http_proxy(&server.configuration, GatewayProxy::new(gateway.clone()));
    // HTTP/2 connections idle for keepalive_timeout are closed (HTTP/1 ones
    // by the stream wrapper, see `guarded/mod.rs`). Read at start-up.
    let keepalive = config.server.client.keepalive_timeout;
    let mut options = pingora_core::apps::HttpServerOptions::default();
    options.h2_idle_timeout = Some(keepalive.max(std::time::Duration::from_secs(1)));
    // `GET /a b HTTP/1.1` is a 400, not a request for `/a%20b` (patched
    // Pingora, patches/pingora-core/0002).
    options.reject_illegal_request_line = true;
    // Pingora then asks each plain connection whether it opens with the
    // HTTP/2 preface; the stream wrapper answers, per listener.
    options.h2c = config.listeners.iter().any(|l| l.h2c);
    app.server_options = Some(options);
    let app = ClientConnections::new(app, gateway.clone(), slots);
    let filter = app.filter();
    let mut proxy = Service::new("portcullis proxy".to_string(), app);
    proxy.set_connection_filter(filter);
    let mut bound = Vec::new();
    let mut policies = Vec::new();
    for (i, (l, &addr)) in config.listeners.iter().zip(&addrs).enumerate() {
        policies.push(ListenerPolicy {
            address: addr,
            redirect_https: l.redirect_https,
            // Validated as visible ASCII.
            hsts: l
                .hsts
                .as_deref()
                .and_then(|h| http::HeaderValue::from_str(h).ok()),
        });
        match gateway.tls_store(i) {
            Some(store) => {
                let settings = tls_settings(store).map_err(|source| ServerError::Tls {
                    address: l.address,
                    source,
                })?;
                proxy.add_listener(client_listener(addr).tls(settings));
                bound.push(format!("https://{addr}"));
            }
            None => {
                proxy.add_listener(client_listener(addr));
                bound.push(format!("http://{addr}"));
            }
        }
    }
    gateway.set_listener_policies(policies);
    let entries = config
        .listeners
        .iter()
        .zip(&addrs)
        .enumerate()
        .map(|(index, (l, &bound))| crate::accept::ListenerEntry {
            bound,
            index,
            configured: l.address,
            proxy_protocol: l.proxy_protocol,
        })
        .collect();
    proxy
        .endpoints()
        .set_pre_tls_callback(Arc::new(crate::accept::AcceptStep::new(
            entries,
            Arc::new(LiveAccept(gateway.clone())),
        )));
    let admin_addr = concrete(config.admin.address).map_err(|source| ServerError::Bind {
        what: "admin listener",
        address: config.admin.address,
        source,
    })?;
    let mut admin = Service::new(
        "portcullis admin".to_string(),
        AdminApp::new(gateway.clone()),
    );
    admin.threads = Some(1);
    admin.add_tcp(&admin_addr.to_string());

    server.add_service(proxy);
    server.add_service(admin);
    server.add_service(background_service(
        "portcullis control",
        ControlPlane {
            gateway: gateway.clone(),
            drained,
        },
    ));
    for service in extra {
        server.add_boxed_service(service);
    }

    // Before the listeners are announced: an edit made after that is seen.
    if config.server.watch_config {
        if let Err(e) = crate::watch::spawn(gateway.clone()) {
            warn!(error = %e, "cannot watch the config files; reload with SIGHUP or the admin API");
        }
    }
    hold_signals();
    for url in &bound {
        println!("listening proxy {url}");
    }
    println!("listening admin http://{admin_addr}");
    info!(config = %gateway.config_path().display(), summary = %snapshot.summary(), "portcullis starting");
    drop(snapshot);
    let shutdown_signal: Box<dyn pingora_core::server::ShutdownSignalWatch> = match stop {
        Some(stop) => Box::new(stop),
        None => Box::new(crate::upgrade::Signals::new(successor)),
    };
    server.run(pingora_core::server::RunArgs { shutdown_signal });
    // Stopped: the grace period ran out (requests may still have been in
    // flight), or the stop was a fast one.
    gateway.access_log().close();
    Ok(())
}

/// The live config's say at accept: `[server.trusted_proxies]` for PROXY
/// headers, `[listeners.ip]` for peers.
struct LiveAccept(Arc<Gateway>);

impl crate::accept::LivePolicy for LiveAccept {
    /// Any peer, unless `[server.trusted_proxies]` names who may.
    fn may_send_proxy_header(&self, peer: std::net::IpAddr) -> bool {
        let trusted = &self.0.snapshot().config.server.trusted_proxies;
        trusted.cidrs.is_empty() || trusted.trusts(peer)
    }

    /// The listener at the same place in the live config, else the one
    /// with the same address (the listeners were reordered).
    fn listener_admits(
        &self,
        listener: &crate::accept::ListenerEntry,
        peer: std::net::IpAddr,
    ) -> bool {
        let snapshot = self.0.snapshot();
        let listeners = &snapshot.config.listeners;
        let rules = listeners
            .get(listener.index)
            .filter(|l| l.address == listener.configured)
            .or_else(|| listeners.iter().find(|l| l.address == listener.configured))
            .and_then(|l| l.ip.as_ref());
        rules.is_none_or(|r| r.admits(Some(peer)))
    }
}

/// A client-facing listener. Its connections read straight from the
/// socket into the HTTP session's own buffers: Pingora's default 64 KiB
/// read buffer in front of them is a second copy of every byte read, and
/// each idle kept-alive connection would hold it (zeroed, so resident: 90
/// KiB of memory per idle connection instead of a few).
fn client_listener(addr: SocketAddr) -> pingora_core::listeners::ListenerConfig {
    pingora_core::listeners::ListenerConfig::tcp(addr.to_string())
        .l4_buffer(pingora_core::protocols::l4::stream::L4BufferSettings::default().read(0))
}

/// TLS 1.2 and 1.3 (rustls' safe defaults), ALPN h2 and http/1.1, the
/// certificate chosen per handshake from the listener's live store.
fn tls_settings(
    store: Arc<arc_swap::ArcSwap<crate::tls::CertStore>>,
) -> pingora_error::Result<TlsSettings> {
    let callbacks = Box::new(crate::tls::IdentityCallback::new(store.clone()));
    let mut settings = TlsSettings::with_callbacks(callbacks)?;
    settings.set_client_cert_verifier(Arc::new(crate::tls::ReloadableClientVerifier::new(
        store.clone(),
    )));
    settings.set_cert_resolver(Arc::new(crate::tls::SniResolver::new(store)));
    settings.enable_h2();
    Ok(settings)
}

/// From here on, SIGHUP and SIGUSR1 never end the process (their default
/// action): until the control service listens for them, a reload or
/// log-reopen signal sent right after start-up is ignored instead.
fn hold_signals() {
    for signal in [libc::SIGHUP, libc::SIGUSR1] {
        // SAFETY: the action does nothing, which is async-signal-safe.
        if let Err(e) = unsafe { signal_hook_registry::register(signal, || {}) } {
            warn!(signal, error = %e, "cannot install a signal handler");
        }
    }
}
