//! The rows that record a derivation. The core decides what changes
//! (`admit_core::provisioning::changes`: case and outbox transitions, event
//! outcomes, kept bindings); this renders those typed changes as the store's
//! rows, JSON payloads and audit entries. No IO.

use std::collections::{BTreeMap, BTreeSet};

use admit_core::provisioning::{
    Case, CaseChange, CaseKind, CaseTransition, Changes, Checkpoint, CoveredEvent, Effect,
    EventState, Facts, Folded, OutboxState, Recipient, Scenario, ScopeEvents, Stored,
    StoredCase as StoredCaseRow, StoredCaseState, StoredEvent as StoredEventRow, UnmatchedPolicy,
    derive_scope,
};
use admit_core::{BillingEvent, BillingState, Catalog, Email, EventId, SubscriptionId, Timestamp};
use admit_store::{
    AuditEntry, CaseWrite, CheckpointWrite, EventStatus, EventStatusWrite, OutboxWrite,
    ScopeSnapshot, ScopeWrite, StoreError, StoredCase, WorkspaceCreation,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Settings of the derivation that come from configuration.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    pub catalog: &'a Catalog,
    pub unmatched: UnmatchedPolicy,
    pub grace_period_secs: i64,
    pub outbox_settle_secs: i64,
    pub support_email: Option<&'a Email>,
    pub mode: crate::config::stripe::StripeMode,
}

/// Case ids are derived from the case key, so every instance names a case the same way.
pub fn case_id(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    format!("case_{}", &hex::encode(digest)[..20])
}

fn billing_json(state: &BillingState) -> Value {
    json!({
        "subscription_status": state.subscription_status.map(|s| s.as_str()),
        "subscription_plan": state.subscription_plan.as_ref().map(|p| p.as_str()),
        "stripe_customer_id": state.stripe_customer_id.as_ref().map(|c| c.as_str()),
        "stripe_subscription_id": state.stripe_subscription_id.as_ref().map(|s| s.as_str()),
        "current_period_end": state.current_period_end.map(Timestamp::unix),
        "cancel_at_period_end": state.cancel_at_period_end,
        "cancel_at": state.cancel_at.map(Timestamp::unix),
        "purchaser_email": state.purchaser_email.as_ref().map(Email::as_str),
        "updated_by_event": state.updated_by_event.as_ref().map(EventId::as_str),
    })
}

fn details_json(case: &Case) -> Value {
    let d = &case.details;
    json!({
        "candidates": d.candidates.iter().map(|w| w.as_str()).collect::<Vec<_>>(),
        "requested_workspace": d.requested_workspace,
        "bound_workspace": d.bound_workspace.as_ref().map(|w| w.as_str()),
        "unknown_prices": d.unknown_prices,
        "canonical_subscription": d.canonical,
        "action": d.action.map(|a| a.as_str()),
        "client_reference_ids": d.client_reference_ids,
        "payment": d.payment.as_ref().map(payment_json),
    })
}

fn payment_json(p: &admit_core::provisioning::PaymentDetails) -> Value {
    json!({
        "dispute": p.dispute,
        "charge": p.charge,
        "payment_intent": p.payment_intent,
        "invoice": p.invoice,
        "status": p.status,
        "reason": p.reason,
        "amount": p.amount,
        "amount_refunded": p.amount_refunded,
        "currency": p.currency,
    })
}

fn case_write(case: &Case, state: &str, resolution: Option<&str>) -> CaseWrite {
    CaseWrite {
        id: case_id(&case.key),
        key: case.key.clone(),
        kind: case.kind.as_str().to_owned(),
        scenario: Some(case.scenario.as_str().to_owned()),
        workspace_id: case.workspace.as_ref().map(ToString::to_string),
        purchaser_email: case.purchaser_email.as_ref().map(ToString::to_string),
        customer_id: case.customer.as_ref().map(ToString::to_string),
        subscription_id: case.subscription.as_ref().map(ToString::to_string),
        checkout_session_id: case.checkout_session.clone(),
        event_ids: case.events.iter().map(ToString::to_string).collect(),
        details: details_json(case),
        state: state.to_owned(),
        resolution: resolution.map(str::to_owned),
    }
}

