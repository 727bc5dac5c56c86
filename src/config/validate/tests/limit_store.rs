//! `[limit_store]` and the `accuracy` of rate limits.

use super::*;
use crate::ratelimit::Accuracy;

#[test]
fn a_redis_store_with_every_setting_and_accuracy_resolved_per_limit() {
    let config = ok(&with_pool(&format!(
        "[limit_store]\nkind = \"redis\"\nurl = \"rediss://gw@redis.internal:6380/2\"\npassword_env = \"REDIS_PASSWORD\"\nca_file = \"ca.pem\"\ntimeout = \"50ms\"\non_error = \"deny\"\ninstances = 3\naccuracy = \"exact\"\nsync_interval = \"250ms\"\nkey_prefix = \"eu:\"\n{}[[consumers]]\nid = \"c\"\nscopes = []\nrate_limits = [{{ rate = \"10/s\" }}, {{ rate = \"20/s\", accuracy = \"approximate\" }}]\n",
        route(
            "r",
            "path = \"/r\"\nrate_limits = [{ rate = \"5/s\", per = \"route\" }, { rate = \"50/s\", per = \"client_ip\", accuracy = \"approximate\" }]"
        )
    )));
    let model::LimitStoreSettings::Redis(store) = &config.limit_store else {
        panic!("{:?}", config.limit_store)
    };
    assert_eq!(store.url, "rediss://gw@redis.internal:6380/2");
    assert_eq!(
        store.password,
        Some(model::SecretSource::Env("REDIS_PASSWORD".into()))
    );
    assert!(store
        .ca_file
        .as_ref()
        .is_some_and(|p| p.ends_with("ca.pem")));
    assert_eq!(store.timeout, Duration::from_millis(50));
    assert_eq!(store.on_error, model::OnStoreError::Deny);
    assert_eq!(store.instances, 3);
    assert_eq!(store.sync_interval, Duration::from_millis(250));
    assert_eq!(store.key_prefix, "eu:");
    let limits = &config.routes[0].rate_limits;
    assert_eq!(limits[0].accuracy, Accuracy::Exact, "the store's default");
    assert_eq!(limits[1].accuracy, Accuracy::Approximate, "its own");
    let consumer = &config.consumers[0].rate_limits;
    assert_eq!(consumer[0].accuracy, Accuracy::Exact);
    assert_eq!(consumer[1].accuracy, Accuracy::Approximate);

    // Defaults: a local store, approximate limits.
    let config = ok(&with_pool(&route(
        "r",
        "path = \"/r\"\nrate_limits = [{ rate = \"5/s\", per = \"route\" }]",
    )));
    assert_eq!(config.limit_store, model::LimitStoreSettings::Local);
    assert_eq!(
        config.routes[0].rate_limits[0].accuracy,
        Accuracy::Approximate
    );
    let config = ok("[limit_store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\n");
    let model::LimitStoreSettings::Redis(store) = &config.limit_store else {
        panic!()
    };
    assert_eq!(store.timeout, model::DEFAULT_LIMIT_STORE_TIMEOUT);
    assert_eq!(store.on_error, model::OnStoreError::Local);
    assert_eq!(store.key_prefix, "portcullis:");
    assert_eq!(store.password, None);
}

