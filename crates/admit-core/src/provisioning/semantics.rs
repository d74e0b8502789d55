//! Stripe billing semantics that current accounts produce (DESIGN.md §2.2
//! S15–S18, §2.3): scheduled ends from `cancel_at`, a lapsed subscription
//! beside a paid one, same-second updates ordered by their causal chain,
//! plan changes to prices outside the catalog, add-ons, disputes and
//! refunds, failed bank debits.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::testkit::*;
use super::*;
use crate::catalog::tests::plan;
use crate::{
    BillingEvent, ChargeRefund, Checkout, CheckoutMode, Dispute, EventId, EventKind,
    PreviousAttributes, SubscriptionChange, SubscriptionSnapshot, SubscriptionStatus, Timestamp,
};

use SubscriptionChange::Updated;
use SubscriptionStatus::{Active, Canceled, Incomplete, PastDue, Trialing, Unpaid};

const WS: &str = "ws_acme01";

fn at(unix: i64) -> Option<Timestamp> {
    Some(Timestamp::from_unix(unix))
}

/// Changes the subscription snapshot an event carries.
fn edit(mut event: BillingEvent, change: impl FnOnce(&mut SubscriptionSnapshot)) -> BillingEvent {
    if let EventKind::Subscription { subscription, .. } = &mut event.kind {
        change(subscription);
    }
    event
}

fn renamed(mut event: BillingEvent, id: &str) -> BillingEvent {
    event.id = EventId::parse(id).expect("event id");
    event
}

fn access_at(d: &Derivation, world: &World, email: &str, now: i64) -> Access {
    let workspace = world.directory.get(&ws_id(WS));
    access(
        workspace,
        &email_of(email),
        billing(d, WS),
        &world.catalog,
        7 * DAY,
        Timestamp::from_unix(now),
    )
}

fn email_of(raw: &str) -> crate::Email {
    email(raw)
}

/// Every order of `events` derives what creation order does.
fn assert_order_free(world: &World, events: &[BillingEvent]) -> Derivation {
    let expected = world.derive(events);
    let mut reversed = events.to_vec();
    reversed.reverse();
    assert_eq!(world.derive(&reversed), expected, "reversed order");
    let mut rotated = events.to_vec();
    for _ in 0..events.len() {
        rotated.rotate_left(1);
        assert_eq!(world.derive(&rotated), expected, "rotated order");
    }
    expected
}

// ---- 1. scheduled cancellations -------------------------------------------

/// Flexible billing mode (API 2025-09-30 on): "cancel at period end" is a
/// `cancel_at` with `cancel_at_period_end: false`.
fn flexible_schedule(story: &Story, dt: i64, end: i64) -> BillingEvent {
    edit(
        story.subscription("sub_cancel_at", dt, Updated, Active),
        |s| {
            s.cancel_at = at(end);
            s.previous = Some(PreviousAttributes {
                cancel_at: Some(None),
                ..PreviousAttributes::default()
            });
        },
    )
}

#[test]
fn a_cancel_at_schedules_the_end_and_access_ends_when_it_passes() {
    let world = World::standard();
    let story = Story::new(1, "dana@acme.test", Some(WS));
    let end = story.t + 20 * DAY;
    let mut events = story.purchase();
    events.push(flexible_schedule(&story, 5 * DAY, end));
    let d = assert_order_free(&world, &events);
    let state = billing(&d, WS);
    assert_eq!(state.cancel_at, at(end));
    assert!(!state.cancel_at_period_end);
    assert_eq!(state.subscription_status, Some(Active));
    // The owners are told when access ends.
    let notice = &d.effects["cancellation:sub_Story0001:dana@acme.test"];
    assert_eq!(notice.access_ends, at(end));
    // Paid until then; free after, with or without the deletion event.
    assert_eq!(
        access_at(&d, &world, "dana@acme.test", end - 1).reason,
        AccessReason::Active
    );
    let after = access_at(&d, &world, "dana@acme.test", end);
    assert_eq!(
        (after.reason, after.plan.as_str()),
        (AccessReason::PeriodEnded, "free")
    );
}

#[test]
fn after_the_deletion_a_scheduled_end_still_reads_period_ended_and_an_immediate_one_canceled() {
    let world = World::standard();
    let story = Story::new(6, "dana@acme.test", Some(WS));
    let end = story.t + 20 * DAY;
    let mut events = story.purchase();
    events.push(flexible_schedule(&story, 5 * DAY, end));
    events.push(edit(
        story.subscription(
            "sub_deleted",
            20 * DAY,
            SubscriptionChange::Deleted,
            Canceled,
        ),
        |s| s.cancel_at = at(end),
    ));
    let d = assert_order_free(&world, &events);
    assert_eq!(
        access_at(&d, &world, "dana@acme.test", end + 1).reason,
        AccessReason::PeriodEnded
    );
    let mut now = story.purchase();
    now.push(story.subscription(
        "sub_deleted_now",
        5 * DAY,
        SubscriptionChange::Deleted,
        Canceled,
    ));
    let d = world.derive(&now);
    assert_eq!(
        access_at(&d, &world, "dana@acme.test", story.t + 6 * DAY).reason,
        AccessReason::Canceled
    );
}