fn outbox_write(
    effect: &Effect,
    snapshot: &ScopeSnapshot,
    policy: &Policy<'_>,
    now: Timestamp,
) -> OutboxWrite {
    let recipient = match &effect.recipient {
        Recipient::Email(email) => email.to_string(),
        // Recorded even without an address, so an operator sees the alert was due.
        Recipient::Support => policy
            .support_email
            .map_or_else(|| "support".to_owned(), ToString::to_string),
    };
    let workspace = effect
        .workspace
        .as_ref()
        .and_then(|w| snapshot.directory.get(w));
    let plan = effect.plan.as_ref().and_then(|p| policy.catalog.get(p));
    OutboxWrite {
        idempotency_key: effect.key.clone(),
        kind: effect.kind.as_str().to_owned(),
        recipient,
        workspace_id: effect.workspace.as_ref().map(ToString::to_string),
        about: effect.purchase.clone(),
        case_key: effect.case_key.clone(),
        payload: json!({
            "kind": effect.kind.as_str(),
            "workspace_id": effect.workspace.as_ref().map(|w| w.as_str()),
            "workspace_name": workspace.map(|w| w.name.clone()),
            "plan": plan.map(|p| p.key.as_str()),
            "plan_name": plan.map(|p| p.name.clone()),
            "features": plan.map(|p| p.entitlements.features.iter().cloned().collect::<Vec<_>>()),
            "limits": plan.map(|p| p.entitlements.limits.clone()),
            "purchase": effect.purchase,
            "case_key": effect.case_key,
            "case_id": effect.case_key.as_deref().map(case_id),
            "administrators": effect.administrators.iter().map(Email::as_str).collect::<Vec<_>>(),
            "sign_in_email": effect.sign_in_email.as_ref().map(Email::as_str),
            "purchaser_email": effect.purchaser_email.as_ref().map(Email::as_str),
            "grace_ends": effect.grace_ends.map(Timestamp::unix),
            "access_ends": effect.access_ends.map(Timestamp::unix),
            "checkout": effect.about_checkout,
            "case_variant": effect.variant,
            "case_actions": effect
                .case_key
                .as_deref()
                .and_then(|key| key.split_once(':'))
                .and_then(|(kind, _)| admit_core::provisioning::CaseKind::parse(kind))
                .map(|kind| kind.actions()),
            "payment": effect.payment.as_ref().map(payment_json),
        }),
        not_before: now.plus_seconds(policy.outbox_settle_secs),
    }
}

fn audit(
    actor: &str,
    action: &str,
    now: Timestamp,
    workspace: Option<&admit_core::WorkspaceId>,
) -> AuditEntry {
    AuditEntry {
        at: now,
        actor: actor.to_owned(),
        action: action.to_owned(),
        workspace_id: workspace.cloned(),
        subject: None,
        before: None,
        after: None,
        cause: None,
    }
}

/// What a derivation asks of the shell besides the writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Followups {
    /// Subscriptions whose same-second snapshots only Stripe can order,
    /// with the latest second any of their events names.
    pub ties: BTreeMap<admit_core::SubscriptionId, Option<Timestamp>>,
}

/// The billing event of a stored row: as ingress stored it, or read from
/// the body for a row stored before ingress kept it. `None` for an event
/// admit does not act on or cannot read (settled when it was claimed).
pub fn billing_event(stored: &admit_store::ScopeEvent) -> Option<BillingEvent> {
    match &stored.billing {
        // A version of admit that changes the stored shape clears the column
        // in its migration, so the body is read again.
        Some(json) => serde_json::from_str(json)
            .inspect_err(|error| tracing::error!(event_id = %stored.id, %error, "a stored billing event cannot be read"))
            .ok(),
        None => admit_stripe::billing_event(&stored.payload).ok().flatten(),
    }
}

/// What a derivation of a scope came to.
#[derive(Debug)]
pub enum Plan {
    /// The rows to write, and what the shell should do next.
    Write(Box<ScopeWrite>, Followups),
    /// It needs events a checkpoint covers (one created inside it arrived
    /// late, or the checkpoint cannot be read): the scope is to be read
    /// again in full.
    ReadInFull,
}

