//! The configuration file as written: serde types for the TOML surface.
//!
//! These types only describe the shape of the file. Every table rejects
//! unknown keys (`deny_unknown_fields`), so a typo is an error instead of a
//! silently ignored setting. Values that need checking beyond their TOML type
//! (addresses, durations, names, enumerations) are kept as text wrapped in
//! [`Spanned`], so that `validate` can check them all, collect every error
//! and point at the exact value. Nothing outside `config` sees these types:
//! the rest of the gateway works with [`super::model`].

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// The whole file.
///
/// Unknown keys are refused in every table (`deny_unknown_fields`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub server: Option<ServerFile>,
    /// Proxy listeners; absent means one on `model::DEFAULT_LISTEN`.
    pub listeners: Option<Spanned<Vec<ListenerFile>>>,
    pub admin: Option<AdminFile>,
    /// Pools by name (the key span points at the name in the table header).
    #[serde(default)]
    pub pools: BTreeMap<Spanned<String>, PoolFile>,
    /// Routes in file order.
    #[serde(default)]
    pub routes: Vec<RouteFile>,
    /// Settings shared by every route with `auth = "api_key"`.
    pub auth: Option<AuthFile>,
    pub access_log: Option<AccessLogFile>,
    /// The response cache shared by every route with a `cache` table.
    pub cache: Option<CacheFile>,
    /// More `[[consumers]]`, from other files: paths or glob patterns,
    /// relative to this file's directory.
    #[serde(default)]
    pub consumer_files: Vec<Spanned<String>>,
    /// API consumers and their keys.
    #[serde(default)]
    pub consumers: Vec<ConsumerFile>,
    /// Identity providers whose bearer tokens (JWTs) routes accept.
    #[serde(default)]
    pub jwt_issuers: Vec<JwtIssuerFile>,
    /// Where rate-limit and quota counters live.
    pub limit_store: Option<LimitStoreFile>,
}

/// `[limit_store]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitStoreFile {
    /// `local` | `redis`
    pub kind: Option<Spanned<String>>,
    /// `redis://host:port/db` or `rediss://…`, with no password in it.
    pub url: Option<Spanned<String>>,
    /// The Redis password, from a file (first line) or an environment
    /// variable; never inline.
    pub password_file: Option<Spanned<String>>,
    pub password_env: Option<Spanned<String>>,
    /// PEM CA certificates a `rediss://` server's certificate is checked
    /// against (default: the system's roots).
    pub ca_file: Option<Spanned<String>>,
    /// Per Redis call.
    pub timeout: Option<Spanned<DurationText>>,
    /// `local` | `allow` | `deny`
    pub on_error: Option<Spanned<String>>,
    /// Instances sharing the store: per-instance limits under
    /// `on_error = "local"` are the limits divided by it.
    pub instances: Option<Spanned<u32>>,
    /// `exact` | `approximate`: rate limits that do not say.
    pub accuracy: Option<Spanned<String>>,
    /// How often approximate buckets send their charges.
    pub sync_interval: Option<Spanned<DurationText>>,
    /// Prefix of every key, so fleets can share one Redis.
    pub key_prefix: Option<Spanned<String>>,
}

/// One `[[jwt_issuers]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtIssuerFile {
    pub id: Spanned<String>,
    /// Must equal the token's `iss`.
    pub issuer: Spanned<String>,
    /// The token's `aud` must contain one of them.
    pub audiences: Option<Spanned<Vec<Spanned<String>>>>,
    /// Exactly one of `jwks_file`, `jwks_url` and `discovery`.
    pub jwks_file: Option<Spanned<String>>,
    pub jwks_url: Option<Spanned<String>>,
    pub discovery: Option<Spanned<String>>,
    pub refresh: Option<Spanned<DurationText>>,
    /// The soonest a fetched key set is fetched again on an unknown `kid`.
    pub min_refresh_interval: Option<Spanned<DurationText>>,
    pub algorithms: Option<Spanned<Vec<Spanned<String>>>>,
    pub leeway: Option<Spanned<DurationText>>,
    pub consumer_claim: Option<Spanned<String>>,
    pub scopes_claim: Option<Spanned<String>>,
    /// Limits of each consumer of the issuer, as a consumer's.
    #[serde(default)]
    pub rate_limits: Vec<ConsumerLimitFile>,
    pub quota: Option<QuotaFile>,
}