#[test]
fn a_custom_cancel_at_before_the_period_end_wins_over_the_period_end() {
    let world = World::standard();
    let story = Story::new(2, "dana@acme.test", Some(WS));
    let end = story.t + 12 * DAY;
    let mut events = story.purchase();
    events.push(edit(flexible_schedule(&story, 5 * DAY, end), |s| {
        s.cancel_at_period_end = false;
    }));
    let d = world.derive(&events);
    assert_ne!(billing(&d, WS).current_period_end, at(end));
    assert_eq!(billing(&d, WS).cancel_at, at(end));
}

/// An account on an API version before `cancel_at` existed (or a request
/// that set only the flag) schedules the end with `cancel_at_period_end`.
#[test]
fn an_older_account_schedules_with_the_flag_alone() {
    let world = World::standard();
    let story = Story::new(3, "dana@acme.test", Some(WS));
    let mut events = story.purchase();
    events.push(story.subscription_with("sub_flag_only", 5 * DAY, Updated, Active, true, PRO));
    let d = assert_order_free(&world, &events);
    let period_end = billing(&d, WS).current_period_end.expect("period end");
    assert_eq!(billing(&d, WS).cancel_at, Some(period_end));
    assert_eq!(
        access_at(&d, &world, "dana@acme.test", period_end.unix()).reason,
        AccessReason::PeriodEnded
    );
}

#[test]
fn unscheduling_restores_the_normal_state_in_any_order() {
    let world = World::standard();
    let story = Story::new(4, "dana@acme.test", Some(WS));
    let end = story.t + 20 * DAY;
    let mut events = story.purchase();
    events.push(flexible_schedule(&story, 5 * DAY, end));
    events.push(edit(
        story.subscription("sub_unscheduled", 6 * DAY, Updated, Active),
        |s| {
            s.previous = Some(PreviousAttributes {
                cancel_at: Some(at(end)),
                ..PreviousAttributes::default()
            });
        },
    ));
    let d = assert_order_free(&world, &events);
    assert_eq!(billing(&d, WS).cancel_at, None);
    assert!(
        !keys(&d).iter().any(|k| k.starts_with("cancellation:")),
        "{:?}",
        keys(&d)
    );
    assert_eq!(
        access_at(&d, &world, "dana@acme.test", end + DAY).reason,
        AccessReason::Active
    );
}

#[test]
fn a_schedule_and_its_undoing_in_the_same_second_follow_their_chain() {
    let world = World::standard();
    let story = Story::new(5, "dana@acme.test", Some(WS));
    let end = story.t + 20 * DAY;
    let schedule = renamed(flexible_schedule(&story, 5 * DAY, end), "evt_z_schedule");
    // Same second, an id that sorts first: only the chain says it is later.
    let undo = renamed(
        edit(
            story.subscription("sub_undo", 5 * DAY, Updated, Active),
            |s| {
                s.previous = Some(PreviousAttributes {
                    cancel_at: Some(at(end)),
                    ..PreviousAttributes::default()
                });
            },
        ),
        "evt_a_undo",
    );
    let mut events = story.purchase();
    events.extend([schedule, undo]);
    let d = assert_order_free(&world, &events);
    assert_eq!(billing(&d, WS).cancel_at, None);
    assert!(d.ties.is_empty());
}

// ---- 2. a lapsed subscription beside a paid one ----------------------------

fn second_purchase(first: &Story, n: u32, purchaser: &str) -> Story {
    let mut second = Story::new(n, purchaser, Some(WS));
    second.customer.clone_from(&first.customer);
    second.t = first.t + 40 * DAY;
    second
}

#[test]
fn a_new_paid_subscription_replaces_a_past_due_one() {
    let world = World::standard();
    let first = Story::new(10, "dana@acme.test", Some(WS));
    let second = second_purchase(&first, 11, "lee@acme.test");
    let mut events = first.purchase();
    events.extend(first.renewal_fails());
    events.extend(second.purchase());
    let d = assert_order_free(&world, &events);
    let state = billing(&d, WS);
    assert_eq!(state.stripe_subscription_id, Some(sub("sub_Story0011")));
    assert_eq!(state.subscription_status, Some(Active));
    assert_eq!(
        access_at(&d, &world, "dana@acme.test", second.t + 60)
            .plan
            .as_str(),
        "pro"
    );
    let case = &d.cases["duplicate_subscription:sub_Story0010"];
    assert_eq!(case.state, CaseState::Held);
    assert_eq!(case.details.action, Some(DuplicateAction::CancelLapsed));
    assert_eq!(case.details.canonical.as_deref(), Some("sub_Story0011"));
    // The new purchaser is onboarded, never promised a refund.
    assert!(
        d.effects
            .contains_key("onboarding:sub_Story0011:lee@acme.test")
    );
    assert!(
        !keys(&d).iter().any(|k| k.starts_with("duplicate_charge:")),
        "{:?}",
        keys(&d)
    );
    let alert =
        &d.effects["support_alert:duplicate_subscription:sub_Story0010:cancel_lapsed:support"];
    assert_eq!(alert.variant, Some("cancel_lapsed"));
}

