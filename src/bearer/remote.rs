//! Key sets fetched over HTTP (`jwks_url`, or the `jwks_uri` of a
//! `discovery` document): fetched when a config first names them, then
//! again every `refresh` and, sooner, when a token names a key the set
//! does not have, never more often than `min_refresh_interval` so that
//! tokens with made-up `kid`s cannot make the gateway hammer the identity
//! provider. A failed fetch keeps the last good set serving.
//!
//! Each set has one refresher thread, which stops when no snapshot holds
//! the set any more.

use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use crate::config::model::JwksSource;
use crate::jwt::KeySet;
use crate::metrics::jwt::JwtFamilies;

/// How long one fetch (each request of a discovery) may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// What identifies a fetched set across reloads: the issuer and where
/// its keys come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteId {
    /// The issuer's id (metrics, logs).
    pub issuer: String,
    /// Its `issuer`: what a discovery document must say it is.
    pub iss: String,
    pub source: JwksSource,
}

/// How often a set is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub refresh: Duration,
    pub min_interval: Duration,
}

/// One fetched key set and its refresh state.
pub struct RemoteKeys {
    pub id: RemoteId,
    keys: ArcSwapOption<KeySet>,
    wake: Mutex<Wake>,
    cv: Condvar,
    families: JwtFamilies,
}

#[derive(Default)]
struct Wake {
    timing: Option<Timing>,
    /// A token named a key the set does not have.
    unknown_kid: bool,
    last_attempt: Option<Instant>,
    started: bool,
}

impl std::fmt::Debug for RemoteKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteKeys")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl RemoteKeys {
    pub fn new(id: RemoteId, timing: Timing, families: JwtFamilies) -> RemoteKeys {
        RemoteKeys {
            id,
            keys: ArcSwapOption::empty(),
            wake: Mutex::new(Wake {
                timing: Some(timing),
                ..Wake::default()
            }),
            cv: Condvar::new(),
            families,
        }
    }

    /// The set now serving (`None` until a fetch has succeeded).
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.keys.load_full()
    }

    /// Fetch now, waiting for the answer (a config being prepared).
    pub fn fetch_blocking(&self) -> Result<(), String> {
        let source = self.id.source.clone();
        let issuer = self.id.iss.clone();
        let fetched = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(fetch(&client()?, &source, &issuer))
        })
        .join()
        .unwrap_or_else(|_| Err("the fetch failed".to_string()));
        self.note_attempt();
        self.take(fetched)
    }

    fn note_attempt(&self) {
        self.lock().last_attempt = Some(Instant::now());
    }

    /// Keep a fetched set, or count the failure (the last good set stays).
    fn take(&self, fetched: Result<KeySet, String>) -> Result<(), String> {
        let issuer = self.id.issuer.as_str();
        match fetched {
            Ok(set) => {
                self.families.refresh(issuer, true).inc();
                self.families.keys(issuer).set(set.keys.len() as i64);
                self.keys.store(Some(Arc::new(set)));
                Ok(())
            }
            Err(e) => {
                self.families.refresh(issuer, false).inc();
                tracing::warn!(issuer, error = %e, "JWKS fetch failed; the last good key set keeps serving");
                Err(e)
            }
        }
    }

    /// A token named a key the set lacks: fetch again soon (no sooner
    /// than the minimum interval after the last fetch).
    pub fn unknown_kid(&self) {
        let mut wake = self.lock();
        if !wake.unknown_kid {
            wake.unknown_kid = true;
            self.cv.notify_all();
        }
    }

    /// Apply the timing of a newer config.
    pub fn set_timing(&self, timing: Timing) {
        self.lock().timing = Some(timing);
        self.cv.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Wake> {
        self.wake.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start the refresher thread, once.
    pub fn start(self: &Arc<Self>) {
        {
            let mut wake = self.lock();
            if wake.started {
                return;
            }
            wake.started = true;
        }
        let weak = Arc::downgrade(self);
        let name = format!("jwks-{}", self.id.issuer);
        let spawned = std::thread::Builder::new()
            .name(name)
            .spawn(move || refresher(weak));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the JWKS refresher");
        }
    }

    /// Wake a refresher that should stop (its set was dropped).
    fn wake_all(&self) {
        self.cv.notify_all();
    }
}

impl Drop for RemoteKeys {
    fn drop(&mut self) {
        self.wake_all();
    }
}

/// How long to wait before the next fetch, or `None` to fetch now.
fn due(wake: &Wake, now: Instant) -> Option<Duration> {
    let timing = wake.timing?;
    let last = wake.last_attempt?;
    let since = now.saturating_duration_since(last);
    // On an unknown kid, and with no set yet (the first fetch failed),
    // at the minimum interval rather than a whole refresh period.
    let period = if wake.unknown_kid {
        timing.min_interval
    } else {
        timing.refresh
    };
    period.checked_sub(since).filter(|d| !d.is_zero())
}

fn refresher(weak: Weak<RemoteKeys>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "JWKS refresher: no runtime");
            return;
        }
    };
    let client = match client() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "JWKS refresher: no HTTP client");
            return;
        }
    };
    loop {
        let Some(keys) = weak.upgrade() else { return };
        {
            let mut wake = keys.lock();
            if keys.current().is_none() {
                // Nothing to serve with: retry as an unknown kid would.
                wake.unknown_kid = true;
            }
            if let Some(wait) = due(&wake, Instant::now()) {
                // Wait without holding the set, so that a dropped set
                // ends the thread (at the latest after a minute).
                let wait = wait.min(Duration::from_secs(60));
                let (guard, _) = keys
                    .cv
                    .wait_timeout(wake, wait)
                    .unwrap_or_else(|p| p.into_inner());
                drop(guard);
                drop(keys);
                continue;
            }
            wake.unknown_kid = false;
            wake.last_attempt = Some(Instant::now());
        }
        let fetched = rt.block_on(fetch(&client, &keys.id.source, &keys.id.iss));
        let _ = keys.take(fetched);
    }
}

fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .map_err(|e| format!("no HTTP client: {e}"))
}

/// Fetch and parse the set `source` names; `issuer` must be what a
/// discovery document says it is.
pub async fn fetch(
    client: &reqwest::Client,
    source: &JwksSource,
    issuer: &str,
) -> Result<KeySet, String> {
    let url = match source {
        JwksSource::Url(url) => url.clone(),
        JwksSource::Discovery(url) => {
            let doc = get(client, url).await?;
            let doc: serde_json::Value = serde_json::from_slice(&doc)
                .map_err(|e| format!("{url}: not a discovery document: {e}"))?;
            if doc.get("issuer").and_then(|v| v.as_str()) != Some(issuer) {
                return Err(format!(
                    "{url}: the discovery document's issuer is not {issuer:?}"
                ));
            }
            doc.get("jwks_uri")
                .and_then(|v| v.as_str())
                .ok_or_else(|| format!("{url}: the discovery document has no jwks_uri"))?
                .to_string()
        }
        JwksSource::File(f) => return Err(format!("{}: not fetched", f.display())),
    };
    let body = get(client, &url).await?;
    KeySet::parse(&body).map_err(|e| format!("{url}: {e}"))
}

async fn get(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let response = client
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url}: answered {}", response.status()));
    }
    if response
        .content_length()
        .is_some_and(|n| n > crate::jwt::keys::MAX_JWKS_BYTES as u64)
    {
        return Err(format!("{url}: the answer is too large"));
    }
    let body = response.bytes().await.map_err(|e| format!("{url}: {e}"))?;
    Ok(body.to_vec())
}
