//! `[server.trusted_proxies]`, a listener's `proxy_protocol`, `[routes.ip]`,
//! `[listeners.ip]` and `[routes.cors]`.

use super::*;

#[test]
fn trusted_proxies_and_proxy_protocol_are_read() {
    let config = ok(
        "[server.trusted_proxies]\ncidrs = [\"10.0.0.0/8\", \"192.0.2.7\", \"2001:db8::/32\"]\nheader = \"Forwarded\"\n[[listeners]]\naddress = \"127.0.0.1:8080\"\nproxy_protocol = \"v2\"\n[[listeners]]\naddress = \"127.0.0.1:8081\"\nproxy_protocol = \"v1\"\n[[listeners]]\naddress = \"127.0.0.1:8082\"\n",
    );
    let t = &config.server.trusted_proxies;
    assert_eq!(t.header, model::ForwardingHeader::Forwarded);
    let cidrs: Vec<String> = t.cidrs.iter().map(|c| c.to_string()).collect();
    assert_eq!(cidrs, ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]);
    assert!(t.trusts("10.200.0.1".parse().unwrap()));
    assert!(!t.trusts("192.0.2.8".parse().unwrap()));
    let versions: Vec<_> = config.listeners.iter().map(|l| l.proxy_protocol).collect();
    assert_eq!(
        versions,
        [
            Some(model::ProxyProtocol::V2),
            Some(model::ProxyProtocol::V1),
            None
        ]
    );
    // Defaults: nobody trusted, X-Forwarded-For.
    let config = ok("");
    assert!(config.server.trusted_proxies.cidrs.is_empty());
    assert_eq!(
        config.server.trusted_proxies.header,
        model::ForwardingHeader::XForwardedFor
    );
}

#[test]
fn wrong_forwarding_settings_are_refused_with_where_and_why() {
    let errors = all_errors(
        "[server.trusted_proxies]\ncidrs = [\"10.0.0.1/8\", \"10.0.0.0/33\", \"proxy.internal\"]\nheader = \"x-real-ip\"\n[[listeners]]\naddress = \"127.0.0.1:8080\"\nproxy_protocol = \"v3\"\n",
    );
    let expected = [
        r#"f.toml:2:10: server.trusted_proxies: cidrs: "10.0.0.1/8" has host bits set; the network is 10.0.0.0/8"#,
        r#"f.toml:2:24: server.trusted_proxies: cidrs: "10.0.0.0/33" is not an address or network"#,
        r#"f.toml:2:39: server.trusted_proxies: cidrs: "proxy.internal" is not an address or network"#,
        r#"f.toml:3:10: server.trusted_proxies: header: unknown "x-real-ip"; expected "x-forwarded-for" or "forwarded""#,
        r#"f.toml:6:18: listener "127.0.0.1:8080": proxy_protocol: unknown version "v3"; expected "v1" or "v2""#,
    ];
    let mut errors = errors;
    errors.sort();
    assert_each_starts_with(&errors, &expected);
    assert!(only_error("[server.trusted_proxies]\ncidrs = []\n")
        .starts_with("f.toml:2:9: server.trusted_proxies: cidrs is empty"));
}

#[test]
fn ip_rules_on_routes_and_listeners() {
    let config = ok(
        "[[listeners]]\naddress = \"127.0.0.1:8080\"\n[listeners.ip]\ndeny = [\"192.0.2.0/24\"]\n[pools.p]\nbackends = [\"127.0.0.1:1\"]\n[[routes]]\nid = \"r\"\npath = \"/\"\npool = \"p\"\n[routes.ip]\nallow = [\"10.0.0.0/8\", \"2001:db8::/32\"]\ndeny = [\"10.0.0.7\"]\n",
    );
    let rules = config.routes[0].ip.as_ref().unwrap();
    assert!(rules.admits(Some("10.1.2.3".parse().unwrap())));
    assert!(rules.admits(Some("2001:db8::1".parse().unwrap())));
    assert!(rules.admits(Some("::ffff:10.1.2.3".parse().unwrap())));
    assert!(
        !rules.admits(Some("10.0.0.7".parse().unwrap())),
        "deny wins"
    );
    assert!(!rules.admits(Some("192.0.2.1".parse().unwrap())));
    assert!(
        !rules.admits(None),
        "an unknown address fails an allow list"
    );
    let listener = config.listeners[0].ip.as_ref().unwrap();
    assert!(listener.admits(None) && !listener.admits(Some("192.0.2.9".parse().unwrap())));

    let e = only_error("[pools.p]\nbackends = [\"127.0.0.1:1\"]\n[[routes]]\nid = \"r\"\npath = \"/\"\npool = \"p\"\n[routes.ip]\nallow = [\"10.0.0.0/33\"]\n");
    assert!(
        e.starts_with(
            r#"f.toml:8:10: route "r": ip.allow: "10.0.0.0/33" is not an address or network"#
        ),
        "{e}"
    );
    let e = only_error("[[listeners]]\naddress = \"127.0.0.1:8080\"\n[listeners.ip]\nallow = []\n");
    assert!(
        e.contains("ip: neither allow nor deny lists an address"),
        "{e}"
    );
}

#[test]
fn cors_policies_are_read_and_unsafe_ones_refused() {
    let base = "[pools.p]\nbackends = [\"127.0.0.1:1\"]\n[[routes]]\nid = \"r\"\npath = \"/\"\npool = \"p\"\n[routes.cors]\n";
    let config = ok(&format!(
        "{base}allow_origins = [\"https://App.Example.com\", \"https://*.example.org:8443\"]\nallow_methods = [\"get\", \"POST\"]\nallow_headers = [\"Content-Type\", \"X-API-Key\"]\nexpose_headers = [\"RateLimit\"]\nallow_credentials = true\nmax_age = \"10m\"\n"
    ));
    let cors = config.routes[0].cors.as_ref().unwrap();
    assert_eq!(
        cors.allow_origins,
        ["https://app.example.com", "https://*.example.org:8443"]
    );
    assert_eq!(
        cors.allow_methods.as_deref(),
        Some(&["GET".to_string(), "POST".to_string()][..])
    );
    assert_eq!(cors.allow_headers, ["content-type", "x-api-key"]);
    assert_eq!(cors.expose_headers, ["ratelimit"]);
    assert_eq!(cors.max_age, Some(Duration::from_secs(600)));

    let errors = all_errors(&format!(
        "{base}allow_origins = [\"*\", \"null\", \"https://app.example.com/\", \"app.example.com\", \"https://a.*.example.com\"]\nallow_credentials = true\nallow_headers = [\"bad header\"]\nmax_age = \"2d\"\n"
    ));
    let expected = [
        r#"f.toml:8:23: route "r": cors.allow_origins: "null" is not a safe origin"#,
        r#"f.toml:8:31: route "r": cors.allow_origins: "https://app.example.com/" is not an origin"#,
        r#"f.toml:8:59: route "r": cors.allow_origins: "app.example.com" is not an origin"#,
        r#"f.toml:8:78: route "r": cors.allow_origins: "https://a.*.example.com" has no valid host"#,
        r#"f.toml:9:21: route "r": cors: allow_credentials with allow_origins = ["*"]"#,
        r#"f.toml:10:18: route "r": cors.allow_headers: "bad header" is not a header name"#,
        r#"f.toml:11:11: route "r": cors.max_age must be at most 1day"#,
    ];
    assert_each_starts_with(&errors, &expected);
}
