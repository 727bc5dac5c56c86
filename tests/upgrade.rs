//! Zero-downtime binary upgrade: with clients sending requests all along
//! (on kept-alive connections and on new ones), `SIGUSR2` makes the
//! running gateway start a second copy of the binary (renamed over the
//! first, as a package upgrade does), hand it the listening sockets and
//! drain. Not one request fails or is refused; the new process serves on.
//! A successor that cannot start leaves the old process serving.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::backend::Backend;
use common::{bin, client, eventually, get_json, pool, TestGateway};

/// Kills a process left behind by a failed test.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .status();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Copy the gateway binary to `to` by way of a rename, so `to` is a new
/// file (a new inode), as when a package manager replaces it.
///
/// `cp` writes the copy, not this process: a file this process held open
/// for writing would be inherited by any child another test thread forks
/// meanwhile, and exec'ing the copy could then fail with "Text file busy"
/// (ETXTBSY). A fresh-clone CI run met exactly that.
fn install_binary(to: &Path) {
    let tmp = to.with_extension("new");
    let copied = std::process::Command::new("cp")
        .arg(bin())
        .arg(&tmp)
        .status()
        .expect("run cp");
    assert!(copied.success(), "cp the binary: {copied}");
    std::fs::rename(&tmp, to).expect("rename the binary");
}

/// A config on fixed ports (a successor binds what the config says; port 0
/// would be a new port).
fn config(backend: SocketAddr, proxy: u16, admin: u16) -> String {
    format!(
        "[server]\nwatch_config = false\ngrace_period = \"1s\"\n\n[[listeners]]\naddress = \"127.0.0.1:{proxy}\"\n\n[admin]\naddress = \"127.0.0.1:{admin}\"\n\n{}[[routes]]\nid = \"r\"\npath = \"/\"\npool = \"p\"\n",
        pool("p", &[backend], "")
    )
}

struct Setup {
    _dir: tempfile::TempDir,
    exe: PathBuf,
    gw: TestGateway,
}

async fn setup(backend: &Backend, env: &[(&str, &str)]) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = dir.path().join("portcullis");
    install_binary(&exe);
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, config(backend.addr, free_port(), free_port())).expect("config");
    let sock = dir.path().join("upgrade.sock");
    let sock = sock.to_str().expect("utf-8 path");
    let mut env = env.to_vec();
    env.push(("PORTCULLIS_UPGRADE_SOCK", sock));
    let gw = TestGateway::start_binary(&exe, &path, &env).await;
    Setup { _dir: dir, exe, gw }
}

/// Every notification received so far.
fn notifications(sock: &tokio::net::UnixDatagram) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.try_recv(&mut buf) {
        out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    out
}

/// The pid the successor logged when it took the sockets over.
fn successor_pid(logs: &str) -> Option<u32> {
    let line = logs
        .lines()
        .find(|l| l.contains("took over the listening sockets"))?;
    let rest = &line[line.find("pid")? + 3..];
    let digits: String = rest
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    failed: AtomicUsize,
    errors: Mutex<Vec<String>>,
}

impl Tally {
    fn record(&self, r: Result<reqwest::Response, reqwest::Error>) {
        match r {
            Ok(r) if r.status() == 200 => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) => self.fail(format!("status {}", r.status())),
            Err(e) => self.fail(format!("{e:?}")),
        }
    }

    fn fail(&self, e: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.errors.lock().unwrap().push(e);
    }
}

