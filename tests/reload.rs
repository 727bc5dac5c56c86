//! Live reload: routes swap without dropping requests, a broken file is
//! rejected while the old config keeps serving, health state survives.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use common::{base_config, client, eventually, get_json, pool, single_route, Backend, TestGateway};
use serde_json::Value;

fn config_to(name: &str, b: &Backend) -> String {
    single_route(name, &[b.addr], "", "")
}

async fn who(gw: &TestGateway) -> String {
    let (status, body) = get_json(&gw.url("/x")).await;
    assert_eq!(status, 200);
    body["backend"].as_str().unwrap().to_string()
}

/// Wait until `gw` serves `/x` from backend `name`.
async fn until_served_by(gw: &TestGateway, name: &str, what: &str) {
    eventually(
        what,
        || async move { (who(gw).await == name).then_some(()) },
    )
    .await
}

/// Requests in a loop until stopped; counts answers that were not 200.
fn traffic(
    gw: &TestGateway,
) -> (
    Arc<AtomicBool>,
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let url = gw.url("/x");
    let (s, o, f) = (stop.clone(), ok.clone(), failed.clone());
    let task = tokio::spawn(async move {
        let c = client();
        while !s.load(Ordering::SeqCst) {
            match c.get(&url).send().await {
                Ok(r) if r.status() == 200 => o.fetch_add(1, Ordering::SeqCst),
                _ => f.fetch_add(1, Ordering::SeqCst),
            };
        }
    });
    (stop, ok, failed, task)
}

#[tokio::test]
async fn admin_reload_swaps_routes_and_rejects_a_broken_file() {
    let one = Backend::start("one").await;
    let two = Backend::start("two").await;
    let gw = TestGateway::start(&config_to("one", &one)).await;
    assert_eq!(who(&gw).await, "one");

    let (stop, ok, failed, task) = traffic(&gw);

    gw.write_config(&config_to("two", &two));
    let (status, body) = gw.reload().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "reloaded");
    assert_eq!(who(&gw).await, "two");

    // A broken file: unknown pool. Rejected with file:line:col, old config serves.
    let broken = format!(
        "{}{}[[routes]]\nid = \"r\"\npath = \"/\"\npool = \"nope\"\n",
        base_config(),
        pool("two", &[two.addr], "")
    );
    gw.write_config(&broken);
    let (status, body) = gw.reload().await;
    assert_eq!(status, 422, "{body}");
    let err = &body["errors"][0];
    assert!(err["message"].as_str().unwrap().contains("nope"), "{body}");
    assert!(err["line"].as_u64().unwrap() > 0);
    assert!(
        err["text"].as_str().unwrap().contains("portcullis.toml:"),
        "{body}"
    );
    assert_eq!(who(&gw).await, "two");
    gw.wait_for_log("reload rejected").await;

    // Let some traffic flow across all of that, then check none failed.
    let before = ok.load(Ordering::SeqCst);
    let o = &ok;
    eventually("traffic flowing", || async move {
        (o.load(Ordering::SeqCst) > before + 20).then_some(())
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    task.await.unwrap();
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "requests failed during reloads"
    );
}

#[tokio::test]
async fn sighup_reloads() {
    let one = Backend::start("one").await;
    let two = Backend::start("two").await;
    let gw = TestGateway::start(&config_to("one", &one)).await;
    assert_eq!(who(&gw).await, "one");
    gw.write_config(&config_to("two", &two));
    gw.sighup();
    until_served_by(&gw, "two", "SIGHUP applied").await;
}

#[tokio::test]
async fn health_state_survives_a_reload() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let make = |extra_route: &str| {
        format!(
            "{}[pools.p]\nbackends = [\"{}\", \"{}\"]\n[pools.p.health_check]\ntype = \"http\"\npath = \"/healthz\"\ninterval = \"100ms\"\ntimeout = \"100ms\"\nunhealthy_threshold = 1\nhealthy_threshold = 1000\n\n[[routes]]\nid = \"r\"\npath = \"/\"\npool = \"p\"\n{extra_route}",
            base_config(),
            a.addr,
            b.addr
        )
    };
    let gw = TestGateway::start(&make("")).await;
    a.set_health_status(500);
    gw.wait_backend_health("p", a.addr, false).await;
    // It would take 1,000 good probes to come back, so if it reads healthy
    // after the reload, the state was reset.
    a.set_health_status(200);
    gw.write_config(&make(
        "\n[[routes]]\nid = \"extra\"\npath = \"/extra\"\npool = \"p\"\n",
    ));
    let (status, _) = gw.reload().await;
    assert_eq!(status, 200);
    assert_eq!(gw.backend_healthy("p", a.addr).await, Some(false));
    for _ in 0..10 {
        assert_eq!(who(&gw).await, "b");
    }
}

