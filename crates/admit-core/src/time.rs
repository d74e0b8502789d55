//! Points in time as Stripe writes them: whole seconds since the Unix epoch.

use serde::{Deserialize, Serialize};

/// Seconds since the Unix epoch (UTC), the unit of Stripe's `created` fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_unix(seconds: i64) -> Self {
        Self(seconds)
    }

    pub const fn unix(self) -> i64 {
        self.0
    }

    /// Absolute distance in seconds, saturating instead of overflowing on absurd inputs.
    pub const fn abs_diff(self, other: Timestamp) -> u64 {
        self.0.abs_diff(other.0)
    }

    pub const fn plus_seconds(self, seconds: i64) -> Self {
        Self(self.0.saturating_add(seconds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abs_diff_is_symmetric_and_saturates() {
        let a = Timestamp::from_unix(100);
        let b = Timestamp::from_unix(400);
        assert_eq!(a.abs_diff(b), 300);
        assert_eq!(b.abs_diff(a), 300);
        assert_eq!(
            Timestamp::from_unix(i64::MIN).abs_diff(Timestamp::from_unix(i64::MAX)),
            u64::MAX
        );
    }
}
