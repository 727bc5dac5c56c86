//! Zero-downtime binary upgrade.
//!
//! On `SIGUSR2` (`systemctl kill --kill-whom=main --signal=SIGUSR2
//! portcullis`, or `kill -USR2 PID`) the running gateway starts the binary
//! at the path it was itself started from (a package upgrade has replaced
//! it there) with the same arguments, as its successor. Once the successor
//! listens on the upgrade socket, this process hands it every listening
//! socket through Pingora's upgrade mode (`SIGQUIT`), keeps accepting for
//! 5 s more while the successor starts serving, then stops accepting and
//! drains its requests within `grace_period`. The listening sockets are
//! never closed: no connection is refused.
//!
//! If the successor cannot start (a config the new binary refuses, a
//! broken binary), it exits or never listens, and this process keeps
//! serving: the failure is logged, nothing is handed over.
//!
//! Under systemd (`Type=notify`, `NotifyAccess=main`) this process names
//! the successor in `MAINPID=` before the handover (the sockets reach the
//! successor only after that, so its `READY=1` comes from the main
//! process), and it does not report `STOPPING=1` while it drains.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora_core::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

/// Set in a successor's environment: take the listeners over.
const UPGRADE_ENV: &str = "PORTCULLIS_UPGRADE";
/// The upgrade socket's path, handed down from process to process.
const SOCK_ENV: &str = "PORTCULLIS_UPGRADE_SOCK";
/// How long a successor may take to start and listen for the sockets.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

/// Set once this process hands its listeners to a successor.
static HANDED_OVER: AtomicBool = AtomicBool::new(false);

/// Whether this process was started by a predecessor to take over its
/// listening sockets.
pub fn is_successor() -> bool {
    std::env::var_os(UPGRADE_ENV).is_some_and(|v| v == "1")
}

/// Whether this process is draining after handing its listeners over.
pub fn handed_over() -> bool {
    HANDED_OVER.load(Ordering::Relaxed)
}

/// The upgrade socket: the predecessor's, else
/// `$RUNTIME_DIRECTORY/upgrade.sock` (systemd's `RuntimeDirectory=`), else
/// one per process in the temporary directory.
pub fn socket_path() -> PathBuf {
    if let Some(p) = std::env::var_os(SOCK_ENV) {
        return PathBuf::from(p);
    }
    if let Some(dir) = std::env::var_os("RUNTIME_DIRECTORY") {
        // A list when the unit names several directories: the first.
        let first = dir
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string();
        if !first.is_empty() {
            return Path::new(&first).join("upgrade.sock");
        }
    }
    std::env::temp_dir().join(format!("portcullis-upgrade-{}.sock", std::process::id()))
}

/// How to start a successor: this binary's path and arguments, resolved
/// at start-up (before a package upgrade replaces the file).
pub struct Successor {
    exe: PathBuf,
    args: Vec<OsString>,
    sock: PathBuf,
}

impl Successor {
    pub fn new(sock: PathBuf) -> std::io::Result<Self> {
        Ok(Self {
            exe: std::env::current_exe()?,
            args: std::env::args_os().skip(1).collect(),
            sock,
        })
    }

    /// Start the successor and wait until it listens on the upgrade
    /// socket; its pid.
    async fn start(&self) -> Result<u32, String> {
        match std::fs::remove_file(&self.sock) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot remove {}: {e}", self.sock.display())),
        }
        let mut child = std::process::Command::new(&self.exe)
            .args(&self.args)
            .env(UPGRADE_ENV, "1")
            .env(SOCK_ENV, &self.sock)
            // The watchdog is the successor's once it is the main process.
            .env_remove("WATCHDOG_PID")
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.exe.display()))?;
        let started = Instant::now();
        loop {
            if self.sock.exists() {
                return Ok(child.id());
            }
            match child.try_wait() {
                Ok(Some(status)) => return Err(format!("the new process exited ({status})")),
                Ok(None) => {}
                Err(e) => return Err(format!("cannot watch the new process: {e}")),
            }
            if started.elapsed() > START_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the new process did not start within {}s; stopped it",
                    START_TIMEOUT.as_secs()
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Pingora's signals (`SIGTERM` graceful stop, `SIGINT` fast stop,
/// `SIGQUIT` hand over to a successor started by hand) and `SIGUSR2`:
/// start the successor, then hand over.
pub struct Signals {
    successor: Option<Successor>,
}

impl Signals {
    pub fn new(successor: Option<Successor>) -> Self {
        Self { successor }
    }
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut quit), Ok(mut term), Ok(mut int), Ok(mut usr2)) = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::user_defined2()),
        ) else {
            error!("cannot listen for signals; stopping");
            return ShutdownSignal::FastShutdown;
        };
        loop {
            tokio::select! {
                _ = quit.recv() => {
                    HANDED_OVER.store(true, Ordering::Relaxed);
                    return ShutdownSignal::GracefulUpgrade;
                }
                _ = term.recv() => return ShutdownSignal::GracefulTerminate,
                _ = int.recv() => return ShutdownSignal::FastShutdown,
                _ = usr2.recv() => {
                    let Some(successor) = &self.successor else {
                        warn!("SIGUSR2: cannot upgrade, the binary's path is unknown");
                        continue;
                    };
                    info!(binary = %successor.exe.display(), "SIGUSR2: starting the new binary");
                    match successor.start().await {
                        Ok(pid) => {
                            info!(pid, "upgrade: handing the listening sockets to the new process; this one drains");
                            crate::notify::main_pid(pid);
                            HANDED_OVER.store(true, Ordering::Relaxed);
                            return ShutdownSignal::GracefulUpgrade;
                        }
                        Err(e) => error!(error = %e, "upgrade failed; this process keeps serving"),
                    }
                }
            }
        }
    }
}
