//! Faults around the gateway: backends that send garbage, reset or stall
//! in the middle of a response; a config file deleted or truncated before
//! a reload; an access log on a full disk. In each case the client gets
//! the right answer, nothing panics, connections are not leaked (the
//! gateway's open file descriptors go back to where they were), and the
//! gateway keeps serving.

mod common;

use common::backend::Backend;
use common::flaky::{Flaky, Mode};
use common::{client, eventually, sample, single_route, TestGateway};

/// Open file descriptors of the gateway process.
fn fds(gw: &TestGateway) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", gw.pid()))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test]
async fn garbage_resets_and_stalls_mid_response_leak_nothing() {
    let x = Flaky::start("x").await;
    let gw = TestGateway::start(&single_route(
        "p",
        &[x.addr],
        "retries = 0\ntimeouts = { read = \"300ms\" }\n",
        "",
    ))
    .await;
    let c = client();
    // Warm up: the first connections and the client pool exist.
    for _ in 0..5 {
        assert_eq!(c.get(gw.url("/ok")).send().await.unwrap().status(), 200);
    }
    let baseline = fds(&gw);
    assert!(baseline > 0);
    let tasks = alive_tasks(&gw).await;
    assert!(tasks > 0.0);

    x.set(Mode::Garbage);
    for _ in 0..10 {
        let r = client().get(gw.url("/g")).send().await.unwrap();
        assert_eq!(r.status(), 502);
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    // The head (200) went out before the body broke: the client sees the
    // body cut short, never a made-up success.
    for mode in [Mode::ResetMidBody, Mode::StallMidBody] {
        x.set(mode);
        for _ in 0..5 {
            let r = client().get(gw.url("/cut")).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let body = r.bytes().await;
            assert!(body.is_err() || body.unwrap().len() < 1000, "{mode:?}");
        }
    }
    x.set(Mode::Ok);
    assert_eq!(c.get(gw.url("/ok")).send().await.unwrap().status(), 200);
    // Every broken connection was closed: back to the baseline.
    eventually("the gateway's fds back to the baseline", || async {
        (fds(&gw) <= baseline + 2).then_some(())
    })
    .await;
    // And every task serving them ended. One more than the baseline is
    // allowed: the warm-up's upstream connection is put back in the pool
    // (and its watcher task spawned) after the client has its answer, so
    // the baseline may have been read before that task existed. Twenty
    // broken connections leaking would be twenty.
    let deadline = std::time::Instant::now() + common::DEADLINE;
    loop {
        let now = alive_tasks(&gw).await;
        if now <= tasks + 1.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tasks {now} (baseline {tasks})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!gw.logs().contains("panicked"), "{}", gw.logs());
}

#[tokio::test]
async fn backends_that_close_kept_alive_connections_or_flap_are_retried_and_leak_nothing() {
    let closing = Flaky::start("closing").await;
    closing.set(Mode::CloseAfterResponse);
    let flapping = Flaky::start("flapping").await;
    flapping.set(Mode::Flap);
    let steady = Flaky::start("steady").await;
    let gw = TestGateway::start(&format!(
        "{}[[routes]]\nid = \"c\"\npath = \"/c\"\npool = \"c\"\n\n[[routes]]\nid = \"f\"\npath = \"/f\"\npool = \"f\"\n",
        common::base_config()
            + &common::pool("c", &[closing.addr], "")
            + &common::pool("f", &[flapping.addr, steady.addr], "retries = 1\nbalance = \"round_robin\"\n")
    ))
    .await;
    let c = client();
    // Warm up: the client's connection and both pools' upstream
    // connections exist (each pooled connection has a task watching it).
    for path in ["/c", "/f", "/f"] {
        assert_eq!(c.get(gw.url(path)).send().await.unwrap().status(), 200);
    }
    let baseline = fds(&gw);
    let tasks = alive_tasks(&gw).await;
    // Each request finds the pooled upstream connection closed by the
    // backend: the gateway notices and replays it on a new one.
    for _ in 0..20 {
        let r = c.get(gw.url("/c")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "closing");
    }
    // Every other request to the flapping backend is reset: retried on
    // the steady one, the client never sees it.
    for _ in 0..20 {
        assert_eq!(c.get(gw.url("/f")).send().await.unwrap().status(), 200);
    }
    assert!(flapping.hits() >= 10, "{}", flapping.hits());
    // Polled with a deadline; the failure names both counts.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (f, t) = (fds(&gw), alive_tasks(&gw).await);
        if f <= baseline + 2 && t <= tasks + 2.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "fds {f} (baseline {baseline}), tasks {t} (baseline {tasks})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!gw.logs().contains("panicked"), "{}", gw.logs());
}

/// Tasks alive in the gateway's proxy runtime.
async fn alive_tasks(gw: &TestGateway) -> f64 {
    let text = gw.metrics_text().await;
    sample(&text, "portcullis_proxy_alive_tasks").expect("the tasks gauge")
}

/// A reload answers 422 with `why` in its first error, and the config
/// serving before keeps serving.
async fn reload_refused_and_old_config_serves(gw: &TestGateway, why: &str) {
    let (status, body) = gw.reload().await;
    assert_eq!(status, 422, "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains(why), "{body}");
    assert_eq!(
        client().get(gw.url("/x")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn a_config_deleted_or_truncated_before_a_reload_keeps_the_old_one_serving() {
    let backend = Backend::start("b").await;
    let config = single_route("p", &[backend.addr], "", "");
    let gw = TestGateway::start(&config).await;
    let path = gw.config_path.clone();

    std::fs::remove_file(&path).unwrap();
    reload_refused_and_old_config_serves(&gw, "cannot read").await;

    // Cut short before the pools and routes: still valid TOML, with no
    // route at all. Applied, it would answer 404 to everything.
    let cut = config.find("[pools.").unwrap();
    std::fs::write(&path, &config[..cut]).unwrap();
    reload_refused_and_old_config_serves(&gw, "has no routes while 1 are serving").await;

    std::fs::write(&path, &config).unwrap();
    assert_eq!(gw.reload().await.0, 200);
    assert_eq!(
        client().get(gw.url("/x")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn an_access_log_on_a_full_disk_drops_lines_and_keeps_serving() {
    let backend = Backend::start("b").await;
    let config = single_route("p", &[backend.addr], "", "").replacen(
        "[[listeners]]",
        "[access_log]\npath = \"/dev/full\"\n\n[[listeners]]",
        1,
    );
    let gw = TestGateway::start(&config).await;
    let c = client();
    // More lines than the writer's 64 KiB buffer holds.
    for _ in 0..400 {
        assert_eq!(c.get(gw.url("/x")).send().await.unwrap().status(), 200);
    }
    gw.wait_for_log("cannot write the access log").await;
    let dropped = eventually("dropped lines counted", || async {
        let text = gw.metrics_text().await;
        common::sample(&text, "portcullis_access_log_dropped_total").filter(|n| *n > 0.0)
    })
    .await;
    assert!(dropped > 0.0);
    assert_eq!(gw.logs().matches("cannot write the access log").count(), 1);
    assert_eq!(c.get(gw.url("/x")).send().await.unwrap().status(), 200);
}

/// A file cut off right before `[[consumers]]` is valid TOML and a valid
/// config: applied, every key holder would get 401. Refused on every
/// trigger (admin, SIGHUP) unless asked for with `?force=true`.
#[tokio::test]
async fn a_reload_that_drops_every_consumer_is_refused_unless_forced() {
    let backend = Backend::start("b").await;
    let key = portcullis::keys::generate().unwrap();
    let config = format!(
        "{}auth = \"api_key\"\n\n[[consumers]]\nid = \"acme\"\nkeys = [{}]\nscopes = [{{ routes = [\"*\"] }}]\n",
        single_route("p", &[backend.addr], "", ""),
        portcullis::keys::config_entry(&key.prefix, &key.digest_hex)
    );
    let gw = TestGateway::start(&config).await;
    let keyed = || async {
        client()
            .get(gw.url("/x"))
            .header("x-api-key", &key.key)
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(keyed().await, 200);
    let cut = &config[..config.find("[[consumers]]").unwrap()];
    gw.write_config(cut);
    let (status, body) = gw.reload().await;
    assert_eq!(status, 422, "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("no consumers while 1 are serving") && message.contains("force=true"),
        "{body}"
    );
    gw.sighup();
    gw.wait_for_log("no consumers while 1 are serving").await;
    assert_eq!(keyed().await, 200, "the old config serves");
    // Asked for: applied.
    let r = client()
        .post(gw.admin_url("/-/reload?force=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(keyed().await, 401);
}

#[test]
fn check_warns_when_an_open_method_route_takes_methods_from_a_key_route() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    let text = format!(
        "{}[pools.p]\nbackends = [{{ address = \"127.0.0.1:9001\" }}]\n\n[[routes]]\nid = \"orders\"\npath = \"/orders\"\npool = \"p\"\nauth = \"api_key\"\n\n[[routes]]\nid = \"orders-read\"\npath = \"/orders\"\nmethods = [\"GET\"]\npool = \"p\"\n",
        common::base_config()
    );
    std::fs::write(&file, text).unwrap();
    let (code, _, err) = common::run_cli(&["check", file.to_str().unwrap()], None);
    assert_eq!(code, 0, "a warning, not an error: {err}");
    assert!(
        err.contains("warning: route \"orders-read\" (GET, auth = \"none\") takes these methods on path prefix \"/orders\" from route \"orders\""),
        "{err}"
    );
}
