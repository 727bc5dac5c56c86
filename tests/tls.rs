//! TLS termination with certificates generated at test time (rcgen):
//! SNI selection, default certificate, ALPN h2, protocol versions, and
//! certificate rotation by reload while a connection stays open.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{single_route, Backend, TestGateway};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

/// A test CA that signs leaf certificates into PEM files.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "portcullis test CA");
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Write `NAME.crt` / `NAME.key` for `sans` into `dir`; the leaf's DER.
    fn leaf(&self, dir: &Path, name: &str, sans: &[&str]) -> Vec<u8> {
        self.leaf_until(dir, name, sans, None)
    }

    /// Like [`Ca::leaf`], valid until `not_after` when given.
    fn leaf_until(
        &self,
        dir: &Path,
        name: &str,
        sans: &[&str],
        not_after: Option<time::OffsetDateTime>,
    ) -> Vec<u8> {
        self.leaf_with_key(dir, name, sans, not_after, KeyPair::generate().unwrap())
    }

    /// A leaf for `key` (any algorithm rcgen can sign with).
    fn leaf_with_key(
        &self,
        dir: &Path,
        name: &str,
        sans: &[&str],
        not_after: Option<time::OffsetDateTime>,
        key: KeyPair,
    ) -> Vec<u8> {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        // A subject distinct from the CA's, or OpenSSL takes it for self-signed.
        params.distinguished_name.push(DnType::CommonName, sans[0]);
        if let Some(t) = not_after {
            params.not_after = t;
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        cert.der().to_vec()
    }

    /// A client certificate (CN = `cn`) signed by this CA: (chain, key).
    fn client_cert(
        &self,
        cn: &str,
    ) -> (
        Vec<CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        (vec![cert.der().clone()], der)
    }

    fn client_with_cert(&self, cn: &str) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.pem.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (chain, key) = self.client_cert(cn);
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsConnector::from(Arc::new(config))
    }

    fn client(&self, alpn: &[&[u8]]) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        let der = CertificateDer::from_pem_slice(self.pem.as_bytes()).unwrap();
        roots.add(der).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        // Full handshakes only: a resumed session carries no certificate.
        config.resumption = rustls::client::Resumption::disabled();
        TlsConnector::from(Arc::new(config))
    }
}

use rustls::pki_types::pem::PemObject;

/// A config whose only listener is TLS with the given certificate entries.
fn tls_config(backend: &Backend, certs: &str) -> String {
    single_route("p", &[backend.addr], "", "").replacen(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n",
        &format!("[[listeners]]\naddress = \"127.0.0.1:0\"\n{certs}"),
        1,
    )
}

fn cert_entry(name: &str, extra: &str) -> String {
    format!(
        "[[listeners.tls.certificates]]\ncert = \"{name}.crt\"\nkey = \"{name}.key\"\n{extra}\n"
    )
}

/// Start a gateway whose config (and certificates) live in one temp dir.
async fn start(dir: &tempfile::TempDir, config: &str) -> TestGateway {
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, config).unwrap();
    TestGateway::start_file(&path).await
}

/// A backend behind TLS: another gateway terminating TLS for
/// `backend.test` (a leaf of `ca`) in front of `backend`.
struct TlsBackend {
    backend: Backend,
    ca: Ca,
    back: TestGateway,
    _dir: tempfile::TempDir,
}

