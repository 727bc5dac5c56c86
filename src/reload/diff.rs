//! What a reload from one config to another changes, item by item.
//!
//! The comparison is semantic: items are matched by identity (route id,
//! pool name, backend address, consumer id, key digest, listener address),
//! never by position, so moving a line or reordering tables is no change.
//! Certificates and CA bundles count as changed when the files they name
//! hold other bytes. Keys are shown by their non-secret prefix only.
//!
//! `restart_required` lists the settings that are read at start-up only
//! (listener addresses and kinds, redirects and HSTS, the admin address,
//! `[server]`, turning the access log on or off); everything else applies
//! live on commit, certificates included.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::model::{self, Config};
use crate::snapshot::Snapshot;

use super::fields::{self, FieldChange};
use crate::material::Material;

/// Items added, removed and changed, each list sorted; for each changed
/// item, the fields that changed with their old and new values.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    /// By changed item's name (absent when the item shows no field detail).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, Vec<FieldChange>>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// Compare two maps by key: present in one only, or in both and not
    /// `same`, with the fields `fields` finds. One merge over the two
    /// sorted maps: no lookups.
    fn of<K: Ord, V>(
        old: &BTreeMap<K, V>,
        new: &BTreeMap<K, V>,
        name: impl Fn(&K) -> String,
        same: impl Fn(&V, &V) -> bool,
        fields: impl Fn(&V, &V) -> Vec<FieldChange>,
    ) -> Changes {
        use std::cmp::Ordering::{Equal, Greater, Less};
        let mut c = Changes::default();
        let (mut o, mut n) = (old.iter().peekable(), new.iter().peekable());
        loop {
            let order = match (o.peek(), n.peek()) {
                (None, None) => break,
                (Some(_), None) => Less,
                (None, Some(_)) => Greater,
                (Some((ok, _)), Some((nk, _))) => ok.cmp(nk),
            };
            match order {
                Less => {
                    if let Some((k, _)) = o.next() {
                        c.removed.push(name(k));
                    }
                }
                Greater => {
                    if let Some((k, _)) = n.next() {
                        c.added.push(name(k));
                    }
                }
                Equal => {
                    if let (Some((k, ov)), Some((_, nv))) = (o.next(), n.next()) {
                        if !same(ov, nv) {
                            let detail = fields(ov, nv);
                            if !detail.is_empty() {
                                c.fields.insert(name(k), detail);
                            }
                            c.changed.push(name(k));
                        }
                    }
                }
            }
        }
        // By name: a name may sort apart from its key (addresses).
        c.added.sort();
        c.removed.sort();
        c.changed.sort();
        c
    }
}

/// Everything a reload from one config to another would change. Read
/// back from a running gateway's answer by `diff --against-running`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigDiff {
    /// By route id.
    pub routes: Changes,
    /// By pool name; a pool whose settings, backends or TLS files changed.
    pub pools: Changes,
    /// `POOL ADDRESS` of backends in pools present before and after.
    pub backends: Changes,
    /// By consumer id.
    pub consumers: Changes,
    /// `CONSUMER PREFIX` of each key (matched by digest, shown by prefix).
    pub keys: Changes,
    /// By `[[jwt_issuers]]` id; an issuer whose settings or `jwks_file`
    /// content changed.
    #[serde(default)]
    pub jwt_issuers: Changes,
    /// Addresses of TLS listeners whose certificates, key files, client CA
    /// or minimum version changed (applied live).
    pub certificates: Vec<String>,
    /// Other live settings that changed: `auth`, `access_log`, the
    /// admin API's tokens, `allow_unauthenticated` and `hosts`,
    /// `server.client`, `server.trusted_proxies`, `server.via`,
    /// `listeners.ip`.
    pub settings: Vec<String>,
    /// The fields of each changed setting, by setting (the tokens show
    /// none: they are only ever `"<redacted>"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings_fields: BTreeMap<String, Vec<FieldChange>>,
    /// Changed settings that take effect only after a restart.
    pub restart_required: Vec<String>,
}

