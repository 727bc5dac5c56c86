//! The access log (JSON lines on stdout or in a file, reopened on reload)
//! and the Prometheus metrics on the admin listener, checked by the real
//! `promtool`.

mod common;

use std::process::Command;

use common::{base_config, client, eventually, pool, Backend, TestGateway};
use portcullis::keys;
use serde_json::Value;

/// The access-log lines written so far (stdout lines that are JSON objects).
fn access_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

async fn wait_for_lines(gw: &TestGateway, n: usize) -> Vec<Value> {
    eventually(&format!("{n} access-log lines"), || {
        let lines = access_lines(&gw.stdout());
        async move { (lines.len() >= n).then_some(lines) }
    })
    .await
}

fn keyed_config(backend: &Backend, key: &keys::NewKey) -> String {
    format!(
        r#"{}{}
[[routes]]
id = "keyed"
path = "/keyed"
pool = "p"
auth = "api_key"
rate_limits = [{{ rate = "2/m", per = "consumer" }}]

[[consumers]]
id = "acme"
keys = [{}]
scopes = [{{ routes = ["keyed"] }}]
"#,
        base_config(),
        pool("p", &[backend.addr], ""),
        keys::config_entry(&key.prefix, &key.digest_hex)
    )
}

#[tokio::test]
async fn access_log_lines_name_route_consumer_and_refusals() {
    let backend = Backend::start("b").await;
    let key = keys::generate().unwrap();
    let gw = TestGateway::start(&keyed_config(&backend, &key)).await;
    let c = client();
    let url = gw.url("/keyed/x?secret=1");
    let ok = c
        .get(&url)
        .header("x-api-key", &key.key)
        .header("x-request-id", "req-1")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(c.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(
        c.get(&url)
            .header("x-api-key", &key.key)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(&url)
            .header("x-api-key", &key.key)
            .send()
            .await
            .unwrap()
            .status(),
        429
    );

    let lines = wait_for_lines(&gw, 4).await;
    let first = &lines[0];
    assert_eq!(first["request_id"], "req-1");
    assert_eq!(first["status"], 200);
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/keyed/x", "the query is never logged");
    assert_eq!(first["route"], "keyed");
    assert_eq!(first["consumer"], "acme");
    assert_eq!(first["key_prefix"], key.prefix);
    assert_eq!(first["upstream"], backend.addr.to_string());
    assert_eq!(first["attempts"], 1);
    assert_eq!(first["client"], "127.0.0.1");
    assert_eq!(first["protocol"], "HTTP/1.1");
    assert!(first["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(first["ts"].as_str().unwrap().ends_with('Z'));
    assert_eq!(lines[1]["status"], 401);
    assert_eq!(lines[1]["auth_failure"], "missing_key");
    assert!(lines[1]["consumer"].is_null());
    assert_eq!(lines[3]["status"], 429);
    assert_eq!(lines[3]["limit"], "route-consumer");
    assert!(!gw.stdout().contains(&key.key) && !gw.stdout().contains(&key.digest_hex));
}

/// A gateway with one route to `backend` and its access log in
/// `access.log` in the returned directory.
async fn gateway_logging_to_file(backend: &Backend) -> (tempfile::TempDir, TestGateway) {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[access_log]\npath = \"access.log\"\n\n{}",
        common::single_route("p", &[backend.addr], "", "")
    );
    let main = dir.path().join("portcullis.toml");
    std::fs::write(&main, config).unwrap();
    let gw = TestGateway::start_file(&main).await;
    (dir, gw)
}

#[tokio::test]
async fn access_log_file_is_reopened_on_reload() {
    let backend = Backend::start("b").await;
    let (dir, gw) = gateway_logging_to_file(&backend).await;
    let log = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();

    client().get(gw.url("/one")).send().await.unwrap();
    eventually("first line in access.log", || {
        let found = read(&log).contains("\"path\":\"/one\"");
        async move { found.then_some(()) }
    })
    .await;
    // logrotate: move the file away, then reload.
    std::fs::rename(&log, &rotated).unwrap();
    assert_eq!(gw.reload().await.0, 200);
    client().get(gw.url("/two")).send().await.unwrap();
    eventually("second line in the new access.log", || {
        let found = read(&log).contains("\"path\":\"/two\"");
        async move { found.then_some(()) }
    })
    .await;
    assert!(!read(&rotated).contains("/two"));
    assert!(access_lines(&gw.stdout()).is_empty(), "nothing on stdout");
}

/// Like nginx, `check` and `run` refuse an access-log path that cannot be
/// opened for appending (the log never silently moves to stdout), and a
/// reload to one is rejected: the old log keeps getting the lines.
#[tokio::test]
async fn an_access_log_that_cannot_be_written_is_refused_by_check_run_and_reload() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let config = |path: &str| {
        format!(
            "[access_log]\npath = \"{path}\"\n\n{}",
            common::single_route("p", &[backend.addr], "", "")
        )
    };
    let main = dir.path().join("portcullis.toml");
    // Missing directory, a directory, a place where no file can be made.
    for bad in ["no-such-dir/access.log", ".", "/proc/portcullis-access.log"] {
        std::fs::write(&main, config(bad)).unwrap();
        let file = main.to_str().unwrap();
        let (code, out, err) = common::run_cli(&["check", "-c", file], None);
        assert_eq!(code, 1, "{bad}: {out}{err}");
        assert!(
            err.contains(&format!("{file}:2:8: access_log: path ")),
            "{bad}: {err}"
        );
        let run = std::process::Command::new(common::bin())
            .args(["run", "-c", file])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{bad}: run started");
        assert!(err.contains("access_log: path "), "{bad}: {err}");
        assert!(
            !String::from_utf8_lossy(&run.stdout).contains("listening"),
            "{bad}"
        );
    }

    // Running with a good log, a reload to a bad one is rejected.
    std::fs::write(&main, config("access.log")).unwrap();
    let gw = TestGateway::start_file(&main).await;
    gw.write_config(&config("no-such-dir/access.log"));
    let (status, answer) = gw.reload().await;
    assert_eq!(status, 422, "{answer}");
    assert!(answer.to_string().contains("no-such-dir"), "{answer}");
    client().get(gw.url("/after")).send().await.unwrap();
    let log = dir.path().join("access.log");
    eventually("the line in the old access.log", || {
        let found = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("\"path\":\"/after\"");
        async move { found.then_some(()) }
    })
    .await;
    assert!(access_lines(&gw.stdout()).is_empty(), "nothing on stdout");
}

#[tokio::test]
async fn access_log_lines_queued_at_shutdown_are_written() {
    let backend = Backend::start("b").await;
    let (dir, mut gw) = gateway_logging_to_file(&backend).await;
    let http = client();
    for i in 0..50 {
        let r = http.get(gw.url(&format!("/r{i}"))).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    // Quick shutdown (no grace period) right after the last response: the
    // writer batches lines, so some are still queued; none may be lost.
    gw.signal("INT");
    assert_eq!(gw.exited().await, Some(0));
    let text = std::fs::read_to_string(dir.path().join("access.log")).unwrap();
    let paths: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["path"].to_string())
        .collect();
    assert_eq!(paths.len(), 50, "{text}");
    assert_eq!(paths[49], "\"/r49\"");
}

#[tokio::test]
async fn metrics_pass_promtool_and_count_what_the_gateway_refused() {
    let backend = Backend::start("b").await;
    let key = keys::generate().unwrap();
    // A TLS listener too, for the certificate expiry gauge.
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["api.example.com".to_string()]).unwrap();
    std::fs::write(dir.path().join("c.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("c.key"), cert.signing_key.serialize_pem()).unwrap();
    let config = keyed_config(&backend, &key).replacen(
        "[admin]",
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n[[listeners.tls.certificates]]\ncert = \"c.pem\"\nkey = \"c.key\"\n\n[admin]",
        1,
    );
    let main = dir.path().join("portcullis.toml");
    std::fs::write(&main, config).unwrap();
    let gw = TestGateway::start_file(&main).await;
    let c = client();
    let url = gw.url("/keyed");
    c.get(&url).send().await.unwrap();
    c.get(&url)
        .header("x-api-key", "pk_wrong")
        .send()
        .await
        .unwrap();
    for _ in 0..3 {
        c.get(&url)
            .header("x-api-key", &key.key)
            .send()
            .await
            .unwrap();
    }
    // No route: counted with route="".
    c.delete(gw.url("/nowhere")).send().await.unwrap();
    std::fs::write(&main, "not toml [").unwrap();
    assert_eq!(gw.reload().await.0, 422);

    // Requests are counted once they have ended, just after their response.
    let last = r#"portcullis_http_requests_total{code="404",method="DELETE",route=""} 1"#;
    let admin = gw.admin_url("/metrics");
    common::eventually("the last request counted", || {
        let (c, admin) = (&c, &admin);
        async move {
            let text = c.get(admin).send().await.ok()?.text().await.ok()?;
            text.contains(last).then_some(())
        }
    })
    .await;
    let r = c.get(gw.admin_url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    let (ok, report) = common::promtool(&text);
    assert!(ok, "promtool check metrics failed:\n{report}\n{text}");

    let expect = [
        r#"portcullis_auth_rejections_total{reason="missing_key",route="keyed"} 1"#,
        r#"portcullis_auth_rejections_total{reason="unknown_key",route="keyed"} 1"#,
        r#"portcullis_rate_limited_total{limit="route-consumer",route="keyed"} 1"#,
        r#"portcullis_config_reloads_total{result="failed"} 1"#,
        r#"portcullis_config_reloads_total{result="ok"} 0"#,
        "portcullis_access_log_dropped_total 0",
        // Every request, those the gateway answered itself included.
        r#"portcullis_http_requests_total{code="401",method="GET",route="keyed"} 2"#,
        r#"portcullis_http_requests_total{code="200",method="GET",route="keyed"} 2"#,
        r#"portcullis_http_requests_total{code="429",method="GET",route="keyed"} 1"#,
        r#"portcullis_http_requests_total{code="404",method="DELETE",route=""} 1"#,
        r#"portcullis_http_request_duration_seconds_count{route="keyed"} 5"#,
        r#"portcullis_http_request_duration_seconds_count{route=""} 1"#,
    ];
    for line in expect {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    let tls = gw
        .listeners
        .iter()
        .find(|l| l.starts_with("https://"))
        .unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.cert.der()).unwrap();
    let not_after = parsed.validity().not_after.timestamp();
    let gauge = format!(
        "portcullis_tls_certificate_not_after_seconds{{listener=\"{}\",name=\"api.example.com\"}} {not_after}",
        &tls["https://".len()..]
    );
    assert!(
        text.lines().any(|l| l == gauge),
        "missing {gauge:?} in:\n{text}"
    );
    // Nothing secret, no unbounded labels.
    assert!(!text.contains(&key.key) && !text.contains(&key.prefix) && !text.contains("acme"));
}

#[tokio::test]
async fn request_metrics_survive_reloads_and_leave_with_their_route() {
    let backend = Backend::start("b").await;
    let route = |id: &str| format!("[[routes]]\nid = \"{id}\"\npath = \"/{id}\"\npool = \"p\"\n");
    let config = |ids: &[&str]| {
        let routes: String = ids.iter().map(|id| route(id)).collect();
        format!(
            "{}{}{routes}",
            base_config(),
            pool("p", &[backend.addr], "")
        )
    };
    let gw = TestGateway::start(&config(&["a", "b"])).await;
    let c = client();
    let scrape = || gw.metrics_text();
    let a = r#"portcullis_http_requests_total{code="200",method="GET",route="a"}"#;
    for path in ["/a", "/b"] {
        assert_eq!(c.get(gw.url(path)).send().await.unwrap().status(), 200);
    }
    // A request is counted once it has ended, just after its response.
    let scraped_with = |needle: String| async move {
        common::eventually(&needle.clone(), || {
            let needle = needle.clone();
            async move {
                let text = scrape().await;
                text.contains(&needle).then_some(text)
            }
        })
        .await
    };
    let text = scraped_with(format!("{a} 1")).await;
    assert!(text.contains("route=\"b\""), "{text}");
    let hash_before = value_of(&text, "portcullis_config_hash");
    let loaded_before = value_of(
        &text,
        "portcullis_config_last_reload_success_timestamp_seconds",
    );
    assert!(loaded_before > 1.7e9, "{text}");

    // b leaves, c arrives: a keeps counting, b is no longer exported.
    gw.write_config(&config(&["a", "c"]));
    assert_eq!(gw.reload().await.0, 200);
    assert_eq!(c.get(gw.url("/a")).send().await.unwrap().status(), 200);
    let text = scraped_with(format!("{a} 2")).await;
    assert!(!text.contains("route=\"b\""), "{text}");
    // c has had no request: its series are there, at zero.
    assert!(
        text.contains("portcullis_http_requests_total{code=\"200\",method=\"GET\",route=\"c\"} 0"),
        "{text}"
    );
    assert_ne!(value_of(&text, "portcullis_config_hash"), hash_before);
    assert!(
        value_of(
            &text,
            "portcullis_config_last_reload_success_timestamp_seconds"
        ) >= loaded_before
    );
    // Build and process metrics.
    let build = format!(
        "portcullis_build_info{{revision=\"{}\",version=\"{}\"}} 1",
        text.split("portcullis_build_info{revision=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("?"),
        env!("CARGO_PKG_VERSION")
    );
    assert!(text.lines().any(|l| l == build), "{build} in {text}");
    for m in [
        "portcullis_process_resident_memory_bytes",
        "portcullis_process_open_fds",
    ] {
        assert!(value_of(&text, m) > 0.0, "{m} in {text}");
    }
    // CPU time in fractional seconds (the crate's collector counted whole
    // seconds: a fresh gateway read 0), of the order of the kernel's
    // account read right after the scrape. That one is sampled in 10 ms
    // ticks per thread, so it can trail the exact figure by a few ticks:
    // the bound is loose, but a figure in the wrong unit fails it.
    let cpu = value_of(&text, "portcullis_process_cpu_seconds_total");
    let kernel = proc_cpu_seconds(gw.pid());
    assert!(cpu > 0.0 && cpu.fract() != 0.0, "{cpu} in {text}");
    assert!(
        cpu <= kernel * 1.5 + 0.05,
        "exported {cpu} s, /proc says {kernel} s"
    );
    let (ok, report) = common::promtool(&text);
    assert!(ok, "{report}");
}

/// User plus system CPU time of a process from `/proc/PID/stat`, in seconds.
fn proc_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at state;
    // utime and stime are fields 14 and 15 of the whole line.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz
}

/// The value of the unlabelled sample `name` in a scrape.
fn value_of(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// The headers the echo backend received, from its JSON answer.
async fn backend_saw(r: reqwest::Response) -> Value {
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["headers"].clone()
}

#[tokio::test]
async fn trace_context_is_continued_or_started_and_logged() {
    let backend = Backend::start("b").await;
    let gw = TestGateway::start(&common::single_route("p", &[backend.addr], "", "")).await;
    let c = client();

    // A valid traceparent: same trace id and flags, a new parent id (the
    // gateway's hop), tracestate passed through.
    let seen = backend_saw(
        c.get(gw.url("/continued"))
            .header("traceparent", TRACEPARENT)
            .header("tracestate", "vendor=abc")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let sent = seen["traceparent"].as_str().unwrap();
    assert_eq!(&sent[..36], &TRACEPARENT[..36], "{sent}");
    assert_ne!(&sent[36..52], &TRACEPARENT[36..52], "a new parent id");
    assert_eq!(&sent[52..], "-01");
    assert_eq!(seen["tracestate"], "vendor=abc");

    // Absent, or malformed: a new trace, and the orphan tracestate dropped.
    let mut new_ids = Vec::new();
    for bad in [
        None,
        Some("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
    ] {
        let mut req = c.get(gw.url("/new")).header("tracestate", "vendor=abc");
        if let Some(b) = bad {
            req = req.header("traceparent", b);
        }
        let seen = backend_saw(req.send().await.unwrap()).await;
        let sent = seen["traceparent"].as_str().unwrap().to_string();
        assert_eq!(sent.len(), 55, "{sent}");
        assert!(sent.starts_with("00-") && sent.ends_with("-01"), "{sent}");
        assert!(!sent.contains("4bf92f3577b34da6"), "{sent}");
        assert!(seen["tracestate"].is_null(), "{seen}");
        new_ids.push(sent[3..35].to_string());
    }
    assert_ne!(new_ids[0], new_ids[1]);

    // The trace id is in the access log, with the upstream's time to first
    // byte and the bytes received.
    let lines = wait_for_lines(&gw, 3).await;
    assert_eq!(lines[0]["trace_id"], &TRACEPARENT[3..35]);
    assert_eq!(lines[1]["trace_id"], new_ids[0].as_str());
    for line in &lines {
        assert!(line["upstream_ttfb_ms"].as_f64().unwrap() > 0.0, "{line}");
        assert_eq!(line["bytes_received"], 0);
        assert!(line["tls_version"].is_null(), "plain HTTP: {line}");
    }
}

#[tokio::test]
async fn generated_request_ids_are_random_and_unique() {
    let backend = Backend::start("b").await;
    let gw = TestGateway::start(&common::single_route("p", &[backend.addr], "", "")).await;
    let c = client();
    let mut ids = std::collections::BTreeSet::new();
    let mut prefixes = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let r = c.get(gw.url("/")).send().await.unwrap();
        let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
        assert_eq!(id.len(), 32, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        prefixes.insert(id[..16].to_string());
        ids.insert(id);
    }
    assert_eq!(ids.len(), 200, "unique");
    // Random in all 128 bits: no shared 64-bit prefix (a per-process prefix
    // and a counter would give 1).
    assert_eq!(prefixes.len(), 200);
    // A POST body is counted as bytes received.
    c.post(gw.url("/")).body("12345").send().await.unwrap();
    let lines = wait_for_lines(&gw, 201).await;
    assert_eq!(lines[200]["bytes_received"], 5, "{}", lines[200]);
}

#[tokio::test]
async fn shipped_logrotate_snippet_rotates_and_sigusr1_reopens_the_log() {
    let backend = Backend::start("b").await;
    let (dir, gw) = gateway_logging_to_file(&backend).await;
    let log = dir.path().join("access.log");
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    client().get(gw.url("/before")).send().await.unwrap();
    eventually("first line in access.log", || {
        let found = read(&log).contains("\"path\":\"/before\"");
        async move { found.then_some(()) }
    })
    .await;

    // The shipped snippet, pointed at this log and this process.
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/logrotate/portcullis"),
    )
    .unwrap();
    let snippet = shipped
        .replace("/var/log/portcullis/access.log", &log.display().to_string())
        .replace("    create 0640 portcullis portcullis\n", "")
        .replace(
            "systemctl kill --kill-whom=main --signal=USR1 portcullis.service 2>/dev/null || pkill -USR1 -x portcullis || true",
            &format!("kill -USR1 {}", gw.pid()),
        );
    assert!(
        snippet.contains(&format!("kill -USR1 {}", gw.pid())),
        "{snippet}"
    );
    let conf = dir.path().join("logrotate.conf");
    std::fs::write(&conf, snippet).unwrap();
    let out = Command::new("logrotate")
        .arg("--force")
        .arg("--state")
        .arg(dir.path().join("logrotate.state"))
        .arg(&conf)
        .output()
        .expect("logrotate is needed: `make test` installs it (Debian package logrotate)");
    assert!(
        out.status.success(),
        "logrotate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    gw.wait_for_log("access log reopened (SIGUSR1)").await;

    client().get(gw.url("/after")).send().await.unwrap();
    eventually("a line in the new access.log", || {
        let found = read(&log).contains("\"path\":\"/after\"");
        async move { found.then_some(()) }
    })
    .await;
    let rotated: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("access.log-"))
        .collect();
    assert_eq!(rotated.len(), 1, "{rotated:?}");
    let old = read(&dir.path().join(&rotated[0]));
    assert!(old.contains("/before") && !old.contains("/after"), "{old}");
    assert!(!read(&log).contains("/before"));
}

/// Every family the shipped dashboard draws is exported by a fresh
/// gateway, before any request: series whose labels the config names
/// (routes, pools, backends, key routes' refusal reasons and the limits
/// consumers' plans can refuse with) start at zero on commit, and leave
/// with the item that named them.
#[tokio::test]
async fn every_dashboard_metric_exists_before_the_first_request_and_leaves_with_its_item() {
    let backend = Backend::start("b").await;
    let key = keys::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pair = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["gw.test".to_string()])
        .unwrap()
        .self_signed(&pair)
        .unwrap();
    std::fs::write(dir.path().join("gw.crt"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("gw.key"), pair.serialize_pem()).unwrap();
    let pools = format!(
        "[pools.p]\nbackends = [\"{b}\", \"127.0.0.1:1\"]\nfallback = \"q\"\n[pools.p.outlier]\n[pools.p.breaker]\n[pools.p.retry_budget]\n\n[pools.q]\nbackends = [\"{b}\"]\n\n",
        b = backend.addr
    );
    let routes = format!(
        "[cache]\nmax_size = \"1MiB\"\n\n[[routes]]\nid = \"open\"\npath = \"/open\"\npool = \"q\"\nmethods = [\"GET\", \"POST\"]\n[routes.cache]\n\n[[routes]]\nid = \"keyed\"\npath = \"/keyed\"\npool = \"p\"\nauth = \"api_key\"\nrate_limits = [{{ rate = \"10/s\", per = \"consumer\" }}]\n\n[[consumers]]\nid = \"acme\"\nkeys = [{}]\nscopes = [{{ routes = [\"keyed\"] }}]\nrate_limits = [{{ rate = \"100/s\" }}]\nquota = {{ day = 1000 }}\n",
        keys::config_entry(&key.prefix, &key.digest_hex)
    );
    let tls_listener = "[[listeners]]\naddress = \"127.0.0.1:0\"\n[[listeners.tls.certificates]]\ncert = \"gw.crt\"\nkey = \"gw.key\"\n\n";
    let config =
        |pools: &str, routes: &str| format!("{}{tls_listener}{pools}{routes}", base_config());
    let main = dir.path().join("portcullis.toml");
    std::fs::write(&main, config(&pools, &routes)).unwrap();
    let gw = TestGateway::start_file(&main).await;
    let text = gw.metrics_text().await;

    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("conf/grafana/portcullis-dashboard.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut names: Vec<String> = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or("");
            for (i, _) in expr.match_indices("portcullis_") {
                let name: String = expr[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
    }
    assert!(names.len() >= 25, "{names:?}");
    let exported = |text: &str, name: &str| {
        text.lines()
            .any(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
    };
    let missing: Vec<&String> = names.iter().filter(|n| !exported(&text, n)).collect();
    assert!(
        missing.is_empty(),
        "absent before the first request: {missing:?}\n{text}"
    );
    // The zero series name what the config names.
    for line in [
        "portcullis_http_requests_total{code=\"200\",method=\"POST\",route=\"open\"} 0",
        "portcullis_http_request_duration_seconds_count{route=\"keyed\"} 0",
        "portcullis_auth_rejections_total{reason=\"unknown_key\",route=\"keyed\"} 0",
        "portcullis_rate_limited_total{limit=\"daily-quota\",route=\"keyed\"} 0",
        "portcullis_rate_limited_total{limit=\"route-consumer\",route=\"keyed\"} 0",
        "portcullis_rate_limited_total{limit=\"consumer\",route=\"keyed\"} 0",
        "portcullis_upstream_breaker_state{pool=\"p\",state=\"closed\"} 1",
        "portcullis_upstream_fallback_total{fallback=\"q\",pool=\"p\"} 0",
        "portcullis_upstream_ejections_total{backend=\"127.0.0.1:1\",pool=\"p\"} 0",
        "portcullis_upstream_failures_total{backend=\"127.0.0.1:1\",pool=\"p\",reason=\"connect\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    assert!(!text.contains("route=\"open\",limit"), "{text}");
    let (ok, report) = common::promtool(&text);
    assert!(ok, "{report}");

    // The consumer's quota goes: so does the route's quota series, while
    // its other limits stay.
    gw.write_config(&config(
        &pools,
        &routes.replace("quota = { day = 1000 }\n", ""),
    ));
    let (status, answer) = gw.reload().await;
    assert_eq!(status, 200, "{answer}");
    let text = gw.metrics_text().await;
    assert!(!text.contains("limit=\"daily-quota\""), "{text}");
    assert!(
        text.contains("portcullis_rate_limited_total{limit=\"consumer\",route=\"keyed\"} 0"),
        "{text}"
    );

    // The config drops the key route, pool p and a backend of q: their
    // series go; what stays keeps its series.
    let fewer_pools = format!("[pools.q]\nbackends = [\"{}\"]\n\n", backend.addr);
    let fewer_routes = routes[..routes.find("[[routes]]\nid = \"keyed\"").unwrap()].to_string();
    gw.write_config(&config(&fewer_pools, &fewer_routes));
    let (status, answer) = gw.reload().await;
    assert_eq!(status, 200, "{answer}");
    let text = gw.metrics_text().await;
    for gone in ["route=\"keyed\"", "pool=\"p\"", "backend=\"127.0.0.1:1\""] {
        assert!(!text.contains(gone), "{gone} still in\n{text}");
    }
    assert!(
        text.contains(
            "portcullis_http_requests_total{code=\"200\",method=\"GET\",route=\"open\"} 0"
        ),
        "{text}"
    );
    assert!(text.contains("pool=\"q\""), "{text}");
}
