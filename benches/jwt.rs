//! Bearer-token verification: one signature and claims check per
//! algorithm (RSA 2048 with PKCS#1 v1.5 and PSS, P-256, Ed25519), and the
//! cached path a repeated token takes (a SHA-256 and a lookup). A token
//! seen again should cost a small fraction of a verification.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::time::{SystemTime, UNIX_EPOCH};

use portcullis::bearer::{BearerTable, Issuers};
use portcullis::jwt::testing::{ec, ed25519, jwks, rsa, set, token};
use portcullis::jwt::{verify, Alg, Expected};
use serde_json::json;

const NOW: u64 = 1_800_000_000;

fn claims() -> serde_json::Value {
    json!({
        "iss": "https://login.example.com/", "aud": "orders-api", "sub": "user-42",
        "exp": NOW + 600, "iat": NOW - 10, "scope": "orders:read orders:write",
    })
}

fn bench(c: &mut Criterion) {
    let r = rsa("r");
    let p256 = ec("p", Alg::ES256);
    let ed = ed25519("e");
    let keys = set(&[&r, &p256, &ed]);
    let audiences = vec!["orders-api".to_string()];
    let expected = Expected {
        issuer: "https://login.example.com/",
        audiences: &audiences,
        algorithms: &Alg::ALL,
        leeway: 30,
        consumer_claim: "sub",
        scopes_claim: "scope",
    };
    let mut group = c.benchmark_group("jwt_verify");
    for (alg, signer) in [
        (Alg::RS256, &r),
        (Alg::PS256, &r),
        (Alg::ES256, &p256),
        (Alg::EdDSA, &ed),
    ] {
        let t = token(alg, &claims(), signer);
        assert!(verify(&t, &keys, &expected, NOW).is_ok());
        group.bench_function(alg.as_str(), |b| {
            b.iter(|| verify(black_box(&t), &keys, &expected, NOW))
        });
    }
    group.finish();

    // The path of a token seen before: `Issuers::authenticate` as the
    // gateway calls it (digest, lookup, expiry and issuer checks).
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("jwks.json"), jwks(&[&r])).expect("jwks");
    let path = dir.path().join("portcullis.toml");
    std::fs::write(
        &path,
        "[pools.p]\nbackends = [\"127.0.0.1:1\"]\n[[jwt_issuers]]\nid = \"main\"\nissuer = \"https://login.example.com/\"\naudiences = [\"orders-api\"]\njwks_file = \"jwks.json\"\n",
    )
    .expect("config");
    let config = portcullis::config::load(&path).expect("a valid config");
    let issuers = Issuers::build(&config, &BearerTable::detached()).expect("issuers");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut live = claims();
    live["exp"] = json!(now + 3600);
    live["iat"] = json!(now);
    let t = token(Alg::RS256, &live, &r);
    assert!(issuers.authenticate(&t, &[], now).is_ok());
    c.bench_function("jwt_cached_hit", |b| {
        b.iter(|| issuers.authenticate(black_box(&t), &[], now))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
