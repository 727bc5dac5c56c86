//! `[[jwt_issuers]]` and the token settings of routes.

use super::*;

const ISSUER: &str = "[[jwt_issuers]]\nid = \"main\"\nissuer = \"https://login.example.com/\"\naudiences = [\"orders-api\"]\njwks_file = \"jwks.json\"\n";

#[test]
fn a_jwt_route_with_every_setting() {
    let config = ok(&with_pool(&format!(
        "{ISSUER}algorithms = [\"RS256\", \"EdDSA\"]\nleeway = \"10s\"\nconsumer_claim = \"oid\"\nscopes_claim = \"scp\"\nrate_limits = [{{ rate = \"10/s\" }}]\nquota = {{ day = 1000 }}\n{}",
        route(
            "r",
            "path = \"/r\"\nauth = \"jwt\"\njwt_issuers = [\"main\"]\ntoken_from = \"cookie:session\"\nrequired_scopes = { GET = [\"r:read\"], POST = [\"r:write\"] }\nforward_claims = { \"X-User-Id\" = \"sub\" }\nkeep_token = true\nrate_limits = [{ rate = \"5/s\", per = \"consumer\" }]"
        )
    )));
    let issuer = &config.jwt_issuers[0];
    assert_eq!(
        issuer.algorithms,
        vec![crate::jwt::Alg::RS256, crate::jwt::Alg::EdDSA]
    );
    assert_eq!(issuer.leeway, Duration::from_secs(10));
    assert_eq!(issuer.consumer_claim, "oid");
    assert_eq!(issuer.quotas.len(), 1);
    let jwt = config.routes[0].auth.jwt().expect("a jwt route");
    assert_eq!(jwt.issuers, vec!["main"]);
    assert_eq!(jwt.token_from, model::TokenSource::Cookie("session".into()));
    assert_eq!(
        jwt.required_scopes.for_method("POST").collect::<Vec<_>>(),
        vec!["r:write"]
    );
    assert_eq!(jwt.forward_claims, vec![("x-user-id".into(), "sub".into())]);
    assert!(jwt.keep_token);
    // Defaults.
    let config = ok(&with_pool(&format!(
        "{ISSUER}{}",
        route("r", "path = \"/r\"\nauth = \"api_key_or_jwt\"")
    )));
    let issuer = &config.jwt_issuers[0];
    assert_eq!(issuer.algorithms, vec![crate::jwt::Alg::RS256]);
    assert_eq!(issuer.leeway, model::DEFAULT_JWT_LEEWAY);
    assert_eq!(issuer.consumer_claim, "sub");
    assert!(config.routes[0].auth.api_key().is_some() && config.routes[0].auth.jwt().is_some());
}

#[test]
fn unsafe_or_incomplete_issuers_are_refused_with_where_and_why() {
    let src = with_pool(
        r#"[[jwt_issuers]]
id = "a"
issuer = "https://a/"
jwks_file = "a.json"
jwks_url = "https://a/jwks"
algorithms = ["none", "HS256", "RS256", "RS256", "XY999"]

[[jwt_issuers]]
id = "b"
issuer = "https://b/"
audiences = []
jwks_url = "ftp://b/jwks"
refresh = "0s"

[[jwt_issuers]]
id = "b"
issuer = "https://b2/"
audiences = ["x"]
jwks_file = "b.json"
refresh = "1m"
"#,
    );
    let errors = all_errors(&src);
    let expected = [
        r#"f.toml:4:6: jwt issuer "a": audiences is required"#,
        r#"f.toml:7:12: jwt issuer "a": give exactly one of jwks_file, jwks_url and discovery"#,
        r#"f.toml:8:15: jwt issuer "a": algorithm "none" is refused: unsigned tokens are never accepted"#,
        r#"f.toml:8:23: jwt issuer "a": algorithm "HS256" is refused: HMAC"#,
        r#"f.toml:8:41: jwt issuer "a": algorithm "RS256" is listed twice"#,
        r#"f.toml:8:50: jwt issuer "a": unknown algorithm "XY999"; expected one of RS256"#,
        r#"f.toml:13:13: jwt issuer "b": audiences must name at least one audience"#,
        r#"f.toml:14:12: jwt issuer "b": jwks_url "ftp://b/jwks" is not an http:// or https:// URL"#,
        r#"f.toml:15:11: jwt issuer "b": refresh must be greater than 0"#,
        r#"f.toml:18:6: jwt issuer "b": jwt issuer id "b" is defined twice"#,
        r#"f.toml:22:11: jwt issuer "b": refresh applies to jwks_url and discovery"#,
    ];
    assert_each_starts_with(&errors, &expected);
}

#[test]
fn route_token_settings_are_checked() {
    let src = with_pool(&format!(
        "{ISSUER}{}{}{}",
        route(
            "a",
            "path = \"/a\"\nauth = \"jwt\"\njwt_issuers = [\"nobody\"]\ntoken_from = \"query:t\"\nrequired_scopes = \"r:read\"\nforward_claims = { \"host\" = \"sub\" }"
        ),
        route("b", "path = \"/b\"\nrequired_scopes = [\"x\"]\nkeep_token = true"),
        route("c", "path = \"/c\"\nauth = \"jwt\"\nrequired_scopes = { get = [\"x\"] }"),
    ));
    let errors = all_errors(&src);
    let expected = [
        r#"f.toml:13:16: route "a": jwt_issuers: no issuer "nobody" is defined (defined: main)"#,
        r#"f.toml:14:14: route "a": token_from "query:t" is not supported"#,
        r#"f.toml:15:19: route "a": required_scopes must be a list"#,
        r#"f.toml:16:20: route "a": forward_claims: "host" cannot carry a claim"#,
        r#"f.toml:21:19: route "b": required_scopes needs auth = "jwt" or "api_key_or_jwt""#,
        r#"f.toml:22:14: route "b": keep_token needs auth = "jwt" or "api_key_or_jwt""#,
        r#"f.toml:28:19: route "c": required_scopes: "get" is not an upper-case method name"#,
    ];
    assert_each_starts_with(&errors, &expected);
    // A jwt route needs an issuer to exist.
    let e = only_error(&with_pool(&route("r", "path = \"/r\"\nauth = \"jwt\"")));
    assert!(e.contains("no [[jwt_issuers]] are defined"), "{e}");
}
