//! The long-lived part of bearer-token authentication: the metric
//! families, and the key sets fetched over HTTP, kept across reloads that
//! keep the issuer and where its keys come from (so a reload does not
//! fetch them again, and the last good set keeps serving).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use super::remote::{RemoteId, RemoteKeys, Timing};
use super::Issuers;
use crate::config::model::{JwksSource, JwtIssuer};
use crate::metrics::jwt::JwtFamilies;

pub struct BearerTable {
    families: JwtFamilies,
    remotes: Mutex<HashMap<RemoteId, Weak<RemoteKeys>>>,
}

impl BearerTable {
    pub fn new(families: JwtFamilies) -> BearerTable {
        BearerTable {
            families,
            remotes: Mutex::default(),
        }
    }

    /// A table whose metrics are registered nowhere (`check`, `diff`,
    /// `explain`).
    pub fn detached() -> BearerTable {
        match JwtFamilies::new() {
            Ok(f) => BearerTable::new(f),
            // The families' names and help are fixed; this cannot fail.
            Err(e) => panic!("jwt metric families: {e}"),
        }
    }

    pub fn families(&self) -> &JwtFamilies {
        &self.families
    }

    /// The fetched set of `issuer` from `source`: the live one, or a new
    /// one fetched now (not in the table until a commit adopts it); with
    /// the fetch's failure when it has no set to serve.
    pub fn remote(
        &self,
        issuer: &JwtIssuer,
        source: &JwksSource,
    ) -> (Arc<RemoteKeys>, Result<(), String>) {
        let id = RemoteId {
            issuer: issuer.id.clone(),
            iss: issuer.issuer.clone(),
            source: source.clone(),
        };
        let live = self
            .remotes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .and_then(Weak::upgrade);
        if let Some(live) = live.filter(|l| l.current().is_some()) {
            return (live, Ok(()));
        }
        let keys = Arc::new(RemoteKeys::new(id, timing(issuer), self.families.clone()));
        let fetched = keys.fetch_blocking();
        (keys, fetched)
    }

    /// The sets of `issuers` are the live ones: their refreshers run with
    /// the committed timing; sets no snapshot holds any more are dropped.
    pub fn adopt(&self, issuers: &Issuers) {
        let mut remotes = self.remotes.lock().unwrap_or_else(|p| p.into_inner());
        remotes.retain(|_, w| w.strong_count() > 0);
        for issuer in &issuers.list {
            if let Some(r) = issuer.remote() {
                r.set_timing(timing(&issuer.config));
                r.start();
                remotes.insert(r.id.clone(), Arc::downgrade(r));
            }
        }
    }
}

fn timing(issuer: &JwtIssuer) -> Timing {
    Timing {
        refresh: issuer.refresh,
        min_interval: issuer.min_refresh_interval,
    }
}