impl TlsBackend {
    async fn start() -> TlsBackend {
        let backend = Backend::start("b").await;
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new();
        ca.leaf(dir.path(), "backend", &["backend.test"]);
        let back = start(&dir, &tls_config(&backend, &cert_entry("backend", ""))).await;
        TlsBackend {
            backend,
            ca,
            back,
            _dir: dir,
        }
    }
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn handshake(gw: &TestGateway, connector: &TlsConnector, sni: &str) -> std::io::Result<Tls> {
    let tcp = tokio::net::TcpStream::connect(gw.proxy).await?;
    let name = ServerName::try_from(sni.to_string()).unwrap();
    connector.connect(name, tcp).await
}

fn peer_cert(conn: &Tls) -> Vec<u8> {
    conn.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// One HTTP/1.1 request on an open connection; the status line and body.
async fn request(conn: &mut Tls, host: &str) -> String {
    let req = format!("GET /hello HTTP/1.1\r\nHost: {host}\r\n\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    common::read_response(conn).await
}

#[tokio::test]
async fn sni_picks_the_certificate_and_serves_https() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let a = ca.leaf(dir.path(), "a", &["a.test"]);
    let w = ca.leaf(dir.path(), "w", &["*.w.test"]);
    let d = ca.leaf(dir.path(), "d", &["default.test"]);
    let certs = format!(
        "{}{}{}",
        cert_entry("a", ""),
        cert_entry("w", ""),
        cert_entry("d", "default = true")
    );
    let gw = start(&dir, &tls_config(&backend, &certs)).await;
    let client = ca.client(&[b"http/1.1"]);

    assert_eq!(
        peer_cert(&handshake(&gw, &client, "a.test").await.unwrap()),
        a
    );
    assert_eq!(
        peer_cert(&handshake(&gw, &client, "x.w.test").await.unwrap()),
        w
    );
    // No match: the default certificate (which the client then rejects as
    // not valid for the name, so look at what the server sent).
    let err = handshake(&gw, &client, "unknown.test").await.unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    assert_eq!(
        peer_cert(&handshake(&gw, &client, "default.test").await.unwrap()),
        d
    );

    let mut conn = handshake(&gw, &client, "a.test").await.unwrap();
    let resp = request(&mut conn, "a.test").await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"x-forwarded-proto\":\"https\""), "{resp}");

    // The admin API lists each certificate's names and expiry.
    let (status, body) = common::get_json(&gw.admin_url("/-/certificates")).await;
    assert_eq!(status, 200);
    let certs = body["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 3);
    assert_eq!(certs[1]["names"][0], "*.w.test");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(certs[0]["not_after"].as_i64().unwrap() > now);
}

#[tokio::test]
async fn unknown_name_without_default_is_refused() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    ca.leaf(dir.path(), "a", &["a.test"]);
    let gw = start(&dir, &tls_config(&backend, &cert_entry("a", ""))).await;
    let client = ca.client(&[b"http/1.1"]);
    assert!(handshake(&gw, &client, "a.test").await.is_ok());
    let err = handshake(&gw, &client, "other.test").await.unwrap_err();
    assert!(!err.to_string().is_empty());
}

#[tokio::test]
async fn alpn_h2_and_a_multiplexed_request() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    ca.leaf(dir.path(), "a", &["a.test"]);
    let gw = start(&dir, &tls_config(&backend, &cert_entry("a", ""))).await;

    let conn = handshake(&gw, &ca.client(&[b"h2", b"http/1.1"]), "a.test")
        .await
        .unwrap();
    assert_eq!(conn.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let conn = handshake(&gw, &ca.client(&[b"http/1.1"]), "a.test")
        .await
        .unwrap();
    assert_eq!(conn.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));

    // curl (nghttp2) sends two requests multiplexed on one h2 connection.
    std::fs::write(dir.path().join("ca.pem"), &ca.pem).unwrap();
    let port = gw.proxy.port();
    let url = format!("https://a.test:{port}/hello");
    // Async: the backend runs on this test's runtime and must keep serving.
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--http2", "--cacert"])
        .arg(dir.path().join("ca.pem"))
        .args(["--resolve", &format!("a.test:{port}:127.0.0.1")])
        .args([
            "-m",
            "10",
            "-w",
            "\n%{http_version} %{http_code}\n",
            &url,
            &url,
        ])
        .output()
        .await
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.matches("\n2 200").count(),
        2,
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(backend.hits(), 2);
    // The access log names the protocol ALPN negotiated.
    let h2_lines = common::eventually("two h2 access-log lines", || {
        let lines: Vec<serde_json::Value> = gw
            .stdout()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|l: &serde_json::Value| l["protocol"] == "HTTP/2")
            .collect();
        async move { (lines.len() == 2).then_some(lines) }
    })
    .await;
    for line in h2_lines {
        assert_eq!(line["tls_alpn"], "h2", "{line}");
        assert_eq!(line["tls_sni"], "a.test", "{line}");
    }
}

