//! Settings read at start-up only: listener addresses and kinds (with
//! their redirect, HSTS and PROXY protocol policy), the admin address, `[server]` threads,
//! grace period, upstream keep-alive and file watching, whether the
//! access log is on at all, `[limit_store]` (its connection, and where
//! counters live) and `[cache.shared]`.
//!
//! A reload cannot apply them, so the config it commits keeps the values
//! that run ([`keep_running`]): `/-/config` shows what is running, and a
//! later reload compares the file with that. The settings where the file
//! differs are a pending restart ([`pending`]), shown in the reload answer,
//! `/readyz` and `portcullis_restart_required{reason}`, and cleared as soon
//! as the file matches what runs again.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use crate::config::model::{AccessLogTarget, Config, Listener, ProxyProtocol};

/// Every reason a restart may be required: the label values of
/// `portcullis_restart_required`, in a fixed order.
pub const REASONS: [&str; 9] = [
    "listeners",
    "admin.address",
    "server.threads",
    "server.grace_period",
    "server.upstream_keepalive",
    "server.watch_config",
    "access_log.enabled",
    "limit_store",
    "cache.shared",
];

/// What a listener is, as far as binding it goes: its address, plain or
/// TLS, and the policies fixed when it was bound. Certificates reload live.
type Shape = (
    SocketAddr,
    bool,
    Option<u16>,
    Option<String>,
    Option<ProxyProtocol>,
    bool,
);

fn shape(l: &Listener) -> Shape {
    (
        l.address,
        l.tls.is_some(),
        l.redirect_https,
        l.hsts.clone(),
        l.proxy_protocol,
        l.h2c,
    )
}

fn shapes(c: &Config) -> BTreeSet<Shape> {
    c.listeners.iter().map(shape).collect()
}

fn same_listeners(a: &Config, b: &Config) -> bool {
    a.listeners.len() == b.listeners.len() && shapes(a) == shapes(b)
}

fn log_off(c: &Config) -> bool {
    c.access_log == AccessLogTarget::Off
}

/// The start-up-only settings of `file` that differ from `running`, as
/// [`REASONS`] entries in their order.
pub fn pending(running: &Config, file: &Config) -> Vec<&'static str> {
    let (a, b) = (&running.server, &file.server);
    let differs = [
        !same_listeners(running, file),
        running.admin.address != file.admin.address,
        a.threads != b.threads,
        a.grace_period != b.grace_period,
        a.upstream_keepalive != b.upstream_keepalive,
        a.watch_config != b.watch_config,
        log_off(running) != log_off(file),
        running.limit_store != file.limit_store,
        running.cache.shared != file.cache.shared,
    ];
    REASONS
        .iter()
        .zip(differs)
        .filter_map(|(reason, differs)| differs.then_some(*reason))
        .collect()
}

/// Make `file` carry the start-up-only settings of `running`, so that what
/// is committed is what runs. A listener that runs unchanged in shape takes
/// the file's TLS settings (certificates reload live); one the file drops
/// or reshapes keeps running as it was bound.
pub fn keep_running(running: &Config, file: &mut Config) {
    if !same_listeners(running, file) {
        file.listeners = running
            .listeners
            .iter()
            .map(|r| {
                file.listeners
                    .iter()
                    .find(|f| shape(f) == shape(r))
                    .unwrap_or(r)
                    .clone()
            })
            .collect();
    }
    file.admin.address = running.admin.address;
    let (a, b) = (&running.server, &mut file.server);
    b.threads = a.threads;
    b.grace_period = a.grace_period;
    b.upstream_keepalive = a.upstream_keepalive;
    b.watch_config = a.watch_config;
    if log_off(running) != log_off(file) {
        file.access_log = running.access_log.clone();
    }
    file.limit_store = running.limit_store.clone();
    file.cache.shared = running.cache.shared.clone();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;

    const BASE: &str = "[pools.a]\nbackends = [\"127.0.0.1:1\"]\n[[routes]]\nid = \"r\"\npath = \"/\"\npool = \"a\"\n";

    fn config(extra: &str) -> Config {
        parse_str(&format!("{extra}{BASE}"), "f.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn start_up_settings_stay_as_they_run_and_are_reported_until_undone() {
        let running =
            config("[server]\nthreads = 2\n[[listeners]]\naddress = \"127.0.0.1:8080\"\n");
        let edited = "[server]\nthreads = 4\ngrace_period = \"9s\"\n[[listeners]]\naddress = \"127.0.0.1:8081\"\n[admin]\naddress = \"127.0.0.1:9999\"\n[access_log]\nenabled = false\n";
        let mut file = config(edited);
        assert_eq!(
            pending(&running, &file),
            [
                "listeners",
                "admin.address",
                "server.threads",
                "server.grace_period",
                "access_log.enabled"
            ]
        );
        keep_running(&running, &mut file);
        assert_eq!(file.listeners, running.listeners);
        assert_eq!(file.admin.address, running.admin.address);
        assert_eq!(file.server.threads, 2);
        assert_eq!(file.access_log, running.access_log);
        // Live settings of the file are kept.
        assert_eq!(file.routes, running.routes);
        assert!(pending(&running, &file).is_empty());
        // The file undone: nothing pending.
        assert!(pending(&running, &running.clone()).is_empty());
    }
}
