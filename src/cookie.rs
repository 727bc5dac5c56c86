//! Reading one cookie from a request's `Cookie` fields (several lines, as
//! HTTP/2 sends them, count as one list).

use http::HeaderMap;

/// The value of the first cookie called `name`, as sent.
pub fn find<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn finds_a_cookie_across_fields() {
        let mut h = HeaderMap::new();
        h.append("cookie", HeaderValue::from_static("a=1; b=2"));
        h.append("cookie", HeaderValue::from_static("c=3"));
        assert_eq!(find(&h, "b"), Some("2"));
        assert_eq!(find(&h, "c"), Some("3"));
        assert_eq!(find(&h, "d"), None);
        assert_eq!(find(&h, "a=1"), None);
    }
}
