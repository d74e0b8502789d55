//! Convergence (DESIGN.md §2.3) as properties: for generated scenarios, every
//! permutation and duplication of the events derives the same billing state,
//! the same cases and the same outbox idempotency keys; and the shell's
//! one-event-at-a-time processing ends where a single derivation does.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::testkit::*;
use super::*;
use crate::{BillingEvent, WorkspaceId};

use super::checkpoint::Checkpoint;

#[derive(Debug, Clone)]
struct Scenario {
    world: World,
    events: Vec<BillingEvent>,
}

/// Purchaser variants: owner, admin (in odd case), a stranger, the other
/// workspace's owner.
const PURCHASERS: &[&str] = &[
    "dana@acme.test",
    "LEE@Acme.Test",
    "stranger@else.test",
    "olga@other.test",
];

fn story_strategy(n: u32) -> impl Strategy<Value = (Story, u8, bool, bool)> {
    (
        0..PURCHASERS.len(),
        // Metadata: none, ws_acme01, a workspace that does not exist.
        0u8..3,
        // Lifecycle branch after activation: none, renewal fails, cancels.
        0u8..3,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            move |(purchaser, metadata, branch, intent, unknown_price)| {
                let metadata = match metadata {
                    0 => None,
                    1 => Some("ws_acme01"),
                    _ => Some("ws_gone"),
                };
                let mut story = Story::new(n, PURCHASERS[purchaser], metadata);
                if unknown_price && n == 2 {
                    story.price = "price_NotInCatalog".into();
                }
                (story, branch, intent, unknown_price)
            },
        )
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        story_strategy(1),
        proptest::option::of(story_strategy(2)),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(first, second, shared_customer, create_policy)| {
            let mut world = World::standard();
            if create_policy {
                world.policy = UnmatchedPolicy::CreateWorkspace;
            }
            let mut events = Vec::new();
            let mut add = |(story, branch, intent, _): (Story, u8, bool, bool),
                           world: &mut World| {
                if intent {
                    world.intent(&story.session, "ws_acme01", "dana@acme.test");
                }
                events.extend(story.purchase());
                match branch {
                    1 => events.extend(story.renewal_fails()),
                    2 => events.extend(story.cancels()),
                    _ => {}
                }
            };
            let first_customer = first.0.customer.clone();
            add(first, &mut world);
            if let Some(mut second) = second {
                if shared_customer {
                    second.0.customer = first_customer;
                }
                add(second, &mut world);
            }
            Scenario { world, events }
        })
}

fn all_workspaces(world: &World) -> BTreeSet<WorkspaceId> {
    world.directory.iter().map(|w| w.id.clone()).collect()
}

/// The comparable result: everything but the outcome map's insertion history.
fn derived(world: &World, events: &[BillingEvent]) -> Derivation {
    derive(world.facts(), events, &all_workspaces(world))
}

