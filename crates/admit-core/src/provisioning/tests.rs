//! The decision table, row by row (DESIGN.md §2.2), and the binding rules (§2.1).

use super::testkit::*;
use super::*;
use crate::{Role, SubscriptionChange, SubscriptionStatus, Timestamp};

fn status(d: &Derivation, workspace: &str) -> Option<SubscriptionStatus> {
    billing(d, workspace).subscription_status
}

fn plan<'d>(d: &'d Derivation, workspace: &str) -> Option<&'d str> {
    billing(d, workspace)
        .subscription_plan
        .as_ref()
        .map(|p| p.as_str())
}

#[test]
fn s1_trusted_binding_and_purchaser_is_owner() {
    let world = World::standard();
    let story = Story::new(1, "Dana@Acme.test", Some("ws_acme01"));
    let d = world.derive(&story.purchase());
    let state = billing(&d, "ws_acme01");
    assert_eq!(state.subscription_status, Some(SubscriptionStatus::Active));
    assert_eq!(plan(&d, "ws_acme01"), Some("pro"));
    assert_eq!(state.stripe_customer_id, Some(cus("cus_Story0001")));
    assert_eq!(state.stripe_subscription_id, Some(sub("sub_Story0001")));
    assert_eq!(state.purchaser_email, Some(email("dana@acme.test")));
    assert_eq!(
        state.updated_by_event.as_ref().map(|e| e.as_str()),
        Some("evt_s1_checkout")
    );
    assert_eq!(keys(&d), ["onboarding:sub_Story0001:dana@acme.test"]);
    assert!(d.cases.is_empty());
    assert!(
        d.outcomes
            .values()
            .all(|o| o.status == OutcomeStatus::Processed)
    );
}

#[test]
fn s1_initiator_of_an_intent_is_onboarded_even_without_metadata() {
    let mut world = World::standard();
    world.intent("cs_test_Story0002", "ws_acme01", "lee@acme.test");
    let story = Story::new(2, "lee@acme.test", None);
    let d = world.derive(&story.purchase());
    assert_eq!(plan(&d, "ws_acme01"), Some("pro"));
    assert_eq!(keys(&d), ["onboarding:sub_Story0002:lee@acme.test"]);
}

#[test]
fn s2_purchaser_is_not_an_administrator() {
    let mut world = World::standard();
    world.intent("cs_test_Story0003", "ws_acme01", "lee@acme.test");
    let story = Story::new(3, "accounts-payable@acme.test", Some("ws_acme01"));
    let d = world.derive(&story.purchase());
    assert_eq!(
        plan(&d, "ws_acme01"),
        Some("pro"),
        "provisioned all the same"
    );
    assert_eq!(
        billing(&d, "ws_acme01").purchaser_email,
        Some(email("accounts-payable@acme.test")),
        "recorded as billing contact"
    );
    assert_eq!(
        keys(&d),
        [
            "billing_contact_notice:sub_Story0003:accounts-payable@acme.test",
            "onboarding:sub_Story0003:lee@acme.test",
        ]
    );
    let case = d
        .cases
        .get("email_mismatch:sub_Story0003")
        .expect("informational case");
    assert_eq!(case.state, CaseState::AutoResolved);
    let notice = d
        .effects
        .get("billing_contact_notice:sub_Story0003:accounts-payable@acme.test")
        .expect("notice");
    assert_eq!(
        notice.administrators,
        [email("dana@acme.test"), email("lee@acme.test")]
    );
}

#[test]
fn s2_without_intent_onboards_the_owners() {
    let world = World::standard();
    let story = Story::new(4, "mo@acme.test", Some("ws_acme01"));
    let d = world.derive(&story.purchase());
    assert_eq!(
        keys(&d),
        [
            "billing_contact_notice:sub_Story0004:mo@acme.test",
            "onboarding:sub_Story0004:dana@acme.test",
        ],
        "a plain member paying gets no admin rights from it"
    );
}

