//! Checkpoints: a subscription's events up to a second, folded. A
//! derivation starts from the checkpoint and folds only the events created
//! after it, so what an event costs does not grow with the years of invoices
//! before it. The result is the fold of every event (the fold is a function
//! of the set, DESIGN.md §2.3); an event created inside a checkpoint that
//! arrives after it was taken makes the store read the subscription in
//! full, and the next checkpoint is folded from all its events again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::purchase::{Fold, Purchase, PurchaseKey, Standing, group};
use crate::{BillingEvent, EventId, SubscriptionId, Timestamp};

/// A checkpoint is taken once this many events lie before a subscription's
/// latest second outside its checkpoint: each one is a write, so not on
/// every event, and a derivation from a checkpoint folds about this many in
/// full (a refold reads them all).
pub const CHECKPOINT_AFTER: usize = 8;

/// The fold's version: a change to what the fold computes bumps it, and
/// checkpoints of another version are set aside (read in full, taken again).
const FOLD_VERSION: u32 = 2;

/// The fold of a subscription's events up to a second.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    #[serde(default)]
    version: u32,
    /// Every event of the subscription created at or before this second is
    /// folded in...
    pub through: Timestamp,
    /// ...and this many of them. The store compares it with the events it
    /// holds up to `through`: an event created at or before `through` that
    /// arrived after the checkpoint (a late one) makes them differ, and
    /// the checkpoint is not used.
    pub events: u64,
    fold: Fold,
}

impl Checkpoint {
    /// Whether this version of admit's fold took it.
    pub fn is_current(&self) -> bool {
        self.version == FOLD_VERSION
    }

    /// The version of the fold that took it.
    pub fn version(&self) -> u32 {
        self.version
    }
}

/// An event a checkpoint covers, as the store lists it: no body, only what
/// a derivation needs besides the fold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoveredEvent {
    pub id: EventId,
    pub created: Timestamp,
    /// The customer and checkout session it names (the links it touches).
    pub customer: Option<String>,
    pub session: Option<String>,
}

impl CoveredEvent {
    /// What the store lists of `event` once a checkpoint covers it.
    pub fn of(event: &BillingEvent) -> Self {
        Self {
            id: event.id.clone(),
            created: event.created,
            customer: event.customer().map(ToString::to_string),
            session: event.checkout().map(|c| c.session_id.clone()),
        }
    }
}

/// A subscription's checkpoint with the events it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folded {
    pub checkpoint: Checkpoint,
    pub covered: Vec<CoveredEvent>,
}

/// A scope's events as a derivation gets them: in full, except those the
/// checkpoints cover.
#[derive(Debug, Clone, Copy)]
pub struct ScopeEvents<'a> {
    pub events: &'a [BillingEvent],
    pub folded: &'a BTreeMap<SubscriptionId, Folded>,
}

/// A derivation needs events a checkpoint covers: ones created inside it
/// arrived since it was taken, or the checkpoint is of another version of
/// the fold. Read in full.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the derivation needs the events that the checkpoint of {0} covers")]
pub struct NeedsHistory(pub SubscriptionId);

static NO_CHECKPOINTS: BTreeMap<SubscriptionId, Folded> = BTreeMap::new();

impl<'a> ScopeEvents<'a> {
    /// Every event in full.
    pub fn full(events: &'a [BillingEvent]) -> Self {
        Self {
            events,
            folded: &NO_CHECKPOINTS,
        }
    }

    fn checkpoint_of(&self, key: &PurchaseKey) -> Option<(&'a SubscriptionId, &'a Folded)> {
        match key {
            PurchaseKey::Subscription(id) => self.folded.get_key_value(id),
            PurchaseKey::Session(_) => None,
        }
    }

    /// The scope's purchases, each folded over all its events.
    pub fn purchases(&self) -> Result<BTreeMap<PurchaseKey, Purchase>, NeedsHistory> {
        let mut grouped = group(self.events);
        for id in self.folded.keys() {
            grouped
                .entry(PurchaseKey::Subscription(id.clone()))
                .or_default();
        }
        let mut out = BTreeMap::new();
        for (key, mut events) in grouped {
            let fold = match self.checkpoint_of(&key) {
                Some((id, folded)) => resume(id, folded, &mut events)?,
                None => match Fold::of(key.clone(), &mut events) {
                    Some(fold) => fold,
                    None => continue,
                },
            };
            out.insert(key, fold.purchase());
        }
        Ok(out)
    }

