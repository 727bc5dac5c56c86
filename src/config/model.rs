//! The validated configuration model.
//!
//! Everything outside `config` works with these types only; serde never sees
//! them. A [`Config`] has passed validation: pool references resolve, backend
//! addresses parse, timeouts are positive, route ids are unique and no two
//! routes claim the same host + path + methods.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Default proxy listener when the file names none.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
/// Default admin listener: loopback only, so the admin API is never exposed by accident.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9180";
/// Default worker threads of the proxy service.
pub const DEFAULT_THREADS: usize = 1;
/// Default idle upstream connections kept per worker thread (Pingora's default).
pub const DEFAULT_UPSTREAM_KEEPALIVE: usize = 128;
/// Upper bound of `upstream_keepalive`: each idle connection holds a socket.
pub const MAX_UPSTREAM_KEEPALIVE: usize = 100_000;
/// Default upstream connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default upstream read timeout (time between two reads of the response).
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default upstream write timeout (time for one write of the request).
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default idle time of a pooled upstream keep-alive connection.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default number of retries on another backend after a connect failure.
pub const DEFAULT_RETRIES: u32 = 1;
/// Default backend weight.
pub const DEFAULT_WEIGHT: u32 = 1;
/// Default health check interval.
pub const DEFAULT_HC_INTERVAL: Duration = Duration::from_secs(5);
/// Default health check timeout.
pub const DEFAULT_HC_TIMEOUT: Duration = Duration::from_secs(1);
/// Default consecutive successes before an unhealthy backend is used again.
pub const DEFAULT_HC_HEALTHY_THRESHOLD: u32 = 2;
/// Default consecutive failures before a healthy backend is ejected.
pub const DEFAULT_HC_UNHEALTHY_THRESHOLD: u32 = 3;
/// Default request header that carries the request id.
pub const DEFAULT_REQUEST_ID_HEADER: &str = "x-request-id";

/// Where a value sits in its config file, kept for errors found after
/// validation (a certificate that does not parse, a CA bundle with no
/// certificate). Every `Pos` equals every other, so that comparing two
/// configs ignores positions: moving a line is not a change.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pos {
    /// 1-based; 0 when unknown.
    pub line: usize,
    /// 1-based, in characters; 0 when unknown.
    pub column: usize,
}

impl PartialEq for Pos {
    fn eq(&self, _: &Pos) -> bool {
        true
    }
}

impl Eq for Pos {}

impl std::hash::Hash for Pos {
    // Consistent with `eq`: every position hashes alike.
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

/// SHA-256 of the text the config was read from: the main file, then each
/// consumer file with its name, as read once by [`super::load`]. Like
/// [`Pos`], every `SourceDigest` equals every other: comments and layout
/// are not part of what a config is.
#[derive(Debug, Clone, Copy, Default)]
pub struct SourceDigest(pub [u8; 32]);

impl PartialEq for SourceDigest {
    fn eq(&self, _: &SourceDigest) -> bool {
        true
    }
}

impl Eq for SourceDigest {}

/// A file the config names (certificate, key, CA bundle), resolved against
/// the config file's directory, and where the config names it.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileRef {
    pub path: std::path::PathBuf,
    #[serde(skip)]
    pub at: Pos,
}

impl FileRef {
    pub fn display(&self) -> std::path::Display<'_> {
        self.path.display()
    }
}

/// A whole, validated configuration.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct Config {
    /// File it was loaded from (for messages).
    pub source: String,
    pub server: ServerSettings,
    pub listeners: Vec<Listener>,
    pub admin: AdminSettings,
    /// Pools by name, in name order.
    pub pools: BTreeMap<String, PoolConfig>,
    /// Routes in file order.
    pub routes: Vec<RouteConfig>,
    pub auth: AuthSettings,
    pub access_log: AccessLogTarget,
    pub cache: CacheSettings,
    /// Consumers from this file, then from each of `consumer_files` in turn.
    pub consumers: Vec<Consumer>,
    /// Identity providers whose bearer tokens routes accept.
    pub jwt_issuers: Vec<JwtIssuer>,
    /// `[limit_store]`: where rate-limit and quota counters live (read at
    /// start-up).
    pub limit_store: LimitStoreSettings,
    /// The files `consumer_files` named, as read (for messages and reload).
    pub consumer_files: Vec<String>,
    /// The glob patterns among `consumer_files`, resolved against the
    /// config's directory: a new file matching one is a config change.
    pub consumer_globs: Vec<std::path::PathBuf>,
    /// What the main file and the consumer files held when read.
    #[serde(skip)]
    pub source_digest: SourceDigest,
}

/// Where the access log goes.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogTarget {
    Off,
    /// Standard output (the journal, under systemd). The default.
    Stdout,
    /// Appended to a file, reopened on every reload.
    File(std::path::PathBuf),
}

#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct ServerSettings {
    /// Worker threads of the proxy service.
    pub threads: usize,
    /// How long a graceful shutdown waits for in-flight requests.
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
    /// Idle upstream keep-alive connections kept per worker thread, over all
    /// pools; a connection beyond this is closed after its response.
    pub upstream_keepalive: usize,
    /// Reload when the config file or a file it includes changes (default
    /// on); read at start-up.
    pub watch_config: bool,
    /// `[server.client]`: limits on requests, live on reload.
    pub client: ClientLimits,
    /// The pseudonym this gateway names itself by in `Via` (RFC 9110
    /// §7.6.3); a request already carrying it has looped (508). `None`:
    /// [`default_via`], one per process.
    pub via: Option<String>,
    /// `[server.trusted_proxies]`: whose forwarding headers are believed
    /// (none by default); live on reload.
    pub trusted_proxies: TrustedProxies,
}

