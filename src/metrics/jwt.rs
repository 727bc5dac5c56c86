//! Bearer-token (JWT) metrics.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `portcullis_jwt_verifications_total` | counter | `issuer`, `result` (`valid` or why a token was refused, see `jwt::Rejection::label`) |
//! | `portcullis_jwt_cache_requests_total` | counter | `result` (`hit`: a token verified before, within its lifetime; `miss`) |
//! | `portcullis_jwks_refreshes_total` | counter | `issuer`, `result` (`ok`, `failed`) |
//! | `portcullis_jwks_keys` | gauge (usable keys in the set now serving) | `issuer` |
//!
//! Issuer ids come from the config; never a subject, a token or a claim.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// The families; cheap to clone.
#[derive(Clone)]
pub struct JwtFamilies {
    verifications: IntCounterVec,
    cache: IntCounterVec,
    refreshes: IntCounterVec,
    keys: IntGaugeVec,
}

impl JwtFamilies {
    pub fn new() -> prometheus::Result<JwtFamilies> {
        Ok(JwtFamilies {
            verifications: IntCounterVec::new(
                Opts::new(
                    "portcullis_jwt_verifications_total",
                    "Bearer tokens checked (signature and claims; a cached token is not checked again), by issuer and result: valid, or why the token was refused.",
                ),
                &["issuer", "result"],
            )?,
            cache: IntCounterVec::new(
                Opts::new(
                    "portcullis_jwt_cache_requests_total",
                    "Bearer tokens looked up in the verified-token cache: hit (verified before, still within its lifetime) or miss.",
                ),
                &["result"],
            )?,
            refreshes: IntCounterVec::new(
                Opts::new(
                    "portcullis_jwks_refreshes_total",
                    "Fetches of an issuer's JSON Web Key Set (jwks_url or discovery), by result: ok, or failed (the last good set keeps serving).",
                ),
                &["issuer", "result"],
            )?,
            keys: IntGaugeVec::new(
                Opts::new(
                    "portcullis_jwks_keys",
                    "Usable keys in the key set each issuer's tokens are verified with.",
                ),
                &["issuer"],
            )?,
        })
    }

    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.verifications.clone()))?;
        registry.register(Box::new(self.cache.clone()))?;
        registry.register(Box::new(self.refreshes.clone()))?;
        registry.register(Box::new(self.keys.clone()))?;
        Ok(())
    }

    /// The counter of `issuer`'s verifications with `result`.
    pub fn verification(&self, issuer: &str, result: &str) -> IntCounter {
        self.verifications.with_label_values(&[issuer, result])
    }

    /// The hit and miss counters of the verified-token cache.
    pub fn cache(&self) -> (IntCounter, IntCounter) {
        (
            self.cache.with_label_values(&["hit"]),
            self.cache.with_label_values(&["miss"]),
        )
    }

    /// The counter of `issuer`'s key-set fetches with `ok`.
    pub fn refresh(&self, issuer: &str, ok: bool) -> IntCounter {
        self.refreshes
            .with_label_values(&[issuer, if ok { "ok" } else { "failed" }])
    }

    /// The usable-key gauge of `issuer`.
    pub fn keys(&self, issuer: &str) -> IntGauge {
        self.keys.with_label_values(&[issuer])
    }
}
