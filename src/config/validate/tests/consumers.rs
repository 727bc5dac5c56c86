//! Tests of `[auth]`, consumers, keys, scopes, limits, route auth and
//! `[access_log]`.

use super::*;
use crate::ratelimit::{Bucket, Period, Quota, Rate};
use model::{AccessLogTarget, KeySource, LimitPer, RouteAuth};

const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const DIGEST2: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

/// A pool, a key-protected route `r` tagged `t`, then `rest`.
fn keyed(rest: &str) -> String {
    with_pool(&format!(
        "[[routes]]\nid = \"r\"\npath = \"/\"\npool = \"p\"\nauth = \"api_key\"\ntags = [\"t\"]\n\n{rest}"
    ))
}

fn per_second(count: u32, burst: u32) -> Bucket {
    Bucket {
        rate: Rate {
            count,
            period: std::time::Duration::from_secs(1),
        },
        burst,
    }
}

#[test]
fn a_full_consumer_round_trips() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("access.log");
    let src = keyed(&format!(
        r#"[auth]
consumer_header = "X-Consumer"
realm = "orders api"
failed_attempts = {{ rate = "5/m", burst = 2 }}

[access_log]
path = "{}"

[[consumers]]
id = "acme"
name = "ACME Corp"
metadata = {{ plan = "gold" }}
keys = [
  {{ prefix = "pk_aaaaaa", digest = "{DIGEST}", not_before = 2026-01-01, expires = 2027-01-01T00:00:00+01:00 }},
  {{ prefix = "legacy-1", digest = "sha256:{}" }},
]
scopes = [{{ routes = ["r"], methods = ["get"] }}, {{ tags = ["t"] }}]
rate_limits = [{{ rate = "100/s", burst = 200 }}, {{ rate = "5/s", routes = ["r"] }}]
quota = {{ day = 1000, month = 20000 }}
"#,
        log.display(),
        DIGEST2.to_uppercase()
    ));
    let config = ok(&src);
    assert_eq!(config.auth.consumer_header, "x-consumer");
    assert_eq!(config.auth.realm, "orders api");
    assert_eq!(
        config.auth.failed_attempts,
        Some(Bucket {
            rate: Rate {
                count: 5,
                period: std::time::Duration::from_secs(60)
            },
            burst: 2
        })
    );
    assert_eq!(config.access_log, AccessLogTarget::File(log.clone()));
    assert_eq!(
        config.routes[0].auth,
        RouteAuth::ApiKey(KeySource::Header("x-api-key".into()))
    );
    let c = &config.consumers[0];
    assert_eq!(c.id, "acme");
    assert_eq!(c.name.as_deref(), Some("ACME Corp"));
    assert_eq!(c.metadata["plan"], "gold");
    assert_eq!(c.defined_at, "f.toml:19");
    assert_eq!(c.keys.len(), 2);
    assert_eq!(c.keys[0].prefix, "pk_aaaaaa");
    assert_eq!(c.keys[0].not_before, Some(1_767_225_600));
    assert_eq!(c.keys[0].expires, Some(1_798_758_000));
    assert_eq!(c.keys[1].digest[0], 0x60);
    assert_eq!(c.scopes[0].methods, ["GET"]);
    assert_eq!(c.scopes[1].tags, ["t"]);
    assert_eq!(c.rate_limits[0].bucket, per_second(100, 200));
    assert_eq!(c.rate_limits[1].bucket, per_second(5, 5));
    assert_eq!(c.rate_limits[1].routes, ["r"]);
    assert_eq!(
        c.quotas,
        [
            Quota {
                period: Period::Day,
                limit: 1000
            },
            Quota {
                period: Period::Month,
                limit: 20000
            }
        ]
    );
}

#[test]
fn defaults() {
    let config = ok(&keyed(""));
    assert_eq!(config.auth.consumer_header, model::DEFAULT_CONSUMER_HEADER);
    assert_eq!(config.auth.realm, model::DEFAULT_REALM);
    let attempts = config.auth.failed_attempts.unwrap();
    assert_eq!(attempts.rate.count, 10);
    assert_eq!(attempts.burst, model::DEFAULT_FAILED_ATTEMPTS_BURST);
    assert_eq!(config.access_log, AccessLogTarget::Stdout);
    let off = ok(&keyed(
        "[auth.failed_attempts]\nenabled = false\n[access_log]\nenabled = false\n",
    ));
    assert_eq!(off.auth.failed_attempts, None);
    assert_eq!(off.access_log, AccessLogTarget::Off);
}

