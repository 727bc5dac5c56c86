//! A pool's retry budget (Linkerd's and Finagle's): over the last
//! [`BUDGET_WINDOW`], retries may be at most `ratio` × requests plus
//! `min_per_second` × the window's seconds, so that during an outage
//! retries add at most `ratio` to the load instead of multiplying it.

use std::time::Duration;

use super::window::SlidingWindow;
use crate::config::model;

/// The window the budget is counted over.
pub const BUDGET_WINDOW: Duration = Duration::from_secs(10);

pub struct RetryBudget {
    settings: model::RetryBudgetConfig,
    /// (requests, retries)
    window: SlidingWindow,
}

impl RetryBudget {
    pub fn new(settings: model::RetryBudgetConfig) -> RetryBudget {
        RetryBudget {
            settings,
            window: SlidingWindow::new(BUDGET_WINDOW),
        }
    }

    pub fn settings(&self) -> &model::RetryBudgetConfig {
        &self.settings
    }

    /// A request's first attempt.
    pub fn request(&self, now: u64) {
        self.window.add(now, 1, 0);
    }

    /// Take one retry from the budget; `false` when it is spent.
    pub fn try_retry(&self, now: u64) -> bool {
        let (requests, retries) = self.window.totals(now);
        let allowed = self.settings.ratio * requests as f64
            + f64::from(self.settings.min_per_second) * BUDGET_WINDOW.as_secs_f64();
        if retries as f64 + 1.0 > allowed {
            return false;
        }
        self.window.add(now, 0, 1);
        true
    }

    /// Requests and retries counted in the window ending at `now`.
    pub fn totals(&self, now: u64) -> (u64, u64) {
        self.window.totals(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn retries_stay_within_ratio_plus_minimum() {
        let b = RetryBudget::new(model::RetryBudgetConfig {
            ratio: 0.2,
            min_per_second: 1,
        });
        let now = 1_000 * S;
        for _ in 0..100 {
            b.request(now);
        }
        // 0.2 × 100 + 1 × 10 = 30 retries.
        let granted = (0..100).filter(|_| b.try_retry(now)).count();
        assert_eq!(granted, 30);
        // Once the window has moved on, the budget is back.
        assert!(b.try_retry(now + 11 * S));
    }

    #[test]
    fn a_zero_budget_grants_nothing() {
        let b = RetryBudget::new(model::RetryBudgetConfig {
            ratio: 0.0,
            min_per_second: 0,
        });
        b.request(S);
        assert!(!b.try_retry(S));
    }
}
