//! Bearer tokens (JWT / OpenID Connect) through the real gateway: keys and
//! tokens made at test time (RSA, P-256, Ed25519), key sets from a file and
//! from a real HTTP server on loopback, the 401/403 answers for every way a
//! token can be wrong or forged, what reaches the backend, limits, usage,
//! the cache and the access log per token consumer.

mod common;

use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{base_config, eventually, pool, request, Backend, TestGateway};
use portcullis::jwt::testing::{ec, ed25519, jwks, rsa, token, token_with, Signer};
use portcullis::jwt::Alg;
use serde_json::{json, Value};

const ISSUER: &str = "https://login.example.com/";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims of a token of `sub` valid for ten minutes, with `scope`.
fn claims(sub: &str, scope: &str) -> Value {
    json!({
        "iss": ISSUER, "aud": "orders-api", "sub": sub, "tid": "tenant-7",
        "exp": now() + 600, "iat": now() - 5, "scope": scope,
    })
}

/// A gateway whose issuer `main` reads `jwks_file` (in the config's
/// directory), with routes:
/// `/orders` jwt with scopes per method and claims forwarded, `/either`
/// api_key_or_jwt (key as bearer too) limited per consumer, `/cached`
/// a caching jwt route.
struct Setup {
    dir: tempfile::TempDir,
    gw: TestGateway,
    _backend: Backend,
}

fn config(backend: &Backend, issuer_extra: &str, consumers: &str) -> String {
    format!(
        r#"{}{}
[[jwt_issuers]]
id = "main"
issuer = "{ISSUER}"
audiences = ["orders-api"]
jwks_file = "jwks.json"
algorithms = ["RS256", "PS256", "ES256", "EdDSA"]
{issuer_extra}

[[routes]]
id = "orders"
path = "/orders"
pool = "p"
auth = "jwt"
required_scopes = {{ GET = ["orders:read"], POST = ["orders:write"] }}
forward_claims = {{ "x-user-id" = "sub", "x-tenant" = "tid" }}

[[routes]]
id = "either"
path = "/either"
pool = "p"
auth = "api_key_or_jwt"
key_from = "bearer"
rate_limits = [{{ rate = "2/h", per = "consumer" }}]

[[routes]]
id = "cached"
path = "/cached"
pool = "p"
auth = "jwt"
cache = {{ ttl = "60s" }}
{consumers}
"#,
        base_config(),
        pool("p", &[backend.addr], "")
    )
}

async fn setup(signers: &[&Signer], issuer_extra: &str, consumers: &str) -> Setup {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jwks.json"), jwks(signers)).unwrap();
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, config(&backend, issuer_extra, consumers)).unwrap();
    let gw = TestGateway::start_file(&path).await;
    Setup {
        dir,
        gw,
        _backend: backend,
    }
}

