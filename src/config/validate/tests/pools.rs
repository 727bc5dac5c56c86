//! Tests of the pool checks.

use super::*;

#[test]
fn backend_errors() {
    let src = "[pools.p]\nbackends = [\"localhost:80\", { address = \"10.0.0.1\" }, \"127.0.0.1:0\", { address = \"127.0.0.1:1\", weight = 0 }, { address = \"127.0.0.1:2\", weight = 1001 }, \"127.0.0.1:1\"]\n";
    let errors = all_errors(src);
    let expected = [
        r#"f.toml:2:13: pool "p": backend address "localhost:80" is not an ip:port address: host names are not supported, give an IP address (e.g. "127.0.0.1:9001")"#,
        r#"f.toml:2:41: pool "p": backend address "10.0.0.1" is not an ip:port address"#,
        r#"f.toml:2:55: pool "p": backend address "127.0.0.1:0" has port 0"#,
        r#"f.toml:2:106: pool "p": backend weight must be between 1 and 1000, got 0"#,
        r#"f.toml:2:147: pool "p": backend weight must be between 1 and 1000, got 1001"#,
        r#"f.toml:2:155: pool "p": duplicate backend 127.0.0.1:1 (first listed at line 2)"#,
    ];
    assert_each_starts_with(&errors, &expected);
}

#[test]
fn empty_pool() {
    assert_eq!(
        only_error("[pools.p]\nbackends = []\n"),
        r#"f.toml:2:12: pool "p": backends is empty; list at least one "ip:port""#
    );
}

