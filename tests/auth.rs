//! API keys through the real gateway: each key source, the 401/403
//! answers, what reaches the backend, key rotation by reload, consumers in
//! separate files, and that no key or digest is ever written anywhere.

mod common;

use common::{base_config, client, pool, Backend, TestGateway};
use portcullis::keys;
use serde_json::Value;

/// A generated key and its config entry.
struct Key {
    key: String,
    prefix: String,
    digest: String,
}

fn new_key() -> Key {
    let k = keys::generate().expect("rng");
    Key {
        key: k.key,
        prefix: k.prefix,
        digest: k.digest_hex,
    }
}

/// `{ prefix = …, digest = … }` plus `extra` fields (e.g. `expires = …`).
fn entry(k: &Key, extra: &str) -> String {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(", {extra}")
    };
    format!(
        "{{ prefix = \"{}\", digest = \"{}\"{extra} }}",
        k.prefix, k.digest
    )
}

/// The routes every test here uses, on one backend:
/// `/h` key in `x-api-key`, `/b` bearer, `/q` query `api_key`, `/open`
/// no auth, `/admin` key-protected and tagged `admin`.
fn routes(backend: &Backend) -> String {
    format!(
        r#"{}{}
[[routes]]
id = "h"
path = "/h"
pool = "p"
auth = "api_key"
tags = ["public"]

[[routes]]
id = "b"
path = "/b"
pool = "p"
auth = "api_key"
key_from = "bearer"
tags = ["public"]

[[routes]]
id = "q"
path = "/q"
pool = "p"
auth = "api_key"
key_from = "query:api_key"
tags = ["public"]

[[routes]]
id = "open"
path = "/open"
pool = "p"

[[routes]]
id = "admin"
path = "/admin"
pool = "p"
auth = "api_key"
tags = ["admin"]
"#,
        base_config(),
        pool("p", &[backend.addr], "")
    )
}

async fn get(
    gw: &TestGateway,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    common::request(gw, "GET", path, headers).await
}

