//! The scope fixpoint, written once for every dialect: each round asks the
//! dialect's [`ScopeQueries`] for what the ids reached so far touch, until a
//! round adds nothing. The policy (what grows what, the round limit) is the
//! core's (`admit_core::provisioning::ScopeKeys`).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use admit_core::EventId;
use admit_core::provisioning::{EventKeys, MAX_SCOPE_ROUNDS, ScopeKeys};

use crate::StoreError;
use crate::provisioning::ScopeWrite;
use crate::provisioning::{History, ScopeEvent};

/// The three lookups a scope grows by, in the caller's transaction.
pub(crate) trait ScopeQueries: Send {
    /// The claimed event and every event naming one of the ids, with the
    /// ids each names; events in `known` (found in earlier rounds) are left
    /// out. With [`History::Checkpoints`], an event its subscription's
    /// checkpoint covers comes `covered`, without its billing event.
    fn events_touching<'a>(
        &'a mut self,
        claimed: &'a EventId,
        keys: &'a ScopeKeys,
        known: &'a BTreeSet<EventId>,
        history: History,
    ) -> impl Future<Output = Result<Vec<(ScopeEvent, EventKeys)>, StoreError>> + Send + 'a;

    /// Links, bindings and checkout intents naming one of the ids or
    /// workspaces: `(kind, stripe id, workspace)`.
    fn links_touching<'a>(
        &'a mut self,
        keys: &'a ScopeKeys,
    ) -> impl Future<Output = Result<Vec<(String, String, String)>, StoreError>> + Send + 'a;

    /// The workspaces these emails own or administer.
    fn administered_by<'a>(
        &'a mut self,
        emails: &'a BTreeSet<String>,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send + 'a;
}

/// Grows `keys` to a fixpoint; returns the scope's events by id. A scope
/// that does not close within the core's round limit fails (and is retried
/// later, visibly) instead of letting a derivation see part of it.
pub(crate) async fn grow_scope<Q: ScopeQueries>(
    queries: &mut Q,
    claimed: &EventId,
    keys: &mut ScopeKeys,
    history: History,
) -> Result<BTreeMap<EventId, ScopeEvent>, StoreError> {
    let mut events: BTreeMap<EventId, ScopeEvent> = BTreeMap::new();
    // Each lookup answers from the read's one snapshot, so asked again with
    // the same ids it answers the same: it is skipped until its ids grew.
    // The round that confirms the fixpoint then asks nothing.
    let (mut asked_events, mut asked_links, mut asked_admins) = (None, None, None);
    for _ in 0..MAX_SCOPE_ROUNDS {
        let before = (keys.size(), events.len());
        let event_ids = Some(event_inputs(keys));
        if asked_events != event_ids {
            asked_events = event_ids;
            let known: BTreeSet<EventId> = events.keys().cloned().collect();
            for (event, event_keys) in queries
                .events_touching(claimed, keys, &known, history)
                .await?
            {
                keys.add_event(&event_keys);
                events.insert(event.id.clone(), event);
            }
        }
        let link_ids = Some(link_inputs(keys));
        if asked_links != link_ids {
            asked_links = link_ids;
            for (kind, id, workspace) in queries.links_touching(keys).await? {
                keys.add_link(&kind, id, workspace);
            }
        }
        if asked_admins.as_ref() != Some(&keys.emails) {
            let emails = keys.emails.clone();
            keys.add_administered(queries.administered_by(&emails).await?);
            asked_admins = Some(emails);
        }
        if (keys.size(), events.len()) == before {
            return Ok(events);
        }
    }
    Err(StoreError::Decision(format!(
        "the scope of event {claimed} did not close within {MAX_SCOPE_ROUNDS} rounds"
    )))
}

/// How many of each kind of id `events_touching` searches by (ids are only
/// ever added, so equal counts are equal sets).
fn event_inputs(keys: &ScopeKeys) -> [usize; 5] {
    [
        keys.customers.len(),
        keys.subscriptions.len(),
        keys.sessions.len(),
        keys.workspaces.len(),
        keys.payments.len(),
    ]
}

/// The same for `links_touching`.
fn link_inputs(keys: &ScopeKeys) -> [usize; 4] {
    [
        keys.workspaces.len(),
        keys.customers.len(),
        keys.subscriptions.len(),
        keys.sessions.len(),
    ]
}

/// The `scope_versions` keys of a scope: its Stripe ids as they are (their
/// prefixes keep them apart), then its workspaces, emails and cases.
pub(crate) fn version_keys<'a>(
    keys: &ScopeKeys,
    case_keys: impl IntoIterator<Item = &'a String>,
) -> BTreeSet<String> {
    let raw = keys
        .customers
        .iter()
        .chain(&keys.subscriptions)
        .chain(&keys.sessions)
        .chain(&keys.payments)
        .cloned();
    let workspaces = keys.workspaces.iter().map(|w| format!("w:{w}"));
    let emails = keys.emails.iter().map(|e| format!("e:{e}"));
    let cases = case_keys.into_iter().map(|k| format!("k:{k}"));
    raw.chain(workspaces).chain(emails).chain(cases).collect()
}

/// Whether any id of a scope read with `read` versions has moved since:
/// `current` holds today's versions (an id never bumped has version 0).
pub(crate) fn moved(read: &BTreeMap<String, i64>, current: &BTreeMap<String, i64>) -> bool {
    read.iter()
        .any(|(key, version)| current.get(key).copied().unwrap_or(0) != *version)
}

/// The `scope_versions` keys the rows of `write` bump: a derivation of the
/// same batch that reads or writes any of them has not seen these writes.
/// (The events whose status it sets are in its own read: their ids are.)
pub(crate) fn written_keys(write: &ScopeWrite) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let workspace = |w: &dyn std::fmt::Display| format!("w:{w}");
    for (w, _) in &write.billing {
        keys.insert(workspace(w));
    }
    for (_, id) in &write.unlink {
        keys.insert(id.clone());
    }
    for (_, id, w) in &write.links {
        keys.insert(id.clone());
        keys.insert(workspace(w));
    }
    for case in &write.cases {
        keys.insert(format!("k:{}", case.key));
        keys.extend(
            [
                &case.subscription_id,
                &case.checkout_session_id,
                &case.customer_id,
            ]
            .into_iter()
            .flatten()
            .cloned(),
        );
        if let Some(w) = &case.workspace_id {
            keys.insert(workspace(w));
        }
    }
    keys.extend(write.outbox.iter().filter_map(|m| m.about.clone()));
    for (_, id, w, _) in &write.bindings {
        keys.insert(id.clone());
        keys.insert(workspace(w));
    }
    keys
}