/// A file named by `consumer_files`: consumers only, so key management can
/// live apart from routes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumersFile {
    #[serde(default)]
    pub consumers: Vec<ConsumerFile>,
}

/// A duration as written (`"10s"`, `"1m30s"`), read by the validator with
/// `humantime`. Anything but a string (`read = 10`) is refused here with an
/// example of the form, not serde's bare "expected a string".
#[derive(Clone, PartialEq, Eq)]
pub struct DurationText(pub String);

impl std::ops::Deref for DurationText {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for DurationText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = DurationText;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(r#"a duration string, like "10s""#)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DurationText, E> {
                Ok(DurationText(v.to_string()))
            }
        }
        d.deserialize_str(Text)
    }
}

/// `[access_log]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogFile {
    pub enabled: Option<Spanned<bool>>,
    /// `"-"` (stdout) or a file path.
    pub path: Option<Spanned<String>>,
}

/// `[cache]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheFile {
    /// All cached objects together, e.g. `"256MiB"`.
    pub max_size: Option<Spanned<String>>,
    /// A second tier every instance shares.
    pub shared: Option<SharedCacheFile>,
}

/// `[cache.shared]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedCacheFile {
    /// `redis`
    pub kind: Spanned<String>,
    /// Default: `[limit_store]`'s Redis (url, password, ca_file).
    pub url: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub password_env: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub key_prefix: Option<Spanned<String>>,
    /// Per Redis call.
    pub timeout: Option<Spanned<DurationText>>,
    /// Larger bodies stay in the local tier only, e.g. `"256KiB"`.
    pub max_object_size: Option<Spanned<String>>,
}

/// `[routes.cache]`: caching on for the route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteCacheFile {
    /// Default `true` when the table is present.
    pub enabled: Option<Spanned<bool>>,
    /// Freshness for responses that carry none.
    pub ttl: Option<Spanned<DurationText>>,
    pub max_object_size: Option<Spanned<String>>,
    pub stale_while_revalidate: Option<Spanned<DurationText>>,
    pub stale_if_error: Option<Spanned<DurationText>>,
    /// On `auth = "api_key"` routes: one entry for every consumer.
    pub shared: Option<Spanned<bool>>,
    pub key: Option<CacheKeyFile>,
    /// Follow `CDN-Cache-Control` (default `true`).
    pub cdn_cache_control: Option<Spanned<bool>>,
    /// A response field targeted at this gateway (RFC 9213 §2.1).
    pub targeted_cache_control: Option<Spanned<String>>,
}

/// `key` of `[routes.cache]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheKeyFile {
    /// `"all"` | `"sorted"` | a list of parameter names.
    pub query: Option<Spanned<toml::Value>>,
    /// Request headers whose values are part of the key.
    #[serde(default)]
    pub headers: Vec<Spanned<String>>,
}

/// `[auth]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFile {
    /// Request header carrying the consumer id to the backend.
    pub consumer_header: Option<Spanned<String>>,
    /// `realm` of `WWW-Authenticate` challenges.
    pub realm: Option<Spanned<String>>,
    /// Brute-force damping: failed key attempts allowed per client IP.
    pub failed_attempts: Option<FailedAttemptsFile>,
}

/// `[auth.failed_attempts]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailedAttemptsFile {
    /// `false` turns the damping off.
    pub enabled: Option<Spanned<bool>>,
    /// e.g. `"10/m"`
    pub rate: Option<Spanned<String>>,
    pub burst: Option<Spanned<u32>>,
}

/// One `[[consumers]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerFile {
    pub id: Spanned<String>,
    /// Display name.
    pub name: Option<Spanned<String>>,
    /// Free-form string metadata (shown in the admin API).
    #[serde(default)]
    pub metadata: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub keys: Vec<KeyFile>,
    /// Required; an `Option` so its absence gets a helpful message.
    pub scopes: Option<Spanned<Vec<ScopeFile>>>,
    #[serde(default)]
    pub rate_limits: Vec<ConsumerLimitFile>,
    pub quota: Option<QuotaFile>,
}

/// `[[consumers.keys]]`: a key as its digest, never the key itself.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// SHA-256 of the key, 64 hex digits.
    pub digest: Spanned<String>,
    /// The key's non-secret prefix (e.g. `pk_a1B2c3`), used to name it in logs.
    pub prefix: Spanned<String>,
    pub not_before: Option<Spanned<toml::value::Datetime>>,
    pub expires: Option<Spanned<toml::value::Datetime>>,
}