#[tokio::test]
async fn keys_from_each_source_reach_the_backend_as_the_consumer_only() {
    let backend = Backend::start("b").await;
    let k = new_key();
    let config = format!(
        "{}\n[[consumers]]\nid = \"acme\"\nkeys = [{}]\nscopes = [{{ tags = [\"public\"] }}]\n",
        routes(&backend),
        entry(&k, "")
    );
    let gw = TestGateway::start(&config).await;

    // Header, with a spoofed consumer header that must not pass.
    let (status, _, body) = get(
        &gw,
        "/h",
        &[("x-api-key", &k.key), ("x-consumer-id", "mallory")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["headers"]["x-consumer-id"], "acme");
    assert!(body["headers"].get("x-api-key").is_none(), "{body}");

    // Bearer.
    let bearer = format!("Bearer {}", k.key);
    let (status, _, body) = get(&gw, "/b", &[("authorization", &bearer)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["headers"]["x-consumer-id"], "acme");
    assert!(body["headers"].get("authorization").is_none(), "{body}");

    // Query parameter: removed, the other parameters kept in order.
    let path = format!("/q/x?a=1&api_key={}&b=2", k.key);
    let (status, _, body) = get(&gw, &path, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["path"], "/q/x");
    assert_eq!(body["query"], "a=1&b=2");
    assert_eq!(body["headers"]["x-consumer-id"], "acme");

    // A route without auth: no key needed, the spoofed header still stripped,
    // and a key sent along is the backend's business (left alone).
    let (status, _, body) = get(
        &gw,
        "/open",
        &[("x-consumer-id", "mallory"), ("x-api-key", "other")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["headers"].get("x-consumer-id").is_none(), "{body}");
    assert_eq!(body["headers"]["x-api-key"], "other");

    // The key in the wrong place does not count.
    let (status, h, _) = get(&gw, "/b", &[("x-api-key", &k.key)]).await;
    assert_eq!(status, 401);
    assert_eq!(h["www-authenticate"], "Bearer realm=\"api\"");
}

#[tokio::test]
async fn missing_invalid_and_out_of_scope_keys_are_refused() {
    let backend = Backend::start("b").await;
    let good = new_key();
    let expired = new_key();
    let early = new_key();
    let off = new_key();
    let reader = new_key();
    let config = format!(
        r#"{}
[auth.failed_attempts]
enabled = false

[[consumers]]
id = "acme"
keys = [{}, {}, {}]
scopes = [{{ tags = ["public"] }}]

[[consumers]]
id = "gone"
disabled = true
keys = [{}]
scopes = [{{ routes = ["*"] }}]

[[consumers]]
id = "reader"
keys = [{}]
scopes = [{{ routes = ["h", "admin"], methods = ["GET"] }}]
"#,
        routes(&backend),
        entry(&good, ""),
        entry(&expired, "expires = 2020-01-01T00:00:00Z"),
        entry(&early, "not_before = 2099-01-01T00:00:00Z"),
        entry(&off, ""),
        entry(&reader, ""),
    );
    let gw = TestGateway::start(&config).await;
    let hits_before = backend.hits();

    let (status, h, body) = get(&gw, "/h", &[]).await;
    assert_eq!(status, 401);
    assert_eq!(h["content-type"], "application/problem+json");
    assert_eq!(
        h["www-authenticate"],
        "ApiKey realm=\"api\", header=\"x-api-key\""
    );
    assert_eq!(body["title"], "Unauthorized");
    assert_eq!(body["detail"], "An API key is required.");

    for (what, key) in [
        ("unknown", "pk_not-a-key-at-all"),
        ("expired", expired.key.as_str()),
        ("not yet valid", early.key.as_str()),
        ("disabled consumer", off.key.as_str()),
    ] {
        let (status, h, body) = get(&gw, "/h", &[("x-api-key", key)]).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["detail"], "The API key is not valid.", "{what}");
        assert!(
            h["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("error=\"invalid_key\""),
            "{what}"
        );
        // Nothing about the key is echoed.
        assert!(!body.to_string().contains(key), "{what}: {body}");
    }

    // Valid key, route out of scope: 403 without a challenge.
    let (status, h, body) = get(&gw, "/admin", &[("x-api-key", &good.key)]).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["title"], "Forbidden");
    assert!(h.get("www-authenticate").is_none());

    // Scope by route id and method: GET allowed, POST not.
    let (status, _, _) = get(&gw, "/admin", &[("x-api-key", &reader.key)]).await;
    assert_eq!(status, 200);
    let r = client()
        .post(gw.url("/h"))
        .header("x-api-key", &reader.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["content-type"], "application/problem+json");

    // Only the two allowed requests reached the backend.
    assert_eq!(backend.hits() - hits_before, 1);
    let (status, _, _) = get(&gw, "/h", &[("x-api-key", &good.key)]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn rotation_with_overlapping_keys_by_reload() {
    let backend = Backend::start("b").await;
    let old = new_key();
    let new = new_key();
    let consumer = |keys: &str| {
        format!(
            "{}\n[[consumers]]\nid = \"acme\"\nkeys = [{keys}]\nscopes = [{{ routes = [\"*\"] }}]\n",
            routes(&backend)
        )
    };
    let gw = TestGateway::start(&consumer(&entry(&old, ""))).await;
    assert_eq!(get(&gw, "/h", &[("x-api-key", &old.key)]).await.0, 200);
    assert_eq!(get(&gw, "/h", &[("x-api-key", &new.key)]).await.0, 401);

    // Both keys for a while…
    gw.write_config(&consumer(&format!(
        "{}, {}",
        entry(&old, ""),
        entry(&new, "")
    )));
    assert_eq!(gw.reload().await.0, 200);
    assert_eq!(get(&gw, "/h", &[("x-api-key", &old.key)]).await.0, 200);
    let (status, _, body) = get(&gw, "/h", &[("x-api-key", &new.key)]).await;
    assert_eq!(status, 200);
    assert_eq!(body["headers"]["x-consumer-id"], "acme");

    // …then the old one expires (already past): refused, the new one works.
    gw.write_config(&consumer(&format!(
        "{}, {}",
        entry(&old, "expires = 2001-01-01T00:00:00Z"),
        entry(&new, "")
    )));
    assert_eq!(gw.reload().await.0, 200);
    assert_eq!(get(&gw, "/h", &[("x-api-key", &old.key)]).await.0, 401);
    assert_eq!(get(&gw, "/h", &[("x-api-key", &new.key)]).await.0, 200);
}

/// A consumer file's text: consumer `id` with key `k`, allowed route `h`.
fn file(id: &str, k: &Key) -> String {
    format!(
        "[[consumers]]\nid = \"{id}\"\nkeys = [{}]\nscopes = [{{ routes = [\"h\"] }}]\n",
        entry(k, "")
    )
}

/// A temp dir holding `config` as `portcullis.toml`, reading
/// `consumers.d/*.toml`, where `a.toml` holds consumer `a` with `key`.
fn with_consumer_files(config: &str, key: &Key) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("consumers.d")).unwrap();
    std::fs::write(dir.path().join("consumers.d/a.toml"), file("a", key)).unwrap();
    let main = dir.path().join("portcullis.toml");
    let text = format!("consumer_files = [\"consumers.d/*.toml\"]\n\n{config}");
    std::fs::write(&main, text).unwrap();
    (dir, main)
}

#[tokio::test]
async fn consumers_in_separate_files_reload_with_the_routes() {
    let backend = Backend::start("b").await;
    let (a, b) = (new_key(), new_key());
    let (dir, main) = with_consumer_files(&routes(&backend), &a);
    let gw = TestGateway::start_file(&main).await;
    assert_eq!(get(&gw, "/h", &[("x-api-key", &a.key)]).await.0, 200);
    assert_eq!(get(&gw, "/h", &[("x-api-key", &b.key)]).await.0, 401);

    // A new file is picked up by the next reload.
    std::fs::write(dir.path().join("consumers.d/b.toml"), file("b", &b)).unwrap();
    let (status, body) = gw.reload().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["summary"], "5 routes, 1 pools, 2 consumers");
    let (status, _, body) = get(&gw, "/h", &[("x-api-key", &b.key)]).await;
    assert_eq!(status, 200);
    assert_eq!(body["headers"]["x-consumer-id"], "b");

    // An error in a consumer file names that file and line; nothing changes.
    std::fs::write(
        dir.path().join("consumers.d/b.toml"),
        format!(
            "{}\n[[consumers]]\nid = \"a\"\nscopes = [{{ routes = [\"nope\"] }}]\n",
            file("b", &b)
        ),
    )
    .unwrap();
    let (status, body) = gw.reload().await;
    assert_eq!(status, 422, "{body}");
    let texts: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts[0].contains("consumers.d/b.toml:7:6: consumer \"a\": duplicate consumer id \"a\" (first defined at "), "{texts:?}");
    assert!(texts[0].contains("consumers.d/a.toml:2)"), "{texts:?}");
    assert!(
        texts[1].contains(
            "consumers.d/b.toml:8:23: consumer \"a\": scopes: route \"nope\" is not defined"
        ),
        "{texts:?}"
    );
    assert_eq!(get(&gw, "/h", &[("x-api-key", &b.key)]).await.0, 200);
}

