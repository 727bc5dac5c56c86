//! Unit tests of the route matcher.
use super::*;

/// A route; hosts starting with `*.` are wildcards, paths starting with
/// `=` exact, others prefixes.
fn route(hosts: &[&str], path: &str, methods: &[&str]) -> RouteConfig {
    RouteConfig::matching(
        format!("{hosts:?} {path} {methods:?}"),
        hosts
            .iter()
            .map(|h| match h.strip_prefix('*') {
                Some(suffix) => HostPattern::Wildcard(suffix.to_string()),
                None => HostPattern::Exact(h.to_string()),
            })
            .collect(),
        match path.strip_prefix('=') {
            Some(p) => PathMatch::Exact(p.to_string()),
            None => PathMatch::Prefix(path.to_string()),
        },
        methods.iter().map(|m| m.to_string()).collect(),
    )
}

fn found(route: usize, prefix_len: usize) -> RouteLookup {
    RouteLookup::Found { route, prefix_len }
}

fn not_allowed(methods: &[&str]) -> RouteLookup {
    RouteLookup::MethodNotAllowed {
        allowed: methods.iter().map(|m| m.to_string()).collect(),
    }
}

/// The route index only.
fn index(router: &Router, host: &str, path: &str, method: &str) -> Option<usize> {
    match router.find(host, path, method) {
        RouteLookup::Found { route, .. } => Some(route),
        _ => None,
    }
}

#[test]
fn router_is_send_and_sync() {
    fn assert<T: Send + Sync>() {}
    assert::<Router>();
}

#[test]
fn empty_table_finds_nothing() {
    let router = Router::build(&[]);
    assert_eq!(
        router.find("example.com", "/", "GET"),
        RouteLookup::NotFound
    );
    assert_eq!(router.find("", "", ""), RouteLookup::NotFound);
}

#[test]
fn exact_host_beats_wildcard_beats_any_host() {
    let router = Router::build(&[
        route(&[], "/", &[]),
        route(&["*.example.com"], "/", &[]),
        route(&["api.example.com"], "/", &[]),
    ]);
    assert_eq!(index(&router, "api.example.com", "/x", "GET"), Some(2));
    assert_eq!(index(&router, "www.example.com", "/x", "GET"), Some(1));
    assert_eq!(index(&router, "example.org", "/x", "GET"), Some(0));
}

#[test]
fn host_specificity_beats_path_specificity() {
    let router = Router::build(&[
        route(&[], "=/orders/1", &[]),
        route(&["*.example.com"], "/orders", &[]),
        route(&["api.example.com"], "/", &[]),
    ]);
    assert_eq!(
        router.find("api.example.com", "/orders/1", "GET"),
        found(2, 0)
    );
    assert_eq!(
        router.find("www.example.com", "/orders/1", "GET"),
        found(1, 7)
    );
    assert_eq!(router.find("example.org", "/orders/1", "GET"), found(0, 9));
}

#[test]
fn wildcard_matches_one_or_more_labels_but_not_the_apex() {
    let router = Router::build(&[route(&["*.example.com"], "/", &[])]);
    assert_eq!(index(&router, "a.example.com", "/", "GET"), Some(0));
    assert_eq!(index(&router, "a.b.example.com", "/", "GET"), Some(0));
    assert_eq!(index(&router, "example.com", "/", "GET"), None);
    assert_eq!(index(&router, ".example.com", "/", "GET"), None);
    assert_eq!(index(&router, "aexample.com", "/", "GET"), None);
    assert_eq!(index(&router, "a.example.com.evil.org", "/", "GET"), None);
}

#[test]
fn longest_wildcard_suffix_first() {
    let router = Router::build(&[
        route(&["*.com"], "/", &[]),
        route(&["*.example.com"], "/", &[]),
        route(&["*.eu.example.com"], "/", &[]),
    ]);
    assert_eq!(index(&router, "a.eu.example.com", "/", "GET"), Some(2));
    assert_eq!(index(&router, "a.b.eu.example.com", "/", "GET"), Some(2));
    assert_eq!(index(&router, "eu.example.com", "/", "GET"), Some(1));
    assert_eq!(index(&router, "a.us.example.com", "/", "GET"), Some(1));
    assert_eq!(index(&router, "example.com", "/", "GET"), Some(0));
    assert_eq!(index(&router, "example.org", "/", "GET"), None);
}