/// One entry of a consumer's `scopes`: routes (by id or tag) and methods.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeFile {
    /// Route ids; `"*"` is every route.
    #[serde(default)]
    pub routes: Vec<Spanned<String>>,
    /// Route tags.
    #[serde(default)]
    pub tags: Vec<Spanned<String>>,
    /// Methods; empty is any method.
    #[serde(default)]
    pub methods: Vec<Spanned<String>>,
}

/// One entry of a consumer's `rate_limits`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerLimitFile {
    pub rate: Spanned<String>,
    pub burst: Option<Spanned<u32>>,
    /// Only on these routes (each counted apart); with `tags`, the union.
    #[serde(default)]
    pub routes: Vec<Spanned<String>>,
    #[serde(default)]
    pub tags: Vec<Spanned<String>>,
    /// `exact` | `approximate` in a shared store.
    pub accuracy: Option<Spanned<String>>,
}

/// `quota` of a consumer: requests per UTC calendar day and/or month.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaFile {
    pub day: Option<Spanned<u64>>,
    pub month: Option<Spanned<u64>>,
}

/// One entry of a route's `rate_limits`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteLimitFile {
    pub rate: Spanned<String>,
    pub burst: Option<Spanned<u32>>,
    /// `route` | `consumer` | `client_ip`
    pub per: Spanned<String>,
    /// `exact` | `approximate` in a shared store.
    pub accuracy: Option<Spanned<String>>,
}

/// `[server]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    pub threads: Option<Spanned<usize>>,
    /// Humantime duration, e.g. `"5s"`.
    pub grace_period: Option<Spanned<DurationText>>,
    /// Idle upstream connections kept for reuse, per worker thread.
    pub upstream_keepalive: Option<Spanned<usize>>,
    /// Reload when the config or a file it includes changes.
    pub watch_config: Option<Spanned<bool>>,
    /// Limits on what a client may send.
    pub client: Option<ClientFile>,
    /// The gateway's `Via` pseudonym.
    pub via: Option<Spanned<String>>,
    /// Peers whose forwarding headers name the client.
    pub trusted_proxies: Option<TrustedProxiesFile>,
}

/// `[server.trusted_proxies]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedProxiesFile {
    /// Addresses or networks, e.g. `"10.0.0.0/8"`, `"192.0.2.7"`.
    pub cidrs: Spanned<Vec<Spanned<String>>>,
    /// `"x-forwarded-for"` (default) or `"forwarded"`.
    pub header: Option<Spanned<String>>,
}

/// `[server.client]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientFile {
    /// Request line and headers, e.g. `"32KiB"`.
    pub max_header_size: Option<Spanned<String>>,
    pub max_headers: Option<Spanned<u32>>,
    pub max_uri_length: Option<Spanned<u32>>,
    /// Durations, e.g. `"10s"`.
    pub header_timeout: Option<Spanned<DurationText>>,
    pub body_timeout: Option<Spanned<DurationText>>,
    /// `"0s"` turns keep-alive off.
    pub keepalive_timeout: Option<Spanned<DurationText>>,
    pub max_connections: Option<Spanned<u32>>,
    /// A duration, e.g. `"5s"`.
    pub handshake_timeout: Option<Spanned<DurationText>>,
    /// `//` in a request path is one `/` (default true).
    pub merge_slashes: Option<Spanned<bool>>,
    /// `"reject"` (default) or `"opaque"`: `%2F`, `%5C`, `\` and `;` in paths.
    pub ambiguous_paths: Option<Spanned<String>>,
    /// `"drop"` (default), `"reject"` or `"allow"`: header names with `_`.
    pub headers_with_underscores: Option<Spanned<String>>,
}

/// One `[[listeners]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerFile {
    /// `ip:port`
    pub address: Spanned<String>,
    /// TLS termination on this listener.
    pub tls: Option<ListenerTlsFile>,
    /// Redirect every request to HTTPS on this port (plain listeners).
    pub redirect_https: Option<Spanned<u16>>,
    /// `Strict-Transport-Security` value (TLS listeners).
    pub hsts: Option<Spanned<String>>,
    /// `"v1"` or `"v2"`: every connection starts with a PROXY protocol
    /// header (before TLS).
    pub proxy_protocol: Option<Spanned<String>>,
    /// Plain listeners: also HTTP/2 with prior knowledge (h2c), told from
    /// HTTP/1 by the connection's first bytes.
    pub h2c: Option<Spanned<bool>>,
    /// Peers refused at accept.
    pub ip: Option<IpRulesFile>,
}