#[tokio::test]
async fn in_flight_requests_finish_on_their_snapshot() {
    let one = Backend::start("one").await;
    let two = Backend::start("two").await;
    let gw = TestGateway::start(&config_to("one", &one)).await;
    one.hold(true);
    let url = gw.url("/x");
    let held = tokio::spawn(async move {
        let r = client().get(url).send().await.unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    });
    let o = &one;
    eventually("request reached backend one", || async move {
        (o.hits() == 1).then_some(())
    })
    .await;

    // Pool `one` disappears from the config while the request is in flight.
    gw.write_config(&config_to("two", &two));
    let (status, _) = gw.reload().await;
    assert_eq!(status, 200);
    assert_eq!(who(&gw).await, "two");

    one.hold(false);
    let (status, body) = held.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["backend"], "one");
}

/// Two route tables for `/x`: A sends it to backend `one` and marks the
/// response `x-table: A`, B to backend `two` with `x-table: B`.
fn table(name: &str, one: &Backend, two: &Backend) -> String {
    let target = if name == "A" { "one" } else { "two" };
    format!(
        "{}{}{}[[routes]]\nid = \"x-{name}\"\npath = \"/x\"\npool = \"{target}\"\n[routes.response_headers]\nset = {{ \"x-table\" = \"{name}\" }}\n",
        base_config(),
        common::pool("one", &[one.addr], ""),
        common::pool("two", &[two.addr], ""),
    )
}

/// Eight keep-alive clients send requests until stopped; every answer must
/// be a 200 from a backend that matches the table that routed it.
fn keep_alive_clients(gw: &TestGateway) -> (Arc<AtomicBool>, Vec<tokio::task::JoinHandle<usize>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = (0..8)
        .map(|_| {
            let (stop, url) = (stop.clone(), gw.url("/x"));
            tokio::spawn(async move {
                let c = client();
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let r = c.get(&url).send().await.expect("request failed");
                    assert_eq!(r.status(), 200, "a request failed during reloads");
                    let table = r.headers()["x-table"].to_str().unwrap().to_string();
                    let body: Value = r.json().await.unwrap();
                    let expected = if table == "A" { "one" } else { "two" };
                    assert_eq!(
                        body["backend"], expected,
                        "table {table} answered by {body}"
                    );
                    n += 1;
                }
                n
            })
        })
        .collect();
    (stop, tasks)
}

async fn join(stop: Arc<AtomicBool>, tasks: Vec<tokio::task::JoinHandle<usize>>) -> usize {
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("a client saw a failure");
    }
    total
}

#[tokio::test]
async fn fifty_admin_reloads_under_keep_alive_traffic_lose_nothing() {
    let one = Backend::start("one").await;
    let two = Backend::start("two").await;
    let gw = TestGateway::start(&table("A", &one, &two)).await;
    let (stop, tasks) = keep_alive_clients(&gw);
    for i in 0..50 {
        let name = if i % 2 == 0 { "B" } else { "A" };
        gw.write_config(&table(name, &one, &two));
        let (status, body) = gw.reload().await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "reloaded", "{body}");
        // The routes changed, the pools did not: no probe restarted.
        assert_eq!(body["changes"]["routes"]["added"][0], format!("x-{name}"));
        assert!(body["changes"]["pools"]["changed"]
            .as_array()
            .unwrap()
            .is_empty());
    }
    let served = join(stop, tasks).await;
    assert!(served > 50, "only {served} requests served");
    assert!(one.hits() > 0 && two.hits() > 0);
}

