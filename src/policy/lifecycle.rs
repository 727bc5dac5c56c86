//! API version lifecycle: `Deprecation` (RFC 9745), `Sunset` (RFC 8594)
//! and `Link: <…>; rel="deprecation"` on a route's responses, and `410
//! Gone` from the sunset on when the route asks for it.

use http::HeaderValue;
use pingora_http::ResponseHeader;

use crate::config::model::Lifecycle;

/// A route's lifecycle headers, made once per snapshot.
#[derive(Debug)]
pub struct RouteLifecycle {
    /// `(name, value)` added to every response of the route.
    headers: Vec<(&'static str, HeaderValue)>,
    /// Unix seconds from which the route answers 410.
    pub(crate) gone_from: Option<i64>,
}

impl RouteLifecycle {
    /// `None` for a route without a lifecycle.
    pub fn build(l: &Lifecycle) -> Option<RouteLifecycle> {
        if l.is_empty() {
            return None;
        }
        let mut headers = Vec::new();
        if let Some(d) = l.deprecation {
            // An RFC 9651 Date: `@` and Unix seconds.
            push(&mut headers, "deprecation", format!("@{d}"));
        }
        if let Some(s) = l.sunset {
            push(&mut headers, "sunset", http_date(s));
        }
        if let Some(link) = &l.link {
            push(
                &mut headers,
                "link",
                format!("<{link}>; rel=\"deprecation\"; type=\"text/html\""),
            );
        }
        Some(RouteLifecycle {
            headers,
            gone_from: l.sunset.filter(|_| l.gone_after_sunset),
        })
    }

    /// Whether the route answers 410 at `now` (Unix seconds).
    pub fn gone(&self, now: i64) -> bool {
        self.gone_from.is_some_and(|t| now >= t)
    }

    /// The headers, for a response the gateway writes itself.
    pub fn headers(&self) -> &[(&'static str, HeaderValue)] {
        &self.headers
    }

    /// Add the headers to a response.
    pub fn apply(&self, resp: &mut ResponseHeader) -> pingora_error::Result<()> {
        for (name, value) in &self.headers {
            resp.insert_header(*name, value.clone())?;
        }
        Ok(())
    }
}

fn push(headers: &mut Vec<(&'static str, HeaderValue)>, name: &'static str, value: String) {
    // Validated: digits, dates and a URL of visible ASCII.
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.push((name, v));
    }
}

/// An IMF-fixdate (RFC 9110 §5.6.7) of Unix seconds.
fn http_date(secs: i64) -> String {
    let t = if secs >= 0 {
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.unsigned_abs())
    } else {
        std::time::UNIX_EPOCH
    };
    httpdate::fmt_http_date(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_gone() {
        let l = Lifecycle {
            deprecation: Some(1_767_225_600),
            sunset: Some(1_782_864_000),
            link: Some("https://example.com/v1".into()),
            gone_after_sunset: true,
        };
        let r = RouteLifecycle::build(&l).unwrap();
        let h: Vec<(&str, &str)> = r
            .headers()
            .iter()
            .map(|(n, v)| (*n, v.to_str().unwrap()))
            .collect();
        assert_eq!(
            h,
            [
                ("deprecation", "@1767225600"),
                ("sunset", "Wed, 01 Jul 2026 00:00:00 GMT"),
                (
                    "link",
                    "<https://example.com/v1>; rel=\"deprecation\"; type=\"text/html\""
                )
            ]
        );
        assert!(!r.gone(1_782_863_999));
        assert!(r.gone(1_782_864_000));
        let keep_serving = Lifecycle {
            gone_after_sunset: false,
            ..l
        };
        assert!(!RouteLifecycle::build(&keep_serving).unwrap().gone(i64::MAX));
        assert!(RouteLifecycle::build(&Lifecycle::default()).is_none());
    }
}
