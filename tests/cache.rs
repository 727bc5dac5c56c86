//! Response caching through the real gateway against a real loopback
//! origin whose answers each test sets: storing rules, expiry, `Vary`,
//! query normalization, per-consumer isolation, coalescing, stale serving,
//! revalidation, invalidation, the byte bound, purge, `HEAD` and `Range`.

mod common;
#[path = "common/h2raw.rs"]
mod h2raw;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use common::{base_config, client, eventually, sample, scrape_until, TestGateway};
use portcullis::keys;

/// Status, headers and body text of an answer.
type Answer = (u16, Vec<(String, String)>, String);

/// What the origin answers for a path, and how often it was asked.
#[derive(Clone)]
struct Origin {
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    /// Requests per path (query left out), 304s included.
    hits: Arc<Mutex<HashMap<String, usize>>>,
    /// Hold GET responses until released (coalescing test).
    gate: Arc<tokio::sync::Semaphore>,
    addr: Option<SocketAddr>,
}

impl Origin {
    async fn start() -> Origin {
        let mut origin = Origin {
            answers: Default::default(),
            hits: Default::default(),
            gate: Arc::new(tokio::sync::Semaphore::new(1 << 20)),
            addr: None,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        origin.addr = Some(listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(origin.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        origin
    }

    /// Answer `path` with `status`, `headers` and a body of `body`
    /// followed by ` #N` (the request count for the path).
    fn set(&self, path: &str, status: u16, headers: &[(&str, &str)], body: &str) {
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.answers
            .lock()
            .unwrap()
            .insert(path.to_string(), (status, headers, body.to_string()));
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

async fn answer(State(o): State<Origin>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let n = {
        let mut hits = o.hits.lock().unwrap();
        let n = hits.entry(path.clone()).or_default();
        *n += 1;
        *n
    };
    let _permit = o.gate.acquire().await;
    let Some((status, headers, body)) = o.answers.lock().unwrap().get(&path).cloned() else {
        return (StatusCode::NOT_FOUND, "no answer set").into_response();
    };
    let etag = headers
        .iter()
        .find(|(k, _)| k == "etag")
        .map(|(_, v)| v.clone());
    let inm = req
        .headers()
        .get("if-none-match")
        .and_then(|v| v.to_str().ok());
    let mut out = HeaderMap::new();
    for (k, v) in &headers {
        out.append(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    if etag.is_some() && inm == etag.as_deref() {
        return (StatusCode::NOT_MODIFIED, out).into_response();
    }
    let consumer = req
        .headers()
        .get("x-consumer-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let q = req.uri().query().unwrap_or("");
    let tenant = req
        .headers()
        .get("x-tenant")
        .and_then(|v| v.to_str().ok())
        .map(|t| format!(" tenant={t}"))
        .unwrap_or_default();
    let text = format!("{body} #{n} consumer={consumer}{tenant} q={q}");
    (StatusCode::from_u16(status).unwrap(), out, text).into_response()
}

/// A gateway with one caching route `c` on `/` (`cache_lines` go into
/// its `[routes.cache]`), and `extra` appended.
async fn gateway(
    origin: &Origin,
    route_lines: &str,
    cache_lines: &str,
    extra: &str,
) -> TestGateway {
    let config = format!(
        "{}[cache]\nmax_size = \"1MiB\"\n\n[pools.p]\nbackends = [{{ address = \"{}\" }}]\n\n[[routes]]\nid = \"c\"\npath = \"/\"\npool = \"p\"\n{route_lines}\n[routes.cache]\n{cache_lines}\n\n{extra}",
        base_config(),
        origin.addr.unwrap()
    );
    TestGateway::start(&config).await
}

#[derive(Debug)]
struct Got {
    status: u16,
    cache_status: String,
    age: Option<u64>,
    body: String,
    headers: reqwest::header::HeaderMap,
}

async fn get(gw: &TestGateway, path: &str, headers: &[(&str, &str)]) -> Got {
    send(gw, "GET", path, headers).await
}

async fn send(gw: &TestGateway, method: &str, path: &str, headers: &[(&str, &str)]) -> Got {
    let mut r = client().request(method.parse().unwrap(), gw.url(path));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let cache_status = header("cache-status").unwrap_or_default();
    let age = header("age").and_then(|a| a.parse().ok());
    let body = resp.text().await.unwrap();
    Got {
        status,
        cache_status,
        age,
        body,
        headers,
    }
}

#[tokio::test]
async fn stores_what_the_origin_marks_fresh_and_serves_it_until_it_expires() {
    let o = Origin::start().await;
    o.set("/a", 200, &[("cache-control", "max-age=1")], "A");
    let gw = gateway(&o, "", "", "").await;

    let first = get(&gw, "/a", &[]).await;
    assert_eq!(first.status, 200);
    assert!(first.body.starts_with("A #1"), "{}", first.body);
    assert_eq!(first.cache_status, "portcullis; fwd=miss; stored");

    let second = get(&gw, "/a", &[]).await;
    assert_eq!(second.body, first.body, "served from the cache");
    assert!(
        second.cache_status.starts_with("portcullis; hit"),
        "{}",
        second.cache_status
    );
    assert!(second.age.is_some(), "a hit carries Age");
    assert_eq!(o.hits("/a"), 1);

    // max-age=1: it expires, and the next request goes to the origin.
    let fresh = eventually("the object to expire", || async {
        let g = get(&gw, "/a", &[]).await;
        (!g.body.starts_with("A #1")).then_some(g)
    })
    .await;
    assert!(fresh.body.starts_with("A #2"), "{}", fresh.body);
    assert!(
        fresh.cache_status.contains("fwd=stale"),
        "{}",
        fresh.cache_status
    );
    assert_eq!(o.hits("/a"), 2);

    // Without freshness and without a route ttl: never stored.
    o.set("/none", 200, &[], "N");
    get(&gw, "/none", &[]).await;
    let again = get(&gw, "/none", &[]).await;
    assert!(again.body.starts_with("N #2"));
    assert_eq!(
        again.cache_status,
        "portcullis; fwd=miss; detail=no-freshness"
    );

    // Counted in each request's log phase, just after its response.
    let text = scrape_until(
        &gw,
        &[
            "portcullis_cache_requests_total{result=\"miss\",route=\"c\"} 3",
            "portcullis_cache_requests_total{result=\"expired\",route=\"c\"} 1",
        ],
    )
    .await;
    assert!(text.contains("portcullis_cache_objects 1"), "{text}");
    assert!(
        !text.contains("portcullis_cache_requests_total{result=\"hit\",route=\"c\"} 0"),
        "{text}"
    );
    let (ok, report) = common::promtool(&text);
    assert!(ok, "promtool check metrics: {report}");
    // The access log says what the cache did.
    eventually("access-log lines with the cache result", || async {
        let out = gw.stdout();
        let results: Vec<String> = out
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["cache"].as_str().map(str::to_string))
            .collect();
        (results.iter().any(|r| r == "hit") && results.iter().any(|r| r == "miss")).then_some(())
    })
    .await;
}

#[tokio::test]
async fn no_store_private_set_cookie_and_vary_star_are_never_stored() {
    let o = Origin::start().await;
    let cases = [
        ("/ns", ("cache-control", "no-store, max-age=60"), "no-store"),
        ("/pr", ("cache-control", "private, max-age=60"), "private"),
        ("/ck", ("set-cookie", "session=1"), "set-cookie"),
        ("/vs", ("vary", "*"), "vary-star"),
    ];
    for (path, header, _) in &cases {
        o.set(path, 200, &[*header, ("x-more", "1")], "X");
    }
    // A route ttl would make every one of them storable otherwise.
    let gw = gateway(&o, "", "ttl = \"60s\"", "").await;
    for (path, _, why) in &cases {
        get(&gw, path, &[]).await;
        let second = get(&gw, path, &[]).await;
        assert!(second.body.starts_with("X #2"), "{path}: {}", second.body);
        assert_eq!(
            second.cache_status,
            format!("portcullis; fwd=miss; detail={why}"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn vary_keeps_variants_apart() {
    let o = Origin::start().await;
    o.set(
        "/v",
        200,
        &[("cache-control", "max-age=60"), ("vary", "Accept-Language")],
        "V",
    );
    let gw = gateway(&o, "", "", "").await;
    let de = get(&gw, "/v", &[("accept-language", "de")]).await;
    let fr = get(&gw, "/v", &[("accept-language", "fr")]).await;
    assert_ne!(de.body, fr.body);
    assert_eq!(
        get(&gw, "/v", &[("accept-language", "de")]).await.body,
        de.body
    );
    assert_eq!(
        get(&gw, "/v", &[("accept-language", "fr")]).await.body,
        fr.body
    );
    assert_eq!(o.hits("/v"), 2);
}

#[tokio::test]
async fn query_normalization_follows_the_key() {
    let o = Origin::start().await;
    o.set("/s", 200, &[("cache-control", "max-age=60")], "S");
    let gw = gateway(&o, "", "key = { query = [\"page\", \"sort\"] }", "").await;
    let a = get(&gw, "/s?sort=asc&page=2&utm=x", &[]).await;
    let b = get(&gw, "/s?page=2&sort=asc&utm=y", &[]).await;
    assert_eq!(a.body, b.body, "order and unlisted params do not matter");
    let c = get(&gw, "/s?page=3&sort=asc", &[]).await;
    assert_ne!(a.body, c.body);
    assert_eq!(o.hits("/s"), 2);
}

#[tokio::test]
async fn consumers_never_see_each_others_entries() {
    let o = Origin::start().await;
    o.set("/me", 200, &[("cache-control", "max-age=60")], "ME");
    let (alice, bob, consumers) = two_consumers();
    let gw = gateway(&o, "auth = \"api_key\"", "", &consumers).await;
    let a1 = get(&gw, "/me", &[("x-api-key", &alice.key)]).await;
    assert!(a1.body.contains("consumer=alice"), "{}", a1.body);
    let b1 = get(&gw, "/me", &[("x-api-key", &bob.key)]).await;
    assert!(b1.body.contains("consumer=bob"), "{}", b1.body);
    assert_eq!(
        get(&gw, "/me", &[("x-api-key", &alice.key)]).await.body,
        a1.body
    );
    assert_eq!(
        get(&gw, "/me", &[("x-api-key", &bob.key)]).await.body,
        b1.body
    );
    // Without a key, or with a wrong one: refused before any lookup.
    let anon = get(&gw, "/me", &[]).await;
    assert_eq!(anon.status, 401);
    assert!(!anon.body.contains("ME #"), "{}", anon.body);
    let wrong = get(&gw, "/me", &[("x-api-key", "pk_nope_0000")]).await;
    assert_eq!(wrong.status, 401);
    assert!(!wrong.body.contains("ME #"));
    assert_eq!(o.hits("/me"), 2);
}

#[tokio::test]
async fn two_hundred_concurrent_cold_requests_make_one_upstream_request() {
    let o = Origin::start().await;
    o.set("/hot", 200, &[("cache-control", "max-age=60")], "HOT");
    let gw = Arc::new(gateway(&o, "", "", "").await);
    // Hold the origin so every request arrives while the first is out.
    let held = o.gate.acquire_many(1 << 20).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move { get(&gw, "/hot", &[]).await }));
    }
    eventually("the first request to reach the origin", || async {
        (o.hits("/hot") >= 1).then_some(())
    })
    .await;
    // Every request is in: the others wait on the cache lock.
    eventually("200 open client connections", || async {
        let text = gw.metrics_text().await;
        let open: f64 = text
            .lines()
            .filter_map(|l| l.strip_prefix("portcullis_downstream_open_connections{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        (open >= 200.0).then_some(())
    })
    .await;
    drop(held);
    let mut bodies = Vec::new();
    for t in tasks {
        let g = t.await.unwrap();
        assert_eq!(g.status, 200);
        bodies.push(g.body);
    }
    assert!(bodies.iter().all(|b| b.starts_with("HOT #1")), "{bodies:?}");
    assert_eq!(o.hits("/hot"), 1, "exactly one request reached the origin");
    // Those that reached the lock before the fill waited on it; the rest
    // came after and hit. Either way: one miss, 199 hits (counted when
    // each request's log phase has run).
    let text = scrape_until(
        &gw,
        &[
            "portcullis_cache_requests_total{result=\"miss\",route=\"c\"} 1",
            "portcullis_cache_requests_total{result=\"hit\",route=\"c\"} 199",
        ],
    )
    .await;
    let waits = sample(&text, "portcullis_cache_lock_waits_total").unwrap();
    assert!(waits >= 1.0, "{waits} requests waited on the lock");
}

#[tokio::test]
async fn stale_while_revalidate_serves_stale_and_refreshes_once() {
    let o = Origin::start().await;
    o.set(
        "/swr",
        200,
        &[("cache-control", "max-age=1, stale-while-revalidate=60")],
        "SWR",
    );
    let gw = gateway(&o, "", "", "").await;
    let first = get(&gw, "/swr", &[]).await;
    assert!(first.body.starts_with("SWR #1"));
    let stale = eventually("a stale answer", || async {
        let g = get(&gw, "/swr", &[]).await;
        g.cache_status
            .contains("stale-while-revalidate")
            .then_some(g)
    })
    .await;
    assert!(
        stale.body.starts_with("SWR #1"),
        "stale is served at once: {}",
        stale.body
    );
    let refreshed = eventually("the background refresh", || async {
        let g = get(&gw, "/swr", &[]).await;
        g.body.starts_with("SWR #2").then_some(g)
    })
    .await;
    assert!(
        refreshed.cache_status.contains("hit"),
        "{}",
        refreshed.cache_status
    );
    assert_eq!(o.hits("/swr"), 2, "refreshed once");
}

#[tokio::test]
async fn stale_if_error_serves_stale_when_the_origin_fails_or_is_gone() {
    let o = Origin::start().await;
    o.set(
        "/sie",
        200,
        &[("cache-control", "max-age=1, stale-if-error=300")],
        "SIE",
    );
    let gw = gateway(&o, "", "", "").await;
    assert!(get(&gw, "/sie", &[]).await.body.starts_with("SIE #1"));
    // The origin now fails with 500.
    o.set("/sie", 500, &[], "broken");
    let stale = eventually("stale instead of the 500", || async {
        let g = get(&gw, "/sie", &[]).await;
        g.cache_status.contains("stale-if-error").then_some(g)
    })
    .await;
    assert_eq!(stale.status, 200);
    assert!(stale.body.starts_with("SIE #1"), "{}", stale.body);

    // A path without stale-if-error gets the error.
    o.set("/plain", 200, &[("cache-control", "max-age=1")], "P");
    get(&gw, "/plain", &[]).await;
    o.set("/plain", 500, &[], "broken");
    let err = eventually("the 500 once expired", || async {
        let g = get(&gw, "/plain", &[]).await;
        (g.status == 500).then_some(g)
    })
    .await;
    assert!(err.body.starts_with("broken"));
}

#[tokio::test]
async fn stale_if_error_covers_a_pool_that_cannot_be_reached() {
    let o = Origin::start().await;
    o.set("/sie", 200, &[("cache-control", "max-age=1")], "SIE");
    // Route stale_if_error, origin says nothing about it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let gw = gateway(&o, "", "stale_if_error = \"5m\"", "").await;
    assert!(get(&gw, "/sie", &[]).await.body.starts_with("SIE #1"));
    // Point the pool at a port nothing listens on.
    let config = std::fs::read_to_string(&gw.config_path)
        .unwrap()
        .replace(&o.addr.unwrap().to_string(), &dead.to_string());
    gw.write_config(&config);
    assert_eq!(gw.reload().await.0, 200);
    let stale = eventually("stale while the pool is unreachable", || async {
        let g = get(&gw, "/sie", &[]).await;
        (g.status == 200 && g.cache_status.contains("stale-if-error")).then_some(g)
    })
    .await;
    assert!(stale.body.starts_with("SIE #1"), "{}", stale.body);
}

#[tokio::test]
async fn a_304_refreshes_the_stored_entry() {
    let o = Origin::start().await;
    o.set(
        "/e",
        200,
        &[("cache-control", "max-age=1"), ("etag", "\"v1\"")],
        "E",
    );
    let gw = gateway(&o, "", "", "").await;
    let first = get(&gw, "/e", &[]).await;
    // The 304 carries a longer freshness: the hit after it cannot have gone
    // stale again on a loaded machine.
    o.set(
        "/e",
        200,
        &[("cache-control", "max-age=60"), ("etag", "\"v1\"")],
        "E",
    );
    let revalidated = eventually("a revalidation", || async {
        let g = get(&gw, "/e", &[]).await;
        g.cache_status.contains("fwd-status=304").then_some(g)
    })
    .await;
    assert_eq!(revalidated.status, 200);
    assert_eq!(revalidated.body, first.body, "the stored body, refreshed");
    let hit = get(&gw, "/e", &[]).await;
    assert!(hit.cache_status.contains("hit"), "{}", hit.cache_status);
    assert_eq!(hit.body, first.body);

    // The client's own no-cache forces a revalidation of a fresh entry.
    let forced = get(&gw, "/e", &[("cache-control", "no-cache")]).await;
    assert!(
        forced.cache_status.contains("fwd=request"),
        "{}",
        forced.cache_status
    );
    assert_eq!(forced.body, first.body);

    // only-if-cached on something never stored: 504, no trip upstream.
    let before = o.hits("/other");
    let g = get(&gw, "/other", &[("cache-control", "only-if-cached")]).await;
    assert_eq!(g.status, 504);
    assert_eq!(o.hits("/other"), before);
}

#[tokio::test]
async fn a_successful_unsafe_method_invalidates_the_url() {
    let o = Origin::start().await;
    o.set("/item", 200, &[("cache-control", "max-age=60")], "ITEM");
    o.set("/list", 200, &[("cache-control", "max-age=60")], "LIST");
    let gw = gateway(&o, "", "", "").await;
    let first = get(&gw, "/item", &[]).await;
    get(&gw, "/list", &[]).await;
    assert_eq!(get(&gw, "/item", &[]).await.body, first.body);
    // POST answers with Location: /list.
    o.answers
        .lock()
        .unwrap()
        .get_mut("/item")
        .unwrap()
        .1
        .push(("location".into(), "/list".into()));
    let post = send(&gw, "POST", "/item", &[]).await;
    assert_eq!(post.status, 200);
    assert_eq!(post.cache_status, "portcullis; fwd=method");
    assert!(get(&gw, "/item", &[]).await.body.starts_with("ITEM #3"));
    assert!(get(&gw, "/list", &[]).await.body.starts_with("LIST #2"));
}

#[tokio::test]
async fn resident_bytes_never_exceed_max_size() {
    let o = Origin::start().await;
    let body = "x".repeat(20_000);
    for i in 0..120 {
        o.set(
            &format!("/o{i}"),
            200,
            &[("cache-control", "max-age=600")],
            &body,
        );
    }
    // 1 MiB of cache; 120 × 20 KB is more than twice that.
    let gw = gateway(&o, "", "", "").await;
    for i in 0..120 {
        let g = get(&gw, &format!("/o{i}"), &[]).await;
        assert_eq!(g.status, 200);
        let text = gw.metrics_text().await;
        let bytes = sample(&text, "portcullis_cache_stored_bytes").unwrap();
        assert!(bytes <= f64::from(1 << 20), "{bytes} bytes after {i}");
    }
    let text = gw.metrics_text().await;
    let evictions = sample(&text, "portcullis_cache_evictions_total").unwrap();
    assert!(evictions > 0.0, "{text}");
    // The latest is there.
    assert!(get(&gw, "/o119", &[]).await.cache_status.contains("hit"));
}

#[tokio::test]
async fn purge_by_url_route_and_tag() {
    let o = Origin::start().await;
    o.set(
        "/p",
        200,
        &[
            ("cache-control", "max-age=60"),
            ("surrogate-key", "red blue"),
        ],
        "P",
    );
    o.set(
        "/q",
        200,
        &[("cache-control", "max-age=60"), ("cache-tag", "blue,green")],
        "Q",
    );
    o.set("/r", 200, &[("cache-control", "max-age=60")], "R");
    let gw = gateway(&o, "", "", "").await;
    let c = client();
    let purge = |q: &str| {
        let url = gw.admin_url(&format!("/-/cache?{q}"));
        let c = c.clone();
        async move {
            let r = c.delete(url).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let fill = || async {
        for p in ["/p", "/p?x=1", "/q", "/r"] {
            get(&gw, p, &[]).await;
        }
    };
    fill().await;
    let (s, body) = purge("route=c&path=%2Fp").await;
    assert_eq!((s, body["purged"].as_u64()), (200, Some(2)), "{body}");
    assert!(get(&gw, "/q", &[]).await.cache_status.contains("hit"));
    fill().await;
    let (_, body) = purge("tag=blue").await;
    assert_eq!(body["purged"], 3, "{body}");
    assert!(get(&gw, "/r", &[]).await.cache_status.contains("hit"));
    fill().await;
    let (_, body) = purge("route=c").await;
    assert_eq!(body["purged"], 4, "{body}");
    let (s, body) = purge("route=nope").await;
    assert_eq!(s, 404, "{body}");
    let (s, _) = purge("path=/p").await;
    assert_eq!(s, 400);
    assert!(get(&gw, "/r", &[]).await.cache_status.contains("fwd=miss"));
}

#[tokio::test]
async fn head_and_range_are_answered_from_a_stored_get() {
    let o = Origin::start().await;
    o.set("/h", 200, &[("cache-control", "max-age=60")], "0123456789");
    let gw = gateway(&o, "", "", "").await;
    let full = get(&gw, "/h", &[]).await;
    let head = send(&gw, "HEAD", "/h", &[]).await;
    assert_eq!(head.status, 200);
    assert!(head.cache_status.contains("hit"), "{}", head.cache_status);
    assert!(head.body.is_empty());
    let range = get(&gw, "/h", &[("range", "bytes=2-5")]).await;
    assert_eq!(range.status, 206);
    assert_eq!(range.body, full.body[2..6]);
    assert!(range.headers.contains_key("content-range"));
    assert_eq!(o.hits("/h"), 1);
}

/// Headers of a hit that may differ between two hits of one object: the
/// seconds in `Age` and `Cache-Status`'s ttl, the request id.
const PER_HIT: [&str; 3] = ["age", "cache-status", "x-request-id"];

/// A fresh hit of a plain `GET` is answered in `request_filter`, without
/// Pingora's cache phases (`caching::fresh_hit`); one whose request says
/// more (`Cache-Control`, conditionals, ranges) goes through them. Both
/// give the same response, and the conditionals and directives still work.
#[tokio::test]
async fn a_hit_answered_at_once_is_the_hit_of_the_general_path() {
    let o = Origin::start().await;
    o.set(
        "/e",
        200,
        &[
            ("cache-control", "max-age=60"),
            ("etag", "\"v1\""),
            ("x-origin", "a"),
        ],
        "payload",
    );
    let gw = gateway(&o, "", "", "").await;
    assert!(get(&gw, "/e", &[]).await.cache_status.contains("fwd=miss"));
    let fast = get(&gw, "/e", &[]).await;
    // A directive that changes nothing for a fresh object: the general path.
    let general = get(&gw, "/e", &[("cache-control", "max-stale=5")]).await;
    for hit in [&fast, &general] {
        assert_eq!(hit.status, 200);
        assert!(
            hit.cache_status.starts_with("portcullis; hit; ttl="),
            "{}",
            hit.cache_status
        );
        assert!(hit.age.is_some_and(|a| a <= 1), "{hit:?}");
        assert!(hit.body.starts_with("payload #1"), "{}", hit.body);
    }
    let comparable = |g: &Got| -> Vec<(String, String)> {
        let mut v: Vec<_> = g
            .headers
            .iter()
            .filter(|(k, _)| !PER_HIT.contains(&k.as_str()))
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_string()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(comparable(&fast), comparable(&general));
    let names = |g: &Got| {
        PER_HIT
            .iter()
            .filter(|n| g.headers.contains_key(**n))
            .count()
    };
    assert_eq!((names(&fast), names(&general)), (3, 3));

    // Conditionals and ranges are answered from the stored object too.
    let not_modified = get(&gw, "/e", &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(not_modified.status, 304, "{not_modified:?}");
    assert!(not_modified.cache_status.contains("hit"));
    let range = get(&gw, "/e", &[("range", "bytes=0-2")]).await;
    assert_eq!((range.status, range.body.as_str()), (206, "pay"));
    assert_eq!(o.hits("/e"), 1, "every answer so far came from the store");
    // The request's own `no-cache` (or `Pragma`) still revalidates.
    let revalidated = get(&gw, "/e", &[("cache-control", "no-cache")]).await;
    assert!(revalidated.cache_status.contains("fwd="), "{revalidated:?}");
    get(&gw, "/e", &[("pragma", "no-cache")]).await;
    assert_eq!(o.hits("/e"), 3);
    // And a fast hit is counted and logged as a hit.
    scrape_until(
        &gw,
        &["portcullis_cache_requests_total{result=\"hit\",route=\"c\"} 4"],
    )
    .await;
}

/// An origin that answers every request with a chunked `200` that may be
/// stored for a minute, then closes.
async fn chunked_origin() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\n\
                          transfer-encoding: chunked\r\nconnection: close\r\n\r\n\
                          5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                    )
                    .await;
            });
        }
    });
    addr
}

/// A config with one caching route `c` on `/` in front of a new
/// [`chunked_origin`].
async fn chunked_origin_config() -> String {
    let origin = chunked_origin().await;
    format!(
        "{}[pools.p]\nbackends = [{{ address = \"{origin}\" }}]\n\n[[routes]]\nid = \"c\"\npath = \"/\"\npool = \"p\"\n[routes.cache]\n",
        base_config()
    )
}

/// Read one chunked response off a kept-alive connection: its head, and
/// its body decoded.
async fn read_chunked(s: &mut tokio::net::TcpStream) -> (String, String) {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(at) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..at]).to_ascii_lowercase();
            let rest = &out[at + 4..];
            if rest.ends_with(b"0\r\n\r\n") {
                let mut body = String::new();
                let mut text = std::str::from_utf8(rest).unwrap();
                loop {
                    let (size, after) = text.split_once("\r\n").unwrap();
                    let size = usize::from_str_radix(size.trim(), 16).unwrap();
                    if size == 0 {
                        return (head, body);
                    }
                    body.push_str(&after[..size]);
                    text = &after[size + 2..];
                }
            }
        }
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(
            n > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&buf[..n]);
    }
}

/// A stored response without a length is sent chunked again by a hit, a
/// `HEAD` hit sends no body, and the client's connection carries on.
#[tokio::test]
async fn hits_without_a_length_and_head_hits_keep_the_connection() {
    use tokio::io::AsyncWriteExt;
    let config = chunked_origin_config().await;
    let gw = TestGateway::start(&config).await;
    let mut s = tokio::net::TcpStream::connect(gw.proxy).await.unwrap();
    let get = b"GET /c HTTP/1.1\r\nhost: x\r\n\r\n";
    for expect in ["fwd=miss", "hit", "hit"] {
        s.write_all(get).await.unwrap();
        let (head, body) = read_chunked(&mut s).await;
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        assert!(head.contains(expect), "{expect}: {head}");
        assert_eq!(body, "hello world");
    }
    s.write_all(b"HEAD /c HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let head = common::read_response(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("cache-status: portcullis; hit"),
        "{head}"
    );
    assert!(head.ends_with("\r\n\r\n"), "no body after a HEAD: {head}");
    // The connection still serves, in order, after the HEAD.
    s.write_all(get).await.unwrap();
    assert_eq!(read_chunked(&mut s).await.1, "hello world");
}

/// A hit answered at once on a `GET` that carries a body: the body is
/// never read as the next request (smuggling), and the pipelined request
/// after it is answered in order.
#[tokio::test]
async fn a_hit_on_a_get_with_a_body_never_takes_the_body_for_a_request() {
    use tokio::io::AsyncWriteExt;
    let config = chunked_origin_config().await;
    let gw = TestGateway::start(&config).await;
    let mut s = tokio::net::TcpStream::connect(gw.proxy).await.unwrap();
    s.write_all(b"GET /c HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(read_chunked(&mut s).await.0.contains("fwd=miss"));
    // The body spells a request of its own: answered, it would be a 404
    // from the origin's point of view or a second hit here.
    let smuggled = b"GET /other HTTP/1.1\r\nhost: x\r\n\r\n";
    let mut req = format!(
        "GET /c HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
        smuggled.len()
    )
    .into_bytes();
    req.extend_from_slice(smuggled);
    req.extend_from_slice(b"GET /c HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    s.write_all(&req).await.unwrap();
    let (head, body) = read_chunked(&mut s).await;
    assert!(head.contains("cache-status: portcullis; hit"), "{head}");
    assert_eq!(body, "hello world");
    // Next on the wire: the pipelined GET /c (a hit), or the end of the
    // connection; never an answer to the body's /other.
    let mut rest = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut s, &mut rest),
    )
    .await
    .expect("the connection ends")
    .expect("read");
    let rest = String::from_utf8_lossy(&rest).to_ascii_lowercase();
    let answers = rest.matches("http/1.1 ").count();
    assert!(answers <= 1, "{rest}");
    assert!(
        answers == 0 || rest.contains("cache-status: portcullis; hit"),
        "{rest}"
    );
    assert_eq!(
        origin_requests(&gw).await,
        1,
        "the origin saw only the first GET"
    );
}

/// Requests the chunked origin's pool sent (`portcullis_upstream_requests_total`).
async fn origin_requests(gw: &TestGateway) -> u64 {
    let text = gw.metrics_text().await;
    text.lines()
        .filter(|l| l.starts_with("portcullis_upstream_requests_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Hits over HTTP/2: the stored chunked response is sent as DATA frames,
/// without the HTTP/1.1 framing field, to `GET` and `HEAD`.
#[tokio::test]
async fn hits_over_http2_carry_no_http1_framing() {
    let config = chunked_origin_config().await;
    let gw = h2raw::H2Gateway::start_config(&config).await;
    for (method, expect, body) in [
        ("GET", "fwd=miss", "hello world"),
        ("GET", "hit", "hello world"),
        ("HEAD", "hit", ""),
    ] {
        let (status, fields, got) = gw.request_full(method, "/c", &[]).await.unwrap();
        assert_eq!((status, got.as_str()), (200, body), "{method}");
        let cache_status = fields.get("cache-status").unwrap().to_str().unwrap();
        assert!(cache_status.contains(expect), "{method}: {cache_status}");
        assert!(!fields.contains_key("transfer-encoding"), "{fields:?}");
    }
}

#[tokio::test]
async fn a_reload_keeps_objects_of_routes_whose_cache_settings_did_not_change() {
    let o = Origin::start().await;
    o.set("/k", 200, &[("cache-control", "max-age=600")], "K");
    let gw = gateway(&o, "", "stale_if_error = \"1m\"", "").await;
    let first = get(&gw, "/k", &[]).await;
    let config = std::fs::read_to_string(&gw.config_path).unwrap();
    // A change elsewhere (a header rule): the object stays.
    gw.write_config(&config.replace(
        "[routes.cache]",
        "[routes.response_headers]\nset = { \"x-v\" = \"2\" }\n\n[routes.cache]",
    ));
    assert_eq!(gw.reload().await.0, 200);
    let after = get(&gw, "/k", &[]).await;
    assert_eq!(after.body, first.body, "kept across the reload");
    assert!(after.cache_status.contains("hit"));
    // A change of the route's cache settings: its objects go.
    gw.write_config(&config.replace("stale_if_error = \"1m\"", "stale_if_error = \"2m\""));
    assert_eq!(gw.reload().await.0, 200);
    let changed = get(&gw, "/k", &[]).await;
    assert!(changed.body.starts_with("K #2"), "{}", changed.body);
    let text = gw.metrics_text().await;
    assert!(
        text.contains("portcullis_cache_purged_objects_total{reason=\"reload\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_key_in_the_query_is_not_part_of_the_cache_key() {
    let o = Origin::start().await;
    o.set("/q", 200, &[("cache-control", "max-age=60")], "Q");
    let (k1, k2) = (keys::generate().unwrap(), keys::generate().unwrap());
    let consumers = format!(
        "[[consumers]]\nid = \"acme\"\nkeys = [{}, {}]\nscopes = [{{ routes = [\"*\"] }}]\n",
        keys::config_entry(&k1.prefix, &k1.digest_hex),
        keys::config_entry(&k2.prefix, &k2.digest_hex),
    );
    let gw = gateway(
        &o,
        "auth = \"api_key\"\nkey_from = \"query:api_key\"",
        "",
        &consumers,
    )
    .await;
    // Two keys of one consumer: one entry.
    let a = get(&gw, &format!("/q?x=1&api_key={}", k1.key), &[]).await;
    let b = get(&gw, &format!("/q?api_key={}&x=1", k2.key), &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, b.body);
    assert!(
        a.body.ends_with("q=x=1"),
        "the key is not forwarded: {}",
        a.body
    );
    assert_eq!(o.hits("/q"), 1);
}

/// One spelling of a path is one entry: the origin is asked for the
/// canonical path whatever the client wrote (an encoded letter, a
/// dot-segment, absolute-form), so no client can store an answer to
/// another spelling under the key of this one.
#[tokio::test]
async fn every_spelling_of_a_path_is_one_entry_fetched_by_its_canonical_path() {
    let origin = Origin::start().await;
    origin.set(
        "/c/cache/600",
        200,
        &[("cache-control", "max-age=600")],
        "canonical",
    );
    let gw = gateway(&origin, "", "", "").await;
    let host = gw.proxy.to_string();
    let first = common::raw_http1(
        gw.proxy,
        format!("GET /c/%63ache/600 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert_eq!(first.0, 200, "{first:?}");
    assert!(first.2.starts_with("canonical #1"), "{first:?}");
    assert_eq!(origin.hits("/c/cache/600"), 1);
    assert_eq!(origin.hits("/c/%63ache/600"), 0);
    for spelling in ["/c/cache/600", "/c/x/../cache/600", "/c//cache/600"] {
        let again = get(&gw, spelling, &[]).await;
        assert!(again.cache_status.contains("hit"), "{spelling}: {again:?}");
        assert!(
            again.body.starts_with("canonical #1"),
            "{spelling}: {again:?}"
        );
    }
    let absolute = common::raw_http1(
        gw.proxy,
        format!(
            "GET http://{host}/c/cache/600 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert!(
        absolute.1.contains("cache-status: portcullis; hit"),
        "{absolute:?}"
    );
    assert_eq!(origin.hits("/c/cache/600"), 1);
}

/// Keys and `[[consumers]]` entries for alice and bob.
fn two_consumers() -> (keys::NewKey, keys::NewKey, String) {
    let (alice, bob) = (keys::generate().unwrap(), keys::generate().unwrap());
    let consumers = format!(
        "[[consumers]]\nid = \"alice\"\nkeys = [{}]\nscopes = [{{ routes = [\"*\"] }}]\n\n[[consumers]]\nid = \"bob\"\nkeys = [{}]\nscopes = [{{ routes = [\"*\"] }}]\n",
        keys::config_entry(&alice.prefix, &alice.digest_hex),
        keys::config_entry(&bob.prefix, &bob.digest_hex),
    );
    (alice, bob, consumers)
}

/// RFC 9111 §4.1: `Vary` matches the request that produced the stored
/// response, which for a gateway is the request it forwarded. On a shared
/// key route a backend answering `Vary: X-Consumer-Id` keeps consumers
/// apart, and no client picks another's variant by sending the header.
#[tokio::test]
async fn vary_on_the_consumer_header_keeps_a_shared_entry_per_consumer() {
    let o = Origin::start().await;
    o.set(
        "/v",
        200,
        &[("cache-control", "max-age=60"), ("vary", "X-Consumer-Id")],
        "V",
    );
    let (alice, bob, consumers) = two_consumers();
    let gw = gateway(&o, "auth = \"api_key\"", "shared = true", &consumers).await;
    let a1 = get(&gw, "/v", &[("x-api-key", &alice.key)]).await;
    assert!(a1.body.contains("consumer=alice"), "{a1:?}");
    // Bob, also claiming to be alice: his own variant, fetched for him.
    let b1 = get(
        &gw,
        "/v",
        &[("x-api-key", &bob.key), ("x-consumer-id", "alice")],
    )
    .await;
    assert!(b1.body.contains("consumer=bob"), "{b1:?}");
    let b2 = get(
        &gw,
        "/v",
        &[("x-api-key", &bob.key), ("X_Consumer_Id", "alice")],
    )
    .await;
    assert_eq!(b2.body, b1.body, "{b2:?}");
    assert!(b2.cache_status.contains("hit"), "{b2:?}");
    let a2 = get(
        &gw,
        "/v",
        &[("x-api-key", &alice.key), ("x-consumer-id", "bob")],
    )
    .await;
    assert_eq!(a2.body, a1.body, "{a2:?}");
    assert!(a2.cache_status.contains("hit"), "{a2:?}");
    assert_eq!(o.hits("/v"), 2);
}

/// A header the client sends unchanged (`Accept-Encoding`) makes variants
/// by its value; one the gateway rewrites (a route's `request_headers`)
/// is matched as rewritten, so clients cannot split or pick variants
/// with their own copy.
#[tokio::test]
async fn vary_matches_client_headers_as_sent_and_rewritten_headers_as_forwarded() {
    let o = Origin::start().await;
    o.set(
        "/e",
        200,
        &[("cache-control", "max-age=60"), ("vary", "accept-encoding")],
        "E",
    );
    o.set(
        "/t",
        200,
        &[("cache-control", "max-age=60"), ("vary", "X-Tenant")],
        "T",
    );
    let gw = gateway(
        &o,
        "[routes.request_headers]\nset = { \"x-tenant\" = \"acme\" }",
        "",
        "",
    )
    .await;
    let gzip = get(&gw, "/e", &[("accept-encoding", "gzip")]).await;
    let br = get(&gw, "/e", &[("accept-encoding", "br")]).await;
    assert_ne!(gzip.body, br.body);
    assert_eq!(
        get(&gw, "/e", &[("accept-encoding", "gzip")]).await.body,
        gzip.body
    );
    assert_eq!(o.hits("/e"), 2);

    let t1 = get(&gw, "/t", &[("x-tenant", "evil")]).await;
    assert!(t1.body.contains("tenant=acme"), "{t1:?}");
    let t2 = get(&gw, "/t", &[("x-tenant", "other")]).await;
    assert_eq!(t2.body, t1.body, "{t2:?}");
    assert!(t2.cache_status.contains("hit"), "{t2:?}");
    assert_eq!(o.hits("/t"), 1);
}

fn http_date(ago: std::time::Duration) -> String {
    httpdate::fmt_http_date(std::time::SystemTime::now() - ago)
}

/// RFC 9110 §6.6.1, RFC 9111 §4.2.3: a miss passes the origin's `Date`
/// and a hit keeps the stored one, with `Age` counting from it
/// (cache-tests `other-date-update`; Pingora patch 0001).
#[tokio::test]
async fn the_origins_date_is_kept_on_a_miss_and_on_a_hit() {
    let o = Origin::start().await;
    let two_hours_ago = http_date(std::time::Duration::from_secs(7200));
    o.set(
        "/d",
        200,
        &[("cache-control", "max-age=86400"), ("date", &two_hours_ago)],
        "D",
    );
    let gw = gateway(&o, "", "", "").await;
    let miss = get(&gw, "/d", &[]).await;
    assert_eq!(miss.headers["date"], two_hours_ago.as_str());
    let hit = get(&gw, "/d", &[]).await;
    assert!(hit.cache_status.contains("hit"), "{hit:?}");
    assert_eq!(hit.headers["date"], two_hours_ago.as_str());
    assert!(hit.age.is_some_and(|a| a >= 7200), "{hit:?}");
}

/// `Age: 7200, 0` is 7200 (§5.1, cache-tests `age-parse-suffix`): with
/// `max-age=3600` the response is stale when it arrives, never a hit.
#[tokio::test]
async fn the_first_value_of_a_listed_age_counts() {
    let o = Origin::start().await;
    o.set(
        "/a",
        200,
        &[("cache-control", "max-age=3600"), ("age", "7200, 0")],
        "A",
    );
    let gw = gateway(&o, "", "", "").await;
    get(&gw, "/a", &[]).await;
    let again = get(&gw, "/a", &[]).await;
    assert!(!again.cache_status.contains("; hit"), "{again:?}");
    assert_eq!(o.hits("/a"), 2);
}

/// A request's `max-stale` (§5.2.1.2) is honoured within its own bound
/// with no stale window configured or sent, unless the response forbids
/// serving it stale.
#[tokio::test]
async fn max_stale_is_honoured_without_a_configured_stale_window() {
    let o = Origin::start().await;
    let old = http_date(std::time::Duration::from_secs(100));
    o.set(
        "/s",
        200,
        &[("cache-control", "max-age=60"), ("date", &old)],
        "S",
    );
    o.set(
        "/m",
        200,
        &[
            ("cache-control", "max-age=60, must-revalidate"),
            ("date", &old),
        ],
        "M",
    );
    let gw = gateway(&o, "", "", "").await;
    for path in ["/s", "/m"] {
        get(&gw, path, &[]).await;
    }
    let stale = get(&gw, "/s", &[("cache-control", "max-stale=3600")]).await;
    assert!(stale.cache_status.contains("hit"), "{stale:?}");
    assert_eq!(o.hits("/s"), 1);
    let too_old = get(&gw, "/s", &[("cache-control", "max-stale=10")]).await;
    assert!(!too_old.cache_status.contains("; hit"), "{too_old:?}");
    let forbidden = get(&gw, "/m", &[("cache-control", "max-stale")]).await;
    assert!(!forbidden.cache_status.contains("; hit"), "{forbidden:?}");
    assert_eq!(o.hits("/m"), 2);
}

/// RFC 9213: `CDN-Cache-Control`, and a field targeted at this gateway,
/// take precedence over `Cache-Control` for the gateway's storage (and are
/// ignored when turned off).
#[tokio::test]
async fn targeted_cache_control_fields_take_precedence() {
    let o = Origin::start().await;
    o.set(
        "/cdn-store",
        200,
        &[
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=60"),
        ],
        "1",
    );
    o.set(
        "/cdn-nostore",
        200,
        &[
            ("cache-control", "max-age=60"),
            ("cdn-cache-control", "no-store"),
        ],
        "2",
    );
    o.set(
        "/own",
        200,
        &[
            ("cache-control", "max-age=60"),
            ("cdn-cache-control", "max-age=60"),
            ("portcullis-cache-control", "no-store"),
        ],
        "3",
    );
    let gw = gateway(
        &o,
        "",
        "targeted_cache_control = \"Portcullis-Cache-Control\"",
        "",
    )
    .await;
    for path in ["/cdn-store", "/cdn-nostore", "/own"] {
        get(&gw, path, &[]).await;
        get(&gw, path, &[]).await;
    }
    assert_eq!(o.hits("/cdn-store"), 1, "stored per CDN-Cache-Control");
    assert_eq!(
        o.hits("/cdn-nostore"),
        2,
        "not stored per CDN-Cache-Control"
    );
    assert_eq!(o.hits("/own"), 2, "the gateway's own field wins");

    let off = gateway(&o, "", "cdn_cache_control = false", "").await;
    get(&off, "/cdn-nostore", &[]).await;
    assert!(get(&off, "/cdn-nostore", &[])
        .await
        .cache_status
        .contains("hit"));
}

/// Every response on a caching route says what the cache did, the ones
/// the gateway makes itself too: the 502 when the origin fails and
/// nothing stale may be served, the 504 of `only-if-cached`.
#[tokio::test]
async fn the_gateways_own_answers_on_a_caching_route_carry_cache_status() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap();
    drop(dead);
    let config = format!(
        "{}[cache]\nmax_size = \"1MiB\"\n\n[pools.p]\nbackends = [{{ address = \"{addr}\" }}]\n\n[[routes]]\nid = \"c\"\npath = \"/\"\npool = \"p\"\n\n[routes.cache]\n",
        base_config()
    );
    let gw = TestGateway::start(&config).await;
    let failed = get(&gw, "/x", &[]).await;
    assert_eq!(failed.status, 502);
    assert_eq!(
        failed.cache_status,
        "portcullis; fwd=miss; detail=upstream-error"
    );
    let cached_only = get(&gw, "/x", &[("cache-control", "only-if-cached")]).await;
    assert_eq!(cached_only.status, 504);
    assert_eq!(
        cached_only.cache_status,
        "portcullis; fwd=miss; detail=only-if-cached"
    );
}

/// The series of routes, pools and backends a scrape exports, without
/// their values.
fn labelled_series(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.contains("route=") || l.contains("pool=") || l.contains("backend="))
        .filter_map(|l| l.rsplit_once(' ').map(|(series, _)| series.to_string()))
        .collect()
}

/// Preparing a config changes nothing: a reload that fails late (on a
/// listener's certificate, after the routes were built) leaves no store,
/// no series and no object behind; the same change without the error
/// applies it all at once.
#[tokio::test]
async fn a_rejected_reload_leaves_no_trace_in_the_cache_or_the_metrics() {
    let o = Origin::start().await;
    o.set("/k", 200, &[("cache-control", "max-age=600")], "K");
    let gw = gateway(&o, "", "", "").await;
    let first = get(&gw, "/k", &[]).await;
    assert!(get(&gw, "/k", &[]).await.cache_status.contains("hit"));
    let before = labelled_series(&gw.metrics_text().await);
    assert!(
        before.iter().any(|s| s.starts_with("portcullis_cache_requests_total{") && s.contains("route=\"c\"")),
        "{before:?}"
    );

    let config = std::fs::read_to_string(&gw.config_path).unwrap();
    let grown = config.replace("max_size = \"1MiB\"", "max_size = \"2MiB\"")
        + "[pools.q]\nbackends = [\"127.0.0.1:9\"]\n\n[[routes]]\nid = \"fresh\"\npath = \"/fresh\"\npool = \"q\"\n[routes.cache]\n";
    // Files that exist but hold no PEM: found by loading the TLS
    // material, which happens beside building the snapshot.
    let empty = gw.config_path.with_file_name("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let broken = format!(
        "{grown}\n[[listeners]]\naddress = \"127.0.0.1:0\"\n[[listeners.tls.certificates]]\ncert = \"{0}\"\nkey = \"{0}\"\n",
        empty.display()
    );
    gw.write_config(&broken);
    let (status, body) = gw.reload().await;
    assert_eq!(status, 422, "{body}");

    let after = labelled_series(&gw.metrics_text().await);
    assert_eq!(
        before.difference(&after).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "no series left"
    );
    assert_eq!(
        after.difference(&before).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "no series came from the rejected config"
    );
    let kept = get(&gw, "/k", &[]).await;
    assert!(kept.cache_status.contains("hit"), "{kept:?}");
    assert_eq!(kept.body, first.body, "the store was not replaced");

    // The same change, valid: the new size empties the store at commit,
    // and the new route's series appear.
    gw.write_config(&grown);
    let (status, body) = gw.reload().await;
    assert_eq!(status, 200, "{body}");
    let refetched = get(&gw, "/k", &[]).await;
    assert!(refetched.body.starts_with("K #2"), "{refetched:?}");
    let applied = labelled_series(&gw.metrics_text().await);
    assert!(
        applied
            .iter()
            .any(|s| s.starts_with("portcullis_cache_requests_total{")
                && s.contains("route=\"fresh\"")),
        "{applied:?}"
    );
}