/// `[server.trusted_proxies]`: the peers (balancers, CDNs, other proxies)
/// whose forwarding header names the client. See `crate::client_addr`.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct TrustedProxies {
    pub cidrs: Vec<ipnet::IpNet>,
    pub header: ForwardingHeader,
}

impl TrustedProxies {
    /// Whether a forwarding header from `ip` is believed.
    pub fn trusts(&self, ip: std::net::IpAddr) -> bool {
        self.cidrs.iter().any(|net| net.contains(&ip))
    }
}

/// `[routes.ip]` and `[listeners.ip]`: which client addresses may pass.
/// `deny` wins; with an `allow` list, only its addresses pass.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct IpRules {
    pub allow: Vec<ipnet::IpNet>,
    pub deny: Vec<ipnet::IpNet>,
}

impl IpRules {
    /// Whether a client at `ip` passes. An unknown address (a Unix
    /// socket) passes only rules without an `allow` list.
    pub fn admits(&self, ip: Option<std::net::IpAddr>) -> bool {
        let Some(ip) = ip.map(|ip| ip.to_canonical()) else {
            return self.allow.is_empty();
        };
        if self.deny.iter().any(|n| n.contains(&ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&ip))
    }
}

/// The header a trusted proxy names the client in.
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardingHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`
    Forwarded,
}

/// The PROXY protocol version a listener expects before anything else.
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    /// The text header (`PROXY TCP4 ...\r\n`).
    V1,
    /// The binary header.
    V2,
}

/// The `Via` pseudonym when `[server] via` is not set:
/// `portcullis-HOSTNAME-PID` (letters, digits, `-` and `.` of the host
/// name kept), computed once per process. Unique among the processes of
/// a fleet (two gateways chained on one host differ by pid), so a loop
/// through this one is seen and a chain of gateways is not taken for one.
pub fn default_via() -> &'static str {
    static VIA: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VIA.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .unwrap_or_default();
        let host: String = host
            .trim()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
            .collect();
        let pid = std::process::id();
        if host.is_empty() {
            format!("portcullis-{pid}")
        } else {
            format!("portcullis-{host}-{pid}")
        }
    })
}

impl ServerSettings {
    /// The `Via` pseudonym in use: `[server] via`, else [`default_via`].
    pub fn via(&self) -> &str {
        self.via.as_deref().unwrap_or_else(|| default_via())
    }
}

/// `[server.client]`: what a request may carry before the gateway refuses
/// it (431, 414), how long a client may take (408) and how many may be
/// connected at once.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct ClientLimits {
    /// Bytes of the request line and headers.
    pub max_header_size: u64,
    /// Header fields.
    pub max_headers: u32,
    /// Bytes of the request target.
    pub max_uri_length: u32,
    /// The whole request head must arrive within this, counted from the
    /// connection's accept (first request) or the head's first byte.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Longest gap between two reads of a request body.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Idle time after which a keep-alive connection is closed; zero turns
    /// keep-alive off.
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// Client connections open at once, per process.
    pub max_connections: u32,
    /// A TLS handshake must be done within this after the accept.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// How request paths are made canonical (`merge_slashes`,
    /// `ambiguous_paths`).
    #[serde(flatten)]
    pub paths: crate::target::PathRules,
    /// Header names holding `_`: dropped, refused or allowed.
    pub headers_with_underscores: Underscores,
}

/// What `[server.client] headers_with_underscores` does with a header name
/// holding `_`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Underscores {
    /// Removed from the request before anything reads it (nginx's default).
    #[default]
    Drop,
    /// The request is refused with 400.
    Reject,
    /// Kept, unless its `-` spelling is a header the gateway owns or sets.
    Allow,
}

pub const DEFAULT_MAX_HEADER_SIZE: u64 = 32 << 10;
pub const DEFAULT_MAX_HEADERS: u32 = 100;
pub const DEFAULT_MAX_URI_LENGTH: u32 = 8192;
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(75);
pub const DEFAULT_MAX_CONNECTIONS: u32 = 100_000;
/// Pingora's own is 60 s; a client that has not finished its TLS handshake
/// after a few seconds is gone or hostile.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pingora reads at most 1 MiB of request head and 256 header fields.
pub const MAX_HEADER_SIZE_LIMIT: u64 = 1 << 20;
pub const MAX_HEADERS_LIMIT: u32 = 256;

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            max_header_size: DEFAULT_MAX_HEADER_SIZE,
            max_headers: DEFAULT_MAX_HEADERS,
            max_uri_length: DEFAULT_MAX_URI_LENGTH,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            paths: crate::target::PathRules::default(),
            headers_with_underscores: Underscores::Drop,
        }
    }
}

/// A proxy listener. The address may use port 0 (tests); the bound address is
/// printed at start-up.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct Listener {
    pub address: SocketAddr,
    /// TLS termination; `None` = plain HTTP.
    pub tls: Option<ListenerTls>,
    /// Plain listeners only: answer every request with a 308 to `https://`
    /// on this port (443 is left out of the URL).
    pub redirect_https: Option<u16>,
    /// TLS listeners only: `Strict-Transport-Security` value added to responses.
    pub hsts: Option<String>,
    /// Every connection starts with a PROXY protocol header, read before
    /// TLS; its source address is the connection's peer.
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Plain listeners only: a connection opening with the HTTP/2 preface
    /// speaks HTTP/2 (h2c, prior knowledge; gRPC without TLS), any other
    /// HTTP/1. Start-up only.
    pub h2c: bool,
    /// `[listeners.ip]`: peers refused at accept, before TLS; live on
    /// reload.
    pub ip: Option<IpRules>,
}

