//! `[[routes.split]]`: shares, stickiness and matches, and the mistakes
//! an operator makes writing them.

use super::*;

const POOLS: &str =
    "[pools.v1]\nbackends = [\"127.0.0.1:1\"]\n[pools.v2]\nbackends = [\"127.0.0.1:2\"]\n";

fn split_route(sides: &str) -> String {
    format!("{POOLS}[[routes]]\nid = \"r\"\npath = \"/\"\n{sides}")
}

#[test]
fn a_split_is_read_in_order_with_its_sticky_and_matches() {
    let config = ok(&split_route(
        "[[routes.split]]\npool = \"v2\"\nweight = 5\nmatch = { header = { \"X-Canary\" = \"always\" } }\n[[routes.split]]\npool = \"v1\"\nweight = 95\nsticky = { cookie = \"pc-split\" }\n",
    ));
    let model::RouteUpstream::Split(split) = &config.routes[0].upstream else {
        panic!("not a split: {:?}", config.routes[0].upstream);
    };
    let sides: Vec<(&str, u8)> = split
        .sides
        .iter()
        .map(|s| (s.pool.as_str(), s.weight))
        .collect();
    assert_eq!(sides, [("v2", 5), ("v1", 95)]);
    assert_eq!(
        split.sides[0].match_headers,
        [("x-canary".to_string(), "always".to_string())]
    );
    assert!(split.sides[1].match_headers.is_empty());
    assert_eq!(split.sticky, Some(model::Sticky::Cookie("pc-split".into())));
    assert_eq!(config.routes[0].upstream.pools(), ["v2", "v1"]);

    let config = ok(&split_route(
        "[[routes.split]]\npool = \"v1\"\nweight = 100\nsticky = { header = \"X-User-Id\" }\n[[routes.split]]\npool = \"v2\"\nweight = 0\nsticky = { header = \"X-User-Id\" }\nmatch = { header = { \"x-canary\" = \"always\", \"x-team\" = \"payments\" } }\n",
    ));
    let model::RouteUpstream::Split(split) = &config.routes[0].upstream else {
        panic!("not a split");
    };
    assert_eq!(
        split.sticky,
        Some(model::Sticky::Header("x-user-id".into()))
    );
    assert_eq!(split.sides[1].match_headers.len(), 2);
}

