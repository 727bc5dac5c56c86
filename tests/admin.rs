//! The admin API: endpoints, methods and error bodies.

mod common;

use common::{base_config, client, get_json, pool, Backend, TestGateway};
use serde_json::Value;

#[tokio::test]
async fn admin_endpoints() {
    let b = Backend::start("b").await;
    let config = format!(
        "{}{}[[routes]]\nid = \"orders\"\nhosts = [\"*.example.com\"]\npath = \"/v1/orders\"\nmethods = [\"GET\"]\npool = \"p\"\n",
        base_config(),
        pool("p", &[b.addr], "")
    );
    let gw = TestGateway::start(&config).await;
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

/// A reload cannot apply start-up-only settings: `/-/config` keeps showing
/// what runs, the pending restart is in the reload answer, `/readyz` and
/// `portcullis_restart_required{reason}`, and it clears as soon as the file
/// matches what runs again.
#[tokio::test]
async fn restart_only_changes_are_pending_until_undone_and_never_shown_as_running() {
    let b = Backend::start("b").await;
    let route = |path: &str| {
        format!(
            "{}[[routes]]\nid = \"r\"\npath = \"{path}\"\npool = \"p\"\n",
            pool("p", &[b.addr], "")
        )
    };
    let running = format!("{}{}", base_config(), route("/"));
    let gw = TestGateway::start(&running).await;
    // An address nothing will bind: the new listener is never started.
    let spare = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let listener = format!("[[listeners]]\naddress = \"{spare}\"\n\n");
    let threads = common::server_config("watch_config = false\nthreads = 3");
    let gw = &gw;
    let pending_state = |reasons: &[&str]| {
        let reasons: Vec<String> = reasons.iter().map(|r| r.to_string()).collect();
        async move {
            let (_, ready) = get_json(&gw.admin_url("/readyz")).await;
            assert_eq!(
                ready["restart_required"],
                serde_json::json!(reasons),
                "{ready}"
            );
            let metrics = gw.metrics_text().await;
            for reason in ["listeners", "server.threads", "admin.address"] {
                let line = format!(
                    "portcullis_restart_required{{reason=\"{reason}\"}} {}",
                    u8::from(reasons.iter().any(|r| r == reason))
                );
                assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
            }
            let (_, config) = get_json(&gw.admin_url("/-/config")).await;
            let listeners = config["listeners"].as_array().unwrap().clone();
            assert_eq!(listeners.len(), 1, "only the running listener: {config}");
            assert_eq!(listeners[0]["address"], "127.0.0.1:0", "{config}");
            assert_eq!(config["server"]["threads"], 1, "{config}");
        }
    };
    pending_state(&[]).await;

    // A listener and the thread count change, and a route too.
    gw.write_config(&format!("{threads}{listener}{}", route("/v2")));
    let (status, report) = gw.reload().await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["status"], "reloaded", "{report}");
    assert_eq!(
        report["restart_required"],
        serde_json::json!(["listeners", "server.threads"]),
        "{report}"
    );
    assert_eq!(report["changes"]["routes"]["changed"][0], "r", "{report}");
    // The fields that changed, in the answer and in the log line.
    assert_eq!(
        report["changes"]["routes"]["fields"]["r"],
        serde_json::json!([{"field": "path.prefix", "old": "/", "new": "/v2"}]),
        "{report}"
    );
    gw.wait_for_log(r#"~ route r, path.prefix: "/" → "/v2""#)
        .await;
    pending_state(&["listeners", "server.threads"]).await;
    // The live change applied; the listener was not bound.
    assert_eq!(get_json(&gw.url("/v2")).await.0, 200);
    assert!(std::net::TcpStream::connect(spare).is_err());
    gw.wait_for_log("keeps its running value until a restart")
        .await;

    // The same file again: nothing to apply, the restart still pending.
    let (_, report) = gw.reload().await;
    assert_eq!(report["status"], "unchanged", "{report}");
    assert_eq!(
        report["restart_required"],
        serde_json::json!(["listeners", "server.threads"])
    );

    // Undone: nothing pending any more.
    gw.write_config(&format!("{}{}", base_config(), route("/v2")));
    let (status, report) = gw.reload().await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["status"], "unchanged", "{report}");
    assert_eq!(
        report["restart_required"],
        serde_json::json!([]),
        "{report}"
    );
    pending_state(&[]).await;
}
