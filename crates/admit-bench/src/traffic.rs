//! Signed Stripe lifecycles over many workspaces: each workspace's checkout
//! (four events) and, for a share of them, a failed renewal and a scheduled
//! cancellation; fresh ids every run; a share of re-deliveries and of
//! lifecycles delivered out of order.

use admit::simulate::{Event, Purchase};

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
pub fn lifecycle(workspace: &str, rng: &mut Rng, out_of_order: f64, redeliver: f64) -> Vec<Event> {
    let mut purchase = Purchase::new(&owner(workspace), Some(workspace), PRICE);
    // Bought 45 days ago, so its renewal and cancellation are in the past too.
    purchase.t -= 45 * 86_400;
    let mut events = purchase.checkout();
    if rng.chance(0.3) {
        let mut later = purchase.clone();
        later.t += 30 * 86_400;
        events.extend(later.renewal_failed());
    }
    if rng.chance(0.2) {
        let mut later = purchase.clone();
        later.t += 40 * 86_400;
        events.extend(later.cancel(true));
    }
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

/// The owner email `lifecycle` buys with.
pub fn owner(workspace: &str) -> String {
    format!("owner@{workspace}.test")
}
