//! Configuration: from a TOML file to a validated [`Config`].
//!
//! Loading happens in two separate steps over two layers of types:
//!
//! 1. **Parse** ([`file`](mod@file)): the text is deserialized into serde types that
//!    mirror the file. They reject unknown keys and wrong types; a syntax or
//!    type error stops here, and is the only error reported. The files
//!    `consumer_files` names are then found, read and parsed (`load`).
//! 2. **Validate** (`validate`): the file types are checked as a whole —
//!    references resolve, addresses and durations parse, routes do not
//!    conflict — and converted into the [`model`], which the rest of the
//!    gateway uses and serde never sees. Validation reports every error it
//!    finds, not only the first.
//!
//! Every [`ConfigError`] names the file, line and column of the offending
//! value and the item it belongs to, e.g.
//! `conf/portcullis.toml:41:9: route "orders-v2": pool "orderz" is not defined`.
//!
//! The shipped example `conf/portcullis.toml` documents every key.

pub mod error;
pub mod file;
mod load;
pub mod model;
mod validate;
pub mod warnings;

use std::path::Path;

pub use error::{ConfigError, ConfigErrors};
pub use model::Config;
pub use validate::{consumer_id, DEFAULT_GRACE_PERIOD, MAX_PREFIX_LEN, MAX_WEIGHT};

/// Read, parse and validate the file at `path`; every error found, not just
/// the first. The path, as displayed, is the file name used in messages and
/// in [`Config::source`].
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let name = path.display().to_string();
    let src = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::whole_file(&name, format!("cannot read the file: {e}")))?;
    parse_str(&src, &name)
}

/// Parse and validate configuration text; `file` is the name used in
/// messages and in [`Config::source`].
pub fn parse_str(src: &str, file: &str) -> Result<Config, ConfigErrors> {
    let loc = error::Locator::new(file, src);
    let started = std::time::Instant::now();
    let parsed = file::parse(src).map_err(|e| parse_error(&loc, src, &e))?;
    tracing::debug!(
        parse_ms = started.elapsed().as_secs_f64() * 1e3,
        file,
        "parsed"
    );
    let included = load::consumer_files(&parsed.consumer_files, &loc);
    validate::validate(parsed, included, &loc).map_err(|mut errors| {
        // Stable sort: errors on the same spot keep the order they were found in.
        errors.sort_by_key(|e| (e.line, e.column));
        ConfigErrors(errors)
    })
}

/// serde's type and unknown-field messages in an operator's words: what
/// form was expected, with an example, and for an unknown key the valid
/// key it is closest to.
fn plain_words(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        return unknown_key(rest).unwrap_or_else(|| message.to_string());
    }
    let rest = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "));
    let Some((got, expected)) = rest.and_then(|r| r.split_once(", expected ")) else {
        return message.to_string();
    };
    let integer = matches!(
        expected,
        "usize"
            | "u8"
            | "u16"
            | "u32"
            | "u64"
            | "u128"
            | "isize"
            | "i8"
            | "i16"
            | "i32"
            | "i64"
            | "i128"
    );
    let wanted = match expected {
        _ if integer => "an integer, like 2",
        "f32" | "f64" => "a number, like 0.5",
        "a boolean" => "true or false",
        other => other,
    };
    // `string "2"`, "integer `10`", "floating point `1.5`", "boolean `true`"
    let value = got
        .split_once(' ')
        .map_or(got, |(_, v)| v)
        .trim_matches('`');
    let given = match got.split_whitespace().next() {
        Some("string") => format!("the string {value}"),
        Some("integer") => format!("the integer {value}"),
        Some("floating") => format!(
            "the number {}",
            value.trim_start_matches("point ").trim_matches('`')
        ),
        Some("boolean") => value.to_string(),
        _ => got.to_string(),
    };
    let unquoted = value.trim_matches('"');
    let hint = if got.starts_with("string")
        && ((integer && unquoted.parse::<i128>().is_ok())
            || (wanted.starts_with("a number") && unquoted.parse::<f64>().is_ok())
            || (wanted == "true or false" && matches!(unquoted, "true" | "false")))
    {
        ": write it without quotes"
    } else if integer && got.starts_with("integer") {
        if value.starts_with('-') && expected.starts_with('u') {
            ": it must be 0 or more"
        } else {
            ": it is out of range"
        }
    } else {
        ""
    };
    format!("expected {wanted}, not {given}{hint}")
}

