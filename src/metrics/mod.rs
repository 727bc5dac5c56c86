//! Prometheus metrics, served by the admin API at `/metrics`.
//!
//! Labels are bounded by the config (route ids, limit names, listener
//! addresses, certificate names), never by what clients send: no consumer,
//! key, path or client address is ever a label.

pub mod cache;
pub mod jwt;
pub mod limit_store;
mod process;
mod requests;
mod status;
mod upstream;

use prometheus::{
    Encoder, Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub use requests::{
    method_index, RequestFamilies, RouteMetrics, RouteMetricsTable, DURATION_BUCKETS, METHODS,
};
pub use upstream::{
    BackendMetrics, BreakerState, FailureReason, PoolMetrics, RefusalReason, RetryReason,
    UpstreamFamilies, TTFB_BUCKETS,
};

/// The `reason`s of `portcullis_downstream_refused_total`.
pub const DOWNSTREAM_REFUSALS: [&str; 7] = [
    "header_timeout",
    "bad_head",
    "max_connections",
    "handshake_timeout",
    "handshake_failed",
    "proxy_protocol",
    "ip_denied",
];

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    reloads: IntCounterVec,
    auth_rejections: IntCounterVec,
    rate_limited: IntCounterVec,
    cors: IntCounterVec,
    split: IntCounterVec,
    mirror: IntCounterVec,
    compressed: IntCounterVec,
    compression_bytes: IntCounterVec,
    access_log_dropped: IntCounter,
    certificate_not_after: IntGaugeVec,
    requests: RequestFamilies,
    last_reload: Gauge,
    config_hash: Gauge,
    backend_up: IntGaugeVec,
    backend_inflight: IntGaugeVec,
    upstream: UpstreamFamilies,
    open_connections: IntGaugeVec,
    downstream_refused: IntCounterVec,
    proxy_tasks: IntGauge,
    /// The proxy service's runtime, noted by its first connection.
    proxy_runtime: std::sync::OnceLock<tokio::runtime::Handle>,
    last_reload_ok: IntGauge,
    restart_required: IntGaugeVec,
    cache: cache::CacheFamilies,
    jwt: jwt::JwtFamilies,
    limit_store: limit_store::LimitStoreFamilies,
}

/// What [`Metrics::render`] reads from the gateway at scrape time.
pub struct ScrapeState {
    /// (listener address, certificate names, not-after Unix seconds)
    pub certificates: Vec<(String, Vec<String>, i64)>,
    /// Access-log lines dropped so far.
    pub access_log_dropped: u64,
    /// Every backend of the config now serving: (pool, address, healthy,
    /// requests in flight).
    pub backends: Vec<(String, String, bool, usize)>,
}

