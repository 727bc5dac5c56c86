//! The request decision: what the gateway does with a request head, from
//! the snapshot it pinned. One function, [`decide`], called by the proxy's
//! `request_filter` (which then writes the answer or forwards) and by
//! `portcullis explain` (which prints it): the two cannot drift apart.
//!
//! In order, as a request meets them:
//!
//! 1. the head ([`head`]): the rules and `[server.client]` limits (400,
//!    414, 431, 501), a loop through this gateway (508), underscore names,
//!    the canonical target (400);
//! 2. the listener's redirect to HTTPS (308);
//! 3. the route (404, 405 with `Allow`; a CORS preflight is routed by the
//!    method it asks about), its `[routes.ip]` rules against the client's
//!    address (403), and its `[routes.cors]`: a preflight answered (204,
//!    or 403), an actual request's origin judged (see [`CorsOutcome`]);
//! 4. access ([`access`]): failed-attempt damping (429), the API key (401)
//!    and its scope (403) or the bearer token (401) and its scopes (403),
//!    the route's and the consumer's rate limits and quotas (429);
//! 5. the route's `max_body_size` against a declared length (413);
//! 6. the route's lifecycle: past a `gone` sunset (410).
//!
//! The decision reads the snapshot and the head and nothing else, except
//! the limit store it is given, whose counters it checks and charges as
//! the request would (the proxy gives the gateway's; `explain` one of its
//! own, so it never touches the live counters). New route policy (token
//! authentication, CORS, IP rules, traffic splits) is decided here too, so
//! `explain` shows it and the proxy stays a list of phases.

pub mod access;
pub mod head;

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderValue;
use pingora_http::RequestHeader;

use crate::problem::Problem;
use crate::ratelimit::LimitStore;
use crate::router::RouteLookup;
use crate::snapshot::Snapshot;

/// How the request reached the gateway.
#[derive(Debug, Clone, Copy, Default)]
pub struct Arrival {
    /// The client's address (per-client-IP limits, failed-attempt damping).
    pub ip: Option<IpAddr>,
    /// It came over TLS.
    pub tls: bool,
    /// The accepting listener redirects to HTTPS on this port.
    pub redirect_https: Option<u16>,
    /// A random number: its low half is what a traffic split rolls with
    /// when neither a `match` nor stickiness decides, its high half
    /// whether `[routes.mirror]` copies the request.
    pub roll: u32,
}

/// An answer the gateway gives itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub problem: Problem,
    /// The body's `detail`, when not the problem's fixed one.
    pub detail: Option<String>,
    /// The limit that was hit (a 429's `limit` member).
    pub limit: Option<Arc<str>>,
    /// Headers of the answer (`Allow`, `WWW-Authenticate`, `Retry-After`,
    /// `RateLimit`, the lifecycle headers).
    pub headers: Vec<(&'static str, HeaderValue)>,
    /// The connection closes after the answer: the rest of the request is
    /// never read.
    pub close: bool,
}

impl Refusal {
    /// `problem` with its fixed detail.
    pub fn new(problem: Problem) -> Refusal {
        Refusal {
            problem,
            detail: None,
            limit: None,
            headers: Vec::new(),
            close: false,
        }
    }

    /// `problem` with `detail`, closing the connection.
    pub fn closing(problem: Problem, detail: String) -> Refusal {
        Refusal {
            detail: Some(detail),
            close: true,
            ..Refusal::new(problem)
        }
    }

    pub fn status(&self) -> u16 {
        self.problem.status()
    }
}

/// What happens to the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forwarded to the route's pool.
    Forward,
    /// A CORS preflight the route allows: `204` with these fields.
    Preflight(crate::policy::cors::Fields),
    /// `308` to the same URL over HTTPS on this port.
    RedirectHttps(u16),
    /// Answered by the gateway.
    Refuse(Refusal),
}

/// The decision, with what was learned on the way (for the access log,
/// the forwarded headers and the response).
#[derive(Debug, Clone)]
pub struct Decision {
    pub verdict: Verdict,
    /// The route (index into the snapshot's routes), once one matched.
    pub route: Option<usize>,
    /// Bytes of the path the route's prefix matched.
    pub prefix_len: usize,
    /// The consumer whose key it was (index into the snapshot's
    /// consumers): a valid key, or a known key refused (disabled, expired,
    /// out of scope).
    pub consumer: Option<u32>,
    /// The non-secret prefix of that key.
    pub key_prefix: Option<Arc<str>>,
    /// The caller a bearer token named: a valid token, or one refused
    /// for lacking a scope.
    pub bearer: Option<Arc<crate::bearer::Bearer>>,
    /// Why a bearer token was refused (for `explain`; clients are not told).
    pub token_rejection: Option<crate::jwt::Rejection>,
    /// Why authentication failed.
    pub auth_failure: Option<&'static str>,
    /// The limit that refused the request (429), as the access log names it.
    pub denied_by: Option<&'static str>,
    /// `RateLimit-Policy` and `RateLimit` for the response.
    pub rate_limit_headers: Option<(HeaderValue, HeaderValue)>,
    /// The route's `max_body_size`, for a body that streams.
    pub body_limit: Option<u64>,
    /// What the route's CORS policy made of the request.
    pub cors: CorsOutcome,
    /// On a route with `[[routes.split]]`: the side that takes it.
    pub split: Option<crate::policy::split::Choice>,
    /// `[routes.mirror]` copies this request.
    pub mirror: bool,
    /// `[routes.compression]`: the coding the client gets, if it accepts
    /// one of the route's.
    pub coding: Option<crate::config::model::Coding>,
}

