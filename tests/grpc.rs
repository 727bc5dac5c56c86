//! gRPC through the gateway with a real server and client (tonic and
//! the standard `grpc.health.v1` service): HTTP/2 over TLS from the
//! client, h2c (prior knowledge) or TLS h2 to the server, routes per
//! method path, `grpc.health.v1` health checks of pools,
//! trailers passed through (unary and server streaming), and the
//! gateway's own refusals as gRPC statuses: UNAUTHENTICATED without a
//! key, RESOURCE_EXHAUSTED past a limit, UNAVAILABLE when the server is
//! gone.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::TestGateway;
use portcullis::keys;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus as Status;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::ServingStatus;

/// A stopper: a sender that shuts a server down (connections closed) and
/// the task that ends when it has.
type Stop = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
);

/// The standard health service on `127.0.0.1:0`; its reporter, its
/// address and its stopper.
async fn health_server() -> (tonic_health::server::HealthReporter, SocketAddr, Stop) {
    let (reporter, addr, stop, _) = counted_health_server().await;
    (reporter, addr, stop)
}

/// [`health_server`], and the number of connections it accepted.
async fn counted_health_server() -> (
    tonic_health::server::HealthReporter,
    SocketAddr,
    Stop,
    Arc<AtomicUsize>,
) {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("orders.Orders", ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let incoming = futures_util::stream::unfold(listener, move |listener| {
        let counter = counter.clone();
        async move {
            let next = listener.accept().await.map(|(s, _)| {
                counter.fetch_add(1, Ordering::SeqCst);
                s
            });
            Some((next, listener))
        }
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(Box::pin(incoming), async {
                let _ = stopped.await;
            })
            .await;
    });
    (reporter, addr, (stop, task), accepted)
}

struct Tls {
    _dir: tempfile::TempDir,
    cert_pem: String,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

fn tls() -> Tls {
    let dir = tempfile::tempdir().unwrap();
    let c = rcgen::generate_simple_self_signed(vec!["grpc.test".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("grpc.pem"), dir.path().join("grpc.key"));
    std::fs::write(&cert, c.cert.pem()).unwrap();
    std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
    Tls {
        cert_pem: c.cert.pem(),
        _dir: dir,
        cert,
        key,
    }
}

fn config(server: SocketAddr, tls: &Tls, key: &keys::NewKey) -> String {
    format!(
        r#"[server]
watch_config = false

[[listeners]]
address = "127.0.0.1:0"
[[listeners.tls.certificates]]
cert = "{cert}"
key = "{key_file}"

[admin]
address = "127.0.0.1:0"

[pools.grpc]
backends = ["{server}"]
h2c = true

[[routes]]
id = "check"
path = "/grpc.health.v1.Health/Check"
path_match = "exact"
methods = ["POST"]
pool = "grpc"
rate_limits = [{{ rate = "4/m", burst = 4, per = "route" }}]

[[routes]]
id = "watch"
path = "/grpc.health.v1.Health/Watch"
path_match = "exact"
pool = "grpc"
auth = "api_key"

[[consumers]]
id = "acme"
keys = [{entry}]
scopes = [{{ routes = ["*"] }}]
"#,
        cert = tls.cert.display(),
        key_file = tls.key.display(),
        entry = keys::config_entry(&key.prefix, &key.digest_hex),
    )
}

async fn client(gw: &TestGateway, tls: &Tls) -> HealthClient<Channel> {
    let channel = Channel::from_shared(format!("https://{}", gw.proxy))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&tls.cert_pem))
                .domain_name("grpc.test"),
        )
        .unwrap()
        .connect()
        .await
        .expect("connect through the gateway");
    HealthClient::new(channel)
}

/// A client speaking HTTP/2 in cleartext (prior knowledge) to the
/// gateway's plain listener.
async fn h2c_client(gw: &TestGateway) -> HealthClient<Channel> {
    let channel = Channel::from_shared(format!("http://{}", gw.proxy))
        .unwrap()
        .connect()
        .await
        .expect("h2c to the gateway");
    HealthClient::new(channel)
}

fn check_request(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.to_string(),
    }
}

