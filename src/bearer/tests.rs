use super::*;

fn route(token_from: TokenSource, keep_token: bool) -> RouteBearer {
    RouteBearer {
        issuers: Vec::new(),
        token_from,
        required_scopes: model::RequiredScopes::default(),
        forward_claims: Vec::new(),
        keep_token,
        challenge_missing: HeaderValue::from_static("Bearer"),
        challenge_invalid: HeaderValue::from_static("Bearer"),
    }
}

fn request(headers: &[(&str, &str)]) -> RequestHeader {
    let mut req = RequestHeader::build("GET", b"/", None).unwrap();
    for (n, v) in headers {
        req.append_header(n.to_string(), *v).unwrap();
    }
    req
}

#[test]
fn a_token_is_read_where_the_route_says_and_only_there_removed() {
    let cookie = route(TokenSource::Cookie("session".into()), false);
    let mut req = request(&[
        ("cookie", "theme=dark; session=a.b.c"),
        ("cookie", "lang=en"),
        ("authorization", "Bearer x.y.z"),
    ]);
    assert_eq!(cookie.presented(&req), Some("a.b.c"));
    cookie.remove_token(&mut req).unwrap();
    assert_eq!(req.headers["cookie"], "theme=dark; lang=en");
    // Another route's place is left alone.
    assert_eq!(req.headers["authorization"], "Bearer x.y.z");

    let bearer = route(TokenSource::Bearer, false);
    assert_eq!(bearer.presented(&req), Some("x.y.z"));
    assert_eq!(
        bearer.presented(&request(&[("authorization", "Basic x.y.z")])),
        None
    );
    assert_eq!(
        bearer.presented(&request(&[("authorization", "Bearer  ")])),
        None
    );
    bearer.remove_token(&mut req).unwrap();
    assert!(req.headers.get("authorization").is_none());

    let kept = route(TokenSource::Header("x-token".into()), true);
    let mut req = request(&[("x-token", "a.b.c")]);
    assert_eq!(kept.presented(&req), Some("a.b.c"));
    kept.remove_token(&mut req).unwrap();
    assert_eq!(req.headers["x-token"], "a.b.c");
}

#[test]
fn only_jwt_shaped_tokens_go_to_the_issuers_on_either_routes() {
    assert!(looks_like_jwt(b"eyJh.eyJi.c2ln"));
    assert!(!looks_like_jwt(b"pk_a1B2c3_0123456789abcdef"));
    assert!(!looks_like_jwt(b"a.b.c.d"));
}

#[test]
fn claims_become_header_values_only_when_a_header_can_carry_them() {
    let claims = serde_json::json!({
        "sub": "user-1", "n": 42, "ok": true, "list": ["a"], "bad": "a\r\nb", "utf8": "é",
    });
    let bearer = Bearer {
        issuer: 0,
        issuer_id: Arc::from("main"),
        consumer: Arc::from("user-1"),
        subject: Arc::from("main:user-1"),
        header_value: HeaderValue::from_static("user-1"),
        scopes: Vec::new(),
        claims: claims.as_object().unwrap().clone(),
        valid_until: 0,
    };
    assert_eq!(bearer.claim_value("sub").unwrap(), "user-1");
    assert_eq!(bearer.claim_value("n").unwrap(), "42");
    assert_eq!(bearer.claim_value("ok").unwrap(), "true");
    for absent in ["list", "bad", "utf8", "missing"] {
        assert!(bearer.claim_value(absent).is_none(), "{absent}");
    }
}