/// Whether a listener bound to `bound` accepted a connection to `local`
/// (a wildcard listener accepts on any address of its port).
pub fn accepts_on(bound: SocketAddr, local: SocketAddr) -> bool {
    bound.port() == local.port() && (bound.ip() == local.ip() || bound.ip().is_unspecified())
}

/// Certificates a TLS listener serves, chosen by SNI.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct ListenerTls {
    pub certificates: Vec<CertificateSpec>,
    /// Lowest TLS version accepted (1.2 or 1.3).
    pub min_version: TlsVersion,
    /// Client certificate verification, when asked for.
    pub client_auth: Option<ClientAuth>,
}

/// Client certificates on a TLS listener.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct ClientAuth {
    /// `true`: a handshake without a valid client certificate fails;
    /// `false`: a certificate is asked for and verified if sent.
    pub required: bool,
    /// PEM bundle of the CAs client certificates must chain to.
    pub ca_file: FileRef,
    /// Request header carrying the verified subject to the backend (any
    /// client-sent header of that name is removed first).
    pub subject_header: String,
}

/// Default header carrying a verified client certificate's subject.
pub const DEFAULT_CLIENT_SUBJECT_HEADER: &str = "x-client-cert-subject";

/// `max_h2_streams` when not set: one request per connection at a time,
/// as Pingora and nginx's `grpc_pass` do.
pub const DEFAULT_MAX_H2_STREAMS: u32 = 1;

/// TLS protocol versions the gateway speaks.
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// One certificate entry of a TLS listener.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct CertificateSpec {
    /// PEM certificate chain, leaf first (resolved against the config's directory).
    pub cert: std::path::PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1: RSA, ECDSA, Ed25519).
    pub key: std::path::PathBuf,
    /// Lower-case names it serves (`*.example.com` allowed); empty = the
    /// certificate's DNS subject alternative names.
    pub names: Vec<String>,
    /// Served when the client's SNI matches no name (or sends none).
    pub default: bool,
    /// Where the entry is in the config file, for errors found when loading.
    #[serde(skip)]
    pub at: Pos,
}

#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct AdminSettings {
    pub address: SocketAddr,
    /// SHA-256 of the bearer token every admin endpoint but `/healthz` and
    /// `/readyz` requires; `None`: no token (keep the admin listener on
    /// loopback or a private network). Shown only as `"<redacted>"`.
    #[serde(serialize_with = "redacted")]
    pub token_digest: Option<[u8; 32]>,
    /// SHA-256 of a token that may only read (GET and HEAD); needs
    /// `token_digest`. Shown only as `"<redacted>"`.
    #[serde(serialize_with = "redacted")]
    pub read_token_digest: Option<[u8; 32]>,
    /// A non-loopback address without a token, on purpose.
    pub allow_unauthenticated: bool,
    /// Lower-case `Host` names answered besides IP literals and
    /// `localhost` (a DNS rebinding attack brings a name of its own).
    pub hosts: Vec<String>,
}

/// `"<redacted>"` for a secret that is set, `null` for one that is not.
fn redacted<S: serde::Serializer, T>(value: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => s.serialize_str("<redacted>"),
        None => s.serialize_none(),
    }
}

#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct PoolConfig {
    pub name: String,
    pub backends: Vec<BackendConfig>,
    pub balance: Balance,
    pub timeouts: TimeoutsConfig,
    /// Retries on another backend after a connect failure (0 = none).
    pub retries: u32,
    pub health_check: Option<HealthCheck>,
    /// TLS to the backends; `None` = plain HTTP.
    pub tls: Option<UpstreamTls>,
    /// HTTP/2 over plain TCP with prior knowledge (`h2c = true`).
    pub h2c: bool,
    /// HTTP/2 pools (`h2c`, or TLS with `protocol = "h2"`): requests in
    /// flight on one backend connection before another is opened.
    pub max_h2_streams: u32,
    /// The pool that takes this one's traffic while it has no usable
    /// backend or its breaker is open.
    pub fallback: Option<String>,
    /// Requests in flight to the pool beyond which it answers 503 at once.
    pub max_in_flight: Option<u32>,
    /// Passive outlier ejection of single backends; `None`: off.
    pub outlier: Option<Outlier>,
    /// The pool's circuit breaker; `None`: off.
    pub breaker: Option<BreakerConfig>,
    /// How many retries the pool's requests may make together; `None`:
    /// bounded per request by `retries` only.
    pub retry_budget: Option<RetryBudgetConfig>,
}

/// Statuses counted as failures, as inclusive ranges.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatusSet(pub Vec<(u16, u16)>);

impl StatusSet {
    /// Every 5xx status.
    pub fn server_errors() -> StatusSet {
        StatusSet(vec![(500, 599)])
    }

    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| (lo..=hi).contains(&status))
    }
}

