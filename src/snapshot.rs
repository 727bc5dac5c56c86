//! The runtime view of one configuration: compiled router, built pools and
//! per-route policies with everything a request needs precomputed.
//!
//! A [`Snapshot`] is immutable. It is built off the request path, swapped in
//! atomically behind one `ArcSwap` (see [`crate::gateway`]), and every request
//! keeps the one it started with.

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use crate::auth::ConsumerIndex;
use crate::config::model::{self, Config, KeySource, TimeoutsConfig};
use crate::config::{ConfigError, ConfigErrors};
use crate::metrics::RouteMetrics;
use crate::plans::{self, PlannedLimit, RouteLimits};
use crate::policy::{HeaderOps, PathRewrite, RouteLifecycle, ViaEntries};
use crate::router::Router;
use crate::state::Tables;
use crate::upstream::{self, Pool};

/// A route with its pool resolved and its policies compiled.
#[derive(Debug)]
pub struct Route {
    pub id: String,
    /// The pools the route sends to: one, or the sides of its split (in
    /// the order written; never empty).
    pub sides: Box<[RouteSide]>,
    /// `[[routes.split]]`: which side takes a request.
    pub split: Option<Box<crate::policy::Split>>,
    pub rewrite: PathRewrite,
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
    /// `Some` on routes with `auth = "api_key"` or `"api_key_or_jwt"`.
    pub auth: Option<RouteKeyAuth>,
    /// `Some` on routes with `auth = "jwt"` or `"api_key_or_jwt"`.
    pub bearer: Option<crate::bearer::RouteBearer>,
    pub limits: RouteLimits,
    /// Request metric handles (long-lived, by route id).
    pub metrics: Arc<RouteMetrics>,
    /// Deprecation and sunset headers; `None` for most routes.
    pub lifecycle: Option<Box<RouteLifecycle>>,
    /// Response caching, when the route caches.
    pub cache: Option<Arc<crate::cache::RouteCaching>>,
    /// Failures after the request was sent that are retried.
    pub retry_on: model::RetryOn,
    /// Largest request body in bytes.
    pub max_body_size: Option<u64>,
    /// `[routes.ip]`: client addresses refused with 403.
    pub ip: Option<model::IpRules>,
    /// `[routes.cors]`, compiled.
    pub cors: Option<Arc<crate::policy::Cors>>,
    /// `[routes.mirror]`: where copies of a share of the requests go.
    pub mirror: Option<Box<RouteMirror>>,
    /// `[routes.compression]`, compiled.
    pub compression: Option<Arc<crate::policy::Compression>>,
}

/// `[routes.mirror]` at run time.
#[derive(Debug)]
pub struct RouteMirror {
    pub pool: Arc<Pool>,
    /// Requests copied, out of 10,000.
    pub share: u16,
    pub include_body: bool,
    pub max_body_size: u64,
    /// One permit per copy in flight; none left: the copy is dropped.
    /// New with each config (copies in flight finish under the old one).
    pub slots: Arc<tokio::sync::Semaphore>,
    /// `X-Portcullis-Mirror: ROUTE-ID` on every copy.
    pub marker: HeaderValue,
}

impl RouteMirror {
    /// Whether a request with the random draw `roll` is copied.
    pub fn samples(&self, roll: u16) -> bool {
        roll % crate::policy::split::BUCKETS < self.share
    }
}

/// A pool a route sends to.
#[derive(Debug)]
pub struct RouteSide {
    pub pool: Arc<Pool>,
    /// The pool's timeouts overlaid with the route's own.
    pub timeouts: TimeoutsConfig,
}

impl Route {
    /// Side `i` (a split's choice; 0 on a route with one pool). An index
    /// out of range is the first side.
    pub fn side(&self, i: usize) -> &RouteSide {
        // `sides` is never empty: `Snapshot::build` refuses such a route.
        self.sides.get(i).unwrap_or(&self.sides[0])
    }
}

/// How a key-protected route reads keys and answers without one.
#[derive(Debug)]
pub struct RouteKeyAuth {
    pub source: crate::auth::KeyPlace,
    /// `WWW-Authenticate` of a 401 for a missing key…
    pub challenge_missing: HeaderValue,
    /// …and for a key that is not valid.
    pub challenge_invalid: HeaderValue,
}

