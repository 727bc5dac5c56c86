//! Router lookups against tables of 10, 1,000 and 10,000 routes: a hit
//! (exact host, wildcard host and any-host routes, prefix and exact paths)
//! and a miss (unknown host and path). A lookup's cost should depend on the
//! host's labels and the path's depth, not on the number of routes.

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use portcullis::config::model::{
    HeaderRules, HostPattern, PathMatch, RouteConfig, RouteUpstream, TimeoutsConfig,
};
use portcullis::router::{RouteLookup, Router};

/// Requests per table, cycled through so the branch predictor and caches
/// don't see the same lookup every iteration.
const REQUESTS: usize = 256;

/// Route `i` of a table: a quarter each on an exact host (`api{i%100}.example.com`),
/// a wildcard (`*.tenant{i%50}.example.net`), any host, and both an exact
/// host and a wildcard; paths `/v{1..3}/service-{i}` (a fifth of them the
/// exact path `…/health`); every seventh route lists GET and POST.
fn route(i: usize) -> RouteConfig {
    let hosts = match i % 4 {
        0 => vec![HostPattern::Exact(format!("api{}.example.com", i % 100))],
        1 => vec![HostPattern::Wildcard(format!(
            ".tenant{}.example.net",
            i % 50
        ))],
        2 => vec![],
        _ => vec![
            HostPattern::Exact(format!("api{}.example.com", i % 100)),
            HostPattern::Wildcard(format!(".shop{}.example.org", i % 20)),
        ],
    };
    let base = format!("/v{}/service-{i}", i % 3 + 1);
    RouteConfig {
        id: format!("r{i}"),
        tags: vec![],
        auth: portcullis::config::model::RouteAuth::None,
        rate_limits: vec![],
        hosts,
        path: if i.is_multiple_of(5) {
            PathMatch::Exact(format!("{base}/health"))
        } else {
            PathMatch::Prefix(base)
        },
        methods: if i.is_multiple_of(7) {
            vec!["GET".into(), "POST".into()]
        } else {
            vec![]
        },
        upstream: RouteUpstream::Pool(format!("pool{}", i % 10)),
        strip_prefix: false,
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
    }
}

/// A request (host, path) that reaches route `i`.
fn hit(i: usize) -> (String, String) {
    let host = match i % 4 {
        0 | 3 => format!("API{}.example.com:443", i % 100),
        1 => format!("eu.acme.tenant{}.example.net", i % 50),
        _ => "gateway.internal:8080".to_string(),
    };
    let base = format!("/v{}/service-{i}", i % 3 + 1);
    let path = if i.is_multiple_of(5) {
        format!("{base}/health")
    } else {
        format!("{base}/orders/{i}/items")
    };
    (host, path)
}

/// A request (host, path) that reaches no route: known-looking host and a
/// deep path under a service that does not exist.
fn miss(i: usize) -> (String, String) {
    (
        format!("api{}.example.com", i % 100),
        format!("/v9/service-{i}/orders/{i}/items"),
    )
}

fn lookups(c: &mut Criterion) {
    let mut group = c.benchmark_group("router_find");
    group.measurement_time(Duration::from_secs(2));
    group.warm_up_time(Duration::from_millis(500));
    group.sample_size(20);
    for n in [10usize, 1_000, 10_000] {
        let routes: Vec<RouteConfig> = (0..n).map(route).collect();
        let router = Router::build(&routes);
        // Spread the requests over the whole table.
        let targets: Vec<usize> = (0..REQUESTS).map(|k| k * n / REQUESTS).collect();
        let hits: Vec<(String, String)> = targets.iter().map(|&i| hit(i)).collect();
        let misses: Vec<(String, String)> = targets.iter().map(|&i| miss(i)).collect();
        for (&i, (host, path)) in targets.iter().zip(&hits) {
            assert!(
                matches!(router.find(host, path, "GET"), RouteLookup::Found { route, .. } if route == i),
                "{host} {path} should reach route {i}"
            );
        }
        for (host, path) in &misses {
            assert_eq!(
                router.find(host, path, "GET"),
                RouteLookup::NotFound,
                "{host} {path}"
            );
        }
        for (name, requests) in [("hit", &hits), ("miss", &misses)] {
            group.bench_with_input(BenchmarkId::new(name, n), requests, |b, requests| {
                let mut k = 0;
                b.iter(|| {
                    let (host, path) = &requests[k % REQUESTS];
                    k += 1;
                    black_box(router.find(black_box(host), black_box(path), black_box("GET")))
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
