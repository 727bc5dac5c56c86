//! Route policy compiled once per config load, below the snapshot that
//! holds it: header edits, path rewrites, the `Via` entries, the API
//! version lifecycle. What a route does to a request or response that is
//! not routing, authentication or limits goes here (CORS, traffic
//! splits, compression); the proxy applies it, `explain` shows it.

pub mod compression;
pub mod cors;
mod lifecycle;
pub mod split;

pub use compression::Compression;
pub use cors::Cors;
pub use lifecycle::RouteLifecycle;
pub use split::Split;

use http::{HeaderName, HeaderValue};

use crate::config::model;

/// `VERSION PSEUDONYM` (RFC 9110 §7.6.3) for each HTTP version a client
/// speaks, made once per snapshot so a request only clones one.
#[derive(Debug, Clone)]
pub struct ViaEntries {
    /// HTTP/0.9, 1.0, 1.1 and 2, in that order.
    by_version: [HeaderValue; 4],
}

impl ViaEntries {
    const VERSIONS: [&'static str; 4] = ["0.9", "1.0", "1.1", "2"];

    /// `pseudonym` is validated as a token; should that ever be broken the
    /// entry names the version alone rather than failing the build.
    pub fn new(pseudonym: &str) -> ViaEntries {
        ViaEntries {
            by_version: Self::VERSIONS.map(|v| {
                HeaderValue::from_str(&format!("{v} {pseudonym}"))
                    .unwrap_or(HeaderValue::from_static(v))
            }),
        }
    }

    /// The entry for the client's `version` (as `ClientFacts` names it).
    pub fn get(&self, version: &str) -> &HeaderValue {
        let i = Self::VERSIONS
            .iter()
            .position(|v| *v == version)
            .unwrap_or(2);
        &self.by_version[i]
    }
}

/// Header edits with names and values parsed once, at build time.
#[derive(Debug, Default, Clone)]
pub struct HeaderOps {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl HeaderOps {
    pub fn compile(rules: &model::HeaderRules) -> HeaderOps {
        // Names and values were validated by `config`; anything that still
        // fails to parse is skipped rather than trusted.
        HeaderOps {
            set: rules
                .set
                .iter()
                .filter_map(|(n, v)| {
                    Some((
                        HeaderName::from_bytes(n.as_bytes()).ok()?,
                        HeaderValue::from_str(v).ok()?,
                    ))
                })
                .collect(),
            remove: rules
                .remove
                .iter()
                .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }
}

/// How the matched path prefix is rewritten before forwarding.
#[derive(Debug, Clone)]
pub enum PathRewrite {
    None,
    /// Drop the matched prefix.
    Strip,
    /// Replace the matched prefix.
    Replace(String),
}
