//! Tests of the route checks.

use super::*;

#[test]
fn unknown_pool_points_at_the_pool_value() {
    let src = with_pool("[[routes]]\nid = \"a\"\npath = \"/\"\npool = \"x\"\n");
    assert_eq!(
        only_error(&src),
        r#"f.toml:6:8: route "a": pool "x" is not defined (defined pools: p)"#
    );
}

#[test]
fn duplicate_route_id() {
    let src = with_pool(
        "[[routes]]\nid = \"a\"\npath = \"/x\"\npool = \"p\"\n\n[[routes]]\nid = \"a\"\npath = \"/y\"\npool = \"p\"\n",
    );
    assert_eq!(
        only_error(&src),
        r#"f.toml:9:6: route "a": duplicate route id "a" (first used at line 4)"#
    );
}

#[test]
fn bad_ids_and_pool_names() {
    let src = "[pools.\"a b\"]\nbackends = [\"127.0.0.1:1\"]\n[[routes]]\nid = \"r/1\"\npath = \"/\"\npool = \"a b\"\n";
    let errors = all_errors(src);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[0].starts_with(r#"f.toml:1:8: pool "a b": pool names may only"#));
    assert!(errors[1].starts_with(r#"f.toml:4:6: route "r/1": route ids may only"#));
}

#[test]
fn conflicting_routes_name_both() {
    let src = with_pool(&format!(
        "{}{}",
        route(
            "a",
            "path = \"/v1/\"\nhosts = [\"api.example.com\", \"x.example.com\"]"
        ),
        route("b", "path = \"/v1\"\nhosts = [\"API.example.com\"]"),
    ));
    assert_eq!(
        only_error(&src),
        r#"f.toml:9:6: route "b": conflicts with route "a" (line 4): both match host "api.example.com", path prefix "/v1" and any method"#
    );
}

#[test]
fn conflict_rules() {
    let conflicts = |a: &str, b: &str| {
        let src = with_pool(&format!("{}{}", route("a", a), route("b", b)));
        match parse_str(&src, "f.toml") {
            Ok(_) => false,
            Err(e) => {
                assert_eq!(e.len(), 1, "{e}");
                assert!(e.0[0].message.contains("conflicts with route \"a\""), "{e}");
                true
            }
        }
    };
    // Same path, no hosts, no methods.
    assert!(conflicts("path = \"/\"", "path = \"/\""));
    // Exact and prefix on the same path do not conflict.
    assert!(!conflicts(
        "path = \"/x\"",
        "path = \"/x\"\npath_match = \"exact\""
    ));
    // A route with methods is more specific than one without.
    assert!(!conflicts(
        "path = \"/\"",
        "path = \"/\"\nmethods = [\"GET\"]"
    ));
    // Intersecting method sets conflict, disjoint ones do not.
    assert!(conflicts(
        "path = \"/\"\nmethods = [\"GET\", \"POST\"]",
        "path = \"/\"\nmethods = [\"post\"]"
    ));
    assert!(!conflicts(
        "path = \"/\"\nmethods = [\"GET\"]",
        "path = \"/\"\nmethods = [\"POST\"]"
    ));
    // Hosts: a shared pattern conflicts; a wildcard and an exact host do not;
    // hosts and no hosts do not.
    assert!(conflicts(
        "path = \"/\"\nhosts = [\"*.a.com\"]",
        "path = \"/\"\nhosts = [\"b.com\", \"*.A.com\"]"
    ));
    assert!(!conflicts(
        "path = \"/\"\nhosts = [\"*.a.com\"]",
        "path = \"/\"\nhosts = [\"x.a.com\"]"
    ));
    assert!(!conflicts(
        "path = \"/\"\nhosts = [\"a.com\"]",
        "path = \"/\""
    ));
    // An empty hosts list is the same as none.
    assert!(conflicts("path = \"/\"\nhosts = []", "path = \"/\""));
    // Different paths never conflict.
    assert!(!conflicts("path = \"/v1\"", "path = \"/v2\""));
}

#[test]
fn routes_with_match_errors_are_not_checked_for_conflicts() {
    let src = with_pool(&format!(
        "{}{}",
        route("a", "path = \"v1\""),
        route("b", "path = \"v1\""),
    ));
    let errors = all_errors(&src);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors.iter().all(|e| e.contains("must start with '/'")));
}

#[test]
fn path_errors() {
    let cases = [
        ("v1", "must start with '/'"),
        ("/v1?x=1", "must not contain '?' or '#'"),
        ("/v1#top", "must not contain '?' or '#'"),
        ("/v 1", "must not contain spaces"),
        ("/v1/*", "must not contain '*'"),
    ];
    for (path, expect) in cases {
        let src = with_pool(&route("a", &format!("path = {path:?}")));
        let e = only_error(&src);
        assert!(e.starts_with(r#"f.toml:6:8: route "a": path "#), "{e}");
        assert!(e.contains(expect), "{path}: {e}");
    }
}

#[test]
fn host_errors() {
    let cases = [
        ("api.*.com", "misplaced '*'"),
        ("*", "misplaced '*'"),
        ("*example.com", "misplaced '*'"),
        ("api.example.com:8080", "must not contain ':'"),
        ("", "is empty"),
        ("a..b", "not a valid host name"),
        ("a b", "not a valid host name"),
    ];
    for (host, expect) in cases {
        let src = with_pool(&route(
            "a",
            &format!("path = \"/\"\nhosts = [\"ok.com\", {host:?}]"),
        ));
        let e = only_error(&src);
        assert!(e.starts_with(r#"f.toml:7:20: route "a": host "#), "{e}");
        assert!(e.contains(expect), "{host}: {e}");
    }
    let src = with_pool(&route("a", "path = \"/\"\nhosts = [\"A.com\", \"a.COM\"]"));
    assert!(only_error(&src).contains(r#"host "a.com" is listed twice"#));
}

#[test]
fn method_errors() {
    let src = with_pool(&route(
        "a",
        "path = \"/\"\nmethods = [\"GET\", \"get\", \"BAD METHOD\", \"\"]",
    ));
    let errors = all_errors(&src);
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(errors[0].contains("f.toml:7:19: route \"a\": method GET is listed twice"));
    assert!(errors[1].contains(r#"method "BAD METHOD" is not a valid HTTP method"#));
    assert!(errors[2].contains(r#"method "" is not a valid HTTP method"#));
}

#[test]
fn prefix_only_options() {
    let src = with_pool(&route(
        "a",
        "path = \"/x\"\npath_match = \"exact\"\nstrip_prefix = true\nrewrite_prefix = \"/y\"",
    ));
    let errors = all_errors(&src);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[0].contains(r#"strip_prefix only applies to path_match = "prefix""#));
    assert!(errors[1].contains(r#"rewrite_prefix only applies to path_match = "prefix""#));

    let src = with_pool(&route(
        "a",
        "path = \"/x\"\nstrip_prefix = true\nrewrite_prefix = \"/y\"",
    ));
    assert!(only_error(&src).contains("strip_prefix and rewrite_prefix cannot be used together"));

    let src = with_pool(&route("a", "path = \"/x\"\nrewrite_prefix = \"y\""));
    assert!(only_error(&src).contains(r#"rewrite_prefix "y" must start with '/'"#));

    let src = with_pool(&route("a", "path = \"/x\"\npath_match = \"glob\""));
    assert!(only_error(&src).contains(r#"unknown path_match "glob"; expected prefix or exact"#));

    // strip_prefix = false is harmless on an exact route.
    let config = ok(&with_pool(&route(
        "a",
        "path = \"/x\"\npath_match = \"exact\"\nstrip_prefix = false",
    )));
    assert!(!config.routes[0].strip_prefix);
}

#[test]
fn prefixes_are_normalised() {
    let config = ok(&with_pool(&format!(
        "{}{}{}{}",
        route("a", "path = \"/v1/\"\nrewrite_prefix = \"/api/\""),
        route("b", "path = \"/\""),
        route("c", "path = \"/v2/\"\npath_match = \"exact\""),
        route("d", "path = \"/v3//\"\nrewrite_prefix = \"/\""),
    )));
    let r = &config.routes;
    assert_eq!(r[0].path, PathMatch::Prefix("/v1".into()));
    assert_eq!(r[0].rewrite_prefix.as_deref(), Some("/api"));
    assert_eq!(r[1].path, PathMatch::Prefix("/".into()));
    assert_eq!(r[2].path, PathMatch::Exact("/v2/".into()));
    assert_eq!(r[3].path, PathMatch::Prefix("/v3".into()));
    assert_eq!(r[3].rewrite_prefix.as_deref(), Some("/"));
    // "/v1/" and "/v1" are the same prefix, so they conflict.
    let src = with_pool(&format!(
        "{}{}",
        route("a", "path = \"/v1/\""),
        route("b", "path = \"/v1\"")
    ));
    assert!(only_error(&src).contains("conflicts with route \"a\""));
}

#[test]
fn hosts_and_methods_are_normalised() {
    let config = ok(&with_pool(&route(
        "a",
        "path = \"/\"\nhosts = [\"API.Example.com\", \"*.Tenants.example.com\"]\nmethods = [\"get\", \"Post\"]",
    )));
    let r = &config.routes[0];
    assert_eq!(
        r.hosts,
        vec![
            HostPattern::Exact("api.example.com".into()),
            HostPattern::Wildcard(".tenants.example.com".into())
        ]
    );
    assert_eq!(r.methods, vec!["GET".to_string(), "POST".to_string()]);
}

#[test]
fn header_rules() {
    let config = ok(&with_pool(&route(
        "a",
        "path = \"/\"\n[routes.request_headers]\nset = { \"X-Env\" = \"prod\", \"x-a\" = \"\" }\nremove = [\"X-Debug\"]\n[routes.response_headers]\nremove = [\"server\"]",
    )));
    let r = &config.routes[0];
    assert_eq!(
        r.request_headers.set,
        vec![
            ("x-a".to_string(), String::new()),
            ("x-env".to_string(), "prod".to_string())
        ]
    );
    assert_eq!(r.request_headers.remove, vec!["x-debug".to_string()]);
    assert_eq!(r.response_headers.remove, vec!["server".to_string()]);
    assert!(r.response_headers.set.is_empty());

    let src = with_pool(&route(
        "a",
        "path = \"/\"\n[routes.request_headers]\nset = { \"bad name\" = \"v\", \"x-ok\" = \"a\\r\\nb\", \"X-Dup\" = \"1\", \"x-dup\" = \"2\", \"Content-Length\" = \"5\" }\nremove = [\"x-r\", \"X-R\", \"\"]",
    ));
    let errors = all_errors(&src);
    let expected = [
        r#"request_headers.set: "bad name" is not a valid header name"#,
        r#"request_headers.set: header "content-length" frames the message"#,
        r#"request_headers.set: header "x-dup" is set twice"#,
        r#"request_headers.set: the value of header "x-ok" may only contain visible ASCII"#,
        r#"request_headers.remove: header "x-r" is listed twice"#,
        r#"request_headers.remove: "" is not a valid header name"#,
    ];
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    for e in expected {
        assert!(
            errors.iter().any(|got| got.contains(e)),
            "{e} not in {errors:#?}"
        );
    }
}