#[test]
fn consumer_errors_name_the_consumer_and_never_echo_a_key() {
    let pasted_key = "pk_ThisLooksLikeAKeyNotADigest0123456789abcdefgh";
    let src = keyed(&format!(
        r#"[[consumers]]
id = "a"
keys = [{{ prefix = "pk_a", digest = "{pasted_key}" }}]
scopes = [{{ routes = ["r"] }}]

[[consumers]]
id = "b"
keys = [{{ prefix = "has space", digest = "{DIGEST}" }}, {{ prefix = "pk_b", digest = "{DIGEST}", not_before = 2027-01-01, expires = 2026-01-01 }}]

[[consumers]]
id = "b"
keys = [{{ prefix = "pk_c", digest = "{DIGEST2}", expires = 2027-01-01T00:00:00 }}]
scopes = [{{ routes = ["nope", "*"], tags = ["missing"] }}, {{ methods = ["GET"] }}]
rate_limits = [{{ rate = "10/fortnight" }}, {{ rate = "1/s", burst = 0 }}]
quota = {{ day = 0 }}
"#
    ));
    let errors = all_errors(&src);
    assert!(
        !errors.iter().any(|e| e.contains(pasted_key)),
        "{errors:#?}"
    );
    let expected = [
        r#"f.toml:12:37: consumer "a": key 1 (pk_a): digest must be the SHA-256 of the key as 64 hex digits (`portcullis keys hash` prints it); never put the key itself in the config"#,
        r#"f.toml:16:6: consumer "b": scopes is required: list what the consumer may call"#,
        r#"f.toml:17:20: consumer "b": key 1: prefix must be 1 to 12 letters, digits, '_', '-' or '.'"#,
        r#"f.toml:17:140: consumer "b": key 2 (pk_b) has the same digest as consumer "b", key 1: every key must be unique"#,
        r#"f.toml:17:243: consumer "b": key 2 (pk_b): expires must be later than not_before"#,
        r#"f.toml:20:6: consumer "b": duplicate consumer id "b" (first defined at f.toml:16)"#,
        r#"f.toml:21:115: consumer "b": key 1: expires needs a UTC offset (the gateway's clock is UTC), e.g. 2027-01-01T00:00:00Z"#,
        r#"f.toml:22:23: consumer "b": scopes: route "nope" is not defined"#,
        r#"f.toml:22:45: consumer "b": scopes: no route has the tag "missing""#,
        r#"f.toml:22:72: consumer "b": a scope needs routes or tags (routes = ["*"] for every route)"#,
        r#"f.toml:23:25: consumer "b": rate_limits: rate "10/fortnight" is not a rate: write e.g."#,
        r#"f.toml:23:67: consumer "b": rate_limits: burst must be at least 1"#,
        r#"f.toml:24:17: consumer "b": quota must be at least 1 request"#,
    ];
    assert_each_starts_with(&errors, &expected);
}

