//! Bearer-token checks: `[[jwt_issuers]]` (where the key set comes from,
//! audiences, algorithms, claims, limits) and the token settings of routes
//! with `auth = "jwt"` or `"api_key_or_jwt"` (issuers they accept, where
//! the token is read, required scopes, forwarded claims).

use std::collections::BTreeMap;

use toml::Spanned;

use super::consumers::RouteNames;
use super::{is_name, is_token, is_visible_ascii, Validator};
use crate::config::file::{JwtIssuerFile, RouteFile};
use crate::config::model;
use crate::jwt::Alg;

/// Algorithms refused by name, with why: naming one is a mistake an
/// attacker would like the gateway to make.
fn refused_algorithm(name: &str) -> Option<&'static str> {
    match name.to_ascii_uppercase().as_str() {
        "NONE" => Some("unsigned tokens are never accepted"),
        "HS256" | "HS384" | "HS512" => Some(
            "HMAC algorithms need a shared secret; with a public key set, anyone holding the public key could sign",
        ),
        _ => None,
    }
}

/// Headers a claim may not be forwarded in: they frame the message, name
/// the host or carry credentials.
const NOT_FOR_CLAIMS: &[&str] = &[
    "authorization",
    "connection",
    "content-length",
    "cookie",
    "host",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

impl Validator<'_> {
    /// Validate `[[jwt_issuers]]`, against the routes their limits name.
    pub(super) fn jwt_issuers(
        &mut self,
        issuers: &[JwtIssuerFile],
        routes: &RouteNames,
    ) -> Vec<model::JwtIssuer> {
        let mut out: Vec<model::JwtIssuer> = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        for i in issuers {
            let id = i.id.get_ref();
            let item = format!("jwt issuer {id:?}");
            let item = item.as_str();
            if !is_name(id) {
                self.error(
                    i.id.span(),
                    Some(item),
                    "jwt issuer ids may only contain letters, digits, '_', '.' and '-'",
                );
            } else if seen.contains(&id.as_str()) {
                self.error(
                    i.id.span(),
                    Some(item),
                    format!("jwt issuer id {id:?} is defined twice"),
                );
            }
            seen.push(id);
            if let Some(issuer) = self.jwt_issuer(i, item, routes) {
                out.push(issuer);
            }
        }
        out
    }

    fn jwt_issuer(
        &mut self,
        i: &JwtIssuerFile,
        item: &str,
        routes: &RouteNames,
    ) -> Option<model::JwtIssuer> {
        let issuer = i.issuer.get_ref();
        if issuer.is_empty() || !is_visible_ascii(issuer) {
            self.error(
                i.issuer.span(),
                Some(item),
                "issuer must be the token's iss exactly: visible ASCII, not empty",
            );
        }
        let audiences = self.audiences(i, item);
        let keys = self.jwks_source(i, item);
        let refresh = match &i.refresh {
            Some(r) => {
                if matches!(keys, Some(model::JwksSource::File(_))) {
                    self.error(
                        r.span(),
                        Some(item),
                        "refresh applies to jwks_url and discovery; a jwks_file is re-read on reload and when it changes",
                    );
                }
                self.duration(r, "refresh", Some(item))
            }
            None => Some(model::DEFAULT_JWKS_REFRESH),
        };
        let min_refresh_interval = match &i.min_refresh_interval {
            Some(m) => self.duration(m, "min_refresh_interval", Some(item)),
            None => Some(model::DEFAULT_JWKS_MIN_REFRESH_INTERVAL),
        };
        let algorithms = self.algorithms(i, item);
        let leeway = match &i.leeway {
            Some(l) => self.duration_from(l, "leeway", Some(item), true),
            None => Some(model::DEFAULT_JWT_LEEWAY),
        };
        let consumer_claim = self.claim_name(i.consumer_claim.as_ref(), "consumer_claim", item);
        let scopes_claim = self.claim_name(i.scopes_claim.as_ref(), "scopes_claim", item);
        let (rate_limits, quotas) = self.limits(&i.rate_limits, i.quota.as_ref(), item, routes);
        let (line, column) = self.loc.line_col(i.id.span().start);
        Some(model::JwtIssuer {
            id: i.id.get_ref().clone(),
            issuer: issuer.clone(),
            audiences: audiences?,
            keys: keys?,
            refresh: refresh?,
            min_refresh_interval: min_refresh_interval?,
            algorithms: algorithms?,
            leeway: leeway?,
            consumer_claim: consumer_claim.unwrap_or_else(|| model::DEFAULT_CONSUMER_CLAIM.into()),
            scopes_claim: scopes_claim.unwrap_or_else(|| model::DEFAULT_SCOPES_CLAIM.into()),
            rate_limits,
            quotas,
            at: model::Pos { line, column },
        })
    }

    fn audiences(&mut self, i: &JwtIssuerFile, item: &str) -> Option<Vec<String>> {
        let Some(list) = &i.audiences else {
            self.error(
                i.id.span(),
                Some(item),
                r#"audiences is required: the token's aud must name this API (e.g. audiences = ["orders-api"]), or a token minted for any other API of the same provider would pass"#,
            );
            return None;
        };
        if list.get_ref().is_empty() {
            self.error(
                list.span(),
                Some(item),
                "audiences must name at least one audience",
            );
            return None;
        }
        let mut out = Vec::new();
        for a in list.get_ref() {
            if a.get_ref().is_empty() {
                self.error(a.span(), Some(item), "an audience may not be empty");
            } else {
                out.push(a.get_ref().clone());
            }
        }
        Some(out)
    }

    fn jwks_source(&mut self, i: &JwtIssuerFile, item: &str) -> Option<model::JwksSource> {
        let given: Vec<&Spanned<String>> = [&i.jwks_file, &i.jwks_url, &i.discovery]
            .into_iter()
            .flatten()
            .collect();
        if given.len() != 1 {
            let span = given.get(1).map_or(i.id.span(), |s| s.span());
            self.error(
                span,
                Some(item),
                "give exactly one of jwks_file, jwks_url and discovery",
            );
            return None;
        }
        if let Some(f) = &i.jwks_file {
            return Some(model::JwksSource::File(self.file_ref(f)));
        }
        let (text, key) = match (&i.jwks_url, &i.discovery) {
            (Some(u), _) => (u, "jwks_url"),
            (_, Some(d)) => (d, "discovery"),
            _ => return None,
        };
        let url = text.get_ref();
        let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
        match url.parse::<http::Uri>() {
            Ok(u) if scheme_ok && u.host().is_some() => Some(if key == "jwks_url" {
                model::JwksSource::Url(url.clone())
            } else {
                model::JwksSource::Discovery(url.clone())
            }),
            _ => {
                self.error(
                    text.span(),
                    Some(item),
                    format!("{key} {url:?} is not an http:// or https:// URL"),
                );
                None
            }
        }
    }

    fn algorithms(&mut self, i: &JwtIssuerFile, item: &str) -> Option<Vec<Alg>> {
        let Some(list) = &i.algorithms else {
            return Some(vec![Alg::RS256]);
        };
        if list.get_ref().is_empty() {
            self.error(
                list.span(),
                Some(item),
                "algorithms must name at least one algorithm",
            );
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for a in list.get_ref() {
            let name = a.get_ref();
            match (Alg::parse(name), refused_algorithm(name)) {
                (Some(alg), _) if !out.contains(&alg) => out.push(alg),
                (Some(_), _) => {
                    self.error(
                        a.span(),
                        Some(item),
                        format!("algorithm {name:?} is listed twice"),
                    );
                    ok = false;
                }
                (None, Some(why)) => {
                    self.error(
                        a.span(),
                        Some(item),
                        format!("algorithm {name:?} is refused: {why}"),
                    );
                    ok = false;
                }
                (None, None) => {
                    let known: Vec<&str> = Alg::ALL.iter().map(|a| a.as_str()).collect();
                    self.error(
                        a.span(),
                        Some(item),
                        format!(
                            "unknown algorithm {name:?}; expected one of {}",
                            known.join(", ")
                        ),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn claim_name(&mut self, c: Option<&Spanned<String>>, key: &str, item: &str) -> Option<String> {
        let c = c?;
        let name = c.get_ref();
        if name.is_empty() || !is_visible_ascii(name) {
            self.error(c.span(), Some(item), format!("{key} must name a claim"));
            return None;
        }
        Some(name.clone())
    }

    /// The token settings of a route with `auth` naming `jwt`. Issuer ids
    /// are checked once the issuers are known ([`Self::issuer_refs`]).
    pub(super) fn route_jwt(&mut self, route: &RouteFile, item: &str) -> model::RouteJwt {
        let issuers = route
            .jwt_issuers
            .iter()
            .flatten()
            .map(|i| i.get_ref().clone())
            .collect();
        let token_from = match &route.token_from {
            None => model::TokenSource::Bearer,
            Some(t) => self.token_source(t, item),
        };
        let required_scopes = match &route.required_scopes {
            None => model::RequiredScopes::default(),
            Some(s) => self.required_scopes(s, item),
        };
        let mut forward_claims = Vec::new();
        for (header, claim) in route.forward_claims.iter().flatten() {
            let name = header.get_ref().to_ascii_lowercase();
            if !is_token(&name) || NOT_FOR_CLAIMS.contains(&name.as_str()) {
                self.error(
                    header.span(),
                    Some(item),
                    format!("forward_claims: {name:?} cannot carry a claim (a header name that is not framing, Host or a credential)"),
                );
                continue;
            }
            if claim.get_ref().is_empty() {
                self.error(claim.span(), Some(item), "forward_claims: name a claim");
                continue;
            }
            forward_claims.push((name, claim.get_ref().clone()));
        }
        model::RouteJwt {
            issuers,
            token_from,
            required_scopes,
            forward_claims,
            keep_token: route.keep_token.as_ref().is_some_and(|k| *k.get_ref()),
        }
    }

    fn token_source(&mut self, t: &Spanned<String>, item: &str) -> model::TokenSource {
        let text = t.get_ref();
        let source = match text.split_once(':') {
            None if text == "bearer" => Some(model::TokenSource::Bearer),
            Some(("header", name))
                if is_token(name)
                    && !NOT_FOR_CLAIMS.contains(&name.to_ascii_lowercase().as_str()) =>
            {
                Some(model::TokenSource::Header(name.to_ascii_lowercase()))
            }
            Some(("cookie", name)) if is_token(name) => {
                Some(model::TokenSource::Cookie(name.to_string()))
            }
            _ => None,
        };
        source.unwrap_or_else(|| {
            self.error(
                t.span(),
                Some(item),
                format!("token_from {text:?} is not supported; write bearer, header:NAME or cookie:NAME"),
            );
            model::TokenSource::Bearer
        })
    }

    fn required_scopes(&mut self, s: &Spanned<toml::Value>, item: &str) -> model::RequiredScopes {
        let mut out = model::RequiredScopes::default();
        match s.get_ref() {
            toml::Value::Array(list) => out.all = self.scope_list(list, s, item),
            toml::Value::Table(t) => {
                let mut by_method = BTreeMap::new();
                for (method, list) in t {
                    let upper = method.to_ascii_uppercase();
                    if !is_token(method) || &upper != method {
                        self.error(
                            s.span(),
                            Some(item),
                            format!("required_scopes: {method:?} is not an upper-case method name"),
                        );
                        continue;
                    }
                    match list {
                        toml::Value::Array(list) => {
                            by_method.insert(upper, self.scope_list(list, s, item));
                        }
                        _ => self.error(
                            s.span(),
                            Some(item),
                            format!("required_scopes: {method} must be a list of scopes"),
                        ),
                    }
                }
                out.by_method = by_method;
            }
            _ => self.error(
                s.span(),
                Some(item),
                r#"required_scopes must be a list (["orders:read"]) or a table by method ({ GET = ["orders:read"], POST = ["orders:write"] })"#,
            ),
        }
        out
    }

    fn scope_list(
        &mut self,
        list: &[toml::Value],
        at: &Spanned<toml::Value>,
        item: &str,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for v in list {
            match v.as_str() {
                Some(scope) if !scope.is_empty() && scope.bytes().all(|b| b.is_ascii_graphic()) => {
                    out.push(scope.to_string())
                }
                _ => self.error(
                    at.span(),
                    Some(item),
                    format!("required_scopes: {v} is not a scope (visible ASCII without spaces)"),
                ),
            }
        }
        out
    }

    /// Every route's `jwt_issuers` names a defined issuer, and a route
    /// taking tokens has an issuer to take them from.
    pub(super) fn issuer_refs(&mut self, routes: &[RouteFile], issuers: &[model::JwtIssuer]) {
        for route in routes {
            let item = format!("route {:?}", route.id.get_ref());
            let takes_tokens = route
                .auth
                .as_ref()
                .is_some_and(|a| a.get_ref().contains("jwt"));
            if takes_tokens && issuers.is_empty() {
                if let Some(a) = &route.auth {
                    self.error(
                        a.span(),
                        Some(&item),
                        "no [[jwt_issuers]] are defined: a route with a jwt auth needs at least one",
                    );
                }
            }
            for i in route.jwt_issuers.iter().flatten() {
                if !issuers.iter().any(|d| &d.id == i.get_ref()) {
                    let known: Vec<&str> = issuers.iter().map(|d| d.id.as_str()).collect();
                    self.error(
                        i.span(),
                        Some(&item),
                        format!(
                            "jwt_issuers: no issuer {:?} is defined (defined: {})",
                            i.get_ref(),
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    );
                }
            }
        }
    }
}