/// A permutation (by sort keys) with some events repeated.
fn shuffled_with_duplicates(
    events: &[BillingEvent],
    order: &[u32],
    repeats: &[bool],
) -> Vec<BillingEvent> {
    let mut keyed: Vec<(u32, BillingEvent)> = events
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, e)| (order.get(i).copied().unwrap_or(0), e))
        .collect();
    for (i, repeat) in repeats.iter().enumerate() {
        if *repeat && let Some(e) = events.get(i % events.len().max(1)) {
            keyed.push((order.get(i).copied().unwrap_or(0) ^ 0x5555, e.clone()));
        }
    }
    keyed.sort_by_key(|(k, _)| *k);
    keyed.into_iter().map(|(_, e)| e).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_order_and_any_duplication_derive_the_same(
        s in scenario(),
        order in proptest::collection::vec(any::<u32>(), 40),
        repeats in proptest::collection::vec(any::<bool>(), 0..20),
    ) {
        let reference = derived(&s.world, &s.events);
        let shuffled = shuffled_with_duplicates(&s.events, &order, &repeats);
        let other = derived(&s.world, &shuffled);
        prop_assert_eq!(&other.billing, &reference.billing);
        prop_assert_eq!(&other.cases, &reference.cases);
        prop_assert_eq!(other.effects.keys().collect::<Vec<_>>(), reference.effects.keys().collect::<Vec<_>>());
        prop_assert_eq!(&other, &reference);
    }

    /// What the processor does: derive after each arrival over everything
    /// received so far. The last derivation equals the one over the full set,
    /// and every event has exactly one outcome.
    #[test]
    fn one_at_a_time_ends_where_all_at_once_does(
        s in scenario(),
        order in proptest::collection::vec(any::<u32>(), 40),
        repeats in proptest::collection::vec(any::<bool>(), 0..8),
    ) {
        let arrivals = shuffled_with_duplicates(&s.events, &order, &repeats);
        let mut received: Vec<BillingEvent> = Vec::new();
        let mut last = Derivation::default();
        for event in arrivals {
            received.push(event);
            last = derived(&s.world, &received);
        }
        prop_assert_eq!(&last, &derived(&s.world, &s.events));
        let ids: BTreeSet<_> = s.events.iter().map(|e| e.id.clone()).collect();
        prop_assert_eq!(last.outcomes.keys().cloned().collect::<BTreeSet<_>>(), ids);
    }

    #[test]
    fn applying_an_event_twice_changes_nothing(s in scenario(), pick in any::<prop::sample::Index>()) {
        let once = derived(&s.world, &s.events);
        let mut twice = s.events.clone();
        twice.push(s.events[pick.index(s.events.len())].clone());
        prop_assert_eq!(derived(&s.world, &twice), once);
    }

    /// Every paid purchase ends PROVISIONED or HELD with a reason; nothing paid is dropped.
    #[test]
    fn every_paid_purchase_is_provisioned_or_held(s in scenario()) {
        let d = derived(&s.world, &s.events);
        for purchase in purchases(&s.events).values().filter(|p| p.paid) {
            let reasons: BTreeSet<&str> = purchase.events.iter().map(|e| d.outcomes[e].reason).collect();
            prop_assert_eq!(reasons.len(), 1, "one outcome per purchase: {:?}", reasons);
            let reason = reasons.into_iter().next().unwrap_or_default();
            let accounted = match reason {
                "provisioned" | "superseded" => true,
                "awaiting_workspace" => !d.workspaces_to_create.is_empty(),
                kind => d.cases.values().any(|c| c.kind.as_str() == kind && c.events == purchase.events && c.state == CaseState::Held),
            };
            prop_assert!(accounted, "{} left {}", purchase.key, reason);
        }
    }

    /// Nobody is let into a workspace by paying: derivations never add members,
    /// and a workspace's plan only comes from a purchase bound to it by a rule.
    #[test]
    fn only_bound_purchases_set_a_plan(s in scenario()) {
        let d = derived(&s.world, &s.events);
        for (workspace, state) in &d.billing {
            if let Some(sub) = &state.stripe_subscription_id {
                prop_assert!(d.links.contains(&("subscription", sub.to_string(), workspace.clone())));
            }
            if state.subscription_plan.is_some() {
                prop_assert!(workspace.as_str() != "ws_gone");
            }
        }
    }
}

proptest! {
    /// An oracle independent of the fold: a single well-bound purchase ends in
    /// the status its story's last step gives, whatever the arrival order.
    #[test]
    fn the_final_status_is_the_storys_last_word(
        branch in 0u8..3,
        order in proptest::collection::vec(any::<u32>(), 40),
    ) {
        let world = World::standard();
        let story = Story::new(7, "dana@acme.test", Some("ws_acme01"));
        let mut events = story.purchase();
        let expected = match branch {
            1 => { events.extend(story.renewal_fails()); crate::SubscriptionStatus::PastDue }
            2 => { events.extend(story.cancels()); crate::SubscriptionStatus::Canceled }
            _ => crate::SubscriptionStatus::Active,
        };
        let d = derived(&world, &shuffled_with_duplicates(&events, &order, &[]));
        prop_assert_eq!(billing(&d, "ws_acme01").subscription_status, Some(expected));
    }
}