#[test]
fn falls_back_to_a_lower_tier_when_the_path_does_not_match() {
    let router = Router::build(&[
        route(&[], "/static", &[]),
        route(&["*.example.com"], "/blog", &[]),
        route(&["api.example.com"], "/v1", &[]),
    ]);
    assert_eq!(index(&router, "api.example.com", "/v1/x", "GET"), Some(2));
    assert_eq!(index(&router, "api.example.com", "/blog/x", "GET"), Some(1));
    assert_eq!(
        index(&router, "api.example.com", "/static/x", "GET"),
        Some(0)
    );
    assert_eq!(index(&router, "www.example.com", "/v1/x", "GET"), None);
    assert_eq!(
        index(&router, "www.example.com", "/static/x", "GET"),
        Some(0)
    );
    // A shorter wildcard suffix is a lower tier too.
    let router = Router::build(&[
        route(&["*.example.com"], "/shop", &[]),
        route(&["*.eu.example.com"], "/blog", &[]),
    ]);
    assert_eq!(index(&router, "a.eu.example.com", "/shop", "GET"), Some(0));
}

#[test]
fn falls_back_to_a_lower_tier_when_the_method_does_not_match() {
    let router = Router::build(&[
        route(&[], "/v1", &[]),
        route(&["api.example.com"], "/v1", &["POST"]),
    ]);
    assert_eq!(index(&router, "api.example.com", "/v1/x", "POST"), Some(1));
    assert_eq!(index(&router, "api.example.com", "/v1/x", "GET"), Some(0));
}

#[test]
fn a_shorter_prefix_in_the_same_tier_beats_a_lower_tier_when_the_method_does_not_match() {
    let router = Router::build(&[
        route(&[], "/login", &[]),
        route(&["api.example.com"], "=/login", &["POST"]),
        route(&["api.example.com"], "/", &["GET"]),
    ]);
    assert_eq!(index(&router, "api.example.com", "/login", "POST"), Some(1));
    assert_eq!(index(&router, "api.example.com", "/login", "GET"), Some(2));
    assert_eq!(index(&router, "api.example.com", "/login", "PUT"), Some(0));
}

#[test]
fn exact_path_beats_prefix() {
    let router = Router::build(&[
        route(&[], "/v1/health", &[]),
        route(&[], "=/v1/health", &[]),
    ]);
    assert_eq!(router.find("", "/v1/health", "GET"), found(1, 10));
    assert_eq!(router.find("", "/v1/health/", "GET"), found(0, 10));
    assert_eq!(router.find("", "/v1/health/x", "GET"), found(0, 10));
}

#[test]
fn exact_path_matches_only_itself() {
    let router = Router::build(&[route(&[], "=/v1", &[])]);
    assert_eq!(router.find("", "/v1", "GET"), found(0, 3));
    assert_eq!(router.find("", "/v1/", "GET"), RouteLookup::NotFound);
    assert_eq!(router.find("", "/v1/x", "GET"), RouteLookup::NotFound);
    assert_eq!(router.find("", "/v", "GET"), RouteLookup::NotFound);
}

#[test]
fn longest_prefix_wins() {
    let router = Router::build(&[
        route(&[], "/", &[]),
        route(&[], "/a", &[]),
        route(&[], "/a/b/c", &[]),
        route(&[], "/a/b", &[]),
    ]);
    assert_eq!(router.find("", "/a/b/c/d", "GET"), found(2, 6));
    assert_eq!(router.find("", "/a/b/c", "GET"), found(2, 6));
    assert_eq!(router.find("", "/a/b/cd", "GET"), found(3, 4));
    assert_eq!(router.find("", "/a/b", "GET"), found(3, 4));
    assert_eq!(router.find("", "/a/x/c", "GET"), found(1, 2));
    assert_eq!(router.find("", "/b", "GET"), found(0, 0));
}

