//! A bare Pingora passthrough proxy: the baseline `pingora-bare` target of the
//! load benchmark (benches/load/). It does only what any Pingora proxy must:
//! pick an upstream (round-robin over the given backends) and forward. No
//! routing, no headers, no logging, `CTX = ()`, so the gap between this and
//! `portcullis` is what portcullis itself costs on top of Pingora.
//!
//! With `--tls-cert` and `--tls-key` it terminates TLS instead (rustls,
//! ALPN h2 and http/1.1): the baseline of the TLS section.
//!
//! With `--respond` it answers every request itself from `request_filter`
//! (200, the upstream's 28-byte body) and never connects upstream: the floor
//! of any answer a Pingora proxy gives, such as a cache hit
//! (`pingora-bare-respond`).
//!
//! Usage: bare_pingora --listen 127.0.0.1:8000 --threads 1 127.0.0.1:9001 127.0.0.1:9002

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use clap::Parser;
use mimalloc::MiMalloc;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::Result;
use pingora_proxy::{ProxyHttp, Session};

// Same allocator as the portcullis binary, so the comparison is like for like.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "bare_pingora",
    about = "Bare Pingora round-robin passthrough (benchmark baseline)"
)]
struct Args {
    /// Address to listen on.
    #[arg(short, long, default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// Worker threads of the proxy service.
    #[arg(short, long, default_value_t = 1)]
    threads: usize,
    /// PEM certificate chain: terminate TLS (with `--tls-key`).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<String>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<String>,
    /// Idle upstream connections kept (Pingora's `upstream_keepalive_pool_size`).
    #[arg(long, default_value_t = 128)]
    keepalive_pool: usize,
    /// Answer every request with a fixed 200 instead of proxying.
    #[arg(long)]
    respond: bool,
    /// Upstream backends (plain HTTP), used round-robin.
    #[arg(required = true)]
    backends: Vec<SocketAddr>,
}

struct Bare {
    peers: Vec<HttpPeer>,
    next: AtomicUsize,
    respond: bool,
}

/// The upstream's body in the load benchmark (`BODY_PREFIX` + `a\n`).
const BODY: &[u8] = b"portcullis-bench upstream a\n";

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();
    fn new_ctx(&self) -> Self::CTX {}

    async fn request_filter(&self, session: &mut Session, _ctx: &mut ()) -> Result<bool> {
        if !self.respond {
            return Ok(false);
        }
        let mut header = pingora_http::ResponseHeader::build(200, Some(2))?;
        header.insert_header("content-type", "text/plain")?;
        header.insert_header("content-length", BODY.len())?;
        session
            .write_response_header(Box::new(header), false)
            .await?;
        session
            .write_response_body(Some(bytes::Bytes::from_static(BODY)), true)
            .await?;
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.peers.len();
        Ok(Box::new(self.peers[i].clone()))
    }
}

fn main() {
    let args = Args::parse();
    let conf = ServerConf {
        threads: args.threads.max(1),
        upstream_keepalive_pool_size: args.keepalive_pool,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();

    let bare = Bare {
        peers: args
            .backends
            .iter()
            .map(|a| HttpPeer::new(*a, false, String::new()))
            .collect(),
        next: AtomicUsize::new(0),
        respond: args.respond,
    };
    let mut proxy =
        pingora_proxy::http_proxy_service_with_name(&server.configuration, bare, "bare pingora");
    match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let mut tls = match pingora_core::listeners::tls::TlsSettings::intermediate(cert, key) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("bare_pingora: cannot load {cert} / {key}: {e}");
                    std::process::exit(1);
                }
            };
            tls.enable_h2();
            proxy.add_tls_with_settings(&args.listen.to_string(), None, tls);
            println!("listening proxy https://{}", args.listen);
        }
        _ => {
            proxy.add_tcp(&args.listen.to_string());
            println!("listening proxy http://{}", args.listen);
        }
    }
    server.add_service(proxy);
    server.run_forever()
}
