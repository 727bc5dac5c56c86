//! `[server.client]`: the limits on what a client may send.

use toml::Spanned;

use super::Validator;
use crate::config::file::ClientFile;
use crate::config::model;

impl Validator<'_> {
    pub(super) fn client_limits(&mut self, c: &ClientFile) -> model::ClientLimits {
        let item = "server.client";
        let mut out = model::ClientLimits::default();
        if let Some(s) = &c.max_header_size {
            if let Some(n) = self.size(s, "max_header_size", item) {
                self.at_most(
                    s,
                    n,
                    model::MAX_HEADER_SIZE_LIMIT,
                    "max_header_size",
                    "1MiB",
                );
                out.max_header_size = n;
            }
        }
        if let Some(n) = &c.max_headers {
            let v = *n.get_ref();
            if !(1..=model::MAX_HEADERS_LIMIT).contains(&v) {
                self.error(
                    n.span(),
                    Some(item),
                    format!(
                        "max_headers must be from 1 to {} (Pingora reads at most {} header fields)",
                        model::MAX_HEADERS_LIMIT,
                        model::MAX_HEADERS_LIMIT
                    ),
                );
            }
            out.max_headers = v;
        }
        if let Some(n) = &c.max_uri_length {
            if *n.get_ref() < 16 {
                self.error(n.span(), Some(item), "max_uri_length must be at least 16");
            }
            out.max_uri_length = *n.get_ref();
        }
        out.header_timeout = self.duration_or(
            &c.header_timeout,
            "header_timeout",
            item,
            out.header_timeout,
        );
        out.body_timeout =
            self.duration_or(&c.body_timeout, "body_timeout", item, out.body_timeout);
        out.handshake_timeout = self.duration_or(
            &c.handshake_timeout,
            "handshake_timeout",
            item,
            out.handshake_timeout,
        );
        if let Some(d) = &c.keepalive_timeout {
            // "0s" is allowed: keep-alive off, as in nginx.
            if let Some(d) = self.duration_from(d, "keepalive_timeout", Some(item), true) {
                out.keepalive_timeout = d;
            }
        }
        if let Some(n) = &c.max_connections {
            if *n.get_ref() == 0 {
                self.error(n.span(), Some(item), "max_connections must be at least 1");
            }
            out.max_connections = *n.get_ref();
        }
        if let Some(m) = &c.merge_slashes {
            out.paths.merge_slashes = *m.get_ref();
        }
        if let Some(a) = &c.ambiguous_paths {
            out.paths.ambiguous_paths = match a.get_ref().as_str() {
                "reject" => crate::target::Ambiguous::Reject,
                "opaque" => crate::target::Ambiguous::Opaque,
                other => {
                    self.error(
                        a.span(),
                        Some(item),
                        format!("ambiguous_paths {other:?} is not supported: write \"reject\" (refuse %2F, %5C, \\ and ; in paths with 400) or \"opaque\" (keep them as data)"),
                    );
                    crate::target::Ambiguous::Reject
                }
            };
        }
        if let Some(u) = &c.headers_with_underscores {
            use crate::config::model::Underscores;
            out.headers_with_underscores = match u.get_ref().as_str() {
                "drop" => Underscores::Drop,
                "reject" => Underscores::Reject,
                "allow" => Underscores::Allow,
                other => {
                    self.error(
                        u.span(),
                        Some(item),
                        format!("headers_with_underscores {other:?} is not supported: write \"drop\" (remove them, as nginx does), \"reject\" (answer 400) or \"allow\""),
                    );
                    Underscores::Drop
                }
            };
        }
        out
    }

    fn at_most<T>(&mut self, s: &Spanned<T>, n: u64, max: u64, what: &str, max_text: &str) {
        if n > max {
            self.error(
                s.span(),
                Some("server.client"),
                format!("{what} must be at most {max_text} (Pingora reads at most that much request head)"),
            );
        }
    }
}