impl ConfigDiff {
    /// What a reload from `old` to `new` changes.
    pub fn between(old: &Snapshot, new: &Snapshot) -> ConfigDiff {
        ConfigDiff::of(&old.config, &old.material, &new.config, &new.material)
    }

    /// What changes from config `old` (whose TLS files hold `old_files`) to
    /// `new`.
    pub fn of(
        old: &Config,
        old_files: &Material,
        new: &Config,
        new_files: &Material,
    ) -> ConfigDiff {
        let files_same =
            |paths: &[&Path]| paths.iter().all(|p| old_files.get(*p) == new_files.get(*p));
        // Maps of references: a 10,000-route config is compared, not copied.
        let routes = Changes::of(
            &routes_by_id(old),
            &routes_by_id(new),
            |k| k.to_string(),
            |a, b| a == b,
            |a, b| fields::between(a, b, &[]),
        );
        // A pool's backends are listed apart (`~ backend`), with their own
        // fields; a TLS file whose content changed is named.
        let pools = Changes::of(
            &old.pools,
            &new.pools,
            |k| k.clone(),
            |a, b| a == b && files_same(&crate::material::pool_files(b)),
            |a, b| {
                let mut detail = fields::between(a, b, &["backends"]);
                for path in crate::material::pool_files(b) {
                    if old_files.get(path) != new_files.get(path) {
                        detail.push(file_change(path));
                    }
                }
                detail
            },
        );
        let mut backends = Changes::default();
        for (name, new_pool) in &new.pools {
            let Some(old_pool) = old.pools.get(name) else {
                continue;
            };
            let weights = |p: &model::PoolConfig| -> BTreeMap<std::net::SocketAddr, u32> {
                p.backends.iter().map(|b| (b.address, b.weight)).collect()
            };
            let c = Changes::of(
                &weights(old_pool),
                &weights(new_pool),
                |a| format!("{name} {a}"),
                |a, b| a == b,
                |a, b| {
                    vec![FieldChange {
                        field: "weight".to_string(),
                        old: (*a).into(),
                        new: (*b).into(),
                    }]
                },
            );
            backends.added.extend(c.added);
            backends.removed.extend(c.removed);
            backends.changed.extend(c.changed);
            backends.fields.extend(c.fields);
        }
        let consumers = Changes::of(
            &consumers_by_id(old),
            &consumers_by_id(new),
            |k| k.to_string(),
            |a, b| same_consumer(a, b),
            |a, b| fields::between(a, b, &["defined_at", "keys"]),
        );
        let (old_keys, new_keys) = (keys_by_digest(old), keys_by_digest(new));
        let key_name = |d: &[u8; 32]| {
            let (consumer, key) = new_keys
                .get(d)
                .or_else(|| old_keys.get(d))
                .map_or(("?", "?"), |(c, k)| (*c, k.prefix.as_str()));
            format!("{consumer} {key}")
        };
        let keys = Changes::of(
            &old_keys,
            &new_keys,
            key_name,
            |a, b| a == b,
            |(_, a), (_, b)| fields::between(a, b, &[]),
        );

        let issuer_file = |i: &model::JwtIssuer| match &i.keys {
            model::JwksSource::File(f) => Some(f.path.clone()),
            _ => None,
        };
        let jwt_issuers = Changes::of(
            &issuers_by_id(old),
            &issuers_by_id(new),
            |k| k.to_string(),
            |a, b| a == b && issuer_file(b).is_none_or(|p| old_files.get(&p) == new_files.get(&p)),
            |a, b| {
                let mut detail = fields::between(a, b, &[]);
                if let Some(p) = issuer_file(b) {
                    if old_files.get(&p) != new_files.get(&p) {
                        detail.push(file_change(&p));
                    }
                }
                detail
            },
        );

        let mut certificates = Vec::new();
        for l in &new.listeners {
            let Some(tls) = &l.tls else { continue };
            let before = old
                .listeners
                .iter()
                .find(|o| o.address == l.address)
                .and_then(|o| o.tls.as_ref());
            if let Some(before) = before {
                if before != tls || !files_same(&crate::material::listener_files(tls)) {
                    certificates.push(l.address.to_string());
                }
            }
        }
        let mut settings = Vec::new();
        let mut settings_fields = BTreeMap::new();
        let mut setting = |name: &str, differs: bool, detail: Vec<FieldChange>| {
            if differs {
                settings.push(name.to_string());
                if !detail.is_empty() {
                    settings_fields.insert(name.to_string(), detail);
                }
            }
        };
        let (a, b) = (&old.admin, &new.admin);
        setting(
            "auth",
            old.auth != new.auth,
            fields::between(&old.auth, &new.auth, &[]),
        );
        setting(
            "access_log",
            old.access_log != new.access_log,
            fields::between(&old.access_log, &new.access_log, &[]),
        );
        setting(
            "admin.token_digest",
            a.token_digest != b.token_digest,
            Vec::new(),
        );
        setting(
            "admin.read_token_digest",
            a.read_token_digest != b.read_token_digest,
            Vec::new(),
        );
        setting(
            "admin.allow_unauthenticated",
            a.allow_unauthenticated != b.allow_unauthenticated,
            fields::between(&a.allow_unauthenticated, &b.allow_unauthenticated, &[]),
        );
        setting(
            "admin.hosts",
            a.hosts != b.hosts,
            fields::between(&a.hosts, &b.hosts, &[]),
        );
        setting(
            "server.client",
            old.server.client != new.server.client,
            fields::between(&old.server.client, &new.server.client, &[]),
        );
        // The rules of each listener that has some, by place and address.
        let listener_ip = |c: &Config| {
            c.listeners
                .iter()
                .enumerate()
                .filter_map(|(i, l)| Some((i, l.address.to_string(), l.ip.clone()?)))
                .collect::<Vec<_>>()
        };
        setting(
            "listeners.ip",
            listener_ip(old) != listener_ip(new),
            fields::between(&listener_ip(old), &listener_ip(new), &[]),
        );
        setting(
            "server.trusted_proxies",
            old.server.trusted_proxies != new.server.trusted_proxies,
            fields::between(
                &old.server.trusted_proxies,
                &new.server.trusted_proxies,
                &[],
            ),
        );
        setting(
            "server.via",
            old.server.via != new.server.via,
            fields::between(&old.server.via, &new.server.via, &[]),
        );
        ConfigDiff {
            routes,
            pools,
            backends,
            consumers,
            keys,
            jwt_issuers,
            certificates,
            settings,
            settings_fields,
            restart_required: super::restart::pending(old, new)
                .into_iter()
                .map(String::from)
                .collect(),
        }
    }

