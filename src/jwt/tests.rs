//! Tokens signed at test time with keys made at test time: RSA (by the
//! `openssl` CLI, as `scripts/install-deps.sh --test` provides), EC P-256
//! and P-384 and Ed25519 (by `ring`), then verified, tampered with and
//! forged the ways an attacker would.

use std::sync::OnceLock;

use serde_json::json;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::testing::{b64, ec, ed25519, rsa, set, token, token_with, Signer};
use super::*;

const NOW: u64 = 1_800_000_000;
const ISSUER: &str = "https://login.example.com/";

fn claims() -> serde_json::Value {
    json!({
        "iss": ISSUER, "aud": "orders-api", "sub": "user-42",
        "exp": NOW + 600, "iat": NOW - 10, "scope": "orders:read orders:write",
    })
}

fn expected(algorithms: &[Alg]) -> Expected<'_> {
    static AUDIENCES: OnceLock<Vec<String>> = OnceLock::new();
    Expected {
        issuer: ISSUER,
        audiences: AUDIENCES.get_or_init(|| vec!["orders-api".into(), "billing-api".into()]),
        algorithms,
        leeway: 30,
        consumer_claim: "sub",
        scopes_claim: "scope",
    }
}

fn check(token: &str, keys: &KeySet) -> Result<Verified, Rejection> {
    verify(token, keys, &expected(&Alg::ALL), NOW)
}

/// [`claims`] with `name` set to `value` (`None`: removed), signed with
/// the Ed25519 `signer` and checked against `keys`.
fn with_claim(
    signer: &Signer,
    keys: &KeySet,
    name: &str,
    value: Option<serde_json::Value>,
) -> Result<Verified, Rejection> {
    let mut c = claims();
    match value {
        Some(v) => c[name] = v,
        None => {
            c.as_object_mut().unwrap().remove(name);
        }
    }
    check(&token(Alg::EdDSA, &c, signer), keys)
}

#[test]
fn every_algorithm_verifies_tokens_signed_with_its_key() {
    let r = rsa("r");
    let p256 = ec("p256", Alg::ES256);
    let p384 = ec("p384", Alg::ES384);
    let ed = ed25519("ed");
    let keys = set(&[&r, &p256, &p384, &ed]);
    let cases = [
        (Alg::RS256, &r),
        (Alg::RS384, &r),
        (Alg::RS512, &r),
        (Alg::PS256, &r),
        (Alg::PS384, &r),
        (Alg::PS512, &r),
        (Alg::ES256, &p256),
        (Alg::ES384, &p384),
        (Alg::EdDSA, &ed),
    ];
    for (alg, signer) in cases {
        let v =
            check(&token(alg, &claims(), signer), &keys).unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(v.consumer, "user-42");
        assert_eq!(v.scopes, ["orders:read", "orders:write"]);
        assert_eq!(v.expires_at, NOW + 600);
        assert_eq!(v.claims["aud"], "orders-api");
    }
}

#[test]
fn time_claims_are_checked_with_the_leeway() {
    let ed = ed25519("ed");
    let keys = set(&[&ed]);
    let with = |k: &str, v: u64| with_claim(&ed, &keys, k, Some(json!(v))).map(|v| v.consumer);
    assert_eq!(with("exp", NOW - 31), Err(Rejection::Expired));
    assert!(with("exp", NOW - 29).is_ok(), "inside the 30 s leeway");
    assert_eq!(with("nbf", NOW + 31), Err(Rejection::NotYetValid));
    assert!(with("nbf", NOW + 29).is_ok());
    assert_eq!(with("iat", NOW + 120), Err(Rejection::NotYetValid));
    assert_eq!(
        with_claim(&ed, &keys, "exp", None),
        Err(Rejection::Malformed),
        "a token without exp would never expire"
    );
    assert_eq!(
        with_claim(&ed, &keys, "exp", Some(json!("tomorrow"))),
        Err(Rejection::Malformed)
    );
}

#[test]
fn issuer_and_audience_must_match() {
    let ed = ed25519("ed");
    let keys = set(&[&ed]);
    let with =
        |k: &str, v: serde_json::Value| with_claim(&ed, &keys, k, Some(v)).map(|v| v.consumer);
    assert_eq!(
        with("iss", json!("https://evil.example/")),
        Err(Rejection::WrongIssuer)
    );
    assert_eq!(
        with("iss", json!("https://login.example.com")),
        Err(Rejection::WrongIssuer)
    );
    assert_eq!(
        with("aud", json!("other-api")),
        Err(Rejection::WrongAudience)
    );
    assert_eq!(
        with("aud", json!(["other-api", "x"])),
        Err(Rejection::WrongAudience)
    );
    assert!(with("aud", json!(["other-api", "billing-api"])).is_ok());
    assert_eq!(
        with_claim(&ed, &keys, "aud", None),
        Err(Rejection::WrongAudience)
    );
}