/// Derives the scope and returns what to write, and what the shell should do
/// next. `Err` only when the snapshot itself is unusable.
pub fn plan_writes(
    snapshot: &ScopeSnapshot,
    policy: &Policy<'_>,
    now: Timestamp,
) -> Result<Plan, StoreError> {
    let mut events: Vec<BillingEvent> = Vec::new();
    let mut covered: BTreeMap<&str, Vec<CoveredEvent>> = BTreeMap::new();
    // Subscriptions with an event that is not in `events` as the store
    // keeps it (another mode, read from its body, unreadable): a checkpoint
    // counts what the store counts, so none is taken over those.
    let mut unfit: BTreeSet<&str> = BTreeSet::new();
    for stored in &snapshot.events {
        if let (true, Some(subscription)) = (stored.covered, &stored.subscription) {
            covered.entry(subscription).or_default().push(CoveredEvent {
                id: stored.id.clone(),
                created: stored.created,
                customer: stored.customer.clone(),
                session: stored.session.clone(),
            });
            continue;
        }
        // Events of the other Stripe mode never provision; malformed or
        // unhandled ones were settled when claimed. None take part.
        let accepted = policy.mode.accepts(stored.livemode);
        let event = if accepted {
            billing_event(stored)
        } else {
            None
        };
        if (event.is_none() || stored.billing.is_none())
            && let Some(subscription) = &stored.subscription
        {
            unfit.insert(subscription);
        }
        match event {
            Some(event) => events.push(event),
            // The claimed event's own stored form is unreadable: never
            // dropped silently, it fails visibly (plan_writes' error).
            None if accepted && stored.id == snapshot.claimed && stored.billing.is_some() => {
                return Err(StoreError::Corrupt(format!(
                    "the stored billing event of {} cannot be read",
                    stored.id
                )));
            }
            None => {}
        }
    }
    let Some(folded) = checkpoints(snapshot, covered) else {
        return Ok(Plan::ReadInFull);
    };
    let scope = ScopeEvents {
        events: &events,
        folded: &folded,
    };
    let facts = Facts {
        directory: &snapshot.directory,
        catalog: policy.catalog,
        intents: &snapshot.intents,
        customer_bindings: &snapshot.customer_bindings,
        purchase_bindings: &snapshot.purchase_bindings,
        remembered_purchases: &snapshot.remembered_purchases,
        created_for_purchases: &snapshot.created_for_purchases,
        settlements: &snapshot.settlements,
        policy: policy.unmatched,
        grace_period_secs: policy.grace_period_secs,
    };
    let Ok(derivation) = derive_scope(facts, scope, &snapshot.workspaces) else {
        return Ok(Plan::ReadInFull);
    };
    let followups = Followups {
        ties: derivation
            .ties
            .iter()
            .map(|sub| {
                let covered = folded.get(sub).map(|f| f.covered.as_slice());
                let latest = events
                    .iter()
                    .filter(|e| e.subscription() == Some(sub))
                    .map(|e| e.created)
                    .chain(covered.unwrap_or_default().iter().map(|e| e.created))
                    .max();
                (sub.clone(), latest)
            })
            .collect(),
    };
    let actor = admit_core::Actor::Stripe(snapshot.claimed.clone()).to_string();
    let mut write = ScopeWrite::default();

    if !derivation.workspaces_to_create.is_empty() {
        write.create_workspaces = derivation
            .workspaces_to_create
            .iter()
            .map(|r| WorkspaceCreation {
                id: r.id.clone(),
                name: r.name.clone(),
                owner: r.owner.clone(),
                purchase: r.purchase.clone(),
            })
            .collect();
        return Ok(Plan::Write(Box::new(write), followups));
    }

    let stored_events: BTreeMap<EventId, StoredEventRow> = snapshot
        .events
        .iter()
        .map(|e| {
            (
                e.id.clone(),
                StoredEventRow {
                    state: event_state(e.status),
                    outcome: e.outcome.clone(),
                    scenario: e.scenario.as_deref().and_then(Scenario::parse),
                    received_at: e.received_at,
                },
            )
        })
        .collect();
    let stored_cases: BTreeMap<String, StoredCaseRow> = snapshot
        .cases
        .iter()
        .map(|(key, case)| {
            let state = match (case.state.as_str(), case.resolution.as_deref()) {
                ("held", _) => StoredCaseState::Held,
                (_, Some("auto")) => StoredCaseState::AutoResolved,
                _ => StoredCaseState::ResolvedByOperator,
            };
            let row = StoredCaseRow {
                kind: CaseKind::parse(&case.kind),
                state,
            };
            (key.clone(), row)
        })
        .collect();
    let stored_outbox: BTreeMap<String, OutboxState> = snapshot
        .outbox
        .iter()
        .filter_map(|(key, state)| Some((key.clone(), outbox_state(state)?)))
        .collect();
    let changes = admit_core::provisioning::changes_in(
        &derivation,
        scope,
        Stored {
            claimed: &snapshot.claimed,
            events: &stored_events,
            workspaces: &snapshot.workspaces,
            billing: &snapshot.billing,
            cases: &stored_cases,
            outbox: &stored_outbox,
            customer_bindings: &snapshot.customer_bindings,
            purchase_bindings: &snapshot.purchase_bindings,
        },
    );
    persist(&changes, snapshot, policy, &actor, now, &mut write);
    let Ok(taken) = scope.checkpoints() else {
        return Ok(Plan::ReadInFull);
    };
    for (subscription, checkpoint) in taken {
        if unfit.contains(subscription.as_str()) {
            continue;
        }
        let fold = serde_json::to_string(&checkpoint)
            .map_err(|e| StoreError::Corrupt(format!("a checkpoint cannot be written: {e}")))?;
        write.checkpoints.push(CheckpointWrite {
            subscription_id: subscription.to_string(),
            through: checkpoint.through,
            events: checkpoint.events,
            version: checkpoint.version(),
            fold,
        });
    }
    Ok(Plan::Write(Box::new(write), followups))
}