/// `[pools.NAME.outlier]`: eject a backend that keeps failing.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Outlier {
    /// Failures in a row (connect failures, timeouts, resets and
    /// `failure_statuses`) that eject the backend.
    pub consecutive_failures: u32,
    /// Ejection time = `base_ejection` × times ejected, capped by `max_ejection`.
    #[serde(with = "humantime_serde")]
    pub base_ejection: Duration,
    #[serde(with = "humantime_serde")]
    pub max_ejection: Duration,
    /// Never eject more than this share (percent, rounded down) of the pool.
    pub max_ejection_percent: u32,
    pub failure_statuses: StatusSet,
}

pub const DEFAULT_OUTLIER_CONSECUTIVE_FAILURES: u32 = 5;
pub const DEFAULT_BASE_EJECTION: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_EJECTION: Duration = Duration::from_secs(300);
pub const DEFAULT_MAX_EJECTION_PERCENT: u32 = 50;

/// `[pools.NAME.breaker]`: the pool's circuit breaker.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Failures in a row that trip it; 0: only the failure rate does.
    pub consecutive_failures: u32,
    /// Share of failed attempts over `window` that trips it.
    pub failure_rate: f64,
    /// Attempts within `window` before the rate counts.
    pub min_requests: u32,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Open time after the first trip; doubles on each re-trip from
    /// half-open, up to `max_open_for`.
    #[serde(with = "humantime_serde")]
    pub open_for: Duration,
    #[serde(with = "humantime_serde")]
    pub max_open_for: Duration,
    /// Attempts let through while half-open; all must succeed to close.
    pub probe_requests: u32,
    pub failure_statuses: StatusSet,
}

pub const DEFAULT_BREAKER_CONSECUTIVE_FAILURES: u32 = 20;
pub const DEFAULT_BREAKER_FAILURE_RATE: f64 = 0.5;
pub const DEFAULT_BREAKER_MIN_REQUESTS: u32 = 20;
pub const DEFAULT_BREAKER_WINDOW: Duration = Duration::from_secs(10);
pub const DEFAULT_OPEN_FOR: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_OPEN_FOR: Duration = Duration::from_secs(300);
pub const DEFAULT_PROBE_REQUESTS: u32 = 3;

/// `[pools.NAME.retry_budget]`: retries ≤ `ratio` × requests over the
/// last 10 s, plus `min_per_second` × 10.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct RetryBudgetConfig {
    pub ratio: f64,
    pub min_per_second: u32,
}

pub const DEFAULT_RETRY_BUDGET_RATIO: f64 = 0.2;
pub const DEFAULT_RETRY_BUDGET_MIN_PER_SECOND: u32 = 3;

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        RetryBudgetConfig {
            ratio: DEFAULT_RETRY_BUDGET_RATIO,
            min_per_second: DEFAULT_RETRY_BUDGET_MIN_PER_SECOND,
        }
    }
}

/// `retry_on` of a route: which failures after the request was sent are
/// retried (idempotent methods only, on another backend). Connect
/// failures are always retried.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct RetryOn {
    pub statuses: Vec<u16>,
    pub reset: bool,
    pub timeout: bool,
}

/// How the gateway speaks TLS to a pool's backends.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// SNI and the name the certificate must carry; `None`: no SNI, and the
    /// certificate is checked against the chain only when `verify`.
    pub sni: Option<String>,
    /// CA bundle (PEM) to verify against; `None` = the system roots.
    pub ca_file: Option<FileRef>,
    /// Verify the backend's certificate (chain and name). Off only by an
    /// explicit `verify = false`, which is logged.
    pub verify: bool,
    /// Client certificate and key (PEM) for mutual TLS to the backend.
    pub client_cert: Option<(FileRef, FileRef)>,
    /// Speak HTTP/2 (ALPN h2) instead of HTTP/1.1.
    pub h2: bool,
}

#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendConfig {
    pub address: SocketAddr,
    pub weight: u32,
}

#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Weighted round robin.
    RoundRobin,
    /// Weighted random.
    Random,
    /// Power of two choices over in-flight request counts.
    LeastRequests,
    /// Ketama consistent hashing over the given key.
    ConsistentHash(HashKey),
}

#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HashKey {
    /// Value of a request header (lower-case name).
    Header(String),
    /// Value of a cookie.
    Cookie(String),
    /// The client's IP address.
    ClientIp,
    /// The request path (without query).
    Path,
}

/// Upstream timeouts. `None` means "not set here" on a route (inherit the
/// pool's); pools always have every field resolved except `total`.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct TimeoutsConfig {
    #[serde(with = "humantime_serde")]
    pub connect: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub read: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub write: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub idle: Option<Duration>,
    /// Deadline for the whole request, across retries.
    #[serde(with = "humantime_serde")]
    pub total: Option<Duration>,
}

impl TimeoutsConfig {
    /// Fields set in `self` win; the rest come from `base`.
    pub fn overlay(&self, base: &TimeoutsConfig) -> TimeoutsConfig {
        TimeoutsConfig {
            connect: self.connect.or(base.connect),
            read: self.read.or(base.read),
            write: self.write.or(base.write),
            idle: self.idle.or(base.idle),
            total: self.total.or(base.total),
        }
    }
}

