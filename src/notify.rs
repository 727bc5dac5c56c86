//! systemd notifications (`sd_notify`, for `Type=notify` units): `READY=1`
//! once every proxy listener accepts connections (what `/readyz` checks),
//! `RELOADING=1` and `READY=1` around every reload with its outcome in
//! `STATUS=`, `WATCHDOG=1` at half the unit's `WatchdogSec`, and
//! `STOPPING=1` on shutdown; after a binary upgrade the successor sends
//! `MAINPID=` with its `READY=1` (see `upgrade.rs`). Outside systemd (no `NOTIFY_SOCKET`) all of
//! this does nothing.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tracing::warn;

use crate::gateway::Gateway;

/// How often readiness is re-checked until the listeners accept.
const READY_POLL: Duration = Duration::from_millis(20);

fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        warn!(error = %e, "cannot notify systemd");
    }
}

/// On the control runtime: tell systemd when the gateway is ready, and
/// keep its watchdog fed.
pub fn start(gateway: Arc<Gateway>) {
    if !enabled() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(READY_POLL);
        while !crate::admin::ready::not_ready(&gateway).is_empty() {
            tick.tick().await;
        }
        let status = format!("serving {}", gateway.snapshot().summary());
        if crate::upgrade::is_successor() {
            // Took the listeners over: this process is the service now.
            let pid = NotifyState::MainPid(std::process::id());
            send(&[pid, NotifyState::Ready, NotifyState::Status(&status)]);
        } else {
            send(&[NotifyState::Ready, NotifyState::Status(&status)]);
        }
    });
    if let Some(period) = sd_notify::watchdog_enabled() {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period / 2);
            loop {
                tick.tick().await;
                send(&[NotifyState::Watchdog]);
            }
        });
    }
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

/// The process is shutting down (not when it drains after handing its
/// listeners to a successor, which is the service now).
pub fn stopping() {
    if enabled() && !crate::upgrade::handed_over() {
        send(&[NotifyState::Stopping]);
    }
}