/// `[routes.ip]`, `[listeners.ip]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpRulesFile {
    /// Addresses or networks that may pass (all when absent).
    pub allow: Option<Vec<Spanned<String>>>,
    /// Addresses or networks that may not; wins over `allow`.
    pub deny: Option<Vec<Spanned<String>>>,
}

/// `[listeners.tls]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsFile {
    pub certificates: Vec<CertificateFile>,
    /// `"1.2"` (default) or `"1.3"`.
    pub min_version: Option<Spanned<String>>,
    /// `"required"` or `"optional"`; needs `client_ca`.
    pub client_auth: Option<Spanned<String>>,
    pub client_ca: Option<Spanned<String>>,
    pub client_subject_header: Option<Spanned<String>>,
}

/// `[[listeners.tls.certificates]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateFile {
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
    #[serde(default)]
    pub names: Vec<Spanned<String>>,
    #[serde(default)]
    pub default: bool,
}

/// `[admin]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    /// `ip:port`
    pub address: Option<Spanned<String>>,
    /// SHA-256 (64 hex digits) of the bearer token the admin API asks for
    /// (every endpoint but the health probes).
    pub token_digest: Option<Spanned<String>>,
    /// SHA-256 of a second token that may only read (GET, HEAD).
    pub read_token_digest: Option<Spanned<String>>,
    /// Serve a non-loopback address without a token (a trusted network).
    pub allow_unauthenticated: Option<Spanned<bool>>,
    /// `Host` names the admin API answers besides IP literals and
    /// `localhost`.
    pub hosts: Option<Vec<Spanned<String>>>,
}

/// `[pools.NAME]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolFile {
    pub backends: Spanned<Vec<Spanned<BackendEntry>>>,
    /// `round_robin` | `random` | `least_requests` | `consistent_hash`
    pub balance: Option<Spanned<String>>,
    /// `client_ip` | `path` | `header:NAME` | `cookie:NAME`
    pub hash_key: Option<Spanned<String>>,
    pub retries: Option<Spanned<u32>>,
    pub timeouts: Option<TimeoutsFile>,
    pub health_check: Option<HealthCheckFile>,
    /// TLS to the backends.
    pub tls: Option<UpstreamTlsFile>,
    /// HTTP/2 over plain TCP (prior knowledge), e.g. to gRPC servers.
    pub h2c: Option<Spanned<bool>>,
    /// HTTP/2 pools: requests in flight on one backend connection.
    pub max_h2_streams: Option<Spanned<u32>>,
    /// A pool that takes the traffic while this one cannot.
    pub fallback: Option<Spanned<String>>,
    pub max_in_flight: Option<Spanned<u32>>,
    pub outlier: Option<OutlierFile>,
    pub breaker: Option<BreakerFile>,
    pub retry_budget: Option<RetryBudgetFile>,
}

/// `[pools.NAME.outlier]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierFile {
    pub consecutive_failures: Option<Spanned<u32>>,
    pub base_ejection: Option<Spanned<DurationText>>,
    pub max_ejection: Option<Spanned<DurationText>>,
    pub max_ejection_percent: Option<Spanned<u32>>,
    /// `"5xx"`, `"502"` or `"500-504"` each
    pub failure_statuses: Option<Vec<Spanned<StatusText>>>,
}

/// `[pools.NAME.breaker]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerFile {
    pub consecutive_failures: Option<Spanned<u32>>,
    pub failure_rate: Option<Spanned<f64>>,
    pub min_requests: Option<Spanned<u32>>,
    pub window: Option<Spanned<DurationText>>,
    pub open_for: Option<Spanned<DurationText>>,
    pub max_open_for: Option<Spanned<DurationText>>,
    pub probe_requests: Option<Spanned<u32>>,
    pub failure_statuses: Option<Vec<Spanned<StatusText>>>,
}

/// `[pools.NAME.retry_budget]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBudgetFile {
    pub ratio: Option<Spanned<f64>>,
    pub min_per_second: Option<Spanned<u32>>,
}

/// `[pools.NAME.tls]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsFile {
    pub sni: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub verify: Option<Spanned<bool>>,
    pub client_cert: Option<Spanned<String>>,
    pub client_key: Option<Spanned<String>>,
    /// `http1` (default) | `h2`
    pub protocol: Option<Spanned<String>>,
}

