//! Circuit breaking across upstream pools, against real backends that
//! start failing (5xx, resets, hangs past the read timeout) and recover:
//! outlier ejection, the pool breaker, `max_in_flight`, the retry budget
//! and fallback pools, and what `GET /-/upstreams`, the metrics and the
//! access log say about each decision. No sleeps: every wait polls.

mod common;

use std::net::SocketAddr;

use common::backend::Backend;
use common::flaky::{Flaky, Mode};
use common::{base_config, client, eventually, pool, single_route, TestGateway};
use serde_json::Value;

/// `GET path`: status, `x-backend` (the flaky backend that answered, if
/// any), `retry-after`, body.
async fn get(gw: &TestGateway, path: &str) -> (u16, String, Option<String>, String) {
    let r = client().get(gw.url(path)).send().await.expect("request");
    let status = r.status().as_u16();
    let header = |n: &str| {
        r.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let backend = header("x-backend").unwrap_or_default();
    let retry_after = header("retry-after");
    (
        status,
        backend,
        retry_after,
        r.text().await.unwrap_or_default(),
    )
}

async fn upstreams(gw: &TestGateway) -> Value {
    let (status, v) = common::get_json(&gw.admin_url("/-/upstreams")).await;
    assert_eq!(status, 200);
    v
}

fn pool_view<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["pools"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("pool {name} in {v}"))
}

fn backend_view<'a>(v: &'a Value, pool: &str, addr: SocketAddr) -> &'a Value {
    pool_view(v, pool)["backends"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["address"] == addr.to_string()))
        .unwrap_or_else(|| panic!("backend {addr} in {v}"))
}

/// Wait until an access-log line (stdout, read by another thread) contains `needle`.
async fn access_log_has(gw: &TestGateway, needle: &str) {
    eventually(&format!("{needle} in the access log"), || async {
        gw.stdout().contains(needle).then_some(())
    })
    .await
}

fn metric(text: &str, series: &str) -> f64 {
    common::sample(text, series).unwrap_or(0.0)
}