#[test]
fn s3_known_customer_without_intent() {
    let mut world = World::standard();
    world
        .customer_bindings
        .insert(cus("cus_Story0005"), ws_id("ws_acme01"));
    let story = Story::new(5, "someone@elsewhere.test", None);
    let d = world.derive(&story.purchase());
    assert_eq!(plan(&d, "ws_acme01"), Some("pro"));
    assert_eq!(
        keys(&d),
        ["onboarding:sub_Story0005:dana@acme.test"],
        "to the owners"
    );

    let admin = Story::new(6, "lee@acme.test", None);
    world
        .customer_bindings
        .insert(cus("cus_Story0006"), ws_id("ws_acme01"));
    let d = world.derive(&admin.purchase());
    assert_eq!(
        keys(&d),
        ["onboarding:sub_Story0006:lee@acme.test"],
        "to the matching admin"
    );
}

#[test]
fn s3_a_customer_bound_by_an_earlier_purchase_binds_the_next_one() {
    let world = World::standard();
    let first = Story::new(7, "dana@acme.test", Some("ws_acme01"));
    let mut events = first.purchase();
    events.extend(first.cancels());
    let mut second = Story::new(8, "dana@acme.test", None);
    second.customer = first.customer.clone();
    second.t = first.t + 40 * DAY;
    events.extend(second.purchase());
    let d = world.derive(&events);
    assert_eq!(
        billing(&d, "ws_acme01").stripe_subscription_id,
        Some(sub("sub_Story0008"))
    );
    assert_eq!(status(&d, "ws_acme01"), Some(SubscriptionStatus::Active));
    assert!(held(&d).is_empty(), "{:?}", held(&d));
}

#[test]
fn s4_purchaser_administers_exactly_one_workspace() {
    let world = World::standard();
    let story = Story::new(9, "olga@other.test", None);
    let d = world.derive(&story.purchase());
    assert_eq!(plan(&d, "ws_other"), Some("pro"));
    assert!(
        d.links
            .contains(&("customer", "cus_Story0009".to_owned(), ws_id("ws_other")))
    );
    assert_eq!(keys(&d), ["onboarding:sub_Story0009:olga@other.test"]);
}

#[test]
fn s5_missing_workspace_is_held_with_candidates() {
    let mut world = World::standard();
    world
        .directory
        .insert(workspace("ws_second", &[("dana@acme.test", Role::Admin)]));
    let story = Story::new(10, "dana@acme.test", None);
    let d = world.derive(&story.purchase());
    assert_eq!(
        held(&d),
        [(
            "missing_workspace:sub_Story0010",
            CaseKind::MissingWorkspace
        )]
    );
    let case = &d.cases["missing_workspace:sub_Story0010"];
    assert_eq!(
        case.details.candidates,
        [ws_id("ws_acme01"), ws_id("ws_second")]
    );
    assert_eq!(
        keys(&d),
        [
            "access_delayed:sub_Story0010:dana@acme.test",
            "support_alert:missing_workspace:sub_Story0010:support",
        ]
    );
    assert!(d.billing.is_empty(), "no workspace changes");
    assert!(
        d.outcomes
            .values()
            .filter(|o| o.reason == "missing_workspace")
            .count()
            >= 4
    );
}

#[test]
fn s5_metadata_naming_no_workspace_never_creates_one() {
    let mut world = World::standard();
    world.policy = UnmatchedPolicy::CreateWorkspace;
    let story = Story::new(11, "new@startup.test", Some("ws_does_not_exist"));
    let d = world.derive(&story.purchase());
    assert!(d.workspaces_to_create.is_empty());
    let case = &d.cases["missing_workspace:sub_Story0011"];
    assert_eq!(
        case.details.requested_workspace.as_deref(),
        Some("ws_does_not_exist")
    );
}

#[test]
fn s5_client_reference_id_alone_is_never_a_binding() {
    let world = World::standard();
    let mut story = Story::new(12, "stranger@evil.test", None);
    let mut events = story.purchase();
    // Payment Link with ?client_reference_id=ws_acme01 chosen by the buyer.
    story.metadata_workspace = Some("ws_acme01".into());
    if let Some(crate::EventKind::CheckoutCompleted(c)) = events.last_mut().map(|e| &mut e.kind) {
        c.client_reference_id = Some("ws_acme01".into());
        c.metadata_workspace = None;
    }
    let d = world.derive(&events);
    assert!(d.billing.is_empty());
    let case = &d.cases["missing_workspace:sub_Story0012"];
    assert_eq!(case.details.client_reference_ids, ["ws_acme01"]);
}

