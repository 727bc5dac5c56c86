//! `[[routes.split]]` against real backends: 10,000 requests shared by
//! the weights (within a stated tolerance), a sticky cookie set once and
//! honoured, a header match that wins over weights and cookies, weights
//! changed by reload without moving the clients a canary already had,
//! each side's answers cached apart, and a failing canary whose breaker
//! opens (and whose share its fallback takes) while the stable side serves.

mod common;

use std::collections::HashMap;

use common::flaky::{Flaky, Mode};
use common::{base_config, client, eventually, pool, sample, TestGateway};
use futures_util::StreamExt;

const COOKIE: &str = "pc-split";

fn config(v1: &Flaky, v2: &Flaky, v2_weight: u8, v2_pool_extra: &str) -> String {
    format!(
        "{base}{p1}{p2}[[routes]]\nid = \"orders\"\npath = \"/orders\"\n\
[[routes.split]]\npool = \"v2\"\nweight = {v2_weight}\nmatch = {{ header = {{ \"x-canary\" = \"always\" }} }}\n\
[[routes.split]]\npool = \"v1\"\nweight = {v1_weight}\nsticky = {{ cookie = \"{COOKIE}\" }}\n\n\
[[routes]]\nid = \"cached\"\npath = \"/cached\"\n\
[[routes.split]]\npool = \"v2\"\nweight = 50\nsticky = {{ cookie = \"{COOKIE}\" }}\n\
[[routes.split]]\npool = \"v1\"\nweight = 50\n\
[routes.cache]\nttl = \"60s\"\n",
        base = base_config(),
        p1 = pool("v1", &[v1.addr], ""),
        p2 = pool("v2", &[v2.addr], v2_pool_extra),
        v1_weight = 100 - v2_weight,
    )
}

/// `GET path` with `headers`: status, the backend that answered
/// (`x-backend`), and the bucket of the sticky cookie set, if any.
async fn get(gw: &TestGateway, path: &str, headers: &[(&str, &str)]) -> (u16, String, Option<u16>) {
    let mut req = client().get(gw.url(path));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let backend = r
        .headers()
        .get("x-backend")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let set: Vec<&str> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert!(set.len() <= 1, "one Set-Cookie at most: {set:?}");
    let bucket = set.first().map(|c| {
        assert!(
            c.ends_with("; Path=/; HttpOnly; SameSite=Lax"),
            "cookie attributes: {c}"
        );
        c.strip_prefix("pc-split=")
            .and_then(|rest| rest.split(';').next()?.parse().ok())
            .unwrap_or_else(|| panic!("a bucket in {c}"))
    });
    (status, backend, bucket)
}

fn cookie(bucket: u16) -> String {
    format!("theme=dark; {COOKIE}={bucket}")
}

