//! Verifying a compact JWS (RFC 7515) bearer token against a key set and
//! what an issuer's tokens must say (RFC 7519 claims), with `ring`.
//!
//! Only the asymmetric algorithms in [`Alg`]: `none` and the HMAC family
//! are refused before any key is looked at, so neither an unsigned token
//! nor one "signed" with a public key as an HMAC secret can pass. The
//! header's `alg` must be one the issuer allows and fit the key's type.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::{Map, Value};

use super::keys::{Jwk, KeySet, PublicKey};
use super::Alg;

/// Longest token accepted, in bytes (the header, payload and signature
/// together); longer ones are refused before decoding.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Longest consumer name taken from a token.
pub const MAX_CONSUMER_BYTES: usize = 256;

/// What an issuer's tokens must carry, as its config says.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    /// Must equal the token's `iss`.
    pub issuer: &'a str,
    /// The token's `aud` must contain one of them.
    pub audiences: &'a [String],
    /// Signature algorithms allowed for this issuer.
    pub algorithms: &'a [Alg],
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    pub leeway: u64,
    /// The claim that names the consumer.
    pub consumer_claim: &'a str,
    /// The claim with the scopes: a space-separated string or an array.
    pub scopes_claim: &'a str,
}

/// A token that passed: who it names, what it allows, until when.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub consumer: String,
    pub scopes: Vec<String>,
    /// `exp`, in seconds since the epoch.
    pub expires_at: u64,
    /// Every claim, for `forward_claims`.
    pub claims: Map<String, Value>,
}

/// Why a token was refused. Each is a `401` with
/// `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750 §3.1) and
/// names no detail of the token; the label is for metrics and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("the token is not a compact JWS")]
    Malformed,
    #[error("the token's algorithm is not supported")]
    UnsupportedAlgorithm,
    #[error("the token's algorithm is not allowed for its issuer")]
    AlgorithmNotAllowed,
    #[error("no key of the issuer matches the token")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is from another issuer")]
    WrongIssuer,
    #[error("the token is for another audience")]
    WrongAudience,
    #[error("the token names no usable consumer")]
    NoConsumer,
}

impl Rejection {
    /// A stable label (metrics, access log).
    pub fn label(self) -> &'static str {
        match self {
            Rejection::TooLarge => "too_large",
            Rejection::Malformed => "malformed",
            Rejection::UnsupportedAlgorithm => "unsupported_algorithm",
            Rejection::AlgorithmNotAllowed => "algorithm_not_allowed",
            Rejection::UnknownKey => "unknown_key",
            Rejection::BadSignature => "bad_signature",
            Rejection::Expired => "expired",
            Rejection::NotYetValid => "not_yet_valid",
            Rejection::WrongIssuer => "wrong_issuer",
            Rejection::WrongAudience => "wrong_audience",
            Rejection::NoConsumer => "no_consumer",
        }
    }
}

/// The parts of a token before any key is consulted: its algorithm and
/// key id (an unknown `kid` is what makes a URL key set refresh).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub alg: Alg,
    pub kid: Option<String>,
}

/// Split and decode a token's header; refuses what no key could verify.
pub fn header(token: &str) -> Result<Header, Rejection> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Rejection::TooLarge);
    }
    let (head, _, _) = split(token)?;
    let json: Map<String, Value> = decode_json(head)?;
    let alg = json
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(Rejection::Malformed)?;
    let alg = Alg::parse(alg).ok_or(Rejection::UnsupportedAlgorithm)?;
    // RFC 7515 §4.1.11: a critical extension we do not implement must be
    // refused.
    if json.contains_key("crit") {
        return Err(Rejection::UnsupportedAlgorithm);
    }
    let kid = match json.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(Rejection::Malformed),
    };
    Ok(Header { alg, kid })
}

/// The `iss` a token claims, read without verifying anything: which
/// issuer's keys to verify it with.
pub fn claimed_issuer(token: &str) -> Result<String, Rejection> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Rejection::TooLarge);
    }
    let (_, payload, _) = split(token)?;
    match decode_json(payload)?.remove("iss") {
        Some(Value::String(iss)) => Ok(iss),
        _ => Err(Rejection::WrongIssuer),
    }
}

