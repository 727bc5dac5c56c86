//! Validation: turns the file types into the [`model`] or lists everything
//! that is wrong with them.
//!
//! Validation never stops at the first problem. Each check reports into a
//! shared list, pointing at the offending value (or at the item's id or name
//! when there is no better place), and carries on with a stand-in value so
//! the remaining checks still run. Only when the list is empty is the model
//! handed out.
//!
//! The checks are split by concern, each an `impl Validator` block of its
//! own: this file holds the core (server, listeners, admin, addresses and
//! durations) and the helpers they share; [`pools`] checks pools and their
//! backends, balancing and health checks; [`routes`] checks routes, their
//! matches and header rules, and the conflicts between them.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use humantime_serde::re::humantime;
use toml::Spanned;

use super::error::{ConfigError, Locator};
use super::file::{
    AccessLogFile, AdminFile, DurationText, FileConfig, ListenerFile, ListenerTlsFile, ServerFile,
};
use super::load::{ConsumerSource, Included};
use super::model::{self, Config};

mod cache;
mod client;
mod compression;
mod consumers;
mod cors;
mod forwarding;
mod jwt;
mod limit_store;
pub use consumers::consumer_id;
mod pools;
mod resilience;
mod routes;
mod split;

pub use consumers::MAX_PREFIX_LEN;

/// Grace period when `[server] grace_period` is not set.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(5);

/// Largest backend weight accepted (weights are relative; 1 is the default).
pub const MAX_WEIGHT: u32 = 1000;

const DURATION_EXAMPLES: &str = r#"write e.g. "500ms", "5s" or "1m 30s""#;

/// Validate `file` with the consumer files it `included` and build the
/// model, or return every error found (unsorted; the caller orders them).
pub(crate) fn validate(
    file: FileConfig,
    included: Included,
    loc: &Locator<'_>,
) -> Result<Config, Vec<ConfigError>> {
    let mut v = Validator {
        loc,
        errors: Vec::new(),
        path_rules: crate::target::PathRules::default(),
        own_addresses: Vec::new(),
        default_accuracy: Default::default(),
    };
    let config = v.config(file, included);
    if v.errors.is_empty() {
        Ok(config)
    } else {
        Err(v.errors)
    }
}

struct Validator<'a> {
    loc: &'a Locator<'a>,
    errors: Vec<ConfigError>,
    /// `[server.client]`'s path rules: route paths must be canonical under them.
    path_rules: crate::target::PathRules,
    /// The listeners' and the admin API's addresses, with what they are:
    /// no backend may be one of them.
    own_addresses: Vec<(SocketAddr, &'static str)>,
    /// `[limit_store] accuracy`: that of rate limits that do not say.
    default_accuracy: crate::ratelimit::Accuracy,
}