/// One element of `backends`: either a bare `"ip:port"` string or a table
/// `{ address = "ip:port", weight = 2 }`.
#[derive(Debug)]
pub enum BackendEntry {
    /// The bare string form; its span is the element's span.
    Address(String),
    Table(BackendTable),
}

/// The table form of a backend.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendTable {
    pub address: Spanned<String>,
    pub weight: Option<Spanned<u32>>,
}

impl<'de> Deserialize<'de> for BackendEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryVisitor;

        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = BackendEntry;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a backend: "ip:port" or { address = "ip:port", weight = N }"#)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<BackendEntry, E> {
                Ok(BackendEntry::Address(v.to_string()))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<BackendEntry, A::Error> {
                BackendTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(BackendEntry::Table)
            }
        }

        deserializer.deserialize_any(EntryVisitor)
    }
}

/// `timeouts` of a pool or a route. Every value is a humantime duration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsFile {
    pub connect: Option<Spanned<DurationText>>,
    pub read: Option<Spanned<DurationText>>,
    pub write: Option<Spanned<DurationText>>,
    pub idle: Option<Spanned<DurationText>>,
    pub total: Option<Spanned<DurationText>>,
}

/// `[pools.NAME.health_check]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckFile {
    /// `http` | `tcp` | `grpc`
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    /// http only
    pub path: Option<Spanned<String>>,
    /// http only
    pub host: Option<Spanned<String>>,
    /// http only: `"200"` or `"200-399"` (a bare integer is accepted too)
    pub expected_status: Option<Spanned<StatusText>>,
    /// grpc only: the service asked about (default: the whole server)
    pub service: Option<Spanned<String>>,
    pub interval: Option<Spanned<DurationText>>,
    pub timeout: Option<Spanned<DurationText>>,
    pub healthy_threshold: Option<Spanned<u32>>,
    pub unhealthy_threshold: Option<Spanned<u32>>,
}

/// `expected_status` as text: `"200"`, `"200-399"`, or the integer `200`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusText(pub String);

impl<'de> Deserialize<'de> for StatusText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StatusVisitor;

        impl Visitor<'_> for StatusVisitor {
            type Value = StatusText;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a status like "200" or a range like "200-399""#)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<StatusText, E> {
                Ok(StatusText(v.to_string()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StatusText, E> {
                Ok(StatusText(v.to_string()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StatusText, E> {
                Ok(StatusText(v.to_string()))
            }
        }

        deserializer.deserialize_any(StatusVisitor)
    }
}

/// One `[[routes]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    pub id: Spanned<String>,
    pub hosts: Option<Vec<Spanned<String>>>,
    pub path: Spanned<String>,
    /// `prefix` (default) | `exact`
    pub path_match: Option<Spanned<String>>,
    pub methods: Option<Vec<Spanned<String>>>,
    /// The pool that takes the route's requests (or `split`).
    pub pool: Option<Spanned<String>>,
    /// `[[routes.split]]`: shares of the requests between pools.
    pub split: Option<Vec<SplitFile>>,
    pub strip_prefix: Option<Spanned<bool>>,
    pub rewrite_prefix: Option<Spanned<String>>,
    pub request_headers: Option<HeaderRulesFile>,
    pub response_headers: Option<HeaderRulesFile>,
    pub timeouts: Option<TimeoutsFile>,
    /// `none` (default) | `api_key` | `jwt` | `api_key_or_jwt`
    pub auth: Option<Spanned<String>>,
    /// Ids of the `[[jwt_issuers]]` accepted (default: all).
    pub jwt_issuers: Option<Vec<Spanned<String>>>,
    /// `bearer` (default) | `header:NAME` | `cookie:NAME`
    pub token_from: Option<Spanned<String>>,
    /// A list of scopes, or a table of method → list.
    pub required_scopes: Option<Spanned<toml::Value>>,
    /// Header name → claim name.
    pub forward_claims: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    /// Forward the bearer token to the backend (default `false`).
    pub keep_token: Option<Spanned<bool>>,
    /// `header:NAME` (default `header:x-api-key`) | `bearer` | `query:NAME`
    pub key_from: Option<Spanned<String>>,
    /// Labels that consumer scopes and limits can name.
    pub tags: Option<Vec<Spanned<String>>>,
    /// RFC 9745 `Deprecation`: when the route is (or will be) deprecated.
    pub deprecation: Option<Spanned<toml::value::Datetime>>,
    /// RFC 8594 `Sunset`: when the route goes away.
    pub sunset: Option<Spanned<toml::value::Datetime>>,
    /// Sent as `Link: <URL>; rel="deprecation"`.
    pub deprecation_link: Option<Spanned<String>>,
    /// `"gone"`: answer 410 from the sunset on.
    pub sunset_action: Option<Spanned<String>>,
    #[serde(default)]
    pub rate_limits: Vec<RouteLimitFile>,
    /// Response caching for this route.
    pub cache: Option<RouteCacheFile>,
    /// `"reset"`, `"timeout"`, statuses like `"503"`
    pub retry_on: Option<Vec<Spanned<String>>>,
    /// Largest request body, e.g. `"10MiB"`.
    pub max_body_size: Option<Spanned<String>>,
    /// Client addresses that may or may not use the route.
    pub ip: Option<IpRulesFile>,
    /// Cross-origin requests from browsers.
    pub cors: Option<CorsFile>,
    /// A copy of a share of the requests to another pool.
    pub mirror: Option<MirrorFile>,
    /// Responses compressed for clients that accept it.
    pub compression: Option<CompressionFile>,
}

/// `[routes.compression]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionFile {
    /// In the gateway's order of preference: `"zstd"`, `"br"`, `"gzip"`.
    pub algorithms: Option<Spanned<Vec<Spanned<String>>>>,
    /// Smaller bodies (by `Content-Length`) go as they are, e.g. `"1KiB"`.
    pub min_size: Option<Spanned<String>>,
    /// Media types compressed: `"application/json"`, `"text/*"`.
    pub types: Option<Spanned<Vec<Spanned<String>>>>,
    /// One level for every algorithm, or a table `{ gzip = 6, br = 4 }`.
    pub level: Option<Spanned<toml::Value>>,
}