async fn with_token(
    gw: &TestGateway,
    path: &str,
    token: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    request(
        gw,
        "GET",
        path,
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await
}

fn challenge(h: &reqwest::header::HeaderMap) -> Vec<String> {
    h.get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn tokens_of_each_key_type_reach_the_backend_as_their_consumer_with_claims() {
    let r = rsa("r1");
    let p256 = ec("p1", Alg::ES256);
    let ed = ed25519("e1");
    let s = setup(&[&r, &p256, &ed], "", "").await;
    let cases = [
        (Alg::RS256, &r, "alice"),
        (Alg::PS256, &r, "bob"),
        (Alg::ES256, &p256, "carol"),
        (Alg::EdDSA, &ed, "dave"),
    ];
    for (alg, signer, sub) in cases {
        let t = token(alg, &claims(sub, "orders:read profile"), signer);
        let (status, _, body) = request(
            &s.gw,
            "GET",
            "/orders/1",
            &[
                ("authorization", &format!("Bearer {t}")),
                // Spoofed copies of what the gateway sets.
                ("x-consumer-id", "mallory"),
                ("x-user-id", "mallory"),
                ("x-tenant", "evil"),
            ],
        )
        .await;
        assert_eq!(status, 200, "{alg:?}: {body}");
        let h = &body["headers"];
        assert_eq!(h["x-consumer-id"], sub, "{alg:?}: {body}");
        assert_eq!(h["x-user-id"], sub, "{body}");
        assert_eq!(h["x-tenant"], "tenant-7", "{body}");
        assert!(
            h.get("authorization").is_none(),
            "the token went upstream: {body}"
        );
    }
    // A spoofed claim header without a claim behind it is removed too.
    let mut c = claims("erin", "orders:read");
    c.as_object_mut().unwrap().remove("tid");
    let t = token(Alg::EdDSA, &c, &ed);
    let (status, _, body) = request(
        &s.gw,
        "GET",
        "/orders/1",
        &[
            ("authorization", &format!("Bearer {t}")),
            ("x-tenant", "evil"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["headers"].get("x-tenant").is_none(), "{body}");

    // The access log names the consumer and the issuer, never the token.
    let line = eventually("alice's access-log line", || async {
        s.gw.stdout()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["consumer"] == "alice")
    })
    .await;
    assert_eq!(line["issuer"], "main", "{line}");
    let log = s.gw.stdout() + &s.gw.logs();
    assert!(!log.contains(&t[t.len() - 40..]), "a token is in the log");
    let _ = &s.dir;
}

#[tokio::test]
async fn every_wrong_or_forged_token_is_a_401_invalid_token_without_detail() {
    let ed = ed25519("e1");
    let r = rsa("r1");
    let stranger = ed25519("e1"); // same kid, another key
                                  // Damping off: this test sends more bad tokens than it allows.
    let s = setup(&[&ed, &r], "", "[auth.failed_attempts]\nenabled = false\n").await;
    let good = claims("alice", "orders:read");
    let mut expired = good.clone();
    expired["exp"] = json!(now() - 3600);
    let mut early = good.clone();
    early["nbf"] = json!(now() + 3600);
    let mut issuer = good.clone();
    issuer["iss"] = json!("https://evil.example.com/");
    let mut audience = good.clone();
    audience["aud"] = json!("billing-api");

    let valid = token(Alg::EdDSA, &good, &ed);
    let parts: Vec<&str> = valid.split('.').collect();
    let mut admin = good.clone();
    admin["sub"] = json!("admin");
    let tampered_payload = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(admin.to_string()),
        parts[2]
    );
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    sig[10] ^= 1;
    let tampered_signature = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(&sig));
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    // RS256's public key used as an HMAC secret (the classic confusion).
    let public = r.jwk.to_string();
    let hs_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","kid":"r1","typ":"JWT"}"#),
        parts[1]
    );
    let hmac_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, public.as_bytes());
    let hs = ring::hmac::sign(&hmac_key, hs_input.as_bytes());
    let confused = format!("{hs_input}.{}", URL_SAFE_NO_PAD.encode(hs.as_ref()));
    let unknown_kid = token_with(
        json!({"alg": "EdDSA", "kid": "nobody", "typ": "JWT"}),
        &good,
        &ed,
    );

    let cases: Vec<(&str, String)> = vec![
        ("expired", token(Alg::EdDSA, &expired, &ed)),
        ("not_yet_valid", token(Alg::EdDSA, &early, &ed)),
        ("wrong_issuer", token(Alg::EdDSA, &issuer, &ed)),
        ("wrong_audience", token(Alg::EdDSA, &audience, &ed)),
        ("unknown_key", unknown_kid),
        ("bad_signature", tampered_payload),
        ("bad_signature", tampered_signature),
        ("bad_signature", token(Alg::EdDSA, &good, &stranger)),
        ("malformed", unsigned),
        ("unsupported_algorithm", confused),
        ("malformed", "not-a-jwt".to_string()),
        (
            "too_large",
            format!("{}.{}.{}", parts[0], "A".repeat(9000), parts[2]),
        ),
    ];
    for (why, t) in &cases {
        let (status, h, body) = with_token(&s.gw, "/orders", t).await;
        assert_eq!(status, 401, "{why}: {body}");
        assert_eq!(
            challenge(&h),
            vec![r#"Bearer realm="api", error="invalid_token""#],
            "{why}"
        );
        assert_eq!(h["content-type"], "application/problem+json", "{why}");
        assert_eq!(body["detail"], "The bearer token is not valid.", "{why}");
        let text = body.to_string();
        assert!(
            !text.contains(&t[..t.len().min(20)]),
            "{why}: the token is echoed"
        );
    }
    // The one valid token still passes.
    assert_eq!(with_token(&s.gw, "/orders", &valid).await.0, 200);

    // No token: 401 with a bare challenge (RFC 6750 §3.1: no error code).
    let (status, h, body) = request(&s.gw, "GET", "/orders", &[]).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(challenge(&h), vec![r#"Bearer realm="api""#]);
    assert_eq!(body["detail"], "A bearer token is required.");

    // Each refusal is counted by its reason.
    let text = common::scrape_until(
        &s.gw,
        &[
            r#"portcullis_jwt_verifications_total{issuer="main",result="expired"} 1"#,
            r#"portcullis_jwt_verifications_total{issuer="main",result="unknown_key"} 1"#,
            r#"portcullis_jwt_verifications_total{issuer="main",result="bad_signature"} 3"#,
            r#"portcullis_jwt_verifications_total{issuer="main",result="valid"} 1"#,
            r#"portcullis_auth_rejections_total{reason="token_missing",route="orders"} 1"#,
        ],
    )
    .await;
    assert!(
        text.contains(r#"portcullis_jwks_keys{issuer="main"} 2"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_missing_scope_is_a_403_insufficient_scope_and_a_token_is_verified_once() {
    let ed = ed25519("e1");
    let s = setup(&[&ed], "", "").await;
    let reader = token(Alg::EdDSA, &claims("alice", "orders:read"), &ed);
    // GET needs orders:read: passes; POST needs orders:write: 403.
    assert_eq!(with_token(&s.gw, "/orders", &reader).await.0, 200);
    let (status, h, body) = request(
        &s.gw,
        "POST",
        "/orders",
        &[("authorization", &format!("Bearer {reader}"))],
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        challenge(&h),
        vec![r#"Bearer realm="api", error="insufficient_scope", scope="orders:write""#]
    );
    assert_eq!(
        body["detail"],
        "The bearer token lacks a scope this request requires."
    );
    // Scopes as an array count too.
    let mut c = claims("bob", "");
    c["scope"] = json!(["orders:read", "orders:write"]);
    let writer = token(Alg::EdDSA, &c, &ed);
    let (status, _, body) = request(
        &s.gw,
        "POST",
        "/orders",
        &[("authorization", &format!("Bearer {writer}"))],
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // The same token again is a cache hit, not a second verification.
    for _ in 0..5 {
        assert_eq!(with_token(&s.gw, "/orders", &reader).await.0, 200);
    }
    let text = common::scrape_until(
        &s.gw,
        &[r#"portcullis_jwt_verifications_total{issuer="main",result="valid"} 2"#],
    )
    .await;
    let hits = common::sample(
        &text,
        r#"portcullis_jwt_cache_requests_total{result="hit"}"#,
    );
    assert!(hits.is_some_and(|h| h >= 6.0), "{text}");
}

#[tokio::test]
async fn api_key_or_jwt_takes_either_and_limits_usage_and_cache_count_each_token_consumer() {
    let ed = ed25519("e1");
    let k = portcullis::keys::generate().unwrap();
    let consumers = format!(
        "[[consumers]]\nid = \"acme\"\nkeys = [{{ prefix = \"{}\", digest = \"{}\" }}]\nscopes = [{{ routes = [\"*\"] }}]\n",
        k.prefix, k.digest_hex
    );
    let s = setup(&[&ed], "quota = { day = 100 }", &consumers).await;
    let alice = token(Alg::EdDSA, &claims("alice", ""), &ed);
    let bob = token(Alg::EdDSA, &claims("bob", ""), &ed);

    // The key and a token both pass, each as its consumer.
    let (status, _, body) = with_token(&s.gw, "/either", &k.key).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["headers"]["x-consumer-id"], "acme");
    let (status, _, body) = with_token(&s.gw, "/either", &alice).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["headers"]["x-consumer-id"], "alice");
    // Neither: 401 with the challenge of both (one here: both read
    // `Authorization: Bearer`).
    let (status, h, _) = request(&s.gw, "GET", "/either", &[]).await;
    assert_eq!(status, 401);
    assert_eq!(challenge(&h), vec![r#"Bearer realm="api""#]);

    // 2 an hour per consumer: alice's third is refused, bob still passes.
    assert_eq!(with_token(&s.gw, "/either", &alice).await.0, 200);
    let (status, h, body) = with_token(&s.gw, "/either", &alice).await;
    assert_eq!(status, 429, "{body}");
    assert!(h.contains_key("retry-after"));
    assert_eq!(with_token(&s.gw, "/either", &bob).await.0, 200);

    // Usage lists token consumers with their issuer and quota.
    let (status, usage) = common::get_json(&s.gw.admin_url("/-/usage?consumer=alice")).await;
    assert_eq!(status, 200);
    let alice_usage = &usage["consumers"][0];
    assert_eq!(alice_usage["id"], "alice", "{usage}");
    assert_eq!(alice_usage["issuer"], "main", "{usage}");
    assert_eq!(alice_usage["routes"][0]["requests"], 3, "{usage}");
    assert_eq!(alice_usage["quotas"][0]["used"], 2, "{usage}");

    // The cache keys each token consumer apart.
    let (_, _, first) = with_token(&s.gw, "/cached", &alice).await;
    let (_, _, second) = with_token(&s.gw, "/cached", &bob).await;
    assert_eq!(first["headers"]["x-consumer-id"], "alice");
    assert_eq!(
        second["headers"]["x-consumer-id"], "bob",
        "bob got alice's entry"
    );
}

#[tokio::test]
async fn a_changed_jwks_file_applies_on_reload_and_a_bad_one_keeps_the_old_set() {
    let old = ed25519("old");
    let new = ed25519("new");
    let s = setup(&[&old], "", "").await;
    let old_token = token(Alg::EdDSA, &claims("alice", "orders:read"), &old);
    let new_token = token(Alg::EdDSA, &claims("alice", "orders:read"), &new);
    assert_eq!(with_token(&s.gw, "/orders", &old_token).await.0, 200);
    assert_eq!(with_token(&s.gw, "/orders", &new_token).await.0, 401);

    // A set that does not parse: refused, naming the file; old keys serve.
    let file = s.dir.path().join("jwks.json");
    std::fs::write(&file, r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#).unwrap();
    let (status, body) = s.gw.reload().await;
    assert_eq!(status, 422, "{body}");
    let text = body.to_string();
    assert!(
        text.contains("jwks.json") && text.contains("jwt issuer"),
        "{text}"
    );
    assert_eq!(with_token(&s.gw, "/orders", &old_token).await.0, 200);

    // Rotated: the new key passes, tokens of the old one (even cached) not.
    std::fs::write(&file, jwks(&[&new])).unwrap();
    let (status, body) = s.gw.reload().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(with_token(&s.gw, "/orders", &new_token).await.0, 200);
    assert_eq!(with_token(&s.gw, "/orders", &old_token).await.0, 401);
}

/// A JWKS server on loopback: what it answers can change, and it counts
/// the fetches.
struct Idp {
    addr: std::net::SocketAddr,
    jwks: Arc<Mutex<String>>,
    status: Arc<AtomicU16>,
    fetches: Arc<AtomicUsize>,
}

impl Idp {
    async fn start(keys: String) -> Idp {
        let jwks = Arc::new(Mutex::new(keys));
        let status = Arc::new(AtomicU16::new(200));
        let fetches = Arc::new(AtomicUsize::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (j, st, f) = (jwks.clone(), status.clone(), fetches.clone());
        let discovery = json!({ "issuer": ISSUER, "jwks_uri": format!("http://{addr}/jwks") });
        let app = axum::Router::new()
            .route(
                "/jwks",
                axum::routing::get(move || {
                    let (j, st, f) = (j.clone(), st.clone(), f.clone());
                    async move {
                        f.fetch_add(1, Ordering::SeqCst);
                        let code =
                            axum::http::StatusCode::from_u16(st.load(Ordering::SeqCst)).unwrap();
                        (code, j.lock().unwrap().clone())
                    }
                }),
            )
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move || {
                    let d = discovery.to_string();
                    async move { d }
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Idp {
            addr,
            jwks,
            status,
            fetches,
        }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

// Multi-threaded: the gateway fetches from the test's server while the
// test waits for it to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_url_is_refetched_on_an_unknown_kid_at_most_so_often_and_a_failing_refresh_keeps_the_last_good_set(
) {
    let a = ed25519("a");
    let b = ec("b", Alg::ES256);
    let idp = Idp::start(jwks(&[&a])).await;
    let extra = format!(
        "refresh = \"1h\"\nmin_refresh_interval = \"2s\"\n# source\ndiscovery = \"http://{}/.well-known/openid-configuration\"",
        idp.addr
    );
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    // Damping off: the burst below is of bad tokens from one address.
    let config = config(
        &backend,
        &extra,
        "[auth.failed_attempts]\nenabled = false\n",
    )
    .replace("jwks_file = \"jwks.json\"\n", "");
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, config).unwrap();
    let gw = TestGateway::start_file(&path).await;
    assert_eq!(idp.fetches(), 1, "fetched once at start-up: {}", gw.logs());

    let token_a = token(Alg::EdDSA, &claims("alice", "orders:read"), &a);
    let token_b = token(Alg::ES256, &claims("bob", "orders:read"), &b);
    assert_eq!(with_token(&gw, "/orders", &token_a).await.0, 200);

    // The provider rotates in key b: a token of b is refused until the
    // unknown kid has made the gateway fetch again, then passes.
    *idp.jwks.lock().unwrap() = jwks(&[&a, &b]);
    assert_eq!(with_token(&gw, "/orders", &token_b).await.0, 401);
    eventually("the token of the new key passes", || async {
        (with_token(&gw, "/orders", &token_b).await.0 == 200).then_some(())
    })
    .await;
    let after_rotation = idp.fetches();

    // Made-up kids cannot make it hammer the provider: a burst of them
    // causes at most one fetch per min_refresh_interval.
    let started = std::time::Instant::now();
    for i in 0..40 {
        let forged = token_with(
            json!({"alg": "EdDSA", "kid": format!("made-up-{i}"), "typ": "JWT"}),
            &claims("mallory", ""),
            &a,
        );
        assert_eq!(with_token(&gw, "/orders", &forged).await.0, 401);
    }
    let windows = started.elapsed().as_secs() / 2 + 2;
    let extra_fetches = idp.fetches() - after_rotation;
    assert!(
        extra_fetches as u64 <= windows,
        "{extra_fetches} fetches in {:?}",
        started.elapsed()
    );

    // The provider fails: the last good set keeps serving.
    idp.status.store(500, Ordering::SeqCst);
    let failing_from = idp.fetches();
    let forged = token_with(
        json!({"alg": "EdDSA", "kid": "another", "typ": "JWT"}),
        &claims("mallory", ""),
        &a,
    );
    eventually("a failed refresh is counted", || async {
        with_token(&gw, "/orders", &forged).await;
        let text = gw.metrics_text().await;
        (idp.fetches() > failing_from
            && text.contains(r#"portcullis_jwks_refreshes_total{issuer="main",result="failed"}"#))
        .then_some(())
    })
    .await;
    assert_eq!(with_token(&gw, "/orders", &token_a).await.0, 200);
    let fresh_b = token(Alg::ES256, &claims("carol", "orders:read"), &b);
    assert_eq!(with_token(&gw, "/orders", &fresh_b).await.0, 200);
}

#[tokio::test]
async fn an_unreachable_jwks_url_fails_check_but_the_gateway_starts_and_refuses_tokens() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(&backend, &format!("jwks_url = \"http://{dead}/jwks\""), "")
        .replace("jwks_file = \"jwks.json\"\n", "");
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, &config).unwrap();

    let (code, out, err) = common::run_cli(&["check", path.to_str().unwrap()], None);
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains("jwt issuer \"main\"") && err.contains("could not be fetched"),
        "{err}"
    );

    let gw = TestGateway::start_file(&path).await;
    let ed = ed25519("e1");
    let t = token(Alg::EdDSA, &claims("alice", "orders:read"), &ed);
    let (status, h, _) = with_token(&gw, "/orders", &t).await;
    assert_eq!(status, 401);
    assert_eq!(
        challenge(&h),
        vec![r#"Bearer realm="api", error="invalid_token""#]
    );
    gw.wait_for_log("could not be fetched").await;
}

#[tokio::test]
async fn bad_tokens_from_one_address_are_damped_like_bad_keys() {
    let ed = ed25519("e1");
    let stranger = ed25519("e1");
    let s = setup(&[&ed], "", "").await;
    let forged = token(Alg::EdDSA, &claims("mallory", "orders:read"), &stranger);
    // The default damping: 10 failed attempts a minute per address.
    for i in 0..10 {
        assert_eq!(
            with_token(&s.gw, "/orders", &forged).await.0,
            401,
            "attempt {i}"
        );
    }
    let (status, _, body) = with_token(&s.gw, "/orders", &forged).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["limit"], "failed-attempts");
    // Not even a valid token is looked at from there for now.
    let good = token(Alg::EdDSA, &claims("alice", "orders:read"), &ed);
    assert_eq!(with_token(&s.gw, "/orders", &good).await.0, 429);
}

#[tokio::test]
async fn explain_names_the_issuer_and_claims_checked_and_never_the_token() {
    let ed = ed25519("e1");
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jwks.json"), jwks(&[&ed])).unwrap();
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, config(&backend, "", "")).unwrap();
    let path = path.to_str().unwrap();
    let explain = |method: &'static str, header: String| {
        let mut args = vec!["explain", "-c", path, method, "/orders/1"];
        if !header.is_empty() {
            args.push("-H");
            args.push(&header);
        }
        common::run_cli(&args, None)
    };

    let reader = token(Alg::EdDSA, &claims("alice", "orders:read"), &ed);
    let (code, out, err) = explain("GET", format!("authorization: Bearer {reader}"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("auth              jwt, token as Authorization: Bearer"),
        "{out}"
    );
    assert!(
        out.contains(r#"main: iss "https://login.example.com/", aud one of ["orders-api"]"#),
        "{out}"
    );
    assert!(out.contains("orders:read (for GET)"), "{out}");
    assert!(out.contains("x-tenant <- tid, x-user-id <- sub"), "{out}");
    assert!(
        out.contains(r#"valid: consumer "alice" of issuer main"#),
        "{out}"
    );
    assert!(
        !out.contains(&reader[reader.len() - 30..]),
        "the token is printed: {out}"
    );

    // The same decision as the live path: POST lacks its scope.
    let (code, out, _) = explain("POST", format!("authorization: Bearer {reader}"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("refused (insufficient_scope)"), "{out}");
    assert!(out.contains("403"), "{out}");

    let mut expired = claims("alice", "orders:read");
    expired["exp"] = json!(now() - 3600);
    let old = token(Alg::EdDSA, &expired, &ed);
    let (_, out, _) = explain("GET", format!("authorization: Bearer {old}"));
    assert!(out.contains("refused (token_invalid: expired)"), "{out}");
    let (_, out, _) = explain("GET", String::new());
    assert!(out.contains("none presented"), "{out}");
}

#[tokio::test]
async fn the_file_watcher_applies_a_rotated_jwks_file() {
    let old = ed25519("old");
    let new = ed25519("new");
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, jwks(&[&old])).unwrap();
    let path = dir.path().join("portcullis.toml");
    // Damping off: the polling below sends the new token until it passes.
    let config = config(&backend, "", "[auth.failed_attempts]\nenabled = false\n");
    std::fs::write(&path, common::watching(&config)).unwrap();
    let gw = TestGateway::start_file(&path).await;
    let new_token = token(Alg::EdDSA, &claims("alice", "orders:read"), &new);
    assert_eq!(with_token(&gw, "/orders", &new_token).await.0, 401);

    // Written whole elsewhere, then renamed over the old file.
    let tmp = dir.path().join("jwks.json.new");
    std::fs::write(&tmp, jwks(&[&old, &new])).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    eventually("the watcher applies the new key set", || async {
        (with_token(&gw, "/orders", &new_token).await.0 == 200).then_some(())
    })
    .await;
}