/// Puts the events `squash` seconds apart into one second, so that runs of
/// same-second events meet a checkpoint's edge.
fn squashed(events: Vec<BillingEvent>, squash: i64) -> Vec<BillingEvent> {
    events
        .into_iter()
        .map(|mut e| {
            e.created = crate::Timestamp::from_unix(e.created.unix().div_euclid(squash));
            e
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// A derivation from checkpoints (cut at any second, stored and read
    /// back) and the events after them is the derivation over every event,
    /// with the same changes to storage, late arrivals (S7) included, and
    /// it never needs the events a checkpoint covers.
    #[test]
    fn a_checkpoint_derives_what_every_event_does(
        s in scenario(),
        order in proptest::collection::vec(any::<u32>(), 40),
        repeats in proptest::collection::vec(any::<bool>(), 0..8),
        receipts in proptest::collection::vec(any::<u16>(), 60),
        cut in any::<prop::sample::Index>(),
        squash in 1i64..6,
    ) {
        let events = squashed(shuffled_with_duplicates(&s.events, &order, &repeats), squash);
        let through = events[cut.index(events.len())].created;
        let (rest, folded) = super::checkpoint::split(&events, through);
        let covered = events.iter().any(|e| e.subscription().is_some() && e.created <= through);
        prop_assert_eq!(folded.is_empty(), !covered);
        let scope = ScopeEvents { events: &rest, folded: &folded };
        let all = ScopeEvents::full(&events);
        prop_assert_eq!(scope.purchases(), all.purchases());

        let workspaces = all_workspaces(&s.world);
        let reference = derived(&s.world, &events);
        // A standing inside a checkpoint comes from the checkpoint: nothing
        // a derivation asks needs the events it covers.
        let d = derive_scope(s.world.facts(), scope, &workspaces);
        prop_assert!(d.is_ok(), "{:?}", d.as_ref().err());
        let d = d.unwrap_or_default();
        prop_assert_eq!(&d, &reference);

        let stored_events: std::collections::BTreeMap<_, _> = events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let at = receipts.get(i).copied().map_or(0, i64::from);
                (e.id.clone(), StoredEvent {
                    state: EventState::Received,
                    outcome: None,
                    scenario: None,
                    received_at: crate::Timestamp::from_unix(at),
                })
            })
            .collect();
        let empty_cases = std::collections::BTreeMap::new();
        let empty_outbox = std::collections::BTreeMap::new();
        let empty_billing = std::collections::BTreeMap::new();
        let stored = Stored {
            claimed: &events[0].id,
            events: &stored_events,
            workspaces: &workspaces,
            billing: &empty_billing,
            cases: &empty_cases,
            outbox: &empty_outbox,
            customer_bindings: s.world.facts().customer_bindings,
            purchase_bindings: s.world.facts().purchase_bindings,
        };
        prop_assert_eq!(changes_in(&d, scope, stored), changes(&reference, &events, stored));
    }
}

/// A purchase renewed monthly for `months`, and then, perhaps, a renewal
/// that fails.
fn long_history(story: &Story, months: i64, fails: bool) -> Vec<BillingEvent> {
    let mut events = story.purchase();
    for m in 1..=months {
        let at = m * 30 * DAY;
        events.push(story.invoice(
            &format!("paid{m}"),
            at,
            &format!("m{m}"),
            true,
            "subscription_cycle",
        ));
        events.push(story.subscription(
            &format!("renewed{m}"),
            at + 1,
            crate::SubscriptionChange::Updated,
            crate::SubscriptionStatus::Active,
        ));
    }
    if fails {
        let at = (months + 1) * 30 * DAY;
        events.push(story.invoice("failed", at, "last", false, "subscription_cycle"));
        events.push(story.subscription(
            "past_due",
            at + 1,
            crate::SubscriptionChange::Updated,
            crate::SubscriptionStatus::PastDue,
        ));
    }
    events
}