#[test]
fn a_replaced_subscription_that_recovers_does_not_take_the_plan_back() {
    let world = World::standard();
    let first = Story::new(18, "dana@acme.test", Some(WS));
    let second = second_purchase(&first, 19, "lee@acme.test");
    let mut events = first.purchase();
    events.extend(first.renewal_fails());
    events.extend(second.purchase());
    // Stripe's retry collects the old one after the new one was bought.
    events.push(first.invoice(
        "retry_paid",
        45 * DAY,
        "renewal",
        true,
        "subscription_cycle",
    ));
    events.push(first.subscription("sub_recovered", 45 * DAY + 1, Updated, Active));
    let d = assert_order_free(&world, &events);
    assert_eq!(
        billing(&d, WS).stripe_subscription_id,
        Some(sub("sub_Story0019"))
    );
    assert_eq!(
        d.cases["duplicate_subscription:sub_Story0018"]
            .details
            .action,
        Some(DuplicateAction::CancelLapsed)
    );
    assert!(
        !keys(&d).iter().any(|k| k.starts_with("duplicate_charge:")),
        "the new purchaser is never told of a refund: {:?}",
        keys(&d)
    );
    // From a checkpoint of the old one taken after it recovered, its
    // standing when the new one began still comes out lapsed.
    for cut in [45 * DAY + 1, 45 * DAY + 2, 50 * DAY] {
        let (rest, folded) = super::checkpoint::split(&events, Timestamp::from_unix(first.t + cut));
        assert!(folded.contains_key(&sub("sub_Story0018")));
        let scope = ScopeEvents {
            events: &rest,
            folded: &folded,
        };
        assert_eq!(
            derive_scope(world.facts(), scope, &BTreeSet::new()),
            Ok(d.clone()),
            "cut {cut}"
        );
    }
}

#[test]
fn a_fixed_term_subscription_bought_beside_an_active_one_is_a_duplicate_to_refund() {
    let world = World::standard();
    let first = Story::new(24, "dana@acme.test", Some(WS));
    let second = second_purchase(&first, 25, "lee@acme.test");
    let mut events = first.purchase();
    // Bought with an end date from the start.
    events.extend(
        second
            .purchase()
            .into_iter()
            .map(|e| edit(e, |s| s.cancel_at = at(second.t + 90 * DAY))),
    );
    let d = assert_order_free(&world, &events);
    assert_eq!(
        billing(&d, WS).stripe_subscription_id,
        Some(sub("sub_Story0024"))
    );
    assert_eq!(
        d.cases["duplicate_subscription:sub_Story0025"]
            .details
            .action,
        Some(DuplicateAction::RefundDuplicate)
    );
    assert!(
        d.effects
            .contains_key("duplicate_charge:sub_Story0025:lee@acme.test")
    );
}

#[test]
fn a_subscription_scheduled_to_end_gives_way_to_the_one_that_continues() {
    let world = World::standard();
    let first = Story::new(12, "dana@acme.test", Some(WS));
    let second = second_purchase(&first, 13, "dana@acme.test");
    let mut events = first.purchase();
    events.push(flexible_schedule(&first, 30 * DAY, first.t + 60 * DAY));
    events.extend(second.purchase());
    let d = assert_order_free(&world, &events);
    assert_eq!(
        billing(&d, WS).stripe_subscription_id,
        Some(sub("sub_Story0013"))
    );
    assert_eq!(billing(&d, WS).cancel_at, None);
    assert_eq!(
        d.cases["duplicate_subscription:sub_Story0012"]
            .details
            .action,
        Some(DuplicateAction::CancelLapsed)
    );
}

#[test]
fn two_subscriptions_in_good_standing_are_still_s8() {
    let world = World::standard();
    let first = Story::new(14, "dana@acme.test", Some(WS));
    let second = second_purchase(&first, 15, "lee@acme.test");
    let mut events = first.purchase();
    events.extend(second.purchase());
    let d = assert_order_free(&world, &events);
    assert_eq!(
        billing(&d, WS).stripe_subscription_id,
        Some(sub("sub_Story0014"))
    );
    let case = &d.cases["duplicate_subscription:sub_Story0015"];
    assert_eq!(case.details.action, Some(DuplicateAction::RefundDuplicate));
    assert!(
        d.effects
            .contains_key("duplicate_charge:sub_Story0015:lee@acme.test")
    );
}

#[test]
fn standing_orders_past_due_before_unpaid() {
    let world = World::standard();
    let first = Story::new(16, "dana@acme.test", Some(WS));
    let second = second_purchase(&first, 17, "dana@acme.test");
    let mut events = first.purchase();
    events.push(first.subscription("unpaid", 35 * DAY, Updated, Unpaid));
    events.extend(second.purchase());
    events.extend(second.renewal_fails());
    let d = assert_order_free(&world, &events);
    // Neither is in good standing: the one still in its grace period holds the plan.
    assert_eq!(
        billing(&d, WS).stripe_subscription_id,
        Some(sub("sub_Story0017"))
    );
    assert_eq!(billing(&d, WS).subscription_status, Some(PastDue));
    assert_eq!(
        d.cases["duplicate_subscription:sub_Story0016"]
            .details
            .action,
        Some(DuplicateAction::CancelLapsed)
    );
}

// ---- 4. same-second updates --------------------------------------------------

