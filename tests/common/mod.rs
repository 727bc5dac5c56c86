//! Shared test helpers: the real gateway binary on `127.0.0.1:0`, real HTTP
//! backends on loopback, and polling with a deadline (never a fixed sleep).

#![allow(dead_code, unused_imports)]

pub mod backend;
pub mod closing;
pub mod flaky;
pub mod rawlog;
pub mod redis;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use backend::Backend;

/// How long any "wait until" may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// The gateway binary built by cargo for these tests.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_portcullis")
}

/// Poll `f` until it returns `Some`, or panic with `what` after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_within(DEADLINE, what, f).await
}

/// [`eventually`] with its own deadline (for outside programs that take
/// long to start, such as Prometheus).
pub async fn eventually_within<T, F, Fut>(deadline: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An HTTP client that never uses a proxy from the environment.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// A running gateway process. Killed on drop.
pub struct TestGateway {
    child: Child,
    pub proxy: SocketAddr,
    /// Every proxy listener as printed: `http://ADDR` or `https://ADDR`.
    pub listeners: Vec<String>,
    pub admin: SocketAddr,
    /// Owns the config's directory when [`TestGateway::start`] made it.
    pub dir: Option<tempfile::TempDir>,
    pub config_path: PathBuf,
    logs: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
}

impl TestGateway {
    /// Start the gateway on `config` (TOML). The config should use
    /// `127.0.0.1:0` for its listener and admin address; see [`base_config`].
    pub async fn start(config: &str) -> TestGateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("portcullis.toml");
        std::fs::write(&config_path, config).expect("write config");
        let mut gw = Self::start_file(&config_path).await;
        gw.dir = Some(dir);
        gw
    }

    /// Start the gateway on an existing config file (relative paths in it,
    /// such as certificates, resolve against its directory).
    pub async fn start_file(config_path: &Path) -> TestGateway {
        Self::start_file_with_env(config_path, &[]).await
    }

    /// [`TestGateway::start_file`] with extra environment variables for the
    /// gateway process.
    pub async fn start_file_with_env(config_path: &Path, env: &[(&str, &str)]) -> TestGateway {
        Self::start_binary(Path::new(bin()), config_path, env).await
    }

    /// [`TestGateway::start_file_with_env`] running the gateway binary at `binary`.
    pub async fn start_binary(
        binary: &Path,
        config_path: &Path,
        env: &[(&str, &str)],
    ) -> TestGateway {
        let config_path = config_path.to_path_buf();
        let mut child = Command::new(binary)
            .args(["run", "-c"])
            .arg(&config_path)
            .envs(env.iter().copied())
            .env("RUST_LOG", std::env::var("GW_LOG").unwrap_or("info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn portcullis");
        let logs = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let out = Arc::new(Mutex::new(String::new()));
        let out_sink = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                {
                    let mut o = out_sink.lock().unwrap();
                    o.push_str(&line);
                    o.push('\n');
                }
                let _ = tx.send(line);
            }
        });
        let (mut proxy, mut admin) = (None, None);
        let mut listeners = Vec::new();
        let start = Instant::now();
        while admin.is_none() || proxy.is_none() {
            let left = DEADLINE.saturating_sub(start.elapsed());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "gateway did not report its listeners; logs:\n{}",
                    logs.lock().unwrap()
                )
            });
            let listener = line
                .strip_prefix("listening proxy http://")
                .or_else(|| line.strip_prefix("listening proxy https://"));
            if let Some(rest) = listener {
                proxy.get_or_insert(rest.parse().expect("proxy addr"));
                listeners.push(line["listening proxy ".len()..].to_string());
            } else if let Some(rest) = line.strip_prefix("listening admin http://") {
                admin = Some(rest.parse().expect("admin addr"));
            }
        }
        let gw = TestGateway {
            child,
            proxy: proxy.expect("proxy"),
            listeners,
            admin: admin.expect("admin"),
            dir: None,
            config_path,
            logs,
            stdout: out,
        };
        let c = client();
        let health = gw.admin_url("/-/health");
        eventually("admin API up", || {
            let c = c.clone();
            let health = health.clone();
            async move {
                c.get(&health)
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status() == 200)
            }
        })
        .await;
        // Every proxy listener, not only the first: Pingora starts them
        // one by one, and a test may use any of them. Each probe is a
        // connection too, counted from the gateway's accept, which can come
        // after the kernel's: held until the gateway counted it (or closed
        // it), then closed, and waited for until the gateway saw it close, so that a
        // test counting connections (max_connections, the gauge) starts
        // from zero. The waits are skipped when /metrics needs a token.
        let metrics = gw.admin_url("/metrics");
        let open_connections = || {
            let metrics = metrics.clone();
            async move {
                let r = client().get(&metrics).send().await.ok()?;
                if r.status() != 200 {
                    return Some(None);
                }
                let text = r.text().await.ok()?;
                let open: f64 = text
                    .lines()
                    .filter(|l| l.starts_with("portcullis_downstream_open_connections{"))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum();
                Some(Some(open))
            }
        };
        for url in &gw.listeners {
            let addr: SocketAddr = url
                .split_once("://")
                .and_then(|(_, a)| a.parse().ok())
                .expect("listener address");
            let probe = eventually("proxy port accepting", || async move {
                tokio::net::TcpStream::connect(addr).await.ok()
            })
            .await;
            eventually("the start-up probe counted", || async {
                // Or closed by the gateway already (a PROXY listener may
                // refuse it): then it was accepted too.
                let mut byte = [0u8; 1];
                let closed = match probe.try_read(&mut byte) {
                    Ok(n) => n == 0,
                    Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                };
                match open_connections().await? {
                    Some(open) => (closed || open >= 1.0).then_some(()),
                    None => Some(()),
                }
            })
            .await;
            drop(probe);
            eventually("the start-up probe closed", || async {
                match open_connections().await? {
                    Some(open) => (open == 0.0).then_some(()),
                    None => Some(()),
                }
            })
            .await;
        }
        gw
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.proxy, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// Everything the gateway wrote to stderr so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Everything the gateway wrote to stdout so far (start-up lines and
    /// the access log).
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Wait until the gateway's stderr contains `needle` (its log is read
    /// by another thread, so a line logged a moment ago may not be here yet).
    pub async fn wait_for_log(&self, needle: &str) {
        let logs = self.logs.clone();
        eventually(&format!("log line containing {needle:?}"), || {
            let found = logs.lock().unwrap().contains(needle);
            async move { found.then_some(()) }
        })
        .await
    }

    /// Replace the config file (the gateway reads it on the next reload).
    pub fn write_config(&self, config: &str) {
        std::fs::write(&self.config_path, config).expect("write config");
    }

    /// `POST /-/reload`: status and JSON body.
    pub async fn reload(&self) -> (u16, serde_json::Value) {
        let r = client()
            .post(self.admin_url("/-/reload"))
            .send()
            .await
            .expect("reload request");
        let status = r.status().as_u16();
        (status, r.json().await.expect("reload json"))
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send SIGHUP to the gateway.
    pub fn sighup(&self) {
        self.signal("HUP");
    }

    /// Send a signal (`"HUP"`, `"TERM"`, `"INT"`) to the gateway.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name}");
    }

    /// The process has not exited yet.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Wait until the gateway process has exited; its exit code.
    pub async fn exited(&mut self) -> Option<i32> {
        let child = &mut self.child;
        eventually("the gateway to exit", || {
            let status = child.try_wait().ok().flatten();
            async move { status }
        })
        .await
        .code()
    }

    /// `GET /-/pools` as JSON.
    pub async fn pools(&self) -> serde_json::Value {
        let (status, pools) = get_json(&self.admin_url("/-/pools")).await;
        assert_eq!(status, 200, "GET /-/pools: {pools}");
        pools
    }

    /// `GET /metrics` as text.
    pub async fn metrics_text(&self) -> String {
        let r = client()
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(r.status(), 200, "GET /metrics");
        r.text().await.expect("metrics text")
    }

    /// Wait until the admin API reports `backend` of `pool` as `healthy`.
    pub async fn wait_backend_health(&self, pool: &str, backend: SocketAddr, healthy: bool) {
        let what = format!("{backend} in {pool} healthy = {healthy}");
        eventually(&what, || async move {
            (self.backend_healthy(pool, backend).await == Some(healthy)).then_some(())
        })
        .await
    }

    /// Whether `backend` of `pool` is healthy according to the admin API.
    pub async fn backend_healthy(&self, pool: &str, backend: SocketAddr) -> Option<bool> {
        let pools = self.pools().await;
        pools["pools"][pool]["backends"]
            .as_array()?
            .iter()
            .find(|b| b["address"] == backend.to_string())
            .and_then(|b| b["healthy"].as_bool())
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `[server]`, `[[listeners]]` and `[admin]` sections for a test
/// gateway. The file watcher is off, so that a test that rewrites the config
/// decides when it is reloaded; see [`server_config`] for watching tests.
pub fn base_config() -> String {
    server_config("watch_config = false")
}

/// `config` (built on [`base_config`]) with the file watcher on.
pub fn watching(config: &str) -> String {
    config.replace("watch_config = false", "watch_config = true")
}

/// [`base_config`] with `server_lines` as the `[server]` table.
pub fn server_config(server_lines: &str) -> String {
    format!(
        "[server]\n{server_lines}\n\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\n[admin]\naddress = \"127.0.0.1:0\"\n\n"
    )
}

/// A `[pools.NAME]` section with the given backends and extra lines.
pub fn pool(name: &str, backends: &[SocketAddr], extra: &str) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("{{ address = \"{b}\" }}"))
        .collect();
    format!(
        "[pools.{name}]\nbackends = [{}]\n{extra}\n\n",
        list.join(", ")
    )
}