#[tokio::test]
async fn the_file_watcher_picks_up_a_new_consumer_file() {
    let backend = Backend::start("b").await;
    let (a, b) = (new_key(), new_key());
    let (dir, main) = with_consumer_files(&common::watching(&routes(&backend)), &a);
    let gw = TestGateway::start_file(&main).await;
    assert_eq!(get(&gw, "/h", &[("x-api-key", &b.key)]).await.0, 401);
    // A new file matching the glob, written by rename as editors and
    // provisioning tools do: live without any signal.
    let tmp = dir.path().join("consumers.d/.b.toml.tmp");
    std::fs::write(&tmp, file("b", &b)).unwrap();
    std::fs::rename(&tmp, dir.path().join("consumers.d/b.toml")).unwrap();
    // Wait for the reload rather than polling with b's key: unknown keys
    // count as failed attempts, and brute-force damping would step in.
    gw.wait_for_log("changes=+ consumer b; + key b ").await;
    assert_eq!(get(&gw, "/h", &[("x-api-key", &b.key)]).await.0, 200);
}

#[tokio::test]
async fn keys_and_digests_never_appear_in_any_output() {
    let backend = Backend::start("b").await;
    let k = new_key();
    let bad = new_key();
    let config = format!(
        "{}\n[[consumers]]\nid = \"acme\"\nkeys = [{}]\nscopes = [{{ tags = [\"public\"] }}]\n",
        routes(&backend),
        entry(&k, "")
    );
    let gw = TestGateway::start(&config).await;
    let query = format!("/q?api_key={}", k.key);
    let bearer = format!("Bearer {}", bad.key);
    for (path, headers) in [
        ("/h", vec![("x-api-key", k.key.as_str())]),
        ("/h", vec![("x-api-key", bad.key.as_str())]),
        ("/b", vec![("authorization", bearer.as_str())]),
        (query.as_str(), vec![]),
        ("/admin", vec![("x-api-key", k.key.as_str())]),
    ] {
        get(&gw, path, &headers).await;
    }
    // A reload that fails, and the admin API.
    gw.write_config(&config.replace(&k.digest, &bad.key));
    assert_eq!(gw.reload().await.0, 422);
    let (_, consumers) = common::get_json(&gw.admin_url("/-/consumers")).await;
    let admin = consumers.to_string();
    let logs = format!("{}{}{admin}", gw.logs(), gw.stdout());
    for secret in [&k.key, &k.digest, &bad.key, &bad.digest] {
        assert!(!logs.contains(secret.as_str()), "a secret leaked:\n{logs}");
        // Not even the random part without the prefix mark.
        assert!(!logs.contains(&secret[3..]), "a secret leaked:\n{logs}");
    }
    // What may appear: the consumer and the key's prefix.
    assert!(admin.contains(&k.prefix), "{admin}");
}