/// `openssl s_client` against the gateway with one protocol version forced.
fn s_client(gw: &TestGateway, version: &str) -> bool {
    std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &gw.proxy.to_string(),
            "-servername",
            "a.test",
            version,
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl")
        .status
        .success()
}

#[tokio::test]
async fn tls_1_1_is_refused() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    ca.leaf(dir.path(), "a", &["a.test"]);
    let gw = start(&dir, &tls_config(&backend, &cert_entry("a", ""))).await;
    // The same client succeeds with TLS 1.2, so a failure below is the version.
    assert!(s_client(&gw, "-tls1_2"));
    assert!(!s_client(&gw, "-tls1_1"), "TLS 1.1 handshake succeeded");
}

#[tokio::test]
async fn min_version_1_3_refuses_tls_1_2() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    ca.leaf(dir.path(), "a", &["a.test"]);
    let certs = format!(
        "[listeners.tls]\nmin_version = \"1.3\"\n{}",
        cert_entry("a", "")
    );
    let gw = start(&dir, &tls_config(&backend, &certs)).await;
    assert!(s_client(&gw, "-tls1_3"));
    assert!(
        !s_client(&gw, "-tls1_2"),
        "TLS 1.2 accepted with min_version 1.3"
    );
}

#[tokio::test]
async fn certificate_rotation_by_reload_keeps_open_connections() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let old = ca.leaf(dir.path(), "a", &["a.test"]);
    let gw = start(&dir, &tls_config(&backend, &cert_entry("a", ""))).await;
    let client = ca.client(&[b"http/1.1"]);

    let mut long_lived = handshake(&gw, &client, "a.test").await.unwrap();
    assert!(request(&mut long_lived, "a.test")
        .await
        .starts_with("HTTP/1.1 200"));

    // Rotate: new key and certificate in the same files, then reload.
    let new = ca.leaf(dir.path(), "a", &["a.test"]);
    assert_ne!(old, new);
    let (status, body) = gw.reload().await;
    assert_eq!(status, 200, "{body}");
    // Same config text, new file contents: a live change, not a restart.
    assert_eq!(body["status"], "reloaded", "{body}");
    assert_eq!(
        body["changes"]["certificates"].as_array().unwrap().len(),
        1,
        "{body}"
    );
    assert!(
        body["restart_required"].as_array().unwrap().is_empty(),
        "{body}"
    );
    assert_eq!(
        peer_cert(&handshake(&gw, &client, "a.test").await.unwrap()),
        new
    );
    // The connection opened before the reload keeps working.
    assert!(request(&mut long_lived, "a.test")
        .await
        .starts_with("HTTP/1.1 200"));

    // A key that does not match its certificate fails the reload, and the
    // current certificate keeps serving.
    ca.leaf(dir.path(), "other", &["a.test"]);
    std::fs::copy(dir.path().join("other.key"), dir.path().join("a.key")).unwrap();
    let (status, body) = gw.reload().await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("does not match"),
        "{body}"
    );
    assert_eq!(
        peer_cert(&handshake(&gw, &client, "a.test").await.unwrap()),
        new
    );
}

#[test]
fn check_validates_certificates_and_warns_before_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let soon = time::OffsetDateTime::now_utc() + time::Duration::days(5);
    ca.leaf_until(dir.path(), "a", &["a.test"], Some(soon));
    let config = "[[listeners]]\naddress = \"127.0.0.1:0\"\n[[listeners.tls.certificates]]\ncert = \"a.crt\"\nkey = \"a.key\"\n[pools.p]\nbackends = [\"127.0.0.1:1\"]\n[[routes]]\nid = \"r\"\npath = \"/\"\npool = \"p\"\n";
    let path = dir.path().join("tls.toml");
    std::fs::write(&path, config).unwrap();
    let file = path.to_str().unwrap();
    let (code, out, err) = common::run_cli(&["check", "-c", file], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("warning: certificate for a.test expires in 4 day(s)")
            || err.contains("expires in 5 day(s)"),
        "{err}"
    );

    // A key that belongs to another certificate: rejected, with the entry's line.
    ca.leaf(dir.path(), "b", &["b.test"]);
    std::fs::copy(dir.path().join("b.key"), dir.path().join("a.key")).unwrap();
    let (code, _out, err) = common::run_cli(&["check", "-c", file], None);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("{file}:4:")) && err.contains("does not match"),
        "{err}"
    );

    // An expired certificate.
    let past = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    ca.leaf_until(dir.path(), "a", &["a.test"], Some(past));
    let (code, _out, err) = common::run_cli(&["check", "-c", file], None);
    assert_eq!(code, 1);
    assert!(err.contains("expired"), "{err}");
}

