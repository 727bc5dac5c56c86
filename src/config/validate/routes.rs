//! Route checks: ids, the request match (hosts, path, methods), header
//! rules, the pool reference, and the conflicts between routes that would
//! claim the same requests.

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;

use toml::Spanned;

use super::{is_name, is_token, is_visible_ascii, Validator};
use crate::config::file::{HeaderRulesFile, RouteFile};
use crate::config::model;

/// Headers that frame the message or belong to one connection. Rewriting them
/// would corrupt the exchange, so header rules may neither set nor remove them.
const PROTECTED_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// What a route matches, kept to detect conflicts between routes.
struct MatchKey {
    index: usize,
    hosts: BTreeSet<model::HostPattern>,
    path: model::PathMatch,
    methods: BTreeSet<String>,
}

impl Validator<'_> {
    pub(super) fn routes(
        &mut self,
        routes: &[RouteFile],
        pools: &BTreeSet<String>,
        cache: &model::CacheSettings,
    ) -> Vec<model::RouteConfig> {
        // ahash: these maps hold one entry per route (10,000 and more), and
        // the keys come from the operator's own file.
        let mut ids: HashMap<&str, Range<usize>, ahash::RandomState> =
            HashMap::with_capacity_and_hasher(routes.len(), ahash::RandomState::new());
        let mut keys = Vec::with_capacity(routes.len());
        let mut out = Vec::with_capacity(routes.len());
        for (index, route) in routes.iter().enumerate() {
            let id = route.id.get_ref().as_str();
            let item = format!("route {id:?}");
            if !is_name(id) {
                self.error(
                    route.id.span(),
                    Some(&item),
                    "route ids may only contain letters, digits, '_', '.' and '-'",
                );
            }
            if let Some(first) = ids.get(id) {
                let line = self.line_of(first);
                self.error(
                    route.id.span(),
                    Some(&item),
                    format!("duplicate route id {id:?} (first used at line {line})"),
                );
            } else {
                ids.insert(id, route.id.span());
            }
            let (mut model_route, key) = self.route(index, route, &item, pools);
            model_route.cache =
                self.route_cache(route.cache.as_ref(), cache, &model_route.auth, &item);
            keys.extend(key);
            out.push(model_route);
        }
        self.conflicts(routes, &keys);
        out
    }

    /// Build one route; the match key is `None` when its hosts, path or
    /// methods had errors (so no conflict is reported on a guess).
    fn route(
        &mut self,
        index: usize,
        route: &RouteFile,
        item: &str,
        pools: &BTreeSet<String>,
    ) -> (model::RouteConfig, Option<MatchKey>) {
        let errors_before = self.errors.len();
        let hosts = self.hosts(route.hosts.as_deref().unwrap_or_default(), item);
        let exact = match &route.path_match {
            None => false,
            Some(m) => match m.get_ref().as_str() {
                "prefix" => false,
                "exact" => true,
                other => {
                    self.error(
                        m.span(),
                        Some(item),
                        format!("unknown path_match {other:?}; expected prefix or exact"),
                    );
                    false
                }
            },
        };
        let path = self.path(&route.path, "path", item, !exact);
        let path = if exact {
            model::PathMatch::Exact(path)
        } else {
            model::PathMatch::Prefix(normalise_prefix(&path))
        };
        let methods = self.methods(route.methods.as_deref().unwrap_or_default(), item);
        let match_ok = self.errors.len() == errors_before;

        let upstream = self.upstream(route, item, pools);
        let mirror = route
            .mirror
            .as_ref()
            .and_then(|f| self.mirror(f, item, pools, &upstream));

        let strip_prefix = route.strip_prefix.as_ref().is_some_and(|s| *s.get_ref());
        if let (true, Some(s)) = (exact && strip_prefix, &route.strip_prefix) {
            self.error(
                s.span(),
                Some(item),
                r#"strip_prefix only applies to path_match = "prefix""#,
            );
        }
        let rewrite_prefix = route.rewrite_prefix.as_ref().map(|r| {
            if exact {
                self.error(
                    r.span(),
                    Some(item),
                    r#"rewrite_prefix only applies to path_match = "prefix""#,
                );
            } else if strip_prefix {
                self.error(
                    r.span(),
                    Some(item),
                    "strip_prefix and rewrite_prefix cannot be used together",
                );
            }
            normalise_prefix(&self.path(r, "rewrite_prefix", item, true))
        });

        let request_headers =
            self.header_rules(route.request_headers.as_ref(), "request_headers", item);
        let response_headers =
            self.header_rules(route.response_headers.as_ref(), "response_headers", item);
        let timeouts = self.timeouts(route.timeouts.as_ref(), item);
        let auth = self.route_auth(route, item);
        let tags = self.tags(route.tags.as_deref().unwrap_or_default(), item);
        let rate_limits = self.route_limits(route, &auth, item);
        let lifecycle = self.lifecycle(route, item);

        let key = match_ok.then(|| MatchKey {
            index,
            hosts: hosts.iter().cloned().collect(),
            path: path.clone(),
            methods: methods.iter().cloned().collect(),
        });
        let model_route = model::RouteConfig {
            id: route.id.get_ref().clone(),
            tags,
            auth,
            rate_limits,
            hosts,
            path,
            methods,
            upstream,
            strip_prefix,
            rewrite_prefix,
            request_headers,
            response_headers,
            timeouts,
            lifecycle,
            cache: None,
            retry_on: self.retry_on(route.retry_on.as_deref(), item),
            max_body_size: route
                .max_body_size
                .as_ref()
                .and_then(|s| self.size(s, "max_body_size", item)),
            ip: route.ip.as_ref().and_then(|f| self.ip_rules(f, item)),
            cors: route.cors.as_ref().and_then(|f| self.cors(f, item)),
            mirror,
            compression: route
                .compression
                .as_ref()
                .and_then(|f| self.compression(f, item)),
        };
        (model_route, key)
    }

    /// `deprecation`, `sunset`, `deprecation_link`, `sunset_action`.
    fn lifecycle(&mut self, route: &RouteFile, item: &str) -> model::Lifecycle {
        let mut date = |t: &Option<Spanned<toml::value::Datetime>>, key: &str| {
            let t = t.as_ref()?;
            match super::consumers::unix_seconds(t.get_ref()) {
                Ok(s) => Some(s),
                Err(why) => {
                    self.error(t.span(), Some(item), format!("{key} {why}"));
                    None
                }
            }
        };
        let deprecation = date(&route.deprecation, "deprecation");
        let sunset = date(&route.sunset, "sunset");
        if let (Some(d), Some(s), Some(at)) = (deprecation, sunset, route.sunset.as_ref()) {
            if s < d {
                self.error(
                    at.span(),
                    Some(item),
                    "sunset must not be earlier than deprecation (RFC 9745 §4)",
                );
            }
        }
        let link = route.deprecation_link.as_ref().and_then(|l| {
            let url = l.get_ref();
            let ok = (url.starts_with("https://") || url.starts_with("http://"))
                && url.len() > "https://".len()
                && url
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>');
            if !ok {
                self.error(
                    l.span(),
                    Some(item),
                    "deprecation_link must be an http:// or https:// URL without spaces, < or >",
                );
            }
            ok.then(|| url.clone())
        });
        let gone_after_sunset = match &route.sunset_action {
            None => false,
            Some(a) if a.get_ref() == "gone" => {
                if route.sunset.is_none() {
                    self.error(
                        a.span(),
                        Some(item),
                        "sunset_action needs a sunset date-time",
                    );
                }
                true
            }
            Some(a) => {
                self.error(
                    a.span(),
                    Some(item),
                    format!(
                        "unknown sunset_action \"{}\": the only action is \"gone\" (410 from the sunset on); leave it out to keep serving",
                        a.get_ref()
                    ),
                );
                false
            }
        };
        model::Lifecycle {
            deprecation,
            sunset,
            link,
            gone_after_sunset,
        }
    }

    fn route_auth(&mut self, route: &RouteFile, item: &str) -> model::RouteAuth {
        let (api_key, jwt) = match &route.auth {
            None => (false, false),
            Some(a) => {
                match a.get_ref().as_str() {
                    "none" => (false, false),
                    "api_key" => (true, false),
                    "jwt" => (false, true),
                    "api_key_or_jwt" => (true, true),
                    other => {
                        self.error(
                        a.span(),
                        Some(item),
                        format!("unknown auth {other:?}; expected none, api_key, jwt or api_key_or_jwt"),
                    );
                        (false, false)
                    }
                }
            }
        };
        let jwt_only_keys = [
            route
                .jwt_issuers
                .as_ref()
                .and_then(|l| l.first())
                .map(|s| (s.span(), "jwt_issuers")),
            route.token_from.as_ref().map(|s| (s.span(), "token_from")),
            route
                .required_scopes
                .as_ref()
                .map(|s| (s.span(), "required_scopes")),
            route
                .forward_claims
                .as_ref()
                .and_then(|m| m.keys().next())
                .map(|s| (s.span(), "forward_claims")),
            route.keep_token.as_ref().map(|s| (s.span(), "keep_token")),
        ];
        if !jwt {
            for (span, key) in jwt_only_keys.into_iter().flatten() {
                self.error(
                    span,
                    Some(item),
                    format!(r#"{key} needs auth = "jwt" or "api_key_or_jwt""#),
                );
            }
        }
        let jwt = jwt.then(|| self.route_jwt(route, item));
        let key_source = self.key_source(route, api_key, item);
        match (key_source, jwt) {
            (Some(k), Some(j)) => model::RouteAuth::ApiKeyOrJwt(k, j),
            (Some(k), None) => model::RouteAuth::ApiKey(k),
            (None, Some(j)) => model::RouteAuth::Jwt(j),
            (None, None) => model::RouteAuth::None,
        }
    }

    /// Where an `api_key` route reads its keys (`None`: it takes none).
    fn key_source(
        &mut self,
        route: &RouteFile,
        api_key: bool,
        item: &str,
    ) -> Option<model::KeySource> {
        let Some(from) = &route.key_from else {
            return api_key
                .then(|| model::KeySource::Header(model::DEFAULT_KEY_HEADER.to_string()));
        };
        if !api_key {
            self.error(
                from.span(),
                Some(item),
                r#"key_from needs auth = "api_key" or "api_key_or_jwt""#,
            );
            return None;
        }
        let text = from.get_ref();
        let source = match text.split_once(':') {
            None if text == "bearer" => Some(model::KeySource::Bearer),
            Some(("header", name)) if is_token(name) => {
                let name = name.to_ascii_lowercase();
                if PROTECTED_HEADERS.contains(&name.as_str()) || name == "host" {
                    None
                } else {
                    Some(model::KeySource::Header(name))
                }
            }
            Some(("query", name))
                if !name.is_empty()
                    && name.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'~')
                    }) =>
            {
                Some(model::KeySource::Query(name.to_string()))
            }
            _ => None,
        };
        if source.is_none() {
            self.error(
                from.span(),
                Some(item),
                format!("key_from {text:?} is not supported; write header:NAME (e.g. header:x-api-key), bearer, or query:NAME (e.g. query:api_key)"),
            );
        }
        Some(source.unwrap_or(model::KeySource::Bearer))
    }

    fn tags(&mut self, tags: &[Spanned<String>], item: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for tag in tags {
            let text = tag.get_ref();
            if !is_name(text) {
                self.error(
                    tag.span(),
                    Some(item),
                    format!(
                        "tag {text:?}: tags may only contain letters, digits, '_', '.' and '-'"
                    ),
                );
            } else if out.contains(text) {
                self.error(
                    tag.span(),
                    Some(item),
                    format!("tag {text:?} is listed twice"),
                );
            } else {
                out.push(text.clone());
            }
        }
        out
    }

    fn route_limits(
        &mut self,
        route: &RouteFile,
        auth: &model::RouteAuth,
        item: &str,
    ) -> Vec<model::RouteLimit> {
        let mut out = Vec::new();
        for l in &route.rate_limits {
            let per = match l.per.get_ref().as_str() {
                "route" => model::LimitPer::Route,
                "client_ip" => model::LimitPer::ClientIp,
                "consumer" if *auth != model::RouteAuth::None => model::LimitPer::Consumer,
                "consumer" => {
                    self.error(
                        l.per.span(),
                        Some(item),
                        r#"rate_limits: per = "consumer" needs auth = "api_key" on the route (or "jwt", "api_key_or_jwt"); use "client_ip" for anonymous callers"#,
                    );
                    continue;
                }
                other => {
                    self.error(
                        l.per.span(),
                        Some(item),
                        format!("rate_limits: unknown per {other:?}; expected route, consumer or client_ip"),
                    );
                    continue;
                }
            };
            if let Some(bucket) = self.bucket(&l.rate, l.burst.as_ref(), "rate_limits", item) {
                if out
                    .iter()
                    .any(|o: &model::RouteLimit| o.per == per && o.bucket == bucket)
                {
                    self.error(
                        l.rate.span(),
                        Some(item),
                        "rate_limits: the same limit is listed twice",
                    );
                    continue;
                }
                let accuracy = self.limit_accuracy(l.accuracy.as_ref(), item);
                out.push(model::RouteLimit {
                    bucket,
                    per,
                    accuracy,
                });
            }
        }
        out
    }

    fn hosts(&mut self, hosts: &[Spanned<String>], item: &str) -> Vec<model::HostPattern> {
        let mut out: Vec<model::HostPattern> = Vec::new();
        for host in hosts {
            let text = host.get_ref().to_ascii_lowercase();
            let pattern = match parse_host(&text) {
                Ok(p) => p,
                Err(why) => {
                    self.error(
                        host.span(),
                        Some(item),
                        format!("host {:?} {why}", host.get_ref()),
                    );
                    continue;
                }
            };
            if out.contains(&pattern) {
                self.error(
                    host.span(),
                    Some(item),
                    format!("host {text:?} is listed twice"),
                );
                continue;
            }
            out.push(pattern);
        }
        out
    }

    /// Check a path-like value (`path`, `rewrite_prefix`); returns it as
    /// is. A `prefix` loses its trailing slashes later, so they do not
    /// count when it is compared with its canonical form.
    fn path(&mut self, p: &Spanned<String>, key: &str, item: &str, prefix: bool) -> String {
        let text = p.get_ref();
        let problem = if !text.starts_with('/') {
            Some(format!("{key} {text:?} must start with '/'"))
        } else if text.contains(['?', '#']) {
            Some(format!("{key} {text:?} must not contain '?' or '#' (query strings and fragments are not matched)"))
        } else if !is_visible_ascii(text) {
            Some(format!("{key} {text:?} must not contain spaces, control or non-ASCII characters (percent-encode them)"))
        } else if text.contains('*') {
            Some(format!(
                r#"{key} {text:?} must not contain '*': paths are literal (a prefix route already matches everything below it)"#
            ))
        } else {
            let compared = if prefix {
                normalise_prefix(text)
            } else {
                text.clone()
            };
            match crate::target::canonical_path(&compared, &self.path_rules) {
                Err(why) => Some(format!(
                    "{key} {text:?} can never match a request: {why}"
                )),
                Ok(canonical) if canonical != compared => Some(format!(
                    "{key} {text:?} is not in canonical form (request paths are normalized before routing): write {canonical:?}"
                )),
                Ok(_) => None,
            }
        };
        if let Some(message) = problem {
            self.error(p.span(), Some(item), message);
        }
        text.clone()
    }

    pub(super) fn methods(&mut self, methods: &[Spanned<String>], item: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for method in methods {
            let upper = method.get_ref().to_ascii_uppercase();
            if !is_token(&upper) {
                self.error(
                    method.span(),
                    Some(item),
                    format!("method {:?} is not a valid HTTP method", method.get_ref()),
                );
            } else if out.contains(&upper) {
                self.error(
                    method.span(),
                    Some(item),
                    format!("method {upper} is listed twice"),
                );
            } else {
                out.push(upper);
            }
        }
        out
    }

    fn header_rules(
        &mut self,
        rules: Option<&HeaderRulesFile>,
        key: &str,
        item: &str,
    ) -> model::HeaderRules {
        let Some(rules) = rules else {
            return model::HeaderRules::default();
        };
        let mut out = model::HeaderRules::default();
        for (name, value) in &rules.set {
            let Some(lower) = self.header_name(name, &format!("{key}.set"), item) else {
                continue;
            };
            if out.set.iter().any(|(n, _)| *n == lower) {
                self.error(
                    name.span(),
                    Some(item),
                    format!("{key}.set: header {lower:?} is set twice"),
                );
                continue;
            }
            if !value.get_ref().bytes().all(|b| (0x20..=0x7e).contains(&b)) {
                self.error(
                    value.span(),
                    Some(item),
                    format!("{key}.set: the value of header {lower:?} may only contain visible ASCII characters and spaces (no CR, LF or other control characters)"),
                );
            }
            out.set.push((lower, value.get_ref().clone()));
        }
        // The file's table is ordered by the names as written; order by the
        // lower-cased names instead.
        out.set.sort();
        for name in &rules.remove {
            let Some(lower) = self.header_name(name, &format!("{key}.remove"), item) else {
                continue;
            };
            if out.remove.contains(&lower) {
                self.error(
                    name.span(),
                    Some(item),
                    format!("{key}.remove: header {lower:?} is listed twice"),
                );
                continue;
            }
            out.remove.push(lower);
        }
        out
    }

    /// A header name from a rule, lower-cased; `None` (after an error) when
    /// it is not a token or is a protected framing header.
    fn header_name(&mut self, name: &Spanned<String>, key: &str, item: &str) -> Option<String> {
        let text = name.get_ref();
        if !is_token(text) {
            self.error(
                name.span(),
                Some(item),
                format!("{key}: {text:?} is not a valid header name"),
            );
            return None;
        }
        let lower = text.to_ascii_lowercase();
        if PROTECTED_HEADERS.contains(&lower.as_str()) {
            self.error(
                name.span(),
                Some(item),
                format!("{key}: header {lower:?} frames the message or the connection and cannot be changed by header rules"),
            );
            return None;
        }
        Some(lower)
    }

    /// Report every pair of routes that claim the same requests.
    fn conflicts(&mut self, routes: &[RouteFile], keys: &[MatchKey]) {
        // Only routes on the same path can conflict: compare within each
        // path's group, so 10,000 distinct paths cost 10,000 steps, not 50M.
        let mut by_path: HashMap<&model::PathMatch, Vec<&MatchKey>, ahash::RandomState> =
            HashMap::with_capacity_and_hasher(keys.len(), ahash::RandomState::new());
        for key in keys {
            by_path.entry(&key.path).or_default().push(key);
        }
        let mut found = Vec::new();
        for group in by_path.values() {
            for (j, later) in group.iter().enumerate() {
                for earlier in &group[..j] {
                    if let Some(what) = conflict(earlier, later) {
                        found.push((earlier.index, later.index, what));
                    }
                }
            }
        }
        // Report in file order, as before grouping.
        found.sort_by_key(|(earlier, later, _)| (*later, *earlier));
        for (earlier, later, what) in found {
            let first = &routes[earlier];
            let second = &routes[later];
            let line = self.line_of(&first.id.span());
            let item = format!("route {:?}", second.id.get_ref());
            self.error(
                second.id.span(),
                Some(&item),
                format!(
                    "conflicts with route {:?} (line {line}): both match {what}",
                    first.id.get_ref()
                ),
            );
        }
    }
}