/// `[routes.mirror]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorFile {
    pub pool: Spanned<String>,
    /// Percent of the forwarded requests copied (default 100).
    pub percent: Option<Spanned<i64>>,
    /// Copy the request body too (default `false`).
    pub include_body: Option<Spanned<bool>>,
    /// Bodies larger than this are not copied, e.g. `"64KiB"`.
    pub max_body_size: Option<Spanned<String>>,
    /// Copies in flight at once; beyond, a copy is dropped (default 100).
    pub max_in_flight: Option<Spanned<i64>>,
}

/// One `[[routes.split]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitFile {
    pub pool: Spanned<String>,
    /// Percent of the requests, 0 to 100.
    pub weight: Spanned<i64>,
    /// `{ cookie = NAME }` or `{ header = NAME }`: for the whole split.
    pub sticky: Option<Spanned<StickyFile>>,
    /// `{ header = { NAME = VALUE } }`: requests that go to this pool
    /// whatever the weights.
    #[serde(rename = "match")]
    pub match_: Option<Spanned<SplitMatchFile>>,
}

/// `sticky` of a `[[routes.split]]` entry.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StickyFile {
    pub cookie: Option<String>,
    pub header: Option<String>,
}

/// `match` of a `[[routes.split]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitMatchFile {
    pub header: BTreeMap<Spanned<String>, Spanned<String>>,
}

/// `[routes.cors]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsFile {
    /// `"https://app.example.com"`, `"https://*.example.com"` or `"*"`.
    pub allow_origins: Spanned<Vec<Spanned<String>>>,
    pub allow_methods: Option<Vec<Spanned<String>>>,
    pub allow_headers: Option<Vec<Spanned<String>>>,
    pub expose_headers: Option<Vec<Spanned<String>>>,
    pub allow_credentials: Option<Spanned<bool>>,
    /// How long a browser may keep a preflight's answer, e.g. `"10m"`.
    pub max_age: Option<Spanned<DurationText>>,
}

/// `request_headers` / `response_headers` of a route.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderRulesFile {
    /// header name → value
    #[serde(default)]
    pub set: BTreeMap<Spanned<String>, Spanned<String>>,
    /// header names
    #[serde(default)]
    pub remove: Vec<Spanned<String>>,
}

/// Parse the text into the file types. Only TOML syntax, type and
/// unknown-key errors are found here; the result still needs `validate`.
pub fn parse(src: &str) -> Result<FileConfig, toml::de::Error> {
    toml::from_str(src)
}