#[tokio::test]
async fn plain_listener_redirects_and_tls_listener_sends_hsts() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    ca.leaf(dir.path(), "a", &["a.test"]);
    // First listener: plain, redirecting. Second: TLS with HSTS.
    let config = single_route("p", &[backend.addr], "", "").replacen(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n",
        &format!(
            "[[listeners]]\naddress = \"127.0.0.1:0\"\nredirect_https = 8443\n\n[[listeners]]\naddress = \"127.0.0.1:0\"\nhsts = \"max-age=31536000; includeSubDomains\"\n{}",
            cert_entry("a", "")
        ),
        1,
    );
    let gw = start(&dir, &config).await;

    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client
        .post(gw.url("/orders/7?x=1"))
        .header("host", "shop.example.com:80")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(
        r.headers()["location"],
        "https://shop.example.com:8443/orders/7?x=1"
    );
    assert_eq!(
        backend.hits(),
        0,
        "a redirected request reached the backend"
    );

    let tls_addr = gw.listeners[1].trim_start_matches("https://").to_string();
    let tcp = tokio::net::TcpStream::connect(&tls_addr).await.unwrap();
    let mut conn = ca
        .client(&[b"http/1.1"])
        .connect(ServerName::try_from("a.test").unwrap(), tcp)
        .await
        .unwrap();
    let resp = request(&mut conn, "a.test").await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("strict-transport-security: max-age=31536000; includesubdomains"),
        "{resp}"
    );
}

#[tokio::test]
async fn upstream_tls_verifies_the_backend_certificate() {
    let TlsBackend {
        backend: _backend,
        ca,
        back,
        _dir,
    } = TlsBackend::start().await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &ca.pem).unwrap();
    std::fs::write(dir.path().join("wrong.pem"), Ca::new().pem).unwrap();
    let front = |tls: &str| {
        let config = single_route("p", &[back.proxy], &format!("[pools.p.tls]\n{tls}"), "");
        let path = dir.path().join(format!("front-{}.toml", tls.len()));
        std::fs::write(&path, config).unwrap();
        path
    };
    let status_through = |path: std::path::PathBuf| async move {
        let gw = TestGateway::start_file(&path).await;
        let (status, body) = common::get_json(&gw.url("/hello")).await;
        (status, body["backend"].as_str().map(str::to_string))
    };

    let ok = front("sni = \"backend.test\"\nca_file = \"ca.pem\"");
    assert_eq!(status_through(ok).await, (200, Some("b".to_string())));

    // Verification against the wrong CA fails: 502, never silently accepted.
    let wrong = front("sni = \"backend.test\"\nca_file = \"wrong.pem\"");
    assert_eq!(status_through(wrong).await.0, 502);

    // The right CA but another name: the hostname check fails.
    let other_name = front("sni = \"other.test\"\nca_file = \"ca.pem\"");
    assert_eq!(status_through(other_name).await.0, 502);

    // An explicit opt-out accepts it.
    let unverified = front("sni = \"backend.test\"\nca_file = \"wrong.pem\"\nverify = false");
    assert_eq!(status_through(unverified).await.0, 200);

    // HTTP/2 to the backend (ALPN h2).
    let h2 = front("sni = \"backend.test\"\nca_file = \"ca.pem\"\nprotocol = \"h2\"");
    assert_eq!(status_through(h2).await, (200, Some("b".to_string())));
}