/// What a route's `[routes.cors]` made of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsOutcome {
    /// No CORS policy on the route, or no `Origin` on the request.
    #[default]
    None,
    /// From an allowed origin: the response's
    /// `Access-Control-Allow-Origin` (with the policy's other fields).
    Allowed(HeaderValue),
    /// From an origin the policy does not allow: no CORS fields.
    OriginRefused,
    /// A preflight, answered `204`.
    Preflight,
    /// A preflight refused with `403`.
    PreflightRefused,
}

impl CorsOutcome {
    /// As the access log and `portcullis_cors_requests_total` name it.
    pub fn label(&self) -> Option<&'static str> {
        match self {
            CorsOutcome::None => None,
            CorsOutcome::Allowed(_) => Some("allowed"),
            CorsOutcome::OriginRefused => Some("origin_refused"),
            CorsOutcome::Preflight => Some("preflight"),
            CorsOutcome::PreflightRefused => Some("preflight_refused"),
        }
    }
}

impl Decision {
    fn new() -> Decision {
        Decision {
            verdict: Verdict::Forward,
            route: None,
            prefix_len: 0,
            consumer: None,
            key_prefix: None,
            bearer: None,
            token_rejection: None,
            auth_failure: None,
            denied_by: None,
            rate_limit_headers: None,
            body_limit: None,
            cors: CorsOutcome::None,
            split: None,
            mirror: false,
            coding: None,
        }
    }

    fn refuse(mut self, refusal: Refusal) -> Decision {
        self.verdict = Verdict::Refuse(refusal);
        self
    }

    /// The refusal, when the gateway answers itself.
    pub fn refusal(&self) -> Option<&Refusal> {
        match &self.verdict {
            Verdict::Refuse(r) => Some(r),
            _ => None,
        }
    }
}

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// The `auth_failure` (access log, `portcullis_auth_rejections_total`) of
/// a request `[routes.ip]` refused.
pub const IP_DENIED: &str = "ip_denied";

/// Decide what `snapshot` does with `req`, which arrived as `arrival`, at
/// `now` (Unix nanoseconds), charging `store` as the request would. `req`
/// becomes the head as the gateway forwards it (see [`head::settle`]).
pub async fn decide(
    snapshot: &Snapshot,
    req: &mut RequestHeader,
    arrival: &Arrival,
    now: u64,
    store: &dyn LimitStore,
) -> Decision {
    let mut decision = decide_request(snapshot, req, arrival, now, store).await;
    // The gateway's own answers on a CORS route are readable by an
    // allowed origin too (a browser app must see its 401 or 429).
    if let Verdict::Refuse(refusal) = &mut decision.verdict {
        let cors = decision
            .route
            .and_then(|i| snapshot.routes.get(i)?.cors.as_ref());
        match (&decision.cors, cors) {
            (CorsOutcome::Allowed(allow_origin), Some(cors)) => {
                refusal.headers.extend(cors.actual(allow_origin));
                refusal.headers.push(("vary", VARY_ORIGIN));
            }
            (CorsOutcome::OriginRefused, _) => refusal.headers.push(("vary", VARY_ORIGIN)),
            _ => {}
        }
    }
    decision
}

const VARY_ORIGIN: HeaderValue = HeaderValue::from_static("Origin");

/// A CORS preflight: `OPTIONS` with `Origin` and the method it asks
/// about (`Access-Control-Request-Method`).
fn preflight_method(req: &RequestHeader) -> Option<&str> {
    if req.method != http::Method::OPTIONS || !req.headers.contains_key(http::header::ORIGIN) {
        return None;
    }
    req.headers
        .get(http::header::ACCESS_CONTROL_REQUEST_METHOD)?
        .to_str()
        .ok()
}