#[test]
fn prefix_matches_on_segment_boundaries_only() {
    let router = Router::build(&[route(&[], "/v1", &[])]);
    assert_eq!(router.find("", "/v1", "GET"), found(0, 3));
    assert_eq!(router.find("", "/v1/", "GET"), found(0, 3));
    assert_eq!(router.find("", "/v1/x", "GET"), found(0, 3));
    assert_eq!(router.find("", "/v1//x", "GET"), found(0, 3));
    assert_eq!(router.find("", "/v10", "GET"), RouteLookup::NotFound);
    assert_eq!(router.find("", "/v1x/y", "GET"), RouteLookup::NotFound);
    assert_eq!(router.find("", "/v", "GET"), RouteLookup::NotFound);
    assert_eq!(router.find("", "/", "GET"), RouteLookup::NotFound);
    assert_eq!(router.find("", "", "GET"), RouteLookup::NotFound);
    assert_eq!(router.find("", "/x/v1", "GET"), RouteLookup::NotFound);
}

#[test]
fn trailing_slash_on_a_prefix_is_ignored() {
    let router = Router::build(&[route(&[], "/v1/", &[])]);
    assert_eq!(router.find("", "/v1", "GET"), found(0, 3));
    assert_eq!(router.find("", "/v1/x", "GET"), found(0, 3));
    assert_eq!(router.find("", "/v10", "GET"), RouteLookup::NotFound);
}

#[test]
fn root_prefix_matches_everything_with_prefix_len_zero() {
    let router = Router::build(&[route(&[], "/", &[])]);
    for path in ["/", "/x", "/x/y/z", "//", "", "*"] {
        assert_eq!(
            router.find("any.host", path, "GET"),
            found(0, 0),
            "{path:?}"
        );
    }
}

#[test]
fn exact_root_path() {
    let router = Router::build(&[route(&[], "=/", &[]), route(&[], "/", &[])]);
    assert_eq!(router.find("", "/", "GET"), found(0, 1));
    assert_eq!(router.find("", "/x", "GET"), found(1, 0));
}

#[test]
fn path_is_case_sensitive_and_not_decoded() {
    let router = Router::build(&[route(&[], "/v1/a b", &[]), route(&[], "/v1", &[])]);
    assert_eq!(router.find("", "/V1/x", "GET"), RouteLookup::NotFound);
    assert_eq!(router.find("", "/v1%2Fx", "GET"), RouteLookup::NotFound);
    assert_eq!(router.find("", "/%761/x", "GET"), RouteLookup::NotFound);
    assert_eq!(router.find("", "/v1/a%20b", "GET"), found(1, 3));
    assert_eq!(router.find("", "/v1/a b/c", "GET"), found(0, 7));
}

#[test]
fn route_listing_the_method_beats_route_accepting_any() {
    let router = Router::build(&[
        route(&[], "/items", &[]),
        route(&[], "/items", &["POST", "PUT"]),
    ]);
    assert_eq!(index(&router, "", "/items", "POST"), Some(1));
    assert_eq!(index(&router, "", "/items/1", "PUT"), Some(1));
    assert_eq!(index(&router, "", "/items", "GET"), Some(0));
    assert_eq!(index(&router, "", "/items", "DELETE"), Some(0));
}

#[test]
fn routes_split_by_method_at_the_same_path() {
    let router = Router::build(&[
        route(&[], "/items", &["GET", "HEAD"]),
        route(&[], "/items", &["POST"]),
    ]);
    assert_eq!(index(&router, "", "/items", "GET"), Some(0));
    assert_eq!(index(&router, "", "/items", "HEAD"), Some(0));
    assert_eq!(index(&router, "", "/items", "POST"), Some(1));
    assert_eq!(
        router.find("", "/items", "PATCH"),
        not_allowed(&["GET", "HEAD", "POST"])
    );
}

