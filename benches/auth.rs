//! Micro-benchmarks of the access step: finding a key among 10 or 100,000
//! consumers (it must not grow: one hash probe and a constant-time compare),
//! and the rate-limit store with one or 100,000 live counters.

use std::sync::Arc;
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use portcullis::auth::{self, ConsumerIndex};
use portcullis::config::model::{ApiKey, Consumer, RouteConfig};
use portcullis::keys;
use portcullis::ratelimit::{
    Bucket, Check, Limit, LimitKey, LocalStore, Period, Quota, Rate, Subject,
};

/// `n` consumers with one key each, allowed on every route; and the keys.
fn consumers(n: usize) -> (Vec<Consumer>, Vec<String>) {
    let mut list = Vec::with_capacity(n);
    let mut plain = Vec::with_capacity(n);
    for i in 0..n {
        let key = format!("pk_bench-key-{i:08}-0123456789abcdefghijklmnopqrstu");
        list.push(Consumer {
            id: format!("c{i}"),
            name: None,
            metadata: Default::default(),
            disabled: false,
            keys: vec![ApiKey {
                digest: keys::digest(key.as_bytes()),
                prefix: key[..9].to_string(),
                not_before: None,
                expires: None,
            }],
            scopes: vec![portcullis::config::model::Scope {
                routes: vec!["*".into()],
                ..Default::default()
            }],
            rate_limits: vec![],
            quotas: vec![],
            defined_at: String::new(),
        });
        plain.push(key);
    }
    (list, plain)
}

fn key_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("key_lookup");
    let routes: Vec<RouteConfig> = Vec::new();
    for n in [10usize, 100_000] {
        let (list, plain) = consumers(n);
        let index = ConsumerIndex::build(&list, &routes, &portcullis::usage::UsageTable::default());
        // A key in the middle, so no size gets a lucky first slot.
        let key = plain[n / 2].clone();
        group.bench_with_input(BenchmarkId::new("authenticate", n), &key, |b, key| {
            b.iter(|| {
                let who = auth::authenticate(
                    &index,
                    Some(black_box(key.as_bytes())),
                    0,
                    &http::Method::GET,
                    1_800_000_000,
                );
                black_box(who.map(|w| w.consumer_index).ok())
            })
        });
        group.bench_with_input(BenchmarkId::new("unknown_key", n), &(), |b, _| {
            b.iter(|| {
                let who = auth::authenticate(
                    &index,
                    Some(black_box(b"pk_not-a-known-key-0123456789abcdefghijklmnop")),
                    0,
                    &http::Method::GET,
                    1_800_000_000,
                );
                black_box(who.is_err())
            })
        });
    }
    group.finish();
}

fn checks(subject: Subject) -> [Check; 2] {
    let bucket = Check {
        key: LimitKey {
            policy: Arc::from("consumer:bench:1000000/1000ms:1000000"),
            subject: subject.clone(),
        },
        limit: Limit::Bucket(Bucket {
            rate: Rate {
                count: 1_000_000,
                period: Duration::from_secs(1),
            },
            burst: 1_000_000,
        }),
        accuracy: Default::default(),
    };
    let quota = Check {
        key: LimitKey {
            policy: Arc::from("quota:bench:day"),
            subject,
        },
        limit: Limit::Quota(Quota {
            period: Period::Day,
            limit: u64::MAX,
        }),
        accuracy: Default::default(),
    };
    [bucket, quota]
}

fn rate_limit(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit_acquire");
    let now = 1_800_000_000u64 * 1_000_000_000;
    for n in [1u32, 100_000] {
        let store = LocalStore::new(1_000_000);
        for i in 0..n {
            store.acquire_now(&checks(Subject::ClientIp(i.to_be_bytes().into())), now);
        }
        let hot = checks(Subject::ClientIp(0u32.to_be_bytes().into()));
        group.bench_with_input(BenchmarkId::new("bucket+quota", n), &hot, |b, hot| {
            b.iter(|| black_box(store.acquire_now(black_box(hot), now)))
        });
    }
    group.finish();
}

criterion_group!(benches, key_lookup, rate_limit);
criterion_main!(benches);