#[test]
fn same_second_updates_follow_previous_attributes_not_event_ids() {
    let world = World::standard();
    let story = Story::new(20, "dana@acme.test", Some(WS));
    let t = 30 * DAY;
    // active → past_due → active within one second (a retry that succeeded).
    let to_past_due = renamed(
        edit(story.subscription("a", t, Updated, PastDue), |s| {
            s.previous = Some(PreviousAttributes {
                status: Some(Some(Active)),
                ..PreviousAttributes::default()
            });
            s.cancel_at_period_end = false;
        }),
        "evt_b_past_due",
    );
    let back_to_active = renamed(
        edit(story.subscription("b", t, Updated, Active), |s| {
            s.previous = Some(PreviousAttributes {
                status: Some(Some(PastDue)),
                ..PreviousAttributes::default()
            });
        }),
        "evt_a_active",
    );
    let mut events = story.purchase();
    events.extend([to_past_due, back_to_active]);
    // Status precedence alone would say past_due; the chain says active.
    let d = assert_order_free(&world, &events);
    assert_eq!(billing(&d, WS).subscription_status, Some(Active));
    assert!(d.ties.is_empty());
}

#[test]
fn an_update_that_changes_nothing_admit_compares_is_a_step_of_the_chain() {
    let world = World::standard();
    let story = Story::new(22, "dana@acme.test", Some(WS));
    let t = 30 * DAY;
    let mut events = story.purchase();
    events.extend(story.renewal_fails());
    // In one second: the customer changes the card (nothing compared
    // changes), the retry is paid, the subscription is active again.
    let card = renamed(
        edit(story.subscription("card", t + 10, Updated, PastDue), |s| {
            s.previous = Some(PreviousAttributes::default());
        }),
        "evt_z_card",
    );
    let active = renamed(
        edit(story.subscription("active", t + 10, Updated, Active), |s| {
            s.previous = Some(PreviousAttributes {
                status: Some(Some(PastDue)),
                ..PreviousAttributes::default()
            });
        }),
        "evt_a_active",
    );
    events.push(story.invoice("retry_paid", t + 10, "renewal", true, "subscription_cycle"));
    events.extend([card, active]);
    let d = assert_order_free(&world, &events);
    assert_eq!(billing(&d, WS).subscription_status, Some(Active));
    assert_eq!(billing(&d, WS).past_due_since, None);
    assert!(d.ties.is_empty());
}

#[test]
fn without_a_chain_the_status_precedence_decides_and_flags_a_tie() {
    let world = World::standard();
    let story = Story::new(21, "dana@acme.test", Some(WS));
    let t = 30 * DAY;
    // An older API version's updates, or a fetch: no previous_attributes.
    let a = renamed(
        story.subscription("a", t, Updated, Trialing),
        "evt_z_trialing",
    );
    let b = renamed(story.subscription("b", t, Updated, Active), "evt_a_active");
    let mut events = story.purchase();
    events.extend([a, b]);
    let d = assert_order_free(&world, &events);
    assert_eq!(billing(&d, WS).subscription_status, Some(Active));
    assert_eq!(
        d.ties,
        BTreeSet::from([sub("sub_Story0021")]),
        "only Stripe can settle it"
    );
    // A later snapshot (a fetch, stamped now) settles the tie.
    let mut settled = events.clone();
    settled.push(story.subscription("fetched", t + 60, Updated, Active));
    assert!(world.derive(&settled).ties.is_empty());
}

/// One link of a generated same-second chain.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Link {
    status: SubscriptionStatus,
    cancel_at: Option<i64>,
    cancel_at_period_end: bool,
}

fn link_strategy() -> impl Strategy<Value = Link> {
    (
        prop::sample::select(vec![
            Incomplete, Trialing, Active, PastDue, Unpaid, Canceled,
        ]),
        prop::option::of(prop::sample::select(vec![
            T0 + 40 * DAY,
            T0 + 50 * DAY,
            T0 + 60 * DAY,
        ])),
        any::<bool>(),
    )
        .prop_map(|(status, cancel_at, cancel_at_period_end)| Link {
            status,
            cancel_at,
            cancel_at_period_end,
        })
}

/// The subscription's state before the chain (its activation).
const BEFORE: Link = Link {
    status: Active,
    cancel_at: None,
    cancel_at_period_end: false,
};

/// How many delivery orders the chain's `previous_attributes` fit: each
/// link names exactly what changed from the link before it, so an order fits
/// when every link is placed right after a state equal to its true
/// predecessor (states can repeat: a toggle back to `BEFORE`).
fn orders_consistent_with_the_chain(links: &[Link]) -> usize {
    fn permutations(n: usize) -> Vec<Vec<usize>> {
        if n == 0 {
            return vec![Vec::new()];
        }
        let mut out = Vec::new();
        for p in permutations(n - 1) {
            for i in 0..=p.len() {
                let mut q = p.clone();
                q.insert(i, n - 1);
                out.push(q);
            }
        }
        out
    }
    let predecessor = |i: usize| if i == 0 { &BEFORE } else { &links[i - 1] };
    permutations(links.len())
        .into_iter()
        .filter(|order| {
            order.iter().enumerate().all(|(k, &i)| {
                let placed_after = if k == 0 {
                    &BEFORE
                } else {
                    &links[order[k - 1]]
                };
                placed_after == predecessor(i)
            })
        })
        .count()
}

/// Chains of 2–6 distinct snapshots, each link changing something.
fn chain_strategy() -> impl Strategy<Value = Vec<Link>> {
    prop::collection::vec(link_strategy(), 2..=6).prop_filter("distinct links", |links| {
        links
            .iter()
            .enumerate()
            .all(|(i, l)| !links[..i].contains(l))
            // A terminal status is final: nothing of the same subscription follows it.
            && links[..links.len() - 1]
                .iter()
                .all(|l| !l.status.is_terminal())
            // The first link changes something of the snapshot before it.
            && links[0] != BEFORE
    })
}

