//! Micro-benchmarks of per-config and per-request work outside the router:
//! building a snapshot from a 10,000-route config, and the header handling
//! every forwarded request goes through.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use pingora_http::RequestHeader;
use portcullis::proxy::forward;
use portcullis::snapshot::Snapshot;

/// A config with `n` routes over 100 hosts and 10 pools.
fn big_config(n: usize) -> String {
    let mut s = String::from(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n",
    );
    for p in 0..10 {
        s.push_str(&format!(
            "[pools.pool{p}]\nbackends = [{{ address = \"127.0.0.1:{}\" }}, {{ address = \"127.0.0.1:{}\" }}]\n",
            10000 + 2 * p,
            10001 + 2 * p
        ));
    }
    for i in 0..n {
        s.push_str(&format!(
            "[[routes]]\nid = \"r{i}\"\nhosts = [\"api{}.example.com\"]\npath = \"/v{}/service-{i}\"\npool = \"pool{}\"\n",
            i % 100,
            i % 3 + 1,
            i % 10
        ));
    }
    s
}

fn snapshot_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot_build");
    group.sample_size(10);
    for n in [10usize, 10_000] {
        let text = big_config(n);
        group.bench_with_input(
            BenchmarkId::new("parse+validate+build", n),
            &text,
            |b, text| {
                let tables = portcullis::state::Tables::detached();
                b.iter(|| {
                    let config = portcullis::config::parse_str(text, "bench.toml").expect("valid");
                    black_box(Snapshot::build(config, Default::default(), &tables).expect("builds"))
                })
            },
        );
    }
    group.finish();
}

fn headers(c: &mut Criterion) {
    let mut req = RequestHeader::build("GET", b"/v1/orders/42?expand=items", None).unwrap();
    req.insert_header("host", "api.example.com").unwrap();
    req.insert_header("x-forwarded-for", "203.0.113.7").unwrap();
    req.insert_header("x-request-id", "0123456789abcdef0123456789abcdef")
        .unwrap();
    req.insert_header("user-agent", "bench").unwrap();
    c.bench_function("request_id/keep_client_id", |b| {
        b.iter(|| black_box(portcullis::request_id::request_id(black_box(&req))))
    });
    let mut fresh = req.clone();
    fresh.remove_header("x-request-id");
    c.bench_function("request_id/generate", |b| {
        b.iter(|| black_box(portcullis::request_id::request_id(black_box(&fresh))))
    });
    c.bench_function("x_forwarded/set", |b| {
        let client = forward::ClientFacts {
            peer: Some("198.51.100.4".parse().unwrap()),
            peer_trusted: true,
            ..Default::default()
        };
        let id = http::HeaderValue::from_static("0123456789abcdef0123456789abcdef");
        b.iter_batched(
            || req.clone(),
            |mut r| {
                forward::set_forwarded(&mut r, &client, &id).unwrap();
                r
            },
            criterion::BatchSize::SmallInput,
        )
    });
    c.bench_function("request_host", |b| {
        b.iter(|| black_box(portcullis::router::request_host(black_box(&req))))
    });
    c.bench_function("path_rewrite/strip", |b| {
        let rw = portcullis::policy::PathRewrite::Strip;
        b.iter(|| black_box(forward::rewritten_path(black_box("/v1/orders/42"), 3, &rw)))
    });
}

/// The cache's per-request work: computing a key, and a hit (lookup, meta
/// decode, body read) in a store of 1 and of 1,000,000 objects. The lookup
/// runs under `Runtime::block_on`, whose own cost (~0.1 µs) is included.
fn cache(c: &mut Criterion) {
    use pingora_cache::storage::Storage;
    use pingora_cache::trace::Span;
    use pingora_cache::CacheMeta;
    use portcullis::cache::key::{cache_key, KeyParts};
    use portcullis::config::model::CacheKeySpec;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    let route: Arc<str> = Arc::from("orders-v1");
    let mut headers = http::HeaderMap::new();
    headers.insert("accept", "application/json".parse().expect("valid"));
    let spec = CacheKeySpec::default();
    let parts = KeyParts {
        route: &route,
        host: "api.example.com",
        path: "/v1/orders/12345",
        query: Some("fields=id,total&page=2"),
        headers: &headers,
        consumer: Some("acme-corp"),
        side: None,
    };
    let mut group = c.benchmark_group("cache");
    group.bench_function("key", |b| {
        b.iter(|| black_box(cache_key(black_box(&parts), &spec, 1 << 20)))
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let span = Span::inactive().handle();
    let meta = || {
        let mut h = pingora_http::ResponseHeader::build(200, None).expect("valid");
        h.append_header("content-type", "application/json")
            .expect("valid");
        h.append_header("cache-control", "max-age=600")
            .expect("valid");
        let now = SystemTime::now();
        CacheMeta::new(now + Duration::from_secs(600), now, 0, 0, h)
    };
    // `cargo test --all-targets` runs this once as a smoke test (without
    // `--bench`): a thousand objects do there.
    let large = if std::env::args().any(|a| a == "--bench") {
        1_000_000
    } else {
        1_000
    };
    for n in [1usize, large] {
        let store: &'static portcullis::cache::MokaStore =
            Box::leak(Box::new(portcullis::cache::MokaStore::new(
                1 << 30,
                1 << 20,
                prometheus::IntCounter::new("e", "e").expect("valid"),
                None,
            )));
        let body = bytes::Bytes::from(vec![b'x'; 100]);
        let keys: Vec<_> = (0..n)
            .map(|i| {
                let path = format!("/v1/orders/{i}");
                let parts = KeyParts {
                    path: &path,
                    ..parts
                };
                cache_key(&parts, &spec, 1 << 20)
            })
            .collect();
        rt.block_on(async {
            for key in &keys {
                let mut miss = store
                    .get_miss_handler(key, &meta(), &span)
                    .await
                    .expect("miss");
                miss.write_body(body.clone(), true).await.expect("write");
                miss.finish().await.expect("finish");
            }
        });
        let probe = &keys[n / 2];
        group.bench_with_input(BenchmarkId::new("hit", n), &n, |b, _| {
            b.iter(|| {
                rt.block_on(async {
                    let (meta, mut hit) = store
                        .lookup(black_box(probe), &span)
                        .await
                        .expect("lookup")
                        .expect("stored");
                    let body = hit.read_body().await.expect("read");
                    black_box((meta, body))
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, snapshot_build, headers, cache);
criterion_main!(benches);