#[tokio::test]
async fn fifty_file_watch_reloads_under_keep_alive_traffic_lose_nothing() {
    let one = Backend::start("one").await;
    let two = Backend::start("two").await;
    let watching =
        |name: &str| table(name, &one, &two).replace("watch_config = false", "watch_config = true");
    let gw = TestGateway::start(&watching("A")).await;
    let (stop, tasks) = keep_alive_clients(&gw);
    let c = client();
    for i in 0..50 {
        let name = if i % 2 == 0 { "B" } else { "A" };
        gw.write_config(&watching(name));
        let (c, url) = (&c, gw.url("/x"));
        let url = &url;
        eventually(&format!("edit {i} (table {name}) live"), || async move {
            let r = c.get(url.as_str()).send().await.ok()?;
            (r.headers().get("x-table")? == name).then_some(())
        })
        .await;
    }
    let served = join(stop, tasks).await;
    assert!(served > 50, "only {served} requests served");
    gw.wait_for_log("trigger=\"file watch\"").await;
}

#[tokio::test]
async fn file_watch_follows_a_configmap_style_symlink_swap() {
    let one = Backend::start("one").await;
    let two = Backend::start("two").await;
    let dir = tempfile::tempdir().unwrap();
    // As a Kubernetes ConfigMap volume lays it out: the file is a symlink
    // through `..data`, which is itself swapped atomically to a new folder.
    let write_version = |v: &str, config: &str| {
        let folder = dir.path().join(format!("..{v}"));
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("portcullis.toml"), config).unwrap();
        let tmp = dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(format!("..{v}"), &tmp).unwrap();
        std::fs::rename(&tmp, dir.path().join("..data")).unwrap();
    };
    let config = |b: &Backend| common::watching(&single_route(&b.name, &[b.addr], "", ""));
    write_version("v1", &config(&one));
    let path = dir.path().join("portcullis.toml");
    std::os::unix::fs::symlink("..data/portcullis.toml", &path).unwrap();
    let gw = TestGateway::start_file(&path).await;
    assert_eq!(who(&gw).await, "one");
    write_version("v2", &config(&two));
    until_served_by(&gw, "two", "the swapped ConfigMap is live").await;
}

#[tokio::test]
async fn a_half_written_file_is_rejected_and_the_completed_one_applies() {
    let one = Backend::start("one").await;
    let two = Backend::start("two").await;
    let watching = |b: &Backend| common::watching(&single_route(&b.name, &[b.addr], "", ""));
    let gw = TestGateway::start(&watching(&one)).await;
    let full = watching(&two);
    // Cut inside the route table: `pool = ` is missing its value.
    let half = &full[..full.rfind("pool = ").unwrap() + 7];
    gw.write_config(half);
    gw.wait_for_log("reload rejected").await;
    assert_eq!(who(&gw).await, "one");
    gw.write_config(&full);
    until_served_by(&gw, "two", "the completed file is live").await;
}

