//! How the client's address reaches the gateway through balancers:
//! `[server.trusted_proxies]` and a listener's `proxy_protocol`.

use toml::Spanned;

use super::Validator;
use crate::config::file::{IpRulesFile, TrustedProxiesFile};
use crate::config::model::{ForwardingHeader, IpRules, ProxyProtocol, TrustedProxies};

const ITEM: &str = "server.trusted_proxies";

impl Validator<'_> {
    pub(super) fn trusted_proxies(&mut self, file: &TrustedProxiesFile) -> TrustedProxies {
        let mut out = TrustedProxies::default();
        if file.cidrs.get_ref().is_empty() {
            self.error(
                file.cidrs.span(),
                Some(ITEM),
                "cidrs is empty: no peer would be trusted; list the balancers' addresses or remove the table",
            );
        }
        for text in file.cidrs.get_ref() {
            if let Some(net) = self.cidr(text, ITEM, "cidrs") {
                out.cidrs.push(net);
            }
        }
        if let Some(h) = &file.header {
            match h.get_ref().to_ascii_lowercase().as_str() {
                "x-forwarded-for" => out.header = ForwardingHeader::XForwardedFor,
                "forwarded" => out.header = ForwardingHeader::Forwarded,
                other => self.error(
                    h.span(),
                    Some(ITEM),
                    format!(
                        r#"header: unknown {other:?}; expected "x-forwarded-for" or "forwarded""#
                    ),
                ),
            }
        }
        out
    }

    /// An address (`192.0.2.7`, `2001:db8::1`) or a network
    /// (`10.0.0.0/8`); a network with host bits set is refused, since it
    /// is likely a typo for a wider or narrower one.
    pub(super) fn cidr(
        &mut self,
        text: &Spanned<String>,
        item: &str,
        key: &str,
    ) -> Option<ipnet::IpNet> {
        let t = text.get_ref().trim();
        if let Ok(ip) = t.parse::<std::net::IpAddr>() {
            return Some(ipnet::IpNet::from(ip));
        }
        match t.parse::<ipnet::IpNet>() {
            Ok(net) if net.trunc() == net => Some(net),
            Ok(net) => {
                self.error(
                    text.span(),
                    Some(item),
                    format!(
                        "{key}: {t:?} has host bits set; the network is {}",
                        net.trunc()
                    ),
                );
                None
            }
            Err(_) => {
                self.error(
                    text.span(),
                    Some(item),
                    format!(r#"{key}: {t:?} is not an address or network, e.g. "10.0.0.0/8" or "2001:db8::/32""#),
                );
                None
            }
        }
    }

    /// `[routes.ip]` or `[listeners.ip]` of `item`.
    pub(super) fn ip_rules(&mut self, f: &IpRulesFile, item: &str) -> Option<IpRules> {
        let mut list = |v: &Option<Vec<Spanned<String>>>, key: &str| -> Vec<ipnet::IpNet> {
            v.iter()
                .flatten()
                .filter_map(|t| self.cidr(t, item, key))
                .collect()
        };
        let rules = IpRules {
            allow: list(&f.allow, "ip.allow"),
            deny: list(&f.deny, "ip.deny"),
        };
        let given = |v: &Option<Vec<Spanned<String>>>| v.as_ref().is_some_and(|v| !v.is_empty());
        if !given(&f.allow) && !given(&f.deny) {
            let span = f
                .allow
                .iter()
                .chain(&f.deny)
                .flatten()
                .next()
                .map_or(0..0, Spanned::span);
            self.error(
                span,
                Some(item),
                "ip: neither allow nor deny lists an address; remove the table or fill one",
            );
            return None;
        }
        Some(rules)
    }

    pub(super) fn proxy_protocol(
        &mut self,
        value: &Spanned<String>,
        item: &str,
    ) -> Option<ProxyProtocol> {
        match value.get_ref().as_str() {
            "v1" => Some(ProxyProtocol::V1),
            "v2" => Some(ProxyProtocol::V2),
            other => {
                self.error(
                    value.span(),
                    Some(item),
                    format!(r#"proxy_protocol: unknown version {other:?}; expected "v1" or "v2""#),
                );
                None
            }
        }
    }
}
