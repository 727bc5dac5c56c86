//! Bearer-token authentication (OAuth2 / OpenID Connect access tokens):
//! the issuers of one config with their key sets, reading the token where
//! a route says, verifying it (or finding it verified before), checking
//! the route's issuers and scopes, and taking the token off the request.
//!
//! A token lives only in the request being processed and, hashed, as the
//! key of the verified-token cache: it is never logged, counted or echoed.
//! Logs, limits and usage name the consumer its `consumer_claim` gives,
//! with the issuer.

pub mod remote;
mod table;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use pingora_error::Result;
use pingora_http::RequestHeader;
use prometheus::IntCounter;
use serde_json::{Map, Value};

use crate::config::model::{self, JwksSource, JwtIssuer, RouteJwt, TokenSource};
use crate::config::ConfigError;
use crate::jwt::{self, KeySet, Rejection};
use crate::plans::ConsumerLimits;
pub use remote::RemoteKeys;
pub use table::BearerTable;

/// Most verified tokens kept, by their total length in bytes.
pub const TOKEN_CACHE_BYTES: u64 = 64 << 20;

/// Where an issuer's keys are.
#[derive(Debug)]
enum Keys {
    /// Read from a file when the config was prepared.
    Fixed(Arc<KeySet>),
    /// Fetched, and refreshed off the request path.
    Remote(Arc<RemoteKeys>),
}

/// One issuer of a config, ready to verify tokens.
#[derive(Debug)]
pub struct Issuer {
    pub config: JwtIssuer,
    pub id: Arc<str>,
    keys: Keys,
    /// Each consumer's limits and quotas (counted per consumer).
    pub limits: ConsumerLimits,
    /// Verifications by result: `valid`, then [`Rejection`]s in
    /// [`REJECTIONS`] order.
    counters: Vec<IntCounter>,
}

/// Every [`Rejection`], in the order of an issuer's counters.
pub const REJECTIONS: [Rejection; 11] = [
    Rejection::TooLarge,
    Rejection::Malformed,
    Rejection::UnsupportedAlgorithm,
    Rejection::AlgorithmNotAllowed,
    Rejection::UnknownKey,
    Rejection::BadSignature,
    Rejection::Expired,
    Rejection::NotYetValid,
    Rejection::WrongIssuer,
    Rejection::WrongAudience,
    Rejection::NoConsumer,
];

impl Issuer {
    /// The key set tokens are verified with now (`None`: a URL set not
    /// fetched yet).
    pub fn key_set(&self) -> Option<Arc<KeySet>> {
        match &self.keys {
            Keys::Fixed(k) => Some(k.clone()),
            Keys::Remote(r) => r.current(),
        }
    }

    /// The fetched set, for a `jwks_url` or `discovery` issuer.
    pub fn remote(&self) -> Option<&Arc<RemoteKeys>> {
        match &self.keys {
            Keys::Remote(r) => Some(r),
            Keys::Fixed(_) => None,
        }
    }

    fn count(&self, result: Result<(), Rejection>) {
        let index = match result {
            Ok(()) => 0,
            Err(r) => 1 + REJECTIONS.iter().position(|x| *x == r).unwrap_or(0),
        };
        if let Some(c) = self.counters.get(index) {
            c.inc();
        }
    }
}

/// A caller a token named: what the request path needs of a verified
/// token (shared by every request presenting the same token).
#[derive(Debug)]
pub struct Bearer {
    /// Index of the issuer in the snapshot's [`Issuers`].
    pub issuer: usize,
    pub issuer_id: Arc<str>,
    /// The `consumer_claim` value.
    pub consumer: Arc<str>,
    /// `issuer-id:consumer`: whom limits and usage count.
    pub subject: Arc<str>,
    /// The consumer header's value.
    pub header_value: HeaderValue,
    pub scopes: Vec<String>,
    /// Every claim, for `forward_claims`.
    pub claims: Map<String, Value>,
    /// `exp` plus the issuer's leeway, in Unix seconds.
    pub valid_until: u64,
}