/// The snapshot's checkpoints with the events each covers; `None` when one
/// cannot be read or an event is covered by none of them (the scope is then
/// read in full).
fn checkpoints(
    snapshot: &ScopeSnapshot,
    mut covered: BTreeMap<&str, Vec<CoveredEvent>>,
) -> Option<BTreeMap<SubscriptionId, Folded>> {
    let mut folded = BTreeMap::new();
    for (subscription, json) in &snapshot.checkpoints {
        let checkpoint: Checkpoint = serde_json::from_str(json)
            .inspect_err(|error| {
                tracing::warn!(subscription, %error, "a checkpoint cannot be read; reading the events in full");
            })
            .ok()
            .filter(Checkpoint::is_current)?;
        let id = SubscriptionId::parse(subscription.clone()).ok()?;
        let events = covered.remove(subscription.as_str()).unwrap_or_default();
        folded.insert(
            id,
            Folded {
                checkpoint,
                covered: events,
            },
        );
    }
    covered.is_empty().then_some(folded)
}

/// An inbox status as the core names it.
fn event_state(status: EventStatus) -> EventState {
    match status {
        EventStatus::Received => EventState::Received,
        EventStatus::Processed => EventState::Processed,
        EventStatus::Held => EventState::Held,
        EventStatus::Ignored => EventState::Ignored,
        EventStatus::Failed => EventState::Failed,
    }
}

fn outbox_state(raw: &str) -> Option<OutboxState> {
    Some(match raw {
        "pending" => OutboxState::Pending,
        "sent" => OutboxState::Sent,
        "dead" => OutboxState::Dead,
        "superseded" => OutboxState::Superseded,
        _ => return None,
    })
}

/// The rows and audit entries that record `changes`.
fn persist(
    changes: &Changes,
    snapshot: &ScopeSnapshot,
    policy: &Policy<'_>,
    actor: &str,
    now: Timestamp,
    write: &mut ScopeWrite,
) {
    for change in &changes.billing {
        let workspace = &change.workspace;
        write
            .billing
            .push((workspace.clone(), change.after.clone()));
        let mut entry = audit(actor, "billing.changed", now, Some(workspace));
        entry.subject = Some("billing".into());
        entry.before = change.before.as_ref().map(billing_json);
        let mut after = billing_json(&change.after);
        after["scenario"] = json!(change.scenario.map(Scenario::as_str));
        entry.after = Some(after);
        entry.cause = change
            .after
            .updated_by_event
            .as_ref()
            .map(|e| match change.scenario {
                Some(s) => format!("stripe event {e} ({s}: {})", s.what()),
                None => format!("stripe event {e}"),
            });
        write.audit.push(entry);
    }
    for change in &changes.cases {
        persist_case(change, snapshot, actor, now, write);
    }
    write.unlink = changes
        .unlink
        .iter()
        .map(|(kind, id)| (kind.as_str().to_owned(), id.clone()))
        .collect();
    write.links = changes
        .links
        .iter()
        .map(|(kind, id, w)| (kind.as_str().to_owned(), id.clone(), w.clone()))
        .collect();
    for (kind, id, workspace) in &changes.keep_bindings {
        write.bindings.push((
            kind.as_str().to_owned(),
            id.clone(),
            workspace.clone(),
            "purchaser_administers".to_owned(),
        ));
        let mut entry = audit(actor, "binding.created", now, Some(workspace));
        entry.subject = Some(format!("{}:{id}", kind.as_str()));
        entry.after =
            Some(json!({ "workspace_id": workspace.as_str(), "rule": "purchaser_administers" }));
        write.audit.push(entry);
    }
    // Adding, reviving and refreshing are one upsert; the store's conflict
    // rule keeps a leased or sent row as it is.
    for change in &changes.outbox {
        write
            .outbox
            .push(outbox_write(&change.effect, snapshot, policy, now));
    }
    write.supersede.clone_from(&changes.withdraw);
    for outcome in &changes.outcomes {
        write.event_statuses.push(EventStatusWrite {
            id: outcome.id.clone(),
            status: match outcome.state {
                EventState::Received => EventStatus::Received,
                EventState::Processed => EventStatus::Processed,
                EventState::Held => EventStatus::Held,
                EventState::Ignored => EventStatus::Ignored,
                EventState::Failed => EventStatus::Failed,
            },
            outcome: outcome.reason.clone(),
            scenario: outcome.scenario.map(|s| s.as_str().to_owned()),
        });
    }
}