async fn decide_request(
    snapshot: &Snapshot,
    req: &mut RequestHeader,
    arrival: &Arrival,
    now: u64,
    store: &dyn LimitStore,
) -> Decision {
    let decision = Decision::new();
    if let Err(refusal) = head::settle(req, &snapshot.config.server, arrival.tls) {
        return decision.refuse(refusal);
    }
    if let Some(port) = arrival.redirect_https {
        return Decision {
            verdict: Verdict::RedirectHttps(port),
            ..decision
        };
    }
    let host = crate::router::request_host(req);
    let path = req.uri.path();
    // A preflight goes to the route of the request it prepares, when that
    // route has a CORS policy; else it is an `OPTIONS` like any other.
    // A method the route does not take is still its preflight, refused
    // by its policy (403), not a 405.
    let cors_route = |lookup: RouteLookup| match lookup {
        RouteLookup::Found { route, prefix_len }
            if snapshot.routes.get(route).is_some_and(|r| r.cors.is_some()) =>
        {
            Some(RouteLookup::Found { route, prefix_len })
        }
        _ => None,
    };
    let preflight =
        preflight_method(req).and_then(|method| match snapshot.router.find(host, path, method) {
            RouteLookup::MethodNotAllowed { allowed } => {
                let taken = allowed.first()?;
                cors_route(snapshot.router.find(host, path, taken))
            }
            found => cors_route(found),
        });
    let is_preflight = preflight.is_some();
    let lookup = preflight.unwrap_or_else(|| snapshot.router.find(host, path, req.method.as_str()));
    let (index, prefix_len) = match lookup {
        RouteLookup::Found { route, prefix_len } => (route, prefix_len),
        RouteLookup::MethodNotAllowed { allowed } => {
            let mut refusal = Refusal::new(Problem::MethodNotAllowed);
            if let Ok(allow) = HeaderValue::from_str(&allowed.join(", ")) {
                refusal.headers.push(("allow", allow));
            }
            return decision.refuse(refusal);
        }
        RouteLookup::NotFound => return decision.refuse(Refusal::new(Problem::NotFound)),
    };
    let mut decision = Decision {
        route: Some(index),
        prefix_len,
        ..decision
    };
    let Some(route) = snapshot.routes.get(index) else {
        return decision.refuse(Refusal::new(Problem::Internal));
    };
    if route
        .ip
        .as_ref()
        .is_some_and(|rules| !rules.admits(arrival.ip))
    {
        decision.auth_failure = Some(IP_DENIED);
        return decision.refuse(Refusal::new(Problem::AddressForbidden));
    }
    if let (Some(cors), Some(origin)) = (&route.cors, req.headers.get(http::header::ORIGIN)) {
        if is_preflight {
            let method = req
                .headers
                .get(http::header::ACCESS_CONTROL_REQUEST_METHOD)
                .map_or(&b""[..], |m| m.as_bytes());
            let asked = req
                .headers
                .get(http::header::ACCESS_CONTROL_REQUEST_HEADERS);
            return match cors.preflight(origin, method, asked) {
                Ok(fields) => Decision {
                    verdict: Verdict::Preflight(fields),
                    cors: CorsOutcome::Preflight,
                    ..decision
                },
                Err(why) => {
                    decision.cors = CorsOutcome::PreflightRefused;
                    let mut refusal = Refusal::new(Problem::CorsForbidden);
                    refusal.detail = Some(why.detail().to_string());
                    refusal.headers.push(("vary", VARY_ORIGIN));
                    decision.refuse(refusal)
                }
            };
        }
        decision.cors = if cors.allows_origin(origin.as_bytes()) {
            CorsOutcome::Allowed(cors.allow_origin(origin))
        } else {
            CorsOutcome::OriginRefused
        };
    }
    if let Err(refusal) =
        access::admit(&mut decision, snapshot, req, index, arrival.ip, now, store).await
    {
        return decision.refuse(refusal);
    }
    if let Some(max) = route.max_body_size {
        let declared = req
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > max) {
            return decision.refuse(Refusal::closing(
                Problem::PayloadTooLarge,
                format!("The request body is larger than {max} bytes."),
            ));
        }
        decision.body_limit = Some(max);
    }
    if let Some(lifecycle) = route.lifecycle.as_deref() {
        let secs = i64::try_from(now / NANOS_PER_SEC).unwrap_or(i64::MAX);
        if lifecycle.gone(secs) {
            let mut refusal = Refusal::new(Problem::Gone);
            refusal.headers = lifecycle.headers().to_vec();
            return decision.refuse(refusal);
        }
    }
    // Both halves of the draw, so the split and the mirror are independent.
    let (split_roll, mirror_roll) = (arrival.roll as u16, (arrival.roll >> 16) as u16);
    decision.split = route
        .split
        .as_ref()
        .map(|split| split.choose(&req.headers, split_roll));
    decision.mirror = route
        .mirror
        .as_ref()
        .is_some_and(|m| m.samples(mirror_roll));
    decision.coding = route
        .compression
        .as_ref()
        .and_then(|c| c.negotiate(&req.headers));
    decision
}
