//! OAuth2 / OpenID Connect bearer tokens: JSON Web Tokens (RFC 7519)
//! signed by an identity provider, checked against its published key set
//! ([`keys`], RFC 7517) with `ring` ([`verify`]).
//!
//! This layer is pure: bytes and a time in, a verdict out. Fetching key
//! sets, caching verified tokens and turning a token into a consumer of a
//! route are built on it (issue #25).

pub mod keys;
pub mod verify;

#[doc(hidden)]
pub mod testing;
#[cfg(test)]
mod tests;

pub use keys::{Jwk, JwksError, KeySet, PublicKey};
pub use verify::{claimed_issuer, header, verify, Expected, Header, Rejection, Verified};

/// The signature algorithms portcullis verifies (RFC 7518 §3.1, RFC 8037
/// for `EdDSA`): asymmetric ones only. `none` and `HS*` are not among
/// them, so they can be neither configured nor accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl Alg {
    pub const ALL: [Alg; 9] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
    ];

    /// The algorithm a JOSE header or a config names (case-sensitive, as
    /// RFC 7515 §4.1.1 has it).
    pub fn parse(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }
}