#[test]
fn method_not_allowed_lists_the_union_across_paths_and_tiers() {
    let router = Router::build(&[
        route(&[], "/", &["GET"]),
        route(&["*.example.com"], "/v1", &["PUT", "GET"]),
        route(&["api.example.com"], "=/v1/x", &["POST"]),
        route(&["api.example.com"], "/v1", &["DELETE", "POST"]),
        route(&["other.example.com"], "/v1", &["PATCH"]),
        route(&[], "/v2", &["OPTIONS"]),
    ]);
    assert_eq!(
        router.find("api.example.com", "/v1/x", "TRACE"),
        not_allowed(&["DELETE", "GET", "POST", "PUT"])
    );
    assert_eq!(router.find("api.example.com", "/v1/x", "PUT"), found(1, 3));
    assert_eq!(
        router.find("example.org", "/v1/x", "POST"),
        not_allowed(&["GET"])
    );
    assert_eq!(
        router.find("example.org", "/v2", "POST"),
        not_allowed(&["GET", "OPTIONS"])
    );
}

#[test]
fn methods_are_case_sensitive() {
    let router = Router::build(&[route(&[], "/", &["GET"])]);
    assert_eq!(router.find("", "/", "GET"), found(0, 0));
    assert_eq!(router.find("", "/", "get"), not_allowed(&["GET"]));
    assert_eq!(router.find("", "/", ""), not_allowed(&["GET"]));
}

#[test]
fn not_found_when_nothing_matches_the_path() {
    let router = Router::build(&[route(&["api.example.com"], "/v1", &["GET"])]);
    assert_eq!(
        router.find("api.example.com", "/v2", "POST"),
        RouteLookup::NotFound
    );
    assert_eq!(
        router.find("www.example.com", "/v1", "POST"),
        RouteLookup::NotFound
    );
}

#[test]
fn duplicate_match_keys_resolve_to_the_lowest_index() {
    let router = Router::build(&[
        route(&[], "/a", &[]),
        route(&[], "/a", &["GET"]),
        route(&[], "/a", &[]),
        route(&[], "/a", &["GET"]),
    ]);
    assert_eq!(index(&router, "", "/a", "GET"), Some(1));
    assert_eq!(index(&router, "", "/a", "POST"), Some(0));
}

#[test]
fn one_route_with_several_hosts() {
    let router = Router::build(&[
        route(
            &["a.example.com", "*.example.net", "a.example.com"],
            "/",
            &["GET"],
        ),
        route(&[], "/", &["POST"]),
    ]);
    assert_eq!(index(&router, "a.example.com", "/", "GET"), Some(0));
    assert_eq!(index(&router, "x.example.net", "/", "GET"), Some(0));
    assert_eq!(index(&router, "b.example.com", "/", "GET"), None);
    assert_eq!(
        router.find("a.example.com", "/", "PUT"),
        not_allowed(&["GET", "POST"])
    );
}

#[test]
fn host_port_case_and_trailing_dot_are_normalised() {
    let router = Router::build(&[
        route(&["api.example.com"], "/", &[]),
        route(&["*.example.com"], "/", &[]),
    ]);
    for host in [
        "api.example.com",
        "API.Example.COM",
        "api.example.com:8080",
        "API.EXAMPLE.COM:443",
        "api.example.com.",
        "api.example.com.:80",
        "api.example.com:",
    ] {
        assert_eq!(index(&router, host, "/", "GET"), Some(0), "{host:?}");
    }
    assert_eq!(index(&router, "WWW.Example.Com:8443", "/", "GET"), Some(1));
    assert_eq!(index(&router, "api.example.com..", "/", "GET"), None);
}

#[test]
fn ipv6_literal_hosts() {
    let router = Router::build(&[
        route(&["api.example.com"], "/", &[]),
        route(&[], "/", &["GET"]),
    ]);
    for host in ["[::1]", "[::1]:8080", "[2001:db8::1]:443", "::1", "[::1"] {
        assert_eq!(index(&router, host, "/", "GET"), Some(1), "{host:?}");
    }
    // The model takes no IPv6 patterns, but the router keys them as `[addr]`.
    let router = Router::build(&[route(&["[::1]"], "/", &[])]);
    assert_eq!(index(&router, "[::1]:8080", "/", "GET"), Some(0));
    assert_eq!(index(&router, "[::1]", "/", "GET"), Some(0));
    assert_eq!(index(&router, "[::2]:8080", "/", "GET"), None);
}