#[test]
fn unmatched_policy_create_workspace_requests_one_for_the_purchaser() {
    let mut world = World::standard();
    world.policy = UnmatchedPolicy::CreateWorkspace;
    let story = Story::new(13, "founder@newco.test", None);
    let d = world.derive(&story.purchase());
    assert_eq!(d.workspaces_to_create.len(), 1);
    let request = &d.workspaces_to_create[0];
    assert_eq!(request.owner, email("founder@newco.test"));
    assert_eq!(request.purchase, "sub_Story0013");
    assert!(d.cases.is_empty());

    // Once the shell created it and bound the purchase, it provisions.
    world.directory.insert(workspace(
        request.id.as_str(),
        &[("founder@newco.test", Role::Owner)],
    ));
    world
        .purchase_bindings
        .insert(request.purchase.clone(), request.id.clone());
    let d = world.derive(&story.purchase());
    assert_eq!(plan(&d, request.id.as_str()), Some("pro"));
    assert_eq!(keys(&d), ["onboarding:sub_Story0013:founder@newco.test"]);
}

#[test]
fn s6_duplicates_change_nothing() {
    let world = World::standard();
    let story = Story::new(14, "dana@acme.test", Some("ws_acme01"));
    let once = world.derive(&story.purchase());
    let mut ten_times = Vec::new();
    for _ in 0..10 {
        ten_times.extend(story.purchase());
    }
    assert_eq!(world.derive(&ten_times), once);
}

#[test]
fn s7_reverse_order_gives_the_creation_order_result() {
    let world = World::standard();
    let story = Story::new(15, "dana@acme.test", Some("ws_acme01"));
    let mut events = story.purchase();
    events.extend(story.renewal_fails());
    let forward = world.derive(&events);
    events.reverse();
    assert_eq!(world.derive(&events), forward);
    assert_eq!(
        status(&forward, "ws_acme01"),
        Some(SubscriptionStatus::PastDue)
    );
}

#[test]
fn s7_terminal_status_is_never_undone_by_a_late_update() {
    let world = World::standard();
    let story = Story::new(16, "dana@acme.test", Some("ws_acme01"));
    let mut events = story.purchase();
    events.extend(story.cancels());
    // A stale `active` snapshot stamped after the deletion (clock skew, or a replay).
    events.push(story.subscription(
        "late_active",
        31 * DAY,
        SubscriptionChange::Updated,
        SubscriptionStatus::Active,
    ));
    let d = world.derive(&events);
    assert_eq!(status(&d, "ws_acme01"), Some(SubscriptionStatus::Canceled));
    assert_eq!(plan(&d, "ws_acme01"), Some("free"));
}

#[test]
fn s7_a_subscription_event_before_any_binding_waits() {
    let world = World::standard();
    let story = Story::new(17, "olga@other.test", None);
    // Only the subscription's own events so far: no email yet, nothing paid.
    let early = vec![story.subscription(
        "sub_created",
        1,
        SubscriptionChange::Created,
        SubscriptionStatus::Incomplete,
    )];
    let d = world.derive(&early);
    assert!(d.cases.is_empty() && d.effects.is_empty());
    assert_eq!(
        d.outcomes.values().next().map(|o| (o.status, o.reason)),
        Some((OutcomeStatus::Held, "awaiting_binding"))
    );
    // Then the rest arrives, and it binds (S4).
    let d = world.derive(&story.purchase());
    assert_eq!(plan(&d, "ws_other"), Some("pro"));
}