/// Parse a file named by `consumer_files`.
pub fn parse_consumers(src: &str) -> Result<ConsumersFile, toml::de::Error> {
    toml::from_str(src)
}

// ---------------------------------------------------------------------------
// Outline: where the items are, for naming the item in a parse error.
//
// A parse error from toml carries a byte span but no idea of which route or
// pool it is in. When the text is at least valid TOML, a second, schema-free
// parse records the span of every table and value, so the error can be
// attributed to `route "orders-v1"` even when it sits in a sub-table such as
// `[routes.timeouts]` (whose span toml reports apart from the route's own).
// ---------------------------------------------------------------------------

/// Any TOML value together with its span and the spans of everything inside.
#[derive(Debug)]
struct Outline {
    span: Range<usize>,
    kind: OutlineKind,
}

#[derive(Debug)]
enum OutlineKind {
    Table(Vec<(String, Outline)>),
    Array(Vec<Outline>),
    Str(String),
    Other,
}

impl Outline {
    /// The text this value covers: its own span (for a table, toml may
    /// give only the header's) up to the end of the last thing nested in it,
    /// so that the keys between them belong to it too.
    fn extent(&self) -> Range<usize> {
        let nested = match &self.kind {
            OutlineKind::Table(entries) => entries.iter().map(|(_, v)| v.extent()).collect(),
            OutlineKind::Array(items) => items.iter().map(Outline::extent).collect(),
            OutlineKind::Str(_) | OutlineKind::Other => Vec::new(),
        };
        nested.into_iter().fold(self.span.clone(), |a, b| {
            a.start.min(b.start)..a.end.max(b.end)
        })
    }

    /// True when `offset` lies in this value or anything nested in it.
    fn contains(&self, offset: usize) -> bool {
        let extent = self.extent();
        let end = extent.end.max(extent.start + 1);
        (extent.start..end).contains(&offset)
    }