#[test]
fn balance_and_hash_key() {
    let src = with_pool("balance = \"fastest\"\n");
    assert_eq!(
        only_error(&src),
        r#"f.toml:3:11: pool "p": unknown balance "fastest"; expected one of round_robin, random, least_requests, consistent_hash"#
    );
    let src = with_pool("balance = \"consistent_hash\"\n");
    assert!(only_error(&src)
        .starts_with(r#"f.toml:3:11: pool "p": balance = "consistent_hash" needs a hash_key"#));
    let src = with_pool("hash_key = \"path\"\n");
    assert!(only_error(&src).starts_with(
        r#"f.toml:3:12: pool "p": hash_key only applies to balance = "consistent_hash""#
    ));
    for bad in ["header:", "cookie:a b", "ip", "header:x:y", "Path"] {
        let src = with_pool(&format!(
            "balance = \"consistent_hash\"\nhash_key = {bad:?}\n"
        ));
        let e = only_error(&src);
        assert!(
            e.starts_with("f.toml:4:12: pool \"p\": invalid hash_key "),
            "{bad}: {e}"
        );
    }
    let key = |k: &str| {
        let config = ok(&with_pool(&format!(
            "balance = \"consistent_hash\"\nhash_key = {k:?}\n"
        )));
        config.pools["p"].balance.clone()
    };
    use model::{Balance::ConsistentHash, HashKey};
    assert_eq!(key("client_ip"), ConsistentHash(HashKey::ClientIp));
    assert_eq!(key("path"), ConsistentHash(HashKey::Path));
    assert_eq!(
        key("header:X-User-Id"),
        ConsistentHash(HashKey::Header("x-user-id".into()))
    );
    assert_eq!(
        key("cookie:Session"),
        ConsistentHash(HashKey::Cookie("Session".into()))
    );
}

#[test]
fn health_check_errors() {
    let hc = |body: &str| with_pool(&format!("[pools.p.health_check]\n{body}\n"));
    assert!(only_error(&hc("type = \"icmp\"")).starts_with(
        r#"f.toml:4:8: pool "p": unknown health_check type "icmp"; expected http, tcp or grpc"#
    ));
    assert!(
        only_error(&hc("type = \"http\"")).contains(r#"health_check type = "http" needs a path"#)
    );
    assert!(only_error(&hc("type = \"http\"\npath = \"healthz\""))
        .contains("health_check.path \"healthz\" must start with '/'"));
    for bad in ["99", "600", "300-200", "2xx", "200-", "-"] {
        let e = only_error(&hc(&format!(
            "type = \"http\"\npath = \"/\"\nexpected_status = {bad:?}"
        )));
        assert!(
            e.starts_with(r#"f.toml:6:19: pool "p": invalid health_check.expected_status"#),
            "{bad}: {e}"
        );
    }
    let errors = all_errors(&hc(
        "type = \"tcp\"\npath = \"/\"\nhost = \"h\"\nexpected_status = \"200\"",
    ));
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(errors
        .iter()
        .all(|e| e.contains("only applies to type = \"http\"")));
    let errors = all_errors(&hc("type = \"tcp\"\ninterval = \"0s\"\ntimeout = \"0s\"\nhealthy_threshold = 0\nunhealthy_threshold = 0"));
    let expected = [
        "f.toml:5:12: pool \"p\": health_check.interval must be greater than 0",
        "f.toml:6:11: pool \"p\": health_check.timeout must be greater than 0",
        "f.toml:7:21: pool \"p\": health_check.healthy_threshold must be greater than 0",
        "f.toml:8:23: pool \"p\": health_check.unhealthy_threshold must be greater than 0",
    ];
    assert_eq!(errors, expected);
    // The timeout may not exceed the interval, defaults included.
    assert!(
        only_error(&hc("type = \"tcp\"\ninterval = \"1s\"\ntimeout = \"2s\"")).contains(
            "health_check.timeout (2s) must not be longer than health_check.interval (1s)"
        )
    );
    assert!(only_error(&hc("type = \"tcp\"\ninterval = \"500ms\"")).starts_with(
        "f.toml:5:12: pool \"p\": health_check.timeout (1s) must not be longer than health_check.interval (500ms)"
    ));
}

#[test]
fn health_check_defaults() {
    let config = ok(&with_pool(
        "[pools.p.health_check]\ntype = \"http\"\npath = \"/h\"\n",
    ));
    assert_eq!(
        config.pools["p"].health_check,
        Some(model::HealthCheck {
            kind: model::HealthCheckKind::Http {
                path: "/h".into(),
                host: None,
                expected_status: (200, 399)
            },
            interval: model::DEFAULT_HC_INTERVAL,
            timeout: model::DEFAULT_HC_TIMEOUT,
            healthy_threshold: model::DEFAULT_HC_HEALTHY_THRESHOLD,
            unhealthy_threshold: model::DEFAULT_HC_UNHEALTHY_THRESHOLD,
        })
    );
    let config = ok(&with_pool(
        "[pools.p.health_check]\ntype = \"http\"\npath = \"/h\"\nexpected_status = \"204\"\n",
    ));
    assert!(matches!(
        &config.pools["p"].health_check.as_ref().unwrap().kind,
        model::HealthCheckKind::Http {
            expected_status: (204, 204),
            ..
        }
    ));
}

#[test]
fn unused_pools_are_fine_and_defaults_apply() {
    let config = ok(POOL);
    let pool = &config.pools["p"];
    assert_eq!(pool.balance, model::Balance::RoundRobin);
    assert_eq!(pool.retries, model::DEFAULT_RETRIES);
    assert_eq!(pool.backends[0].weight, model::DEFAULT_WEIGHT);
    assert_eq!(
        pool.timeouts,
        model::TimeoutsConfig {
            connect: Some(model::DEFAULT_CONNECT_TIMEOUT),
            read: Some(model::DEFAULT_READ_TIMEOUT),
            write: Some(model::DEFAULT_WRITE_TIMEOUT),
            idle: Some(model::DEFAULT_IDLE_TIMEOUT),
            total: None,
        }
    );
    assert!(config.routes.is_empty());
}

#[test]
fn resilience_settings_are_defaulted_and_checked() {
    let config = ok(&with_pool(
        "fallback = \"q\"\nmax_in_flight = 100\n[pools.p.outlier]\n[pools.p.breaker]\nfailure_rate = 0.25\n[pools.p.retry_budget]\n\n[pools.q]\nbackends = [\"127.0.0.1:2\"]\n",
    ));
    let p = &config.pools["p"];
    assert_eq!(p.fallback.as_deref(), Some("q"));
    assert_eq!(p.max_in_flight, Some(100));
    let outlier = p.outlier.as_ref().unwrap();
    assert_eq!(outlier.consecutive_failures, 5);
    assert_eq!(outlier.base_ejection, std::time::Duration::from_secs(30));
    assert_eq!(outlier.max_ejection, std::time::Duration::from_secs(300));
    assert_eq!(outlier.max_ejection_percent, 50);
    assert!(outlier.failure_statuses.contains(502) && !outlier.failure_statuses.contains(404));
    let breaker = p.breaker.as_ref().unwrap();
    assert_eq!(breaker.failure_rate, 0.25);
    assert_eq!(
        (breaker.consecutive_failures, breaker.min_requests),
        (20, 20)
    );
    assert_eq!(breaker.probe_requests, 3);
    assert_eq!(p.retry_budget.as_ref().map(|b| b.ratio), Some(0.2));
    let q = &config.pools["q"];
    assert!(q.outlier.is_none() && q.breaker.is_none() && q.retry_budget.is_none());

    let errors = all_errors(&with_pool(
        "max_in_flight = 0\n[pools.p.outlier]\nmax_ejection_percent = 101\nbase_ejection = \"1m\"\nmax_ejection = \"10s\"\nfailure_statuses = [\"5xx\", \"200\"]\n[pools.p.breaker]\nfailure_rate = 1.5\nprobe_requests = 0\n[pools.p.retry_budget]\nratio = -0.1\n",
    ));
    let expected = [
        r#"f.toml:3:17: pool "p": max_in_flight must be greater than 0"#,
        r#"f.toml:5:24: pool "p": outlier.max_ejection_percent must be 0 to 100, got 101"#,
        r#"f.toml:7:16: pool "p": outlier.max_ejection must not be shorter than outlier.base_ejection"#,
        r#"f.toml:8:28: pool "p": invalid outlier.failure_statuses entry "200""#,
        r#"f.toml:10:16: pool "p": breaker.failure_rate must be a fraction above 0, at most 1 (0.5 = 50%), got 1.5"#,
        r#"f.toml:11:18: pool "p": breaker.probe_requests must be greater than 0"#,
        r#"f.toml:13:9: pool "p": retry_budget.ratio must be a fraction 0 to 1 (0.5 = 50%), got -0.1"#,
    ];
    assert_each_starts_with(&errors, &expected);
}

#[test]
fn fallback_pools_must_exist_and_not_loop() {
    assert_eq!(
        only_error(&with_pool("fallback = \"nope\"\n")),
        r#"f.toml:3:12: pool "p": fallback pool "nope" is not defined"#
    );
    let src = "[pools.a]\nbackends = [\"127.0.0.1:1\"]\nfallback = \"b\"\n[pools.b]\nbackends = [\"127.0.0.1:2\"]\nfallback = \"c\"\n[pools.c]\nbackends = [\"127.0.0.1:3\"]\nfallback = \"a\"\n";
    let errors = all_errors(src);
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert_eq!(
        errors[0],
        r#"f.toml:3:12: pool "a": fallback pools loop: a -> b -> c -> a"#
    );
    assert_eq!(
        only_error(&with_pool("fallback = \"p\"\n")),
        r#"f.toml:3:12: pool "p": fallback pools loop: p -> p"#
    );
}

#[test]
fn retry_on_entries() {
    let config = ok(&format!(
        "{POOL}{}",
        route(
            "r",
            "path = \"/\"\nretry_on = [\"reset\", \"503\", \"500-502\", \"connect\"]"
        )
    ));
    let r = &config.routes[0].retry_on;
    assert!(r.reset && !r.timeout);
    assert_eq!(r.statuses, [500, 501, 502, 503]);
    let e = only_error(&format!(
        "{POOL}{}",
        route("r", "path = \"/\"\nretry_on = [\"idempotent\"]")
    ));
    assert!(
        e.contains(r#"route "r": unknown retry_on entry "idempotent""#),
        "{e}"
    );
}

#[test]
fn h2c_is_read_and_refused_with_tls() {
    let config = ok("[pools.g]\nbackends = [\"127.0.0.1:50051\"]\nh2c = true\n");
    assert!(config.pools["g"].h2c);
    assert!(!ok(POOL).pools["p"].h2c);
    assert!(only_error(
        "[pools.g]\nbackends = [\"127.0.0.1:50051\"]\nh2c = true\n[pools.g.tls]\nsni = \"g.test\"\n"
    )
    .starts_with(r#"f.toml:3:7: pool "g": h2c is HTTP/2 without TLS; for HTTP/2 over TLS set protocol = "h2" in [pools.NAME.tls]"#));
}

#[test]
fn max_h2_streams_is_for_http2_pools() {
    let config = ok("[pools.g]\nbackends = [\"127.0.0.1:50051\"]\nh2c = true\nmax_h2_streams = 100\n[pools.t]\nbackends = [\"127.0.0.1:50052\"]\nmax_h2_streams = 8\n[pools.t.tls]\nprotocol = \"h2\"\n");
    assert_eq!(config.pools["g"].max_h2_streams, 100);
    assert_eq!(config.pools["t"].max_h2_streams, 8);
    assert_eq!(ok(POOL).pools["p"].max_h2_streams, 1);
    assert_eq!(
        only_error("[pools.g]\nbackends = [\"127.0.0.1:50051\"]\nmax_h2_streams = 10\n"),
        r#"f.toml:3:18: pool "g": max_h2_streams is for HTTP/2 pools: set h2c = true, or protocol = "h2" in [pools.NAME.tls]"#
    );
    assert_eq!(
        only_error("[pools.g]\nbackends = [\"127.0.0.1:50051\"]\nh2c = true\nmax_h2_streams = 0\n"),
        r#"f.toml:4:18: pool "g": max_h2_streams must be at least 1"#
    );
}

#[test]
fn grpc_health_checks_are_read_and_mistakes_refused() {
    let config = ok("[pools.g]\nbackends = [\"127.0.0.1:50051\"]\nh2c = true\n[pools.g.health_check]\ntype = \"grpc\"\nservice = \"orders.v1.Orders\"\n");
    let hc = config.pools["g"].health_check.as_ref().unwrap();
    assert_eq!(
        hc.kind,
        model::HealthCheckKind::Grpc {
            service: "orders.v1.Orders".into()
        }
    );
    let config = ok(
        "[pools.g]\nbackends = [\"127.0.0.1:50051\"]\n[pools.g.health_check]\ntype = \"grpc\"\n",
    );
    assert_eq!(
        config.pools["g"].health_check.as_ref().unwrap().kind,
        model::HealthCheckKind::Grpc {
            service: String::new()
        }
    );
    let errors = all_errors("[pools.g]\nbackends = [\"127.0.0.1:50051\"]\n[pools.g.health_check]\ntype = \"grpc\"\npath = \"/healthz\"\nservice = \"a b\"\n[pools.h]\nbackends = [\"127.0.0.1:1\"]\n[pools.h.health_check]\ntype = \"tcp\"\nservice = \"x\"\n");
    assert_each_starts_with(
        &errors,
        &[
            r#"f.toml:5:8: pool "g": health_check.path only applies to type = "http", not "grpc""#,
            r#"f.toml:6:11: pool "g": health_check.service must be a service name"#,
            r#"f.toml:11:11: pool "h": health_check.service only applies to type = "grpc""#,
        ],
    );
}