impl Validator<'_> {
    fn error(&mut self, span: Range<usize>, item: Option<&str>, message: impl Into<String>) {
        let error = self.loc.error(span, item.map(str::to_string), message);
        self.errors.push(error);
    }

    fn line_of(&self, span: &Range<usize>) -> usize {
        self.loc.line_col(span.start).0
    }

    fn config(&mut self, file: FileConfig, mut included: Included) -> Config {
        let server = self.server(file.server.as_ref());
        self.path_rules = server.client.paths;
        let listeners = self.listeners(file.listeners.as_ref());
        let admin = self.admin(file.admin.as_ref(), file.listeners.as_ref(), &listeners);
        self.own_addresses = listeners
            .iter()
            .map(|l| (l.address, "listener"))
            .chain([(admin.address, "admin address")])
            .collect();
        let pool_names: BTreeSet<String> = file.pools.keys().map(|k| k.get_ref().clone()).collect();
        let pools = file
            .pools
            .iter()
            .map(|(name, pool)| (name.get_ref().clone(), self.pool(name, pool)))
            .collect();
        self.fallbacks(&file.pools);
        let limit_store = self.limit_store(file.limit_store.as_ref());
        let cache = self.cache(file.cache.as_ref(), &limit_store);
        let routes = self.routes(&file.routes, &pool_names, &cache);
        let auth = self.auth(file.auth.as_ref());
        let access_log = self.access_log(file.access_log.as_ref());
        let names = consumers::RouteNames::of(&routes);
        let jwt_issuers = self.jwt_issuers(&file.jwt_issuers, &names);
        self.issuer_refs(&file.routes, &jwt_issuers);
        let mut registry = consumers::Registry::default();
        let mut all_consumers = self.consumers(&file.consumers, &names, &mut registry);
        let consumer_globs = file
            .consumer_files
            .iter()
            .filter(|p| p.get_ref().contains(['*', '?', '[']))
            .map(|p| self.resolve_path(p.get_ref()))
            .collect();
        let mut sources = ring::digest::Context::new(&ring::digest::SHA256);
        sources.update(self.loc.src().as_bytes());
        let mut consumer_files = Vec::new();
        self.errors.append(&mut included.errors);
        for source in included.consumer_files {
            let (name, more) = self.consumer_file(source, &names, &mut registry, &mut sources);
            consumer_files.push(name);
            all_consumers.extend(more);
        }
        Config {
            source: self.loc.file().to_string(),
            server,
            listeners,
            admin,
            pools,
            routes,
            auth,
            access_log,
            cache,
            consumers: all_consumers,
            jwt_issuers,
            limit_store,
            consumer_files,
            consumer_globs,
            source_digest: model::SourceDigest(
                sources.finish().as_ref().try_into().unwrap_or([0; 32]),
            ),
        }
    }

    fn access_log(&mut self, log: Option<&AccessLogFile>) -> model::AccessLogTarget {
        let Some(log) = log else {
            return model::AccessLogTarget::Stdout;
        };
        if log.enabled.as_ref().is_some_and(|e| !*e.get_ref()) {
            return model::AccessLogTarget::Off;
        }
        match &log.path {
            None => model::AccessLogTarget::Stdout,
            Some(p) if p.get_ref() == "-" => model::AccessLogTarget::Stdout,
            Some(p) if p.get_ref().is_empty() => {
                self.error(
                    p.span(),
                    Some("access_log"),
                    r#"path is empty: write "-" for stdout or a file path"#,
                );
                model::AccessLogTarget::Stdout
            }
            Some(p) => {
                let path = self.resolve_path(p.get_ref());
                if let Err(why) = appendable(&path) {
                    self.error(
                        p.span(),
                        Some("access_log"),
                        format!("path {}: {why}", path.display()),
                    );
                }
                model::AccessLogTarget::File(path)
            }
        }
    }

    // ---- consumer_files ------------------------------------------------

    /// Validate the consumers of one file `consumer_files` named (read
    /// and parsed by [`crate::config::load`]); its errors name that file.
    fn consumer_file(
        &mut self,
        source: ConsumerSource,
        routes: &consumers::RouteNames,
        registry: &mut consumers::Registry,
        sources: &mut ring::digest::Context,
    ) -> (String, Vec<model::Consumer>) {
        let ConsumerSource { name, src, parsed } = source;
        sources.update(name.as_bytes());
        sources.update(src.as_bytes());
        let parsed = match parsed {
            Ok(p) => p,
            Err(e) => {
                self.errors.push(e);
                return (name, Vec::new());
            }
        };
        let loc = Locator::new(&name, &src);
        let mut child = Validator {
            loc: &loc,
            errors: Vec::new(),
            path_rules: self.path_rules,
            own_addresses: Vec::new(),
            default_accuracy: self.default_accuracy,
        };
        let consumers = child.consumers(&parsed.consumers, routes, registry);
        self.errors.append(&mut child.errors);
        (name, consumers)
    }

    // ---- server, listeners, admin --------------------------------------

    fn server(&mut self, server: Option<&ServerFile>) -> model::ServerSettings {
        let mut settings = model::ServerSettings {
            threads: model::DEFAULT_THREADS,
            grace_period: DEFAULT_GRACE_PERIOD,
            upstream_keepalive: model::DEFAULT_UPSTREAM_KEEPALIVE,
            watch_config: true,
            client: model::ClientLimits::default(),
            via: None,
            trusted_proxies: model::TrustedProxies::default(),
        };
        let Some(server) = server else {
            return settings;
        };
        let item = Some("server");
        if let Some(threads) = &server.threads {
            if *threads.get_ref() == 0 {
                self.error(threads.span(), item, "threads must be at least 1");
            }
            settings.threads = *threads.get_ref();
        }
        if let Some(keepalive) = &server.upstream_keepalive {
            let n = *keepalive.get_ref();
            if !(1..=model::MAX_UPSTREAM_KEEPALIVE).contains(&n) {
                self.error(
                    keepalive.span(),
                    item,
                    format!(
                        "upstream_keepalive must be from 1 to {}",
                        model::MAX_UPSTREAM_KEEPALIVE
                    ),
                );
            }
            settings.upstream_keepalive = n;
        }
        if let Some(grace) = &server.grace_period {
            if let Some(d) = self.duration(grace, "grace_period", item) {
                settings.grace_period = d;
            }
        }
        if let Some(watch) = &server.watch_config {
            settings.watch_config = *watch.get_ref();
        }
        if let Some(client) = &server.client {
            settings.client = self.client_limits(client);
        }
        if let Some(trusted) = &server.trusted_proxies {
            settings.trusted_proxies = self.trusted_proxies(trusted);
        }
        if let Some(via) = &server.via {
            if is_token(via.get_ref()) {
                settings.via = Some(via.get_ref().clone());
            } else {
                self.error(
                    via.span(),
                    item,
                    format!(
                        "via {:?} must be a token (letters, digits and !#$%&'*+-.^_`|~, no spaces)",
                        via.get_ref()
                    ),
                );
            }
        }
        settings
    }

    fn listeners(
        &mut self,
        listeners: Option<&Spanned<Vec<ListenerFile>>>,
    ) -> Vec<model::Listener> {
        let Some(listeners) = listeners else {
            return vec![model::Listener {
                address: default_addr(model::DEFAULT_LISTEN),
                tls: None,
                redirect_https: None,
                hsts: None,
                proxy_protocol: None,
                h2c: false,
                ip: None,
            }];
        };
        if listeners.get_ref().is_empty() {
            self.error(
                listeners.span(),
                None,
                format!(
                    "listeners is empty; remove it to listen on {} or add a [[listeners]] table",
                    model::DEFAULT_LISTEN
                ),
            );
        }
        let mut seen: Vec<(SocketAddr, Range<usize>)> = Vec::new();
        let mut out = Vec::new();
        for listener in listeners.get_ref() {
            let text = listener.address.get_ref();
            let item = format!("listener {text:?}");
            let Some(address) = self.socket_addr(&listener.address, &item, "listener address")
            else {
                continue;
            };
            if let Some((other, span)) = seen.iter().find(|(other, _)| overlaps(*other, address)) {
                let line = self.line_of(span);
                let message = if *other == address {
                    format!("duplicate listener address {address} (also at line {line})")
                } else {
                    format!("address {address} overlaps listener {other} (line {line}): both bind port {}", address.port())
                };
                self.error(listener.address.span(), Some(&item), message);
            }
            seen.push((address, listener.address.span()));
            let tls = listener
                .tls
                .as_ref()
                .map(|t| self.listener_tls(t, listener.address.span(), &item));
            let redirect_https = listener.redirect_https.as_ref().and_then(|p| {
                if tls.is_some() {
                    self.error(
                        p.span(),
                        Some(&item),
                        "redirect_https is for plain listeners; this one has tls",
                    );
                    return None;
                }
                if *p.get_ref() == 0 {
                    self.error(
                        p.span(),
                        Some(&item),
                        "redirect_https must be a port from 1 to 65535",
                    );
                    return None;
                }
                Some(*p.get_ref())
            });
            let hsts = listener.hsts.as_ref().and_then(|h| {
                let value = h.get_ref();
                if tls.is_none() {
                    self.error(h.span(), Some(&item), "hsts is for TLS listeners; this one has no tls");
                    return None;
                }
                if !value.contains("max-age=") || http_value_invalid(value) {
                    self.error(h.span(), Some(&item), format!("hsts {value:?} must be a header value with max-age=, e.g. \"max-age=31536000; includeSubDomains\""));
                    return None;
                }
                Some(value.clone())
            });
            let proxy_protocol = listener
                .proxy_protocol
                .as_ref()
                .and_then(|p| self.proxy_protocol(p, &item));
            let h2c = listener.h2c.as_ref().is_some_and(|h| {
                if *h.get_ref() && tls.is_some() {
                    self.error(
                        h.span(),
                        Some(&item),
                        "h2c is HTTP/2 without TLS; a TLS listener offers h2 by ALPN already",
                    );
                    return false;
                }
                *h.get_ref()
            });
            let ip = listener.ip.as_ref().and_then(|f| self.ip_rules(f, &item));
            out.push(model::Listener {
                address,
                tls,
                redirect_https,
                hsts,
                proxy_protocol,
                h2c,
                ip,
            });
        }
        out
    }

    fn admin(
        &mut self,
        admin: Option<&AdminFile>,
        listener_file: Option<&Spanned<Vec<ListenerFile>>>,
        listeners: &[model::Listener],
    ) -> model::AdminSettings {
        let configured = admin.and_then(|a| a.address.as_ref());
        let address = match configured {
            Some(spanned) => match self.socket_addr(spanned, "admin", "admin address") {
                Some(a) => a,
                None => {
                    return model::AdminSettings {
                        address: default_addr(model::DEFAULT_ADMIN_LISTEN),
                        token_digest: None,
                        read_token_digest: None,
                        allow_unauthenticated: false,
                        hosts: Vec::new(),
                    }
                }
            },
            None => default_addr(model::DEFAULT_ADMIN_LISTEN),
        };
        // Listener spans, when the listeners come from the file (failed
        // addresses were skipped, so match them up by value).
        let listener_spans: Vec<(SocketAddr, Option<Range<usize>>)> = match listener_file {
            Some(file) => file
                .get_ref()
                .iter()
                .filter_map(|l| {
                    let a = l.address.get_ref().parse::<SocketAddr>().ok()?;
                    Some((a, Some(l.address.span())))
                })
                .collect(),
            None => listeners.iter().map(|l| (l.address, None)).collect(),
        };
        for (listener, span) in listener_spans {
            if !overlaps(listener, address) {
                continue;
            }
            match (configured, span) {
                (Some(admin), Some(span)) => {
                    let line = self.line_of(&span);
                    self.error(
                        admin.span(),
                        Some("admin"),
                        format!("address {address} collides with listener {listener} (line {line}); the admin API needs an address of its own"),
                    );
                }
                (Some(admin), None) => self.error(
                    admin.span(),
                    Some("admin"),
                    format!("address {address} collides with the default listener {listener}; the admin API needs an address of its own"),
                ),
                (None, Some(span)) => self.error(
                    span,
                    Some(&format!("listener \"{listener}\"")),
                    format!("address {listener} collides with the default admin address {address}; set [admin] address to move the admin API"),
                ),
                (None, None) => {}
            }
        }
        let token_digest = admin
            .and_then(|a| a.token_digest.as_ref())
            .and_then(|t| self.admin_digest(t, "token_digest"));
        let read_token_digest = admin
            .and_then(|a| a.read_token_digest.as_ref())
            .and_then(|t| {
                if token_digest.is_none() {
                    self.error(
                        t.span(),
                        Some("admin"),
                        "read_token_digest needs token_digest: without a token for writes, reloads and purges would be open to anyone while reads are not",
                    );
                }
                self.admin_digest(t, "read_token_digest")
            });
        let allow_unauthenticated = admin
            .and_then(|a| a.allow_unauthenticated.as_ref())
            .is_some_and(|a| *a.get_ref());
        if !address.ip().is_loopback() && token_digest.is_none() && !allow_unauthenticated {
            let span = configured.map_or(0..0, |c| c.span());
            self.error(
                span,
                Some("admin"),
                format!("address {address} is not loopback and the admin API has no token: anyone who can reach it could reload the config, purge the cache and read consumers and usage; set token_digest (`portcullis keys new` makes a token, `portcullis keys hash` its digest), or write allow_unauthenticated = true if only trusted hosts can reach {address}"),
            );
        }
        let mut hosts = Vec::new();
        for h in admin.and_then(|a| a.hosts.as_ref()).into_iter().flatten() {
            let name = h.get_ref().to_ascii_lowercase();
            if name.is_empty() || name.contains([':', '/', ' ']) || !name.is_ascii() {
                self.error(
                    h.span(),
                    Some("admin"),
                    format!(
                        "hosts: {:?} is not a host name (write it without scheme or port)",
                        h.get_ref()
                    ),
                );
            }
            hosts.push(name);
        }
        model::AdminSettings {
            address,
            token_digest,
            read_token_digest,
            allow_unauthenticated,
            hosts,
        }
    }

    fn admin_digest(&mut self, t: &Spanned<String>, key: &str) -> Option<[u8; 32]> {
        let digest = crate::keys::parse_digest(t.get_ref());
        if digest.is_none() {
            self.error(
                t.span(),
                Some("admin"),
                format!("{key} must be the SHA-256 of the admin token as 64 hex digits (`portcullis keys hash` prints it); never put the token itself in the config"),
            );
        }
        digest
    }

    fn listener_tls(
        &mut self,
        tls: &ListenerTlsFile,
        at: Range<usize>,
        item: &str,
    ) -> model::ListenerTls {
        let certs = &tls.certificates;
        if certs.is_empty() {
            self.error(
                at.clone(),
                Some(item),
                "tls.certificates is empty: give at least one certificate",
            );
        }
        if certs.iter().filter(|c| c.default).count() > 1 {
            self.error(
                at,
                Some(item),
                "more than one certificate has default = true",
            );
        }
        let base = std::path::Path::new(self.loc.file())
            .parent()
            .map(std::path::Path::to_path_buf);
        let resolve = |p: &str| match &base {
            Some(dir) if std::path::Path::new(p).is_relative() => dir.join(p),
            _ => std::path::PathBuf::from(p),
        };
        let mut out = Vec::new();
        for c in certs {
            let (line, column) = self.loc.line_col(c.cert.span().start);
            let entry = c;
            let mut names = Vec::new();
            for n in &entry.names {
                let name = n.get_ref().to_ascii_lowercase();
                let bare = name.strip_prefix("*.").unwrap_or(&name);
                if bare.is_empty()
                    || bare.contains('*')
                    || !bare.split('.').all(|l| {
                        !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    })
                {
                    self.error(
                        n.span(),
                        Some(item),
                        format!(
                            "invalid certificate name {:?}: write a host name or *.example.com",
                            n.get_ref()
                        ),
                    );
                    continue;
                }
                names.push(name);
            }
            for (what, p) in [("cert", &entry.cert), ("key", &entry.key)] {
                let path = resolve(p.get_ref());
                if let Err(e) = std::fs::metadata(&path) {
                    self.error(
                        p.span(),
                        Some(item),
                        format!("cannot read {what} file {}: {e}", path.display()),
                    );
                }
            }
            out.push(model::CertificateSpec {
                cert: resolve(entry.cert.get_ref()),
                key: resolve(entry.key.get_ref()),
                names,
                default: entry.default,
                at: model::Pos { line, column },
            });
        }
        let min_version = match tls.min_version.as_ref().map(|v| (v.get_ref().as_str(), v)) {
            None | Some(("1.2", _)) => model::TlsVersion::Tls12,
            Some(("1.3", _)) => model::TlsVersion::Tls13,
            Some((other, v)) => {
                self.error(
                    v.span(),
                    Some(item),
                    format!("min_version {other:?} is not supported: write \"1.2\" or \"1.3\""),
                );
                model::TlsVersion::Tls12
            }
        };
        let client_auth = self.client_auth(tls, item);
        model::ListenerTls {
            certificates: out,
            min_version,
            client_auth,
        }
    }

    fn client_auth(&mut self, tls: &ListenerTlsFile, item: &str) -> Option<model::ClientAuth> {
        let mode = tls.client_auth.as_ref()?;
        let required = match mode.get_ref().as_str() {
            "required" => true,
            "optional" => false,
            other => {
                self.error(
                    mode.span(),
                    Some(item),
                    format!("client_auth {other:?} is not supported: write \"required\" or \"optional\""),
                );
                return None;
            }
        };
        let Some(ca) = tls.client_ca.as_ref() else {
            self.error(
                mode.span(),
                Some(item),
                "client_auth needs client_ca, the CA bundle to verify against",
            );
            return None;
        };
        let ca_file = self.file_ref(ca);
        if let Err(e) = std::fs::metadata(&ca_file.path) {
            self.error(
                ca.span(),
                Some(item),
                format!("cannot read client_ca {}: {e}", ca_file.display()),
            );
        }
        let subject_header = match &tls.client_subject_header {
            Some(h) if !is_token(h.get_ref()) => {
                self.error(
                    h.span(),
                    Some(item),
                    format!("{:?} is not a valid header name", h.get_ref()),
                );
                model::DEFAULT_CLIENT_SUBJECT_HEADER.to_string()
            }
            Some(h) => h.get_ref().to_ascii_lowercase(),
            None => model::DEFAULT_CLIENT_SUBJECT_HEADER.to_string(),
        };
        Some(model::ClientAuth {
            required,
            ca_file,
            subject_header,
        })
    }

    /// The file `p` names, resolved, with its position.
    fn file_ref(&self, p: &Spanned<String>) -> model::FileRef {
        let (line, column) = self.loc.line_col(p.span().start);
        model::FileRef {
            path: self.resolve_path(p.get_ref()),
            at: model::Pos { line, column },
        }
    }

    /// `p` resolved against the config file's directory when relative.
    fn resolve_path(&self, p: &str) -> std::path::PathBuf {
        super::load::resolve(self.loc.file(), p)
    }

    fn socket_addr(&mut self, s: &Spanned<String>, item: &str, what: &str) -> Option<SocketAddr> {
        match s.get_ref().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    s.span(),
                    Some(item),
                    format!(
                        r#"{what} {:?} {} (e.g. "127.0.0.1:8080" or "[::1]:8080")"#,
                        s.get_ref(),
                        not_an_address(s.get_ref())
                    ),
                );
                None
            }
        }
    }

    /// Parse a humantime duration greater than 0; `what` names the key in
    /// messages.
    fn duration(
        &mut self,
        s: &Spanned<DurationText>,
        what: &str,
        item: Option<&str>,
    ) -> Option<Duration> {
        self.duration_from(s, what, item, false)
    }

    /// [`Self::duration`], with `zero_ok`: `"0s"` is accepted too (a key
    /// where zero turns something off).
    fn duration_from(
        &mut self,
        s: &Spanned<DurationText>,
        what: &str,
        item: Option<&str>,
        zero_ok: bool,
    ) -> Option<Duration> {
        let text = s.get_ref();
        match humantime::parse_duration(text) {
            Ok(d) if d.is_zero() && !zero_ok => {
                self.error(s.span(), item, format!("{what} must be greater than 0"));
                None
            }
            Ok(d) if d > longest(what) => {
                self.error(
                    s.span(),
                    item,
                    format!(
                        "{what} must be at most {}, not {text:?}",
                        humantime::format_duration(longest(what))
                    ),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                let reason = match e {
                    humantime::DurationError::UnknownUnit { unit, .. } if !unit.is_empty() => {
                        format!("unknown time unit {unit:?}")
                    }
                    other => other.to_string(),
                };
                self.error(
                    s.span(),
                    item,
                    format!("{what}: {text:?} is not a duration ({reason}); {DURATION_EXAMPLES}"),
                );
                None
            }
        }
    }
}