impl RouteKeyAuth {
    fn new(source: &KeySource, realm: &str) -> RouteKeyAuth {
        // RFC 6750 for bearer tokens; an `ApiKey` challenge naming where
        // the key goes otherwise.
        let (missing, invalid) = match source {
            KeySource::Bearer => (
                format!("Bearer realm=\"{realm}\""),
                format!("Bearer realm=\"{realm}\", error=\"invalid_token\""),
            ),
            KeySource::Header(name) => {
                let base = format!("ApiKey realm=\"{realm}\", header=\"{name}\"");
                (base.clone(), format!("{base}, error=\"invalid_key\""))
            }
            KeySource::Query(name) => {
                let base = format!("ApiKey realm=\"{realm}\", query=\"{name}\"");
                (base.clone(), format!("{base}, error=\"invalid_key\""))
            }
        };
        // Realm and names were validated as visible ASCII.
        let value =
            |s: String| HeaderValue::from_str(&s).unwrap_or(HeaderValue::from_static("ApiKey"));
        RouteKeyAuth {
            source: crate::auth::KeyPlace::from(source),
            challenge_missing: value(missing),
            challenge_invalid: value(invalid),
        }
    }
}

/// Everything a request needs, from one config load.
#[derive(Debug)]
pub struct Snapshot {
    pub config: Arc<Config>,
    pub router: Router,
    /// Aligned with the router's route indices.
    pub routes: Vec<Route>,
    pub pools: HashMap<String, Arc<Pool>>,
    /// Consumers and keys.
    pub consumers: ConsumerIndex,
    /// Issuers of bearer tokens, their key sets and the tokens verified.
    pub issuers: crate::bearer::Issuers,
    /// Carries the consumer id upstream; always stripped from clients.
    pub consumer_header: HeaderName,
    /// The header names the config makes the gateway's own, beside the
    /// fixed ones of `proxy/owned.rs`: the consumer header and every
    /// listener's client-subject header (and the default one). A client's
    /// copies are removed from every request on every listener.
    pub owned_headers: Vec<HeaderName>,
    /// The `Via` entry the gateway adds, per client HTTP version.
    pub via: ViaEntries,
    /// Brute-force damping of key routes, per client address.
    pub failed_attempts: Option<PlannedLimit>,
    /// Request metric handles of requests that match no route.
    pub unmatched_metrics: Arc<RouteMetrics>,
    /// The caching of some route, when any caches: its store takes the
    /// invalidations of unsafe methods on every route.
    pub cache: Option<Arc<crate::cache::RouteCaching>>,
    /// Digests of the TLS files the config names, for telling a changed
    /// certificate from an unchanged one.
    pub material: crate::material::Material,
    /// Identifies the files this snapshot was prepared from (main file,
    /// consumer files, TLS files).
    pub fingerprint: u64,
}

