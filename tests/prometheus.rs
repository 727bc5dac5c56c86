//! The Prometheus files shipped in `conf/` (scrape config, alerting rules
//! and their unit tests) and the Grafana dashboard, checked with the real
//! `promtool` and a real Prometheus server scraping a real gateway.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{base_config, client, eventually_within, pool, Backend, TestGateway};
use portcullis::keys;
use serde_json::Value;

fn conf(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("conf")
        .join(path)
}

fn promtool(args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool is needed: `make test` installs it (Debian package prometheus)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn shipped_scrape_config_and_alert_rules_pass_promtool_and_their_unit_tests() {
    let dir = conf("prometheus");
    for args in [
        &["check", "config", "prometheus.yml"][..],
        &["check", "rules", "portcullis.rules.yml"],
        &["test", "rules", "portcullis.rules.test.yml"],
    ] {
        let (ok, out) = promtool(args, &dir);
        assert!(ok, "promtool {args:?}:\n{out}");
    }
}

/// Every PromQL expression of the dashboard, with Grafana's variables
/// replaced by values Prometheus accepts.
fn dashboard_queries() -> Vec<String> {
    let text = std::fs::read_to_string(conf("grafana/portcullis-dashboard.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            out.push(
                expr.replace("$__rate_interval", "1m")
                    .replace("$route", ".*"),
            );
        }
    }
    assert!(out.len() >= 15, "{out:?}");
    out
}

/// Every alerting rule expression shipped.
fn rule_queries() -> Vec<String> {
    let text = std::fs::read_to_string(conf("prometheus/portcullis.rules.yml")).unwrap();
    // The expressions are the `expr:` values (single-line or `|` blocks).
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if rest != "|" {
            out.push(rest.to_string());
            continue;
        }
        let mut block = String::new();
        while let Some(next) = lines.peek() {
            if next.trim_start().starts_with("for:") {
                break;
            }
            block.push_str(next.trim());
            block.push(' ');
            lines.next();
        }
        out.push(block);
    }
    assert_eq!(out.len(), 8, "{out:?}");
    out
}

/// The `portcullis_*` metric names an expression reads, with histogram
/// sample suffixes taken off.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("portcullis_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let family = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        names.insert(family.to_string());
        rest = &tail[end..];
    }
    names
}

/// The metric families in a scrape (`# TYPE` lines).
fn families(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect()
}