#[test]
fn unsafe_or_wrong_store_settings_are_refused_with_where_and_why() {
    let errors = all_errors(
        r#"[limit_store]
kind = "redis"
url = "redis://:hunter2@127.0.0.1:6379/0"
password_file = "a"
password_env = "B"
timeout = "10s"
on_error = "panic"
instances = 0
accuracy = "roughly"
sync_interval = "0s"
key_prefix = "{x}"
"#,
    );
    let expected = [
        r#"f.toml:3:7: limit_store: url holds a password: never inline; use password_file or password_env"#,
        r#"f.toml:4:17: limit_store: password_file and password_env are both set"#,
        r#"f.toml:6:11: limit_store: timeout must be at most 5s"#,
        r#"f.toml:7:12: limit_store: on_error: unknown behaviour "panic""#,
        r#"f.toml:8:13: limit_store: instances must be from 1 to 10000"#,
        r#"f.toml:9:12: limit_store: accuracy: unknown "roughly""#,
        r#"f.toml:10:17: limit_store: sync_interval must be greater than 0"#,
        r#"f.toml:11:14: limit_store: key_prefix: at most 64 visible ASCII characters"#,
    ];
    let mut errors = errors;
    errors.sort_by_key(|e| {
        let mut parts = e
            .split(':')
            .skip(1)
            .map(|n| n.parse::<usize>().unwrap_or(0));
        (parts.next(), parts.next())
    });
    assert_each_starts_with(&errors, &expected);
    for e in &errors {
        assert!(
            !e.contains("hunter2"),
            "the password is never repeated: {e}"
        );
    }

    assert!(only_error("[limit_store]\nkind = \"redis\"\n")
        .starts_with(r#"f.toml:2:8: limit_store: kind = "redis" needs url"#));
    assert!(
        only_error("[limit_store]\nkind = \"redis\"\nurl = \"http://x:1\"\n")
            .contains("is not a Redis URL")
    );
    assert!(only_error("[limit_store]\nkind = \"memcached\"\n")
        .contains(r#"unknown store "memcached""#));
    assert!(only_error("[limit_store]\nurl = \"redis://x:1\"\n")
        .starts_with(r#"f.toml:2:7: limit_store: url only applies to kind = "redis""#));
    assert!(only_error(
        "[limit_store]\nkind = \"redis\"\nurl = \"redis://x:1\"\nca_file = \"ca.pem\"\n"
    )
    .contains("ca_file only applies to a rediss:// url"));
    assert!(only_error(&with_pool(&route(
        "r",
        "path = \"/r\"\nrate_limits = [{ rate = \"5/s\", per = \"route\", accuracy = \"fuzzy\" }]"
    )))
    .contains(r#"accuracy: unknown "fuzzy"; expected "exact" or "approximate""#));
}

#[test]
fn a_shared_cache_tier_borrows_the_limit_stores_redis_or_names_its_own() {
    let config = ok("[limit_store]\nkind = \"redis\"\nurl = \"redis://10.0.0.5:6379/0\"\npassword_env = \"P\"\n[cache.shared]\nkind = \"redis\"\n");
    let shared = config.cache.shared.as_ref().unwrap();
    assert_eq!(shared.url, "redis://10.0.0.5:6379/0");
    assert_eq!(shared.password, Some(model::SecretSource::Env("P".into())));
    assert_eq!(shared.max_object_size, 256 << 10);
    assert_eq!(shared.timeout, Duration::from_millis(20));
    assert_eq!(shared.key_prefix, "portcullis:");

    let config = ok("[cache.shared]\nkind = \"redis\"\nurl = \"rediss://cache:6380/1\"\nca_file = \"ca.pem\"\ntimeout = \"5ms\"\nmax_object_size = \"1MiB\"\nkey_prefix = \"eu:\"\n");
    let shared = config.cache.shared.as_ref().unwrap();
    assert_eq!(shared.url, "rediss://cache:6380/1");
    assert!(shared
        .ca_file
        .as_ref()
        .is_some_and(|p| p.ends_with("ca.pem")));
    assert_eq!(
        (shared.timeout, shared.max_object_size),
        (Duration::from_millis(5), 1 << 20)
    );
    assert_eq!(shared.key_prefix, "eu:");
    assert_eq!(ok("").cache.shared, None);

    assert!(only_error("[cache.shared]\nkind = \"redis\"\n")
        .starts_with(r#"f.toml:2:8: cache.shared: kind = "redis" needs url"#));
    assert!(only_error("[cache.shared]\nkind = \"memcached\"\n")
        .contains(r#"cache.shared: kind: unknown tier "memcached"; expected "redis""#));
    let e = only_error("[cache.shared]\nkind = \"redis\"\nurl = \"redis://:s3cret@h:1\"\n");
    assert!(
        e.contains("url holds a password") && !e.contains("s3cret"),
        "{e}"
    );
    assert!(only_error(
        "[cache.shared]\nkind = \"redis\"\nurl = \"redis://h:1\"\nmax_object_size = \"1GiB\"\n"
    )
    .contains("max_object_size must be at most 64MiB"));
    assert!(only_error(
        "[cache.shared]\nkind = \"redis\"\nurl = \"redis://h:1\"\ntimeout = \"1m\"\n"
    )
    .contains("cache.shared: timeout must be at most 5s"));
}
