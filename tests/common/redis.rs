//! A real `redis-server` on a free loopback port, for the shared limit
//! store's tests: started fresh (no persistence), stopped and started again
//! on the same port, killed on drop.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::DEADLINE;

pub struct RedisServer {
    child: Option<Child>,
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
    /// `requirepass`, when set.
    password: Option<String>,
    /// A TLS port too, with this certificate and key (PEM files).
    pub tls: Option<(u16, std::path::PathBuf, std::path::PathBuf)>,
}

impl RedisServer {
    /// Start one; panics when `redis-server` is missing (the project's
    /// `scripts/install-deps.sh --test` installs it).
    pub fn start() -> RedisServer {
        Self::start_with_password(None)
    }

    /// [`RedisServer::start`], requiring `password` when given.
    pub fn start_with_password(password: Option<&str>) -> RedisServer {
        Self::start_with(password, None)
    }

    /// [`RedisServer::start`] with a TLS port as well (`rediss://`),
    /// serving the certificate `cert` with `key`; clients need no
    /// certificate of their own. Commands from the test use the plain port.
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> RedisServer {
        Self::start_with(None, Some((cert.to_path_buf(), key.to_path_buf())))
    }

    fn start_with(
        password: Option<&str>,
        tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    ) -> RedisServer {
        // A port that was free a moment ago; another process may take it
        // meanwhile, so a server that does not come up is tried again on
        // another.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let tls = tls.clone().map(|(cert, key)| {
                let port = TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .expect("a free port")
                    .port();
                (port, cert, key)
            });
            let mut server = RedisServer {
                child: None,
                addr,
                dir: tempfile::tempdir().expect("tempdir"),
                password: password.map(str::to_string),
                tls,
            };
            if server.launch() {
                return server;
            }
        }
        panic!("redis-server did not start");
    }

    /// Start the server on `self.addr`: whether it answers PING in time.
    fn launch(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.addr.port().to_string())
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(
                self.password
                    .iter()
                    .flat_map(|p| ["--requirepass".to_string(), p.clone()]),
            )
            .args(self.tls.iter().flat_map(|(port, cert, key)| {
                [
                    "--tls-port".to_string(),
                    port.to_string(),
                    "--tls-cert-file".to_string(),
                    cert.display().to_string(),
                    "--tls-key-file".to_string(),
                    key.display().to_string(),
                    "--tls-auth-clients".to_string(),
                    "no".to_string(),
                ]
            }))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (install it: scripts/install-deps.sh --test)");
        self.child = Some(child);
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            if self.ping() {
                return true;
            }
            if let Some(c) = &mut self.child {
                if let Ok(Some(_)) = c.try_wait() {
                    self.child = None;
                    return false;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Whether the server answers PING.
    pub fn ping(&self) -> bool {
        self.command(&["PING"])
            .is_some_and(|r| r.starts_with("+PONG"))
    }

    /// Send one command (authenticated first when the server needs it);
    /// its reply as read.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_millis(500)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut raw = String::new();
        if let Some(p) = &self.password {
            raw += &resp(&["AUTH", p]);
        }
        raw += &resp(args);
        s.write_all(raw.as_bytes()).ok()?;
        if self.password.is_some() {
            // "+OK\r\n" of AUTH first.
            let mut ok = [0u8; 5];
            s.read_exact(&mut ok).ok()?;
        }
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// `redis://ADDR/0`
    pub fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    /// `rediss://localhost:TLS_PORT/0` (the certificate names `localhost`).
    pub fn tls_url(&self) -> String {
        let (port, ..) = self.tls.as_ref().expect("a server started with start_tls");
        format!("rediss://localhost:{port}/0")
    }

    /// Kill the server (as a crash would) and wait for it to go.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        assert!(
            self.launch(),
            "redis-server did not start again on {}",
            self.addr
        );
    }
}

/// `args` as a RESP array of bulk strings.
fn resp(args: &[&str]) -> String {
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out += &format!("${}\r\n{a}\r\n", a.len());
    }
    out
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