/// Describe what two routes both match, or `None` when they do not conflict.
///
/// They conflict when they have the same path match, share a host pattern (or
/// both match any host), and either both match any method or their method
/// sets intersect. A route with methods is more specific than one without, so
/// that pair does not conflict.
fn conflict(a: &MatchKey, b: &MatchKey) -> Option<String> {
    if a.path != b.path {
        return None;
    }
    let hosts = match (a.hosts.is_empty(), b.hosts.is_empty()) {
        (true, true) => "any host".to_string(),
        (false, false) => {
            let shared = a.hosts.intersection(&b.hosts).next()?;
            format!("host {:?}", host_text(shared))
        }
        _ => return None,
    };
    let methods = match (a.methods.is_empty(), b.methods.is_empty()) {
        (true, true) => "any method".to_string(),
        (false, false) => {
            let shared: Vec<&str> = a
                .methods
                .intersection(&b.methods)
                .map(String::as_str)
                .collect();
            if shared.is_empty() {
                return None;
            }
            format!("method {}", shared.join(", "))
        }
        _ => return None,
    };
    let path = match &a.path {
        model::PathMatch::Exact(p) => format!("exact path {p:?}"),
        model::PathMatch::Prefix(p) => format!("path prefix {p:?}"),
    };
    Some(format!("{hosts}, {path} and {methods}"))
}