#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub kind: HealthCheckKind,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheckKind {
    Tcp,
    Http {
        path: String,
        /// `Host` header sent with the probe; defaults to the backend address.
        host: Option<String>,
        /// Inclusive range of statuses counted as healthy.
        expected_status: (u16, u16),
    },
    /// `grpc.health.v1.Health/Check` over HTTP/2; healthy when SERVING.
    Grpc {
        /// The service asked about; empty: the server as a whole.
        service: String,
    },
}

#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct RouteConfig {
    pub id: String,
    /// Labels that consumer scopes and limits can name.
    pub tags: Vec<String>,
    pub auth: RouteAuth,
    pub rate_limits: Vec<RouteLimit>,
    /// Host patterns; empty = any host.
    pub hosts: Vec<HostPattern>,
    pub path: PathMatch,
    /// Upper-case methods; empty = any method.
    pub methods: Vec<String>,
    /// `pool = "NAME"`, or a `[[routes.split]]` between pools.
    pub upstream: RouteUpstream,
    /// Remove the matched prefix before forwarding (`/v1/x` → `/x`).
    pub strip_prefix: bool,
    /// Replace the matched prefix with this one (`/v1/x` → `/api/x`).
    pub rewrite_prefix: Option<String>,
    pub request_headers: HeaderRules,
    pub response_headers: HeaderRules,
    /// Per-route overrides of the pool's timeouts.
    pub timeouts: TimeoutsConfig,
    /// Deprecation and sunset of the route (API version lifecycle).
    pub lifecycle: Lifecycle,
    /// Response caching; `None` when the route does not cache.
    pub cache: Option<RouteCache>,
    /// Failures after the request was sent that are retried.
    pub retry_on: RetryOn,
    /// Largest request body in bytes; `None`: no limit.
    pub max_body_size: Option<u64>,
    /// `[routes.ip]`: client addresses refused (403) before anything else.
    pub ip: Option<IpRules>,
    /// `[routes.cors]`: what browsers may do across origins.
    pub cors: Option<CorsConfig>,
    /// `[routes.mirror]`: shadow traffic to another pool.
    pub mirror: Option<MirrorConfig>,
    /// `[routes.compression]`: responses compressed on the way out.
    pub compression: Option<CompressionConfig>,
}

/// A content coding the gateway compresses with.
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Coding {
    Zstd,
    Br,
    Gzip,
}

impl Coding {
    pub const ALL: [Coding; 3] = [Coding::Zstd, Coding::Br, Coding::Gzip];

    /// The name in `Accept-Encoding` and `Content-Encoding`.
    pub fn as_str(self) -> &'static str {
        match self {
            Coding::Zstd => "zstd",
            Coding::Br => "br",
            Coding::Gzip => "gzip",
        }
    }

    /// Levels the encoder takes.
    pub fn levels(self) -> std::ops::RangeInclusive<u32> {
        match self {
            Coding::Zstd => 1..=19,
            Coding::Br => 1..=11,
            Coding::Gzip => 1..=9,
        }
    }

    /// The level used when the config names none: fast settings that
    /// still compress JSON several times (zlib's own default for gzip).
    pub fn default_level(self) -> u32 {
        match self {
            Coding::Zstd => 3,
            Coding::Br => 4,
            Coding::Gzip => 6,
        }
    }
}

/// `[routes.compression]`, validated.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct CompressionConfig {
    /// The gateway's preference, first best; each with its level.
    pub algorithms: Vec<(Coding, u32)>,
    /// Bodies whose `Content-Length` is below this are not compressed.
    pub min_size: u64,
    /// Lower-case `type/subtype` or `type/*`.
    pub types: Vec<String>,
}

/// Default `[routes.compression] min_size`: 1 KiB.
pub const DEFAULT_COMPRESSION_MIN_SIZE: u64 = 1 << 10;
/// Default `[routes.compression] types`.
pub const DEFAULT_COMPRESSION_TYPES: &[&str] = &[
    "application/json",
    "application/problem+json",
    "application/xml",
    "application/javascript",
    "image/svg+xml",
    "text/*",
];

/// `[routes.mirror]`, validated.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct MirrorConfig {
    pub pool: String,
    /// Percent of the forwarded requests copied.
    pub percent: u8,
    pub include_body: bool,
    /// Bodies larger than this are not copied.
    pub max_body_size: u64,
    /// Copies in flight at once; beyond, a copy is dropped and counted.
    pub max_in_flight: u32,
}

/// Default `[routes.mirror] max_body_size`: 64 KiB.
pub const DEFAULT_MIRROR_MAX_BODY_SIZE: u64 = 64 << 10;
/// Default `[routes.mirror] max_in_flight`.
pub const DEFAULT_MIRROR_MAX_IN_FLIGHT: u32 = 100;

/// Where a route sends its requests.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RouteUpstream {
    /// `pool = "NAME"`.
    Pool(String),
    /// `[[routes.split]]`: a share of the requests to each pool.
    Split(SplitConfig),
}

impl RouteUpstream {
    /// The pools the route may send to, in the order written.
    pub fn pools(&self) -> Vec<&str> {
        match self {
            RouteUpstream::Pool(p) => vec![p.as_str()],
            RouteUpstream::Split(s) => s.sides.iter().map(|side| side.pool.as_str()).collect(),
        }
    }
}

/// `[[routes.split]]`, validated: weights add up to 100, each pool once.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct SplitConfig {
    pub sides: Vec<SplitSide>,
    /// Keeps a client on the side it was first given.
    pub sticky: Option<Sticky>,
}

