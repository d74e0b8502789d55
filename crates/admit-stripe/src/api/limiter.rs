//! The client-side request rate: request starts are spaced at least
//! `1 s / rate` apart, so no window of one second ever holds more than `rate`
//! of them, whichever task or clone sends them. Spacing rather than a burst
//! allowance keeps the bound true for every window, which a token bucket
//! refilled once a second does not.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct RateLimiter {
    interval: Duration,
    /// The earliest moment the next request may start. Each caller reserves
    /// its slot under the lock and sleeps outside it, so waiting callers
    /// queue in lock order (tokio's mutex is fair) without holding it.
    next_slot: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// `per_second` must be above 0; the client's constructor checks it.
    pub(crate) fn per_second(per_second: u32) -> Self {
        Self {
            interval: Duration::from_secs(1) / per_second.max(1),
            next_slot: Mutex::new(None),
        }
    }

    /// Waits for this request's slot.
    pub(crate) async fn acquire(&self) {
        let slot = {
            let mut next_slot = self.next_slot.lock().await;
            let now = Instant::now();
            let slot = next_slot.map_or(now, |next| next.max(now));
            *next_slot = Some(slot + self.interval);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spaces_starts_by_the_interval() {
        let limiter = RateLimiter::per_second(50);
        let start = Instant::now();
        for _ in 0..6 {
            limiter.acquire().await;
        }
        // Five intervals of 20 ms after the first, immediate, start.
        assert!(start.elapsed() >= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn an_idle_limiter_does_not_delay() {
        let limiter = RateLimiter::per_second(10);
        limiter.acquire().await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        let start = Instant::now();
        limiter.acquire().await;
        assert!(start.elapsed() < Duration::from_millis(50));
    }
}