#[test]
fn split_mistakes_are_refused_with_where_and_why() {
    let errors = all_errors(&split_route(
        "[[routes.split]]\npool = \"v2\"\nweight = 5\nsticky = { cookie = \"a\" }\n[[routes.split]]\npool = \"v3\"\nweight = 90\n[[routes.split]]\npool = \"v2\"\nweight = 101\nsticky = { cookie = \"b\" }\nmatch = { header = {} }\n",
    ));
    let expected = [
        r#"f.toml:13:8: route "r": pool "v3" is not defined (defined pools: v1, v2)"#,
        r#"f.toml:16:8: route "r": split: pool "v2" is listed twice"#,
        r#"f.toml:17:10: route "r": split: the weights add up to 196; they are percentages of the requests and must add up to 100"#,
        r#"f.toml:17:10: route "r": split: weight 101 is not a percentage (0 to 100)"#,
        r#"f.toml:18:10: route "r": split: sticky is set for the whole split and differs from the one at line 11"#,
        r#"f.toml:19:9: route "r": split: match.header is empty"#,
    ];
    let mut errors = errors;
    errors.sort();
    assert_each_starts_with(&errors, &expected);

    let one = |sides: &str| only_error(&split_route(sides));
    let starts = |sides: &str, want: &str| {
        let got = one(sides);
        assert!(
            got.starts_with(want),
            "{got}\n  does not start with\n{want}"
        );
    };
    starts(
        "pool = \"v1\"\n[[routes.split]]\npool = \"v2\"\nweight = 100\n",
        r#"f.toml:8:8: route "r": a route has either pool or [[routes.split]], not both"#,
    );
    starts("", r#"f.toml:6:6: route "r": the route names no pool"#);
    starts("[[routes.split]]\npool = \"v1\"\nweight = 60\n[[routes.split]]\npool = \"v2\"\nweight = 30\n", r#"f.toml:13:10: route "r": split: the weights add up to 90"#);
    starts("[[routes.split]]\npool = \"v1\"\nweight = 100\nsticky = { cookie = \"a\", header = \"b\" }\n", r#"f.toml:11:10: route "r": split: sticky takes one of cookie"#);
    starts(
        "[[routes.split]]\npool = \"v1\"\nweight = 100\nsticky = { cookie = \"a b\" }\n",
        r#"f.toml:11:10: route "r": split: sticky "a b" is not a cookie or header name"#,
    );
    starts("[[routes.split]]\npool = \"v1\"\nweight = 100\nmatch = { header = { \"x\" = \" padded\" } }\n", r#"f.toml:11:28: route "r": split: match value " padded" is not a header value"#);
    starts(
        "[[routes.split]]\npool = \"v1\"\nweight = 100\nmatch = { cookie = { \"x\" = \"y\" } }\n",
        r#"f.toml:11:11: route "r": unknown key `cookie` (keys here: header)"#,
    );
    starts(
        "[[routes.split]]\npool = \"v1\"\nweight = 2.5\n",
        r#"f.toml:10:10: route "r": expected an integer, like 2, not the number 2.5"#,
    );
}

#[test]
fn a_mirror_is_read_with_defaults_and_mistakes_refused() {
    let base = format!("{POOLS}[pools.shadow]\nbackends = [\"127.0.0.1:3\"]\n[[routes]]\nid = \"r\"\npath = \"/\"\npool = \"v1\"\n[routes.mirror]\n");
    let config = ok(&format!("{base}pool = \"shadow\"\n"));
    let m = config.routes[0].mirror.as_ref().unwrap();
    assert_eq!(
        (
            m.pool.as_str(),
            m.percent,
            m.include_body,
            m.max_body_size,
            m.max_in_flight
        ),
        ("shadow", 100, false, 64 << 10, 100)
    );
    let config = ok(&format!(
        "{base}pool = \"shadow\"\npercent = 10\ninclude_body = true\nmax_body_size = \"1MiB\"\nmax_in_flight = 20\n"
    ));
    let m = config.routes[0].mirror.as_ref().unwrap();
    assert_eq!(
        (m.percent, m.include_body, m.max_body_size, m.max_in_flight),
        (10, true, 1 << 20, 20)
    );

    let errors = all_errors(&format!(
        "{base}pool = \"v1\"\npercent = 150\nmax_body_size = \"1KiB\"\nmax_in_flight = 0\n"
    ));
    let expected = [
        r#"f.toml:12:8: route "r": mirror: pool "v1" already takes this route's requests"#,
        r#"f.toml:13:11: route "r": mirror: percent 150 is not a percentage (0 to 100)"#,
        r#"f.toml:14:17: route "r": mirror: max_body_size applies only with include_body = true"#,
        r#"f.toml:15:17: route "r": mirror: max_in_flight 0 must be 1 to 100000"#,
    ];
    assert_each_starts_with(&errors, &expected);
    assert!(only_error(&format!("{base}pool = \"nowhere\"\n"))
        .starts_with(r#"f.toml:12:8: route "r": pool "nowhere" is not defined"#));
}

#[test]
fn compression_is_read_with_defaults_and_mistakes_refused() {
    let base = format!(
        "{POOLS}[[routes]]\nid = \"r\"\npath = \"/\"\npool = \"v1\"\n[routes.compression]\n"
    );
    let config = ok(&base);
    let c = config.routes[0].compression.as_ref().unwrap();
    assert_eq!(
        c.algorithms,
        [
            (model::Coding::Zstd, 3),
            (model::Coding::Br, 4),
            (model::Coding::Gzip, 6)
        ]
    );
    assert_eq!(c.min_size, 1024);
    assert!(c.types.contains(&"text/*".to_string()));
    let config = ok(&format!(
        "{base}algorithms = [\"gzip\", \"br\"]\nmin_size = \"2KiB\"\ntypes = [\"Application/JSON\", \"text/*\"]\nlevel = {{ br = 11 }}\n"
    ));
    let c = config.routes[0].compression.as_ref().unwrap();
    assert_eq!(
        c.algorithms,
        [(model::Coding::Gzip, 6), (model::Coding::Br, 11)]
    );
    assert_eq!(c.types, ["application/json", "text/*"]);
    let config = ok(&format!("{base}algorithms = [\"gzip\"]\nlevel = 1\n"));
    assert_eq!(
        config.routes[0].compression.as_ref().unwrap().algorithms,
        [(model::Coding::Gzip, 1)]
    );

    let errors = all_errors(&format!(
        "{base}algorithms = [\"gzip\", \"deflate\", \"gzip\"]\ntypes = [\"json\", \"*/*\"]\nlevel = 12\n"
    ));
    let expected = [
        r#"f.toml:10:23: route "r": compression: unknown algorithm "deflate""#,
        r#"f.toml:10:34: route "r": compression: "gzip" is listed twice"#,
        r#"f.toml:11:10: route "r": compression.types: "json" is not a media type"#,
        r#"f.toml:11:18: route "r": compression.types: "*/*" is not a media type"#,
        r#"f.toml:12:9: route "r": compression.level: 12 is not a gzip level (1 to 9)"#,
    ];
    assert_each_starts_with(&errors, &expected);
    assert!(only_error(&format!("{base}algorithms = []\n"))
        .starts_with(r#"f.toml:10:14: route "r": compression.algorithms is empty"#));
    assert!(
        only_error(&format!("{base}level = {{ zstd = 30 }}\n")).starts_with(
            r#"f.toml:10:9: route "r": compression.level: 30 is not a zstd level (1 to 19)"#
        )
    );
    assert!(only_error(&format!("{base}level = \"fast\"\n"))
        .starts_with(r#"f.toml:10:9: route "r": compression.level: expected a number or a table"#));
}
