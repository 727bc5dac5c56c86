//! Requests in flight, counted so that a graceful shutdown ends as soon as
//! none is left instead of always waiting out `grace_period` (Pingora's
//! grace period is a plain sleep). Every proxied request holds an
//! [`InFlight`] from the moment its head is read to the end of its
//! access-log phase; a WebSocket holds one for as long as it is open, so it
//! still keeps the process up to the grace period.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// The count of requests in flight in this process.
#[derive(Default)]
pub struct Requests {
    count: AtomicUsize,
    /// Set once shutdown waits for the count to reach zero; until then the
    /// last request out does not touch `idle` (no lock per request).
    draining: AtomicBool,
    idle: Notify,
}

/// One request in flight; dropping it ends the request.
pub struct InFlight(Arc<Requests>);

impl Requests {
    pub fn new() -> Arc<Requests> {
        Arc::new(Requests::default())
    }

    /// A request starts.
    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.count.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// Requests in flight now.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Returns once no request is in flight (at once if none is). New
    /// requests may still start afterwards; the caller is shutting down.
    pub async fn idle(&self) {
        // SeqCst on both sides: either the last request out sees
        // `draining`, or this sees its count of zero.
        self.draining.store(true, Ordering::SeqCst);
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let requests = &self.0;
        if requests.count.fetch_sub(1, Ordering::SeqCst) == 1
            && requests.draining.load(Ordering::SeqCst)
        {
            requests.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_returns_at_once_when_nothing_is_in_flight() {
        let requests = Requests::new();
        requests.idle().await;
        assert_eq!(requests.count(), 0);
    }

    #[tokio::test]
    async fn idle_waits_for_the_last_request_out() {
        let requests = Requests::new();
        let a = requests.enter();
        let b = requests.enter();
        assert_eq!(requests.count(), 2);
        let waiter = tokio::spawn({
            let requests = requests.clone();
            async move { requests.idle().await }
        });
        tokio::task::yield_now().await;
        drop(a);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "one request is still in flight");
        drop(b);
        tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
            .await
            .expect("idle once the last request ended")
            .unwrap();
        assert_eq!(requests.count(), 0);
    }
}