    /// True when a reload would change nothing.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
            && self.pools.is_empty()
            && self.backends.is_empty()
            && self.consumers.is_empty()
            && self.keys.is_empty()
            && self.jwt_issuers.is_empty()
            && self.certificates.is_empty()
            && self.settings.is_empty()
            && self.restart_required.is_empty()
    }
}

impl fmt::Display for ConfigDiff {
    /// One change a line: `+` added, `-` removed, `~` changed, `!` needs a
    /// restart; `no changes` when there are none.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("no changes");
        }
        let mut lines = Vec::new();
        let detail = |lines: &mut Vec<String>, changes: Option<&Vec<FieldChange>>| {
            for change in changes.into_iter().flatten() {
                lines.push(format!("    {}", fields::line(change)));
            }
        };
        let mut items = |kind: &str, c: &Changes| {
            for (sign, list) in [('+', &c.added), ('-', &c.removed), ('~', &c.changed)] {
                for item in list {
                    lines.push(format!("{sign} {kind} {item}"));
                    if sign == '~' {
                        detail(&mut lines, c.fields.get(item));
                    }
                }
            }
        };
        items("route", &self.routes);
        items("pool", &self.pools);
        items("backend", &self.backends);
        items("consumer", &self.consumers);
        items("key", &self.keys);
        items("jwt issuer", &self.jwt_issuers);
        for l in &self.certificates {
            lines.push(format!("~ certificates of listener {l}"));
        }
        for s in &self.settings {
            lines.push(format!("~ {s}"));
            detail(&mut lines, self.settings_fields.get(s));
        }
        for s in &self.restart_required {
            lines.push(format!("! restart required: {s}"));
        }
        f.write_str(&lines.join("\n"))
    }
}

