//! From a derivation and what storage holds for its scope, the typed changes
//! to write: billing states, case transitions (an operator's resolution
//! stands), outbox transitions, links, kept bindings and event outcomes.
//! The store only persists what this decides.

use std::collections::{BTreeMap, BTreeSet};

use super::cases::{Case, CaseKind, CaseState};
use super::checkpoint::ScopeEvents;
use super::derive::{Derivation, OutcomeStatus};
use super::effects::Effect;
use super::purchase::{PurchaseKey, purchase_key};
use super::scenario::Scenario;
use crate::{BillingEvent, BillingState, CustomerId, EventId, Timestamp, WorkspaceId};

/// An inbox row's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventState {
    Received,
    Processed,
    Held,
    Ignored,
    Failed,
}

/// An outbox row's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxState {
    Pending,
    Sent,
    Dead,
    /// Withdrawn before it was sent: no longer warranted.
    Superseded,
}

/// How a stored case stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredCaseState {
    Held,
    /// Resolved because no derivation warranted it any more.
    AutoResolved,
    /// Resolved by an operator: their word stands.
    ResolvedByOperator,
}

/// A stored case as the changes need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCase {
    /// `None` for kinds no derivation opens (reconciliation's `duplicate_customer`).
    pub kind: Option<CaseKind>,
    pub state: StoredCaseState,
}

/// A stored event as the changes need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub state: EventState,
    pub outcome: Option<String>,
    pub scenario: Option<Scenario>,
    /// When admit received it: with Stripe's `created`, this says whether it
    /// arrived out of order.
    pub received_at: crate::Timestamp,
}

/// What storage holds for the scope of one claimed event.
#[derive(Debug, Clone, Copy)]
pub struct Stored<'a> {
    pub claimed: &'a EventId,
    pub events: &'a BTreeMap<EventId, StoredEvent>,
    /// Workspaces that exist, whose billing state this scope decides.
    pub workspaces: &'a BTreeSet<WorkspaceId>,
    pub billing: &'a BTreeMap<WorkspaceId, BillingState>,
    /// Cases about the scope's purchases, by case key.
    pub cases: &'a BTreeMap<String, StoredCase>,
    /// Outbox rows about the scope's purchases, by idempotency key.
    pub outbox: &'a BTreeMap<String, OutboxState>,
    pub customer_bindings: &'a BTreeMap<CustomerId, WorkspaceId>,
    pub purchase_bindings: &'a BTreeMap<String, WorkspaceId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingChange {
    pub workspace: WorkspaceId,
    pub before: Option<BillingState>,
    pub after: BillingState,
    pub scenario: Option<Scenario>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseTransition {
    /// New, held.
    Open,
    /// New and born resolved: informational (`email_mismatch`, an unknown add-on).
    OpenResolved,
    /// Still held; its events or details may have grown.
    Update,
    /// Auto-resolved before, warranted again.
    Reopen,
    /// Held, no longer warranted (or informational now): resolved `auto`.
    AutoResolve,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseChange {
    pub key: String,
    pub transition: CaseTransition,
    /// The derived case; `None` for an auto-resolution of a case the
    /// derivation no longer names (the stored row is kept as it is).
    pub case: Option<Case>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxTransition {
    Add,
    /// A withdrawn message warranted again.
    Revive,
    /// A pending message takes the latest facts (a moved date, say).
    Refresh,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxChange {
    pub transition: OutboxTransition,
    pub effect: Effect,
}

/// A Stripe id and the workspace it is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LinkKind {
    Subscription,
    Customer,
    Session,
}

impl LinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Subscription => "subscription",
            LinkKind::Customer => "customer",
            LinkKind::Session => "session",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "subscription" => LinkKind::Subscription,
            "customer" => LinkKind::Customer,
            "session" => LinkKind::Session,
            _ => return None,
        })
    }
}

/// A binding kept as a fact (rule 3): a customer, or a purchase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BindingKind {
    Customer,
    Purchase,
}

