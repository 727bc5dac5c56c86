//! Build a router from the first part of the input and look up the rest:
//! never a panic, and a found route's prefix length lies within the path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::config::model::{HeaderRules, HostPattern, PathMatch, Route, Timeouts};
use portcullis::router::{RouteLookup, Router};

fn route(i: usize, spec: &str) -> Route {
    let mut parts = spec.splitn(3, ' ');
    let host = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("/");
    let method = parts.next().unwrap_or("");
    let hosts = match host {
        "" | "-" => vec![],
        h if h.starts_with("*.") => vec![HostPattern::Wildcard(h[1..].to_ascii_lowercase())],
        h => vec![HostPattern::Exact(h.to_ascii_lowercase())],
    };
    let path = if path.ends_with('$') {
        PathMatch::Exact(path.trim_end_matches('$').to_string())
    } else {
        PathMatch::Prefix(path.to_string())
    };
    Route {
        id: format!("r{i}"),
        tags: vec![],
        auth: portcullis::config::model::RouteAuth::None,
        rate_limits: vec![],
        hosts,
        path,
        methods: if method.is_empty() { vec![] } else { vec![method.to_ascii_uppercase()] },
        pool: "p".into(),
        strip_prefix: false,
        rewrite_prefix: None,
        request_headers: HeaderRules::default(),
        response_headers: HeaderRules::default(),
        timeouts: Timeouts::default(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut sections = text.splitn(2, "\n\n");
    let table = sections.next().unwrap_or("");
    let requests = sections.next().unwrap_or("");
    let routes: Vec<Route> = table.lines().take(64).enumerate().map(|(i, l)| route(i, l)).collect();
    let router = Router::build(&routes);
    for req in requests.lines().take(64) {
        let mut parts = req.splitn(3, ' ');
        let host = parts.next().unwrap_or("");
        let path = parts.next().unwrap_or("/");
        let method = parts.next().unwrap_or("GET");
        if let RouteLookup::Found { route, prefix_len } = router.find(host, path, method) {
            assert!(route < routes.len());
            assert!(prefix_len <= path.len());
        }
    }
});