impl Snapshot {
    /// Build the runtime view of `config`, with the live state of every
    /// backend, route and consumer `tables` knows. Reads TLS files; changes
    /// nothing.
    ///
    /// Validation guarantees every route's pool exists; should that ever be
    /// broken, the build fails instead of misaligning route indices.
    pub fn build(
        config: Config,
        material: crate::material::Material,
        tables: &Tables,
    ) -> Result<Snapshot, ConfigErrors> {
        let route_metrics = &tables.route_metrics;
        use crate::clock::{Clock, SystemClock};
        let now = SystemClock.now_nanos();
        let pools =
            upstream::build_pools(&config, &tables.backends, now).map_err(|(pool, e)| {
                ConfigError {
                    file: config.source.clone(),
                    line: e.at.line,
                    column: e.at.column,
                    item: Some(format!("pool \"{pool}\"")),
                    message: e.message,
                }
            })?;
        let issuers =
            crate::bearer::Issuers::build(&config, &tables.bearer).map_err(ConfigErrors)?;
        let router = Router::build(&config.routes);
        let routes = config
            .routes
            .iter()
            .map(|r| {
                let sides = r
                    .upstream
                    .pools()
                    .into_iter()
                    .map(|name| {
                        let pool = pools.get(name).cloned().ok_or_else(|| {
                            ConfigError::whole_file(
                                &config.source,
                                format!("route \"{}\": pool \"{name}\" is not defined", r.id),
                            )
                        })?;
                        Ok(RouteSide {
                            timeouts: r.timeouts.overlay(&pool.config.timeouts),
                            pool,
                        })
                    })
                    .collect::<Result<Box<[RouteSide]>, ConfigError>>()?;
                if sides.is_empty() {
                    return Err(ConfigError::whole_file(
                        &config.source,
                        format!("route \"{}\" names no pool", r.id),
                    ));
                }
                let mirror = match &r.mirror {
                    None => None,
                    Some(m) => {
                        let pool = pools.get(&m.pool).cloned().ok_or_else(|| {
                            ConfigError::whole_file(
                                &config.source,
                                format!(
                                    "route \"{}\": mirror pool \"{}\" is not defined",
                                    r.id, m.pool
                                ),
                            )
                        })?;
                        Some(Box::new(RouteMirror {
                            pool,
                            share: u16::from(m.percent) * 100,
                            include_body: m.include_body,
                            max_body_size: m.max_body_size,
                            slots: Arc::new(tokio::sync::Semaphore::new(m.max_in_flight as usize)),
                            // Route ids are validated names.
                            marker: HeaderValue::from_str(&r.id)
                                .unwrap_or(HeaderValue::from_static("1")),
                        }))
                    }
                };
                let split = match &r.upstream {
                    model::RouteUpstream::Split(s) => {
                        Some(Box::new(crate::policy::Split::build(s)))
                    }
                    model::RouteUpstream::Pool(_) => None,
                };
                let rewrite = match (&r.rewrite_prefix, r.strip_prefix) {
                    (Some(p), _) => PathRewrite::Replace(p.clone()),
                    (None, true) => PathRewrite::Strip,
                    (None, false) => PathRewrite::None,
                };
                Ok(Route {
                    id: r.id.clone(),
                    sides,
                    split,
                    rewrite,
                    request_headers: HeaderOps::compile(&r.request_headers),
                    response_headers: HeaderOps::compile(&r.response_headers),
                    auth: r
                        .auth
                        .api_key()
                        .map(|source| RouteKeyAuth::new(source, &config.auth.realm)),
                    bearer: r
                        .auth
                        .jwt()
                        .map(|j| crate::bearer::RouteBearer::new(j, &issuers, &config.auth.realm)),
                    limits: RouteLimits::build(r),
                    metrics: route_metrics.for_route(&r.id),
                    lifecycle: RouteLifecycle::build(&r.lifecycle).map(Box::new),
                    cache: tables.cache.for_route(r, &config.cache),
                    retry_on: r.retry_on.clone(),
                    max_body_size: r.max_body_size,
                    ip: r.ip.clone(),
                    cors: r
                        .cors
                        .as_ref()
                        .map(|c| Arc::new(crate::policy::Cors::build(c, &r.methods))),
                    mirror,
                    compression: r
                        .compression
                        .as_ref()
                        .map(|c| Arc::new(crate::policy::Compression::build(c))),
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let consumers = ConsumerIndex::build(&config.consumers, &config.routes, &tables.usage);
        // Validated as a header name.
        let consumer_header = HeaderName::from_bytes(config.auth.consumer_header.as_bytes())
            .unwrap_or(HeaderName::from_static(model::DEFAULT_CONSUMER_HEADER));
        let mut owned_headers = vec![
            consumer_header.clone(),
            HeaderName::from_static(model::DEFAULT_CLIENT_SUBJECT_HEADER),
        ];
        let subjects = config.listeners.iter().filter_map(|l| {
            Some(
                l.tls
                    .as_ref()?
                    .client_auth
                    .as_ref()?
                    .subject_header
                    .as_str(),
            )
        });
        for name in subjects {
            // Validated as a header name.
            if let Ok(h) = HeaderName::from_bytes(name.as_bytes()) {
                if !owned_headers.contains(&h) {
                    owned_headers.push(h);
                }
            }
        }
        let failed_attempts = config.auth.failed_attempts.map(plans::failed_attempts);
        let cache = routes.iter().find_map(|r| r.cache.clone());
        let via = ViaEntries::new(config.server.via());
        let fingerprint = crate::material::fingerprint(&config, &material);
        Ok(Snapshot {
            cache,
            config: Arc::new(config),
            router,
            routes,
            pools,
            consumers,
            issuers,
            consumer_header,
            owned_headers,
            via,
            failed_attempts,
            unmatched_metrics: route_metrics.unmatched(),
            fingerprint,
            material,
        })
    }

    /// A one-line summary for `check` and logs.
    pub fn summary(&self) -> String {
        let mut summary = format!(
            "{} routes, {} pools, {} consumers",
            self.routes.len(),
            self.pools.len(),
            self.consumers.consumers.len(),
        );
        if !self.issuers.list.is_empty() {
            summary += &format!(", {} jwt issuers", self.issuers.list.len());
        }
        summary
    }
}