/// Pool names and route ids: `[A-Za-z0-9_.-]+`.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// An HTTP token (RFC 9110 `tchar`+): method names and header names.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// Printable ASCII without spaces.
fn is_visible_ascii(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_graphic())
}

fn default_addr(text: &str) -> SocketAddr {
    // The defaults are constants written as valid literals; the tests check
    // that they parse.
    text.parse()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)))
}

/// Two bind addresses collide when they use the same non-zero port and one
/// covers the other: the same IP, or an unspecified address of the same family
/// (`[::]` also covers IPv4, as a dual-stack socket does by default).
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    fn covers(a: SocketAddr, b: SocketAddr) -> bool {
        a.ip() == b.ip() || (a.ip().is_unspecified() && (a.is_ipv6() || b.is_ipv4()))
    }
    a.port() != 0 && a.port() == b.port() && (covers(a, b) || covers(b, a))
}

#[cfg(test)]
mod tests;

/// Whether `value` cannot be sent as a header value (visible ASCII and spaces only).
fn http_value_invalid(value: &str) -> bool {
    !value.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
}

/// Whether this process can append to the log file at `path`, as the
/// access-log writer will: an existing file is opened for appending; a
/// missing one is created and removed again (the only exact answer for
/// permissions, read-only mounts and the like). Like `nginx -t`, `check`
/// and every reload find a log that `run` could not write.
fn appendable(path: &std::path::Path) -> Result<(), String> {
    use std::fs::OpenOptions;
    if path.is_dir() {
        return Err("is a directory, not a file".to_string());
    }
    if path.exists() {
        return OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
            .map_err(|e| format!("cannot be opened for appending ({e})"));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!("directory {} does not exist", dir.display()));
    }
    match OpenOptions::new().append(true).create_new(true).open(path) {
        Ok(_) => {
            let _ = std::fs::remove_file(path);
            Ok(())
        }
        // Created in between by someone else: it exists now, try it.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
            .map_err(|e| format!("cannot be opened for appending ({e})")),
        Err(e) => Err(format!("cannot be created in {} ({e})", dir.display())),
    }
}

/// Why `text` is not an `ip:port` socket address, in words.
pub(super) fn not_an_address(text: &str) -> String {
    let Some((host, port)) = text.rsplit_once(':') else {
        return "is not an ip:port address: it has no port".to_string();
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let is_ip = host.parse::<std::net::IpAddr>().is_ok();
    if is_ip && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
        return format!("is not an ip:port address: port {port} is out of range (0-65535)");
    }
    if is_ip {
        return format!("is not an ip:port address: {port:?} is not a port number");
    }
    "is not an ip:port address: host names are not supported, give an IP address".to_string()
}

/// The longest a duration setting may be (`what` names it as messages
/// do): anything longer is a typo or a misunderstanding, not a setting.
pub(super) fn longest(what: &str) -> Duration {
    const HOUR: Duration = Duration::from_secs(3600);
    const DAY: Duration = Duration::from_secs(24 * 3600);
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    let key = what.rsplit('.').next().unwrap_or(what);
    match key {
        "grace_period" | "interval" => HOUR,
        "ttl" | "stale_while_revalidate" | "stale_if_error" => YEAR,
        // Timeouts, breaker and ejection windows.
        _ => DAY,
    }
}