#[test]
fn s8_a_second_subscription_for_an_active_workspace_is_held() {
    let world = World::standard();
    let first = Story::new(18, "dana@acme.test", Some("ws_acme01"));
    let mut second = Story::new(19, "lee@acme.test", Some("ws_acme01"));
    second.t = first.t + 5 * DAY;
    let mut events = first.purchase();
    events.extend(second.purchase());
    let d = world.derive(&events);
    assert_eq!(
        billing(&d, "ws_acme01").stripe_subscription_id,
        Some(sub("sub_Story0018")),
        "canonical stays"
    );
    assert_eq!(
        held(&d),
        [(
            "duplicate_subscription:sub_Story0019",
            CaseKind::DuplicateSubscription
        )]
    );
    assert_eq!(
        d.cases["duplicate_subscription:sub_Story0019"]
            .details
            .canonical
            .as_deref(),
        Some("sub_Story0018")
    );
    assert_eq!(
        keys(&d),
        [
            "duplicate_charge:sub_Story0019:lee@acme.test",
            "onboarding:sub_Story0018:dana@acme.test",
            "support_alert:duplicate_subscription:sub_Story0019:support",
        ]
    );
}

#[test]
fn s8_a_new_subscription_after_the_old_one_ended_is_not_a_duplicate() {
    let world = World::standard();
    let first = Story::new(20, "dana@acme.test", Some("ws_acme01"));
    let mut second = Story::new(21, "dana@acme.test", Some("ws_acme01"));
    second.t = first.t + 60 * DAY;
    let mut events = first.purchase();
    events.extend(first.cancels());
    events.extend(second.purchase());
    let d = world.derive(&events);
    assert_eq!(
        billing(&d, "ws_acme01").stripe_subscription_id,
        Some(sub("sub_Story0021"))
    );
    assert!(held(&d).is_empty());
}

#[test]
fn s8_settled_duplicate_stays_out() {
    let mut world = World::standard();
    world.settlements.insert(
        "duplicate_subscription:sub_Story0023".into(),
        Settlement::Refunded,
    );
    let first = Story::new(22, "dana@acme.test", Some("ws_acme01"));
    let mut second = Story::new(23, "dana@acme.test", Some("ws_acme01"));
    second.t = first.t + DAY;
    let mut events = first.purchase();
    events.extend(second.purchase());
    let d = world.derive(&events);
    assert!(held(&d).is_empty());
    assert_eq!(
        billing(&d, "ws_acme01").stripe_subscription_id,
        Some(sub("sub_Story0022"))
    );
    assert!(d.outcomes.values().any(|o| o.reason == "settled_refunded"));
}

#[test]
fn s9_customer_bound_elsewhere_with_metadata_for_another_workspace() {
    let mut world = World::standard();
    world
        .customer_bindings
        .insert(cus("cus_Story0024"), ws_id("ws_other"));
    let story = Story::new(24, "dana@acme.test", Some("ws_acme01"));
    let d = world.derive(&story.purchase());
    assert_eq!(
        held(&d),
        [(
            "customer_conflict:sub_Story0024",
            CaseKind::CustomerConflict
        )]
    );
    assert_eq!(
        d.cases["customer_conflict:sub_Story0024"]
            .details
            .bound_workspace,
        Some(ws_id("ws_other"))
    );
    assert_eq!(
        d.billing.get(&ws_id("ws_other")),
        None,
        "neither workspace changes plan"
    );
    assert_eq!(billing(&d, "ws_acme01").subscription_plan, None);
    assert_eq!(
        keys(&d),
        ["support_alert:customer_conflict:sub_Story0024:support"]
    );
}

#[test]
fn s9_a_later_purchase_of_a_customer_for_another_workspace_conflicts() {
    let world = World::standard();
    let first = Story::new(25, "dana@acme.test", Some("ws_acme01"));
    let mut second = Story::new(26, "dana@acme.test", Some("ws_other"));
    second.customer = first.customer.clone();
    second.t = first.t + DAY;
    let mut events = first.purchase();
    events.extend(second.purchase());
    let d = world.derive(&events);
    assert_eq!(plan(&d, "ws_acme01"), Some("pro"));
    assert_eq!(
        held(&d),
        [(
            "customer_conflict:sub_Story0026",
            CaseKind::CustomerConflict
        )]
    );
}