/// A key in the query never reaches the process log, whoever writes the
/// line: Pingora's "Fail to proxy" line prints the request's URI when the
/// backend is down, and it must print the key parameter redacted.
#[tokio::test]
async fn a_query_key_is_redacted_from_every_log_line() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap();
    drop(dead);
    let k = new_key();
    let custom = "custom-secret-not-a-generated-key";
    let config = format!(
        "{}{}[[routes]]\nid = \"q\"\npath = \"/q\"\npool = \"p\"\nauth = \"api_key\"\nkey_from = \"query:api_key\"\n\n[[routes]]\nid = \"t\"\npath = \"/t\"\npool = \"p\"\nauth = \"api_key\"\nkey_from = \"query:token\"\n\n[[consumers]]\nid = \"acme\"\nkeys = [{}]\nscopes = [{{ routes = [\"*\"] }}]\n",
        base_config(),
        pool("p", &[addr], ""),
        entry(&k, "")
    );
    let gw = TestGateway::start(&config).await;
    let c = client();
    let r = c
        .get(gw.url(&format!("/q?x=1&api_key={}&y=2", k.key)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    // A wrong key in the other parameter: refused, and not logged either.
    let r = c
        .get(gw.url(&format!("/t?token={custom}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    gw.wait_for_log("api_key=REDACTED").await;
    let logs = gw.logs();
    assert!(!logs.contains(&k.key), "{logs}");
    assert!(!logs.contains(custom), "{logs}");
    assert!(!gw.stdout().contains(&k.key), "access log");
}
