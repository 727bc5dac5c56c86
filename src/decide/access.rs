//! Who may pass, and how often: the access step of the decision, once the
//! route is known.
//!
//! In order: brute-force damping (an address that sent too many invalid
//! keys gets 429 before its key is even looked at), the API key (401) and
//! its scope (403), then the route's and the consumer's rate limits and
//! quotas (429).

use std::net::IpAddr;

use http::HeaderValue;
use pingora_http::RequestHeader;

use super::{Decision, Refusal, NANOS_PER_SEC};
use crate::auth;
use crate::plans;
use crate::problem::Problem;
use crate::ratelimit::{CheckState, LimitStore, Outcome};
use crate::snapshot::Snapshot;

/// Run the access checks of route `route_index` for `req` from `ip` at
/// `now` (Unix nanoseconds), noting in `decision` whose key it was and
/// which limit refused. `Err`: the answer.
pub async fn admit(
    decision: &mut Decision,
    snapshot: &Snapshot,
    req: &RequestHeader,
    route_index: usize,
    ip: Option<IpAddr>,
    now: u64,
    store: &dyn LimitStore,
) -> Result<(), Refusal> {
    let Some(route) = snapshot.routes.get(route_index) else {
        return Ok(());
    };
    if route.auth.is_none() && route.limits.limits.is_empty() {
        return Ok(());
    }
    let mut consumer = None;

    if let Some(key_auth) = &route.auth {
        let damping = snapshot
            .failed_attempts
            .as_ref()
            .zip(ip)
            .map(|(limit, ip)| limit.check(None, Some(ip)));
        if let Some(check) = &damping {
            if let Outcome::Denied {
                retry_after_secs, ..
            } = store.peek(std::slice::from_ref(check), now).await
            {
                decision.denied_by = Some("failed-attempts");
                return Err(Refusal {
                    limit: Some("failed-attempts".into()),
                    headers: vec![("retry-after", HeaderValue::from(retry_after_secs))],
                    ..Refusal::new(Problem::TooManyFailedAttempts)
                });
            }
        }
        let key = auth::presented_key(req, &key_auth.source);
        let now_secs = i64::try_from(now / NANOS_PER_SEC).unwrap_or(i64::MAX);
        let verdict = auth::authenticate(
            &snapshot.consumers,
            key.as_deref(),
            route_index,
            &req.method,
            now_secs,
        );
        match verdict {
            Ok(who) => {
                decision.consumer = Some(who.consumer_index);
                decision.key_prefix = Some(who.key.prefix.clone());
                consumer = Some(who.consumer);
            }
            Err(auth::Refused { rejection, key }) => {
                decision.auth_failure = Some(rejection.reason());
                // A known key (disabled, expired, out of scope) names its
                // consumer: logged and counted in the consumer's usage.
                if let Some(key) = key {
                    decision.consumer = Some(key.consumer);
                    decision.key_prefix = Some(key.prefix.clone());
                }
                if rejection.is_failed_attempt() {
                    if let Some(check) = damping {
                        store.acquire(&[check], now).await;
                    }
                }
                let (problem, challenge) = match rejection {
                    auth::Rejection::Missing => {
                        (Problem::KeyRequired, Some(&key_auth.challenge_missing))
                    }
                    auth::Rejection::OutOfScope => (Problem::Forbidden, None),
                    _ => (Problem::KeyInvalid, Some(&key_auth.challenge_invalid)),
                };
                return Err(Refusal {
                    headers: challenge
                        .map(|c| ("www-authenticate", c.clone()))
                        .into_iter()
                        .collect(),
                    ..Refusal::new(problem)
                });
            }
        }
    }

    let plan = plans::plan(&route.limits, route_index, consumer.map(|c| &c.limits), ip);
    if plan.is_empty() {
        return Ok(());
    }
    match store.acquire(&plan.checks, now).await {
        Outcome::Allowed(states) => {
            decision.rate_limit_headers = Some(rate_limit_headers(&plan, &states, now));
            Ok(())
        }
        Outcome::Denied {
            index,
            retry_after_secs,
            states,
        } => {
            let Some(hit) = plan.limits.get(index) else {
                return Ok(());
            };
            decision.denied_by = Some(limit_label(&hit.name));
            let (policy, current) = rate_limit_headers(&plan, &states, now);
            Err(Refusal {
                detail: Some(format!("{}.", hit.describe())),
                limit: Some(hit.name.clone()),
                headers: vec![
                    ("retry-after", HeaderValue::from(retry_after_secs.max(1))),
                    ("ratelimit-policy", policy),
                    ("ratelimit", current),
                ],
                ..Refusal::new(Problem::TooManyRequests)
            })
        }
    }
}

/// `RateLimit-Policy` and `RateLimit` for the limits of `plan`.
fn rate_limit_headers(
    plan: &plans::Plan<'_>,
    states: &[CheckState],
    now: u64,
) -> (HeaderValue, HeaderValue) {
    // The state changes with every response: kept out of the HTTP/2
    // HPACK dynamic table, as the request id is (see `request_id`).
    let mut state = plan.state_header(states);
    state.set_sensitive(true);
    (plan.policy_header(now), state)
}

/// A `'static` label for the access log: limit names come from a fixed
/// set (numbered when a list repeats one).
fn limit_label(name: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "route",
        "route-consumer",
        "route-ip",
        "consumer",
        "consumer-route",
        "daily-quota",
        "monthly-quota",
    ];
    let base = name
        .rsplit_once('-')
        .filter(|(_, n)| n.bytes().all(|b| b.is_ascii_digit()))
        .map_or(name, |(b, _)| b);
    KNOWN
        .iter()
        .find(|k| **k == base)
        .copied()
        .unwrap_or("limit")
}

#[cfg(test)]
mod tests {
    #[test]
    fn limit_labels() {
        assert_eq!(super::limit_label("route-ip"), "route-ip");
        assert_eq!(super::limit_label("route-ip-2"), "route-ip");
        assert_eq!(super::limit_label("consumer-route-3"), "consumer-route");
        assert_eq!(super::limit_label("weird"), "limit");
    }
}