#[tokio::test]
async fn a_failing_backend_is_ejected_and_max_ejection_percent_keeps_the_last_in() {
    let a = Flaky::start("a").await;
    let b = Flaky::start("b").await;
    let outlier = "[pools.p.outlier]\nconsecutive_failures = 3\nbase_ejection = \"1h\"\n";
    let gw = TestGateway::start(&single_route("p", &[a.addr, b.addr], outlier, "")).await;
    b.set(Mode::Status(503));
    let mut answers = Vec::new();
    for _ in 0..20 {
        answers.push(get(&gw, "/x").await);
    }
    // Round robin: b failed its three requests in a row and was ejected;
    // everything after went to a.
    assert_eq!(b.hits(), 3, "{answers:?}");
    assert!(answers[6..]
        .iter()
        .all(|(s, from, ..)| *s == 200 && from == "a"));
    let v = upstreams(&gw).await;
    let bv = backend_view(&v, "p", b.addr);
    assert_eq!(bv["ejected"], true, "{bv}");
    assert_eq!(bv["usable"], false);
    assert_eq!(bv["times_ejected"], 1);
    let why = bv["why_out"].as_str().unwrap_or_default();
    assert!(
        why.contains("ejected for 1h")
            && why.contains("3 consecutive failures, the last: status 503"),
        "{why}"
    );
    let kinds: Vec<&str> = bv["recent_failures"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["status 503"; 3]);
    assert!(
        bv["ejected_until"].as_f64().unwrap()
            > bv["recent_failures"][2]["at"].as_f64().unwrap() + 3500.0
    );
    let text = gw.metrics_text().await;
    let series = format!(
        r#"portcullis_upstream_ejections_total{{backend="{}",pool="p"}}"#,
        b.addr
    );
    assert_eq!(metric(&text, &series), 1.0, "{text}");
    access_log_has(&gw, r#""decisions":["backend_ejected"]"#).await;

    // Now a fails too: with 2 backends and 50%, one may be out at a time,
    // so a stays in and its answers pass through.
    a.set(Mode::Status(503));
    for _ in 0..5 {
        let (status, from, ..) = get(&gw, "/x").await;
        assert_eq!((status, from.as_str()), (503, "a"));
    }
    let v = upstreams(&gw).await;
    let av = backend_view(&v, "p", a.addr);
    assert_eq!(av["ejected"], false);
    assert!(
        av["ejection_note"]
            .as_str()
            .unwrap_or_default()
            .contains("kept in by max_ejection_percent = 50"),
        "{av}"
    );
}

#[tokio::test]
async fn an_ejected_backend_comes_back_on_trial_and_health_checks_do_not_end_an_ejection() {
    let a = Flaky::start("a").await;
    let b = Flaky::start("b").await;
    let extra = "[pools.p.outlier]\nconsecutive_failures = 2\nbase_ejection = \"400ms\"\n\
                 [pools.p.health_check]\ntype = \"tcp\"\ninterval = \"50ms\"\ntimeout = \"50ms\"\n";
    let gw = TestGateway::start(&single_route("p", &[a.addr, b.addr], extra, "")).await;
    b.set(Mode::Reset);
    eventually("b ejected after two resets", || async {
        get(&gw, "/x").await;
        let v = upstreams(&gw).await;
        (backend_view(&v, "p", b.addr)["ejected"] == true).then_some(())
    })
    .await;
    // The TCP health check passes all along (b accepts connections): it
    // does not undo the ejection.
    let v = upstreams(&gw).await;
    assert_eq!(backend_view(&v, "p", b.addr)["healthy"], true);
    b.set(Mode::Ok);
    // Once the ejection time is up, b gets trial traffic and is restored.
    eventually("b answers again", || async {
        let (_, from, ..) = get(&gw, "/x").await;
        (from == "b").then_some(())
    })
    .await;
    let v = upstreams(&gw).await;
    let bv = backend_view(&v, "p", b.addr);
    assert_eq!(bv["usable"], true, "{bv}");
    assert_eq!(bv["on_trial"], false);
    assert!(bv["ejection_note"]
        .as_str()
        .unwrap_or_default()
        .starts_with("restored"));
    assert_eq!(bv["recent_failures"][0]["kind"], "reset");
}

#[tokio::test]
async fn the_breaker_opens_fails_fast_survives_a_reload_and_closes_after_recovery() {
    let x = Flaky::start("x").await;
    let extra = "timeouts = { read = \"300ms\" }\n[pools.p.breaker]\nconsecutive_failures = 3\nopen_for = \"1s\"\nprobe_requests = 2\n";
    let config = single_route("p", &[x.addr], extra, "");
    let gw = TestGateway::start(&config).await;
    // Three different failures in a row: a 503, a reset, a hang past the
    // read timeout.
    x.set(Mode::Status(503));
    assert_eq!(get(&gw, "/x").await.0, 503);
    x.set(Mode::Reset);
    assert_eq!(get(&gw, "/x").await.0, 502);
    // The reset came on a kept-alive connection before any response byte:
    // exactly what a backend closing an idle connection looks like, so it
    // was replayed once over a fresh connection (not counted as a
    // failure), and that reset counted.
    assert_eq!(x.hits(), 3);
    x.set(Mode::Hang);
    assert_eq!(get(&gw, "/x").await.0, 504);
    assert_eq!(x.hits(), 4);
    // Open: 503 at once, with Retry-After and a problem body; the backend
    // never sees the request.
    let r = client().get(gw.url("/x")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: Value = r.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("refused until it recovers"),
        "{body}"
    );
    assert_eq!(x.hits(), 4);
    let v = upstreams(&gw).await;
    let breaker = &pool_view(&v, "p")["breaker"];
    assert_eq!(breaker["state"], "open", "{breaker}");
    assert!(breaker["reason"]
        .as_str()
        .unwrap()
        .starts_with("3 consecutive failures: open for 1s"));
    let kinds: Vec<&str> = backend_view(&v, "p", x.addr)["recent_failures"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["status 503", "reset", "timeout"]);
    access_log_has(&gw, r#""decisions":["breaker_open"]"#).await;
    let text = gw.metrics_text().await;
    assert_eq!(
        metric(
            &text,
            r#"portcullis_upstream_breaker_state{pool="p",state="open"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"portcullis_upstream_refused_total{pool="p",reason="breaker_open"}"#
        ),
        1.0
    );

    // A reload that leaves the pool as it is keeps the breaker's state.
    gw.write_config(&format!(
        "{config}\n[[routes]]\nid = \"other\"\npath = \"/other\"\npool = \"p\"\n"
    ));
    assert_eq!(gw.reload().await.0, 200);
    let after = upstreams(&gw).await;
    assert_eq!(pool_view(&after, "p")["breaker"]["since"], breaker["since"]);
    assert_eq!(pool_view(&after, "p")["breaker"]["state"], "open");

    // Recovery: after open_for, two probes pass and close it.
    x.set(Mode::Ok);
    eventually("the breaker lets a probe through", || async {
        (get(&gw, "/x").await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(get(&gw, "/x").await.0, 200);
    let v = upstreams(&gw).await;
    let breaker = &pool_view(&v, "p")["breaker"];
    assert_eq!(breaker["state"], "closed", "{breaker}");
    assert_eq!(breaker["reason"], "2 probe requests succeeded");
    let text = gw.metrics_text().await;
    for to in ["open", "half_open", "closed"] {
        let series =
            format!(r#"portcullis_upstream_breaker_transitions_total{{pool="p",to="{to}"}}"#);
        assert_eq!(metric(&text, &series), 1.0, "{series}");
    }
    assert_eq!(
        metric(
            &text,
            r#"portcullis_upstream_breaker_state{pool="p",state="closed"}"#
        ),
        1.0
    );
    assert!(common::promtool(&text).0);
}

#[tokio::test]
async fn the_retry_budget_caps_retries_during_a_full_outage() {
    let a = Flaky::start("a").await;
    let b = Flaky::start("b").await;
    let c = Flaky::start("c").await;
    let d = Flaky::start("d").await;
    for f in [&a, &b, &c, &d] {
        f.set(Mode::Status(503));
    }
    let config = format!(
        "{}{}{}[[routes]]\nid = \"budgeted\"\npath = \"/budgeted\"\npool = \"budgeted\"\nretry_on = [\"503\"]\n\n\
         [[routes]]\nid = \"free\"\npath = \"/free\"\npool = \"free\"\nretry_on = [\"503\"]\n",
        base_config(),
        pool(
            "budgeted",
            &[a.addr, b.addr],
            "retries = 1\n[pools.budgeted.retry_budget]\nratio = 0.1\nmin_per_second = 0\n"
        ),
        pool("free", &[c.addr, d.addr], "retries = 1\n"),
    );
    let gw = TestGateway::start(&config).await;
    for _ in 0..100 {
        assert_eq!(get(&gw, "/budgeted").await.0, 503);
        assert_eq!(get(&gw, "/free").await.0, 503);
    }
    // Without a budget every request is tried twice; with one, retries
    // stay within 10% of the requests.
    assert_eq!(c.hits() + d.hits(), 200);
    let budgeted = a.hits() + b.hits();
    assert!(
        (105..=110).contains(&budgeted),
        "{budgeted} attempts for 100 requests"
    );
    let text = gw.metrics_text().await;
    let retries = metric(
        &text,
        r#"portcullis_upstream_retries_total{pool="budgeted",reason="status"}"#,
    );
    assert_eq!(retries as usize, budgeted - 100);
    let exhausted = metric(
        &text,
        r#"portcullis_upstream_retry_budget_exhausted_total{pool="budgeted"}"#,
    );
    assert_eq!(exhausted as usize, 200 - budgeted);
    access_log_has(&gw, r#""decisions":["retry_budget_exhausted"]"#).await;
}

#[tokio::test]
async fn max_in_flight_answers_503_at_once_while_the_pool_is_saturated() {
    let backend = Backend::start("held").await;
    let gw = TestGateway::start(&single_route(
        "p",
        &[backend.addr],
        "max_in_flight = 2\n",
        "",
    ))
    .await;
    backend.hold(true);
    let url = gw.url("/x");
    let held: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { client().get(url).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    eventually("two requests held at the backend", || async {
        (backend.hits() == 2).then_some(())
    })
    .await;
    let started = std::time::Instant::now();
    let (status, _, retry_after, body) = get(&gw, "/x").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("too many requests in flight"), "{body}");
    assert_eq!(retry_after, None);
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert_eq!(backend.hits(), 2);
    assert_eq!(pool_view(&upstreams(&gw).await, "p")["inflight"], 2);
    backend.hold(false);
    for h in held {
        assert_eq!(h.await.unwrap().unwrap(), 200);
    }
    assert_eq!(get(&gw, "/x").await.0, 200);
    let text = gw.metrics_text().await;
    assert_eq!(
        metric(
            &text,
            r#"portcullis_upstream_refused_total{pool="p",reason="max_in_flight"}"#
        ),
        1.0
    );
    access_log_has(&gw, r#""decisions":["max_in_flight"]"#).await;
}

#[tokio::test]
async fn a_fallback_pool_takes_over_and_gives_back() {
    let primary = Flaky::start("primary").await;
    let dr = Flaky::start("dr").await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let config = format!(
        "{}{}{}{}[[routes]]\nid = \"r\"\npath = \"/\"\npool = \"p\"\n\n[[routes]]\nid = \"down\"\npath = \"/down\"\npool = \"down\"\n",
        base_config(),
        pool(
            "p",
            &[primary.addr],
            "fallback = \"dr\"\n[pools.p.breaker]\nconsecutive_failures = 2\nopen_for = \"500ms\"\nprobe_requests = 1\n"
        ),
        pool("dr", &[dr.addr], ""),
        pool(
            "down",
            &[dead],
            "fallback = \"dr\"\n[pools.down.health_check]\ntype = \"tcp\"\ninterval = \"50ms\"\ntimeout = \"50ms\"\nunhealthy_threshold = 1\n"
        ),
    );
    let gw = TestGateway::start(&config).await;
    primary.set(Mode::Status(500));
    for _ in 0..2 {
        assert_eq!(get(&gw, "/x").await.1, "primary");
    }
    // Breaker open: the fallback answers, the primary sees nothing.
    for _ in 0..5 {
        let (status, from, ..) = get(&gw, "/x").await;
        assert_eq!((status, from.as_str()), (200, "dr"));
    }
    assert_eq!(primary.hits(), 2);
    access_log_has(&gw, r#""pool":"dr","decisions":["fallback"]"#).await;
    // Recovered: a probe closes the breaker and the traffic comes back.
    primary.set(Mode::Ok);
    eventually("the primary takes its traffic back", || async {
        (get(&gw, "/x").await.1 == "primary").then_some(())
    })
    .await;
    for _ in 0..5 {
        assert_eq!(get(&gw, "/x").await.1, "primary");
    }
    // Every request the fallback answered was handed over, and counted.
    let text = gw.metrics_text().await;
    let handed = metric(
        &text,
        r#"portcullis_upstream_fallback_total{fallback="dr",pool="p"}"#,
    );
    assert!(handed >= 5.0);
    assert_eq!(handed as usize, dr.hits());

    // A pool whose only backend fails its health checks hands over too.
    gw.wait_backend_health("down", dead, false).await;
    let (status, from, ..) = get(&gw, "/down").await;
    assert_eq!((status, from.as_str()), (200, "dr"));
}

#[tokio::test]
async fn retry_on_sends_idempotent_requests_to_another_backend_only() {
    let a = Flaky::start("a").await;
    let b = Flaky::start("b").await;
    let config = single_route(
        "p",
        &[a.addr, b.addr],
        "retries = 1\ntimeouts = { read = \"300ms\" }\n",
        "retry_on = [\"timeout\", \"502\"]\n",
    );
    let gw = TestGateway::start(&config).await;
    a.set(Mode::Hang);
    b.set(Mode::Ok);
    // Whichever backend a GET starts on, it ends on b.
    for _ in 0..4 {
        let (status, from, ..) = get(&gw, "/x").await;
        assert_eq!((status, from.as_str()), (200, "b"));
    }
    // Each GET that started on a was retried once.
    let timed_out = a.hits();
    assert!(timed_out >= 1);
    // A POST that timed out on a is not sent again.
    let mut posts = Vec::new();
    for _ in 0..4 {
        let r = client()
            .post(gw.url("/x"))
            .body("order")
            .send()
            .await
            .unwrap();
        posts.push(r.status().as_u16());
    }
    posts.sort();
    assert_eq!(posts, [200, 200, 504, 504]);
    // A listed status is retried on the other backend; when both answer
    // it, the last answer goes to the client.
    a.set(Mode::Status(502));
    b.set(Mode::Status(502));
    let before = a.hits() + b.hits();
    assert_eq!(get(&gw, "/x").await.0, 502);
    assert_eq!(a.hits() + b.hits() - before, 2);
    let text = gw.metrics_text().await;
    let timeout_retries = metric(
        &text,
        r#"portcullis_upstream_retries_total{pool="p",reason="timeout"}"#,
    );
    assert_eq!(timeout_retries as usize, timed_out);
    assert_eq!(
        metric(
            &text,
            r#"portcullis_upstream_retries_total{pool="p",reason="status"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn an_open_breaker_lets_a_caching_route_serve_stale() {
    let x = Flaky::start("x").await;
    let config = format!(
        "{}{}[[routes]]\nid = \"cached\"\npath = \"/cached\"\npool = \"p\"\n[routes.cache]\nttl = \"1s\"\nstale_if_error = \"1h\"\n\n\
         [[routes]]\nid = \"live\"\npath = \"/live\"\npool = \"p\"\n",
        base_config(),
        pool("p", &[x.addr], "[pools.p.breaker]\nconsecutive_failures = 1\n"),
    );
    let gw = TestGateway::start(&config).await;
    let (status, from, ..) = get(&gw, "/cached").await;
    assert_eq!((status, from.as_str()), (200, "x"));
    // One failure on the other route opens the pool's breaker.
    x.set(Mode::Status(503));
    assert_eq!(get(&gw, "/live").await.0, 503);
    assert_eq!(x.hits(), 2);
    // Once the stored copy is stale, the refused trip to the backend
    // serves it (stale-if-error) instead of a 503; the backend sees nothing.
    eventually(
        "the stale copy served while the breaker is open",
        || async {
            let r = client().get(gw.url("/cached")).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let status = r.headers()["cache-status"].to_str().unwrap().to_string();
            status.contains("detail=stale-if-error").then_some(())
        },
    )
    .await;
    assert_eq!(x.hits(), 2);
    assert_eq!(get(&gw, "/live").await.0, 503);
    assert_eq!(x.hits(), 2);
}
