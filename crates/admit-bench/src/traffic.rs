//! Signed Stripe lifecycles over many workspaces: each workspace's checkout
//! (four events) and, for a share of them, a failed renewal and a scheduled
//! cancellation; fresh ids every run; a share of re-deliveries and of
//! lifecycles delivered out of order.

use admit::simulate::{Event, Purchase};
use clap::ValueEnum;

use crate::stripe_bodies;

const DAY: i64 = 86_400;

/// What the events' bodies look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Bodies {
    /// As Stripe sends them (3–7 kB): the project's captured fixtures with
    /// each purchase's own ids, workspace, purchaser and times.
    Stripe,
    /// `admit simulate`'s (~0.7 kB): only the fields admit reads.
    Compact,
}

/// The price every purchase buys (the demo catalog's Pro).
pub const PRICE: &str = "price_1SiAbCB7WZ01zgkWq3Lm9NoP";

/// A tiny xorshift: the mix only needs to be spread, not secret.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Self {
        let mut seed = [0u8; 8];
        let _ = getrandom::fill(&mut seed);
        Self(u64::from_le_bytes(seed) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() % 10_000) < (p * 10_000.0) as u64
    }

    pub fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).unwrap_or(0)
    }
}

/// The events of one workspace's lifecycle, in the order they are delivered.
pub fn lifecycle(
    workspace: &str,
    bodies: Bodies,
    rng: &mut Rng,
    out_of_order: f64,
    redeliver: f64,
) -> Vec<Event> {
    let renewal_fails = rng.chance(0.3);
    let cancels = rng.chance(0.2);
    // Bought 45 days ago, so its renewal and cancellation are in the past too.
    let t = now() - 45 * DAY;
    let mut events = match bodies {
        Bodies::Compact => {
            let mut purchase = Purchase::new(&owner(workspace), Some(workspace), PRICE);
            purchase.t = t;
            let mut events = purchase.checkout();
            if renewal_fails {
                let mut later = purchase.clone();
                later.t += 30 * DAY;
                events.extend(later.renewal_failed());
            }
            if cancels {
                let mut later = purchase.clone();
                later.t += 40 * DAY;
                events.extend(later.cancel(true));
            }
            events
        }
        Bodies::Stripe => {
            let purchase = stripe_bodies::Purchase::new(workspace, t, rng);
            let mut events = purchase.checkout(rng);
            if renewal_fails {
                events.extend(purchase.renewal_failed(t + 30 * DAY, rng));
            }
            if cancels {
                events.extend(purchase.cancellation_scheduled(t + 40 * DAY, rng));
            }
            events
        }
    };
    if rng.chance(out_of_order) {
        for i in (1..events.len()).rev() {
            let j = rng.below(i + 1);
            events.swap(i, j);
        }
    }
    let mut delivered = Vec::with_capacity(events.len() + 1);
    for event in events {
        let again = rng.chance(redeliver);
        delivered.push(event.clone());
        if again {
            delivered.push(event);
        }
    }
    delivered
}

/// A checkout made just now, in Stripe's creation order.
pub fn checkout(workspace: &str, bodies: Bodies, rng: &mut Rng) -> Vec<Event> {
    match bodies {
        Bodies::Compact => Purchase::new(&owner(workspace), Some(workspace), PRICE).checkout(),
        Bodies::Stripe => stripe_bodies::Purchase::new(workspace, now(), rng).checkout(rng),
    }
}

/// Where a purchase's events start: a few seconds back, as
/// `Purchase::new` has them, so that its checkout is all in the past.
fn now() -> i64 {
    admit::Clock::now(&admit::SystemClock).unix() - 5
}

/// The owner email `lifecycle` buys with.
pub fn owner(workspace: &str) -> String {
    format!("owner@{workspace}.test")
}