/// An HTTP health check of a TLS pool speaks TLS, with the pool's SNI and
/// CA: the backend is taken out when its health endpoint fails and comes
/// back when it recovers (a plaintext probe of a TLS port would only ever
/// fail).
#[tokio::test]
async fn http_health_checks_of_a_tls_pool_speak_tls() {
    let TlsBackend {
        backend,
        ca,
        back,
        _dir,
    } = TlsBackend::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &ca.pem).unwrap();
    let config = single_route(
        "p",
        &[back.proxy],
        "[pools.p.tls]\nsni = \"backend.test\"\nca_file = \"ca.pem\"\n[pools.p.health_check]\ntype = \"http\"\npath = \"/healthz\"\ninterval = \"300ms\"\ntimeout = \"300ms\"\nunhealthy_threshold = 1\nhealthy_threshold = 1\n",
        "",
    );
    let path = dir.path().join("front.toml");
    std::fs::write(&path, config).unwrap();
    let gw = TestGateway::start_file(&path).await;
    backend.set_health_status(503);
    gw.wait_backend_health("p", back.proxy, false).await;
    backend.set_health_status(200);
    gw.wait_backend_health("p", back.proxy, true).await;
    let (status, body) = common::get_json(&gw.url("/hello")).await;
    assert_eq!((status, body["backend"].as_str()), (200, Some("b")));
}

/// Without `ca_file`, backends are verified against the system roots,
/// which rustls-native-certs reads, `SSL_CERT_FILE` included: a bundle
/// with the backend's CA is accepted, one without it is refused (502).
#[tokio::test]
async fn upstream_tls_verifies_against_the_system_roots() {
    let TlsBackend {
        backend: _backend,
        ca,
        back,
        _dir,
    } = TlsBackend::start().await;

    let dir = tempfile::tempdir().unwrap();
    let system = dir.path().join("system-roots.pem");
    let other = dir.path().join("other-roots.pem");
    std::fs::write(&system, &ca.pem).unwrap();
    std::fs::write(&other, Ca::new().pem).unwrap();
    let path = dir.path().join("front.toml");
    std::fs::write(
        &path,
        single_route(
            "p",
            &[back.proxy],
            "[pools.p.tls]
sni = \"backend.test\"\n",
            "",
        ),
    )
    .unwrap();
    for (roots, expect) in [(&system, 200), (&other, 502)] {
        let roots = roots.to_str().unwrap();
        let env = [("SSL_CERT_FILE", roots), ("SSL_CERT_DIR", "/nonexistent")];
        let gw = TestGateway::start_file_with_env(&path, &env).await;
        let (status, body) = common::get_json(&gw.url("/hello")).await;
        assert_eq!(status, expect, "roots {roots}: {body}");
        if expect == 200 {
            assert_eq!(body["backend"], "b");
        }
    }
}