#[test]
fn s10_price_not_in_the_catalog() {
    let world = World::standard();
    let mut story = Story::new(27, "dana@acme.test", Some("ws_acme01"));
    story.price = "price_Enterprise99".into();
    let d = world.derive(&story.purchase());
    assert_eq!(
        held(&d),
        [("unknown_price:sub_Story0027", CaseKind::UnknownPrice)]
    );
    assert_eq!(
        d.cases["unknown_price:sub_Story0027"]
            .details
            .unknown_prices,
        ["price_Enterprise99"]
    );
    assert_eq!(billing(&d, "ws_acme01").subscription_plan, None);
    assert_eq!(
        keys(&d),
        [
            "access_delayed:sub_Story0027:dana@acme.test",
            "support_alert:unknown_price:sub_Story0027:support",
        ]
    );
}

#[test]
fn s11_payment_failed_keeps_the_plan_in_grace_then_downgrades() {
    let world = World::standard();
    let story = Story::new(28, "dana@acme.test", Some("ws_acme01"));
    let mut events = story.purchase();
    events.extend(story.renewal_fails());
    let d = world.derive(&events);
    let state = billing(&d, "ws_acme01");
    assert_eq!(state.subscription_status, Some(SubscriptionStatus::PastDue));
    let since = state.past_due_since.expect("past due since");
    assert_eq!(
        since,
        Timestamp::from_unix(story.t + 30 * DAY),
        "from the failed invoice"
    );
    let effect = &d.effects["payment_failed:sub_Story0028:in_28_renewal:dana@acme.test"];
    assert_eq!(effect.grace_ends, Some(since.plus_seconds(7 * DAY)));

    let ws = world.directory.get(&ws_id("ws_acme01"));
    let dana = email("dana@acme.test");
    let in_grace = access(
        ws,
        &dana,
        state,
        &world.catalog,
        7 * DAY,
        since.plus_seconds(DAY),
    );
    assert_eq!(
        (in_grace.plan.as_str(), in_grace.reason),
        ("pro", AccessReason::PastDueGrace)
    );
    let after = access(
        ws,
        &dana,
        state,
        &world.catalog,
        7 * DAY,
        since.plus_seconds(7 * DAY),
    );
    assert_eq!(
        (after.plan.as_str(), after.reason),
        ("free", AccessReason::PastDueGraceExpired)
    );

    // Paid on retry: back to active, and the failure notice is no longer warranted.
    events.push(story.invoice(
        "renewal_paid",
        32 * DAY,
        "renewal",
        true,
        "subscription_cycle",
    ));
    let d = world.derive(&events);
    assert_eq!(status(&d, "ws_acme01"), Some(SubscriptionStatus::Active));
    assert!(!keys(&d).iter().any(|k| k.starts_with("payment_failed")));
}

#[test]
fn s12_cancellation_ends_paid_entitlements_at_period_end() {
    let world = World::standard();
    let story = Story::new(29, "dana@acme.test", Some("ws_acme01"));
    let mut events = story.purchase();
    let scheduled = story.cancels().remove(0);
    events.push(scheduled);
    let d = world.derive(&events);
    let state = billing(&d, "ws_acme01").clone();
    assert!(state.cancel_at_period_end);
    let period_end = state.current_period_end.expect("period end");
    assert_eq!(
        d.effects["cancellation:sub_Story0029:dana@acme.test"].access_ends,
        Some(period_end)
    );
    let ws = world.directory.get(&ws_id("ws_acme01"));
    let dana = email("dana@acme.test");
    let before = access(
        ws,
        &dana,
        &state,
        &world.catalog,
        7 * DAY,
        period_end.plus_seconds(-1),
    );
    assert_eq!(before.reason, AccessReason::Active);
    let after = access(ws, &dana, &state, &world.catalog, 7 * DAY, period_end);
    assert_eq!(
        (after.plan.as_str(), after.reason),
        ("free", AccessReason::PeriodEnded),
        "even if the deletion is late"
    );

    events.extend(story.cancels());
    let d = world.derive(&events);
    assert_eq!(status(&d, "ws_acme01"), Some(SubscriptionStatus::Canceled));
    assert_eq!(plan(&d, "ws_acme01"), Some("free"));
    assert!(keys(&d).contains(&"cancellation:sub_Story0029:dana@acme.test"));
}

