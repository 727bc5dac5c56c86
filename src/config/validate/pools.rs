//! Pool checks: the backends and their weights, the balancing policy and
//! its hash key, timeouts (shared with routes) and the active health check.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;

use humantime_serde::re::humantime;
use toml::Spanned;

use super::{is_name, is_token, is_visible_ascii, Validator, MAX_WEIGHT};
use crate::config::file::{
    BackendEntry, DurationText, HealthCheckFile, PoolFile, StatusText, TimeoutsFile,
    UpstreamTlsFile,
};
use crate::config::model;

const BALANCES: &str = "round_robin, random, least_requests, consistent_hash";
const HASH_KEYS: &str = "client_ip, path, header:NAME or cookie:NAME";

impl Validator<'_> {
    pub(super) fn pool(&mut self, name: &Spanned<String>, pool: &PoolFile) -> model::PoolConfig {
        let item = format!("pool {:?}", name.get_ref());
        let item = item.as_str();
        if !is_name(name.get_ref()) {
            self.error(
                name.span(),
                Some(item),
                "pool names may only contain letters, digits, '_', '.' and '-'",
            );
        }
        let backends = self.backends(pool, item);
        let balance = self.balance(pool, item);
        let timeouts = self.timeouts(pool.timeouts.as_ref(), item);
        let timeouts = model::TimeoutsConfig {
            connect: timeouts.connect.or(Some(model::DEFAULT_CONNECT_TIMEOUT)),
            read: timeouts.read.or(Some(model::DEFAULT_READ_TIMEOUT)),
            write: timeouts.write.or(Some(model::DEFAULT_WRITE_TIMEOUT)),
            idle: timeouts.idle.or(Some(model::DEFAULT_IDLE_TIMEOUT)),
            total: timeouts.total,
        };
        let health_check = pool
            .health_check
            .as_ref()
            .map(|hc| self.health_check(hc, item));
        let mut out = model::PoolConfig {
            name: name.get_ref().clone(),
            backends,
            balance,
            timeouts,
            retries: pool
                .retries
                .as_ref()
                .map_or(model::DEFAULT_RETRIES, |r| *r.get_ref()),
            health_check,
            tls: pool.tls.as_ref().map(|t| self.upstream_tls(t, item)),
            h2c: self.h2c(pool, item),
            max_h2_streams: model::DEFAULT_MAX_H2_STREAMS,
            fallback: None,
            max_in_flight: None,
            outlier: None,
            breaker: None,
            retry_budget: None,
        };
        self.resilience(pool, item, &mut out);
        out.max_h2_streams = self.max_h2_streams(pool, &out, item);
        out
    }

    /// `max_h2_streams`: at least 1, on a pool that speaks HTTP/2.
    fn max_h2_streams(&mut self, pool: &PoolFile, out: &model::PoolConfig, item: &str) -> u32 {
        let Some(n) = &pool.max_h2_streams else {
            return model::DEFAULT_MAX_H2_STREAMS;
        };
        let h2 = out.h2c || out.tls.as_ref().is_some_and(|t| t.h2);
        if !h2 {
            self.error(
                n.span(),
                Some(item),
                "max_h2_streams is for HTTP/2 pools: set h2c = true, or protocol = \"h2\" in [pools.NAME.tls]",
            );
        } else if *n.get_ref() == 0 {
            self.error(n.span(), Some(item), "max_h2_streams must be at least 1");
        }
        (*n.get_ref()).max(1)
    }

    /// `h2c = true`: HTTP/2 without TLS; with `[pools.NAME.tls]` the
    /// protocol is TLS's `h2` instead.
    fn h2c(&mut self, pool: &PoolFile, item: &str) -> bool {
        let Some(h2c) = &pool.h2c else {
            return false;
        };
        if *h2c.get_ref() && pool.tls.is_some() {
            self.error(
                h2c.span(),
                Some(item),
                "h2c is HTTP/2 without TLS; for HTTP/2 over TLS set protocol = \"h2\" in [pools.NAME.tls]",
            );
        }
        *h2c.get_ref()
    }

    fn backends(&mut self, pool: &PoolFile, item: &str) -> Vec<model::BackendConfig> {
        if pool.backends.get_ref().is_empty() {
            self.error(
                pool.backends.span(),
                Some(item),
                r#"backends is empty; list at least one "ip:port""#,
            );
        }
        let mut out = Vec::new();
        let mut seen: HashMap<SocketAddr, Range<usize>> = HashMap::new();
        for entry in pool.backends.get_ref() {
            let (text, span, weight) = match entry.get_ref() {
                BackendEntry::Address(a) => (a.as_str(), entry.span(), None),
                BackendEntry::Table(t) => (
                    t.address.get_ref().as_str(),
                    t.address.span(),
                    t.weight.as_ref(),
                ),
            };
            let weight = match weight {
                Some(w) => {
                    let value = *w.get_ref();
                    if !(1..=MAX_WEIGHT).contains(&value) {
                        self.error(
                            w.span(),
                            Some(item),
                            format!(
                                "backend weight must be between 1 and {MAX_WEIGHT}, got {value}"
                            ),
                        );
                    }
                    value
                }
                None => model::DEFAULT_WEIGHT,
            };
            let address = match text.parse::<SocketAddr>() {
                Ok(a) if a.port() == 0 => {
                    self.error(
                        span,
                        Some(item),
                        format!("backend address {text:?} has port 0"),
                    );
                    continue;
                }
                Ok(a) => a,
                Err(_) => {
                    self.error(
                        span,
                        Some(item),
                        format!(
                            r#"backend address {text:?} {} (e.g. "127.0.0.1:9001")"#,
                            super::not_an_address(text)
                        ),
                    );
                    continue;
                }
            };
            if let Some((own, what)) = self
                .own_addresses
                .iter()
                .find(|(own, _)| loops_to(address, *own))
            {
                self.error(
                    span.clone(),
                    Some(item),
                    format!("backend {address} is this gateway's own {what} {own}: requests would loop back into the gateway"),
                );
            }
            if let Some(first) = seen.get(&address) {
                let line = self.line_of(first);
                self.error(
                    span,
                    Some(item),
                    format!("duplicate backend {address} (first listed at line {line})"),
                );
                continue;
            }
            seen.insert(address, span);
            out.push(model::BackendConfig { address, weight });
        }
        out
    }

    fn balance(&mut self, pool: &PoolFile, item: &str) -> model::Balance {
        let kind = match &pool.balance {
            None => Some("round_robin"),
            Some(b) => match b.get_ref().as_str() {
                k @ ("round_robin" | "random" | "least_requests" | "consistent_hash") => Some(k),
                other => {
                    self.error(
                        b.span(),
                        Some(item),
                        format!("unknown balance {other:?}; expected one of {BALANCES}"),
                    );
                    None
                }
            },
        };
        let hash_key = pool.hash_key.as_ref().and_then(|k| self.hash_key(k, item));
        match (kind, &pool.hash_key) {
            (Some("consistent_hash"), None) => {
                let span = pool.balance.as_ref().map(|b| b.span()).unwrap_or_default();
                self.error(
                    span,
                    Some(item),
                    format!(r#"balance = "consistent_hash" needs a hash_key ({HASH_KEYS})"#),
                );
            }
            (Some(k), Some(key)) if k != "consistent_hash" => self.error(
                key.span(),
                Some(item),
                format!(
                    r#"hash_key only applies to balance = "consistent_hash" (balance is "{k}")"#
                ),
            ),
            _ => {}
        }
        match kind {
            Some("random") => model::Balance::Random,
            Some("least_requests") => model::Balance::LeastRequests,
            Some("consistent_hash") => {
                model::Balance::ConsistentHash(hash_key.unwrap_or(model::HashKey::ClientIp))
            }
            _ => model::Balance::RoundRobin,
        }
    }

    fn hash_key(&mut self, key: &Spanned<String>, item: &str) -> Option<model::HashKey> {
        let text = key.get_ref().as_str();
        let parsed = match text {
            "client_ip" => Some(model::HashKey::ClientIp),
            "path" => Some(model::HashKey::Path),
            _ => match text.split_once(':') {
                Some(("header", name)) if is_token(name) => {
                    Some(model::HashKey::Header(name.to_ascii_lowercase()))
                }
                Some(("cookie", name)) if is_token(name) => {
                    Some(model::HashKey::Cookie(name.to_string()))
                }
                _ => None,
            },
        };
        if parsed.is_none() {
            let message = match text.split_once(':') {
                Some((kind @ ("header" | "cookie"), name)) => {
                    format!("invalid hash_key {text:?}: {name:?} is not a valid {kind} name")
                }
                _ => format!("invalid hash_key {text:?}; expected {HASH_KEYS}"),
            };
            self.error(key.span(), Some(item), message);
        }
        parsed
    }

    /// Parse a `timeouts` table; only what is set. Zero is an error.
    pub(super) fn timeouts(
        &mut self,
        t: Option<&TimeoutsFile>,
        item: &str,
    ) -> model::TimeoutsConfig {
        let Some(t) = t else {
            return model::TimeoutsConfig::default();
        };
        let mut one = |v: &Option<Spanned<DurationText>>, key: &str| {
            v.as_ref()
                .and_then(|s| self.duration(s, &format!("timeouts.{key}"), Some(item)))
        };
        model::TimeoutsConfig {
            connect: one(&t.connect, "connect"),
            read: one(&t.read, "read"),
            write: one(&t.write, "write"),
            idle: one(&t.idle, "idle"),
            total: one(&t.total, "total"),
        }
    }

    fn health_check(&mut self, hc: &HealthCheckFile, item: &str) -> model::HealthCheck {
        let kind = match hc.kind.get_ref().as_str() {
            "http" => {
                let path = match &hc.path {
                    Some(p) => {
                        let text = p.get_ref();
                        if !text.starts_with('/') {
                            self.error(
                                p.span(),
                                Some(item),
                                format!("health_check.path {text:?} must start with '/'"),
                            );
                        } else if !is_visible_ascii(text) {
                            self.error(
                                p.span(),
                                Some(item),
                                "health_check.path must not contain spaces or control characters",
                            );
                        }
                        text.clone()
                    }
                    None => {
                        self.error(
                            hc.kind.span(),
                            Some(item),
                            r#"health_check type = "http" needs a path, e.g. path = "/healthz""#,
                        );
                        String::new()
                    }
                };
                let host = hc.host.as_ref().map(|h| {
                    if h.get_ref().is_empty() || !is_visible_ascii(h.get_ref()) {
                        self.error(h.span(), Some(item), "health_check.host must be a non-empty host name without spaces or control characters");
                    }
                    h.get_ref().clone()
                });
                let expected_status = match &hc.expected_status {
                    Some(s) => self.status_range(s, item).unwrap_or((200, 399)),
                    None => (200, 399),
                };
                Some(model::HealthCheckKind::Http {
                    path,
                    host,
                    expected_status,
                })
            }
            "grpc" => {
                self.only_for_http(hc, item, "grpc");
                let service = hc.service.as_ref().map_or(String::new(), |s| {
                    if !s.get_ref().bytes().all(|b| b.is_ascii_graphic()) {
                        self.error(
                            s.span(),
                            Some(item),
                            "health_check.service must be a service name like \"orders.v1.Orders\" (no spaces)",
                        );
                    }
                    s.get_ref().clone()
                });
                Some(model::HealthCheckKind::Grpc { service })
            }
            "tcp" => {
                self.only_for_http(hc, item, "tcp");
                Some(model::HealthCheckKind::Tcp)
            }
            other => {
                self.error(
                    hc.kind.span(),
                    Some(item),
                    format!("unknown health_check type {other:?}; expected http, tcp or grpc"),
                );
                None
            }
        };
        if let (Some(s), Some(model::HealthCheckKind::Http { .. } | model::HealthCheckKind::Tcp)) =
            (&hc.service, &kind)
        {
            self.error(
                s.span(),
                Some(item),
                "health_check.service only applies to type = \"grpc\"",
            );
        }
        self.health_check_timing(hc, item, kind)
    }

    /// `path`, `host` and `expected_status` belong to `type = "http"`.
    fn only_for_http(&mut self, hc: &HealthCheckFile, item: &str, kind: &str) {
        let http_only = [
            ("path", hc.path.as_ref().map(|s| s.span())),
            ("host", hc.host.as_ref().map(|s| s.span())),
            (
                "expected_status",
                hc.expected_status.as_ref().map(|s| s.span()),
            ),
        ];
        for (key, span) in http_only {
            if let Some(span) = span {
                self.error(
                    span,
                    Some(item),
                    format!("health_check.{key} only applies to type = \"http\", not {kind:?}"),
                );
            }
        }
    }

    fn health_check_timing(
        &mut self,
        hc: &HealthCheckFile,
        item: &str,
        kind: Option<model::HealthCheckKind>,
    ) -> model::HealthCheck {
        let interval = hc
            .interval
            .as_ref()
            .and_then(|s| self.duration(s, "health_check.interval", Some(item)));
        let timeout = hc
            .timeout
            .as_ref()
            .and_then(|s| self.duration(s, "health_check.timeout", Some(item)));
        let interval_or_default = interval.unwrap_or(model::DEFAULT_HC_INTERVAL);
        let timeout_or_default = timeout.unwrap_or(model::DEFAULT_HC_TIMEOUT);
        if timeout_or_default > interval_or_default {
            // Point at whichever of the two the file sets (the timeout if both).
            let span = hc
                .timeout
                .as_ref()
                .filter(|_| timeout.is_some())
                .or(hc.interval.as_ref().filter(|_| interval.is_some()))
                .map(|s| s.span());
            if let Some(span) = span {
                self.error(
                    span,
                    Some(item),
                    format!(
                        "health_check.timeout ({}) must not be longer than health_check.interval ({})",
                        humantime::format_duration(timeout_or_default),
                        humantime::format_duration(interval_or_default)
                    ),
                );
            }
        }
        let mut threshold = |v: &Option<Spanned<u32>>, key: &str, default: u32| match v {
            Some(t) if *t.get_ref() == 0 => {
                self.error(
                    t.span(),
                    Some(item),
                    format!("health_check.{key} must be greater than 0"),
                );
                default
            }
            Some(t) => *t.get_ref(),
            None => default,
        };
        let healthy_threshold = threshold(
            &hc.healthy_threshold,
            "healthy_threshold",
            model::DEFAULT_HC_HEALTHY_THRESHOLD,
        );
        let unhealthy_threshold = threshold(
            &hc.unhealthy_threshold,
            "unhealthy_threshold",
            model::DEFAULT_HC_UNHEALTHY_THRESHOLD,
        );
        model::HealthCheck {
            kind: kind.unwrap_or(model::HealthCheckKind::Tcp),
            interval: interval_or_default,
            timeout: timeout_or_default,
            healthy_threshold,
            unhealthy_threshold,
        }
    }

    fn status_range(&mut self, s: &Spanned<StatusText>, item: &str) -> Option<(u16, u16)> {
        let text = s.get_ref().0.as_str();
        let (low, high) = text.split_once('-').unwrap_or((text, text));
        let parse = |p: &str| {
            p.trim()
                .parse::<u16>()
                .ok()
                .filter(|n| (100..=599).contains(n))
        };
        match (parse(low), parse(high)) {
            (Some(l), Some(h)) if l <= h => Some((l, h)),
            _ => {
                self.error(
                    s.span(),
                    Some(item),
                    format!(r#"invalid health_check.expected_status {text:?}; expected a status like "200" or a range like "200-399", within 100-599"#),
                );
                None
            }
        }
    }
}

impl Validator<'_> {
    fn upstream_tls(&mut self, tls: &UpstreamTlsFile, item: &str) -> model::UpstreamTls {
        let path = |v: &mut Self, p: &Spanned<String>, what: &str| {
            let resolved = v.file_ref(p);
            if let Err(e) = std::fs::metadata(&resolved.path) {
                v.error(
                    p.span(),
                    Some(item),
                    format!("cannot read {what} {}: {e}", resolved.display()),
                );
            }
            resolved
        };
        let ca_file = tls.ca_file.as_ref().map(|p| path(self, p, "ca_file"));
        let client_cert = match (&tls.client_cert, &tls.client_key) {
            (Some(c), Some(k)) => Some((path(self, c, "client_cert"), path(self, k, "client_key"))),
            (None, None) => None,
            (Some(one), None) | (None, Some(one)) => {
                self.error(
                    one.span(),
                    Some(item),
                    "client_cert and client_key go together",
                );
                None
            }
        };
        let h2 = match tls.protocol.as_ref().map(|p| (p.get_ref().as_str(), p)) {
            None | Some(("http1", _)) => false,
            Some(("h2", _)) => true,
            Some((other, p)) => {
                self.error(
                    p.span(),
                    Some(item),
                    format!("protocol {other:?} is not supported: write \"http1\" or \"h2\""),
                );
                false
            }
        };
        model::UpstreamTls {
            sni: tls.sni.as_ref().map(|s| s.get_ref().to_ascii_lowercase()),
            ca_file,
            verify: tls.verify.as_ref().is_none_or(|v| *v.get_ref()),
            client_cert,
            h2,
        }
    }
}