    /// One purchase's standing as its events up to `until` (inclusive)
    /// tell it; `None` before its first event.
    pub fn standing_until(
        &self,
        key: &PurchaseKey,
        until: Timestamp,
    ) -> Result<Option<Standing>, NeedsHistory> {
        let Some((id, folded)) = self.checkpoint_of(key) else {
            return Ok(
                super::purchase::purchase_until(self.events, key, until).map(|p| p.standing())
            );
        };
        if until <= folded.checkpoint.through {
            if !folded.checkpoint.is_current() {
                return Err(NeedsHistory(id.clone()));
            }
            return Ok(folded.checkpoint.fold.standing_at(until));
        }
        let mut events: Vec<&BillingEvent> = group(self.events)
            .remove(key)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.created <= until)
            .collect();
        Ok(Some(resume(id, folded, &mut events)?.purchase().standing()))
    }

    /// The checkpoints worth taking now: for each subscription in the scope
    /// with at least [`CHECKPOINT_AFTER`] events in full before its latest
    /// second, the fold of every event before that second. The latest
    /// second stays out, so that a sibling event of the same second
    /// arriving next is not a late one.
    pub fn checkpoints(&self) -> Result<Vec<(SubscriptionId, Checkpoint)>, NeedsHistory> {
        let mut out = Vec::new();
        for (key, events) in group(self.events) {
            let PurchaseKey::Subscription(id) = &key else {
                continue;
            };
            let Some(latest) = events.iter().map(|e| e.created).max() else {
                continue;
            };
            let mut before: Vec<&BillingEvent> =
                events.into_iter().filter(|e| e.created < latest).collect();
            if before.len() < CHECKPOINT_AFTER {
                continue;
            }
            let Some(through) = before.iter().map(|e| e.created).max() else {
                continue;
            };
            let (fold, covered) = match self.folded.get(id) {
                Some(folded) => (resume(id, folded, &mut before)?, folded.checkpoint.events),
                None => match Fold::of(key.clone(), &mut before) {
                    Some(fold) => (fold, 0),
                    None => continue,
                },
            };
            out.push((
                id.clone(),
                Checkpoint {
                    version: FOLD_VERSION,
                    through,
                    events: covered + before.len() as u64,
                    fold: fold.without_ids(),
                },
            ));
        }
        Ok(out)
    }
}

/// A checkpoint's fold (with the ids of the events it covers) moved on by
/// `events` (its subscription's, in full), which must all be created after it.
fn resume(
    id: &SubscriptionId,
    folded: &Folded,
    events: &mut [&BillingEvent],
) -> Result<Fold, NeedsHistory> {
    if !folded.checkpoint.is_current()
        || events
            .iter()
            .any(|e| e.created <= folded.checkpoint.through)
    {
        return Err(NeedsHistory(id.clone()));
    }
    let mut fold = folded.checkpoint.fold.clone();
    fold.add_ids(folded.covered.iter().map(|e| e.id.clone()));
    fold.extend(events);
    Ok(fold)
}

#[cfg(test)]
impl Checkpoint {
    /// The checkpoint of `subscription` through `through`, as the store
    /// would hold it after one was taken then: serialised and read back.
    pub(super) fn stored(
        subscription: &SubscriptionId,
        events: &[BillingEvent],
        through: Timestamp,
    ) -> Option<Folded> {
        let key = PurchaseKey::Subscription(subscription.clone());
        let mut covered: Vec<&BillingEvent> = group(events)
            .remove(&key)?
            .into_iter()
            .filter(|e| e.created <= through)
            .collect();
        let fold = Fold::of(key, &mut covered)?.without_ids();
        let checkpoint = Checkpoint {
            version: FOLD_VERSION,
            through,
            events: covered.len() as u64,
            fold,
        };
        let json = serde_json::to_string(&checkpoint).ok()?;
        Some(Folded {
            checkpoint: serde_json::from_str(&json).ok()?,
            covered: covered.iter().map(|e| CoveredEvent::of(e)).collect(),
        })
    }
}

/// Splits `events` at `through`: each subscription's events up to it become
/// its stored checkpoint, the rest stay in full.
#[cfg(test)]
pub(super) fn split(
    events: &[BillingEvent],
    through: Timestamp,
) -> (Vec<BillingEvent>, BTreeMap<SubscriptionId, Folded>) {
    let mut folded = BTreeMap::new();
    for event in events {
        if let Some(id) = event.subscription()
            && event.created <= through
            && !folded.contains_key(id)
            && let Some(f) = Checkpoint::stored(id, events, through)
        {
            folded.insert(id.clone(), f);
        }
    }
    let rest = events
        .iter()
        .filter(|e| {
            !e.subscription().is_some_and(|id| folded.contains_key(id)) || e.created > through
        })
        .cloned()
        .collect();
    (rest, folded)
}