#[test]
fn s12_unpaid_and_incomplete_expired_end_entitlements() {
    let world = World::standard();
    for (n, end) in [
        (30, SubscriptionStatus::Unpaid),
        (31, SubscriptionStatus::IncompleteExpired),
    ] {
        let story = Story::new(n, "dana@acme.test", Some("ws_acme01"));
        let mut events = story.purchase();
        events.push(story.subscription("end", 40 * DAY, SubscriptionChange::Updated, end));
        let d = world.derive(&events);
        assert_eq!(plan(&d, "ws_acme01"), Some("free"), "{end}");
    }
}

#[test]
fn an_unpaid_checkout_provisions_nothing_until_paid() {
    let world = World::standard();
    let story = Story::new(32, "dana@acme.test", Some("ws_acme01"));
    let events = vec![story.subscription(
        "sub_created",
        1,
        SubscriptionChange::Created,
        SubscriptionStatus::Incomplete,
    )];
    let d = world.derive(&events);
    assert_eq!(billing(&d, "ws_acme01").subscription_status, None);
    assert!(d.effects.is_empty());
    assert_eq!(
        d.outcomes.values().next().map(|o| o.reason),
        Some("not_paid_yet")
    );
}

#[test]
fn an_operator_binding_provisions_a_held_purchase() {
    let mut world = World::standard();
    let story = Story::new(33, "stranger@nowhere.test", None);
    assert!(world.derive(&story.purchase()).billing.is_empty());
    world
        .purchase_bindings
        .insert("sub_Story0033".into(), ws_id("ws_other"));
    let d = world.derive(&story.purchase());
    assert_eq!(plan(&d, "ws_other"), Some("pro"));
    assert_eq!(
        keys(&d),
        [
            "billing_contact_notice:sub_Story0033:stranger@nowhere.test",
            "onboarding:sub_Story0033:olga@other.test",
        ],
        "the owners are onboarded; the purchaser, no member, is told who administers it"
    );
}

#[test]
fn access_answers_for_roles_and_non_members() {
    let world = World::standard();
    let story = Story::new(34, "dana@acme.test", Some("ws_acme01"));
    let d = world.derive(&story.purchase());
    let state = billing(&d, "ws_acme01");
    let ws = world.directory.get(&ws_id("ws_acme01"));
    let now = Timestamp::from_unix(T0 + 2 * DAY);
    for (who, role) in [
        ("dana@acme.test", Role::Owner),
        ("lee@acme.test", Role::Admin),
        ("mo@acme.test", Role::Member),
    ] {
        let a = access(ws, &email(who), state, &world.catalog, 7 * DAY, now);
        assert!(a.allowed, "{who}");
        assert_eq!(a.role, Some(role));
        assert_eq!(a.plan.as_str(), "pro");
        assert!(a.entitlements.features.contains("sso"));
        assert_eq!(a.entitlements.limits.get("seats"), Some(&25));
    }
    let stranger = access(
        ws,
        &email("eve@evil.test"),
        state,
        &world.catalog,
        7 * DAY,
        now,
    );
    assert!(!stranger.allowed);
    assert_eq!(
        (stranger.role, stranger.reason),
        (None, AccessReason::NotAMember)
    );
    let missing = access(
        None,
        &email("dana@acme.test"),
        state,
        &world.catalog,
        7 * DAY,
        now,
    );
    assert_eq!(missing.reason, AccessReason::WorkspaceNotFound);
    let before_payment = access(
        ws,
        &email("dana@acme.test"),
        &crate::BillingState::default(),
        &world.catalog,
        7 * DAY,
        now,
    );
    assert_eq!(
        (before_payment.plan.as_str(), before_payment.reason),
        ("free", AccessReason::FreeTier)
    );
    assert_eq!(before_payment.entitlements.limits.get("seats"), Some(&3));
}

#[test]
fn a_plan_change_follows_the_latest_snapshot() {
    let world = World::standard();
    let story = Story::new(35, "dana@acme.test", Some("ws_acme01"));
    let mut events = story.purchase();
    events.push(story.subscription_with(
        "to_team",
        5 * DAY,
        SubscriptionChange::Updated,
        SubscriptionStatus::Active,
        false,
        "price_AdmitTeam01",
    ));
    assert_eq!(plan(&world.derive(&events), "ws_acme01"), Some("team"));
}

