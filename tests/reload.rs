//! Live reload: routes swap without dropping requests, a broken file is
//! rejected while the old config keeps serving, health state survives.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use common::{base_config, client, eventually, get_json, pool, single_route, Backend, Gateway};
use serde_json::Value;

fn config_to(name: &str, b: &Backend) -> String {
    single_route(name, &[b.addr], "", "")
}

async fn who(gw: &Gateway) -> String {
    let (status, body) = get_json(&gw.url("/x")).await;
    assert_eq!(status, 200);
    body["backend"].as_str().unwrap().to_string()
}

/// Requests in a loop until stopped; counts answers that were not 200.
fn traffic(
    gw: &Gateway,
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
    let gw = Gateway::start(&config_to("one", &one)).await;
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
    let gw = Gateway::start(&config_to("one", &one)).await;
    assert_eq!(who(&gw).await, "one");
    gw.write_config(&config_to("two", &two));
    gw.sighup();
    let g = &gw;
    eventually("SIGHUP applied", || async move {
        (who(g).await == "two").then_some(())
    })
    .await;
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
    let gw = Gateway::start(&make("")).await;
    a.set_health_status(500);
    let (g, addr) = (&gw, a.addr);
    eventually("a unhealthy", || async move {
        (g.backend_healthy("p", addr).await == Some(false)).then_some(())
    })
    .await;
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
    let gw = Gateway::start(&config_to("one", &one)).await;
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