/// A whole test config: [`base_config`], one pool `pool` with `backends`
/// and the extra lines `pool_extra` (e.g. `balance = ...` or sub-tables),
/// and one route `r` on `/` to it, followed by `route_extra` lines.
pub fn single_route(
    pool_name: &str,
    backends: &[SocketAddr],
    pool_extra: &str,
    route_extra: &str,
) -> String {
    format!(
        "{}{}[[routes]]\nid = \"r\"\npath = \"/\"\npool = \"{pool_name}\"\n{route_extra}",
        base_config(),
        pool(pool_name, backends, pool_extra)
    )
}

/// `method path` to the gateway with `headers`: the status, the headers and
/// the JSON body (`Null` when not JSON).
pub async fn request(
    gw: &TestGateway,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let method: reqwest::Method = method.parse().expect("a method");
    let mut req = client().request(method, gw.url(path));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let h = r.headers().clone();
    (status, h, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// `GET url` through a fresh client; the status and the JSON body (`Null` when not JSON).
pub async fn get_json(url: &str) -> (u16, serde_json::Value) {
    let r = client().get(url).send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// Run `portcullis` with `args`; (exit code, stdout, stderr).
pub fn run_cli(args: &[&str], cwd: Option<&Path>) -> (i32, String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args);
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let out = cmd.output().expect("run portcullis");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `promtool check metrics` on `text`: (passed, its output).
pub fn promtool(text: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect(
            "promtool is needed for this test: `make test` installs it (Debian package prometheus)",
        );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Wait until a scrape of `gw` has a line equal to every one of `lines`;
/// that scrape.
pub async fn scrape_until(gw: &TestGateway, lines: &[impl AsRef<str>]) -> String {
    let want: Vec<&str> = lines.iter().map(AsRef::as_ref).collect();
    let want = &want;
    eventually(&format!("{want:?} in /metrics"), || async move {
        let text = gw.metrics_text().await;
        want.iter()
            .all(|w| text.lines().any(|l| l == *w))
            .then_some(text)
    })
    .await
}

/// The value of the unlabelled sample `name` in a scrape.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Send `bytes` over a new TCP connection and read the answer until the
/// gateway closes it (or 10 s pass); (status, head lower-cased, body).
pub async fn raw_http1(addr: SocketAddr, bytes: &[u8]) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("send");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// Read one response with `Content-Length` off a kept-alive connection
/// (plain or TLS): the head and body as text, within 10 s.
pub async fn read_response<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= len {
                return text;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(n > 0, "connection closed mid-response: {text}");
        out.extend_from_slice(&buf[..n]);
    }
}

/// `answer` (from [`raw_http1`]) is a problem+json with `status` whose
/// detail contains `detail`.
pub fn assert_problem(answer: &(u16, String, String), status: u16, detail: &str) {
    let (got, head, body) = answer;
    assert_eq!(*got, status, "{head}\n{body}");
    assert!(
        head.contains("content-type: application/problem+json"),
        "{head}"
    );
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["status"], status);
    assert!(
        v["detail"].as_str().unwrap_or_default().contains(detail),
        "{v}"
    );
}
