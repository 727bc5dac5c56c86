//! The admin API: endpoints, methods and error bodies.

mod common;

use common::{base_config, client, get_json, pool, Backend, Gateway};
use serde_json::Value;

#[tokio::test]
async fn admin_endpoints() {
    let b = Backend::start("b").await;
    let config = format!(
        "{}{}[[routes]]\nid = \"orders\"\nhosts = [\"*.example.com\"]\npath = \"/v1/orders\"\nmethods = [\"GET\"]\npool = \"p\"\n",
        base_config(),
        pool("p", &[b.addr], "")
    );
    let gw = Gateway::start(&config).await;
    let c = client();

    let r = c.get(gw.admin_url("/-/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ok");

    let (_, routes) = get_json(&gw.admin_url("/-/routes")).await;
    let r0 = &routes["routes"][0];
    assert_eq!(r0["id"], "orders");
    assert_eq!(r0["hosts"][0], "*.example.com");
    assert_eq!(r0["path"], "/v1/orders");
    assert_eq!(r0["path_match"], "prefix");
    assert_eq!(r0["methods"][0], "GET");
    assert_eq!(r0["pool"], "p");

    let pools = gw.pools().await;
    let backend = &pools["pools"]["p"]["backends"][0];
    assert_eq!(backend["address"], b.addr.to_string());
    assert_eq!(backend["healthy"], true);
    assert_eq!(backend["inflight"], 0);

    let r = c.get(gw.admin_url("/-/reload")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = c.get(gw.admin_url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // An unchanged file reloads fine, changes nothing and reports its summary.
    let (status, body) = gw.reload().await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "unchanged", "{body}");
    assert_eq!(body["probes_restarted"].as_array().unwrap().len(), 0);
    assert_eq!(body["summary"], "1 routes, 1 pools, 0 consumers");
    assert_eq!(body["restart_required"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn reload_reports_settings_that_need_a_restart() {
    let b = Backend::start("b").await;
    let body = format!(
        "{}[[routes]]\nid = \"r\"\npath = \"/\"\npool = \"p\"\n",
        pool("p", &[b.addr], "")
    );
    let gw = Gateway::start(&format!("{}{body}", base_config())).await;
    let threads = common::server_config("watch_config = false\nthreads = 3");
    gw.write_config(&format!("{threads}{body}"));
    let (status, report) = gw.reload().await;
    assert_eq!(status, 200);
    assert_eq!(report["restart_required"][0], "server.threads");
    assert_eq!(report["status"], "reloaded");
    gw.wait_for_log("takes effect only after a restart").await;
}