/// Clients sending requests until `stop`: three on kept-alive connections,
/// one opening a new connection for every request.
fn traffic(
    url: String,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..4)
        .map(|i| {
            let (url, stop, tally) = (url.clone(), stop.clone(), tally.clone());
            tokio::spawn(async move {
                let keepalive = client();
                while !stop.load(Ordering::Relaxed) {
                    let c = if i == 3 {
                        reqwest::Client::builder()
                            .no_proxy()
                            .pool_max_idle_per_host(0)
                            .build()
                            .expect("client")
                    } else {
                        keepalive.clone()
                    };
                    tally.record(c.get(&url).send().await);
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr2_hands_the_listeners_to_the_new_binary_without_a_failed_request() {
    let backend = Backend::start("b").await;
    // systemd's notification socket: the successor must take over as the
    // main process, and the old one must not report stopping.
    let notify_dir = tempfile::tempdir().expect("tempdir");
    let notify_path = notify_dir.path().join("notify.sock");
    let notify = tokio::net::UnixDatagram::bind(&notify_path).expect("notify socket");
    let notify_path = notify_path.to_str().expect("utf-8 path");
    let Setup { _dir, exe, mut gw } = setup(&backend, &[("NOTIFY_SOCKET", notify_path)]).await;
    let url = gw.url("/");
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let tasks = traffic(url.clone(), stop.clone(), tally.clone());
    eventually("traffic flowing", || async {
        (tally.ok.load(Ordering::Relaxed) > 20).then_some(())
    })
    .await;

    // The package upgrade: a new binary at the same path. Then the signal.
    install_binary(&exe);
    gw.signal("USR2");
    let new_pid = eventually("the successor to take the sockets over", || async {
        successor_pid(&gw.logs())
    })
    .await;
    let _kill = KillOnDrop(new_pid);
    assert_ne!(new_pid, gw.pid());
    // The old process keeps accepting 5 s, then drains (grace_period 1 s).
    assert_eq!(gw.exited().await, Some(0), "{}", gw.logs());
    let notes = notifications(&notify);
    assert!(
        notes
            .iter()
            .any(|n| n.contains(&format!("MAINPID={new_pid}")) && n.contains("READY=1")),
        "{notes:?}"
    );
    assert!(!notes.iter().any(|n| n.contains("STOPPING=1")), "{notes:?}");
    // The old (main) process names its successor before the handover, so
    // `NotifyAccess=main` accepts the successor's READY=1.
    let named = notes
        .iter()
        .position(|n| n.contains(&format!("MAINPID={new_pid}")) && !n.contains("READY=1"));
    let ready = notes
        .iter()
        .position(|n| n.contains(&format!("MAINPID={new_pid}")) && n.contains("READY=1"));
    assert!(
        matches!((named, ready), (Some(a), Some(b)) if a < b),
        "{notes:?}"
    );
    let at_exit = tally.ok.load(Ordering::Relaxed);
    eventually("the successor serving", || async {
        (tally.ok.load(Ordering::Relaxed) > at_exit + 50).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("traffic task");
    }
    let errors = tally.errors.lock().unwrap().clone();
    eprintln!(
        "upgrade: {} requests answered, {} failed, {} after the old process exited",
        tally.ok.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
        tally.ok.load(Ordering::Relaxed) - at_exit
    );
    assert_eq!(
        tally.failed.load(Ordering::Relaxed),
        0,
        "failed requests during the upgrade: {errors:?}"
    );
    assert!(tally.ok.load(Ordering::Relaxed) > at_exit + 50);
    // The successor is the gateway now: its admin API answers too.
    assert_eq!(get_json(&gw.admin_url("/healthz")).await.0, 200);
}

#[tokio::test]
async fn a_successor_that_cannot_start_leaves_the_old_process_serving() {
    let backend = Backend::start("b").await;
    let Setup { _dir, exe, gw } = setup(&backend, &[]).await;
    // The "new binary" exits at once.
    let tmp = exe.with_extension("new");
    std::fs::write(&tmp, "#!/bin/sh\nexit 3\n").expect("script");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::rename(&tmp, &exe).expect("rename");
    gw.signal("USR2");
    gw.wait_for_log("upgrade failed; this process keeps serving")
        .await;
    assert!(
        gw.logs().contains("the new process exited"),
        "{}",
        gw.logs()
    );
    assert_eq!(get_json(&gw.url("/")).await.0, 200);
    assert_eq!(get_json(&gw.admin_url("/healthz")).await.0, 200);
}
