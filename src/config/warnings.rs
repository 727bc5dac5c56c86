//! What is valid but probably not meant: printed by `check` and logged
//! when a config is loaded.

use super::model::{Config, PathMatch, RouteAuth, RouteConfig};

/// Every warning about `config`, in route order.
pub fn warnings(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for open in config.routes.iter().filter(|r| opens_methods(r)) {
        for keyed in config.routes.iter().filter(|r| shadowed_by(r, open)) {
            out.push(format!(
                "route {:?} ({}, auth = \"none\") takes these methods on {} from route {:?} (auth = \"api_key\"): such requests are answered without a key; give {:?} the same auth, or drop its methods if that was not meant",
                open.id,
                open.methods.join(", "),
                describe(&open.path),
                keyed.id,
                open.id,
            ));
        }
    }
    out
}

/// A route without auth that lists methods: it wins those methods over a
/// route on the same host and path that lists none.
fn opens_methods(r: &RouteConfig) -> bool {
    r.auth == RouteAuth::None && !r.methods.is_empty()
}

/// `keyed` asks for a key, accepts any method, and `open` matches the same
/// path on a host `keyed` matches too.
fn shadowed_by(keyed: &RouteConfig, open: &RouteConfig) -> bool {
    keyed.auth != RouteAuth::None
        && keyed.methods.is_empty()
        && keyed.path == open.path
        && (keyed.hosts.is_empty() && open.hosts.is_empty()
            || open.hosts.iter().any(|h| keyed.hosts.contains(h)))
}

fn describe(path: &PathMatch) -> String {
    match path {
        PathMatch::Exact(p) => format!("exact path {p:?}"),
        PathMatch::Prefix(p) => format!("path prefix {p:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_method_route_on_a_key_routes_path_is_named() {
        let config = crate::config::parse_str(
            r#"[pools.p]
backends = [{ address = "127.0.0.1:9001" }]

[[routes]]
id = "orders"
path = "/orders"
pool = "p"
auth = "api_key"

[[routes]]
id = "orders-get"
path = "/orders"
methods = ["GET"]
pool = "p"

[[routes]]
id = "health"
path = "/health"
methods = ["GET"]
pool = "p"
"#,
            "w.toml",
        )
        .unwrap();
        let w = warnings(&config);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with(r#"route "orders-get" (GET, auth = "none") takes these methods on path prefix "/orders" from route "orders" (auth = "api_key")"#),
            "{}",
            w[0]
        );
    }
}