fn persist_case(
    change: &CaseChange,
    snapshot: &ScopeSnapshot,
    actor: &str,
    now: Timestamp,
    write: &mut ScopeWrite,
) {
    let stored = snapshot.cases.get(&change.key);
    let workspace = change
        .case
        .as_ref()
        .and_then(|c| c.workspace.clone())
        .or_else(|| {
            stored
                .and_then(|s| s.workspace_id.clone())
                .and_then(|w| admit_core::WorkspaceId::parse(w).ok())
        });
    let id = stored.map_or_else(|| case_id(&change.key), |s| s.id.clone());
    let mut entry = audit(actor, "case.opened", now, workspace.as_ref());
    entry.subject = Some(format!("case:{id}"));
    entry.cause = Some(change.key.clone());
    match (change.transition, &change.case) {
        (CaseTransition::Open, Some(case)) => {
            write.cases.push(case_write(case, "held", None));
            entry.after = Some(json!({ "kind": case.kind.as_str(), "state": "held" }));
        }
        (CaseTransition::OpenResolved, Some(case)) => {
            write.cases.push(case_write(case, "resolved", Some("auto")));
            entry.after = Some(
                json!({ "kind": case.kind.as_str(), "state": "resolved", "resolution": "auto" }),
            );
        }
        (CaseTransition::Update, Some(case)) => {
            let update = case_write(case, "held", None);
            // Nothing to record when the stored row already says it.
            if stored.is_none_or(|s| {
                update.event_ids != s.event_ids
                    || update.details != s.details
                    || update.scenario != s.scenario
            }) {
                write.cases.push(update);
            }
            return;
        }
        (CaseTransition::Reopen, Some(case)) => {
            write.cases.push(case_write(case, "held", None));
            entry.action = "case.reopened".into();
        }
        (CaseTransition::AutoResolve, case) => {
            let resolved = match (case, stored) {
                (Some(case), _) => case_write(case, "resolved", Some("auto")),
                (None, Some(s)) => stored_case_resolved(s),
                (None, None) => return,
            };
            write.cases.push(resolved);
            entry.action = "case.resolved".into();
            entry.before = Some(json!({ "state": "held" }));
            entry.after = Some(json!({ "state": "resolved", "resolution": "auto" }));
            entry.cause = Some("a later event settled it".into());
        }
        (_, None) => return,
    }
    write.audit.push(entry);
}

/// The stored row of a case no derivation names any more, resolved `auto`.
fn stored_case_resolved(stored: &StoredCase) -> CaseWrite {
    CaseWrite {
        id: stored.id.clone(),
        key: stored.key.clone(),
        kind: stored.kind.clone(),
        scenario: stored.scenario.clone(),
        workspace_id: stored.workspace_id.clone(),
        purchaser_email: stored.purchaser_email.clone(),
        customer_id: stored.customer_id.clone(),
        subscription_id: stored.subscription_id.clone(),
        checkout_session_id: stored.checkout_session_id.clone(),
        event_ids: stored.event_ids.clone(),
        details: stored.details.clone(),
        state: "resolved".into(),
        resolution: Some("auto".into()),
    }
}