/// `treads`, expected one of `threads`, … → the key it is closest to.
fn unknown_key(rest: &str) -> Option<String> {
    let (key, expected) = rest.split_once("`, expected ")?;
    let valid: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    let closest = valid
        .iter()
        .map(|v| (strsim::damerau_levenshtein(key, v), *v))
        .filter(|(d, v)| *d <= (v.len() / 3).max(1) || v.contains(key) && key.len() >= 4)
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v);
    let list = valid.join(", ");
    Some(match closest {
        Some(v) => format!("unknown key `{key}`: did you mean `{v}`? (keys here: {list})"),
        None if valid.is_empty() => format!("unknown key `{key}`: this table takes no keys"),
        None => format!("unknown key `{key}` (keys here: {list})"),
    })
}

/// A toml syntax, type or unknown-key error as a [`ConfigError`].
pub(crate) fn parse_error(loc: &error::Locator<'_>, src: &str, e: &toml::de::Error) -> ConfigError {
    // toml's messages may span lines ("invalid table header\nexpected `.`");
    // keep them on one.
    let message = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
        // serde's words for TOML's arrays and tables
        .replace("a sequence", "an array")
        .replace("a map", "a table");
    let message = plain_words(&message);
    match e.span() {
        Some(span) => {
            let item = file::item_at(src, span.start);
            loc.error(span, item, message)
        }
        None => ConfigError::whole_file(loc.file(), message),
    }
}

#[cfg(test)]
mod tests {
    use super::model::*;
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    const FULL: &str = r#"
[server]
threads = 4
grace_period = "10s"
upstream_keepalive = 512

[[listeners]]
address = "0.0.0.0:8080"

[[listeners]]
address = "[::1]:8443"

[admin]
address = "127.0.0.1:9999"

[pools.orders]
backends = [{ address = "127.0.0.1:9001", weight = 2 }, { address = "127.0.0.1:9002" }, "127.0.0.1:9003"]
balance = "consistent_hash"
hash_key = "cookie:session"
retries = 3

[pools.orders.timeouts]
connect = "500ms"
total = "1m"

[pools.orders.health_check]
type = "http"
path = "/healthz"
host = "orders.internal"
expected_status = "200-299"
interval = "10s"
timeout = "2s"
healthy_threshold = 1
unhealthy_threshold = 5

[pools.users]
backends = ["10.1.2.3:80"]
balance = "least_requests"
retries = 0
health_check = { type = "tcp" }

[[routes]]
id = "orders-v1"
hosts = ["API.example.com", "*.example.com"]
path = "/v1/orders/"
methods = ["get", "POST"]
pool = "orders"
rewrite_prefix = "/api/orders"

[routes.request_headers]
set = { "X-Env" = "prod" }
remove = ["x-debug"]

[routes.response_headers]
remove = ["Server"]

[routes.timeouts]
read = "5s"

[[routes]]
id = "users"
path = "/users"
path_match = "exact"
pool = "users"

[[routes]]
id = "users-all"
path = "/users"
pool = "users"
strip_prefix = true
"#;

    fn secs(s: u64) -> Option<Duration> {
        Some(Duration::from_secs(s))
    }

