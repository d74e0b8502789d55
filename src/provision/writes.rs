//! From a scope snapshot to the writes that bring storage in line with the
//! derivation: billing states with their audit entries, cases opened and
//! auto-resolved, outbox rows added and withdrawn, event outcomes. No IO.

use std::collections::{BTreeMap, BTreeSet};

use admit_core::provisioning::{
    Case, CaseState, Derivation, Effect, Facts, OutcomeStatus, Recipient, Scenario,
    UnmatchedPolicy, derive,
};
use admit_core::{BillingEvent, BillingState, Catalog, Email, EventId, Timestamp};
use admit_store::{
    AuditEntry, CaseWrite, EventStatus, EventStatusWrite, OutboxWrite, ScopeSnapshot, ScopeWrite,
    StoredCase, WorkspaceCreation,
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

fn case_changes(
    derivation: &Derivation,
    stored: &BTreeMap<String, StoredCase>,
    actor: &str,
    now: Timestamp,
    write: &mut ScopeWrite,
) {
    for case in derivation.cases.values() {
        let existing = stored.get(&case.key);
        let workspace = case.workspace.as_ref();
        match (case.state, existing) {
            (CaseState::Held, None) => {
                write.cases.push(case_write(case, "held", None));
                let mut entry = audit(actor, "case.opened", now, workspace);
                entry.subject = Some(format!("case:{}", case_id(&case.key)));
                entry.after = Some(json!({ "kind": case.kind.as_str(), "state": "held" }));
                entry.cause = Some(case.key.clone());
                write.audit.push(entry);
            }
            (CaseState::Held, Some(s)) if s.state == "held" => {
                let update = case_write(case, "held", None);
                if update.event_ids != s.event_ids || update.details != s.details {
                    write.cases.push(update);
                }
            }
            (CaseState::Held, Some(s)) if s.resolution.as_deref() == Some("auto") => {
                write.cases.push(case_write(case, "held", None));
                let mut entry = audit(actor, "case.reopened", now, workspace);
                entry.subject = Some(format!("case:{}", s.id));
                entry.cause = Some(case.key.clone());
                write.audit.push(entry);
            }
            // Resolved by an operator: their word stands.
            (CaseState::Held, Some(_)) => {}
            (CaseState::AutoResolved, None) => {
                write.cases.push(case_write(case, "resolved", Some("auto")));
                let mut entry = audit(actor, "case.opened", now, workspace);
                entry.subject = Some(format!("case:{}", case_id(&case.key)));
                entry.after = Some(
                    json!({ "kind": case.kind.as_str(), "state": "resolved", "resolution": "auto" }),
                );
                entry.cause = Some(case.key.clone());
                write.audit.push(entry);
            }
            // Held before, informational now (a plan change back to a
            // catalog price with an unknown add-on): settled by itself.
            (CaseState::AutoResolved, Some(s)) if s.state == "held" => {
                write.cases.push(case_write(case, "resolved", Some("auto")));
                let mut entry = audit(actor, "case.resolved", now, workspace);
                entry.subject = Some(format!("case:{}", s.id));
                entry.before = Some(json!({ "state": "held" }));
                entry.after = Some(json!({ "state": "resolved", "resolution": "auto" }));
                entry.cause = Some("a later event settled it".into());
                write.audit.push(entry);
            }
            (CaseState::AutoResolved, Some(_)) => {}
        }
    }
    for stored_case in stored.values() {
        // Only cases the derivation decides can be settled by it (not, say,
        // reconciliation's `duplicate_customer`).
        let derived_kind = admit_core::provisioning::CaseKind::parse(&stored_case.kind).is_some();
        if derived_kind
            && stored_case.state == "held"
            && !derivation.cases.contains_key(&stored_case.key)
        {
            let mut resolved = CaseWrite {
                id: stored_case.id.clone(),
                key: stored_case.key.clone(),
                kind: stored_case.kind.clone(),
                scenario: stored_case.scenario.clone(),
                workspace_id: stored_case.workspace_id.clone(),
                purchaser_email: stored_case.purchaser_email.clone(),
                customer_id: stored_case.customer_id.clone(),
                subscription_id: stored_case.subscription_id.clone(),
                checkout_session_id: stored_case.checkout_session_id.clone(),
                event_ids: stored_case.event_ids.clone(),
                details: stored_case.details.clone(),
                state: "resolved".into(),
                resolution: Some("auto".into()),
            };
            resolved.details = stored_case.details.clone();
            write.cases.push(resolved);
            let workspace = stored_case
                .workspace_id
                .clone()
                .and_then(|w| admit_core::WorkspaceId::parse(w).ok());
            let mut entry = audit(actor, "case.resolved", now, workspace.as_ref());
            entry.subject = Some(format!("case:{}", stored_case.id));
            entry.before = Some(json!({ "state": "held" }));
            entry.after = Some(json!({ "state": "resolved", "resolution": "auto" }));
            entry.cause = Some("a later event settled it".into());
            write.audit.push(entry);
        }
    }
}

/// What a derivation asks of the shell besides the writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Followups {
    /// Subscriptions whose same-second snapshots only Stripe can order,
    /// with the latest second any of their events names.
    pub ties: BTreeMap<admit_core::SubscriptionId, Option<Timestamp>>,
}

