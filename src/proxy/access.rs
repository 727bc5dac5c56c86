//! Who may pass, and how often: the access step of `request_filter`, run
//! once the route is known.
//!
//! In order: brute-force damping (an address that sent too many invalid
//! keys gets 429 before its key is even looked at), the API key (401) and
//! its scope (403), then the route's and the consumer's rate limits and
//! quotas (429). Each refusal is written as a problem response here.

use std::net::IpAddr;

use http::HeaderValue;
use pingora_error::Result;
use pingora_proxy::Session;

use super::problem::{self, Problem};
use super::RequestCtx;
use crate::auth;
use crate::gateway::Gateway;
use crate::limits;
use crate::ratelimit::{CheckState, Outcome};
use crate::snapshot::Snapshot;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Run the access checks for route `route_index`. `Ok(true)`: the request
/// goes on; `Ok(false)`: it was answered here.
pub async fn admit(
    gateway: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    snapshot: &Snapshot,
    route_index: usize,
) -> Result<bool> {
    let Some(route) = snapshot.routes.get(route_index) else {
        return Ok(true);
    };
    if route.auth.is_none() && route.limits.limits.is_empty() {
        return Ok(true);
    }
    let store = gateway.limit_store();
    let now = gateway.clock().now_nanos();
    let ip = client_ip(session);
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
                ctx.denied_by = Some("failed-attempts");
                let extra = [("retry-after", HeaderValue::from(retry_after_secs))];
                problem::respond_detailed(
                    session,
                    Problem::TooManyFailedAttempts,
                    None,
                    Some("failed-attempts"),
                    &ctx.request_id,
                    &extra,
                )
                .await?;
                return Ok(false);
            }
        }
        let verdict = {
            let req = session.req_header();
            let key = auth::presented_key(req, &key_auth.source);
            let now_secs = i64::try_from(now / NANOS_PER_SEC).unwrap_or(i64::MAX);
            auth::authenticate(
                &snapshot.consumers,
                key.as_deref(),
                route_index,
                &req.method,
                now_secs,
            )
        };
        match verdict {
            Ok(who) => {
                ctx.consumer = Some(who.consumer_index);
                ctx.key_prefix = Some(who.key.prefix.clone());
                consumer = Some(who.consumer);
            }
            Err(auth::Refused { rejection, key }) => {
                ctx.auth_failure = Some(rejection.reason());
                // A known key (disabled, expired, out of scope) names its
                // consumer: logged and counted in the consumer's usage.
                if let Some(key) = key {
                    ctx.consumer = Some(key.consumer);
                    ctx.key_prefix = Some(key.prefix.clone());
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
                let extra: Vec<_> = challenge
                    .map(|c| ("www-authenticate", c.clone()))
                    .into_iter()
                    .collect();
                problem::respond_detailed(session, problem, None, None, &ctx.request_id, &extra)
                    .await?;
                return Ok(false);
            }
        }
    }

    let plan = limits::plan(&route.limits, route_index, consumer, ip);
    if plan.is_empty() {
        return Ok(true);
    }
    match store.acquire(&plan.checks, now).await {
        Outcome::Allowed(states) => {
            ctx.rate_limit_headers = Some(rate_limit_headers(&plan, &states, now));
            Ok(true)
        }
        Outcome::Denied {
            index,
            retry_after_secs,
            states,
        } => {
            let Some(hit) = plan.limits.get(index) else {
                return Ok(true);
            };
            ctx.denied_by = Some(limit_label(&hit.name));
            let (policy, current) = rate_limit_headers(&plan, &states, now);
            let extra = [
                ("retry-after", HeaderValue::from(retry_after_secs.max(1))),
                ("ratelimit-policy", policy),
                ("ratelimit", current),
            ];
            let detail = format!("{}.", hit.describe());
            problem::respond_detailed(
                session,
                Problem::TooManyRequests,
                Some(&detail),
                Some(&hit.name),
                &ctx.request_id,
                &extra,
            )
            .await?;
            Ok(false)
        }
    }
}

/// `RateLimit-Policy` and `RateLimit` for the limits of `plan`.
fn rate_limit_headers(
    plan: &limits::Plan<'_>,
    states: &[CheckState],
    now: u64,
) -> (HeaderValue, HeaderValue) {
    (plan.policy_header(now), plan.state_header(states))
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

fn client_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
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