/// One request on a new connection; `None` when the handshake or the
/// request fails (TLS 1.3 reports a refused client certificate on the
/// first read).
async fn try_request(
    gw: &TestGateway,
    connector: &TlsConnector,
    extra_header: &str,
) -> Option<String> {
    let tcp = tokio::net::TcpStream::connect(gw.proxy).await.ok()?;
    let mut conn = connector
        .connect(ServerName::try_from("a.test").unwrap(), tcp)
        .await
        .ok()?;
    let req =
        format!("GET /hello HTTP/1.1\r\nHost: a.test\r\n{extra_header}Connection: close\r\n\r\n");
    conn.write_all(req.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    conn.read_to_end(&mut out).await.ok()?;
    Some(String::from_utf8_lossy(&out).to_string()).filter(|s| !s.is_empty())
}

#[tokio::test]
async fn client_certificates_required_and_optional() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    ca.leaf(dir.path(), "a", &["a.test"]);
    std::fs::write(dir.path().join("clients.pem"), &ca.pem).unwrap();
    let other_ca = Ca::new();
    let config_with = |mode: &str| {
        tls_config(
            &backend,
            &format!(
                "[listeners.tls]\nclient_auth = \"{mode}\"\nclient_ca = \"clients.pem\"\n{}",
                cert_entry("a", "")
            ),
        )
    };
    let gw = start(&dir, &config_with("required")).await;
    let spoof = "X-Client-Cert-Subject: CN=admin\r\n";

    let resp = try_request(&gw, &ca.client_with_cert("alice"), spoof)
        .await
        .expect("mTLS request");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        resp.contains("\"x-client-cert-subject\":\"CN=alice\""),
        "{resp}"
    );
    // No certificate, or one from another CA: refused.
    assert_eq!(try_request(&gw, &ca.client(&[b"http/1.1"]), "").await, None);
    assert_eq!(
        try_request(&gw, &other_ca.client_with_cert("mallory"), "").await,
        None
    );

    // optional: no certificate is fine, but the spoofed header never passes.
    gw.write_config(&config_with("optional"));
    let (status, body) = gw.reload().await;
    assert_eq!(status, 200, "{body}");
    let resp = try_request(&gw, &ca.client(&[b"http/1.1"]), spoof)
        .await
        .expect("plain TLS request");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        !resp.contains("x-client-cert-subject"),
        "spoofed subject reached the backend: {resp}"
    );
    let resp = try_request(&gw, &ca.client_with_cert("bob"), "")
        .await
        .expect("mTLS request");
    assert!(
        resp.contains("\"x-client-cert-subject\":\"CN=bob\""),
        "{resp}"
    );

    // The access log names the verified subject, and only that one.
    let subjects = common::eventually("access-log lines for the TLS requests", || {
        let subjects: Vec<serde_json::Value> = gw
            .stdout()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|line| line["client_cert_subject"].clone())
            .collect();
        async move { (subjects.len() >= 3).then_some(subjects) }
    })
    .await;
    assert_eq!(
        subjects,
        [
            serde_json::json!("CN=alice"),
            serde_json::Value::Null,
            serde_json::json!("CN=bob")
        ]
    );
}

#[tokio::test]
async fn rsa_p384_and_ed25519_keys() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let p384_der = ca.leaf_with_key(dir.path(), "p384", &["p384.test"], None, p384);
    let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let ed_der = ca.leaf_with_key(dir.path(), "ed", &["ed.test"], None, ed);
    // RSA: rcgen (on ring) cannot generate RSA keys, openssl can.
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(dir.path().join("rsa.key"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let rsa_pem = std::fs::read_to_string(dir.path().join("rsa.key")).unwrap();
    let rsa = KeyPair::from_pem_and_sign_algo(&rsa_pem, &rcgen::PKCS_RSA_SHA256).unwrap();
    let rsa_der = ca.leaf_with_key(dir.path(), "rsa", &["rsa.test"], None, rsa);
    let certs = format!(
        "{}{}{}",
        cert_entry("p384", ""),
        cert_entry("ed", ""),
        cert_entry("rsa", "")
    );
    let gw = start(&dir, &tls_config(&backend, &certs)).await;
    let client = ca.client(&[b"http/1.1"]);
    for (sni, der) in [
        ("p384.test", p384_der),
        ("ed.test", ed_der),
        ("rsa.test", rsa_der),
    ] {
        let mut conn = handshake(&gw, &client, sni)
            .await
            .unwrap_or_else(|e| panic!("{sni}: {e}"));
        assert_eq!(peer_cert(&conn), der, "{sni}");
        assert!(request(&mut conn, sni).await.starts_with("HTTP/1.1 200"));
    }
}

#[tokio::test]
async fn access_log_records_tls_version_sni_and_alpn() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    ca.leaf(dir.path(), "a", &["a.test"]);
    let gw = start(&dir, &tls_config(&backend, &cert_entry("a", ""))).await;
    let mut with_alpn = handshake(&gw, &ca.client(&[b"http/1.1"]), "a.test")
        .await
        .unwrap();
    assert!(request(&mut with_alpn, "a.test")
        .await
        .starts_with("HTTP/1.1 200"));
    let mut without = handshake(&gw, &ca.client(&[]), "a.test").await.unwrap();
    assert!(request(&mut without, "a.test")
        .await
        .starts_with("HTTP/1.1 200"));
    // Both connections are open on the TLS listener.
    let listener = gw.listeners[0].trim_start_matches("https://").to_string();
    let open = format!("portcullis_downstream_open_connections{{listener=\"{listener}\"}} 2");
    common::eventually("2 open TLS connections", || async {
        gw.metrics_text()
            .await
            .lines()
            .any(|l| l == open)
            .then_some(())
    })
    .await;

    let lines = common::eventually("two access-log lines", || {
        let lines: Vec<serde_json::Value> = gw
            .stdout()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        async move { (lines.len() >= 2).then_some(lines) }
    })
    .await;
    for line in &lines {
        assert_eq!(line["tls_version"], "TLSv1.3", "{line}");
        assert_eq!(line["tls_sni"], "a.test", "{line}");
        assert!(line["upstream_ttfb_ms"].as_f64().unwrap() > 0.0, "{line}");
    }
    assert_eq!(lines[0]["tls_alpn"], "http/1.1");
    assert!(lines[1]["tls_alpn"].is_null(), "{}", lines[1]);
}