impl Bearer {
    /// A claim as a header value: strings as they are, numbers and
    /// booleans as JSON writes them; `None` for anything else or a value
    /// no header can carry.
    pub fn claim_value(&self, claim: &str) -> Option<HeaderValue> {
        let text = match self.claims.get(claim)? {
            Value::String(s) => Cow::Borrowed(s.as_str()),
            Value::Number(n) => Cow::Owned(n.to_string()),
            Value::Bool(b) => Cow::Owned(b.to_string()),
            _ => return None,
        };
        if text.len() > 1024 || !text.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            return None;
        }
        HeaderValue::from_str(&text).ok()
    }
}

/// Why no bearer was admitted (which check refused a token is the
/// decision's `token_rejection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No token where the route reads it.
    Missing,
    /// The token was refused (401, `invalid_token`).
    Invalid,
    /// A valid token without a scope the route requires (403).
    InsufficientScope,
}

impl Failure {
    pub const ALL: [Failure; 3] = [
        Failure::Missing,
        Failure::Invalid,
        Failure::InsufficientScope,
    ];

    /// The reason in logs and `portcullis_auth_rejections_total`.
    pub const fn reason(self) -> &'static str {
        match self {
            Failure::Missing => "token_missing",
            Failure::Invalid => "token_invalid",
            Failure::InsufficientScope => "insufficient_scope",
        }
    }

    /// [`Failure::reason`] of each of [`Failure::ALL`].
    pub const REASONS: [&'static str; 3] = [
        Failure::ALL[0].reason(),
        Failure::ALL[1].reason(),
        Failure::ALL[2].reason(),
    ];
}

/// The verified-token cache's expiry: each entry until its token's `exp`
/// (plus leeway).
struct UntilExpiry;

impl moka::Expiry<[u8; 32], Arc<Bearer>> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Arc<Bearer>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Some(Duration::from_secs(
            value.valid_until.saturating_sub(now).saturating_add(1),
        ))
    }
}

/// The issuers of one config and the tokens verified under it.
pub struct Issuers {
    pub list: Vec<Issuer>,
    cache: moka::sync::Cache<[u8; 32], Arc<Bearer>>,
    cache_hit: IntCounter,
    cache_miss: IntCounter,
    /// URL key sets that could not be fetched while the config was
    /// prepared: an error for `check`, a warning on reload.
    pub fetch_failures: Vec<ConfigError>,
}

impl std::fmt::Debug for Issuers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuers")
            .field("list", &self.list)
            .finish_non_exhaustive()
    }
}