    #[test]
    fn full_config_round_trip() {
        let config = parse_str(FULL, "full.toml").unwrap_or_else(|e| panic!("{e}"));
        let addr = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
        let mut pools = BTreeMap::new();
        pools.insert(
            "orders".to_string(),
            PoolConfig {
                name: "orders".into(),
                backends: vec![
                    BackendConfig {
                        address: addr("127.0.0.1:9001"),
                        weight: 2,
                    },
                    BackendConfig {
                        address: addr("127.0.0.1:9002"),
                        weight: 1,
                    },
                    BackendConfig {
                        address: addr("127.0.0.1:9003"),
                        weight: 1,
                    },
                ],
                balance: Balance::ConsistentHash(HashKey::Cookie("session".into())),
                timeouts: TimeoutsConfig {
                    connect: Some(Duration::from_millis(500)),
                    read: Some(DEFAULT_READ_TIMEOUT),
                    write: Some(DEFAULT_WRITE_TIMEOUT),
                    idle: Some(DEFAULT_IDLE_TIMEOUT),
                    total: secs(60),
                },
                retries: 3,
                health_check: Some(HealthCheck {
                    kind: HealthCheckKind::Http {
                        path: "/healthz".into(),
                        host: Some("orders.internal".into()),
                        expected_status: (200, 299),
                    },
                    interval: Duration::from_secs(10),
                    timeout: Duration::from_secs(2),
                    healthy_threshold: 1,
                    unhealthy_threshold: 5,
                }),
                tls: None,
                h2c: false,
                max_h2_streams: DEFAULT_MAX_H2_STREAMS,
                fallback: None,
                max_in_flight: None,
                outlier: None,
                breaker: None,
                retry_budget: None,
            },
        );
        pools.insert(
            "users".to_string(),
            PoolConfig {
                name: "users".into(),
                backends: vec![BackendConfig {
                    address: addr("10.1.2.3:80"),
                    weight: 1,
                }],
                balance: Balance::LeastRequests,
                timeouts: TimeoutsConfig {
                    connect: Some(DEFAULT_CONNECT_TIMEOUT),
                    read: Some(DEFAULT_READ_TIMEOUT),
                    write: Some(DEFAULT_WRITE_TIMEOUT),
                    idle: Some(DEFAULT_IDLE_TIMEOUT),
                    total: None,
                },
                retries: 0,
                health_check: Some(HealthCheck {
                    kind: HealthCheckKind::Tcp,
                    interval: DEFAULT_HC_INTERVAL,
                    timeout: DEFAULT_HC_TIMEOUT,
                    healthy_threshold: DEFAULT_HC_HEALTHY_THRESHOLD,
                    unhealthy_threshold: DEFAULT_HC_UNHEALTHY_THRESHOLD,
                }),
                tls: None,
                h2c: false,
                max_h2_streams: DEFAULT_MAX_H2_STREAMS,
                fallback: None,
                max_in_flight: None,
                outlier: None,
                breaker: None,
                retry_budget: None,
            },
        );
        let users_route = |id: &str, path: PathMatch, strip_prefix: bool| RouteConfig {
            id: id.into(),
            tags: vec![],
            auth: RouteAuth::None,
            rate_limits: vec![],
            hosts: vec![],
            path,
            methods: vec![],
            upstream: RouteUpstream::Pool("users".into()),
            strip_prefix,
            rewrite_prefix: None,
            request_headers: HeaderRules::default(),
            response_headers: HeaderRules::default(),
            timeouts: TimeoutsConfig::default(),
            lifecycle: Default::default(),
            cache: None,
            retry_on: Default::default(),
            max_body_size: None,
            ip: None,
            cors: None,
            mirror: None,
            compression: None,
        };
        let expected = Config {
            source: "full.toml".into(),
            server: ServerSettings {
                threads: 4,
                grace_period: Duration::from_secs(10),
                upstream_keepalive: 512,
                watch_config: true,
                client: Default::default(),
                via: None,
                trusted_proxies: Default::default(),
            },
            listeners: vec![
                Listener {
                    address: addr("0.0.0.0:8080"),
                    tls: None,
                    redirect_https: None,
                    hsts: None,
                    proxy_protocol: None,
                    h2c: false,
                    ip: None,
                },
                Listener {
                    address: addr("[::1]:8443"),
                    tls: None,
                    redirect_https: None,
                    hsts: None,
                    proxy_protocol: None,
                    h2c: false,
                    ip: None,
                },
            ],
            admin: AdminSettings {
                address: addr("127.0.0.1:9999"),
                token_digest: None,
                read_token_digest: None,
                allow_unauthenticated: false,
                hosts: vec![],
            },
            pools,
            routes: vec![
                RouteConfig {
                    id: "orders-v1".into(),
                    tags: vec![],
                    auth: RouteAuth::None,
                    rate_limits: vec![],
                    hosts: vec![
                        HostPattern::Exact("api.example.com".into()),
                        HostPattern::Wildcard(".example.com".into()),
                    ],
                    path: PathMatch::Prefix("/v1/orders".into()),
                    methods: vec!["GET".into(), "POST".into()],
                    upstream: RouteUpstream::Pool("orders".into()),
                    strip_prefix: false,
                    rewrite_prefix: Some("/api/orders".into()),
                    request_headers: HeaderRules {
                        set: vec![("x-env".into(), "prod".into())],
                        remove: vec!["x-debug".into()],
                    },
                    response_headers: HeaderRules {
                        set: vec![],
                        remove: vec!["server".into()],
                    },
                    timeouts: TimeoutsConfig {
                        read: secs(5),
                        ..TimeoutsConfig::default()
                    },
                    lifecycle: Default::default(),
                    cache: None,
                    retry_on: Default::default(),
                    max_body_size: None,
                    ip: None,
                    cors: None,
                    mirror: None,
                    compression: None,
                },
                users_route("users", PathMatch::Exact("/users".into()), false),
                users_route("users-all", PathMatch::Prefix("/users".into()), true),
            ],
            auth: parse_str("", "empty.toml").unwrap().auth,
            access_log: AccessLogTarget::Stdout,
            cache: Default::default(),
            consumers: vec![],
            jwt_issuers: vec![],
            limit_store: Default::default(),
            consumer_files: vec![],
            consumer_globs: vec![],
            source_digest: Default::default(),
        };
        assert_eq!(config, expected);
    }