/// One `[[routes.split]]` entry.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct SplitSide {
    pub pool: String,
    /// Percent of the requests that match no side's `match`.
    pub weight: u8,
    /// `match = { header = { NAME = VALUE } }`: requests carrying every
    /// one of these (lower-case name, exact value) go to this side.
    #[serde(rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub match_headers: Vec<(String, String)>,
}

/// `sticky = { cookie = NAME }` or `{ header = NAME }`.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Sticky {
    /// The gateway sets the cookie on the first response.
    Cookie(String),
    /// The client's value (say, a user id) is hashed; lower-case.
    Header(String),
}

/// `[routes.cors]`, validated: origins lower-case (`*`, exact, or
/// `scheme://*.domain[:port]`), methods upper-case, header names
/// lower-case.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct CorsConfig {
    pub allow_origins: Vec<String>,
    /// `None`: the route's `methods` (any, when it has none).
    pub allow_methods: Option<Vec<String>>,
    /// `["*"]`: any requested header.
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub allow_credentials: bool,
    #[serde(with = "humantime_serde")]
    pub max_age: Option<Duration>,
}

impl RouteConfig {
    /// A route with only what the router reads set (everything else the
    /// default, pool `pool`): for the router's tests and its fuzz target.
    pub fn matching(
        id: String,
        hosts: Vec<HostPattern>,
        path: PathMatch,
        methods: Vec<String>,
    ) -> RouteConfig {
        RouteConfig {
            id,
            tags: vec![],
            auth: RouteAuth::None,
            rate_limits: vec![],
            hosts,
            path,
            methods,
            upstream: RouteUpstream::Pool("pool".into()),
            strip_prefix: false,
            rewrite_prefix: None,
            request_headers: HeaderRules::default(),
            response_headers: HeaderRules::default(),
            timeouts: TimeoutsConfig::default(),
            lifecycle: Lifecycle::default(),
            cache: None,
            retry_on: RetryOn::default(),
            max_body_size: None,
            ip: None,
            cors: None,
            mirror: None,
            compression: None,
        }
    }
}

/// `[cache]`: the store every caching route shares.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// Bytes of all cached objects together (keys, headers and bodies).
    pub max_size: u64,
    /// `[cache.shared]`: the second tier in Redis; read at start-up.
    pub shared: Option<SharedCacheConfig>,
}

/// `[cache.shared] kind = "redis"`.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct SharedCacheConfig {
    /// As written (or `[limit_store]`'s), with no password in it.
    pub url: String,
    pub password: Option<SecretSource>,
    pub ca_file: Option<std::path::PathBuf>,
    pub key_prefix: String,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Bodies larger than this are kept in the local tier only.
    pub max_object_size: u64,
}

/// Default `[cache.shared] max_object_size`: 256 KiB.
pub const DEFAULT_SHARED_MAX_OBJECT_SIZE: u64 = 256 << 10;

/// Default `[cache] max_size`: 256 MiB.
pub const DEFAULT_CACHE_MAX_SIZE: u64 = 256 << 20;
/// Default `max_object_size` of a route's cache: 8 MiB.
pub const DEFAULT_CACHE_MAX_OBJECT_SIZE: u64 = 8 << 20;

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            max_size: DEFAULT_CACHE_MAX_SIZE,
            shared: None,
        }
    }
}

/// `[routes.cache]` of a route that caches.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteCache {
    /// Freshness of responses that carry none (no `max-age`, `s-maxage` or
    /// `Expires`); `None`: store only what the origin marks fresh.
    #[serde(with = "humantime_serde")]
    pub ttl: Option<Duration>,
    /// Bodies larger than this pass through uncached.
    pub max_object_size: u64,
    /// Serve a stale object while one request refreshes it, for this long
    /// past its freshness (unless the response says otherwise).
    #[serde(with = "humantime_serde")]
    pub stale_while_revalidate: Duration,
    /// Serve a stale object when the backend fails, for this long past its
    /// freshness (unless the response says otherwise).
    #[serde(with = "humantime_serde")]
    pub stale_if_error: Duration,
    /// On `auth = "api_key"` routes: one entry for all consumers instead
    /// of one per consumer.
    pub shared: bool,
    pub key: CacheKeySpec,
    /// Follow `CDN-Cache-Control` (RFC 9213) over `Cache-Control` for the
    /// gateway's own storage.
    pub cdn_cache_control: bool,
    /// A field targeted at this gateway alone (lower case, e.g.
    /// `portcullis-cache-control`), followed over both.
    pub targeted_cache_control: Option<String>,
}

/// What of the request, beyond route, method, host and path, makes the key.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct CacheKeySpec {
    pub query: QueryKey,
    /// Lower-case request header names whose values are part of the key.
    pub headers: Vec<String>,
}

/// How the query string enters the key.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum QueryKey {
    /// The query string as sent.
    #[default]
    All,
    /// Parameters sorted by name (then value): `?b=1&a=2` = `?a=2&b=1`.
    Sorted,
    /// Only these parameters, sorted; the rest are left out of the key.
    Only(Vec<String>),
}

/// When a route is deprecated and goes away (Unix seconds).
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct Lifecycle {
    /// `Deprecation` (RFC 9745).
    pub deprecation: Option<i64>,
    /// `Sunset` (RFC 8594); not earlier than `deprecation`.
    pub sunset: Option<i64>,
    /// `Link: <URL>; rel="deprecation"`.
    pub link: Option<String>,
    /// From the sunset on, answer `410 Gone` instead of forwarding.
    pub gone_after_sunset: bool,
}

