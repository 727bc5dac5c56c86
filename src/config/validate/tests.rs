//! Unit tests for validation: shared helpers and the core checks (server,
//! listeners, admin, durations, addresses); pool and route checks are
//! tested in [`pools`] and [`routes`].

use super::super::{parse_str, ConfigErrors};
use super::*;
use model::{HostPattern, PathMatch};

const POOL: &str = "[pools.p]\nbackends = [\"127.0.0.1:9001\"]\n";

fn all_errors(src: &str) -> Vec<String> {
    match parse_str(src, "f.toml") {
        Ok(_) => panic!("expected errors for:\n{src}"),
        Err(ConfigErrors(errors)) => errors.iter().map(ToString::to_string).collect(),
    }
}

/// `errors` are as many as `expected`, and each starts with its
/// counterpart (file:line:column, item and the start of the message).
fn assert_each_starts_with(errors: &[String], expected: &[&str]) {
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    for (got, want) in errors.iter().zip(expected) {
        assert!(
            got.starts_with(want),
            "{got}\n  does not start with\n{want}"
        );
    }
}

/// The only error of `src`.
fn only_error(src: &str) -> String {
    let errors = all_errors(src);
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    errors.into_iter().next().unwrap()
}

fn ok(src: &str) -> Config {
    parse_str(src, "f.toml").unwrap_or_else(|e| panic!("unexpected errors:\n{e}"))
}

fn with_pool(rest: &str) -> String {
    format!("{POOL}{rest}")
}

fn route(id: &str, extra: &str) -> String {
    format!("[[routes]]\nid = \"{id}\"\npool = \"p\"\n{extra}\n")
}

mod consumers;
mod forwarding;
mod jwt;
mod limit_store;
mod pools;
mod routes;
mod split;

