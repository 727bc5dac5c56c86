//! One canonical request target, before anything decides on it: paths
//! that climb out of their route, encoded dots and slashes, backslashes,
//! `;` parameters, overlong UTF-8, double encoding and absolute-form
//! targets, over HTTP/1.1 (raw TCP) and HTTP/2 (the `h2` client, which
//! sends `:path` byte for byte). Behind the gateway a backend with a
//! strict parser records the request line it read: the router, the key
//! check and the backend must all see the same canonical path.

mod common;
#[path = "common/h2raw.rs"]
mod h2raw;

use common::rawlog::{RawBackend, Seen};
use common::{assert_problem, base_config, pool, raw_http1, TestGateway};
use h2raw::H2Gateway;

/// `/pub` is open, `/pub/admin` needs a key, `/docs` is rewritten to
/// `/public/docs` upstream.
fn config(backend: &RawBackend) -> String {
    let key = portcullis::keys::generate().expect("rng");
    format!(
        r#"{}{}
[[routes]]
id = "pub"
path = "/pub"
pool = "p"

[[routes]]
id = "admin"
path = "/pub/admin"
pool = "p"
auth = "api_key"

[[routes]]
id = "docs"
path = "/docs"
pool = "p"
rewrite_prefix = "/public/docs"

[[consumers]]
id = "acme"
keys = [{{ prefix = "{}", digest = "{}" }}]
scopes = [{{ routes = ["*"] }}]
"#,
        base_config(),
        pool("p", &[backend.addr], ""),
        key.prefix,
        key.digest_hex
    )
}

/// What the gateway must do with a target.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// Forwarded; the backend's request line carries this target.
    Forward(&'static str),
    /// Answered by the gateway with this status; nothing forwarded.
    Refuse(u16),
}
use Want::{Forward, Refuse};

/// Targets both protocols can carry (`http::Uri` parses them).
const SHAPES: &[(&str, Want)] = &[
    // Climbing into the key route from the open one: the key check sees
    // the canonical path.
    ("/pub/../pub/admin/users", Refuse(401)),
    ("/pub/%2e%2e/pub/admin/users", Refuse(401)),
    ("/pub/%2E%2E/pub/admin/users", Refuse(401)),
    ("/pub/%2e%2E/pub/%61dmin/users", Refuse(401)),
    ("/pub/./admin/users", Refuse(401)),
    ("/pub/%2e/admin/users", Refuse(401)),
    ("/pub//admin/users", Refuse(401)),
    ("/pub/x/../admin", Refuse(401)),
    ("/PUB/../pub/admin", Refuse(401)),
    // Open paths, forwarded in canonical form.
    ("/pub/hello", Forward("/pub/hello")),
    ("/pub/%68ello", Forward("/pub/hello")),
    ("/pub/a/./b/../c", Forward("/pub/a/c")),
    ("/pub/a/b/..", Forward("/pub/a/")),
    ("/pub/caf%c3%a9", Forward("/pub/caf%C3%A9")),
    (
        "/pub/x?q=%7e&r=%2f&s=100%",
        Forward("/pub/x?q=~&r=%2F&s=100%25"),
    ),
    // Double encoding is data, one level deep: never a dot-segment.
    ("/pub/%252e%252e/admin", Forward("/pub/%252e%252e/admin")),
    // Escaping the rewrite's prefix.
    ("/docs/guide", Forward("/public/docs/guide")),
    ("/docs/a/../guide", Forward("/public/docs/guide")),
    ("/docs/../../secret/keys", Refuse(400)),
    ("/docs/%2e%2e/%2e%2e/secret/keys", Refuse(400)),
    ("/docs/%2e%2e%5c%2e%2e%5csecret", Refuse(400)),
    ("/docs/..%2f..%2fsecret", Refuse(400)),
    // Ambiguous separators, refused by default.
    ("/pub/a%2fb", Refuse(400)),
    ("/pub/a%2Fb", Refuse(400)),
    ("/pub/a%5Cb", Refuse(400)),
    ("/pub/..;/admin", Refuse(400)),
    ("/pub/a;jsessionid=1", Refuse(400)),
    // Overlong UTF-8 dots, NUL, broken escapes, above the root.
    ("/pub/%c0%ae%c0%ae/admin", Refuse(400)),
    ("/pub/%e0%80%ae", Refuse(400)),
    ("/pub/%00", Refuse(400)),
    ("/pub/%zz", Refuse(400)),
    ("/pub/%2", Refuse(400)),
    ("/..", Refuse(400)),
    ("/pub/../../x", Refuse(400)),
];

/// Targets only HTTP/1.1 can carry: absolute-form, backslashes, invalid
/// request lines.
fn http1_shapes(host: &str) -> Vec<(String, Want)> {
    vec![
        (format!("http://{host}/pub/hello"), Forward("/pub/hello")),
        (
            format!("HTTP://{host}/pub/%68ello?x=1"),
            Forward("/pub/hello?x=1"),
        ),
        (format!("http://{host}/pub/../pub/admin/x"), Refuse(401)),
        (format!("https://{host}/pub/hello"), Refuse(400)),
        ("http://other.example/pub/hello".into(), Refuse(400)),
        (format!("http://user@{host}/pub/hello"), Refuse(400)),
        ("/docs/..\\..\\secret".into(), Refuse(400)),
        ("/pub\\..\\pub/admin".into(), Refuse(400)),
        ("*".into(), Refuse(400)),
        ("a".into(), Refuse(400)),
        ("/pub/a b".into(), Refuse(400)),
    ]
}