impl BindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BindingKind::Customer => "customer",
            BindingKind::Purchase => "purchase",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeChange {
    pub id: EventId,
    pub state: EventState,
    pub reason: String,
    pub scenario: Option<Scenario>,
}

/// Everything one derivation changes, typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub billing: Vec<BillingChange>,
    pub cases: Vec<CaseChange>,
    pub outbox: Vec<OutboxChange>,
    /// Pending messages no longer warranted, by key.
    pub withdraw: Vec<String>,
    /// Stripe ids whose links are replaced by `links`.
    pub unlink: BTreeSet<(LinkKind, String)>,
    pub links: BTreeSet<(LinkKind, String, WorkspaceId)>,
    pub keep_bindings: Vec<(BindingKind, String, WorkspaceId)>,
    pub outcomes: Vec<OutcomeChange>,
}

/// The typed changes that bring storage in line with `derivation`.
pub fn changes(derivation: &Derivation, events: &[BillingEvent], stored: Stored<'_>) -> Changes {
    changes_in(derivation, ScopeEvents::full(events), stored)
}

/// [`changes`] for a derivation of a scope with checkpoints.
pub fn changes_in(derivation: &Derivation, scope: ScopeEvents<'_>, stored: Stored<'_>) -> Changes {
    let events = scope.events;
    let mut out = Changes::default();
    for (workspace, state) in &derivation.billing {
        if !stored.workspaces.contains(workspace) {
            continue;
        }
        let before = stored.billing.get(workspace);
        let unchanged = before.map_or(*state == BillingState::default(), |b| b == state);
        if !unchanged {
            out.billing.push(BillingChange {
                workspace: workspace.clone(),
                before: before.cloned(),
                after: state.clone(),
                scenario: derivation.billing_scenarios.get(workspace).copied(),
            });
        }
    }
    out.cases = case_changes(derivation, stored.cases);
    for effect in derivation.effects.values() {
        let transition = match stored.outbox.get(&effect.key) {
            None => Some(OutboxTransition::Add),
            Some(OutboxState::Superseded) => Some(OutboxTransition::Revive),
            Some(OutboxState::Pending) => Some(OutboxTransition::Refresh),
            Some(OutboxState::Sent | OutboxState::Dead) => None,
        };
        if let Some(transition) = transition {
            out.outbox.push(OutboxChange {
                transition,
                effect: effect.clone(),
            });
        }
    }
    out.withdraw = stored
        .outbox
        .iter()
        .filter(|(key, state)| {
            **state == OutboxState::Pending && !derivation.effects.contains_key(*key)
        })
        .map(|(key, _)| key.clone())
        .collect();
    for event in events {
        if let Some(s) = event.subscription() {
            out.unlink.insert((LinkKind::Subscription, s.to_string()));
        }
        if let Some(c) = event.customer() {
            out.unlink.insert((LinkKind::Customer, c.to_string()));
        }
        if let Some(c) = event.checkout() {
            out.unlink.insert((LinkKind::Session, c.session_id.clone()));
        }
    }
    for (subscription, folded) in scope.folded {
        out.unlink
            .insert((LinkKind::Subscription, subscription.to_string()));
        for event in &folded.covered {
            if let Some(c) = &event.customer {
                out.unlink.insert((LinkKind::Customer, c.clone()));
            }
            if let Some(s) = &event.session {
                out.unlink.insert((LinkKind::Session, s.clone()));
            }
        }
    }
    out.links = derivation
        .links
        .iter()
        .filter_map(|(kind, id, w)| Some((LinkKind::parse(kind)?, id.clone(), w.clone())))
        .collect();
    for (kind, id, workspace) in &derivation.remember {
        let (kind, known) = match *kind {
            "customer" => (
                BindingKind::Customer,
                CustomerId::parse(id.clone())
                    .ok()
                    .is_some_and(|c| stored.customer_bindings.contains_key(&c)),
            ),
            _ => (
                BindingKind::Purchase,
                stored.purchase_bindings.contains_key(id),
            ),
        };
        if !known {
            out.keep_bindings
                .push((kind, id.clone(), workspace.clone()));
        }
    }
    out.outcomes = outcome_changes(derivation, scope, stored);
    out
}