fn host_text(h: &model::HostPattern) -> String {
    match h {
        model::HostPattern::Exact(h) => h.clone(),
        model::HostPattern::Wildcard(suffix) => format!("*{suffix}"),
    }
}

/// Parse a lower-cased host pattern; the error completes `host "…" {error}`.
fn parse_host(text: &str) -> Result<model::HostPattern, String> {
    if text.is_empty() {
        return Err("is empty".into());
    }
    if text.contains(':') {
        return Err(
            "must not contain ':' (ports are not matched, IPv6 literals are not supported)".into(),
        );
    }
    let (wildcard, name) = match text.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if name.contains('*') {
        return Err(r#"has a misplaced '*': a wildcard must be the whole first label, as in "*.example.com""#.into());
    }
    let valid = name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !valid {
        return Err(
            "is not a valid host name (labels of letters, digits, '-' and '_', separated by dots)"
                .into(),
        );
    }
    Ok(if wildcard {
        model::HostPattern::Wildcard(format!(".{name}"))
    } else {
        model::HostPattern::Exact(name.to_string())
    })
}

/// Drop trailing slashes from a prefix (`/v1/` → `/v1`), keeping `/` itself.
fn normalise_prefix(p: &str) -> String {
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() && p.starts_with('/') {
        "/".to_string()
    } else if trimmed.is_empty() {
        p.to_string()
    } else {
        trimmed.to_string()
    }
}
