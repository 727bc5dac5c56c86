//! What the cache did for a request: the `Cache-Status` header (RFC 9211)
//! and the result counted in `portcullis_cache_requests_total`.

use pingora_cache::CachePhase;

use crate::metrics::cache::CacheResult;

/// The cache's name in `Cache-Status`.
pub const NAME: &str = "portcullis";

/// How a request on a caching route was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheOutcome {
    pub result: CacheResult,
    /// The response was written to the store.
    pub stored: bool,
    /// The request's own directives forced the trip to the backend.
    pub forced_by_request: bool,
    /// Served stale because the backend failed (stale-if-error).
    pub stale_if_error: bool,
    /// Seconds of freshness left (negative: stale for that long).
    pub ttl: Option<i64>,
    /// Not looked up because of the method.
    pub method: bool,
    /// Why the response was not stored.
    pub detail: Option<&'static str>,
}

impl CacheOutcome {
    pub fn bypass(method: bool) -> CacheOutcome {
        CacheOutcome {
            result: CacheResult::Bypass,
            stored: false,
            forced_by_request: false,
            stale_if_error: false,
            ttl: None,
            method,
            detail: None,
        }
    }

    /// The result for a cache phase seen when the response goes out.
    pub fn from_phase(phase: CachePhase) -> CacheResult {
        match phase {
            CachePhase::Hit => CacheResult::Hit,
            CachePhase::Stale | CachePhase::StaleUpdating => CacheResult::Stale,
            CachePhase::Expired => CacheResult::Expired,
            CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => CacheResult::Revalidated,
            CachePhase::Miss => CacheResult::Miss,
            _ => CacheResult::Bypass,
        }
    }

    /// The `Cache-Status` value.
    pub fn header(&self) -> String {
        let mut s = String::from(NAME);
        match self.result {
            CacheResult::Hit => s.push_str("; hit"),
            CacheResult::Stale => {
                s.push_str("; hit");
                if self.stale_if_error {
                    s.push_str("; fwd=stale; detail=stale-if-error");
                } else {
                    s.push_str("; detail=stale-while-revalidate");
                }
            }
            CacheResult::Miss => s.push_str(if self.forced_by_request {
                "; fwd=request"
            } else {
                "; fwd=miss"
            }),
            CacheResult::Expired | CacheResult::Revalidated => {
                s.push_str(if self.forced_by_request {
                    "; fwd=request"
                } else {
                    "; fwd=stale"
                });
                s.push_str(if self.result == CacheResult::Expired {
                    "; fwd-status=200"
                } else {
                    "; fwd-status=304"
                });
            }
            CacheResult::Bypass => s.push_str(if self.method {
                "; fwd=method"
            } else {
                "; fwd=bypass"
            }),
        }
        if let Some(ttl) = self.ttl {
            s.push_str("; ttl=");
            s.push_str(&ttl.to_string());
        }
        if self.stored {
            s.push_str("; stored");
        }
        if let (Some(d), false) = (self.detail, self.result == CacheResult::Stale) {
            s.push_str("; detail=");
            s.push_str(d);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_follow_rfc_9211() {
        let mut o = CacheOutcome::bypass(false);
        o.result = CacheResult::Hit;
        o.ttl = Some(42);
        assert_eq!(o.header(), "portcullis; hit; ttl=42");
        o.result = CacheResult::Miss;
        o.ttl = None;
        o.stored = true;
        assert_eq!(o.header(), "portcullis; fwd=miss; stored");
        o.stored = false;
        o.detail = Some("no-store");
        assert_eq!(o.header(), "portcullis; fwd=miss; detail=no-store");
        assert_eq!(
            CacheOutcome::bypass(true).header(),
            "portcullis; fwd=method"
        );
        let mut revalidated = CacheOutcome::bypass(false);
        revalidated.result = CacheResult::Revalidated;
        assert_eq!(
            revalidated.header(),
            "portcullis; fwd=stale; fwd-status=304"
        );
        revalidated.result = CacheResult::Expired;
        revalidated.forced_by_request = true;
        assert_eq!(
            revalidated.header(),
            "portcullis; fwd=request; fwd-status=200"
        );
        let mut stale = CacheOutcome::bypass(false);
        stale.result = CacheResult::Stale;
        stale.ttl = Some(-3);
        assert_eq!(
            stale.header(),
            "portcullis; hit; detail=stale-while-revalidate; ttl=-3"
        );
    }
}