#[test]
fn durations() {
    let src = with_pool("[pools.p.timeouts]\nconnect = \"0s\"\nread = \"5 parsecs\"\nwrite = \"10\"\ntotal = \"\"\n");
    let errors = all_errors(&src);
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert_eq!(
        errors[0],
        r#"f.toml:4:11: pool "p": timeouts.connect must be greater than 0"#
    );
    assert!(errors[1].starts_with(r#"f.toml:5:8: pool "p": timeouts.read: "5 parsecs" is not a duration (unknown time unit "parsecs"); write e.g. "500ms""#), "{}", errors[1]);
    assert!(
        errors[2].contains(r#"timeouts.write: "10" is not a duration (time unit needed"#),
        "{}",
        errors[2]
    );
    assert!(
        errors[3].contains(r#"timeouts.total: "" is not a duration"#),
        "{}",
        errors[3]
    );

    let src = with_pool(&route(
        "a",
        "path = \"/\"\n[routes.timeouts]\nidle = \"0ms\"",
    ));
    assert!(only_error(&src)
        .starts_with(r#"f.toml:8:8: route "a": timeouts.idle must be greater than 0"#));

    let src = "[server]\ngrace_period = \"0s\"\nthreads = 0\nupstream_keepalive = 0\n";
    let errors = all_errors(src);
    assert_eq!(
        errors[0],
        "f.toml:2:16: server: grace_period must be greater than 0"
    );
    assert_eq!(errors[1], "f.toml:3:11: server: threads must be at least 1");
    assert_eq!(
        errors[2],
        "f.toml:4:22: server: upstream_keepalive must be from 1 to 100000"
    );
}

#[test]
fn listener_errors() {
    let src = "[[listeners]]\naddress = \"0.0.0.0:8080\"\n[[listeners]]\naddress = \"0.0.0.0:8080\"\n[[listeners]]\naddress = \"127.0.0.1:8080\"\n[[listeners]]\naddress = \"localhost:80\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n";
    let errors = all_errors(src);
    let expected = [
        r#"f.toml:4:11: listener "0.0.0.0:8080": duplicate listener address 0.0.0.0:8080 (also at line 2)"#,
        r#"f.toml:6:11: listener "127.0.0.1:8080": address 127.0.0.1:8080 overlaps listener 0.0.0.0:8080 (line 2): both bind port 8080"#,
        r#"f.toml:8:11: listener "localhost:80": listener address "localhost:80" is not an ip:port address"#,
    ];
    assert_each_starts_with(&errors, &expected);
    assert!(only_error("listeners = []\n").starts_with("f.toml:1:13: listeners is empty"));
}

#[test]
fn h2c_is_for_plain_listeners() {
    let config = ok("[[listeners]]\naddress = \"127.0.0.1:8080\"\nh2c = true\n[[listeners]]\naddress = \"127.0.0.1:8081\"\n");
    let h2c: Vec<bool> = config.listeners.iter().map(|l| l.h2c).collect();
    assert_eq!(h2c, [true, false]);
    let errors = all_errors("[[listeners]]\naddress = \"127.0.0.1:8443\"\nh2c = true\n[[listeners.tls.certificates]]\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/c.key\"\n");
    let want = r#"f.toml:3:7: listener "127.0.0.1:8443": h2c is HTTP/2 without TLS; a TLS listener offers h2 by ALPN already"#;
    assert!(errors.iter().any(|e| e == want), "{errors:#?}");
}

#[test]
fn admin_collisions() {
    // Configured admin on a configured listener's port.
    let src = "[[listeners]]\naddress = \"127.0.0.1:9000\"\n[admin]\naddress = \"0.0.0.0:9000\"\nallow_unauthenticated = true\n";
    assert_eq!(
        only_error(src),
        r#"f.toml:4:11: admin: address 0.0.0.0:9000 collides with listener 127.0.0.1:9000 (line 2); the admin API needs an address of its own"#
    );
    // Configured admin on the default listener.
    assert!(
        only_error("[admin]\naddress = \"0.0.0.0:8080\"\nallow_unauthenticated = true\n")
            .contains("collides with the default listener 0.0.0.0:8080")
    );
    // A listener on the default admin address.
    assert!(only_error("[[listeners]]\naddress = \"127.0.0.1:9180\"\n").starts_with(
        r#"f.toml:2:11: listener "127.0.0.1:9180": address 127.0.0.1:9180 collides with the default admin address"#
    ));
    // Unparsable admin address.
    assert!(only_error("[admin]\naddress = \"admin\"\n")
        .starts_with(r#"f.toml:2:11: admin: admin address "admin" is not an ip:port address"#));
    // Port 0 never collides (tests bind both on it).
    let config =
        ok("[[listeners]]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n");
    assert_eq!(config.admin.address.port(), 0);
}

#[test]
fn a_non_loopback_admin_address_needs_a_token_or_an_explicit_opt_out() {
    for address in ["0.0.0.0:9180", "[::]:9180", "10.0.0.5:9180"] {
        let error = only_error(&format!("[admin]\naddress = \"{address}\"\n"));
        assert!(
            error.starts_with("f.toml:2:11: admin: address")
                && error.contains("is not loopback and the admin API has no token"),
            "{error}"
        );
    }
    let digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    ok(&format!(
        "[admin]\naddress = \"0.0.0.0:9180\"\ntoken_digest = \"{digest}\"\n"
    ));
    ok("[admin]\naddress = \"0.0.0.0:9180\"\nallow_unauthenticated = true\nhosts = [\"admin.internal\"]\n");
    ok("[admin]\naddress = \"[::1]:9180\"\n");
    let error = only_error(&format!("[admin]\nread_token_digest = \"{digest}\"\n"));
    assert!(
        error.contains("read_token_digest needs token_digest"),
        "{error}"
    );
    let error = only_error("[admin]\nhosts = [\"http://a:1\"]\n");
    assert!(error.contains("is not a host name"), "{error}");
}

#[test]
fn many_errors_are_reported_together_in_file_order() {
    let src = "[pools.p]\nbackends = []\nbalance = \"nope\"\n[pools.p.timeouts]\nconnect = \"0s\"\n\n[[routes]]\nid = \"a\"\npath = \"x\"\npool = \"q\"\n";
    let errors = all_errors(src);
    assert_eq!(
        errors,
        vec![
            r#"f.toml:2:12: pool "p": backends is empty; list at least one "ip:port""#,
            r#"f.toml:3:11: pool "p": unknown balance "nope"; expected one of round_robin, random, least_requests, consistent_hash"#,
            r#"f.toml:5:11: pool "p": timeouts.connect must be greater than 0"#,
            r#"f.toml:9:8: route "a": path "x" must start with '/'"#,
            r#"f.toml:10:8: route "a": pool "q" is not defined (defined pools: p)"#,
        ]
    );
}

#[test]
fn default_addresses_parse() {
    assert!(model::DEFAULT_LISTEN.parse::<SocketAddr>().is_ok());
    assert!(model::DEFAULT_ADMIN_LISTEN.parse::<SocketAddr>().is_ok());
}

#[test]
fn overlap_rules() {
    let a = |s: &str| s.parse::<SocketAddr>().unwrap();
    assert!(overlaps(a("0.0.0.0:80"), a("127.0.0.1:80")));
    assert!(overlaps(a("[::]:80"), a("0.0.0.0:80")));
    assert!(overlaps(a("127.0.0.1:80"), a("[::]:80")));
    assert!(!overlaps(a("0.0.0.0:80"), a("[::1]:80")));
    assert!(!overlaps(a("127.0.0.1:80"), a("[::1]:80")));
    assert!(!overlaps(a("127.0.0.1:80"), a("127.0.0.2:80")));
    assert!(!overlaps(a("127.0.0.1:0"), a("127.0.0.1:0")));
}

#[test]
fn cache_settings_are_checked_and_defaulted() {
    let src = with_pool(&format!(
        "[cache]\nmax_size = \"1MiB\"\n{}[routes.cache]\nttl = \"30s\"\nkey = {{ query = [\"page\", \"sort\"], headers = [\"Accept\"] }}\n",
        route("c", "path = \"/\"")
    ));
    let config = ok(&src);
    assert_eq!(config.cache.max_size, 1 << 20);
    let cache = config.routes[0].cache.as_ref().expect("caching");
    assert_eq!(cache.ttl, Some(Duration::from_secs(30)));
    assert_eq!(
        cache.max_object_size,
        1 << 20,
        "the default is capped at max_size"
    );
    assert_eq!(cache.key.headers, vec!["accept".to_string()]);
    assert_eq!(
        cache.key.query,
        model::QueryKey::Only(vec!["page".into(), "sort".into()])
    );
    let off = ok(&with_pool(&format!(
        "{}[routes.cache]\nenabled = false\n",
        route("c", "path = \"/\"")
    )));
    assert!(off.routes[0].cache.is_none());
    assert_eq!(off.cache.max_size, model::DEFAULT_CACHE_MAX_SIZE);

    let errors = all_errors(&with_pool(&format!(
        "[cache]\nmax_size = \"1MB\"\n{}[routes.cache]\nmax_object_size = \"2GiB\"\nstale_if_error = \"soon\"\nkey = {{ query = \"some\", headers = [\"Authorization\"] }}\n",
        route("c", "path = \"/\"")
    )));
    assert_eq!(errors.len(), 5, "{errors:#?}");
    assert!(
        errors[0]
            .starts_with(r#"f.toml:4:12: cache: max_size: "1MB" is not a size ("MB" is ambiguous"#),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].contains(
            "route \"c\": cache.max_object_size (2147483648 bytes) is larger than [cache] max_size"
        ),
        "{}",
        errors[1]
    );
    assert!(errors[2].contains("cache.stale_if_error"), "{}", errors[2]);
    assert!(
        errors[3].contains(r#"cache.key.query must be "all", "sorted""#),
        "{}",
        errors[3]
    );
    assert!(errors[4].contains("carries credentials"), "{}", errors[4]);
}

#[test]
fn client_timeouts_and_max_connections() {
    let config = ok(&format!(
        "[server.client]\nheader_timeout = \"5s\"\nbody_timeout = \"1m\"\nkeepalive_timeout = \"0s\"\nmax_connections = 10\n{POOL}"
    ));
    let client = &config.server.client;
    assert_eq!(client.header_timeout, Duration::from_secs(5));
    assert_eq!(client.body_timeout, Duration::from_secs(60));
    assert_eq!(client.keepalive_timeout, Duration::ZERO);
    assert_eq!(client.max_connections, 10);
    let defaults = ok(POOL).server.client;
    assert_eq!(defaults.header_timeout, Duration::from_secs(10));
    assert_eq!(defaults.body_timeout, Duration::from_secs(30));
    assert_eq!(defaults.keepalive_timeout, Duration::from_secs(75));
    assert_eq!(defaults.max_connections, 100_000);

    let errors = all_errors(
        "[server.client]\nheader_timeout = \"0s\"\nbody_timeout = \"soon\"\nkeepalive_timeout = \"-1s\"\nmax_connections = 0\n",
    );
    let expected = [
        r#"f.toml:2:18: server.client: header_timeout must be greater than 0"#,
        r#"f.toml:3:16: server.client: body_timeout: "soon" is not a duration"#,
        r#"f.toml:4:21: server.client: keepalive_timeout: "-1s" is not a duration"#,
        r#"f.toml:5:19: server.client: max_connections must be at least 1"#,
    ];
    assert_each_starts_with(&errors, &expected);
}

#[test]
fn client_limits_and_max_body_size() {
    let config = ok(&format!(
        "[server.client]\nmax_header_size = \"64KiB\"\nmax_headers = 50\n{POOL}{}",
        route("r", "path = \"/\"\nmax_body_size = \"10MiB\"")
    ));
    let client = &config.server.client;
    assert_eq!(client.max_header_size, 64 << 10);
    assert_eq!(client.max_headers, 50);
    assert_eq!(
        client.max_uri_length,
        crate::config::model::DEFAULT_MAX_URI_LENGTH
    );
    assert_eq!(config.routes[0].max_body_size, Some(10 << 20));
    let defaults = ok(POOL);
    assert_eq!(
        defaults.server.client,
        crate::config::model::ClientLimits::default()
    );

    let errors = all_errors(
        "[server.client]\nmax_header_size = \"2MiB\"\nmax_headers = 300\nmax_uri_length = 3\n",
    );
    let expected = [
        r#"f.toml:2:19: server.client: max_header_size must be at most 1MiB"#,
        r#"f.toml:3:15: server.client: max_headers must be from 1 to 256"#,
        r#"f.toml:4:18: server.client: max_uri_length must be at least 16"#,
    ];
    assert_each_starts_with(&errors, &expected);
    let e = only_error(&format!(
        "{POOL}{}",
        route("r", "path = \"/\"\nmax_body_size = \"10MB\"")
    ));
    assert!(
        e.contains(r#"route "r": max_body_size: "10MB" is not a size"#),
        "{e}"
    );
}
