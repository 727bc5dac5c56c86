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
use crate::config::model::{self, Config, KeySource, RouteAuth, Timeouts};
use crate::config::{ConfigError, ConfigErrors};
use crate::limits::{self, PlannedLimit, RouteLimits};
use crate::metrics::RouteMetrics;
use crate::router::Router;
use crate::state::Handles;
use crate::upstream::{self, Pool};

/// `VERSION PSEUDONYM` (RFC 9110 §7.6.3) for each HTTP version a client
/// speaks, made once per snapshot so a request only clones one.
#[derive(Debug, Clone)]
pub struct ViaEntries {
    /// HTTP/0.9, 1.0, 1.1 and 2, in that order.
    by_version: [HeaderValue; 4],
}

impl ViaEntries {
    const VERSIONS: [&'static str; 4] = ["0.9", "1.0", "1.1", "2"];

    /// `pseudonym` is validated as a token; should that ever be broken the
    /// entry names the version alone rather than failing the build.
    fn new(pseudonym: &str) -> ViaEntries {
        ViaEntries {
            by_version: Self::VERSIONS.map(|v| {
                HeaderValue::from_str(&format!("{v} {pseudonym}"))
                    .unwrap_or(HeaderValue::from_static(v))
            }),
        }
    }

    /// The entry for the client's `version` (as `ClientFacts` names it).
    pub fn get(&self, version: &str) -> &HeaderValue {
        let i = Self::VERSIONS
            .iter()
            .position(|v| *v == version)
            .unwrap_or(2);
        &self.by_version[i]
    }
}

/// Header edits with names and values parsed once, at build time.
#[derive(Debug, Default, Clone)]
pub struct HeaderOps {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl HeaderOps {
    fn compile(rules: &model::HeaderRules) -> HeaderOps {
        // Names and values were validated by `config`; anything that still
        // fails to parse is skipped rather than trusted.
        HeaderOps {
            set: rules
                .set
                .iter()
                .filter_map(|(n, v)| {
                    Some((
                        HeaderName::from_bytes(n.as_bytes()).ok()?,
                        HeaderValue::from_str(v).ok()?,
                    ))
                })
                .collect(),
            remove: rules
                .remove
                .iter()
                .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }
}

/// How the matched path prefix is rewritten before forwarding.
#[derive(Debug, Clone)]
pub enum PathRewrite {
    None,
    /// Drop the matched prefix.
    Strip,
    /// Replace the matched prefix.
    Replace(String),
}

/// A route with its pool resolved and its policies compiled.
#[derive(Debug)]
pub struct Route {
    pub id: String,
    pub pool: Arc<Pool>,
    pub rewrite: PathRewrite,
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
    /// The pool's timeouts overlaid with the route's own.
    pub timeouts: Timeouts,
    /// `Some` on routes with `auth = "api_key"`.
    pub auth: Option<RouteKeyAuth>,
    pub limits: RouteLimits,
    /// Request metric handles (long-lived, by route id).
    pub metrics: Arc<RouteMetrics>,
    /// Deprecation and sunset headers; `None` for most routes.
    pub lifecycle: Option<Box<crate::proxy::lifecycle::RouteLifecycle>>,
    /// Response caching, when the route caches.
    pub cache: Option<Arc<crate::cache::RouteCaching>>,
    /// Failures after the request was sent that are retried.
    pub retry_on: model::RetryOn,
    /// Largest request body in bytes.
    pub max_body_size: Option<u64>,
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
    /// certificate from an unchanged one (set by [`crate::reload::prepare`]).
    pub material: crate::reload::Material,
    /// Identifies the files this snapshot was prepared from (main file,
    /// consumer files, TLS files); set by [`crate::reload::prepare`].
    pub fingerprint: u64,
}

impl Snapshot {
    /// Build the runtime view of `config`, with the live state of every
    /// backend, route and consumer `tables` knows. Reads TLS files; changes
    /// nothing.
    ///
    /// Validation guarantees every route's pool exists; should that ever be
    /// broken, the build fails instead of misaligning route indices.
    pub fn build(config: Config, tables: Handles<'_>) -> Result<Snapshot, ConfigErrors> {
        let route_metrics = tables.route_metrics;
        use crate::ratelimit::clock::{Clock, SystemClock};
        let now = SystemClock.now_nanos();
        let pools = upstream::build_pools(&config, tables.backends, now).map_err(|(pool, e)| {
            ConfigError {
                file: config.source.clone(),
                line: e.at.line,
                column: e.at.column,
                item: Some(format!("pool \"{pool}\"")),
                message: e.message,
            }
        })?;
        let router = Router::build(&config.routes);
        let routes = config
            .routes
            .iter()
            .map(|r| {
                let pool = pools.get(&r.pool).cloned().ok_or_else(|| {
                    ConfigError::whole_file(
                        &config.source,
                        format!("route \"{}\": pool \"{}\" is not defined", r.id, r.pool),
                    )
                })?;
                let rewrite = match (&r.rewrite_prefix, r.strip_prefix) {
                    (Some(p), _) => PathRewrite::Replace(p.clone()),
                    (None, true) => PathRewrite::Strip,
                    (None, false) => PathRewrite::None,
                };
                Ok(Route {
                    id: r.id.clone(),
                    timeouts: r.timeouts.overlay(&pool.config.timeouts),
                    pool,
                    rewrite,
                    request_headers: HeaderOps::compile(&r.request_headers),
                    response_headers: HeaderOps::compile(&r.response_headers),
                    auth: match &r.auth {
                        RouteAuth::None => None,
                        RouteAuth::ApiKey(source) => {
                            Some(RouteKeyAuth::new(source, &config.auth.realm))
                        }
                    },
                    limits: RouteLimits::build(r),
                    metrics: route_metrics.for_route(&r.id),
                    lifecycle: crate::proxy::lifecycle::RouteLifecycle::build(&r.lifecycle)
                        .map(Box::new),
                    cache: tables.cache.for_route(r, &config.cache),
                    retry_on: r.retry_on.clone(),
                    max_body_size: r.max_body_size,
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let consumers = ConsumerIndex::build(&config.consumers, &config.routes, tables.usage);
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
        let failed_attempts = config.auth.failed_attempts.map(limits::failed_attempts);
        let cache = routes.iter().find_map(|r| r.cache.clone());
        let via = ViaEntries::new(config.server.via());
        Ok(Snapshot {
            cache,
            config: Arc::new(config),
            router,
            routes,
            pools,
            consumers,
            consumer_header,
            owned_headers,
            via,
            failed_attempts,
            unmatched_metrics: route_metrics.unmatched(),
            material: Default::default(),
            fingerprint: 0,
        })
    }

    /// A one-line summary for `check` and logs.
    pub fn summary(&self) -> String {
        format!(
            "{} routes, {} pools, {} consumers",
            self.routes.len(),
            self.pools.len(),
            self.consumers.consumers.len()
        )
    }
}