#[test]
fn strip_port_forms() {
    assert_eq!(strip_port("example.com"), "example.com");
    assert_eq!(strip_port("example.com:8080"), "example.com");
    assert_eq!(strip_port("127.0.0.1:80"), "127.0.0.1");
    assert_eq!(strip_port("[::1]:8080"), "[::1]");
    assert_eq!(strip_port("[::1]"), "[::1]");
    assert_eq!(strip_port("::1"), "::1");
    assert_eq!(strip_port(""), "");
}

#[test]
fn empty_host_matches_routes_without_hosts_only() {
    let router = Router::build(&[
        route(&["api.example.com"], "/v1", &[]),
        route(&["*.example.com"], "/v1", &[]),
        route(&[], "/v2", &[]),
    ]);
    assert_eq!(index(&router, "", "/v1", "GET"), None);
    assert_eq!(index(&router, ":8080", "/v1", "GET"), None);
    assert_eq!(index(&router, "", "/v2", "GET"), Some(2));
    assert_eq!(index(&router, ":8080", "/v2", "GET"), Some(2));
}

#[test]
fn overlong_host_matches_routes_without_hosts_only() {
    let long = format!("{}.example.com", "a".repeat(MAX_HOST_LEN));
    let router = Router::build(&[
        route(&["*.example.com"], "/", &[]),
        route(&[&long], "/", &[]),
        route(&[], "/v2", &[]),
    ]);
    assert_eq!(index(&router, &long, "/", "GET"), None);
    assert_eq!(index(&router, &long, "/v2", "GET"), Some(2));
    let longest = format!("{}.example.com", "a".repeat(MAX_HOST_LEN - 12));
    assert_eq!(longest.len(), MAX_HOST_LEN);
    assert_eq!(index(&router, &longest, "/", "GET"), Some(0));
}

/// `n` routes over many hosts and `/vN/service-M` paths, like the bench.
fn big_table(n: usize) -> Vec<RouteConfig> {
    (0..n)
        .map(|i| {
            let hosts = match i % 4 {
                0 => vec![format!("api{}.example.com", i % 100)],
                1 => vec![format!("*.tenant{}.example.net", i % 50)],
                2 => vec![],
                _ => vec![
                    format!("api{}.example.com", i % 100),
                    format!("*.shop{}.example.org", i % 20),
                ],
            };
            let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
            let path = if i.is_multiple_of(5) {
                format!("=/v{}/service-{i}/health", i % 3 + 1)
            } else {
                format!("/v{}/service-{i}", i % 3 + 1)
            };
            let methods: &[&str] = if i.is_multiple_of(7) {
                &["GET", "POST"]
            } else {
                &[]
            };
            route(&hosts, &path, methods)
        })
        .collect()
}

#[test]
fn ten_thousand_routes() {
    let routes = big_table(10_000);
    let router = Router::build(&routes);
    for i in (0..10_000usize).step_by(37) {
        let host = match i % 4 {
            0 | 3 => format!("API{}.example.com:443", i % 100),
            1 => format!("x.y.tenant{}.example.net", i % 50),
            _ => "whatever.example".to_string(),
        };
        let path = if i.is_multiple_of(5) {
            format!("/v{}/service-{i}/health", i % 3 + 1)
        } else {
            format!("/v{}/service-{i}/orders/42", i % 3 + 1)
        };
        let expected = if i.is_multiple_of(5) {
            path.len()
        } else {
            format!("/v{}/service-{i}", i % 3 + 1).len()
        };
        assert_eq!(
            router.find(&host, &path, "GET"),
            found(i, expected),
            "route {i}"
        );
        // A neighbour's host does not reach route i unless i has no hosts.
        let miss = router.find("nobody.example.com", &path, "GET");
        if i % 4 == 2 {
            assert_eq!(miss, found(i, expected), "route {i}");
        } else {
            assert_eq!(miss, RouteLookup::NotFound, "route {i}");
        }
        if i.is_multiple_of(7) {
            assert_eq!(
                router.find(&host, &path, "PUT"),
                not_allowed(&["GET", "POST"])
            );
        }
    }
    assert_eq!(
        router.find("api1.example.com", "/v9/service-1", "GET"),
        RouteLookup::NotFound
    );
    assert_eq!(
        router.find("api1.example.com", "/v2/service-10", "GET"),
        RouteLookup::NotFound
    );
}
