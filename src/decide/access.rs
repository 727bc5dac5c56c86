//! Who may pass, and how often: the access step of the decision, once the
//! route is known.
//!
//! In order: brute-force damping (an address that sent too many invalid
//! keys or tokens gets 429 before its credential is even looked at), the
//! API key (401) and its scope (403) or the bearer token (401) and the
//! scopes the route requires (403), then the route's and the consumer's
//! rate limits and quotas (429). A token's consumer has its issuer's
//! limits, counted per consumer.

use std::net::IpAddr;

use http::HeaderValue;
use pingora_http::RequestHeader;

use super::{Decision, Refusal, NANOS_PER_SEC};
use crate::auth;
use crate::bearer;
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
    let guarded = route.auth.is_some() || route.bearer.is_some();
    if !guarded && route.limits.limits.is_empty() {
        return Ok(());
    }
    let mut consumer = None;
    let mut bearer = None;

    if guarded {
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
        let refused = match token_to_check(route, req) {
            Some((route_bearer, token)) => {
                admit_token(decision, snapshot, req, route_bearer, token, now)
                    .map(|b| bearer = Some(b))
            }
            None => match &route.auth {
                Some(key_auth) => admit_key(decision, snapshot, req, key_auth, route_index, now)
                    .map(|who| consumer = Some(who)),
                None => {
                    decision.auth_failure = Some(bearer::Failure::Missing.reason());
                    Err((Refusal::new(Problem::TokenRequired), false))
                }
            },
        };
        if let Err((mut refusal, failed_attempt)) = refused {
            if failed_attempt {
                if let Some(check) = damping {
                    store.acquire(&[check], now).await;
                }
            }
            if refusal.problem == Problem::TokenRequired || refusal.problem == Problem::KeyRequired
            {
                // Every way in the route takes is offered.
                if let Some(k) = &route.auth {
                    push_challenge(&mut refusal, &k.challenge_missing);
                }
                if let Some(b) = &route.bearer {
                    push_challenge(&mut refusal, &b.challenge_missing);
                }
            }
            return Err(refusal);
        }
    }

    let who = match (&consumer, &bearer) {
        (Some(c), _) => Some((c.limits.consumer(), &c.limits)),
        (None, Some(b)) => snapshot
            .issuers
            .list
            .get(b.issuer)
            .map(|issuer| (&b.subject, &issuer.limits)),
        (None, None) => None,
    };
    let plan = plans::plan(&route.limits, route_index, who, ip);
    if plan.is_empty() {
        return Ok(());
    }
    match store.acquire(&plan.checks, now).await {
        Outcome::Allowed(states) => {
            // No states: a shared store that could not be reached let the
            // request through (`on_error = "allow"`), knowing nothing.
            if states.len() == plan.checks.len() {
                decision.rate_limit_headers = Some(rate_limit_headers(&plan, &states, now));
            }
            Ok(())
        }
        // Counted by portcullis_limit_store_fallbacks_total, not as a
        // limit the client hit.
        Outcome::Unavailable => Err(Refusal {
            headers: vec![(
                "retry-after",
                HeaderValue::from(crate::limit_store::RETRY_AFTER.as_secs().max(1)),
            )],
            ..Refusal::new(Problem::LimitsUnavailable)
        }),
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

/// A refusal, and whether it counts as a failed attempt (damping).
type Refused = (Refusal, bool);

fn push_challenge(refusal: &mut Refusal, challenge: &HeaderValue) {
    let entry = ("www-authenticate", challenge.clone());
    if !refusal.headers.contains(&entry) {
        refusal.headers.push(entry);
    }
}

/// The bearer token to check, when the route takes tokens and one is
/// presented: on an `api_key_or_jwt` route, only one shaped like a JWT
/// (anything else is taken as an API key).
fn token_to_check<'r, 's>(
    route: &'s crate::snapshot::Route,
    req: &'r RequestHeader,
) -> Option<(&'s bearer::RouteBearer, &'r str)> {
    let route_bearer = route.bearer.as_ref()?;
    let token = route_bearer.presented(req)?;
    (route.auth.is_none() || bearer::looks_like_jwt(token.as_bytes()))
        .then_some((route_bearer, token))
}

/// Check a bearer token and the route's scopes.
fn admit_token(
    decision: &mut Decision,
    snapshot: &Snapshot,
    req: &RequestHeader,
    route_bearer: &bearer::RouteBearer,
    token: &str,
    now: u64,
) -> Result<std::sync::Arc<bearer::Bearer>, Refused> {
    let now_secs = now / NANOS_PER_SEC;
    match snapshot
        .issuers
        .authenticate(token, &route_bearer.issuers, now_secs)
    {
        Ok(b) => {
            decision.bearer = Some(b.clone());
            if route_bearer.in_scope(&b, req.method.as_str()) {
                return Ok(b);
            }
            decision.auth_failure = Some(bearer::Failure::InsufficientScope.reason());
            let challenge =
                route_bearer.challenge_scope(&snapshot.config.auth.realm, req.method.as_str());
            Err((
                Refusal {
                    headers: vec![("www-authenticate", challenge)],
                    ..Refusal::new(Problem::InsufficientScope)
                },
                false,
            ))
        }
        Err(rejection) => {
            decision.token_rejection = Some(rejection);
            decision.auth_failure = Some(bearer::Failure::Invalid.reason());
            Err((
                Refusal {
                    headers: vec![("www-authenticate", route_bearer.challenge_invalid.clone())],
                    ..Refusal::new(Problem::TokenInvalid)
                },
                true,
            ))
        }
    }
}

/// Check an API key and its consumer's scope.
fn admit_key<'s>(
    decision: &mut Decision,
    snapshot: &'s Snapshot,
    req: &RequestHeader,
    key_auth: &crate::snapshot::RouteKeyAuth,
    route_index: usize,
    now: u64,
) -> Result<&'s auth::ConsumerEntry, Refused> {
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
            Ok(who.consumer)
        }
        Err(auth::Refused { rejection, key }) => {
            decision.auth_failure = Some(rejection.reason());
            // A known key (disabled, expired, out of scope) names its
            // consumer: logged and counted in the consumer's usage.
            if let Some(key) = key {
                decision.consumer = Some(key.consumer);
                decision.key_prefix = Some(key.prefix.clone());
            }
            let (problem, challenge) = match rejection {
                auth::Rejection::Missing => {
                    (Problem::KeyRequired, Some(&key_auth.challenge_missing))
                }
                auth::Rejection::OutOfScope => (Problem::Forbidden, None),
                _ => (Problem::KeyInvalid, Some(&key_auth.challenge_invalid)),
            };
            Err((
                Refusal {
                    headers: challenge
                        .map(|c| ("www-authenticate", c.clone()))
                        .into_iter()
                        .collect(),
                    ..Refusal::new(problem)
                },
                rejection.is_failed_attempt(),
            ))
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
