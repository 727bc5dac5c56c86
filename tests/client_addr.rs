//! The client's address behind balancers: `[server.trusted_proxies]`
//! (X-Forwarded-For and RFC 7239 Forwarded) and a listener's
//! `proxy_protocol`, against a real HAProxy sending PROXY v2 in front of a
//! plain and a TLS listener, and against spoofed headers from peers that
//! are not trusted. Clients take distinct loopback source addresses
//! (127.0.0.0/8 is all local on Linux).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{backend::Backend, eventually, sample, TestGateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// `GET url` from the source address `from` with `headers`: the status
/// and the JSON body.
async fn get_from(from: &str, url: &str, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .local_address(ip(from))
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut req = client.get(url);
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// The access-log line of the request for `path`.
async fn log_line(gw: &TestGateway, path: &str) -> serde_json::Value {
    let needle = format!("\"path\":\"{path}\"");
    let line = eventually(&format!("the access log line of {path}"), || async {
        gw.stdout()
            .lines()
            .find(|l| l.contains(&needle))
            .map(str::to_string)
    })
    .await;
    serde_json::from_str(&line).unwrap()
}

fn config(backend: SocketAddr, server: &str, listeners: &str) -> String {
    format!(
        r#"[server]
watch_config = false
{server}

{listeners}

[admin]
address = "127.0.0.1:0"

[pools.p]
backends = [{{ address = "{backend}" }}]

[[routes]]
id = "r"
path = "/"
pool = "p"
rate_limits = [{{ per = "client_ip", rate = "2/m" }}]
"#
    )
}

const PLAIN: &str = "[[listeners]]\naddress = \"127.0.0.1:0\"";

#[tokio::test]
async fn forwarding_headers_are_believed_from_trusted_proxies_only() {
    let backend = Backend::start("b").await;
    let server = "[server.trusted_proxies]\ncidrs = [\"127.0.0.2/32\", \"10.0.0.0/8\"]";
    let gw = TestGateway::start(&config(backend.addr, server, PLAIN)).await;
    let url = |p: &str| gw.url(p);

    // An untrusted peer's X-Forwarded-For is neither believed nor passed on.
    // Nor are its X-Forwarded-Proto, -Host and -Port.
    let (status, echo) = get_from(
        "127.0.0.1",
        &url("/u1"),
        &[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-port", "443"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(echo["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(echo["headers"]["x-forwarded-proto"], "http");
    assert_ne!(echo["headers"]["x-forwarded-host"], "evil.example");
    assert!(echo["headers"].get("x-forwarded-port").is_none(), "{echo}");
    let line = log_line(&gw, "/u1").await;
    assert_eq!(
        (line["client"].as_str(), line["peer"].as_str()),
        (Some("127.0.0.1"), Some("127.0.0.1"))
    );
    // A spoofer rotating the header still has one bucket: 2/m, then 429.
    let (status, _) = get_from(
        "127.0.0.1",
        &url("/u2"),
        &[("x-forwarded-for", "198.51.100.1")],
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = get_from(
        "127.0.0.1",
        &url("/u3"),
        &[("x-forwarded-for", "198.51.100.2")],
    )
    .await;
    assert_eq!(
        status, 429,
        "spoofed X-Forwarded-For escaped the per-IP limit"
    );
    // Forwarded from anyone untrusted is removed (the gateway owns it).
    let (_, echo) = get_from("127.0.0.3", &url("/u4"), &[("forwarded", "for=10.1.1.1")]).await;
    assert!(echo["headers"].get("forwarded").is_none(), "{echo}");

    // A trusted proxy: the right-most address it did not itself trust is
    // the client; what the client wrote left of it is kept but not believed.
    // Its X-Forwarded-Proto, -Host and -Port (it terminated the client's
    // TLS) are passed on.
    let xff = "6.6.6.6, 203.0.113.9, 10.1.2.3";
    let (status, echo) = get_from(
        "127.0.0.2",
        &url("/t1"),
        &[
            ("x-forwarded-for", xff),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "shop.example"),
            ("x-forwarded-port", "443"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        echo["headers"]["x-forwarded-for"],
        format!("{xff}, 127.0.0.2")
    );
    assert_eq!(echo["headers"]["x-forwarded-proto"], "https");
    assert_eq!(echo["headers"]["x-forwarded-host"], "shop.example");
    assert_eq!(echo["headers"]["x-forwarded-port"], "443");
    let line = log_line(&gw, "/t1").await;
    assert_eq!(
        (line["client"].as_str(), line["peer"].as_str()),
        (Some("203.0.113.9"), Some("127.0.0.2"))
    );
    // Clients behind one proxy have their own buckets, by their address.
    for (i, client) in ["192.0.2.1", "192.0.2.2"].iter().enumerate() {
        for n in 0..2 {
            let (status, _) = get_from(
                "127.0.0.2",
                &url(&format!("/c{i}{n}")),
                &[("x-forwarded-for", client)],
            )
            .await;
            assert_eq!(status, 200, "{client} request {n}");
        }
    }
    let (status, _) = get_from(
        "127.0.0.2",
        &url("/c02"),
        &[("x-forwarded-for", "192.0.2.1")],
    )
    .await;
    assert_eq!(status, 429);
    // No header from a trusted proxy: the proxy is the client. A
    // malformed X-Forwarded-Proto from it gives way to the gateway's.
    let (_, echo) = get_from(
        "127.0.0.2",
        &url("/t2"),
        &[("x-forwarded-proto", "javascript")],
    )
    .await;
    assert_eq!(log_line(&gw, "/t2").await["client"], "127.0.0.2");
    assert_eq!(echo["headers"]["x-forwarded-proto"], "http");

    // RFC 7239 instead, live on reload.
    let forwarded = server.replace("cidrs", "header = \"forwarded\"\ncidrs");
    gw.write_config(&config(backend.addr, &forwarded, PLAIN));
    assert_eq!(gw.reload().await.0, 200);
    let (_, echo) = get_from(
        "127.0.0.2",
        &url("/f1"),
        &[
            (
                "forwarded",
                r#"for=6.6.6.6, for="[2001:db8::5]:4711";proto=https"#,
            ),
            ("x-forwarded-for", "7.7.7.7"),
        ],
    )
    .await;
    assert_eq!(log_line(&gw, "/f1").await["client"], "2001:db8::5");
    assert_eq!(
        echo["headers"]["forwarded"],
        r#"for=6.6.6.6, for="[2001:db8::5]:4711";proto=https, for=127.0.0.2;proto=http"#
    );
    // From an untrusted peer: replaced by the gateway's own element.
    let (_, echo) = get_from("127.0.0.4", &url("/f2"), &[("forwarded", "for=10.9.9.9")]).await;
    assert_eq!(echo["headers"]["forwarded"], "for=127.0.0.4;proto=http");
    assert_eq!(log_line(&gw, "/f2").await["client"], "127.0.0.4");
}

/// HAProxy in TCP mode sending PROXY v2 to each of `targets`; its
/// frontends' addresses in the same order.
struct Haproxy {
    child: Child,
    fronts: Vec<SocketAddr>,
    _dir: tempfile::TempDir,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn haproxy_bin() -> &'static str {
    if std::path::Path::new("/usr/sbin/haproxy").exists() {
        "/usr/sbin/haproxy"
    } else {
        "haproxy"
    }
}

impl Haproxy {
    async fn start(targets: &[SocketAddr]) -> Haproxy {
        let dir = tempfile::tempdir().unwrap();
        // Free ports a moment ago; a clash shows as HAProxy failing to bind,
        // and the test tries other ports.
        for _ in 0..5 {
            let fronts: Vec<SocketAddr> = targets
                .iter()
                .map(|_| {
                    std::net::TcpListener::bind("127.0.0.1:0")
                        .unwrap()
                        .local_addr()
                        .unwrap()
                })
                .collect();
            let mut cfg = String::from(
                "global\n  maxconn 100\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n",
            );
            for (i, (front, target)) in fronts.iter().zip(targets).enumerate() {
                cfg.push_str(&format!(
                    "frontend f{i}\n  bind {front}\n  default_backend b{i}\nbackend b{i}\n  server s {target} send-proxy-v2\n"
                ));
            }
            let path = dir.path().join("haproxy.cfg");
            std::fs::write(&path, cfg).unwrap();
            let mut child = Command::new(haproxy_bin())
                .arg("-db")
                .arg("-f")
                .arg(&path)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("haproxy (scripts/install-deps.sh --test installs it)");
            // Up once a request passes through the first frontend (a bare
            // connect would make HAProxy open and drop a connection to the
            // gateway, counted as a refusal).
            let probe = format!("http://{}/probe", fronts[0]);
            let up = eventually("haproxy passes a request or exits", || {
                let exited = child.try_wait().ok().flatten().is_some();
                let probe = probe.clone();
                async move {
                    if exited {
                        return Some(false);
                    }
                    let client = reqwest::Client::builder()
                        .no_proxy()
                        .local_address(ip("127.0.0.9"))
                        .build()
                        .ok()?;
                    let r = client.get(&probe).send().await.ok()?;
                    (r.status() == 200).then_some(true)
                }
            })
            .await;
            if up {
                return Haproxy {
                    child,
                    fronts,
                    _dir: dir,
                };
            }
        }
        panic!("haproxy did not start");
    }
}

/// A TLS listener's config lines, with a certificate made now in `dir`.
fn tls_listener(dir: &std::path::Path, extra: &str) -> String {
    let cert = rcgen::generate_simple_self_signed(vec!["gw.test".to_string()]).unwrap();
    std::fs::write(dir.join("c.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("c.key"), cert.signing_key.serialize_pem()).unwrap();
    format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n{extra}\n[[listeners.tls.certificates]]\ncert = \"{}\"\nkey = \"{}\"\ndefault = true\n",
        dir.join("c.pem").display(),
        dir.join("c.key").display()
    )
}

fn listener_addr(gw: &TestGateway, scheme: &str) -> SocketAddr {
    gw.listeners
        .iter()
        .find_map(|l| l.strip_prefix(&format!("{scheme}://")))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no {scheme} listener in {:?}", gw.listeners))
}

#[tokio::test]
async fn haproxy_sends_proxy_v2_before_plain_http_and_before_tls() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let listeners = format!(
        "{PLAIN}\nproxy_protocol = \"v2\"\n\n{}\n[[listeners]]\naddress = \"127.0.0.1:0\"\nproxy_protocol = \"v1\"\n",
        tls_listener(dir.path(), "proxy_protocol = \"v2\"")
    );
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, config(backend.addr, "", &listeners)).unwrap();
    let gw = TestGateway::start_file(&path).await;
    assert_eq!(gw.listeners.len(), 3, "{:?}", gw.listeners);
    let plain = gw.listeners[0]
        .strip_prefix("http://")
        .unwrap()
        .parse()
        .unwrap();
    let tls = listener_addr(&gw, "https");
    let v1: SocketAddr = gw.listeners[2]
        .strip_prefix("http://")
        .unwrap()
        .parse()
        .unwrap();
    let lb = Haproxy::start(&[plain, tls]).await;

    // Through HAProxy, from two client addresses: each is the client, in
    // the log, in X-Forwarded-For and in its own rate-limit bucket.
    let front = |i: usize, scheme: &str, p: &str| format!("{scheme}://{}{p}", lb.fronts[i]);
    let (status, echo) = get_from(
        "127.0.0.7",
        &front(0, "http", "/h1"),
        &[("x-forwarded-for", "6.6.6.6")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(echo["headers"]["x-forwarded-for"], "127.0.0.7");
    assert_eq!(log_line(&gw, "/h1").await["client"], "127.0.0.7");
    let (status, echo) = get_from("127.0.0.8", &front(1, "https", "/h2"), &[]).await;
    assert_eq!(status, 200, "TLS after the PROXY header");
    assert_eq!(echo["headers"]["x-forwarded-for"], "127.0.0.8");
    let line = log_line(&gw, "/h2").await;
    assert_eq!(line["client"], "127.0.0.8");
    assert_eq!(line["tls_version"], "TLSv1.3", "{line}");
    assert_eq!(
        get_from("127.0.0.7", &front(0, "http", "/h3"), &[]).await.0,
        200
    );
    assert_eq!(
        get_from("127.0.0.7", &front(1, "https", "/h4"), &[])
            .await
            .0,
        429
    );
    assert_eq!(
        get_from("127.0.0.8", &front(0, "http", "/h5"), &[]).await.0,
        200
    );

    // A v1 header written by hand, and what follows it is the request.
    let mut s = tokio::net::TcpStream::connect(v1).await.unwrap();
    s.write_all(b"PROXY TCP6 2001:db8::9 ::1 4711 80\r\nGET /v1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = common::read_response(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(log_line(&gw, "/v1").await["client"], "2001:db8::9");

    // Straight to a PROXY listener without the header, or with the other
    // version: closed without an answer, and counted. (The test helper's
    // start-up probes were counted already: it waits for them to close.)
    let refused = r#"portcullis_downstream_refused_total{reason="proxy_protocol"}"#;
    let before = sample(&gw.metrics_text().await, refused).unwrap();
    for (addr, bytes) in [
        (plain, &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..]),
        (
            plain,
            &b"PROXY TCP4 1.2.3.4 127.0.0.1 1 2\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        ),
        (v1, &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..]),
    ] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(bytes).await.unwrap();
        let mut buf = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
        assert!(
            matches!(n, Ok(Ok(0)) | Ok(Err(_))),
            "{addr}: {:?}",
            String::from_utf8_lossy(&buf)
        );
    }
    let text = common::scrape_until(&gw, &[format!("{refused} {}", before + 3.0)]).await;
    assert_eq!(sample(&text, refused), Some(before + 3.0));
}

#[tokio::test]
async fn with_trusted_proxies_only_they_may_send_a_proxy_header() {
    let backend = Backend::start("b").await;
    let server = "[server.trusted_proxies]\ncidrs = [\"127.0.0.5\"]";
    let listeners = format!("{PLAIN}\nproxy_protocol = \"v1\"");
    let gw = TestGateway::start(&config(backend.addr, server, &listeners)).await;
    let bytes = b"PROXY TCP4 198.51.100.3 127.0.0.1 1 2\r\nGET /p HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let connect_from = |from: &str| {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(ip(from), 0)).unwrap();
        socket.connect(gw.proxy)
    };
    let mut s = connect_from("127.0.0.6").await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(
        buf.is_empty(),
        "an untrusted peer's PROXY header was served: {:?}",
        String::from_utf8_lossy(&buf)
    );

    let mut s = connect_from("127.0.0.5").await.unwrap();
    s.write_all(bytes).await.unwrap();
    let answer = common::read_response(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let line = log_line(&gw, "/p").await;
    assert_eq!(
        (line["client"].as_str(), line["peer"].as_str()),
        (Some("198.51.100.3"), Some("198.51.100.3"))
    );
}

/// `[routes.ip]`: deny wins, an allow list admits only its addresses,
/// IPv4 and IPv6, decided on the client address the trusted-proxy rules
/// give, before authentication, with a 403 problem the backend never sees.
#[tokio::test]
async fn route_ip_rules_allow_and_deny_by_client_address() {
    let backend = Backend::start("b").await;
    let config = format!(
        r#"[server]
watch_config = false
[server.trusted_proxies]
cidrs = ["127.0.0.2"]

{PLAIN}
[[listeners]]
address = "[::1]:0"

[admin]
address = "127.0.0.1:0"

[pools.p]
backends = [{{ address = "{}" }}]

[[routes]]
id = "a"
path = "/a"
pool = "p"
auth = "api_key"
[routes.ip]
allow = ["127.0.0.0/24", "::1"]
deny = ["127.0.0.3"]

[[routes]]
id = "d"
path = "/d"
pool = "p"
[routes.ip]
deny = ["::1/128", "198.51.100.0/24"]
"#,
        backend.addr
    );
    let gw = TestGateway::start(&config).await;
    let v6 = listener_addr_v6(&gw);
    let url = |p: &str| gw.url(p);
    // Allowed: on to authentication (401 without a key).
    assert_eq!(get_from("127.0.0.1", &url("/a/1"), &[]).await.0, 401);
    assert_eq!(get_from("127.0.0.9", &url("/a/2"), &[]).await.0, 401);
    assert_eq!(
        get_from("::1", &format!("http://{v6}/a/3"), &[]).await.0,
        401
    );
    // Denied, and deny wins over allow.
    for (from, path) in [("127.0.0.3", "/a/4"), ("127.0.1.1", "/a/5")] {
        let r = reqwest::Client::builder()
            .no_proxy()
            .local_address(ip(from))
            .build()
            .unwrap()
            .get(url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{from}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(
            body["detail"],
            "Requests from this address are not allowed here."
        );
        assert_eq!(log_line(&gw, path).await["auth_failure"], "ip_denied");
    }
    assert_eq!(
        get_from("::1", &format!("http://{v6}/d/1"), &[]).await.0,
        403
    );
    assert_eq!(get_from("127.0.0.1", &url("/d/2"), &[]).await.0, 200);
    // Behind a trusted proxy the forwarded client is judged; a denied
    // peer's own header changes nothing.
    let xff = |v: &'static str| [("x-forwarded-for", v)];
    assert_eq!(
        get_from("127.0.0.2", &url("/d/3"), &xff("198.51.100.7"))
            .await
            .0,
        403
    );
    assert_eq!(
        get_from("127.0.0.2", &url("/d/4"), &xff("203.0.113.1"))
            .await
            .0,
        200
    );
    assert_eq!(
        get_from("127.0.0.3", &url("/a/6"), &xff("127.0.0.1"))
            .await
            .0,
        403
    );
    assert_eq!(backend.hits(), 2, "a refused request reached the backend");
    let text = gw.metrics_text().await;
    let denied = r#"portcullis_auth_rejections_total{reason="ip_denied",route="a"}"#;
    assert_eq!(sample(&text, denied), Some(3.0), "{text}");
}

fn listener_addr_v6(gw: &TestGateway) -> SocketAddr {
    gw.listeners
        .iter()
        .filter_map(|l| l.strip_prefix("http://"))
        .filter_map(|a| a.parse::<SocketAddr>().ok())
        .find(|a| a.is_ipv6())
        .unwrap_or_else(|| panic!("no IPv6 listener in {:?}", gw.listeners))
}

/// `[listeners.ip]`: a refused peer's connection is closed at accept,
/// before TLS on a TLS listener, and counted; the rules are live on reload.
#[tokio::test]
async fn listener_ip_rules_close_refused_peers_before_tls() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let listeners = |deny: &str| {
        format!(
            "{PLAIN}\n[listeners.ip]\ndeny = [\"{deny}\"]\n\n{}\n[listeners.ip]\nallow = [\"127.0.0.1\"]\n",
            tls_listener(dir.path(), "")
        )
    };
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, config(backend.addr, "", &listeners("127.0.0.4"))).unwrap();
    let gw = TestGateway::start_file(&path).await;
    let plain = gw.listeners[0].strip_prefix("http://").unwrap().to_string();
    let tls = listener_addr(&gw, "https");
    let refused = r#"portcullis_downstream_refused_total{reason="ip_denied"}"#;
    let before = sample(&gw.metrics_text().await, refused).unwrap();

    assert_eq!(
        get_from("127.0.0.5", &format!("http://{plain}/x"), &[])
            .await
            .0,
        200
    );
    assert_eq!(
        get_from("127.0.0.1", &format!("https://{tls}/x"), &[])
            .await
            .0,
        200
    );
    // Refused: the plain listener sends nothing back; on the TLS one not
    // even a ServerHello.
    for (from, addr) in [("127.0.0.4", plain.parse().unwrap()), ("127.0.0.5", tls)] {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(ip(from), 0)).unwrap();
        let mut s = socket.connect(addr).await.unwrap();
        let hello: &[u8] = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n\x16\x03\x01\x00\x05hello";
        let _ = s.write_all(hello).await;
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
        assert!(
            buf.is_empty(),
            "{from} → {addr}: {:?}",
            String::from_utf8_lossy(&buf)
        );
    }
    let text = common::scrape_until(&gw, &[format!("{refused} {}", before + 2.0)]).await;
    assert_eq!(sample(&text, refused), Some(before + 2.0));

    // Live: the deny list moves on a reload.
    std::fs::write(&path, config(backend.addr, "", &listeners("127.0.0.6"))).unwrap();
    assert_eq!(gw.reload().await.0, 200);
    assert_eq!(
        get_from("127.0.0.4", &format!("http://{plain}/y"), &[])
            .await
            .0,
        200
    );
}