fn chain_events(story: &Story, links: &[Link], ids: &[String]) -> Vec<BillingEvent> {
    let t = 30 * DAY;
    links
        .iter()
        .enumerate()
        .map(|(i, link)| {
            let event = story.subscription(&format!("link{i}"), t, Updated, link.status);
            let event = renamed(event, &ids[i]);
            edit(event, |s| {
                s.cancel_at = link.cancel_at.map(Timestamp::from_unix);
                s.cancel_at_period_end = link.cancel_at_period_end;
                // Stripe names exactly the fields that changed, with their old values.
                let before = if i == 0 {
                    Link {
                        status: Active,
                        cancel_at: None,
                        cancel_at_period_end: false,
                    }
                } else {
                    links[i - 1].clone()
                };
                let mut previous = PreviousAttributes::default();
                if before.status != link.status {
                    previous.status = Some(Some(before.status));
                }
                if before.cancel_at != link.cancel_at {
                    previous.cancel_at = Some(before.cancel_at.map(Timestamp::from_unix));
                }
                if before.cancel_at_period_end != link.cancel_at_period_end {
                    previous.cancel_at_period_end = Some(before.cancel_at_period_end);
                }
                s.previous = Some(previous);
            })
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every delivery order of a same-second chain converges on its last
    /// link, whatever the (random) event ids say.
    #[test]
    fn same_second_chains_converge_on_the_last_link(
        links in chain_strategy(),
        ids in prop::collection::vec("[a-z0-9]{6}", 6),
        order in Just(()).prop_perturb(|_, mut rng| rng.random::<u64>()),
    ) {
        let world = World::standard();
        let story = Story::new(30, "dana@acme.test", Some(WS));
        let ids: Vec<String> = ids.iter().enumerate().map(|(i, id)| format!("evt_{id}{i}")).collect();
        let chain = chain_events(&story, &links, &ids);
        let mut events = story.purchase();
        events.extend(chain);
        // A seeded shuffle of the whole delivery.
        let mut shuffled = events.clone();
        let mut seed = order;
        for i in (1..shuffled.len()).rev() {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let j = usize::try_from(seed >> 33).unwrap_or(0) % (i + 1);
            shuffled.swap(i, j);
        }
        let d = world.derive(&shuffled);
        let last = links.last().expect("a chain has links");
        let state = billing(&d, WS);
        let expected_end = crate::scheduled_end(
            last.cancel_at.map(Timestamp::from_unix),
            last.cancel_at_period_end,
            state.current_period_end,
        );
        prop_assert_eq!(&d, &world.derive(&events));
        // From a checkpoint taken before the chain's second, the chain
        // still starts from the snapshot before it.
        let (rest, folded) =
            super::checkpoint::split(&shuffled, Timestamp::from_unix(story.t + 30 * DAY - 1));
        let scope = ScopeEvents { events: &rest, folded: &folded };
        prop_assert_eq!(derive_scope(world.facts(), scope, &BTreeSet::new()), Ok(d.clone()));
        // Where several orders fit the chain, only Stripe can say: a tie.
        let unique = orders_consistent_with_the_chain(&links) == 1;
        prop_assert_eq!(d.ties.is_empty(), unique);
        if unique {
            prop_assert_eq!(state.subscription_status, Some(last.status));
            if !last.status.is_terminal() {
                prop_assert_eq!(state.cancel_at, expected_end);
            }
        }
    }
}

// ---- 5, 6. prices outside the catalog ----------------------------------------

#[test]
fn a_plan_change_to_an_unknown_price_keeps_the_plan_in_force() {
    let world = World::standard();
    let story = Story::new(40, "dana@acme.test", Some(WS));
    let mut events = story.purchase();
    events.push(story.subscription_with(
        "sub_repriced",
        10 * DAY,
        Updated,
        Active,
        false,
        "price_NotInCatalog",
    ));
    let d = assert_order_free(&world, &events);
    assert_eq!(
        billing(&d, WS)
            .subscription_plan
            .as_ref()
            .map(|p| p.as_str()),
        Some("pro")
    );
    assert_eq!(
        access_at(&d, &world, "dana@acme.test", story.t + 11 * DAY).reason,
        AccessReason::Active
    );
    let case = &d.cases["unknown_price:sub_Story0040"];
    assert_eq!(case.state, CaseState::Held);
    assert_eq!(case.details.unknown_prices, ["price_NotInCatalog"]);
    // Support is alerted; the paying customer is told nothing.
    assert!(
        d.effects
            .contains_key("support_alert:unknown_price:sub_Story0040:plan_kept:support")
    );
    assert!(
        !keys(&d).iter().any(|k| k.starts_with("access_delayed:")),
        "{:?}",
        keys(&d)
    );
    assert_eq!(
        d.outcomes[&EventId::parse("evt_s40_sub_repriced").expect("id")].reason,
        "unknown_price"
    );
}

#[test]
fn marking_a_plan_kept_case_refunded_does_not_take_out_a_paying_subscription() {
    let mut world = World::standard();
    let story = Story::new(44, "dana@acme.test", Some(WS));
    let mut events = story.purchase();
    events.push(story.subscription_with(
        "sub_repriced",
        10 * DAY,
        Updated,
        Active,
        false,
        "price_NotInCatalog",
    ));
    world
        .settlements
        .insert("unknown_price:sub_Story0044".into(), Settlement::Refunded);
    let d = world.derive(&events);
    assert_eq!(
        billing(&d, WS)
            .subscription_plan
            .as_ref()
            .map(|p| p.as_str()),
        Some("pro")
    );
}

#[test]
fn a_first_purchase_of_an_unknown_price_is_still_access_delayed() {
    let world = World::standard();
    let mut story = Story::new(41, "dana@acme.test", Some(WS));
    story.price = "price_NotInCatalog".into();
    let d = world.derive(&story.purchase());
    assert_eq!(billing(&d, WS).subscription_plan, None);
    assert!(
        d.effects
            .contains_key("access_delayed:sub_Story0041:dana@acme.test")
    );
}

#[test]
fn an_unknown_add_on_beside_a_known_plan_is_told_not_held() {
    let world = World::standard();
    let story = Story::new(42, "dana@acme.test", Some(WS));
    let mut events = story.purchase();
    events.push(edit(
        story.subscription("sub_add_on", 10 * DAY, Updated, Active),
        |s| s.price_ids = vec![PRO.into(), "price_ExtraStorage01".into()],
    ));
    let d = assert_order_free(&world, &events);
    assert_eq!(
        billing(&d, WS)
            .subscription_plan
            .as_ref()
            .map(|p| p.as_str()),
        Some("pro")
    );
    let case = &d.cases["unknown_price:sub_Story0042"];
    assert_eq!(case.state, CaseState::AutoResolved);
    assert_eq!(case.details.unknown_prices, ["price_ExtraStorage01"]);
    assert!(!keys(&d).iter().any(|k| k.starts_with("support_alert:")));
}

#[test]
fn the_highest_ranked_plan_of_a_subscription_wins_whatever_the_item_order() {
    let mut world = World::standard();
    let mut pro = plan("pro", &[PRO], &["sso"], 25, false);
    pro.rank = 20;
    let mut team = plan("team", &["price_AdmitTeam01"], &[], 10, false);
    team.rank = 10;
    world.catalog = Catalog::new([plan("free", &[], &[], 3, true), pro, team]).expect("catalog");
    let story = Story::new(43, "dana@acme.test", Some(WS));
    for items in [
        vec!["price_AdmitTeam01".to_owned(), PRO.to_owned()],
        vec![PRO.to_owned(), "price_AdmitTeam01".to_owned()],
    ] {
        let mut events = story.purchase();
        events.push(edit(
            story.subscription("sub_two_plans", 10 * DAY, Updated, Active),
            |s| s.price_ids = items.clone(),
        ));
        let d = world.derive(&events);
        assert_eq!(
            billing(&d, WS)
                .subscription_plan
                .as_ref()
                .map(|p| p.as_str()),
            Some("pro"),
            "{items:?}"
        );
        assert!(d.cases.is_empty(), "{:?}", d.cases);
    }
}

// ---- 7. disputes and refunds ---------------------------------------------------

fn dispute_event(id: &str, t: i64, charge: &str, status: &str) -> BillingEvent {
    BillingEvent {
        id: EventId::parse(id).expect("id"),
        created: Timestamp::from_unix(t),
        kind: EventKind::Dispute(Dispute {
            id: "du_1SfVDispute01".into(),
            charge: Some(charge.into()),
            payment_intent: None,
            status: Some(status.into()),
            reason: Some("fraudulent".into()),
            amount: Some(4900),
            currency: Some("usd".into()),
        }),
    }
}

fn refund_event(story: &Story, id: &str, t: i64, invoice: &str, full: bool) -> BillingEvent {
    BillingEvent {
        id: EventId::parse(id).expect("id"),
        created: Timestamp::from_unix(t),
        kind: EventKind::ChargeRefunded(ChargeRefund {
            id: format!("ch_{}_{invoice}", story.n),
            customer: Some(cus(&story.customer)),
            invoice: None,
            payment_intent: Some(format!("pi_{}_{invoice}", story.n)),
            amount: Some(4900),
            amount_refunded: Some(if full { 4900 } else { 1000 }),
            refunded: full,
            currency: Some("usd".into()),
        }),
    }
}

#[test]
fn a_dispute_holds_a_case_and_leaves_access_to_the_subscription() {
    let world = World::standard();
    let story = Story::new(50, "dana@acme.test", Some(WS));
    let purchase = story.purchase();
    let without = world.derive(&purchase);
    let mut events = purchase.clone();
    events.push(dispute_event(
        "evt_dispute_opened",
        story.t + 9 * DAY,
        "ch_50_first",
        "needs_response",
    ));
    let d = assert_order_free(&world, &events);
    assert_eq!(billing(&d, WS), billing(&without, WS), "access unchanged");
    let case = &d.cases["payment_disputed:du_1SfVDispute01"];
    assert_eq!(case.state, CaseState::Held);
    assert_eq!(case.workspace, Some(ws_id(WS)));
    assert_eq!(case.subscription, Some(sub("sub_Story0050")));
    let payment = case.details.payment.as_ref().expect("payment details");
    assert_eq!(payment.invoice.as_deref(), Some("in_50_first"));
    assert!(
        d.effects
            .contains_key("support_alert:payment_disputed:du_1SfVDispute01:support")
    );
    assert_eq!(
        d.outcomes[&EventId::parse("evt_dispute_opened").expect("id")].status,
        OutcomeStatus::Held
    );

    // Won: nothing is owed, the case is no longer warranted.
    events.push(dispute_event(
        "evt_dispute_won",
        story.t + 40 * DAY,
        "ch_50_first",
        "won",
    ));
    let won = assert_order_free(&world, &events);
    assert!(!won.cases.contains_key("payment_disputed:du_1SfVDispute01"));
}

#[test]
fn a_dispute_admit_cannot_place_is_held_without_a_workspace() {
    let world = World::standard();
    let d = world.derive(&[dispute_event(
        "evt_dispute_stray",
        T0,
        "ch_Unknown01",
        "needs_response",
    )]);
    let case = &d.cases["payment_disputed:du_1SfVDispute01"];
    assert_eq!(
        (case.state, case.workspace.as_ref()),
        (CaseState::Held, None)
    );
}

#[test]
fn a_full_refund_of_the_latest_invoice_is_held_and_others_are_recorded() {
    let world = World::standard();
    let story = Story::new(51, "dana@acme.test", Some(WS));
    let mut events = story.purchase();
    events.push(story.invoice(
        "renewal_paid",
        30 * DAY,
        "renewal",
        true,
        "subscription_cycle",
    ));
    let base = world.derive(&events);

    let mut full_latest = events.clone();
    full_latest.push(refund_event(
        &story,
        "evt_refund_latest",
        story.t + 31 * DAY,
        "renewal",
        true,
    ));
    let d = assert_order_free(&world, &full_latest);
    let case = &d.cases["payment_refunded:ch_51_renewal"];
    assert_eq!(case.state, CaseState::Held);
    assert_eq!(case.workspace, Some(ws_id(WS)));
    assert_eq!(
        billing(&d, WS),
        billing(&base, WS),
        "access follows the subscription"
    );

    // The next renewal is paid: the refund case stays for support.
    let mut renewed = full_latest.clone();
    renewed.push(story.invoice("next_paid", 60 * DAY, "next", true, "subscription_cycle"));
    let d = world.derive(&renewed);
    assert_eq!(
        d.cases["payment_refunded:ch_51_renewal"].state,
        CaseState::Held
    );

    for (label, refund) in [
        (
            "partial",
            refund_event(
                &story,
                "evt_refund_partial",
                story.t + 31 * DAY,
                "renewal",
                false,
            ),
        ),
        (
            "older invoice",
            refund_event(&story, "evt_refund_old", story.t + 31 * DAY, "first", true),
        ),
    ] {
        let mut with = events.clone();
        with.push(refund);
        let d = world.derive(&with);
        assert!(
            !d.cases.keys().any(|k| k.starts_with("payment_refunded:")),
            "{label}: {:?}",
            d.cases
        );
    }
}

// ---- 8. a failed bank debit ------------------------------------------------------

#[test]
fn a_failed_async_payment_tells_the_purchaser_and_provisions_nothing() {
    let world = World::standard();
    let checkout = |id: &str, t: i64, kind: fn(Checkout) -> EventKind, paid: bool| BillingEvent {
        id: EventId::parse(id).expect("id"),
        created: Timestamp::from_unix(t),
        kind: kind(Checkout {
            session_id: "cs_test_SepaSeats01".into(),
            mode: CheckoutMode::Payment,
            paid,
            customer: Some(cus("cus_SepaSeats01")),
            subscription: None,
            purchaser_email: Some(email("dana@acme.test")),
            metadata_workspace: Some(WS.into()),
            client_reference_id: None,
            metadata_plan: Some("pro".into()),
            price_ids: Vec::new(),
            payment_intent: Some("pi_SepaSeats01".into()),
        }),
    };
    let completed = checkout(
        "evt_sepa_completed",
        T0,
        EventKind::CheckoutCompleted,
        false,
    );
    let pending = world.derive(std::slice::from_ref(&completed));
    assert_eq!(pending.outcomes[&completed.id].reason, "not_paid_yet");
    assert!(pending.effects.is_empty(), "{:?}", keys(&pending));

    let failed = checkout(
        "evt_sepa_failed",
        T0 + 4 * DAY,
        EventKind::CheckoutAsyncPaymentFailed,
        false,
    );
    let d = assert_order_free(&world, &[completed.clone(), failed]);
    assert_eq!(billing(&d, WS).subscription_status, None);
    let message = &d.effects["payment_failed:cs_test_SepaSeats01:dana@acme.test"];
    assert!(message.about_checkout);
    assert_eq!(message.plan.as_ref().map(|p| p.as_str()), Some("pro"));
    assert_eq!(d.outcomes[&completed.id].reason, "payment_failed");
}

// ---- the rows these situations name ---------------------------------------------

#[test]
fn the_stripe_situations_name_their_rows() {
    let world = World::standard();
    let scenario_of =
        |d: &Derivation, id: &str| d.outcomes[&EventId::parse(id).expect("id")].scenario;

    let first = Story::new(60, "dana@acme.test", Some(WS));
    let second = second_purchase(&first, 61, "lee@acme.test");
    let mut events = first.purchase();
    events.extend(first.renewal_fails());
    events.extend(second.purchase());
    let d = world.derive(&events);
    assert_eq!(scenario_of(&d, "evt_s61_checkout"), Some(Scenario::S15));
    assert_eq!(scenario_of(&d, "evt_s60_checkout"), Some(Scenario::S15));
    assert_eq!(
        d.cases["duplicate_subscription:sub_Story0060"].scenario,
        Scenario::S15
    );
    assert_eq!(d.billing_scenarios[&ws_id(WS)], Scenario::S15);

    let story = Story::new(62, "dana@acme.test", Some(WS));
    let mut events = story.purchase();
    events.push(story.subscription_with(
        "sub_repriced",
        10 * DAY,
        Updated,
        Active,
        false,
        "price_NotInCatalog",
    ));
    events.push(dispute_event(
        "evt_s62_dispute",
        story.t + 11 * DAY,
        "ch_62_first",
        "needs_response",
    ));
    let d = world.derive(&events);
    assert_eq!(scenario_of(&d, "evt_s62_sub_repriced"), Some(Scenario::S16));
    assert_eq!(scenario_of(&d, "evt_s62_dispute"), Some(Scenario::S17));
    assert_eq!(
        d.cases["payment_disputed:du_1SfVDispute01"].scenario,
        Scenario::S17
    );
    assert_eq!(
        scenario_of(&d, "evt_s62_customer"),
        None,
        "a customer update decides nothing"
    );

    let unpaid = BillingEvent {
        id: EventId::parse("evt_sepa_only").expect("id"),
        created: Timestamp::from_unix(T0),
        kind: EventKind::CheckoutCompleted(Checkout {
            session_id: "cs_test_Sepa62".into(),
            mode: CheckoutMode::Payment,
            paid: false,
            customer: Some(cus("cus_Sepa62")),
            subscription: None,
            purchaser_email: Some(email("dana@acme.test")),
            metadata_workspace: Some(WS.into()),
            client_reference_id: None,
            metadata_plan: Some("pro".into()),
            price_ids: Vec::new(),
            payment_intent: None,
        }),
    };
    let d = world.derive(&[unpaid]);
    assert_eq!(scenario_of(&d, "evt_sepa_only"), Some(Scenario::S18));
}

#[test]
fn kept_and_operator_bindings_name_their_rows_and_message_by_the_role_now() {
    // Lee bought as the admin of one workspace (rule 3); the binding was kept.
    let mut world = World::standard();
    let story = Story::new(70, "lee@acme.test", None);
    world
        .purchase_bindings
        .insert("sub_Story0070".into(), ws_id(WS));
    world.remembered_purchases.insert("sub_Story0070".into());
    let d = world.derive(&story.purchase());
    assert_eq!(d.billing_scenarios[&ws_id(WS)], Scenario::S4);

    // Lee is no longer a member: still S4, and Lee is told who administers it.
    world.directory =
        crate::Directory::new([workspace(WS, &[("dana@acme.test", crate::Role::Owner)])]);
    let d = world.derive(&story.purchase());
    assert_eq!(d.billing_scenarios[&ws_id(WS)], Scenario::S4);
    assert!(
        d.effects
            .contains_key("billing_contact_notice:sub_Story0070:lee@acme.test"),
        "{:?}",
        keys(&d)
    );

    // An operator invited a stranger as a plain member: S1, and they are onboarded.
    let mut world = World::standard();
    let stranger = Story::new(71, "sam@else.test", None);
    world
        .purchase_bindings
        .insert("sub_Story0071".into(), ws_id(WS));
    world.directory = crate::Directory::new([workspace(
        WS,
        &[
            ("dana@acme.test", crate::Role::Owner),
            ("sam@else.test", crate::Role::Member),
        ],
    )]);
    let d = world.derive(&stranger.purchase());
    assert_eq!(d.billing_scenarios[&ws_id(WS)], Scenario::S1);
    assert!(
        d.effects
            .contains_key("onboarding:sub_Story0071:sam@else.test")
    );
}

#[test]
fn a_kept_plan_names_s16_on_its_billing_too() {
    let world = World::standard();
    let story = Story::new(72, "dana@acme.test", Some(WS));
    let mut events = story.purchase();
    events.push(story.subscription_with(
        "sub_repriced",
        10 * DAY,
        Updated,
        Active,
        false,
        "price_NotInCatalog",
    ));
    let d = world.derive(&events);
    assert_eq!(d.billing_scenarios[&ws_id(WS)], Scenario::S16);
}

#[test]
fn two_checkouts_at_once_are_s8_whichever_sorts_first() {
    let world = World::standard();
    let first = Story::new(80, "dana@acme.test", Some(WS));
    let mut second = Story::new(81, "lee@acme.test", Some(WS));
    // Two tabs, paid in the same second: each still incomplete when the other began.
    second.t = first.t;
    let mut events = first.purchase();
    events.extend(second.purchase());
    let d = assert_order_free(&world, &events);
    let duplicates: Vec<&Case> = d
        .cases
        .values()
        .filter(|c| c.kind == CaseKind::DuplicateSubscription)
        .collect();
    assert_eq!(duplicates.len(), 1, "{:?}", d.cases);
    assert_eq!(
        duplicates[0].details.action,
        Some(DuplicateAction::RefundDuplicate)
    );
    assert_eq!(duplicates[0].scenario, Scenario::S8);
}