#[test]
fn one_time_payment_checkout_provisions_the_plan_it_names() {
    let mut world = World::standard();
    world.intent("cs_test_Lifetime01", "ws_acme01", "dana@acme.test");
    let checkout = crate::BillingEvent {
        id: crate::EventId::parse("evt_lifetime").expect("id"),
        created: Timestamp::from_unix(T0),
        kind: crate::EventKind::CheckoutCompleted(crate::Checkout {
            session_id: "cs_test_Lifetime01".into(),
            mode: crate::CheckoutMode::Payment,
            paid: false,
            customer: Some(cus("cus_Lifetime01")),
            subscription: None,
            purchaser_email: Some(email("dana@acme.test")),
            metadata_workspace: Some("ws_acme01".into()),
            client_reference_id: None,
            metadata_plan: Some("pro".into()),
            price_ids: Vec::new(),
            payment_intent: None,
        }),
    };
    let d = world.derive(std::slice::from_ref(&checkout));
    assert_eq!(
        billing(&d, "ws_acme01").subscription_status,
        None,
        "unpaid (async) checkout waits"
    );
    let mut succeeded = checkout.clone();
    succeeded.id = crate::EventId::parse("evt_lifetime_paid").expect("id");
    succeeded.created = Timestamp::from_unix(T0 + 3 * DAY);
    if let crate::EventKind::CheckoutCompleted(c) = succeeded.kind {
        succeeded.kind = crate::EventKind::CheckoutAsyncPaymentSucceeded(c);
    }
    let d = world.derive(&[checkout, succeeded]);
    assert_eq!(plan(&d, "ws_acme01"), Some("pro"));
    assert_eq!(billing(&d, "ws_acme01").stripe_subscription_id, None);
}

#[test]
fn a_held_duplicate_takes_over_when_the_first_subscription_ends() {
    let world = World::standard();
    let first = Story::new(40, "dana@acme.test", Some("ws_acme01"));
    let mut second = Story::new(41, "lee@acme.test", Some("ws_acme01"));
    second.t = first.t + 5 * DAY;
    second.price = "price_AdmitTeam01".into();
    let mut events = first.purchase();
    events.extend(second.purchase());
    let d = world.derive(&events);
    assert_eq!(
        held(&d),
        [(
            "duplicate_subscription:sub_Story0041",
            CaseKind::DuplicateSubscription
        )]
    );
    // The first ends at its period end; the second is live and paid for: it holds the plan now.
    events.extend(first.cancels());
    let d = world.derive(&events);
    assert!(held(&d).is_empty(), "{:?}", held(&d));
    assert_eq!(
        billing(&d, "ws_acme01").stripe_subscription_id,
        Some(sub("sub_Story0041"))
    );
    assert_eq!(plan(&d, "ws_acme01"), Some("team"));
}

#[test]
fn an_unpaid_first_subscription_does_not_block_a_fresh_one() {
    let world = World::standard();
    let first = Story::new(42, "dana@acme.test", Some("ws_acme01"));
    let mut second = Story::new(43, "dana@acme.test", Some("ws_acme01"));
    second.t = first.t + 40 * DAY;
    let mut events = first.purchase();
    events.push(first.subscription(
        "unpaid",
        35 * DAY,
        SubscriptionChange::Updated,
        SubscriptionStatus::Unpaid,
    ));
    events.extend(second.purchase());
    let d = world.derive(&events);
    assert_eq!(
        billing(&d, "ws_acme01").stripe_subscription_id,
        Some(sub("sub_Story0043"))
    );
    assert_eq!(status(&d, "ws_acme01"), Some(SubscriptionStatus::Active));
    // The unpaid one is still open at Stripe and could collect again: support cancels it (S15).
    assert_eq!(
        held(&d),
        [(
            "duplicate_subscription:sub_Story0042",
            CaseKind::DuplicateSubscription
        )]
    );
    let case = &d.cases["duplicate_subscription:sub_Story0042"];
    assert_eq!(case.details.action, Some(DuplicateAction::CancelLapsed));
    assert_eq!(case.details.canonical.as_deref(), Some("sub_Story0043"));
    assert!(
        !keys(&d).iter().any(|k| k.starts_with("duplicate_charge:")),
        "{:?}",
        keys(&d)
    );
}