#[tokio::test]
async fn weights_stickiness_matches_and_reload() {
    let v1 = Flaky::start("v1").await;
    let v2 = Flaky::start("v2").await;
    let gw = TestGateway::start(&config(&v1, &v2, 5, "")).await;

    // 10,000 new clients. The canary's share is binomial (n = 10,000,
    // p = 0.05: mean 500, σ ≈ 21.8); the tolerance is ±5σ, so a correct
    // gateway fails this less than once in a million runs.
    let n = 10_000;
    let answers: Vec<(u16, String, Option<u16>)> = futures_util::stream::iter(0..n)
        .map(|_| get(&gw, "/orders/1", &[]))
        .buffer_unordered(32)
        .collect()
        .await;
    let mut by_side: HashMap<&str, usize> = HashMap::new();
    for (status, backend, bucket) in &answers {
        assert_eq!(*status, 200);
        let bucket = bucket.expect("every new client gets the sticky cookie");
        // The cookie names the side that answered.
        let side = if bucket < 500 { "v2" } else { "v1" };
        assert_eq!(backend, side, "bucket {bucket}");
        *by_side.entry(backend.as_str()).or_default() += 1;
    }
    let canary = by_side.get("v2").copied().unwrap_or(0);
    assert!((391..=609).contains(&canary), "v2 took {canary} of {n}");
    assert_eq!(canary + by_side.get("v1").copied().unwrap_or(0), n);
    let text = gw.metrics_text().await;
    let counted = |pool: &str, by: &str| {
        sample(
            &text,
            &format!(
                r#"portcullis_split_requests_total{{by="{by}",pool="{pool}",route="orders"}}"#
            ),
        )
        .unwrap_or(0.0) as usize
    };
    assert_eq!(counted("v2", "weight"), canary);
    assert_eq!(counted("v1", "weight"), n - canary);

    // A client keeps its side, and is not given a new cookie.
    for (bucket, side) in [(0, "v2"), (499, "v2"), (500, "v1"), (9_999, "v1")] {
        for _ in 0..5 {
            let got = get(&gw, "/orders/1", &[("cookie", &cookie(bucket))]).await;
            assert_eq!(got, (200, side.to_string(), None), "bucket {bucket}");
        }
    }
    // A damaged cookie is replaced.
    let (_, _, replaced) = get(&gw, "/orders/1", &[("cookie", "pc-split=99999")]).await;
    assert!(replaced.is_some_and(|b| b < 10_000));

    // The match wins over the weights and over a stable-side cookie.
    for headers in [
        vec![("x-canary", "always")],
        vec![("x-canary", "always"), ("cookie", "pc-split=9000")],
    ] {
        let (status, backend, set) = get(&gw, "/orders/1", &headers).await;
        assert_eq!((status, backend.as_str(), set), (200, "v2", None));
    }
    // Values are exact: anything else goes by the cookie.
    let got = get(
        &gw,
        "/orders/1",
        &[("x-canary", "Always"), ("cookie", "pc-split=9000")],
    )
    .await;
    assert_eq!(got.1, "v1");
    let line = eventually("the matched request's log line", || async {
        gw.stdout()
            .lines()
            .find(|l| l.contains(r#""split":"v2","split_by":"match""#))
            .map(str::to_string)
    })
    .await;
    assert!(line.contains(r#""pool":"v2""#), "{line}");

    // The admin API shows the split.
    let (_, upstreams) = common::get_json(&gw.admin_url("/-/upstreams")).await;
    let split = &upstreams["splits"][0];
    assert_eq!(split["route"], "orders");
    assert_eq!(split["sticky"]["cookie"], COOKIE);
    assert_eq!(split["sides"][0]["pool"], "v2");
    assert_eq!(split["sides"][0]["weight"], 5);
    assert_eq!(split["sides"][0]["match"]["x-canary"], "always");
    assert_eq!(split["sides"][1]["usable"], true);

    // The canary grows to 50 %: its clients stay, the next slice of
    // stable clients moves over, the rest stay where they were.
    gw.write_config(&config(&v1, &v2, 50, ""));
    let (status, body) = gw.reload().await;
    assert_eq!(status, 200, "{body}");
    for (bucket, side) in [
        (100, "v2"),
        (3_000, "v2"),
        (4_999, "v2"),
        (5_000, "v1"),
        (9_000, "v1"),
    ] {
        let got = get(&gw, "/orders/1", &[("cookie", &cookie(bucket))]).await;
        assert_eq!(got, (200, side.to_string(), None), "bucket {bucket}");
    }
    let (_, upstreams) = common::get_json(&gw.admin_url("/-/upstreams")).await;
    assert_eq!(upstreams["splits"][0]["sides"][0]["weight"], 50);
}

#[tokio::test]
async fn each_side_answers_are_cached_apart() {
    let v1 = Flaky::start("v1").await;
    let v2 = Flaky::start("v2").await;
    let gw = TestGateway::start(&config(&v1, &v2, 5, "")).await;
    let on_v2 = [("cookie", "pc-split=10")];
    let on_v1 = [("cookie", "pc-split=9000")];
    assert_eq!(get(&gw, "/cached/a", &on_v2).await.1, "v2");
    // Stored for v2's clients only: v1's go to v1 (and are stored too).
    assert_eq!(get(&gw, "/cached/a", &on_v1).await.1, "v1");
    assert_eq!(get(&gw, "/cached/a", &on_v1).await.1, "v1");
    assert_eq!(get(&gw, "/cached/a", &on_v2).await.1, "v2");
    assert_eq!((v1.hits(), v2.hits()), (1, 1), "the repeats were hits");
    // A hit still gives a new client its cookie (added after the cache).
    let (status, _, set) = get(&gw, "/cached/a", &[]).await;
    assert_eq!(status, 200);
    assert!(set.is_some());
}

#[tokio::test]
async fn a_failing_canary_breaks_its_circuit_while_the_stable_side_serves() {
    let v1 = Flaky::start("v1").await;
    let v2 = Flaky::start("v2").await;
    let breaker =
        "fallback = \"v1\"\n[pools.v2.breaker]\nconsecutive_failures = 3\nopen_for = \"60s\"\n";
    let gw = TestGateway::start(&config(&v1, &v2, 50, breaker)).await;
    v2.set(Mode::Status(500));
    let canary = [("cookie", "pc-split=10")];
    let stable = [("cookie", "pc-split=9000")];
    // The canary's clients see its failures until its breaker opens; the
    // stable side's clients never do.
    for _ in 0..3 {
        assert_eq!(
            get(&gw, "/orders/1", &canary).await,
            (500, "v2".into(), None)
        );
        assert_eq!(
            get(&gw, "/orders/1", &stable).await,
            (200, "v1".into(), None)
        );
    }
    let (_, upstreams) = common::get_json(&gw.admin_url("/-/upstreams")).await;
    let v2_pool = upstreams["pools"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "v2"))
        .cloned()
        .expect("pool v2");
    assert_eq!(v2_pool["breaker"]["state"], "open");
    assert_eq!(upstreams["splits"][0]["sides"][0]["usable"], false);
    assert_eq!(upstreams["splits"][0]["sides"][1]["usable"], true);
    // Open: the canary's share goes to its fallback, the stable side.
    for _ in 0..5 {
        assert_eq!(
            get(&gw, "/orders/1", &canary).await,
            (200, "v1".into(), None)
        );
        assert_eq!(
            get(&gw, "/orders/1", &stable).await,
            (200, "v1".into(), None)
        );
    }
    assert_eq!(v2.hits(), 3, "no request reached the open canary");
    let line = eventually("a handed-over request in the log", || async {
        gw.stdout()
            .lines()
            .find(|l| l.contains(r#""decisions":["fallback"]"#))
            .map(str::to_string)
    })
    .await;
    assert!(
        line.contains(r#""pool":"v1""#) && line.contains(r#""split":"v2","split_by":"sticky""#),
        "{line}"
    );
}