/// Whether a connection to `backend` reaches `own`, an address this
/// gateway listens on: the same address, or the same port of a wildcard
/// listener (0.0.0.0 or [::]) on a loopback or local address. Port 0 (a
/// port picked at start-up) never matches.
fn loops_to(backend: SocketAddr, own: SocketAddr) -> bool {
    if own.port() == 0 || backend.port() != own.port() {
        return false;
    }
    if backend.ip() == own.ip() {
        return true;
    }
    let ip = backend.ip();
    own.ip().is_unspecified()
        && (ip.is_loopback()
            || ip.is_unspecified()
            // An address of this host: binding to it works.
            || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok())
}

#[cfg(test)]
mod loop_tests {
    use super::loops_to;

    #[test]
    fn a_backend_on_the_gateways_own_address_loops() {
        let a = |s: &str| s.parse().unwrap();
        assert!(loops_to(a("127.0.0.1:8080"), a("127.0.0.1:8080")));
        assert!(loops_to(a("127.0.0.1:8080"), a("0.0.0.0:8080")));
        assert!(loops_to(a("127.0.0.2:8080"), a("0.0.0.0:8080")));
        assert!(loops_to(a("[::1]:8080"), a("[::]:8080")));
        assert!(!loops_to(a("127.0.0.1:8081"), a("0.0.0.0:8080")));
        assert!(!loops_to(a("192.0.2.10:8080"), a("0.0.0.0:8080")));
        assert!(!loops_to(a("127.0.0.1:8080"), a("127.0.0.1:0")));
        assert!(!loops_to(a("127.0.0.2:8080"), a("127.0.0.1:8080")));
    }
}