/// The checkpoints `scope` takes, as the store hands them back: stored as
/// JSON, with the events of `events` they cover.
fn taken(
    scope: ScopeEvents<'_>,
    events: &[BillingEvent],
) -> Result<std::collections::BTreeMap<crate::SubscriptionId, Folded>, TestCaseError> {
    let mut folded = std::collections::BTreeMap::new();
    let checkpoints = scope
        .checkpoints()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    for (sub, checkpoint) in checkpoints {
        let json =
            serde_json::to_string(&checkpoint).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let checkpoint: Checkpoint =
            serde_json::from_str(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut covered: Vec<CoveredEvent> = events
            .iter()
            .filter(|e| e.subscription() == Some(&sub) && e.created <= checkpoint.through)
            .map(CoveredEvent::of)
            .collect();
        covered.sort_by(|a, b| a.id.cmp(&b.id));
        covered.dedup_by(|a, b| a.id == b.id);
        prop_assert_eq!(checkpoint.events, covered.len() as u64, "the store's count");
        folded.insert(
            sub,
            Folded {
                checkpoint,
                covered,
            },
        );
    }
    Ok(folded)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The checkpoints a processor takes along a long history — from the
    /// events it had then, and again from a checkpoint — derive what every
    /// event does, whatever arrived since and in whatever order.
    #[test]
    fn checkpoints_taken_along_a_long_history_derive_what_every_event_does(
        months in 0i64..14,
        fails in any::<bool>(),
        order in proptest::collection::vec(any::<u32>(), 40),
        repeats in proptest::collection::vec(any::<bool>(), 0..8),
        cut in any::<prop::sample::Index>(),
        later in any::<prop::sample::Index>(),
    ) {
        let world = World::standard();
        let workspaces = all_workspaces(&world);
        let story = Story::new(9, "dana@acme.test", Some("ws_acme01"));
        let events = shuffled_with_duplicates(&long_history(&story, months, fails), &order, &repeats);
        let reference = derived(&world, &events);
        let derive_from = |folded: &std::collections::BTreeMap<crate::SubscriptionId, Folded>| {
            let rest: Vec<BillingEvent> = events
                .iter()
                .filter(|e| !folded.values().any(|f| f.covered.iter().any(|c| c.id == e.id)))
                .cloned()
                .collect();
            let scope = ScopeEvents { events: &rest, folded };
            (derive_scope(world.facts(), scope, &workspaces), scope.checkpoints().is_ok())
        };

        // What the processor held when it took the first checkpoint.
        let at = events[cut.index(events.len())].created;
        let then: Vec<BillingEvent> = events.iter().filter(|e| e.created <= at).cloned().collect();
        let first = taken(ScopeEvents::full(&then), &events)?;
        prop_assert_eq!(derive_from(&first), (Ok(reference.clone()), true));

        // A later derivation from it takes the next one.
        let at = events[later.index(events.len())].created.max(at);
        let then: Vec<BillingEvent> = events.iter().filter(|e| e.created <= at).cloned().collect();
        let rest: Vec<BillingEvent> = then
            .iter()
            .filter(|e| !first.values().any(|f| f.covered.iter().any(|c| c.id == e.id)))
            .cloned()
            .collect();
        let second = taken(ScopeEvents { events: &rest, folded: &first }, &events)?;
        let mut next = first.clone();
        next.extend(second);
        prop_assert_eq!(derive_from(&next), (Ok(reference), true));
    }
}

#[test]
fn a_year_of_renewals_takes_a_checkpoint_before_its_latest_second() {
    let story = Story::new(9, "dana@acme.test", Some("ws_acme01"));
    let events = long_history(&story, 12, false);
    let checkpoints = ScopeEvents::full(&events)
        .checkpoints()
        .expect("every event is there");
    let [(sub, checkpoint)] = checkpoints.as_slice() else {
        panic!("one checkpoint: {checkpoints:?}");
    };
    assert_eq!(sub.as_str(), "sub_Story0009");
    let latest = events.iter().map(|e| e.created).max().expect("events");
    assert!(checkpoint.through < latest);
    let subscription_events = events.iter().filter(|e| e.subscription().is_some()).count();
    assert_eq!(
        checkpoint.events,
        subscription_events as u64 - 1,
        "all but the latest second"
    );
}