#[tokio::test]
async fn grpc_calls_go_through_with_trailers_and_refusals_are_grpc_statuses() {
    let (reporter, server, (stop, task)) = health_server().await;
    let tls = tls();
    let key = keys::generate().unwrap();
    let gw = TestGateway::start(&config(server, &tls, &key)).await;
    let mut health = client(&gw, &tls).await;

    // Unary: the answer's grpc-status comes in the trailers; without them
    // the client would report an error.
    let answer = health
        .check(check_request("orders.Orders"))
        .await
        .expect("check");
    assert_eq!(answer.get_ref().status, Status::Serving as i32);
    // The server's own error status (in its trailers) reaches the client.
    let err = health
        .check(check_request("nowhere.Nowhere"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    // Server streaming, with the key: each update arrives as it is sent.
    let mut req = tonic::Request::new(check_request("orders.Orders"));
    req.metadata_mut()
        .insert("x-api-key", key.key.parse().unwrap());
    let mut stream = health.watch(req).await.expect("watch").into_inner();
    let first = stream.message().await.expect("first update").unwrap();
    assert_eq!(first.status, Status::Serving as i32);
    reporter
        .set_service_status("orders.Orders", ServingStatus::NotServing)
        .await;
    let second = stream.message().await.expect("second update").unwrap();
    assert_eq!(second.status, Status::NotServing as i32);
    drop(stream);

    // The gateway's refusals, as gRPC statuses.
    let err = health
        .watch(check_request("orders.Orders"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("API key"), "{err:?}");
    // Two checks were made above; the route allows four a minute.
    for _ in 0..2 {
        health
            .check(check_request("orders.Orders"))
            .await
            .expect("within the limit");
    }
    let err = health
        .check(check_request("orders.Orders"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.metadata().get("retry-after").is_some(), "{err:?}");

    // The server shuts down (its connections closed, its port shut):
    // UNAVAILABLE, not a problem+json body.
    let _ = stop.send(());
    task.await.unwrap();
    let err = common::eventually("the gateway to find the server gone", || {
        let mut health = health.clone();
        let key = key.key.clone();
        async move {
            let mut req = tonic::Request::new(check_request("orders.Orders"));
            req.metadata_mut().insert("x-api-key", key.parse().unwrap());
            health.watch(req).await.err()
        }
    })
    .await;
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("upstream"), "{err:?}");
}

#[tokio::test]
async fn pools_are_health_checked_with_the_grpc_health_protocol() {
    let (reporter, server, _stop) = health_server().await;
    let http1_only = common::backend::Backend::start("h1").await;
    let tls = tls();
    let key = keys::generate().unwrap();
    // An h2c pool with a gRPC health check of `service` every 300 ms,
    // flipping on one result.
    let checked = |name: &str, addr: SocketAddr, service: &str| {
        format!(
            "[pools.{name}]\nbackends = [\"{addr}\"]\nh2c = true\n[pools.{name}.health_check]\ntype = \"grpc\"\nservice = \"{service}\"\ninterval = \"300ms\"\ntimeout = \"300ms\"\nunhealthy_threshold = 1\nhealthy_threshold = 1\n"
        )
    };
    // The main pool "grpc" checks orders.Orders; "other" asks about a
    // service the server does not know; "h1" is a server without HTTP/2.
    let config = config(server, &tls, &key).replace(
        &format!("[pools.grpc]\nbackends = [\"{server}\"]\nh2c = true\n"),
        &checked("grpc", server, "orders.Orders"),
    ) + &checked("other", server, "nowhere.Nowhere")
        + &checked("h1", http1_only.addr, "");
    let gw = TestGateway::start(&config).await;
    // A service the server does not know, and a server that does not
    // speak HTTP/2: unhealthy.
    gw.wait_backend_health("other", server, false).await;
    gw.wait_backend_health("h1", http1_only.addr, false).await;
    assert_eq!(gw.backend_healthy("grpc", server).await, Some(true));
    let mut health = client(&gw, &tls).await;
    health
        .check(check_request("orders.Orders"))
        .await
        .expect("serving");

    // The service stops serving: out of the pool, and calls get
    // UNAVAILABLE from the gateway; back when it serves again.
    reporter
        .set_service_status("orders.Orders", ServingStatus::NotServing)
        .await;
    gw.wait_backend_health("grpc", server, false).await;
    let err = health
        .check(check_request("orders.Orders"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    reporter
        .set_service_status("orders.Orders", ServingStatus::Serving)
        .await;
    gw.wait_backend_health("grpc", server, true).await;
    health
        .check(check_request("orders.Orders"))
        .await
        .expect("serving again");
}

#[tokio::test]
async fn grpc_goes_to_a_server_over_tls_h2_and_is_health_checked_there() {
    // The server speaks gRPC over TLS only, with a certificate for
    // backend.test that the pool verifies.
    let backend_tls = rcgen::generate_simple_self_signed(vec!["backend.test".to_string()]).unwrap();
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("orders.Orders", ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    let identity = tonic::transport::Identity::from_pem(
        backend_tls.cert.pem(),
        backend_tls.signing_key.serialize_pem(),
    );
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .unwrap()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await;
    });
    let tls = tls();
    let ca = tls._dir.path().join("backend-ca.pem");
    std::fs::write(&ca, backend_tls.cert.pem()).unwrap();
    let key = keys::generate().unwrap();
    let config = config(server, &tls, &key).replace(
        "h2c = true\n",
        &format!(
            "[pools.grpc.tls]\nsni = \"backend.test\"\nca_file = \"{}\"\nprotocol = \"h2\"\n[pools.grpc.health_check]\ntype = \"grpc\"\nservice = \"orders.Orders\"\ninterval = \"300ms\"\ntimeout = \"300ms\"\nunhealthy_threshold = 1\nhealthy_threshold = 1\n",
            ca.display()
        ),
    );
    let gw = TestGateway::start(&config).await;
    let mut health = client(&gw, &tls).await;
    let answer = health
        .check(check_request("orders.Orders"))
        .await
        .expect("check over TLS h2");
    assert_eq!(answer.get_ref().status, Status::Serving as i32);
    // The health check speaks TLS h2 too: it sees the service stop.
    reporter
        .set_service_status("orders.Orders", ServingStatus::NotServing)
        .await;
    gw.wait_backend_health("grpc", server, false).await;
    reporter
        .set_service_status("orders.Orders", ServingStatus::Serving)
        .await;
    gw.wait_backend_health("grpc", server, true).await;
}

/// `[[listeners]] h2c = true`: one plain port speaks gRPC (HTTP/2 with
/// prior knowledge) and HTTP/1, told apart by the connection's first
/// bytes; a short HTTP/1.0 request is not held waiting for 24 of them,
/// a preface arriving in pieces is still HTTP/2, and a silent connection
/// gets HTTP/1's 408 at `header_timeout`.
#[tokio::test]
async fn a_plain_h2c_listener_speaks_grpc_and_http1_on_one_port() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (_reporter, server, _stop) = health_server().await;
    let web = common::backend::Backend::start("web").await;
    let config = format!(
        r#"[server]
watch_config = false
[server.client]
header_timeout = "2s"

[[listeners]]
address = "127.0.0.1:0"
h2c = true

[admin]
address = "127.0.0.1:0"

[pools.grpc]
backends = ["{server}"]
h2c = true

[pools.web]
backends = ["{web}"]

[[routes]]
id = "check"
path = "/grpc.health.v1.Health/Check"
path_match = "exact"
pool = "grpc"

[[routes]]
id = "watch"
path = "/grpc.health.v1.Health/Watch"
path_match = "exact"
pool = "grpc"
auth = "api_key"

[[routes]]
id = "web"
path = "/web"
pool = "web"
"#,
        web = web.addr
    );
    let gw = TestGateway::start(&config).await;

    // gRPC over h2c from a real client, and a refusal as a gRPC status.
    let mut health = h2c_client(&gw).await;
    let answer = health
        .check(check_request("orders.Orders"))
        .await
        .expect("check over h2c");
    assert_eq!(answer.get_ref().status, Status::Serving as i32);
    let err = health
        .watch(check_request("orders.Orders"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    // HTTP/1.1 on the same port.
    let r = reqwest::get(gw.url("/web/x")).await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    assert_eq!(r.status(), 200);
    assert_eq!(web.hits(), 1);

    // HTTP/1.0 in 18 bytes: answered at once, not at header_timeout.
    let started = Instant::now();
    let (status, head, _) = common::raw_http1(gw.proxy, b"GET /web HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, 200, "{head}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(web.hits(), 2);

    // The preface in three pieces, then an empty SETTINGS frame: the
    // gateway answers with its own SETTINGS, HTTP/2.
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut s = tokio::net::TcpStream::connect(gw.proxy).await.unwrap();
    s.set_nodelay(true).unwrap();
    for piece in [&preface[..3], &preface[3..20], &preface[20..]] {
        s.write_all(piece).await.unwrap();
        // The slow client under test.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let mut frame = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut frame))
        .await
        .expect("a frame in time")
        .unwrap();
    assert_eq!(frame[3], 4, "a SETTINGS frame, not HTTP/1: {frame:?}");

    // A connection that sends nothing: HTTP/1's 408, as on any listener.
    let (status, head, _) = common::raw_http1(gw.proxy, b"").await;
    assert_eq!(status, 408, "{head}");
}

/// `[pools.NAME] max_h2_streams`: calls in flight share one HTTP/2
/// connection to the server, up to that many; without it each call in
/// flight has a connection of its own (Pingora's default, and nginx's
/// `grpc_pass`).
#[tokio::test]
async fn max_h2_streams_lets_calls_in_flight_share_a_backend_connection() {
    for (max, connections) in [(Some(10), 1), (None, 4)] {
        let (_reporter, server, _stop, accepted) = counted_health_server().await;
        let streams = max.map_or(String::new(), |n| format!("max_h2_streams = {n}\n"));
        let gw = TestGateway::start(&format!(
            r#"[server]
watch_config = false

[[listeners]]
address = "127.0.0.1:0"
h2c = true

[admin]
address = "127.0.0.1:0"

[pools.grpc]
backends = ["{server}"]
h2c = true
{streams}
[[routes]]
id = "watch"
path = "/grpc.health.v1.Health/Watch"
path_match = "exact"
pool = "grpc"
"#
        ))
        .await;
        let health = h2c_client(&gw).await;
        // Four streams open at once, each established before the next.
        let mut open = Vec::new();
        for _ in 0..4 {
            let mut stream = health
                .clone()
                .watch(check_request("orders.Orders"))
                .await
                .expect("watch")
                .into_inner();
            let first = stream.message().await.expect("first update").unwrap();
            assert_eq!(first.status, Status::Serving as i32);
            open.push(stream);
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            connections,
            "max_h2_streams = {max:?}"
        );
    }
}