#[test]
fn a_one_time_checkout_without_a_price_is_a_case_not_a_silent_hold() {
    let world = World::standard();
    let checkout = crate::BillingEvent {
        id: crate::EventId::parse("evt_link_payment").expect("id"),
        created: Timestamp::from_unix(T0),
        kind: crate::EventKind::CheckoutCompleted(crate::Checkout {
            session_id: "cs_test_Link01".into(),
            mode: crate::CheckoutMode::Payment,
            paid: true,
            customer: Some(cus("cus_Link01")),
            subscription: None,
            purchaser_email: Some(email("dana@acme.test")),
            metadata_workspace: Some("ws_acme01".into()),
            client_reference_id: None,
            metadata_plan: None,
            price_ids: Vec::new(),
            payment_intent: None,
        }),
    };
    let d = world.derive(&[checkout]);
    assert_eq!(
        held(&d),
        [("unknown_price:cs_test_Link01", CaseKind::UnknownPrice)]
    );
    assert!(keys(&d).contains(&"support_alert:unknown_price:cs_test_Link01:support"));
}

#[test]
fn a_failed_and_a_paid_attempt_in_one_second_end_paid_whatever_the_ids() {
    let world = World::standard();
    let story = Story::new(44, "dana@acme.test", Some("ws_acme01"));
    for (failed_id, paid_id) in [("evt_a", "evt_b"), ("evt_b", "evt_a")] {
        let mut events = story.purchase();
        let mut failed = story.invoice("x", 30 * DAY, "renewal", false, "subscription_cycle");
        let mut paid = story.invoice("y", 30 * DAY, "renewal", true, "subscription_cycle");
        failed.id = crate::EventId::parse(failed_id).expect("id");
        paid.id = crate::EventId::parse(paid_id).expect("id");
        events.extend([failed, paid]);
        let d = world.derive(&events);
        assert_eq!(
            status(&d, "ws_acme01"),
            Some(SubscriptionStatus::Active),
            "failed={failed_id}"
        );
    }
}

#[test]
fn a_binding_found_by_rule_three_is_remembered() {
    let world = World::standard();
    let story = Story::new(45, "olga@other.test", None);
    let d = world.derive(&story.purchase());
    assert!(
        d.remember
            .contains(&("purchase", "sub_Story0045".to_owned(), ws_id("ws_other")))
    );
    assert!(
        d.remember
            .contains(&("customer", "cus_Story0045".to_owned(), ws_id("ws_other")))
    );
    // Remembered, it survives the purchaser administering a second workspace later.
    let mut later = world.clone();
    later
        .purchase_bindings
        .insert("sub_Story0045".into(), ws_id("ws_other"));
    later
        .directory
        .insert(workspace("ws_third", &[("olga@other.test", Role::Admin)]));
    let d = later.derive(&story.purchase());
    assert_eq!(plan(&d, "ws_other"), Some("pro"));
    assert!(held(&d).is_empty());
    assert!(
        keys(&d).contains(&"onboarding:sub_Story0045:olga@other.test"),
        "the same message key as before"
    );
}

#[test]
fn dismissing_one_case_does_not_settle_the_purchase_for_good() {
    let mut world = World::standard();
    let mut story = Story::new(46, "dana@acme.test", Some("ws_acme01"));
    story.price = "price_AdmitTeam99".into();
    world
        .settlements
        .insert("unknown_price:sub_Story0046".into(), Settlement::Dismissed);
    let d = world.derive(&story.purchase());
    assert!(
        held(&d).is_empty() && d.effects.is_empty(),
        "dismissed: not raised again"
    );
    // The price is added to the catalog; the next derivation provisions it.
    world.catalog = Catalog::new([
        crate::catalog::tests::plan("free", &[], &[], 3, true),
        crate::catalog::tests::plan("pro", &[PRO], &["sso"], 25, false),
        crate::catalog::tests::plan("team", &["price_AdmitTeam99"], &["sso"], 10, false),
    ])
    .expect("catalog");
    assert_eq!(
        plan(&world.derive(&story.purchase()), "ws_acme01"),
        Some("team")
    );
}
