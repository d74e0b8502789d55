//! The rows of the decision table (DESIGN.md §2.2) as values: every event
//! outcome and every case names the scenario that decided it, so the QA
//! gate, the console and a new engineer can find S5 or S9 by name.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    /// Trusted binding; the purchaser administers the workspace (or started the checkout).
    S1,
    /// Trusted binding; the purchaser is not an owner/admin: billing contact only.
    S2,
    /// The customer was already bound to the workspace.
    S3,
    /// The purchaser administers exactly one workspace.
    S4,
    /// No workspace matched.
    S5,
    /// The same event delivered again.
    S6,
    /// An event that arrived after a later one of its purchase: re-derived.
    S7,
    /// A second subscription in good standing for one workspace.
    S8,
    /// A customer bound to one workspace paid for another.
    S9,
    /// The first purchase of a price not in the catalog.
    S10,
    /// A renewal failed: `past_due`, the plan kept for the grace period.
    S11,
    /// Canceled, `unpaid`, expired, or scheduled to end.
    S12,
    /// A checkout requested by someone who may not.
    S13,
    /// A webhook refused: bad signature, stale, malformed, oversized.
    S14,
    /// A new paid subscription beside a lapsed one.
    S15,
    /// A live subscription moved to a price not in the catalog.
    S16,
    /// A dispute, or a full refund of the latest paid invoice.
    S17,
    /// An asynchronous payment pending, then failed.
    S18,
}

impl Scenario {
    pub const ALL: [Scenario; 18] = [
        Scenario::S1,
        Scenario::S2,
        Scenario::S3,
        Scenario::S4,
        Scenario::S5,
        Scenario::S6,
        Scenario::S7,
        Scenario::S8,
        Scenario::S9,
        Scenario::S10,
        Scenario::S11,
        Scenario::S12,
        Scenario::S13,
        Scenario::S14,
        Scenario::S15,
        Scenario::S16,
        Scenario::S17,
        Scenario::S18,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::S1 => "S1",
            Scenario::S2 => "S2",
            Scenario::S3 => "S3",
            Scenario::S4 => "S4",
            Scenario::S5 => "S5",
            Scenario::S6 => "S6",
            Scenario::S7 => "S7",
            Scenario::S8 => "S8",
            Scenario::S9 => "S9",
            Scenario::S10 => "S10",
            Scenario::S11 => "S11",
            Scenario::S12 => "S12",
            Scenario::S13 => "S13",
            Scenario::S14 => "S14",
            Scenario::S15 => "S15",
            Scenario::S16 => "S16",
            Scenario::S17 => "S17",
            Scenario::S18 => "S18",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// One line on what the row means, for people.
    pub fn what(self) -> &'static str {
        match self {
            Scenario::S1 => "trusted binding, purchaser administers the workspace",
            Scenario::S2 => "trusted binding, purchaser is not an owner or admin",
            Scenario::S3 => "customer already bound to the workspace",
            Scenario::S4 => "purchaser administers exactly one workspace",
            Scenario::S5 => "no workspace matched",
            Scenario::S6 => "the same event delivered again",
            Scenario::S7 => "an event that arrived out of order",
            Scenario::S8 => "a second subscription for one workspace",
            Scenario::S9 => "customer bound to another workspace",
            Scenario::S10 => "price not in the plan catalog",
            Scenario::S11 => "renewal payment failed",
            Scenario::S12 => "subscription canceled, unpaid, expired or ending",
            Scenario::S13 => "checkout requested by a non-admin",
            Scenario::S14 => "webhook refused",
            Scenario::S15 => "new subscription beside a lapsed one",
            Scenario::S16 => "plan changed to a price not in the catalog",
            Scenario::S17 => "payment disputed or refunded",
            Scenario::S18 => "asynchronous payment pending or failed",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_reads_back_and_is_described() {
        for scenario in Scenario::ALL {
            assert_eq!(Scenario::parse(scenario.as_str()), Some(scenario));
            assert!(!scenario.what().is_empty());
        }
        assert_eq!(Scenario::parse("S19"), None);
        assert_eq!(Scenario::parse("s1"), None);
    }
}