#[test]
fn an_unknown_kid_passes_once_the_key_set_has_the_key() {
    let old = ec("2025", Alg::ES256);
    let new = ec("2026", Alg::ES256);
    let t = token(Alg::ES256, &claims(), &new);
    assert_eq!(header(&t).unwrap().kid.as_deref(), Some("2026"));
    assert_eq!(check(&t, &set(&[&old])), Err(Rejection::UnknownKey));
    assert!(check(&t, &set(&[&old, &new])).is_ok());
}

#[test]
fn without_a_kid_every_key_of_the_algorithm_is_tried() {
    let a = ed25519("a");
    let b = ed25519("b");
    let t = token_with(json!({"alg": "EdDSA"}), &claims(), &b);
    assert!(check(&t, &set(&[&a, &b])).is_ok());
    assert_eq!(check(&t, &set(&[&a])), Err(Rejection::BadSignature));
}

#[test]
fn tampered_payloads_and_signatures_are_refused() {
    let r = rsa("r");
    let keys = set(&[&r]);
    let t = token(Alg::RS256, &claims(), &r);
    let parts: Vec<&str> = t.split('.').collect();
    let mut richer = claims();
    richer["scope"] = json!("orders:read orders:write admin");
    let swapped = format!(
        "{}.{}.{}",
        parts[0],
        b64(richer.to_string().as_bytes()),
        parts[2]
    );
    assert_eq!(check(&swapped, &keys), Err(Rejection::BadSignature));
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    sig[10] ^= 1;
    let flipped = format!("{}.{}.{}", parts[0], parts[1], b64(&sig));
    assert_eq!(check(&flipped, &keys), Err(Rejection::BadSignature));
    let other = rsa_other_signature(&t);
    assert_eq!(check(&other, &keys), Err(Rejection::BadSignature));
}

/// The token with a signature made by a key the issuer never had.
fn rsa_other_signature(t: &str) -> String {
    let stranger = ed25519("r");
    let parts: Vec<&str> = t.split('.').collect();
    let sig = (stranger.sign)(Alg::EdDSA, format!("{}.{}", parts[0], parts[1]).as_bytes());
    format!("{}.{}.{}", parts[0], parts[1], b64(&sig))
}

#[test]
fn unsigned_and_hmac_tokens_never_pass() {
    let r = rsa("r");
    let keys = set(&[&r]);
    let body = b64(claims().to_string().as_bytes());
    // `alg: none` with the empty signature RFC 7519 §6.1 gives it, and
    // with some bytes in its place.
    let none = b64(br#"{"alg":"none","kid":"r"}"#);
    assert_eq!(
        check(&format!("{none}.{body}."), &keys),
        Err(Rejection::Malformed)
    );
    assert_eq!(
        check(&format!("{none}.{body}.c2ln"), &keys),
        Err(Rejection::UnsupportedAlgorithm)
    );
    // RS256 turned HS256, "signed" with the RSA public key as the HMAC
    // secret (the classic key confusion).
    let hs = b64(br#"{"alg":"HS256","kid":"r"}"#);
    let input = format!("{hs}.{body}");
    let secret = serde_json::to_vec(&r.jwk).unwrap();
    let mac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret),
        input.as_bytes(),
    );
    assert_eq!(
        check(&format!("{input}.{}", b64(mac.as_ref())), &keys),
        Err(Rejection::UnsupportedAlgorithm)
    );
    assert_eq!(Alg::parse("HS256"), None);
    assert_eq!(Alg::parse("none"), None);
}

#[test]
fn the_algorithm_must_be_allowed_and_fit_the_key() {
    let r = rsa("r");
    let p256 = ec("p", Alg::ES256);
    let keys = set(&[&r, &p256]);
    let t = token(Alg::RS256, &claims(), &r);
    assert_eq!(
        verify(&t, &keys, &expected(&[Alg::ES256]), NOW),
        Err(Rejection::AlgorithmNotAllowed)
    );
    // An ES256 header pointing at the RSA key: no key of that kind.
    let mismatched = token_with(json!({"alg": "ES256", "kid": "r"}), &claims(), &p256);
    assert_eq!(check(&mismatched, &keys), Err(Rejection::UnknownKey));
}