fn case_changes(derivation: &Derivation, stored: &BTreeMap<String, StoredCase>) -> Vec<CaseChange> {
    let mut out = Vec::new();
    for case in derivation.cases.values() {
        let transition = match (case.state, stored.get(&case.key).map(|s| s.state)) {
            (CaseState::Held, None) => Some(CaseTransition::Open),
            (CaseState::Held, Some(StoredCaseState::Held)) => Some(CaseTransition::Update),
            (CaseState::Held, Some(StoredCaseState::AutoResolved)) => Some(CaseTransition::Reopen),
            (CaseState::AutoResolved, None) => Some(CaseTransition::OpenResolved),
            // Held before, informational now: settled by itself.
            (CaseState::AutoResolved, Some(StoredCaseState::Held)) => {
                Some(CaseTransition::AutoResolve)
            }
            // An operator's word stands; a settled informational case stays settled.
            (_, Some(StoredCaseState::ResolvedByOperator))
            | (CaseState::AutoResolved, Some(StoredCaseState::AutoResolved)) => None,
        };
        if let Some(transition) = transition {
            out.push(CaseChange {
                key: case.key.clone(),
                transition,
                case: Some(case.clone()),
            });
        }
    }
    for (key, case) in stored {
        // Only cases a derivation decides can be settled by one.
        if case.kind.is_some()
            && case.state == StoredCaseState::Held
            && !derivation.cases.contains_key(key)
        {
            out.push(CaseChange {
                key: key.clone(),
                transition: CaseTransition::AutoResolve,
                case: None,
            });
        }
    }
    out
}

/// Events that arrived after an event of their own purchase that Stripe
/// created later: their effect came from re-deriving the set (S7). A pure
/// function of what is stored, so it does not depend on when processing ran.
fn arrived_late(scope: ScopeEvents<'_>, stored: Stored<'_>) -> BTreeSet<EventId> {
    // Per purchase, newest first: an event is late when an event created
    // strictly after it was received before it. One sweep per purchase, so
    // a subscription with years of invoices costs its events, not their square.
    let mut by_purchase: BTreeMap<PurchaseKey, Vec<(Timestamp, Timestamp, &EventId)>> =
        BTreeMap::new();
    for event in scope.events {
        let (Some(key), Some(row)) = (purchase_key(event), stored.events.get(&event.id)) else {
            continue;
        };
        by_purchase
            .entry(key)
            .or_default()
            .push((event.created, row.received_at, &event.id));
    }
    for (subscription, folded) in scope.folded {
        let purchase = by_purchase
            .entry(PurchaseKey::Subscription(subscription.clone()))
            .or_default();
        for event in &folded.covered {
            if let Some(row) = stored.events.get(&event.id) {
                purchase.push((event.created, row.received_at, &event.id));
            }
        }
    }
    let mut late = BTreeSet::new();
    for mut purchase in by_purchase.into_values() {
        purchase.sort_by_key(|e| std::cmp::Reverse(e.0));
        // The earliest receipt among events created after the current group.
        let mut earliest_later: Option<Timestamp> = None;
        let mut group = 0;
        while group < purchase.len() {
            let created = purchase[group].0;
            let end = purchase[group..]
                .iter()
                .position(|e| e.0 != created)
                .map_or(purchase.len(), |n| group + n);
            for (_, received, id) in &purchase[group..end] {
                if earliest_later.is_some_and(|r| r < *received) {
                    late.insert((*id).clone());
                }
            }
            for (_, received, _) in &purchase[group..end] {
                earliest_later = Some(earliest_later.map_or(*received, |r| r.min(*received)));
            }
            group = end;
        }
    }
    late
}