    #[test]
    fn empty_file_gives_defaults() {
        let config = parse_str("", "empty.toml").unwrap();
        assert_eq!(config.source, "empty.toml");
        assert_eq!(config.server.threads, DEFAULT_THREADS);
        assert_eq!(config.server.grace_period, DEFAULT_GRACE_PERIOD);
        assert_eq!(config.server.upstream_keepalive, DEFAULT_UPSTREAM_KEEPALIVE);
        assert_eq!(config.listeners.len(), 1);
        assert_eq!(config.listeners[0].address.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.admin.address.to_string(), DEFAULT_ADMIN_LISTEN);
        assert!(config.pools.is_empty() && config.routes.is_empty());
    }

    #[test]
    fn shipped_example_is_valid() {
        let src = include_str!("../../conf/portcullis.toml");
        let config = parse_str(src, "conf/portcullis.toml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.pools.len(), 4);
        assert_eq!(config.routes.len(), 4);
        let orders = &config.pools["orders-v1"];
        assert_eq!(orders.fallback.as_deref(), Some("orders-dr"));
        assert!(orders.outlier.is_some() && orders.breaker.is_some());
        assert!(orders.retry_budget.is_some());
        let v1 = &config.routes[0];
        assert!(v1.retry_on.reset && v1.retry_on.statuses == [502, 503]);
        assert_eq!(v1.upstream, RouteUpstream::Pool("orders-v1".into()));
        assert_eq!(v1.path, PathMatch::Prefix("/v1/orders".into()));
        assert!(!v1.request_headers.is_empty());
        assert_eq!(
            config.routes[1].upstream,
            RouteUpstream::Pool("orders-v2".into())
        );
        assert!(config.routes[3]
            .hosts
            .contains(&HostPattern::Wildcard(".tenants.example.com".into())));
        assert!(config.pools["orders-v1"].health_check.is_some());
        for pool in config.pools.values() {
            assert!(pool.backends.iter().all(|b| b.address.ip().is_loopback()));
        }
    }

    #[test]
    fn demo_config_is_valid() {
        let src = include_str!("../../conf/demo.toml");
        parse_str(src, "conf/demo.toml").unwrap_or_else(|e| panic!("{e}"));
    }

    /// Every file in tests/fixtures/broken: its `# expect:` text appears in an
    /// error that points inside the file (below the comment).
    #[test]
    fn broken_fixtures() {
        macro_rules! fixtures {
            ($($name:literal),* $(,)?) => {
                [$(($name, include_str!(concat!("../../tests/fixtures/broken/", $name)))),*]
            };
        }
        let fixtures = fixtures![
            "syntax_error.toml",
            "unknown_key.toml",
            "unknown_pool.toml",
            "duplicate_route.toml",
            "conflicting_routes.toml",
            "bad_backend.toml",
            "duplicate_backend.toml",
            "empty_pool.toml",
            "zero_timeout.toml",
            "zero_weight.toml",
            "bad_hash_key.toml",
            "bad_path.toml",
            "bad_wildcard.toml",
            "hsts_on_plain.toml",
            "missing_scopes.toml",
            "key_not_digest.toml",
            "per_consumer_without_auth.toml",
        ];
        for (name, src) in fixtures {
            let expect = src
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("# expect: "))
                .unwrap_or_else(|| panic!("{name}: no `# expect:` first line"));
            let errors = match parse_str(src, name) {
                Ok(_) => panic!("{name}: parsed without error"),
                Err(e) => e,
            };
            assert_eq!(errors.len(), 1, "{name}: one error expected:\n{errors}");
            let e = &errors.0[0];
            assert!(e.message.contains(expect), "{name}: {e}\n  lacks: {expect}");
            assert!(e.line >= 2 && e.column >= 1, "{name}: {e}");
            assert!(e
                .to_string()
                .starts_with(&format!("{name}:{}:{}: ", e.line, e.column)));
        }
    }