impl Lifecycle {
    pub fn is_empty(&self) -> bool {
        self == &Lifecycle::default()
    }
}

#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum HostPattern {
    /// Lower-case exact host name (no port).
    Exact(String),
    /// `*.example.com`: stored as the lower-case suffix `.example.com`.
    /// Matches one or more labels in front of it, not the apex.
    Wildcard(String),
}

#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum PathMatch {
    Exact(String),
    /// Matches the prefix itself and anything below it on a segment
    /// boundary: `/v1` matches `/v1`, `/v1/`, `/v1/x`, not `/v10`.
    Prefix(String),
}

impl PathMatch {
    pub fn as_str(&self) -> &str {
        match self {
            PathMatch::Exact(p) | PathMatch::Prefix(p) => p,
        }
    }
}

/// Header edits: `remove` is applied first, then `set` (which replaces any
/// existing value).
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderRules {
    /// (lower-case name, value)
    pub set: Vec<(String, String)>,
    /// lower-case names
    pub remove: Vec<String>,
}

impl HeaderRules {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }
}

// ---- API keys, consumers, limits ---------------------------------------

/// Default request header carrying the authenticated consumer's id upstream.
pub const DEFAULT_CONSUMER_HEADER: &str = "x-consumer-id";
/// Default `realm` of `WWW-Authenticate` challenges.
pub const DEFAULT_REALM: &str = "api";
/// Default request header an API key is read from.
pub const DEFAULT_KEY_HEADER: &str = "x-api-key";
/// Default rate of failed key attempts allowed per client IP: 10 a minute…
pub const DEFAULT_FAILED_ATTEMPTS_RATE: &str = "10/m";
/// …with up to this many at once.
pub const DEFAULT_FAILED_ATTEMPTS_BURST: u32 = 10;

/// `[auth]`: shared by every route with `auth = "api_key"`.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct AuthSettings {
    /// Lower-case header name; always stripped from client requests.
    pub consumer_header: String,
    pub realm: String,
    /// Failed key attempts allowed per client IP; beyond it, key-protected
    /// routes answer 429 to that IP. `None`: no damping.
    pub failed_attempts: Option<crate::ratelimit::Bucket>,
}

/// Who may call a route.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RouteAuth {
    None,
    ApiKey(KeySource),
    Jwt(RouteJwt),
    /// Either: a presented token that is a JWT goes to the issuers, any
    /// other to the consumers' keys.
    ApiKeyOrJwt(KeySource, RouteJwt),
}

impl RouteAuth {
    /// Where API keys are read, when the route takes them.
    pub fn api_key(&self) -> Option<&KeySource> {
        match self {
            RouteAuth::ApiKey(s) | RouteAuth::ApiKeyOrJwt(s, _) => Some(s),
            _ => None,
        }
    }

    /// How bearer tokens are taken, when the route takes them.
    pub fn jwt(&self) -> Option<&RouteJwt> {
        match self {
            RouteAuth::Jwt(j) | RouteAuth::ApiKeyOrJwt(_, j) => Some(j),
            _ => None,
        }
    }
}

/// Where a route reads the API key from.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KeySource {
    /// A request header (lower-case name).
    Header(String),
    /// `Authorization: Bearer KEY`.
    Bearer,
    /// A query parameter, removed from the URL sent upstream.
    Query(String),
}

/// A route's own rate limit.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct RouteLimit {
    pub bucket: crate::ratelimit::Bucket,
    pub per: LimitPer,
    /// Its own `accuracy`, else `[limit_store] accuracy`.
    pub accuracy: crate::ratelimit::Accuracy,
}

// ---- The limit store --------------------------------------------------

/// Default `[limit_store] timeout`.
pub const DEFAULT_LIMIT_STORE_TIMEOUT: Duration = Duration::from_millis(20);
/// Default `[limit_store] sync_interval`.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_millis(100);
/// Default `[limit_store] key_prefix`.
pub const DEFAULT_KEY_PREFIX: &str = "portcullis:";

/// `[limit_store]`
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LimitStoreSettings {
    /// Counters per instance, in memory (the default).
    #[default]
    Local,
    /// Counters shared by every instance through Redis.
    Redis(RedisStoreConfig),
}

/// `[limit_store] kind = "redis"`.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct RedisStoreConfig {
    /// As written, with no password in it.
    pub url: String,
    pub password: Option<SecretSource>,
    pub ca_file: Option<std::path::PathBuf>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub on_error: OnStoreError,
    pub instances: u32,
    /// Default accuracy of rate limits (already applied to every limit).
    pub accuracy: crate::ratelimit::Accuracy,
    #[serde(with = "humantime_serde")]
    pub sync_interval: Duration,
    pub key_prefix: String,
}

/// Where a secret is read from: never the config itself.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SecretSource {
    /// The first line of a file.
    File(std::path::PathBuf),
    /// An environment variable of the gateway's process.
    Env(String),
}

/// What limits do while the shared store cannot be reached.
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnStoreError {
    /// Per-instance counters, each limit divided by `instances`.
    Local,
    /// Every request passes its limits.
    Allow,
    /// Requests with limits are refused (503).
    Deny,
}

/// Whose requests a route limit counts together.
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LimitPer {
    /// All callers of the route together.
    Route,
    /// Each consumer apart (key-protected routes only).
    Consumer,
    /// Each client IP address apart.
    ClientIp,
}

