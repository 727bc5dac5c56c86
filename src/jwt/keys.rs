//! A JSON Web Key Set (RFC 7517) as an identity provider publishes it,
//! reduced to the public signing keys portcullis can verify with: RSA,
//! EC P-256 and P-384, and Ed25519. Symmetric (`oct`) keys, encryption
//! keys and curves it does not know are skipped and named, never used.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;

use super::Alg;

/// Longest key set accepted (a provider's set is a few KiB).
pub const MAX_JWKS_BYTES: usize = 1 << 20;

/// The public key of one JWK, ready for `ring`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// Modulus and exponent, big-endian.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// The uncompressed point `04 || x || y`.
    P256(Vec<u8>),
    /// The uncompressed point `04 || x || y`.
    P384(Vec<u8>),
    /// The 32-byte public key.
    Ed25519(Vec<u8>),
}

impl PublicKey {
    /// Whether `alg` is a signature algorithm of this kind of key: the
    /// check that refuses, for example, an `ES256` header with an RSA key.
    pub fn fits(&self, alg: Alg) -> bool {
        use Alg::*;
        match self {
            PublicKey::Rsa { .. } => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            PublicKey::P256(_) => alg == ES256,
            PublicKey::P384(_) => alg == ES384,
            PublicKey::Ed25519(_) => alg == EdDSA,
        }
    }
}

/// One usable signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    pub kid: Option<String>,
    /// The key's own `alg`, when it names one: then only that algorithm.
    pub alg: Option<Alg>,
    pub key: PublicKey,
}

impl Jwk {
    /// Whether a token signed with `alg` may be checked with this key.
    pub fn accepts(&self, alg: Alg) -> bool {
        self.key.fits(alg) && self.alg.is_none_or(|own| own == alg)
    }
}

/// The usable keys of a set, and what was skipped and why (for `check`
/// and the reload log).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    pub keys: Vec<Jwk>,
    pub skipped: Vec<String>,
}

/// Why a key set cannot be used at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwksError {
    #[error("the key set is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("not a JSON Web Key Set: {0}")]
    NotJwks(String),
    #[error("no usable signing key ({})", .0.join("; "))]
    NoUsableKey(Vec<String>),
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawKey {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

impl KeySet {
    /// Parse a JWKS document. Keys that cannot sign tokens portcullis
    /// verifies are skipped with a reason; a set left with none is an
    /// error.
    pub fn parse(json: &[u8]) -> Result<KeySet, JwksError> {
        if json.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge);
        }
        let raw: RawSet =
            serde_json::from_slice(json).map_err(|e| JwksError::NotJwks(e.to_string()))?;
        let mut set = KeySet::default();
        for (i, value) in raw.keys.into_iter().enumerate() {
            let name = value
                .get("kid")
                .and_then(|k| k.as_str())
                .map_or_else(|| format!("key {i}"), |k| format!("key {k:?}"));
            match serde_json::from_value::<RawKey>(value)
                .map_err(|e| e.to_string())
                .and_then(|raw| usable(&raw))
            {
                Ok(jwk) => set.keys.push(jwk),
                Err(why) => set.skipped.push(format!("{name}: {why}")),
            }
        }
        if set.keys.is_empty() {
            return Err(JwksError::NoUsableKey(set.skipped));
        }
        Ok(set)
    }

    /// The keys a token with `alg` and `kid` may have been signed with:
    /// the one named by `kid`, or without a `kid`, every key of the
    /// algorithm's kind.
    pub fn candidates<'a>(
        &'a self,
        alg: Alg,
        kid: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Jwk> + 'a {
        self.keys
            .iter()
            .filter(move |k| k.accepts(alg) && kid.is_none_or(|kid| k.kid.as_deref() == Some(kid)))
    }
}

fn usable(raw: &RawKey) -> Result<Jwk, String> {
    if let Some(u) = raw.use_.as_deref() {
        if u != "sig" {
            return Err(format!("use {u:?}, not a signing key"));
        }
    }
    let alg = match raw.alg.as_deref() {
        None => None,
        Some(a) => Some(Alg::parse(a).ok_or_else(|| format!("algorithm {a:?} not supported"))?),
    };
    let field = |v: &Option<String>, name: &str| -> Result<Vec<u8>, String> {
        let text = v.as_deref().ok_or_else(|| format!("no {name:?}"))?;
        URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| format!("{name:?} is not base64url"))
    };
    let key = match (raw.kty.as_str(), raw.crv.as_deref()) {
        ("RSA", _) => {
            let n = strip_zeros(field(&raw.n, "n")?);
            let e = strip_zeros(field(&raw.e, "e")?);
            // ring verifies with 2048..=8192-bit moduli.
            if !(256..=1024).contains(&n.len()) {
                return Err(format!("RSA modulus of {} bits", n.len() * 8));
            }
            if e.is_empty() || e.len() > 4 {
                return Err("RSA exponent out of range".into());
            }
            PublicKey::Rsa { n, e }
        }
        ("EC", Some("P-256")) => {
            PublicKey::P256(point(field(&raw.x, "x")?, field(&raw.y, "y")?, 32)?)
        }
        ("EC", Some("P-384")) => {
            PublicKey::P384(point(field(&raw.x, "x")?, field(&raw.y, "y")?, 48)?)
        }
        ("OKP", Some("Ed25519")) => {
            let x = field(&raw.x, "x")?;
            if x.len() != 32 {
                return Err("Ed25519 key is not 32 bytes".into());
            }
            PublicKey::Ed25519(x)
        }
        ("oct", _) => return Err("symmetric key, never used".into()),
        (kty, crv) => {
            return Err(match crv {
                Some(crv) => format!("key type {kty:?} on curve {crv:?} not supported"),
                None => format!("key type {kty:?} not supported"),
            })
        }
    };
    let jwk = Jwk {
        kid: raw.kid.clone(),
        alg,
        key,
    };
    if let Some(a) = alg {
        if !jwk.key.fits(a) {
            return Err(format!("algorithm {:?} does not fit its key", a.as_str()));
        }
    }
    Ok(jwk)
}

fn strip_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let zeros = v.iter().take_while(|b| **b == 0).count();
    v.drain(..zeros);
    v
}

fn point(x: Vec<u8>, y: Vec<u8>, len: usize) -> Result<Vec<u8>, String> {
    if x.len() != len || y.len() != len {
        return Err(format!("EC coordinates are not {len} bytes"));
    }
    let mut p = Vec::with_capacity(1 + 2 * len);
    p.push(4);
    p.extend_from_slice(&x);
    p.extend_from_slice(&y);
    Ok(p)
}