/// Verify `token` against `keys` and `expected` at `now` (seconds since
/// the epoch).
pub fn verify(
    token: &str,
    keys: &KeySet,
    expected: &Expected<'_>,
    now: u64,
) -> Result<Verified, Rejection> {
    let header = header(token)?;
    if !expected.algorithms.contains(&header.alg) {
        return Err(Rejection::AlgorithmNotAllowed);
    }
    let (head, payload, sig) = split(token)?;
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| Rejection::Malformed)?;
    let signed = &token.as_bytes()[..head.len() + 1 + payload.len()];
    let mut candidates = keys
        .candidates(header.alg, header.kid.as_deref())
        .peekable();
    if candidates.peek().is_none() {
        return Err(Rejection::UnknownKey);
    }
    if !candidates.any(|k| signature_verifies(k, header.alg, signed, &sig)) {
        return Err(Rejection::BadSignature);
    }
    let claims: Map<String, Value> = decode_json(payload)?;
    check_claims(claims, expected, now)
}

fn split(token: &str) -> Result<(&str, &str, &str), Rejection> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) if !h.is_empty() && !p.is_empty() && !s.is_empty() => {
            Ok((h, p, s))
        }
        _ => Err(Rejection::Malformed),
    }
}

fn decode_json(part: &str) -> Result<Map<String, Value>, Rejection> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Rejection::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| Rejection::Malformed)
}

fn signature_verifies(key: &Jwk, alg: Alg, signed: &[u8], sig: &[u8]) -> bool {
    use Alg::*;
    match (&key.key, alg) {
        (PublicKey::Rsa { n, e }, _) => {
            let params: &signature::RsaParameters = match alg {
                RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                PS384 => &signature::RSA_PSS_2048_8192_SHA384,
                PS512 => &signature::RSA_PSS_2048_8192_SHA512,
                _ => return false,
            };
            RsaPublicKeyComponents { n, e }
                .verify(params, signed, sig)
                .is_ok()
        }
        (PublicKey::P256(point), ES256) => {
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(signed, sig)
                .is_ok()
        }
        (PublicKey::P384(point), ES384) => {
            UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                .verify(signed, sig)
                .is_ok()
        }
        (PublicKey::Ed25519(x), EdDSA) => UnparsedPublicKey::new(&signature::ED25519, x)
            .verify(signed, sig)
            .is_ok(),
        _ => false,
    }
}

fn check_claims(
    claims: Map<String, Value>,
    expected: &Expected<'_>,
    now: u64,
) -> Result<Verified, Rejection> {
    let time = |name: &str| -> Result<Option<u64>, Rejection> {
        match claims.get(name) {
            None => Ok(None),
            // NumericDate (RFC 7519 §2): seconds, possibly fractional.
            Some(v) => v
                .as_f64()
                .filter(|t| t.is_finite() && *t >= 0.0)
                .map(|t| Some(t as u64))
                .ok_or(Rejection::Malformed),
        }
    };
    // A token without `exp` would be valid for ever: refused.
    let expires_at = time("exp")?.ok_or(Rejection::Malformed)?;
    if now > expires_at.saturating_add(expected.leeway) {
        return Err(Rejection::Expired);
    }
    let ahead = now.saturating_add(expected.leeway);
    if time("nbf")?.is_some_and(|nbf| nbf > ahead) || time("iat")?.is_some_and(|iat| iat > ahead) {
        return Err(Rejection::NotYetValid);
    }
    if claims.get("iss").and_then(Value::as_str) != Some(expected.issuer) {
        return Err(Rejection::WrongIssuer);
    }
    if !expected.audiences.is_empty() {
        let matches = |a: &Value| {
            a.as_str()
                .is_some_and(|a| expected.audiences.iter().any(|e| e == a))
        };
        let ok = match claims.get("aud") {
            Some(Value::Array(list)) => list.iter().any(matches),
            Some(one) => matches(one),
            None => false,
        };
        if !ok {
            return Err(Rejection::WrongAudience);
        }
    }
    let consumer = match claims.get(expected.consumer_claim) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(Rejection::NoConsumer),
    };
    // It becomes a header value and a log field: visible ASCII only.
    if consumer.is_empty()
        || consumer.len() > MAX_CONSUMER_BYTES
        || !consumer.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return Err(Rejection::NoConsumer);
    }
    let scopes = match claims.get(expected.scopes_claim) {
        Some(Value::String(s)) => s.split_ascii_whitespace().map(str::to_string).collect(),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    };
    Ok(Verified {
        consumer,
        scopes,
        expires_at,
        claims,
    })
}