/// An API consumer: who holds keys and what they may call, how much.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct Consumer {
    pub id: String,
    pub name: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// A disabled consumer's keys are all refused (401).
    pub disabled: bool,
    pub keys: Vec<ApiKey>,
    /// Granted when any entry grants; an empty list grants nothing.
    pub scopes: Vec<Scope>,
    pub rate_limits: Vec<ConsumerLimit>,
    pub quotas: Vec<crate::ratelimit::Quota>,
    /// `file:line` of the entry, for messages.
    pub defined_at: String,
}

/// One key of a consumer, as its SHA-256 digest.
#[derive(serde::Serialize, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Never shown: not in the admin API, logs or debug output.
    #[serde(skip)]
    pub digest: [u8; 32],
    /// Non-secret prefix naming the key in logs and the admin API.
    pub prefix: String,
    /// Unix seconds; the key is refused before this instant.
    pub not_before: Option<i64>,
    /// Unix seconds; the key is refused from this instant on.
    pub expires: Option<i64>,
}

impl std::fmt::Debug for ApiKey {
    // Digests stay out of debug output (and so out of any log line).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("prefix", &self.prefix)
            .field("not_before", &self.not_before)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// Routes a consumer may call, and with which methods.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope {
    /// Route ids; `"*"` is every route.
    pub routes: Vec<String>,
    pub tags: Vec<String>,
    /// Upper-case; empty is any method.
    pub methods: Vec<String>,
}

/// A consumer's rate limit: across all its calls, or on the listed routes
/// (and routes with the listed tags), each counted apart.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct ConsumerLimit {
    pub bucket: crate::ratelimit::Bucket,
    pub routes: Vec<String>,
    pub tags: Vec<String>,
    /// Its own `accuracy`, else `[limit_store] accuracy`.
    pub accuracy: crate::ratelimit::Accuracy,
}

// ---- Bearer tokens (JWT / OpenID Connect) -------------------------------

/// Default `refresh` of a key set fetched from a URL.
pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(600);
/// Default `min_refresh_interval`.
pub const DEFAULT_JWKS_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// Default `leeway`: clock skew allowed on `exp`, `nbf` and `iat`.
pub const DEFAULT_JWT_LEEWAY: Duration = Duration::from_secs(30);
/// Default `consumer_claim`.
pub const DEFAULT_CONSUMER_CLAIM: &str = "sub";
/// Default `scopes_claim`.
pub const DEFAULT_SCOPES_CLAIM: &str = "scope";

/// One `[[jwt_issuers]]` entry: an identity provider whose tokens routes
/// with `auth = "jwt"` accept.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct JwtIssuer {
    pub id: String,
    /// Must equal the token's `iss`.
    pub issuer: String,
    /// The token's `aud` must contain one of them (never empty).
    pub audiences: Vec<String>,
    pub keys: JwksSource,
    /// How often a URL key set is fetched again.
    pub refresh: Duration,
    /// The soonest a URL key set is fetched again after the last fetch,
    /// when a token names a key it does not have.
    pub min_refresh_interval: Duration,
    /// Allowed signature algorithms (asymmetric only).
    pub algorithms: Vec<crate::jwt::Alg>,
    pub leeway: Duration,
    pub consumer_claim: String,
    pub scopes_claim: String,
    /// Limits each of the issuer's consumers has, as a `[[consumers]]`
    /// entry's `rate_limits`, each subject counted apart.
    pub rate_limits: Vec<ConsumerLimit>,
    /// Quotas of each of the issuer's consumers.
    pub quotas: Vec<crate::ratelimit::Quota>,
    /// Where the entry is, for messages.
    #[serde(skip)]
    pub at: Pos,
}

/// Where an issuer's JSON Web Key Set comes from.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum JwksSource {
    /// A local file, re-read on reload and when it changes.
    File(FileRef),
    /// Fetched from this URL, and again every `refresh`.
    Url(String),
    /// The `jwks_uri` of this OpenID Connect discovery document.
    Discovery(String),
}

/// How a route with `auth = "jwt"` (or `"api_key_or_jwt"`) takes tokens.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct RouteJwt {
    /// Issuer ids accepted; empty: every issuer.
    pub issuers: Vec<String>,
    pub token_from: TokenSource,
    /// Scopes every request needs, and more per method.
    pub required_scopes: RequiredScopes,
    /// Header (lower-case) ← claim, set on the forwarded request.
    pub forward_claims: Vec<(String, String)>,
    /// Forward the token to the backend (it is removed otherwise).
    pub keep_token: bool,
}

/// Where a route reads bearer tokens from.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// `Authorization: Bearer TOKEN`.
    Bearer,
    /// A request header (lower-case name) holding the token alone.
    Header(String),
    /// A cookie.
    Cookie(String),
}

/// The scopes a route's requests need: all of `all`, and all of the
/// entry for the request's method.
#[derive(serde::Serialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct RequiredScopes {
    pub all: Vec<String>,
    pub by_method: BTreeMap<String, Vec<String>>,
}

impl RequiredScopes {
    /// The scopes a `method` request needs.
    pub fn for_method<'a>(&'a self, method: &str) -> impl Iterator<Item = &'a String> {
        self.all
            .iter()
            .chain(self.by_method.get(method).into_iter().flatten())
    }
}