/// Derives the scope and returns what to write. `Err` only when the snapshot
/// itself is unusable.
pub fn plan_writes(
    snapshot: &ScopeSnapshot,
    policy: &Policy<'_>,
    now: Timestamp,
) -> Result<ScopeWrite, String> {
    plan_writes_with_followups(snapshot, policy, now).map(|(write, _)| write)
}

/// [`plan_writes`], also returning what the shell should do next.
pub fn plan_writes_with_followups(
    snapshot: &ScopeSnapshot,
    policy: &Policy<'_>,
    now: Timestamp,
) -> Result<(ScopeWrite, Followups), String> {
    let mut events: Vec<BillingEvent> = Vec::new();
    for stored in &snapshot.events {
        // Events of the other Stripe mode never provision; malformed or
        // unhandled ones were settled when claimed. None take part.
        if !policy.mode.accepts(stored.livemode) {
            continue;
        }
        if let Ok(Some(event)) = admit_stripe::billing_event(&stored.payload) {
            events.push(event);
        }
    }
    let facts = Facts {
        directory: &snapshot.directory,
        catalog: policy.catalog,
        intents: &snapshot.intents,
        customer_bindings: &snapshot.customer_bindings,
        purchase_bindings: &snapshot.purchase_bindings,
        remembered_purchases: &snapshot.remembered_purchases,
        settlements: &snapshot.settlements,
        policy: policy.unmatched,
        grace_period_secs: policy.grace_period_secs,
    };
    let derivation = derive(facts, &events, &snapshot.workspaces);
    let followups = Followups {
        ties: derivation
            .ties
            .iter()
            .map(|sub| {
                let latest = events
                    .iter()
                    .filter(|e| e.subscription() == Some(sub))
                    .map(|e| e.created)
                    .max();
                (sub.clone(), latest)
            })
            .collect(),
    };
    let actor = format!("stripe:{}", snapshot.claimed);
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
        return Ok((write, followups));
    }

    for (workspace, state) in &derivation.billing {
        if !snapshot.workspaces.contains(workspace) {
            continue;
        }
        let before = snapshot.billing.get(workspace);
        let unchanged = before.map_or(*state == BillingState::default(), |b| b == state);
        if unchanged {
            continue;
        }
        write.billing.push((workspace.clone(), state.clone()));
        let scenario = derivation.billing_scenarios.get(workspace).copied();
        let mut entry = audit(&actor, "billing.changed", now, Some(workspace));
        entry.subject = Some("billing".into());
        entry.before = before.map(billing_json);
        let mut after = billing_json(state);
        after["scenario"] = json!(scenario.map(Scenario::as_str));
        entry.after = Some(after);
        entry.cause = state.updated_by_event.as_ref().map(|e| match scenario {
            Some(s) => format!("stripe event {e} ({s}: {})", s.what()),
            None => format!("stripe event {e}"),
        });
        write.audit.push(entry);
    }

    let mut unlink = BTreeSet::new();
    for event in &events {
        if let Some(s) = event.subscription() {
            unlink.insert(("subscription".to_owned(), s.to_string()));
        }
        if let Some(c) = event.customer() {
            unlink.insert(("customer".to_owned(), c.to_string()));
        }
        if let Some(c) = event.checkout() {
            unlink.insert(("session".to_owned(), c.session_id.clone()));
        }
    }
    write.unlink = unlink.into_iter().collect();
    write.links = derivation
        .links
        .iter()
        .map(|(kind, id, w)| ((*kind).to_owned(), id.clone(), w.clone()))
        .collect();

    case_changes(&derivation, &snapshot.cases, &actor, now, &mut write);

    for (kind, id, workspace) in &derivation.remember {
        let known = match *kind {
            "customer" => admit_core::CustomerId::parse(id.clone())
                .ok()
                .is_some_and(|c| snapshot.customer_bindings.contains_key(&c)),
            _ => snapshot.purchase_bindings.contains_key(id),
        };
        if known {
            continue;
        }
        write.bindings.push((
            (*kind).to_owned(),
            id.clone(),
            workspace.clone(),
            "purchaser_administers".to_owned(),
        ));
        let mut entry = audit(&actor, "binding.created", now, Some(workspace));
        entry.subject = Some(format!("{kind}:{id}"));
        entry.after =
            Some(json!({ "workspace_id": workspace.as_str(), "rule": "purchaser_administers" }));
        write.audit.push(entry);
    }

    for effect in derivation.effects.values() {
        let existing = snapshot.outbox.get(&effect.key).map(String::as_str);
        if matches!(existing, None | Some("superseded" | "pending")) {
            write
                .outbox
                .push(outbox_write(effect, snapshot, policy, now));
        }
    }
    write.supersede = snapshot
        .outbox
        .iter()
        .filter(|(key, state)| {
            state.as_str() == "pending" && !derivation.effects.contains_key(*key)
        })
        .map(|(key, _)| key.clone())
        .collect();

    if !derivation.outcomes.contains_key(&snapshot.claimed) {
        // Every billing event gets an outcome; if one ever does not, it is held
        // visibly instead of being leased and retried forever.
        write.event_statuses.push(EventStatusWrite {
            id: snapshot.claimed.clone(),
            status: EventStatus::Held,
            outcome: "unaccounted".to_owned(),
            scenario: None,
        });
    }
    let late = arrived_late(snapshot, &events);
    for (id, outcome) in &derivation.outcomes {
        let status = match outcome.status {
            OutcomeStatus::Processed => EventStatus::Processed,
            OutcomeStatus::Held => EventStatus::Held,
        };
        let current = snapshot.events.iter().find(|e| &e.id == id);
        // An event that came after a later one of its purchase was decided
        // by convergence (S7), and says so for good.
        let scenario = if (id == &snapshot.claimed && late)
            || current.is_some_and(|e| e.scenario.as_deref() == Some(Scenario::S7.as_str()))
        {
            Some(Scenario::S7)
        } else {
            outcome.scenario
        };
        let same = current.is_some_and(|e| {
            e.status == status
                && e.outcome.as_deref() == Some(outcome.reason)
                && e.scenario.as_deref() == scenario.map(Scenario::as_str)
        });
        if !same || id == &snapshot.claimed {
            write.event_statuses.push(EventStatusWrite {
                id: id.clone(),
                status,
                outcome: outcome.reason.to_owned(),
                scenario: scenario.map(|s| s.as_str().to_owned()),
            });
        }
    }
    Ok((write, followups))
}

/// Whether the claimed event arrived after an event of its own purchase
/// that Stripe created later had already been processed.
fn arrived_late(snapshot: &ScopeSnapshot, events: &[BillingEvent]) -> bool {
    let Some(claimed) = events.iter().find(|e| e.id == snapshot.claimed) else {
        return false;
    };
    let Some(key) = admit_core::provisioning::purchase_key(claimed) else {
        return false;
    };
    events.iter().any(|other| {
        other.created > claimed.created
            && admit_core::provisioning::purchase_key(other).as_ref() == Some(&key)
            && snapshot.events.iter().any(|stored| {
                stored.id == other.id
                    && matches!(stored.status, EventStatus::Processed | EventStatus::Held)
            })
    })
}