/// The client-subject header a TLS listener with client certificates
/// sets is the gateway's on every listener: a plain listener of the same
/// gateway never forwards a client's copy, in either spelling.
#[tokio::test]
async fn a_plain_listener_never_forwards_a_forged_client_subject() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    ca.leaf(dir.path(), "a", &["a.test"]);
    std::fs::write(dir.path().join("clients.pem"), &ca.pem).unwrap();
    let config = tls_config(
        &backend,
        &format!(
            "[listeners.tls]\nclient_auth = \"optional\"\nclient_ca = \"clients.pem\"\nclient_subject_header = \"x-verified-subject\"\n{}",
            cert_entry("a", "")
        ),
    )
    .replacen(
        "\n[admin]",
        "\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\n[admin]",
        1,
    );
    let gw = start(&dir, &config).await;
    let plain = gw
        .listeners
        .iter()
        .find_map(|l| l.strip_prefix("http://"))
        .expect("the plain listener")
        .parse()
        .unwrap();
    let (status, _, body) = common::raw_http1(
        plain,
        b"GET /hello HTTP/1.1\r\nHost: a.test\r\nX-Verified-Subject: CN=admin\r\nX_Verified_Subject: CN=admin\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.to_ascii_lowercase().contains("verified"), "{body}");
    // On the TLS listener, the verified subject under that name.
    let resp = try_request(
        &gw,
        &ca.client_with_cert("alice"),
        "X-Verified-Subject: CN=admin\r\n",
    )
    .await
    .expect("mTLS request");
    assert!(
        resp.contains("\"x-verified-subject\":\"CN=alice\""),
        "{resp}"
    );
}

/// A certificate given as the key, or a key as the certificate (on a
/// listener or as a pool's client certificate), is named as such.
#[test]
fn check_names_certificate_and_key_files_given_the_wrong_way_round() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    ca.leaf(dir.path(), "a", &["a.test"]);
    let route = "[pools.p]\nbackends = [\"127.0.0.1:1\"]\n[[routes]]\nid = \"r\"\npath = \"/\"\npool = \"p\"\n";
    let listener = |cert: &str, key: &str| {
        format!("[[listeners]]\naddress = \"127.0.0.1:0\"\n[[listeners.tls.certificates]]\ncert = \"{cert}\"\nkey = \"{key}\"\n{route}")
    };
    let client = |cert: &str, key: &str| {
        format!("[pools.q]\nbackends = [\"127.0.0.1:2\"]\n[pools.q.tls]\nclient_cert = \"{cert}\"\nclient_key = \"{key}\"\n{route}")
    };
    for (config, expect) in [
        (listener("a.key", "a.key"), "no certificate in"),
        (listener("a.crt", "a.crt"), "cannot read private key"),
        (client("a.key", "a.key"), "no certificate in client_cert"),
        (client("a.crt", "a.crt"), "cannot read client_key"),
    ] {
        let path = dir.path().join("swapped.toml");
        std::fs::write(&path, &config).unwrap();
        let (code, out, err) = common::run_cli(&["check", "-c", path.to_str().unwrap()], None);
        assert_eq!(code, 1, "{out}{err}");
        assert!(
            err.contains(expect) && err.contains("are the certificate and key files swapped?"),
            "{config}\n{err}"
        );
    }
}
