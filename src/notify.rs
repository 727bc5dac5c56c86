//! systemd notifications (`sd_notify`, for `Type=notify` units): thin
//! calls taking plain values, wired by `server.rs` and the reload path.
//! `READY=1` once every proxy listener accepts connections (what `/readyz`
//! checks), `RELOADING=1` and `READY=1` around every reload with its
//! outcome in `STATUS=`, `WATCHDOG=1` at half the unit's `WatchdogSec`, and
//! `STOPPING=1` on shutdown; after a binary upgrade the successor sends
//! `MAINPID=` with its `READY=1` (see `upgrade.rs`). Outside systemd (no
//! `NOTIFY_SOCKET`) all of this does nothing.

use std::time::Duration;

use sd_notify::NotifyState;
use tracing::warn;

/// Whether this process runs under systemd's notification protocol.
pub fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        warn!(error = %e, "cannot notify systemd");
    }
}

/// The service is ready; `status` says what it serves. A successor of a
/// binary upgrade names itself the main process (`MAINPID=`) too.
pub fn ready(status: &str, successor: bool) {
    if !enabled() {
        return;
    }
    if successor {
        let pid = NotifyState::MainPid(std::process::id());
        send(&[pid, NotifyState::Ready, NotifyState::Status(status)]);
    } else {
        send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }
}

/// How often to feed the watchdog (half the unit's `WatchdogSec`), when
/// the unit has one.
pub fn watchdog_period() -> Option<Duration> {
    enabled()
        .then(sd_notify::watchdog_enabled)
        .flatten()
        .map(|period| period / 2)
}

/// Feed the watchdog.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// A reload starts.
pub fn reloading() {
    if !enabled() {
        return;
    }
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// A reload ended; `status` says how.
pub fn reloaded(status: &str) {
    if enabled() {
        send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }
}

/// `pid` is the service's main process from now on (a binary upgrade's
/// successor).
pub fn main_pid(pid: u32) {
    if enabled() {
        send(&[NotifyState::MainPid(pid)]);
    }
}

/// The process is shutting down. Not sent by a process that handed its
/// listeners to a successor (`handed_over`): the successor is the service.
pub fn stopping(handed_over: bool) {
    if enabled() && !handed_over {
        send(&[NotifyState::Stopping]);
    }
}