impl Metrics {
    pub fn new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let reloads = IntCounterVec::new(
            Opts::new(
                "portcullis_config_reloads_total",
                "Config reloads by result (ok or failed; a failed reload keeps the previous config).",
            ),
            &["result"],
        )?;
        let auth_rejections = IntCounterVec::new(
            Opts::new(
                "portcullis_auth_rejections_total",
                "Requests refused by API-key authentication, by route and reason.",
            ),
            &["route", "reason"],
        )?;
        let cors = IntCounterVec::new(
            Opts::new(
                "portcullis_cors_requests_total",
                "Requests with an Origin on routes with a CORS policy, by route and result: preflight (answered 204), preflight_refused (403), allowed, origin_refused (served without CORS fields).",
            ),
            &["route", "result"],
        )?;
        let split = IntCounterVec::new(
            Opts::new(
                "portcullis_split_requests_total",
                "Requests a traffic split ([[routes.split]]) sent on, by route, the side's pool and why: match (a side's match headers), sticky (the client's cookie or header), weight (a draw by the weights).",
            ),
            &["route", "pool", "by"],
        )?;
        let mirror = IntCounterVec::new(
            Opts::new(
                "portcullis_mirror_requests_total",
                "Copies of requests for a route's [routes.mirror], by route and result: 2xx, 3xx, 4xx, 5xx (the shadow's answer, discarded), failed (no answer), dropped (max_in_flight copies outstanding), too_large (body over max_body_size).",
            ),
            &["route", "result"],
        )?;
        let compressed = IntCounterVec::new(
            Opts::new(
                "portcullis_compressed_responses_total",
                "Responses compressed by a route's [routes.compression], by route and coding (zstd, br, gzip).",
            ),
            &["route", "coding"],
        )?;
        let compression_bytes = IntCounterVec::new(
            Opts::new(
                "portcullis_compression_bytes_total",
                "Body bytes of compressed responses, by route, coding and stage: in (as the origin or the cache gave them), out (as sent).",
            ),
            &["route", "coding", "stage"],
        )?;
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "portcullis_rate_limited_total",
                "Requests refused with 429 by a rate limit or quota, by route and limit.",
            ),
            &["route", "limit"],
        )?;
        let access_log_dropped = IntCounter::new(
            "portcullis_access_log_dropped_total",
            "Access-log lines dropped because the writer fell behind or could not write them (disk full).",
        )?;
        let certificate_not_after = IntGaugeVec::new(
            Opts::new(
                "portcullis_tls_certificate_not_after_seconds",
                "Expiry (Unix time) of each certificate a TLS listener serves, per name it serves.",
            ),
            &["listener", "name"],
        )?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(auth_rejections.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        registry.register(Box::new(cors.clone()))?;
        registry.register(Box::new(split.clone()))?;
        registry.register(Box::new(mirror.clone()))?;
        registry.register(Box::new(compressed.clone()))?;
        registry.register(Box::new(compression_bytes.clone()))?;
        registry.register(Box::new(access_log_dropped.clone()))?;
        registry.register(Box::new(certificate_not_after.clone()))?;
        let requests = RequestFamilies::new()?;
        requests.register(&registry)?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "portcullis_build_info",
                "Always 1; the version and git revision of the running binary.",
            ),
            &["version", "revision"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), env!("PORTCULLIS_REVISION")])
            .set(1);
        registry.register(Box::new(build_info))?;
        let last_reload = Gauge::new(
            "portcullis_config_last_reload_success_timestamp_seconds",
            "When the config now serving was loaded (start-up or the last successful reload), Unix time.",
        )?;
        let config_hash = Gauge::new(
            "portcullis_config_hash",
            "A 48-bit hash of the config files now serving (main file, consumer files, TLS files): it changes when a reload applies a change.",
        )?;
        let backend_up = IntGaugeVec::new(
            Opts::new(
                "portcullis_upstream_backend_up",
                "1 while a backend takes traffic (health checks pass, or it has none), 0 while it is out.",
            ),
            &["pool", "backend"],
        )?;
        let backend_inflight = IntGaugeVec::new(
            Opts::new(
                "portcullis_upstream_backend_inflight_requests",
                "Requests this process has in flight to a backend.",
            ),
            &["pool", "backend"],
        )?;
        let open_connections = IntGaugeVec::new(
            Opts::new(
                "portcullis_downstream_open_connections",
                "Client connections open now, by listener, from accept (TLS handshakes in progress and idle keep-alive connections included).",
            ),
            &["listener"],
        )?;
        registry.register(Box::new(open_connections.clone()))?;
        let downstream_refused = IntCounterVec::new(
            Opts::new(
                "portcullis_downstream_refused_total",
                "Client connections refused before any request was read: header_timeout (408, or an HTTP/2 connection closed), bad_head (a request head the HTTP parser refused, 400), max_connections (closed at accept), handshake_timeout (TLS or PROXY protocol handshake not done within handshake_timeout), handshake_failed (TLS handshake refused), proxy_protocol (no valid PROXY protocol header, or one from a peer not in trusted_proxies), ip_denied (a peer [listeners.ip] refuses).",
            ),
            &["reason"],
        )?;
        for reason in DOWNSTREAM_REFUSALS {
            downstream_refused.with_label_values(&[reason]);
        }
        registry.register(Box::new(downstream_refused.clone()))?;
        let proxy_tasks = IntGauge::new(
            "portcullis_proxy_alive_tasks",
            "Tasks alive in the proxy's runtime (one per open client connection and per pooled upstream connection, plus those serving requests): back to its level after a burst, or tasks leak.",
        )?;
        registry.register(Box::new(proxy_tasks.clone()))?;
        let last_reload_ok = IntGauge::new(
            "portcullis_config_last_reload_successful",
            "1 when the last reload attempt (or start-up) succeeded, 0 when it failed and the previous config keeps serving.",
        )?;
        last_reload_ok.set(1);
        registry.register(Box::new(last_reload_ok.clone()))?;
        let restart_required = IntGaugeVec::new(
            Opts::new(
                "portcullis_restart_required",
                "1 while the config file changes a setting read at start-up only (reason: listeners, admin.address, server.threads, server.grace_period, server.upstream_keepalive, server.watch_config, access_log.enabled) and the running value still applies; 0 once the file matches what runs.",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(restart_required.clone()))?;
        let upstream = UpstreamFamilies::new()?;
        upstream.register(&registry)?;
        let cache = cache::CacheFamilies::new()?;
        cache.register(&registry)?;
        let jwt = jwt::JwtFamilies::new()?;
        jwt.register(&registry)?;
        let limit_store = limit_store::LimitStoreFamilies::new()?;
        limit_store.register(&registry)?;
        registry.register(Box::new(backend_up.clone()))?;
        registry.register(Box::new(backend_inflight.clone()))?;
        registry.register(Box::new(last_reload.clone()))?;
        registry.register(Box::new(config_hash.clone()))?;
        // CPU, memory, open file descriptors, start time of this process.
        registry.register(Box::new(process::ProcessMetrics::new("portcullis")))?;
        for result in ["ok", "failed"] {
            reloads.with_label_values(&[result]);
        }
        Ok(Metrics {
            registry,
            reloads,
            auth_rejections,
            rate_limited,
            cors,
            split,
            mirror,
            compressed,
            compression_bytes,
            access_log_dropped,
            certificate_not_after,
            requests,
            last_reload,
            config_hash,
            backend_up,
            backend_inflight,
            upstream,
            open_connections,
            downstream_refused,
            proxy_tasks,
            proxy_runtime: std::sync::OnceLock::new(),
            last_reload_ok,
            restart_required,
            cache,
            jwt,
            limit_store,
        })
    }

    /// The bearer-token families.
    pub fn jwt(&self) -> &jwt::JwtFamilies {
        &self.jwt
    }

    pub fn limit_store(&self) -> &limit_store::LimitStoreFamilies {
        &self.limit_store
    }

    /// The response cache's families.
    pub fn cache(&self) -> &cache::CacheFamilies {
        &self.cache
    }

    /// The request metric families, for the per-route handle table.
    pub fn requests(&self) -> &RequestFamilies {
        &self.requests
    }

    /// The upstream metric families, for the pool and backend states.
    pub fn upstream(&self) -> &UpstreamFamilies {
        &self.upstream
    }

    /// The open-connections gauge of the listener bound at `listener`.
    pub fn open_connections(&self, listener: &str) -> prometheus::IntGauge {
        self.open_connections.with_label_values(&[listener])
    }

    /// The counter of client connections refused for `reason` (one of
    /// [`DOWNSTREAM_REFUSALS`]).
    pub fn downstream_refused(&self, reason: &str) -> IntCounter {
        self.downstream_refused.with_label_values(&[reason])
    }

    /// Called on the proxy's runtime: its alive tasks are exported.
    pub fn note_proxy_runtime(&self) {
        if self.proxy_runtime.get().is_none() {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let _ = self.proxy_runtime.set(handle);
            }
        }
    }

    /// A config was loaded and now serves (start-up or reload); `hash`
    /// identifies its files.
    pub fn config_loaded(&self, hash: u64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_reload.set(now);
        // 48 bits: exact as an f64.
        self.config_hash.set((hash & 0xffff_ffff_ffff) as f64);
    }

    pub fn reload(&self, ok: bool) {
        self.last_reload_ok.set(i64::from(ok));
        self.reloads
            .with_label_values(&[if ok { "ok" } else { "failed" }])
            .inc();
    }

    /// Of every restart reason in `reasons`, those in `pending` are 1.
    pub fn restart_required(&self, reasons: &[&str], pending: &[&str]) {
        for reason in reasons {
            self.restart_required
                .with_label_values(&[reason])
                .set(i64::from(pending.contains(reason)));
        }
    }

    /// Export the refusal counters of the routes of a committed config at
    /// zero: for each route, `auth` reasons of `portcullis_auth_rejections_total`
    /// and `limits` labels of `portcullis_rate_limited_total`. Every other
    /// series of the two families goes (a route that left, a limit no plan
    /// has any more), but those of requests that matched no route.
    pub fn route_refusals<'a>(
        &self,
        routes: impl IntoIterator<Item = (&'a str, Vec<&'static str>, Vec<&'static str>)>,
    ) {
        let mut auth = std::collections::HashSet::new();
        let mut limited = std::collections::HashSet::new();
        for (route, reasons, limits) in routes {
            for reason in reasons {
                self.auth_rejections.with_label_values(&[route, reason]);
                auth.insert((route.to_string(), reason.to_string()));
            }
            for limit in limits {
                self.rate_limited.with_label_values(&[route, limit]);
                limited.insert((route.to_string(), limit.to_string()));
            }
        }
        remove_series_not_in(&self.auth_rejections, ["route", "reason"], &auth);
        remove_series_not_in(&self.rate_limited, ["route", "limit"], &limited);
    }

    pub fn auth_rejected(&self, route: &str, reason: &str) {
        self.auth_rejections
            .with_label_values(&[route, reason])
            .inc();
    }

    pub fn cors(&self, route: &str, result: &str) {
        self.cors.with_label_values(&[route, result]).inc();
    }

    pub fn split(&self, route: &str, pool: &str, by: &str) {
        self.split.with_label_values(&[route, pool, by]).inc();
    }

    pub fn mirror(&self, route: &str, result: &str) {
        self.mirror.with_label_values(&[route, result]).inc();
    }

    /// A response compressed with `coding`: `bytes_in` became `bytes_out`.
    pub fn compressed(&self, route: &str, coding: &str, bytes_in: usize, bytes_out: usize) {
        self.compressed.with_label_values(&[route, coding]).inc();
        self.compression_bytes
            .with_label_values(&[route, coding, "in"])
            .inc_by(bytes_in as u64);
        self.compression_bytes
            .with_label_values(&[route, coding, "out"])
            .inc_by(bytes_out as u64);
    }

    pub fn rate_limited(&self, route: &str, limit: &str) {
        self.rate_limited.with_label_values(&[route, limit]).inc();
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self, state: &ScrapeState) -> Vec<u8> {
        self.certificate_not_after.reset();
        for (listener, names, not_after) in &state.certificates {
            for name in names {
                self.certificate_not_after
                    .with_label_values(&[listener.as_str(), name.as_str()])
                    .set(*not_after);
            }
        }
        // Only the backends of the config now serving are exported.
        self.backend_up.reset();
        self.backend_inflight.reset();
        for (pool, backend, healthy, inflight) in &state.backends {
            let labels = [pool.as_str(), backend.as_str()];
            self.backend_up
                .with_label_values(&labels)
                .set(i64::from(*healthy));
            self.backend_inflight
                .with_label_values(&labels)
                .set(i64::try_from(*inflight).unwrap_or(i64::MAX));
        }
        if let Some(rt) = self.proxy_runtime.get() {
            self.proxy_tasks
                .set(i64::try_from(rt.metrics().num_alive_tasks()).unwrap_or(i64::MAX));
        }
        let seen = self.access_log_dropped.get();
        if state.access_log_dropped > seen {
            self.access_log_dropped
                .inc_by(state.access_log_dropped - seen);
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

/// Remove every series of `family` (labelled `names`, in the family's
/// order, `route` first) whose label pair is not in `kept`, but those of
/// requests that matched no route (`route=""`).
fn remove_series_not_in(
    family: &IntCounterVec,
    names: [&str; 2],
    kept: &std::collections::HashSet<(String, String)>,
) {
    use prometheus::core::Collector;
    for m in family.collect() {
        for metric in m.get_metric() {
            let value = |name: &str| {
                metric
                    .get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map(|l| l.value())
            };
            if let (Some(route), Some(other)) = (value(names[0]), value(names[1])) {
                if !route.is_empty() && !kept.contains(&(route.to_string(), other.to_string())) {
                    let _ = family.remove_label_values(&[route, other]);
                }
            }
        }
    }
}

/// `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