    #[test]
    fn type_and_key_errors_say_what_was_expected() {
        let one = |src: &str| parse_str(src, "f.toml").unwrap_err().to_string();
        for (src, expect) in [
            (
                "[server]\nthreads = \"2\"\n",
                r#"f.toml:2:11: server: expected an integer, like 2, not the string "2": write it without quotes"#,
            ),
            (
                "[server]\nthreads = -1\n",
                "f.toml:2:11: server: expected an integer, like 2, not the integer -1: it must be 0 or more",
            ),
            (
                "[server]\ngrace_period = 10\n",
                r#"f.toml:2:16: server: expected a duration string, like "10s", not the integer 10"#,
            ),
            (
                "[pools.p]\nbackends = [\"127.0.0.1:1\"]\n[pools.p.timeouts]\nread = 10\n",
                r#"f.toml:4:8: pool "p": expected a duration string, like "10s", not the integer 10"#,
            ),
            (
                "[server]\nwatch_config = \"true\"\n",
                r#"f.toml:2:16: server: expected true or false, not the string "true": write it without quotes"#,
            ),
            (
                "[server]\ntreads = 2\n",
                "f.toml:2:1: server: unknown key `treads`: did you mean `threads`? (keys here: threads, grace_period, upstream_keepalive, watch_config, client, via, trusted_proxies)",
            ),
            (
                "[server]\nzzz = 2\n",
                "f.toml:2:1: server: unknown key `zzz` (keys here: threads, grace_period, upstream_keepalive, watch_config, client, via, trusted_proxies)",
            ),
        ] {
            assert_eq!(one(src), expect, "{src}");
        }
        // Absurd durations are refused with their bound; addresses say
        // what is wrong with them.
        let base = "[pools.p]\nbackends = [\"127.0.0.1:1\"]\n[[routes]]\nid = \"r\"\npath = \"/\"\npool = \"p\"\n";
        for (extra, expect) in [
            (
                "[server]\ngrace_period = \"100y\"\n",
                r#"grace_period must be at most 1h, not "100y""#,
            ),
            (
                "[server]\n[server.client]\nheader_timeout = \"400d\"\n",
                r#"header_timeout must be at most 1day, not "400d""#,
            ),
            (
                "[[listeners]]\naddress = \"127.0.0.1:70000\"\n",
                "port 70000 is out of range (0-65535)",
            ),
            ("[[listeners]]\naddress = \"127.0.0.1\"\n", "it has no port"),
            (
                "[[listeners]]\naddress = \"gw.example:80\"\n",
                "host names are not supported",
            ),
        ] {
            let message = one(&format!("{extra}{base}"));
            assert!(message.contains(expect), "{extra}: {message}");
        }
    }