/// A TLS file that holds other bytes, named by path; its content is never
/// shown (a key file may be one).
fn file_change(path: &Path) -> FieldChange {
    FieldChange {
        field: format!("file {}", path.display()),
        old: "content before".into(),
        new: "other content".into(),
    }
}

fn routes_by_id(c: &Config) -> BTreeMap<&str, &model::RouteConfig> {
    c.routes.iter().map(|r| (r.id.as_str(), r)).collect()
}

fn issuers_by_id(c: &Config) -> BTreeMap<&str, &model::JwtIssuer> {
    c.jwt_issuers.iter().map(|i| (i.id.as_str(), i)).collect()
}

fn consumers_by_id(c: &Config) -> BTreeMap<&str, &model::Consumer> {
    c.consumers.iter().map(|c| (c.id.as_str(), c)).collect()
}

/// Every key by digest, with its consumer's id.
fn keys_by_digest(c: &Config) -> BTreeMap<[u8; 32], (&str, &model::ApiKey)> {
    c.consumers
        .iter()
        .flat_map(|c| c.keys.iter().map(|k| (k.digest, (c.id.as_str(), k))))
        .collect()
}

/// Two consumers are the same when everything but where they are written
/// (`defined_at`) is.
fn same_consumer(a: &model::Consumer, b: &model::Consumer) -> bool {
    let model::Consumer {
        id,
        name,
        metadata,
        disabled,
        keys,
        scopes,
        rate_limits,
        quotas,
        defined_at: _,
    } = a;
    *id == b.id
        && *name == b.name
        && *metadata == b.metadata
        && *disabled == b.disabled
        && *keys == b.keys
        && *scopes == b.scopes
        && *rate_limits == b.rate_limits
        && *quotas == b.quotas
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;

    fn diff(old: &str, new: &str) -> ConfigDiff {
        let (old, new) = (
            parse_str(old, "old.toml").unwrap_or_else(|e| panic!("{e}")),
            parse_str(new, "new.toml").unwrap_or_else(|e| panic!("{e}")),
        );
        ConfigDiff::of(&old, &Material::new(), &new, &Material::new())
    }

    const BASE: &str = r#"
[pools.a]
backends = ["127.0.0.1:1", "127.0.0.1:2"]

[pools.b]
backends = ["127.0.0.1:3"]

[[routes]]
id = "one"
path = "/one"
pool = "a"

[[routes]]
id = "two"
path = "/two"
pool = "b"
"#;

    #[test]
    fn identical_and_reordered_configs_do_not_differ() {
        assert!(diff(BASE, BASE).is_empty());
        assert_eq!(diff(BASE, BASE).to_string(), "no changes");
        // The same items, written in another order and with other spacing.
        let moved = r#"
[[routes]]
id = "two"
path = "/two"
pool = "b"

[[routes]]
id = "one"
path   = "/one"
pool = "a"

[pools.b]
backends = ["127.0.0.1:3"]

[pools.a]
backends = ["127.0.0.1:1", "127.0.0.1:2"]
"#;
        let d = diff(BASE, moved);
        assert!(d.is_empty(), "{d}");
        assert!(d.restart_required.is_empty());
    }

    #[test]
    fn items_added_removed_and_changed() {
        let new = BASE
            .replace(
                "\"127.0.0.1:2\"",
                "{ address = \"127.0.0.1:2\", weight = 3 }, \"127.0.0.1:4\"",
            )
            .replace(
                "id = \"two\"\npath = \"/two\"",
                "id = \"three\"\npath = \"/three\"",
            )
            .replace("path = \"/one\"", "path = \"/uno\"");
        let d = diff(BASE, &new);
        assert_eq!(d.routes.added, ["three"]);
        assert_eq!(d.routes.removed, ["two"]);
        assert_eq!(d.routes.changed, ["one"]);
        assert_eq!(d.pools.changed, ["a"]);
        assert_eq!(d.backends.added, ["a 127.0.0.1:4"]);
        assert_eq!(d.backends.changed, ["a 127.0.0.1:2"]);
        assert!(d.restart_required.is_empty());
        assert_eq!(
            d.to_string(),
            "+ route three\n- route two\n~ route one\n    path.prefix: \"/one\" → \"/uno\"\n~ pool a\n+ backend a 127.0.0.1:4\n~ backend a 127.0.0.1:2\n    weight: 1 → 3"
        );
    }

    #[test]
    fn route_policies_change_field_by_field() {
        let old = format!(
            "{BASE}\n[pools.c]\nbackends = [\"127.0.0.1:5\"]\n[[routes]]\nid = \"p\"\npath = \"/p\"\n[[routes.split]]\npool = \"b\"\nweight = 5\n[[routes.split]]\npool = \"a\"\nweight = 95\nsticky = {{ cookie = \"s\" }}\n[routes.mirror]\npool = \"c\"\npercent = 5\n[routes.compression]\nalgorithms = [\"gzip\"]\n[routes.cors]\nallow_origins = [\"https://a.test\"]\n[routes.ip]\ndeny = [\"10.0.0.0/8\"]\n"
        );
        let new = old
            .replace("weight = 5\n", "weight = 50\n")
            .replace("weight = 95", "weight = 50")
            .replace("percent = 5", "percent = 20")
            .replace("[\"gzip\"]", "[\"zstd\", \"gzip\"]")
            .replace("https://a.test", "https://b.test")
            .replace("10.0.0.0/8", "10.0.0.0/16");
        let d = diff(&old, &new);
        assert_eq!(d.routes.changed, ["p"]);
        assert_eq!(
            d.to_string(),
            "~ route p\n    compression.algorithms: [[\"gzip\",6]] → [[\"zstd\",3],[\"gzip\",6]]\n    cors.allow_origins[0]: \"https://a.test\" → \"https://b.test\"\n    ip.deny[0]: \"10.0.0.0/8\" → \"10.0.0.0/16\"\n    mirror.percent: 5 → 20\n    upstream.split.sides[0].weight: 5 → 50\n    upstream.split.sides[1].weight: 95 → 50"
        );
    }

    #[test]
    fn startup_settings_need_a_restart() {
        let new = format!("[server]\nthreads = 3\nwatch_config = false\n[admin]\naddress = \"127.0.0.1:9999\"\n{BASE}");
        let d = diff(BASE, &new);
        assert_eq!(
            d.restart_required,
            ["admin.address", "server.threads", "server.watch_config"]
        );
        let new = format!("[[listeners]]\naddress = \"127.0.0.1:8081\"\n{BASE}");
        assert_eq!(diff(BASE, &new).restart_required, ["listeners"]);
    }

    #[test]
    fn tls_file_contents_count() {
        let config = parse_str(BASE, "c.toml").unwrap();
        let mut with_pool_tls = config.clone();
        let pool = with_pool_tls.pools.get_mut("a").unwrap();
        let ca = std::path::PathBuf::from("/etc/ca.pem");
        pool.tls = Some(model::UpstreamTls {
            sni: None,
            ca_file: Some(model::FileRef {
                path: ca.clone(),
                at: model::Pos::default(),
            }),
            verify: true,
            client_cert: None,
            h2: false,
        });
        let before: Material = [(ca.clone(), [1; 32])].into();
        let after: Material = [(ca, [2; 32])].into();
        let same = ConfigDiff::of(&with_pool_tls, &before, &with_pool_tls, &before);
        assert!(same.is_empty());
        let d = ConfigDiff::of(&with_pool_tls, &before, &with_pool_tls, &after);
        assert_eq!(d.pools.changed, ["a"]);
    }
}
