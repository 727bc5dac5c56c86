//! Keys and tokens made at test time, for the tests of this crate, its
//! integration tests and benchmarks: RSA (by the `openssl` CLI, as
//! `scripts/install-deps.sh --test` provides), EC P-256 and P-384 and
//! Ed25519 (by `ring`). Not for production use: nothing here is careful
//! with errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::json;

use super::{Alg, KeySet};

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A 2048-bit RSA key (PKCS#1 `RSAPrivateKey` DER, what `openssl genpkey
/// -outform DER` writes), made once per test run.
fn rsa_der() -> &'static [u8] {
    static KEY: OnceLock<Vec<u8>> = OnceLock::new();
    KEY.get_or_init(|| {
        let out = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .args(["-outform", "DER"])
            .output()
            .expect("openssl (scripts/install-deps.sh --test installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    })
}

/// How a test key signs a message with an algorithm.
pub type Sign = Box<dyn Fn(Alg, &[u8]) -> Vec<u8>>;

/// A signing key, its JWK and how it signs.
pub struct Signer {
    pub kid: String,
    pub jwk: serde_json::Value,
    pub sign: Sign,
}

/// An RSA key (one per test run, shared by every `rsa` signer).
pub fn rsa(kid: &str) -> Signer {
    let pair = RsaKeyPair::from_der(rsa_der()).unwrap();
    let public = signature::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
    let jwk = json!({
        "kty": "RSA", "kid": kid, "use": "sig",
        "n": b64(&public.n),
        "e": b64(&public.e),
    });
    Signer {
        kid: kid.into(),
        jwk,
        sign: Box::new(move |alg, msg| {
            let pad: &dyn signature::RsaEncoding = match alg {
                Alg::RS256 => &signature::RSA_PKCS1_SHA256,
                Alg::RS384 => &signature::RSA_PKCS1_SHA384,
                Alg::RS512 => &signature::RSA_PKCS1_SHA512,
                Alg::PS256 => &signature::RSA_PSS_SHA256,
                Alg::PS384 => &signature::RSA_PSS_SHA384,
                _ => &signature::RSA_PSS_SHA512,
            };
            let mut sig = vec![0; pair.public().modulus_len()];
            pair.sign(pad, &SystemRandom::new(), msg, &mut sig).unwrap();
            sig
        }),
    }
}

/// A new EC key: P-256 for `ES256`, P-384 otherwise.
pub fn ec(kid: &str, alg: Alg) -> Signer {
    let rng = SystemRandom::new();
    let (signing, crv, len) = match alg {
        Alg::ES256 => (&signature::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", 32),
        _ => (&signature::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", 48),
    };
    let doc = EcdsaKeyPair::generate_pkcs8(signing, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(signing, doc.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref().to_vec();
    let jwk = json!({
        "kty": "EC", "kid": kid, "crv": crv,
        "x": b64(&point[1..1 + len]), "y": b64(&point[1 + len..]),
    });
    Signer {
        kid: kid.into(),
        jwk,
        sign: Box::new(move |_, msg| {
            pair.sign(&SystemRandom::new(), msg)
                .unwrap()
                .as_ref()
                .to_vec()
        }),
    }
}

/// A new Ed25519 key.
pub fn ed25519(kid: &str) -> Signer {
    let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
    let jwk = json!({
        "kty": "OKP", "kid": kid, "crv": "Ed25519",
        "x": b64(pair.public_key().as_ref()),
    });
    Signer {
        kid: kid.into(),
        jwk,
        sign: Box::new(move |_, msg| pair.sign(msg).as_ref().to_vec()),
    }
}

/// The key set of `signers`.
pub fn set(signers: &[&Signer]) -> KeySet {
    let doc = json!({ "keys": signers.iter().map(|s| s.jwk.clone()).collect::<Vec<_>>() });
    KeySet::parse(doc.to_string().as_bytes()).unwrap()
}

/// A compact JWS of `claims` under `header`, signed by `signer`.
pub fn token_with(
    header: serde_json::Value,
    claims: &serde_json::Value,
    signer: &Signer,
) -> String {
    let alg = Alg::parse(header["alg"].as_str().unwrap()).unwrap();
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = (signer.sign)(alg, input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

/// The JWKS document of `signers`.
pub fn jwks(signers: &[&Signer]) -> String {
    json!({ "keys": signers.iter().map(|s| s.jwk.clone()).collect::<Vec<_>>() }).to_string()
}

/// A token of `claims` signed by `signer` with `alg`, naming its `kid`.
pub fn token(alg: Alg, claims: &serde_json::Value, signer: &Signer) -> String {
    token_with(
        json!({"alg": alg.as_str(), "kid": signer.kid, "typ": "JWT"}),
        claims,
        signer,
    )
}
