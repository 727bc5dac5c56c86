//! `[routes.compression]` on the way out, as a Pingora downstream module:
//! every response the client gets passes through it (proxied, served
//! from the cache, the gateway's own), after the cache and after
//! `response_filter`, so stored objects stay as the origin sent them and
//! each client gets the coding it asked for. The body is compressed chunk
//! by chunk as it streams; the encoder is finished when the response is.
//!
//! The module does nothing until `request_filter` hands it the route's
//! policy ([`Compress::plan`]).

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::modules::http::{HttpModule, HttpModuleBuilder, Module};
use pingora_core::protocols::http::compression::Encode;
use pingora_error::Result;
use pingora_http::ResponseHeader;

use crate::config::model::Coding;
use crate::policy::Compression;

/// One request's compression.
#[derive(Default)]
pub struct Compress {
    plan: Option<Plan>,
    encoder: Option<Box<dyn Encode + Send + Sync>>,
    /// The coding of the response, once compressed.
    applied: Option<Coding>,
    /// The encoder has been given the end of the body.
    finished: bool,
}

struct Plan {
    policy: Arc<Compression>,
    /// What the client accepts, if any of the route's algorithms.
    coding: Option<Coding>,
    /// A `HEAD`, a `Range` or an HTTP/1.0 request: never compressed.
    untouched: bool,
}

/// What the encoder did, for the metrics and the access log.
pub struct Stats {
    pub coding: &'static str,
    pub bytes_in: usize,
    pub bytes_out: usize,
}

impl Compress {
    /// The encoder's totals, once a response was compressed.
    pub fn stats(&self) -> Option<Stats> {
        let (_, bytes_in, bytes_out, _) = self.encoder.as_ref()?.stat();
        Some(Stats {
            coding: self.applied?.as_str(),
            bytes_in,
            bytes_out,
        })
    }
}

#[async_trait]
impl HttpModule for Compress {
    async fn response_header_filter(&mut self, resp: &mut ResponseHeader, end: bool) -> Result<()> {
        let Some(plan) = &self.plan else {
            return Ok(());
        };
        if resp.status.is_informational() || !plan.policy.compressible(resp) {
            return Ok(());
        }
        crate::proxy::forward::add_vary(resp, "Accept-Encoding")?;
        let Some(coding) = plan.coding else {
            return Ok(());
        };
        if end || plan.untouched || !Compression::may_transform(resp, false) {
            return Ok(());
        }
        self.encoder = plan.policy.encoder(coding);
        if self.encoder.is_some() {
            Compression::encoded_head(resp, coding);
            self.applied = Some(coding);
        }
        Ok(())
    }

    /// A chunk compressed (possibly to nothing yet: the encoder keeps
    /// what it has not framed). An encoder that fails ends the response
    /// (compressed bytes already went out; raw ones after them would be
    /// garbage to the client).
    fn response_body_filter(&mut self, body: &mut Option<Bytes>, end: bool) -> Result<()> {
        let Some(encoder) = self.encoder.as_mut().filter(|_| !self.finished) else {
            return Ok(());
        };
        let input = body.as_deref().unwrap_or(&[]);
        *body = Some(encoder.encode(input, end)?);
        self.finished = end;
        Ok(())
    }

    /// The response ended without a last chunk flagged as such: whatever
    /// the encoder still holds, and its trailer.
    fn response_done_filter(&mut self) -> Result<Option<Bytes>> {
        let Some(encoder) = self.encoder.as_mut().filter(|_| !self.finished) else {
            return Ok(None);
        };
        self.finished = true;
        let rest = encoder.encode(&[], true)?;
        Ok((!rest.is_empty()).then_some(rest))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// Hand this request's module the route's policy.
pub fn plan(
    session: &mut pingora_proxy::Session,
    policy: Arc<Compression>,
    coding: Option<Coding>,
) {
    let req = session.req_header();
    let untouched = req.method == http::Method::HEAD
        || req.headers.contains_key(http::header::RANGE)
        || req.version < http::Version::HTTP_11;
    if let Some(m) = session.downstream_modules_ctx.get_mut::<Compress>() {
        m.plan = Some(Plan {
            policy,
            coding,
            untouched,
        });
    }
}

/// What the encoder of this request's response did, if it compressed.
pub fn stats(session: &pingora_proxy::Session) -> Option<Stats> {
    session.downstream_modules_ctx.get::<Compress>()?.stats()
}

/// Adds [`Compress`] to every request's modules.
pub struct CompressBuilder;

impl HttpModuleBuilder for CompressBuilder {
    fn init(&self) -> Module {
        Box::new(Compress::default())
    }

    fn order(&self) -> i16 {
        // After any other module, as Pingora's own compression.
        i16::MIN / 2
    }
}