#[tokio::test]
async fn a_rejected_reload_changes_no_long_lived_state() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty-ca.pem"), "").unwrap();
    let health = "[pools.p.health_check]\ntype = \"http\"\npath = \"/healthz\"\ninterval = \"100ms\"\ntimeout = \"100ms\"\nunhealthy_threshold = 1\nhealthy_threshold = 1000\n";
    let make = |backends: &str, extra: &str| {
        format!(
            "{}[pools.p]\nbackends = [{backends}]\n{health}\n{extra}[[routes]]\nid = \"r\"\npath = \"/\"\npool = \"p\"\n",
            base_config()
        )
    };
    let both = format!("\"{}\", \"{}\"", a.addr, b.addr);
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, make(&both, "")).unwrap();
    let gw = TestGateway::start_file(&path).await;
    a.set_health_status(500);
    gw.wait_backend_health("p", a.addr, false).await;
    a.set_health_status(200);
    // One request in flight on b.
    b.hold(true);
    let held = tokio::spawn({
        let url = gw.url("/x");
        async move { client().get(url).send().await.unwrap().status() }
    });
    let bb = &b;
    eventually("request reached b", || async move {
        (bb.hits() == 1).then_some(())
    })
    .await;
    let inflight = |pools: &Value, addr: std::net::SocketAddr| {
        pools["pools"]["p"]["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["address"] == addr.to_string())
            .map(|x| x["inflight"].as_u64().unwrap())
    };
    assert_eq!(inflight(&gw.pools().await, b.addr), Some(1));

    // A config that drops `a` and then fails late, on a pool's CA bundle
    // that holds no certificate: rejected, with the line of `ca_file`.
    let broken = make(
        &format!("\"{}\"", b.addr),
        "[pools.q]\nbackends = [\"127.0.0.1:9\"]\n[pools.q.tls]\nca_file = \"empty-ca.pem\"\n\n",
    );
    std::fs::write(&path, &broken).unwrap();
    let (status, body) = gw.reload().await;
    assert_eq!(status, 422, "{body}");
    let ca_line = broken
        .lines()
        .position(|l| l.starts_with("ca_file"))
        .unwrap()
        + 1;
    assert_eq!(body["errors"][0]["line"], ca_line, "{body}");
    assert_eq!(body["errors"][0]["item"], "pool \"q\"", "{body}");
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("no certificate"));
    // Nothing changed: a is still down, b still has its request.
    let pools = gw.pools().await;
    assert_eq!(
        gw.backend_healthy("p", a.addr).await,
        Some(false),
        "{pools}"
    );
    assert_eq!(inflight(&pools, b.addr), Some(1));

    // A later good reload keeps both: a would need 1,000 good probes.
    std::fs::write(
        &path,
        make(
            &both,
            "[[routes]]\nid = \"more\"\npath = \"/more\"\npool = \"p\"\n",
        ),
    )
    .unwrap();
    let (status, body) = gw.reload().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(gw.backend_healthy("p", a.addr).await, Some(false));
    assert_eq!(inflight(&gw.pools().await, b.addr), Some(1));
    b.hold(false);
    assert_eq!(held.await.unwrap(), 200);
    let g = &gw;
    eventually("in-flight count back to 0", || async move {
        (inflight(&g.pools().await, bb.addr) == Some(0)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn only_pools_whose_backends_or_check_changed_restart_their_probes() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let make = |p_backends: &str, route: &str| {
        format!(
            "{}[pools.p]\nbackends = [{p_backends}]\nhealth_check = {{ type = \"tcp\", interval = \"1h\" }}\n\n[pools.q]\nbackends = [\"{}\"]\nhealth_check = {{ type = \"tcp\", interval = \"1h\" }}\n\n[[routes]]\nid = \"r\"\npath = \"/\"\npool = \"p\"\n{route}",
            base_config(),
            b.addr
        )
    };
    let one = format!("\"{}\"", a.addr);
    let gw = TestGateway::start(&make(&one, "")).await;
    // The same config, written again: a no-op.
    gw.write_config(&make(&one, ""));
    let (status, body) = gw.reload().await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "unchanged", "{body}");
    assert_eq!(body["probes_restarted"], serde_json::json!([]));
    // A route added: no probe restarts.
    let route = "[[routes]]\nid = \"s\"\npath = \"/s\"\npool = \"q\"\n";
    gw.write_config(&make(&one, route));
    let (_, body) = gw.reload().await;
    assert_eq!(body["status"], "reloaded");
    assert_eq!(body["probes_restarted"], serde_json::json!([]), "{body}");
    // A backend added to p: p's probes restart, q's do not.
    gw.write_config(&make(&format!("{one}, \"{}\"", b.addr), route));
    let (_, body) = gw.reload().await;
    assert_eq!(body["probes_restarted"], serde_json::json!(["p"]), "{body}");
    assert_eq!(
        body["changes"]["backends"]["added"][0],
        format!("p {}", b.addr)
    );
}

/// A writer that pauses mid-file longer than the watcher's debounce (the
/// file open for writing all along) does not get its half applied: the
/// watcher waits for the close.
#[tokio::test]
async fn a_write_paused_mid_file_is_not_applied_until_the_file_is_closed() {
    use std::io::Write;
    let one = Backend::start("one").await;
    let two = Backend::start("two").await;
    let watching = |b: &Backend| common::watching(&single_route(&b.name, &[b.addr], "", ""));
    let gw = TestGateway::start(&watching(&one)).await;
    let full = watching(&two);
    // The first part is a valid config of its own (routes to "two", no
    // route yet would be refused; this one only lacks a trailing line).
    let (head, tail) = full.split_at(full.len() - 1);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&gw.config_path)
        .unwrap();
    file.write_all(head.as_bytes()).unwrap();
    file.flush().unwrap();
    // Longer than the debounce (300 ms): the client's pause under test.
    let paused = std::time::Instant::now();
    while paused.elapsed() < std::time::Duration::from_millis(1200) {
        assert_eq!(who(&gw).await, "one", "applied while the file was open");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!gw.logs().contains("config reloaded"), "{}", gw.logs());
    file.write_all(tail.as_bytes()).unwrap();
    drop(file);
    until_served_by(&gw, "two", "the closed file is live").await;
}