    fn get(&self, key: &str) -> Option<&Outline> {
        match &self.kind {
            OutlineKind::Table(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match &self.kind {
            OutlineKind::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Outline {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<OutlineKind>::deserialize(deserializer)?;
        Ok(Outline {
            span: spanned.span(),
            kind: spanned.into_inner(),
        })
    }
}

impl<'de> Deserialize<'de> for OutlineKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KindVisitor;

        impl<'de> Visitor<'de> for KindVisitor {
            type Value = OutlineKind;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any TOML value")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<OutlineKind, E> {
                Ok(OutlineKind::Str(v.to_string()))
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<OutlineKind, E> {
                Ok(OutlineKind::Other)
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<OutlineKind, E> {
                Ok(OutlineKind::Other)
            }

            fn visit_u64<E: de::Error>(self, _: u64) -> Result<OutlineKind, E> {
                Ok(OutlineKind::Other)
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<OutlineKind, E> {
                Ok(OutlineKind::Other)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OutlineKind, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Outline>()? {
                    items.push(item);
                }
                Ok(OutlineKind::Array(items))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OutlineKind, A::Error> {
                let mut entries = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Outline>()? {
                    entries.push((key, value));
                }
                Ok(OutlineKind::Table(entries))
            }
        }

        deserializer.deserialize_any(KindVisitor)
    }
}

/// The top level of the outline. `pools` is not wrapped in a span: written
/// as `[pools.NAME]` it is an implicit table. An item's extent runs from
/// its own span (a table's header) to the end of what is nested in it (see
/// [`Outline::extent`]), so an implicit sub-table such as
/// `[pools.a.timeouts]` without `[pools.a]` still names its pool.
#[derive(Debug, Deserialize)]
struct OutlineRoot {
    #[serde(default)]
    routes: Vec<Outline>,
    #[serde(default)]
    listeners: Vec<Outline>,
    #[serde(default)]
    pools: BTreeMap<String, Outline>,
    server: Option<Outline>,
    admin: Option<Outline>,
    auth: Option<Outline>,
    access_log: Option<Outline>,
    #[serde(default)]
    consumers: Vec<Outline>,
    #[serde(default)]
    jwt_issuers: Vec<Outline>,
}

/// The item (`route "id"`, `pool "name"`, `listener "addr"`, `server`,
/// `admin`, `auth`, `consumer "id"`, `jwt issuer "id"`) whose text contains byte `offset`, if the text is valid TOML of
/// roughly the right shape and the offset is inside one.
pub(crate) fn item_at(src: &str, offset: usize) -> Option<String> {
    let root: OutlineRoot = toml::from_str(src).ok()?;
    if let Some(route) = root.routes.iter().find(|r| r.contains(offset)) {
        return Some(match route.get("id").and_then(Outline::as_str) {
            Some(id) => format!("route {id:?}"),
            None => "route".to_string(),
        });
    }
    if let Some((name, _)) = root.pools.iter().find(|(_, p)| p.contains(offset)) {
        return Some(format!("pool {name:?}"));
    }
    if let Some(listener) = root.listeners.iter().find(|l| l.contains(offset)) {
        return Some(match listener.get("address").and_then(Outline::as_str) {
            Some(address) => format!("listener {address:?}"),
            None => "listener".to_string(),
        });
    }
    if root.server.is_some_and(|s| s.contains(offset)) {
        return Some("server".to_string());
    }
    if root.admin.is_some_and(|s| s.contains(offset)) {
        return Some("admin".to_string());
    }
    if root.auth.is_some_and(|s| s.contains(offset)) {
        return Some("auth".to_string());
    }
    if root.access_log.is_some_and(|s| s.contains(offset)) {
        return Some("access_log".to_string());
    }
    if let Some(consumer) = root.consumers.iter().find(|c| c.contains(offset)) {
        return Some(match consumer.get("id").and_then(Outline::as_str) {
            Some(id) => format!("consumer {id:?}"),
            None => "consumer".to_string(),
        });
    }
    if let Some(issuer) = root.jwt_issuers.iter().find(|c| c.contains(offset)) {
        return Some(match issuer.get("id").and_then(Outline::as_str) {
            Some(id) => format!("jwt issuer {id:?}"),
            None => "jwt issuer".to_string(),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_accepts_string_and_table() {
        let file = parse(
            r#"
            [pools.p]
            backends = ["127.0.0.1:1", { address = "127.0.0.1:2", weight = 3 }]
            "#,
        )
        .unwrap();
        let pool = file.pools.get("p").unwrap();
        let backends = pool.backends.get_ref();
        assert!(matches!(backends[0].get_ref(), BackendEntry::Address(a) if a == "127.0.0.1:1"));
        match backends[1].get_ref() {
            BackendEntry::Table(t) => {
                assert_eq!(t.address.get_ref(), "127.0.0.1:2");
                assert_eq!(*t.weight.as_ref().unwrap().get_ref(), 3);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn backend_table_rejects_unknown_key() {
        let err = parse(
            r#"
            [pools.p]
            backends = [{ address = "127.0.0.1:2", wieght = 3 }]
            "#,
        )
        .unwrap_err();
        assert!(err.message().contains("unknown field `wieght`"), "{err}");
    }

    #[test]
    fn expected_status_accepts_integer() {
        let file = parse(
            r#"
            [pools.p]
            backends = ["127.0.0.1:1"]
            health_check = { type = "http", path = "/", expected_status = 204 }
            "#,
        )
        .unwrap();
        let hc = file.pools.get("p").unwrap().health_check.as_ref().unwrap();
        assert_eq!(hc.expected_status.as_ref().unwrap().get_ref().0, "204");
    }

    #[test]
    fn item_at_finds_sub_tables() {
        let src = "[server]\nthreads = 1\n\n[pools.a]\nbackends = []\n[pools.a.timeouts]\nconnect = 1\n\n[[routes]]\nid = \"r1\"\n[routes.timeouts]\nread = 2\n\n[[listeners]]\naddress = \"x\"\n";
        let at = |needle: &str| item_at(src, src.find(needle).unwrap());
        assert_eq!(at("threads").as_deref(), Some("server"));
        assert_eq!(at("connect").as_deref(), Some("pool \"a\""));
        assert_eq!(at("read = 2").as_deref(), Some("route \"r1\""));
        assert_eq!(at("address").as_deref(), Some("listener \"x\""));
        assert_eq!(item_at("x = [", 3), None);
        // An implicit pool table (only a sub-table written) is named too.
        let implicit = "[pools.a.timeouts]\nconnect = 1\n";
        assert_eq!(
            item_at(implicit, implicit.find("connect").unwrap()).as_deref(),
            Some("pool \"a\"")
        );
        // Outside every item.
        let src = "[[routes]]\nid = \"r\"\n[tls]\ncert = 1\n";
        assert_eq!(item_at(src, src.find("tls").unwrap()), None);
    }
}
