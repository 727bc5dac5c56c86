//! API keys in requests: reading the key never panics, and after the key is
//! removed the upstream request carries none where it was read from (the
//! key never reaches a backend).
//!
//! Input: first byte picks the place (header, bearer, query `api_key`),
//! the rest is the header value or the request target's query.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pingora_http::RequestHeader;
use portcullis::auth::{presented_key, remove_key, KeyPlace};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let place = match selector % 3 {
        0 => KeyPlace::Header(http::HeaderName::from_static("x-api-key")),
        1 => KeyPlace::Bearer,
        _ => KeyPlace::Query("api_key".to_string()),
    };
    let Ok(mut req) = build(&place, rest) else {
        return;
    };
    if let Some(key) = presented_key(&req, &place) {
        assert!(!key.is_empty(), "an empty value counts as no key");
    }
    if remove_key(&mut req, &place).is_ok() {
        assert!(
            presented_key(&req, &place).is_none(),
            "key still present upstream: {:?}",
            req.uri
        );
        if let KeyPlace::Query(name) = &place {
            let query = req.uri.query().unwrap_or("");
            assert!(
                !query.split('&').any(|p| p.split('=').next() == Some(name)),
                "parameter {name} still in {query:?}"
            );
        }
    }
});

fn build(place: &KeyPlace, rest: &[u8]) -> Result<RequestHeader, Box<dyn std::error::Error>> {
    match place {
        KeyPlace::Query(_) => {
            let mut target = b"/p?".to_vec();
            target.extend_from_slice(rest);
            Ok(RequestHeader::build("GET", &target, None)?)
        }
        KeyPlace::Header(name) => {
            let mut req = RequestHeader::build("GET", b"/p", None)?;
            req.insert_header(name.clone(), rest)?;
            Ok(req)
        }
        KeyPlace::Bearer => {
            let mut req = RequestHeader::build("GET", b"/p", None)?;
            req.insert_header(http::header::AUTHORIZATION, rest)?;
            Ok(req)
        }
    }
}