#[test]
fn malformed_tokens_are_refused_before_any_key() {
    let ed = ed25519("ed");
    let keys = set(&[&ed]);
    let good = token(Alg::EdDSA, &claims(), &ed);
    let parts: Vec<&str> = good.split('.').collect();
    for bad in [
        String::new(),
        "abc".to_string(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{good}.extra"),
        format!("{}..{}", parts[0], parts[2]),
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}", b64(b"not json"), parts[1], parts[2]),
        format!("{}.{}.{}", b64(b"[1,2]"), parts[1], parts[2]),
        format!("{}.{}.{}", b64(br#"{"kid":"ed"}"#), parts[1], parts[2]),
        format!(
            "{}.{}.{}",
            b64(br#"{"alg":"EdDSA","kid":7}"#),
            parts[1],
            parts[2]
        ),
        format!("{}.{}.%%", parts[0], parts[1]),
    ] {
        assert_eq!(check(&bad, &keys), Err(Rejection::Malformed), "{bad:?}");
    }
    let crit = token_with(
        json!({"alg": "EdDSA", "kid": "ed", "crit": ["exp"], "exp": 1}),
        &claims(),
        &ed,
    );
    assert_eq!(check(&crit, &keys), Err(Rejection::UnsupportedAlgorithm));
    let huge = format!(
        "{}.{}.{}",
        parts[0],
        "a".repeat(verify::MAX_TOKEN_BYTES),
        parts[2]
    );
    assert_eq!(check(&huge, &keys), Err(Rejection::TooLarge));
}

#[test]
fn the_consumer_claim_must_be_a_short_printable_name() {
    let ed = ed25519("ed");
    let keys = set(&[&ed]);
    let with = |v: serde_json::Value| with_claim(&ed, &keys, "sub", Some(v)).map(|v| v.consumer);
    assert_eq!(with(json!(42)), Ok("42".to_string()));
    assert_eq!(with(json!("")), Err(Rejection::NoConsumer));
    assert_eq!(with(json!("a\r\nx-admin: 1")), Err(Rejection::NoConsumer));
    assert_eq!(with(json!("x".repeat(257))), Err(Rejection::NoConsumer));
    assert_eq!(with(json!(["a"])), Err(Rejection::NoConsumer));
    assert_eq!(
        with_claim(&ed, &keys, "sub", None),
        Err(Rejection::NoConsumer)
    );
}

#[test]
fn scopes_come_from_a_string_or_an_array() {
    let ed = ed25519("ed");
    let keys = set(&[&ed]);
    let listed = json!(["orders:read", 7, "orders:write"]);
    let v = with_claim(&ed, &keys, "scope", Some(listed)).unwrap();
    assert_eq!(v.scopes, ["orders:read", "orders:write"]);
    let v = with_claim(&ed, &keys, "scope", None).unwrap();
    assert!(v.scopes.is_empty());
}

#[test]
fn key_sets_keep_signing_keys_and_name_what_they_skip() {
    let ed = ed25519("ed");
    let doc = json!({"keys": [
        ed.jwk,
        {"kty": "oct", "kid": "shared", "k": "c2VjcmV0"},
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
        {"kty": "RSA", "kid": "tiny", "n": b64(&[0xc5; 64]), "e": "AQAB"},
        {"kty": "EC", "kid": "k1", "crv": "secp256k1", "x": "AA", "y": "AA"},
        {"kty": "OKP", "kid": "mismatch", "crv": "Ed25519", "alg": "RS256", "x": b64(&[1; 32])},
        {"kty": "OKP", "kid": "weird-alg", "crv": "Ed25519", "alg": "HS256", "x": b64(&[1; 32])},
        {"kid": "no-kty"},
    ]});
    let set = KeySet::parse(doc.to_string().as_bytes()).unwrap();
    assert_eq!(set.keys.len(), 1);
    assert_eq!(set.keys[0].kid.as_deref(), Some("ed"));
    let skipped = set.skipped.join("\n");
    for kid in [
        "shared",
        "enc",
        "tiny",
        "k1",
        "mismatch",
        "weird-alg",
        "no-kty",
    ] {
        assert!(skipped.contains(&format!("{kid:?}")), "{kid} in {skipped}");
    }
    assert!(skipped.contains("symmetric key"), "{skipped}");

    let only_bad = json!({"keys": [{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}]});
    match KeySet::parse(only_bad.to_string().as_bytes()) {
        Err(JwksError::NoUsableKey(why)) => assert!(why[0].contains("symmetric"), "{why:?}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(KeySet::parse(b"{}"), Err(JwksError::NotJwks(_))));
    assert!(matches!(
        KeySet::parse(b"not json"),
        Err(JwksError::NotJwks(_))
    ));
    let huge = vec![b' '; keys::MAX_JWKS_BYTES + 1];
    assert_eq!(KeySet::parse(&huge), Err(JwksError::TooLarge));
}