/// Forwarded targets the backend read since `before`.
fn forwarded_since(backend: &RawBackend, before: usize) -> Vec<String> {
    backend.seen()[before..]
        .iter()
        .map(|s| match s {
            Seen::Request { target, .. } => target.clone(),
            Seen::Malformed(why) => format!("malformed: {why}"),
        })
        .collect()
}

#[tokio::test]
async fn every_shape_is_decided_and_forwarded_on_the_canonical_path_over_http1() {
    let backend = RawBackend::start().await;
    let gw = TestGateway::start(&config(&backend)).await;
    let host = gw.proxy.to_string();
    let mut shapes: Vec<(String, Want)> = SHAPES.iter().map(|(t, w)| (t.to_string(), *w)).collect();
    shapes.extend(http1_shapes(&host));
    assert!(shapes.len() >= 40, "{} shapes", shapes.len());
    let mut failures = Vec::new();
    for (target, want) in &shapes {
        let before = backend.seen().len();
        let request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let answer = raw_http1(gw.proxy, request.as_bytes()).await;
        let seen = forwarded_since(&backend, before);
        let ok = match want {
            Forward(path) => answer.0 == 200 && seen == [path.to_string()],
            Refuse(status) => {
                if answer.0 == *status && seen.is_empty() {
                    assert_problem(&answer, *status, "");
                    true
                } else {
                    false
                }
            }
        };
        if !ok {
            failures.push(format!(
                "{target:?}: wanted {want:?}, got {} and the backend saw {seen:?}",
                answer.0
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn every_shape_is_decided_and_forwarded_on_the_canonical_path_over_http2() {
    let backend = RawBackend::start().await;
    let gw = H2Gateway::start_config(&config(&backend)).await;
    let mut failures = Vec::new();
    for (target, want) in SHAPES {
        let before = backend.seen().len();
        let answer = gw.request("GET", target, &[]).await;
        let seen = forwarded_since(&backend, before);
        let ok = match (want, &answer) {
            (Forward(path), Ok((200, _))) => seen == [path.to_string()],
            (Refuse(status), Ok((got, body))) if got == status && seen.is_empty() => {
                let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
                v["status"] == *status
            }
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{target:?}: wanted {want:?}, got {answer:?} and the backend saw {seen:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn the_switches_keep_slashes_and_ambiguous_separators_as_data() {
    let backend = RawBackend::start().await;
    let config = config(&backend).replacen(
        "watch_config = false\n",
        "watch_config = false\n[server.client]\nmerge_slashes = false\nambiguous_paths = \"opaque\"\n",
        1,
    );
    let gw = TestGateway::start(&config).await;
    let host = gw.proxy.to_string();
    for (target, want) in [
        ("/pub/a%2fb", Forward("/pub/a%2Fb")),
        ("/pub/a\\b", Forward("/pub/a%5Cb")),
        ("/pub/a;v=1/b", Forward("/pub/a;v=1/b")),
        ("/pub//x", Forward("/pub//x")),
        // Kept as data, a `%2F` does not make a separator the router sees.
        ("/pub%2fadmin/users", Refuse(404)),
        ("/pub/..;/admin", Refuse(400)),
        ("/pub/../pub/admin/x", Refuse(401)),
    ] {
        let before = backend.seen().len();
        let request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let (status, head, body) = raw_http1(gw.proxy, request.as_bytes()).await;
        let seen = forwarded_since(&backend, before);
        match want {
            Forward(path) => {
                assert_eq!((status, seen), (200, vec![path.to_string()]), "{target}");
            }
            Refuse(s) => {
                assert_eq!(status, s, "{target}: {head}\n{body}");
                assert!(seen.is_empty(), "{target}: {seen:?}");
            }
        }
    }
}

#[tokio::test]
async fn the_access_log_names_the_canonical_path() {
    let backend = RawBackend::start().await;
    let gw = TestGateway::start(&config(&backend)).await;
    let host = gw.proxy.to_string();
    let request =
        format!("GET /pub/a/%2e%2e/%68ello HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    assert_eq!(raw_http1(gw.proxy, request.as_bytes()).await.0, 200);
    let line = common::eventually("the access-log line", || {
        let line = gw
            .stdout()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["route"] == "pub");
        async move { line }
    })
    .await;
    assert_eq!(line["path"], "/pub/hello", "{line}");
}

#[test]
fn route_paths_that_no_canonical_request_can_match_are_refused_by_check() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    for (path, says) in [
        ("/a/../b", "is not in canonical form"),
        ("/a%2fb", "can never match a request"),
        ("/%7euser", "write \"/~user\""),
        ("/a//b", "write \"/a/b\""),
    ] {
        let text = format!(
            "{}[pools.p]\nbackends = [{{ address = \"127.0.0.1:1\" }}]\n\n[[routes]]\nid = \"r\"\npath = \"{path}\"\npool = \"p\"\n",
            base_config()
        );
        std::fs::write(&file, &text).unwrap();
        let (code, _, err) = common::run_cli(&["check", file.to_str().unwrap()], None);
        assert_ne!(code, 0, "{path}");
        let line = text.lines().position(|l| l.starts_with("path =")).unwrap() + 1;
        let at = format!("p.toml:{line}:8: route \"r\": path");
        assert!(err.contains(says) && err.contains(&at), "{path}: {err}");
    }
}