/// A Prometheus server on a free loopback port, killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Start Prometheus on the shipped scrape config and rules, scraping
    /// `target` every second.
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let shipped = std::fs::read_to_string(conf("prometheus/prometheus.yml")).unwrap();
        assert!(shipped.contains("\"127.0.0.1:9180\""), "{shipped}");
        let config = shipped
            .replace("\"127.0.0.1:9180\"", &format!("\"{target}\""))
            .replace("scrape_interval: 15s", "scrape_interval: 1s")
            .replace("evaluation_interval: 15s", "evaluation_interval: 1s");
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        std::fs::copy(
            conf("prometheus/portcullis.rules.yml"),
            dir.path().join("portcullis.rules.yml"),
        )
        .unwrap();
        // A free port: bound, read, released for Prometheus to bind.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("prometheus")
            .current_dir(dir.path())
            .args([
                "--config.file=prometheus.yml".to_string(),
                format!("--storage.tsdb.path={}", dir.path().join("data").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--log.level=warn".to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is needed: `make test` installs it (Debian package prometheus)");
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// `GET /api/v1/query`: the JSON answer, or `None` while not up.
    async fn query(&self, promql: &str) -> Option<Value> {
        let r = client()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", promql)])
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }
}

/// A gateway exercising every metric family the dashboard and the alerts
/// read: a TLS listener (certificate expiry), a key-protected,
/// rate-limited route (auth and rate-limit refusals), a caching route
/// (cache results and size), a pool with one live and one dead backend
/// (upstream failures, retries, an ejection), and a pool of one dead
/// backend whose breaker opens and hands over to the first (breaker
/// state, refusals, fallback).
async fn busy_gateway(backend: &Backend, dir: &Path) -> (TestGateway, keys::NewKey) {
    let key = keys::generate().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["api.example.com".to_string()]).unwrap();
    std::fs::write(dir.join("c.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("c.key"), cert.signing_key.serialize_pem()).unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = format!(
        r#"{}[[listeners]]
address = "127.0.0.1:0"
[[listeners.tls.certificates]]
cert = "c.pem"
key = "c.key"

{}
[[routes]]
id = "keyed"
path = "/keyed"
pool = "p"
auth = "api_key"
rate_limits = [{{ rate = "2/m", per = "consumer" }}]

[[routes]]
id = "cached"
path = "/cached"
pool = "p"

[routes.cache]
ttl = "1m"

[[routes]]
id = "open"
path = "/"
pool = "p"

[[routes]]
id = "fb"
path = "/fb"
pool = "q"

[pools.q]
backends = ["{dead}"]
retries = 0
fallback = "p"
[pools.q.breaker]
consecutive_failures = 1

[[consumers]]
id = "acme"
keys = [{}]
scopes = [{{ routes = ["keyed"] }}]
"#,
        base_config(),
        pool(
            "p",
            &[backend.addr, dead],
            "balance = \"round_robin\"\nretries = 1\n[pools.p.outlier]\nconsecutive_failures = 1\n[pools.p.breaker]"
        ),
        keys::config_entry(&key.prefix, &key.digest_hex)
    );
    let main = dir.join("portcullis.toml");
    std::fs::write(&main, config).unwrap();
    (TestGateway::start_file(&main).await, key)
}

#[tokio::test]
async fn real_prometheus_scrapes_the_gateway_and_every_shipped_query_works() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let (gw, key) = busy_gateway(&backend, dir.path()).await;
    let c = client();
    let traffic = || async {
        for _ in 0..5 {
            c.get(gw.url("/open")).send().await.unwrap();
        }
        c.post(gw.url("/open")).body("hello").send().await.unwrap();
        for _ in 0..2 {
            c.get(gw.url("/cached")).send().await.unwrap();
        }
        c.get(gw.url("/keyed")).send().await.unwrap();
        for _ in 0..2 {
            c.get(gw.url("/fb")).send().await.unwrap();
        }
        for _ in 0..3 {
            c.get(gw.url("/keyed"))
                .header("x-api-key", &key.key)
                .send()
                .await
                .unwrap();
        }
    };
    traffic().await;

    // Every metric the dashboard and the rules read is one the gateway
    // exports (requests are counted just after their response: poll).
    let dashboard = dashboard_queries();
    let rules = rule_queries();
    let used: BTreeSet<String> = dashboard
        .iter()
        .chain(&rules)
        .flat_map(|e| metric_names(e))
        .collect();
    let what = format!("every metric the queries use ({used:?}) exported");
    let exported = common::eventually(&what, || async {
        let exported = families(&gw.metrics_text().await);
        used.is_subset(&exported).then_some(exported)
    })
    .await;
    assert!(used.len() >= 15, "{used:?}");
    assert!(exported.contains("portcullis_http_request_bytes_total"));

    let prom = Prometheus::start(&gw.admin.to_string());
    let rate = "sum(rate(portcullis_http_requests_total[10s]))";
    let up_for = Duration::from_secs(90);
    eventually_within(up_for, &format!("{rate} > 0 in Prometheus"), || async {
        // Keep traffic flowing while Prometheus scrapes.
        c.get(gw.url("/open")).send().await.ok()?;
        let answer = prom.query(rate).await?;
        let value: f64 = answer["data"]["result"][0]["value"][1]
            .as_str()?
            .parse()
            .ok()?;
        (value > 0.0).then_some(())
    })
    .await;
    traffic().await;

    // Every shipped expression is valid PromQL on a real server.
    for expr in dashboard.iter().chain(&rules) {
        let answer = prom.query(expr).await.expect("Prometheus answers");
        assert_eq!(answer["status"], "success", "{expr}: {answer}");
    }
    // The rules file loads and every rule evaluates cleanly.
    eventually_within(up_for, "every rule evaluated with health ok", || async {
        let r = client()
            .get(format!("{}/api/v1/rules", prom.url))
            .send()
            .await
            .ok()?;
        let rules: Value = r.json().await.ok()?;
        let all: Vec<&Value> = rules["data"]["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        (all.len() == 8 && all.iter().all(|r| r["health"] == "ok")).then_some(())
    })
    .await;
}