fn outcome_changes(
    derivation: &Derivation,
    scope: ScopeEvents<'_>,
    stored: Stored<'_>,
) -> Vec<OutcomeChange> {
    let mut out = Vec::new();
    if !derivation.outcomes.contains_key(stored.claimed) {
        // Every billing event gets an outcome; if one ever does not, it is
        // held visibly instead of being leased and retried forever.
        out.push(OutcomeChange {
            id: stored.claimed.clone(),
            state: EventState::Held,
            reason: "unaccounted".to_owned(),
            scenario: None,
        });
    }
    let late = arrived_late(scope, stored);
    for (id, outcome) in &derivation.outcomes {
        let state = match outcome.status {
            OutcomeStatus::Processed => EventState::Processed,
            OutcomeStatus::Held => EventState::Held,
        };
        let current = stored.events.get(id);
        // A late event whose purchase was provisioned was decided by
        // convergence (S7); one of a held purchase names the case's row.
        let scenario = if late.contains(id) && outcome.reason == "provisioned" {
            Some(Scenario::S7)
        } else {
            outcome.scenario
        };
        let same = current.is_some_and(|e| {
            e.state == state
                && e.outcome.as_deref() == Some(outcome.reason)
                && e.scenario == scenario
        });
        if !same || id == stored.claimed {
            out.push(OutcomeChange {
                id: id.clone(),
                state,
                reason: outcome.reason.to_owned(),
                scenario,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;
    use crate::SubscriptionStatus;

    struct Storage {
        events: BTreeMap<EventId, StoredEvent>,
        workspaces: BTreeSet<WorkspaceId>,
        billing: BTreeMap<WorkspaceId, BillingState>,
        cases: BTreeMap<String, StoredCase>,
        outbox: BTreeMap<String, OutboxState>,
        customers: BTreeMap<CustomerId, WorkspaceId>,
        purchases: BTreeMap<String, WorkspaceId>,
    }

    impl Storage {
        fn new() -> Self {
            Self {
                events: BTreeMap::new(),
                workspaces: BTreeSet::from([ws_id("ws_acme01")]),
                billing: BTreeMap::new(),
                cases: BTreeMap::new(),
                outbox: BTreeMap::new(),
                customers: BTreeMap::new(),
                purchases: BTreeMap::new(),
            }
        }

        fn changes(
            &self,
            claimed: &str,
            derivation: &Derivation,
            events: &[BillingEvent],
        ) -> Changes {
            let claimed = EventId::parse(claimed).expect("id");
            changes(
                derivation,
                events,
                Stored {
                    claimed: &claimed,
                    events: &self.events,
                    workspaces: &self.workspaces,
                    billing: &self.billing,
                    cases: &self.cases,
                    outbox: &self.outbox,
                    customer_bindings: &self.customers,
                    purchase_bindings: &self.purchases,
                },
            )
        }
    }

    /// The definition of a late arrival, as plainly as it can be said.
    fn arrived_late_by_definition(
        events: &[BillingEvent],
        stored: &BTreeMap<EventId, StoredEvent>,
    ) -> BTreeSet<EventId> {
        let received = |id: &EventId| stored.get(id).map(|e| e.received_at);
        events
            .iter()
            .filter(|event| {
                let (Some(key), Some(arrived)) = (purchase_key(event), received(&event.id)) else {
                    return false;
                };
                events.iter().any(|other| {
                    other.created > event.created
                        && purchase_key(other).as_ref() == Some(&key)
                        && received(&other.id).is_some_and(|r| r < arrived)
                })
            })
            .map(|e| e.id.clone())
            .collect()
    }

    proptest::proptest! {
        /// Two purchases' events with arrival times drawn with ties (and
        /// some never stored): the one-sweep reading finds exactly the late
        /// arrivals the definition finds.
        #[test]
        fn late_arrivals_match_their_definition(
            arrivals in proptest::collection::vec(proptest::option::weighted(0.9, 0i64..6), 20),
            // Coarser and coarser seconds: events that Stripe created apart
            // come to share one, so ties in `created` are drawn too.
            squash in proptest::sample::select(vec![1i64, 2, 5, 1_000, 100_000, 100_000_000]),
        ) {
            let first = Story::new(8, "dana@acme.test", Some("ws_acme01"));
            let second = Story::new(9, "bo@legacy.test", Some("ws_legacy01"));
            let events: Vec<BillingEvent> = [
                first.purchase(),
                first.renewal_fails(),
                first.cancels(),
                second.purchase(),
                second.renewal_fails(),
            ]
            .concat()
            .into_iter()
            .map(|mut e| {
                e.created = crate::Timestamp::from_unix(T0 + (e.created.unix() - T0) / squash);
                e
            })
            .collect();
            let mut storage = Storage::new();
            for (event, arrival) in events.iter().zip(&arrivals) {
                if let Some(at) = arrival {
                    storage.events.insert(
                        event.id.clone(),
                        StoredEvent {
                            state: EventState::Received,
                            outcome: None,
                            scenario: None,
                            received_at: crate::Timestamp::from_unix(T0 + at),
                        },
                    );
                }
            }
            let claimed = events[0].id.clone();
            let stored = Stored {
                claimed: &claimed,
                events: &storage.events,
                workspaces: &storage.workspaces,
                billing: &storage.billing,
                cases: &storage.cases,
                outbox: &storage.outbox,
                customer_bindings: &storage.customers,
                purchase_bindings: &storage.purchases,
            };
            proptest::prop_assert_eq!(
                arrived_late(ScopeEvents::full(&events), stored),
                arrived_late_by_definition(&events, &storage.events)
            );
        }
    }

    fn held_case(kind: CaseKind) -> StoredCase {
        StoredCase {
            kind: Some(kind),
            state: StoredCaseState::Held,
        }
    }

    fn transitions(c: &Changes) -> Vec<(&str, CaseTransition)> {
        c.cases
            .iter()
            .map(|c| (c.key.as_str(), c.transition))
            .collect()
    }

    /// A purchase no rule binds: a held `missing_workspace` case.
    fn unbound() -> (World, Vec<BillingEvent>) {
        let world = World::standard();
        (world, Story::new(1, "stranger@else.test", None).purchase())
    }

    #[test]
    fn a_case_is_opened_then_updated_while_it_is_held() {
        let (world, events) = unbound();
        let d = world.derive(&events);
        let mut storage = Storage::new();
        let c = storage.changes("evt_s1_checkout", &d, &events);
        assert_eq!(
            transitions(&c),
            [("missing_workspace:sub_Story0001", CaseTransition::Open)]
        );
        storage.cases.insert(
            "missing_workspace:sub_Story0001".into(),
            held_case(CaseKind::MissingWorkspace),
        );
        let c = storage.changes("evt_s1_checkout", &d, &events);
        assert_eq!(
            transitions(&c),
            [("missing_workspace:sub_Story0001", CaseTransition::Update)]
        );
    }

    #[test]
    fn an_auto_resolved_case_is_reopened_and_an_operators_resolution_stands() {
        let (world, events) = unbound();
        let d = world.derive(&events);
        let mut storage = Storage::new();
        storage.cases.insert(
            "missing_workspace:sub_Story0001".into(),
            StoredCase {
                kind: Some(CaseKind::MissingWorkspace),
                state: StoredCaseState::AutoResolved,
            },
        );
        let c = storage.changes("evt_s1_checkout", &d, &events);
        assert_eq!(
            transitions(&c),
            [("missing_workspace:sub_Story0001", CaseTransition::Reopen)]
        );
        storage.cases.insert(
            "missing_workspace:sub_Story0001".into(),
            StoredCase {
                kind: Some(CaseKind::MissingWorkspace),
                state: StoredCaseState::ResolvedByOperator,
            },
        );
        assert!(
            storage
                .changes("evt_s1_checkout", &d, &events)
                .cases
                .is_empty()
        );
    }

    #[test]
    fn a_held_case_no_longer_warranted_is_auto_resolved_but_not_a_reconcile_case() {
        let world = World::standard();
        let events = Story::new(2, "dana@acme.test", Some("ws_acme01")).purchase();
        let d = world.derive(&events);
        let mut storage = Storage::new();
        storage.cases.insert(
            "missing_workspace:sub_Story0002".into(),
            held_case(CaseKind::MissingWorkspace),
        );
        storage.cases.insert(
            "duplicate_customer:ws_acme01".into(),
            StoredCase {
                kind: None,
                state: StoredCaseState::Held,
            },
        );
        let c = storage.changes("evt_s2_checkout", &d, &events);
        assert_eq!(
            transitions(&c),
            [(
                "missing_workspace:sub_Story0002",
                CaseTransition::AutoResolve
            )]
        );
    }

    #[test]
    fn informational_cases_are_born_resolved_and_settle_a_held_one() {
        let world = World::standard();
        let events = Story::new(3, "stranger@else.test", Some("ws_acme01")).purchase();
        let d = world.derive(&events);
        let mut storage = Storage::new();
        let c = storage.changes("evt_s3_checkout", &d, &events);
        assert_eq!(
            transitions(&c),
            [("email_mismatch:sub_Story0003", CaseTransition::OpenResolved)]
        );
        storage.cases.insert(
            "email_mismatch:sub_Story0003".into(),
            held_case(CaseKind::EmailMismatch),
        );
        let c = storage.changes("evt_s3_checkout", &d, &events);
        assert_eq!(
            transitions(&c),
            [("email_mismatch:sub_Story0003", CaseTransition::AutoResolve)]
        );
        storage.cases.insert(
            "email_mismatch:sub_Story0003".into(),
            StoredCase {
                kind: Some(CaseKind::EmailMismatch),
                state: StoredCaseState::AutoResolved,
            },
        );
        assert!(
            storage
                .changes("evt_s3_checkout", &d, &events)
                .cases
                .is_empty()
        );
    }

    #[test]
    fn outbox_messages_are_added_revived_refreshed_withdrawn_or_left_alone() {
        let world = World::standard();
        let events = Story::new(4, "dana@acme.test", Some("ws_acme01")).purchase();
        let d = world.derive(&events);
        let key = "onboarding:sub_Story0004:dana@acme.test".to_owned();
        let mut storage = Storage::new();
        let transition = |s: &Storage| {
            s.changes("evt_s4_checkout", &d, &events)
                .outbox
                .iter()
                .find(|o| o.effect.key == key)
                .map(|o| o.transition)
        };
        assert_eq!(transition(&storage), Some(OutboxTransition::Add));
        storage.outbox.insert(key.clone(), OutboxState::Superseded);
        assert_eq!(transition(&storage), Some(OutboxTransition::Revive));
        storage.outbox.insert(key.clone(), OutboxState::Pending);
        assert_eq!(transition(&storage), Some(OutboxTransition::Refresh));
        for done in [OutboxState::Sent, OutboxState::Dead] {
            storage.outbox.insert(key.clone(), done);
            assert_eq!(transition(&storage), None, "{done:?}");
        }
        storage.outbox.insert(
            "access_delayed:sub_Story0004:dana@acme.test".into(),
            OutboxState::Pending,
        );
        storage.outbox.insert(
            "cancellation:sub_Story0004:dana@acme.test".into(),
            OutboxState::Sent,
        );
        assert_eq!(
            storage.changes("evt_s4_checkout", &d, &events).withdraw,
            ["access_delayed:sub_Story0004:dana@acme.test"],
            "only a pending message is withdrawn"
        );
    }

    #[test]
    fn billing_is_written_only_when_it_changes_and_names_its_scenario() {
        let world = World::standard();
        let events = Story::new(5, "dana@acme.test", Some("ws_acme01")).purchase();
        let d = world.derive(&events);
        let mut storage = Storage::new();
        let c = storage.changes("evt_s5_checkout", &d, &events);
        assert_eq!(c.billing.len(), 1);
        assert_eq!(c.billing[0].scenario, Some(Scenario::S1));
        assert_eq!(
            c.billing[0].after.subscription_status,
            Some(SubscriptionStatus::Active)
        );
        storage
            .billing
            .insert(ws_id("ws_acme01"), c.billing[0].after.clone());
        assert!(
            storage
                .changes("evt_s5_checkout", &d, &events)
                .billing
                .is_empty()
        );
        storage.workspaces.clear();
        storage.billing.clear();
        assert!(
            storage
                .changes("evt_s5_checkout", &d, &events)
                .billing
                .is_empty(),
            "a workspace that does not exist gets no billing row"
        );
    }

    #[test]
    fn outcomes_are_rewritten_when_they_change_and_a_late_arrival_is_s7() {
        let world = World::standard();
        let events = Story::new(6, "dana@acme.test", Some("ws_acme01")).purchase();
        let d = world.derive(&events);
        let mut storage = Storage::new();
        // Everything but the subscription's creation was processed already.
        for event in &events {
            if event.id.as_str() != "evt_s6_sub_created" {
                let outcome = &d.outcomes[&event.id];
                storage.events.insert(
                    event.id.clone(),
                    StoredEvent {
                        state: EventState::Processed,
                        outcome: Some(outcome.reason.to_owned()),
                        scenario: outcome.scenario,
                        received_at: crate::Timestamp::from_unix(T0 + 100),
                    },
                );
            }
        }
        // The subscription's creation arrives last of all.
        storage.events.insert(
            EventId::parse("evt_s6_sub_created").expect("id"),
            StoredEvent {
                state: EventState::Received,
                outcome: None,
                scenario: None,
                received_at: crate::Timestamp::from_unix(T0 + 200),
            },
        );
        let c = storage.changes("evt_s6_sub_created", &d, &events);
        assert_eq!(
            c.outcomes
                .iter()
                .map(|o| (o.id.as_str(), o.scenario))
                .collect::<Vec<_>>(),
            [("evt_s6_sub_created", Some(Scenario::S7))],
            "only the late one is written; the rest are unchanged"
        );
        // Whoever is processed next, the late one stays S7: it is a fact of arrival.
        storage.events.insert(
            EventId::parse("evt_s6_sub_created").expect("id"),
            StoredEvent {
                state: EventState::Processed,
                outcome: Some("provisioned".into()),
                scenario: Some(Scenario::S7),
                received_at: crate::Timestamp::from_unix(T0 + 200),
            },
        );
        let c = storage.changes("evt_s6_checkout", &d, &events);
        assert!(
            c.outcomes
                .iter()
                .all(|o| o.id.as_str() != "evt_s6_sub_created"),
            "S7 stays: {:?}",
            c.outcomes
        );
    }

    #[test]
    fn an_event_the_derivation_forgot_is_held_visibly() {
        let world = World::standard();
        let d = world.derive(&[]);
        let storage = Storage::new();
        let c = storage.changes("evt_ghost", &d, &[]);
        assert_eq!(c.outcomes.len(), 1);
        assert_eq!(
            (c.outcomes[0].state, c.outcomes[0].reason.as_str()),
            (EventState::Held, "unaccounted")
        );
    }

    #[test]
    fn rule_three_bindings_are_kept_once() {
        let world = World::standard();
        let events = Story::new(7, "lee@acme.test", None).purchase();
        let d = world.derive(&events);
        let mut storage = Storage::new();
        let c = storage.changes("evt_s7_checkout", &d, &events);
        assert_eq!(
            c.keep_bindings,
            [
                (
                    BindingKind::Customer,
                    "cus_Story0007".into(),
                    ws_id("ws_acme01")
                ),
                (
                    BindingKind::Purchase,
                    "sub_Story0007".into(),
                    ws_id("ws_acme01")
                ),
            ]
        );
        storage
            .customers
            .insert(cus("cus_Story0007"), ws_id("ws_acme01"));
        storage
            .purchases
            .insert("sub_Story0007".into(), ws_id("ws_acme01"));
        assert!(
            storage
                .changes("evt_s7_checkout", &d, &events)
                .keep_bindings
                .is_empty()
        );
        assert!(c.links.contains(&(
            LinkKind::Subscription,
            "sub_Story0007".into(),
            ws_id("ws_acme01")
        )));
    }
}