impl Issuers {
    /// Compile `config`'s issuers: read their key files (an unusable one
    /// is an error naming the file), take fetched sets from `table` (or
    /// fetch new ones).
    pub fn build(
        config: &model::Config,
        table: &BearerTable,
    ) -> std::result::Result<Issuers, Vec<ConfigError>> {
        let families = table.families();
        let mut errors = Vec::new();
        let mut fetch_failures = Vec::new();
        let mut list = Vec::new();
        for c in &config.jwt_issuers {
            let at_issuer = |message: String| ConfigError {
                file: config.source.clone(),
                line: c.at.line,
                column: c.at.column,
                item: Some(format!("jwt issuer {:?}", c.id)),
                message,
            };
            let keys = match &c.keys {
                JwksSource::File(f) => match read_key_file(&f.path) {
                    Ok(set) => {
                        families.keys(&c.id).set(set.keys.len() as i64);
                        Keys::Fixed(Arc::new(set))
                    }
                    Err(why) => {
                        errors.push(ConfigError {
                            line: f.at.line,
                            column: f.at.column,
                            ..at_issuer(format!("jwks_file {}: {why}", f.display()))
                        });
                        continue;
                    }
                },
                source => {
                    let (remote, fetched) = table.remote(c, source);
                    if let Err(why) = fetched {
                        fetch_failures.push(at_issuer(format!(
                            "the key set could not be fetched ({why}); tokens of this issuer are refused until a fetch succeeds"
                        )));
                    }
                    Keys::Remote(remote)
                }
            };
            let counters = std::iter::once("valid")
                .chain(REJECTIONS.iter().map(|r| r.label()))
                .map(|result| families.verification(&c.id, result))
                .collect();
            list.push(Issuer {
                id: Arc::from(c.id.as_str()),
                limits: ConsumerLimits::build_issuer(c, &config.routes),
                keys,
                counters,
                config: c.clone(),
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let (cache_hit, cache_miss) = families.cache();
        Ok(Issuers {
            list,
            cache: moka::sync::Cache::builder()
                .max_capacity(TOKEN_CACHE_BYTES)
                .weigher(|_, b: &Arc<Bearer>| {
                    u32::try_from(b.claims.len() * 64 + b.consumer.len() + 256).unwrap_or(u32::MAX)
                })
                .expire_after(UntilExpiry)
                .build(),
            cache_hit,
            cache_miss,
            fetch_failures,
        })
    }

    /// The bearer `token` names, for a route accepting the issuers
    /// `allowed` (indices; empty: all), at `now` (Unix seconds).
    pub fn authenticate(
        &self,
        token: &str,
        allowed: &[usize],
        now: u64,
    ) -> std::result::Result<Arc<Bearer>, Rejection> {
        let digest = digest(token);
        let accepted = |i: usize| allowed.is_empty() || allowed.contains(&i);
        if let Some(b) = self.cache.get(&digest) {
            if now <= b.valid_until {
                self.cache_hit.inc();
                return if accepted(b.issuer) {
                    Ok(b)
                } else {
                    Err(Rejection::WrongIssuer)
                };
            }
        }
        self.cache_miss.inc();
        let claimed = jwt::claimed_issuer(token)?;
        let Some((index, issuer)) = self
            .list
            .iter()
            .enumerate()
            .find(|(i, is)| is.config.issuer == claimed && accepted(*i))
        else {
            return Err(Rejection::WrongIssuer);
        };
        let result = self.verify(index, issuer, token, now);
        issuer.count(result.as_ref().map(|_| ()).map_err(|r| *r));
        let bearer = Arc::new(result?);
        self.cache.insert(digest, bearer.clone());
        Ok(bearer)
    }

    fn verify(
        &self,
        index: usize,
        issuer: &Issuer,
        token: &str,
        now: u64,
    ) -> std::result::Result<Bearer, Rejection> {
        let c = &issuer.config;
        let Some(keys) = issuer.key_set() else {
            if let Some(r) = issuer.remote() {
                r.unknown_kid();
            }
            return Err(Rejection::UnknownKey);
        };
        let expected = jwt::Expected {
            issuer: &c.issuer,
            audiences: &c.audiences,
            algorithms: &c.algorithms,
            leeway: c.leeway.as_secs(),
            consumer_claim: &c.consumer_claim,
            scopes_claim: &c.scopes_claim,
        };
        let verified = match jwt::verify(token, &keys, &expected, now) {
            Err(Rejection::UnknownKey) => {
                if let Some(r) = issuer.remote() {
                    r.unknown_kid();
                }
                return Err(Rejection::UnknownKey);
            }
            other => other?,
        };
        // Checked as visible ASCII by `jwt::verify`.
        let header_value =
            HeaderValue::from_str(&verified.consumer).map_err(|_| Rejection::NoConsumer)?;
        Ok(Bearer {
            issuer: index,
            subject: Arc::from(format!("{}:{}", issuer.id, verified.consumer)),
            issuer_id: issuer.id.clone(),
            consumer: Arc::from(verified.consumer),
            header_value,
            scopes: verified.scopes,
            claims: verified.claims,
            valid_until: verified.expires_at.saturating_add(c.leeway.as_secs()),
        })
    }

    /// Indices of the issuers with these ids (validated to exist).
    pub fn indices(&self, ids: &[String]) -> Vec<usize> {
        ids.iter()
            .filter_map(|id| self.list.iter().position(|i| &*i.id == id))
            .collect()
    }

    /// Forget every verified token (a key set changed).
    pub fn forget_tokens(&self) {
        self.cache.invalidate_all();
    }
}

fn digest(token: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn read_key_file(path: &std::path::Path) -> std::result::Result<KeySet, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot be read: {e}"))?;
    KeySet::parse(&bytes).map_err(|e| e.to_string())
}

/// How a route takes bearer tokens, compiled.
#[derive(Debug)]
pub struct RouteBearer {
    /// Issuer indices accepted; empty: all.
    pub issuers: Vec<usize>,
    pub token_from: TokenSource,
    pub required_scopes: model::RequiredScopes,
    pub forward_claims: Vec<(HeaderName, String)>,
    pub keep_token: bool,
    /// `WWW-Authenticate` of a 401 without a token…
    pub challenge_missing: HeaderValue,
    /// …with a token refused…
    pub challenge_invalid: HeaderValue,
}

impl RouteBearer {
    pub fn new(route: &RouteJwt, issuers: &Issuers, realm: &str) -> RouteBearer {
        let value =
            |s: String| HeaderValue::from_str(&s).unwrap_or(HeaderValue::from_static("Bearer"));
        RouteBearer {
            issuers: issuers.indices(&route.issuers),
            token_from: route.token_from.clone(),
            required_scopes: route.required_scopes.clone(),
            forward_claims: route
                .forward_claims
                .iter()
                .filter_map(|(h, c)| Some((HeaderName::from_bytes(h.as_bytes()).ok()?, c.clone())))
                .collect(),
            keep_token: route.keep_token,
            challenge_missing: value(format!("Bearer realm=\"{realm}\"")),
            challenge_invalid: value(format!("Bearer realm=\"{realm}\", error=\"invalid_token\"")),
        }
    }

    /// The `WWW-Authenticate` of a 403 for lacking `scopes` (RFC 6750 §3).
    pub fn challenge_scope(&self, realm: &str, method: &str) -> HeaderValue {
        let scopes: Vec<&str> = self
            .required_scopes
            .for_method(method)
            .map(String::as_str)
            .collect();
        HeaderValue::from_str(&format!(
            "Bearer realm=\"{realm}\", error=\"insufficient_scope\", scope=\"{}\"",
            scopes.join(" ")
        ))
        .unwrap_or(HeaderValue::from_static(
            "Bearer error=\"insufficient_scope\"",
        ))
    }

    /// The token presented where the route reads it (`None`: none, or an
    /// empty one).
    pub fn presented<'r>(&self, req: &'r RequestHeader) -> Option<&'r str> {
        let token = match &self.token_from {
            TokenSource::Bearer => bearer_token(req),
            TokenSource::Header(name) => req.headers.get(name.as_str())?.to_str().ok(),
            TokenSource::Cookie(name) => crate::cookie::find(&req.headers, name),
        }?
        .trim();
        (!token.is_empty()).then_some(token)
    }

    /// Whether `bearer` has every scope `method` needs here.
    pub fn in_scope(&self, bearer: &Bearer, method: &str) -> bool {
        self.required_scopes
            .for_method(method)
            .all(|s| bearer.scopes.iter().any(|have| have == s))
    }

    /// Take the token off the request sent upstream (unless the route
    /// keeps it).
    pub fn remove_token(&self, upstream: &mut RequestHeader) -> Result<()> {
        if self.keep_token {
            return Ok(());
        }
        match &self.token_from {
            TokenSource::Bearer => {
                upstream.remove_header(&http::header::AUTHORIZATION);
            }
            TokenSource::Header(name) => {
                upstream.remove_header(name.as_str());
            }
            TokenSource::Cookie(name) => {
                let kept: Vec<String> = upstream
                    .headers
                    .get_all(http::header::COOKIE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(';'))
                    .map(str::trim)
                    .filter(|c| !c.is_empty() && c.split('=').next() != Some(name.as_str()))
                    .map(str::to_string)
                    .collect();
                upstream.remove_header(&http::header::COOKIE);
                if !kept.is_empty() {
                    upstream.insert_header(http::header::COOKIE, kept.join("; "))?;
                }
            }
        }
        Ok(())
    }
}

/// `Authorization: Bearer TOKEN`'s token.
pub fn bearer_token(req: &RequestHeader) -> Option<&str> {
    let value = req
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

/// Whether `token` has the shape of a JWT (three dot-separated parts):
/// on `api_key_or_jwt` routes, what tells a token from an API key.
pub fn looks_like_jwt(token: &[u8]) -> bool {
    token.iter().filter(|b| **b == b'.').count() == 2
}

#[cfg(test)]
mod tests;