    #[test]
    fn parse_errors_stop_validation_and_name_the_item() {
        // The route also has an undefined pool, but only the parse error is reported.
        let src = "[[routes]]\nid = \"a\"\npath = \"/\"\npool = \"nope\"\n[routes.timeouts]\nconect = \"1s\"\n";
        let errors = parse_str(src, "f.toml").unwrap_err();
        assert_eq!(errors.len(), 1, "{errors}");
        assert!(
            errors
                .to_string()
                .starts_with(r#"f.toml:6:1: route "a": unknown key `conect`: did you mean `connect`? (keys here: connect, read, write, idle, total)"#),
            "{errors}"
        );
        // Type errors point at the value.
        let src = "[pools.p]\nbackends = [\"127.0.0.1:1\"]\nretries = \"two\"\n";
        let errors = parse_str(src, "f.toml").unwrap_err();
        assert!(
            errors.to_string().starts_with(
                r#"f.toml:3:11: pool "p": expected an integer, like 2, not the string "two""#
            ),
            "{errors}"
        );
        // In TOML's words, with the form expected.
        let errors = parse_str("[pools.p]\nbackends = \"127.0.0.1:1\"\n", "f.toml").unwrap_err();
        assert_eq!(
            errors.to_string(),
            r#"f.toml:2:12: pool "p": expected an array, not the string "127.0.0.1:1""#
        );
        // Later sections are not accepted yet.
        let errors = parse_str("[tls]\ncert = \"x\"\n", "f.toml").unwrap_err();
        assert!(
            errors
                .to_string()
                .starts_with("f.toml:1:2: unknown key `tls`"),
            "{errors}"
        );
        // A missing required key points at the table.
        let src =
            "[pools.p]\nbackends = [\"127.0.0.1:1\"]\n\n[[routes]]\nid = \"a\"\npool = \"p\"\n";
        let errors = parse_str(src, "f.toml").unwrap_err();
        assert_eq!(
            errors.to_string(),
            r#"f.toml:4:1: route "a": missing field `path`"#
        );
    }

    #[test]
    fn syntax_errors_are_one_line() {
        let errors = parse_str("[pools.a\nbackends = []\n", "f.toml").unwrap_err();
        let text = errors.to_string();
        assert!(!text.contains('\n'), "{text}");
        assert!(
            text.starts_with("f.toml:1:9: unclosed table, expected `]`"),
            "{text}"
        );
    }

    #[test]
    fn load_reads_files_and_reports_unreadable_ones() {
        let missing = std::path::Path::new("/nonexistent/portcullis.toml");
        let errors = load(missing).unwrap_err();
        assert_eq!(errors.len(), 1);
        let e = &errors.0[0];
        assert_eq!((e.line, e.column), (0, 0));
        assert!(
            e.to_string()
                .starts_with("/nonexistent/portcullis.toml: cannot read the file: "),
            "{e}"
        );

        let dir = std::env::temp_dir().join(format!("portcullis-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ok.toml");
        std::fs::write(&path, "[server]\nthreads = 3\n").unwrap();
        let config = load(&path).unwrap();
        assert_eq!(config.server.threads, 3);
        assert_eq!(config.source, path.display().to_string());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