#[test]
fn route_auth_and_limit_errors() {
    let src = with_pool(
        r#"[[routes]]
id = "a"
path = "/a"
pool = "p"
auth = "oauth"
key_from = "cookie:k"
tags = ["x", "x", "bad tag"]
rate_limits = [{ rate = "1/s", per = "consumer" }, { rate = "1/s", per = "everyone" }]

[[routes]]
id = "b"
path = "/b"
pool = "p"
auth = "api_key"
key_from = "header:content-length"
rate_limits = [{ rate = "2/s", per = "consumer" }, { rate = "2/s", burst = 2, per = "consumer" }]
"#,
    );
    let errors = all_errors(&src);
    let expected = [
        r#"f.toml:7:8: route "a": unknown auth "oauth"; expected none, api_key, jwt or api_key_or_jwt"#,
        r#"f.toml:8:12: route "a": key_from needs auth = "api_key""#,
        r#"f.toml:9:14: route "a": tag "x" is listed twice"#,
        r#"f.toml:9:19: route "a": tag "bad tag": tags may only contain"#,
        r#"f.toml:10:38: route "a": rate_limits: per = "consumer" needs auth = "api_key" on the route"#,
        r#"f.toml:10:74: route "a": rate_limits: unknown per "everyone"; expected route, consumer or client_ip"#,
        r#"f.toml:17:12: route "b": key_from "header:content-length" is not supported; write header:NAME"#,
        r#"f.toml:18:61: route "b": rate_limits: the same limit is listed twice"#,
    ];
    assert_each_starts_with(&errors, &expected);
    // The accepted forms.
    let config = ok(&with_pool(
        "[[routes]]\nid = \"q\"\npath = \"/q\"\npool = \"p\"\nauth = \"api_key\"\nkey_from = \"query:api_key\"\nrate_limits = [{ rate = \"10/m\", per = \"client_ip\" }, { rate = \"1000/h\", burst = 50, per = \"route\" }]\n[[routes]]\nid = \"b\"\npath = \"/b\"\npool = \"p\"\nauth = \"api_key\"\nkey_from = \"bearer\"\n",
    ));
    assert_eq!(
        config.routes[0].auth,
        RouteAuth::ApiKey(KeySource::Query("api_key".into()))
    );
    assert_eq!(config.routes[0].rate_limits[0].per, LimitPer::ClientIp);
    assert_eq!(config.routes[0].rate_limits[1].bucket.burst, 50);
    assert_eq!(config.routes[1].auth, RouteAuth::ApiKey(KeySource::Bearer));
}

#[test]
fn auth_and_access_log_errors() {
    let src = "[auth]\nconsumer_header = \"x consumer\"\nrealm = \"a\\\"b\"\nfailed_attempts = { burst = 0 }\n[access_log]\npath = \"\"\n";
    let errors = all_errors(src);
    assert_eq!(
        errors,
        [
            r#"f.toml:2:19: auth: consumer_header "x consumer" is not a valid header name"#,
            r#"f.toml:3:9: auth: realm must be visible ASCII and spaces, without '"' or '\'"#,
            r#"f.toml:4:29: auth: failed_attempts: burst must be at least 1"#,
            r#"f.toml:6:8: access_log: path is empty: write "-" for stdout or a file path"#,
        ]
    );
}

#[test]
fn an_access_log_that_cannot_be_appended_to_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir/access.log");
    let cases = [
        (missing.display().to_string(), "does not exist".to_string()),
        (
            dir.path().display().to_string(),
            "is a directory".to_string(),
        ),
        // Creating a file fails there even for root.
        (
            "/proc/portcullis-access.log".to_string(),
            "cannot be created in /proc".to_string(),
        ),
    ];
    for (path, expect) in cases {
        let error = only_error(&format!("[access_log]\npath = \"{path}\"\n"));
        assert!(
            error.starts_with("f.toml:2:8: access_log: path ") && error.contains(&expect),
            "{path}: {error}"
        );
    }
    // A writable place is fine, and checking it leaves nothing behind.
    let fine = dir.path().join("access.log");
    let config = ok(&format!("[access_log]\npath = \"{}\"\n", fine.display()));
    assert_eq!(config.access_log, AccessLogTarget::File(fine.clone()));
    assert!(!fine.exists());
}

#[test]
fn a_prefix_is_a_small_part_of_the_key_and_never_quoted_back() {
    // The whole key pasted as the prefix: too long, and not echoed.
    let key = crate::keys::generate().unwrap();
    let src = keyed(&format!(
        "[[consumers]]\nid = \"a\"\nkeys = [{{ prefix = \"{}\", digest = \"{}\" }}]\nscopes = [{{ routes = [\"r\"] }}]\n",
        key.key, key.digest_hex
    ));
    let error = only_error(&src);
    assert!(error.contains("prefix must be 1 to 12"), "{error}");
    assert!(!error.contains(&key.key), "{error}");
    // A short key written as its own prefix: refused, and not echoed.
    let short = "k3y-0123";
    let digest = crate::keys::hex(&crate::keys::digest(short.as_bytes()));
    let src = keyed(&format!(
        "[[consumers]]\nid = \"a\"\nkeys = [{{ prefix = \"{short}\", digest = \"{digest}\" }}]\nscopes = [{{ routes = [\"r\"] }}]\n"
    ));
    let error = only_error(&src);
    assert!(error.contains("the prefix is the whole key"), "{error}");
    assert!(!error.contains(short), "{error}");
}
