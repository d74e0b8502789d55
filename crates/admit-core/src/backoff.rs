//! Exponential backoff, the one definition every retry in admit uses: the
//! inbox processor, the outbox sender and the Stripe API client.

use std::time::Duration;

/// Waits `first` before the first retry, twice as long before each next
/// one, never longer than `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub cap: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, cap: Duration) -> Self {
        Self { first, cap }
    }

    /// The wait before retry number `retry` (1 is the first retry; 0 is
    /// read as 1).
    pub fn delay(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(31);
        self.first
            .checked_mul(1u32 << doublings)
            .map_or(self.cap, |d| d.min(self.cap))
    }

    /// [`Backoff::delay`] in whole seconds, for times stored as Unix seconds.
    pub fn delay_secs(&self, retry: u32) -> i64 {
        i64::try_from(self.delay(retry).as_secs()).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_the_first_wait_up_to_the_cap() {
        let b = Backoff::new(Duration::from_secs(5), Duration::from_secs(3600));
        let waits: Vec<i64> = (0..=11).map(|r| b.delay_secs(r)).collect();
        assert_eq!(
            waits,
            [5, 5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600]
        );
        assert_eq!(b.delay_secs(u32::MAX), 3600);
        let fast = Backoff::new(Duration::from_millis(500), Duration::from_secs(8));
        assert_eq!(fast.delay(1), Duration::from_millis(500));
        assert_eq!(fast.delay(5), Duration::from_secs(8));
    }
}
