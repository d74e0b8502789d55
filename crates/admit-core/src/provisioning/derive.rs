//! The decision table (DESIGN.md §2.2) over the whole set of events.

use std::collections::{BTreeMap, BTreeSet};

use super::binding::{Binding, Conflict, bind_all};
use super::cases::{Case, CaseDetails, CaseKind, CaseState, DuplicateAction, PaymentDetails};
use super::checkpoint::{NeedsHistory, ScopeEvents};
use super::effects::{Effect, MessageKind, Recipient};
use super::purchase::{Purchase, PurchaseKey, Standing, purchase_key};
use super::scenario::Scenario;
use super::{Facts, Settlement, UnmatchedPolicy};
use crate::{
    BillingEvent, BillingState, ChargeRefund, CustomerId, Dispute, Email, EventId, EventKind, Plan,
    PlanKey, SubscriptionId, SubscriptionStatus, Timestamp, Workspace, WorkspaceId,
    catalog::Catalog,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeStatus {
    Processed,
    Held,
}

/// What became of one event, with a machine-readable reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventOutcome {
    pub status: OutcomeStatus,
    pub reason: &'static str,
    /// The row of the decision table that decided it; `None` for events
    /// that decide nothing (a customer update, a setup session).
    pub scenario: Option<Scenario>,
}

/// A workspace to create for an unmatched purchase (policy `create_workspace`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceRequest {
    pub id: WorkspaceId,
    pub name: String,
    pub owner: Email,
    /// The purchase (subscription or session id) to bind to it.
    pub purchase: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Derivation {
    /// Billing state of every workspace the scope touches.
    pub billing: BTreeMap<WorkspaceId, BillingState>,
    /// Stripe ids bound to workspaces: (`subscription`|`customer`|`session`, id, workspace).
    pub links: BTreeSet<(&'static str, String, WorkspaceId)>,
    /// Cases warranted now, by key.
    pub cases: BTreeMap<String, Case>,
    /// Messages warranted now, by idempotency key.
    pub effects: BTreeMap<String, Effect>,
    pub outcomes: BTreeMap<EventId, EventOutcome>,
    pub workspaces_to_create: Vec<WorkspaceRequest>,
    /// Bindings found by rule 3 (the purchaser administers exactly one
    /// workspace), to be kept as facts: `(customer|purchase, id, workspace)`.
    /// Otherwise a later change of roles would unbind a paying purchase.
    pub remember: BTreeSet<(&'static str, String, WorkspaceId)>,
    /// The scenario that decided each workspace's billing state.
    pub billing_scenarios: BTreeMap<WorkspaceId, Scenario>,
    /// Subscriptions whose latest same-second snapshots the causal chain
    /// could not order: a fetch from Stripe settles them (DESIGN.md §2.3).
    pub ties: BTreeSet<SubscriptionId>,
}

enum PlanResolution<'c> {
    /// The plan the prices buy; `unknown` are prices beside it that the
    /// catalog does not know (an add-on, say).
    Known {
        plan: &'c Plan,
        unknown: Vec<String>,
    },
    /// A live purchase changed to prices the catalog does not know: the plan
    /// it had stays in force while support looks (S16).
    Kept {
        plan: &'c Plan,
        unknown: Vec<String>,
    },
    Unknown(Vec<String>),
    NotYet,
}

fn not_in_catalog(prices: &[String], catalog: &Catalog) -> Vec<String> {
    prices
        .iter()
        .filter(|p| catalog.plan_for_price(p).is_none())
        .cloned()
        .collect()
}

fn resolve_plan<'c>(
    purchase: &Purchase,
    binding: &Binding,
    catalog: &'c Catalog,
) -> PlanResolution<'c> {
    let best = |prices: &[String]| catalog.best_plan(prices.iter().map(String::as_str));
    if !purchase.price_ids.is_empty() {
        if let Some(plan) = best(&purchase.price_ids) {
            return PlanResolution::Known {
                plan,
                unknown: not_in_catalog(&purchase.price_ids, catalog),
            };
        }
        let earlier = purchase
            .price_history
            .iter()
            .rev()
            .skip(1)
            .find_map(|prices| best(prices));
        return match earlier {
            Some(plan) => PlanResolution::Kept {
                plan,
                unknown: not_in_catalog(&purchase.price_ids, catalog),
            },
            None => PlanResolution::Unknown(purchase.price_ids.clone()),
        };
    }
    let named = match binding {
        Binding::Trusted {
            intent: Some(intent),
            ..
        } => Some(intent.plan.as_str()),
        _ => purchase.metadata_plan.as_deref(),
    };
    match named {
        Some(key) => match catalog.get_str(key).filter(|p| !p.free_tier) {
            Some(plan) => PlanResolution::Known {
                plan,
                unknown: Vec::new(),
            },
            None => PlanResolution::Unknown(vec![format!("plan:{key}")]),
        },
        None => PlanResolution::NotYet,
    }
}

/// What the catalog said about a provisionable purchase's prices beyond its plan.
enum PriceNote {
    None,
    /// Prices beside the plan that the catalog does not know: told, not held.
    AddOnUnknown(Vec<String>),
    /// The current prices are unknown; the earlier plan is kept and held.
    KeptUnknown(Vec<String>),
}

/// How well a purchase stands, for choosing which one holds a workspace's
/// plan: lower is better; `None` takes no part.
fn standing(purchase: &Purchase) -> Option<u8> {
    rank(purchase.standing())
}

fn rank(standing: Standing) -> Option<u8> {
    match standing.status.unwrap_or(SubscriptionStatus::Active) {
        SubscriptionStatus::Active | SubscriptionStatus::Trialing
            if standing.scheduled_end.is_none() =>
        {
            Some(0)
        }
        SubscriptionStatus::Active | SubscriptionStatus::Trialing => Some(1),
        SubscriptionStatus::PastDue => Some(2),
        SubscriptionStatus::Unpaid => Some(3),
        _ => None,
    }
}

/// Which of a workspace's purchases (sorted by start) holds its plan. In
/// start order, each purchase either duplicates the one reigning when it
/// began (that one was in good standing, or still being bought, then: S8)
/// or replaces it (it was lapsed, ending or over then: S15) — judged as of the newcomer's start, so
/// a replaced subscription that recovers later does not take the plan back.
/// Among the reigning one and its duplicates, the best standing now wins,
/// the earliest among equals; when none is live, the latest says how it ended.
fn choose_canonical(
    scope: ScopeEvents<'_>,
    candidates: &[Candidate<'_>],
) -> Result<Option<usize>, NeedsHistory> {
    let live: Vec<usize> = (0..candidates.len())
        .filter(|&i| standing(candidates[i].purchase).is_some())
        .collect();
    let mut contenders: Vec<usize> = Vec::new();
    for &i in &live {
        let newcomer = candidates[i].purchase;
        // Lapsed then: scheduled to end, past due, unpaid, or over. One still
        // being bought (incomplete a moment ago: two checkouts at once) is not.
        let mut all_lapsed = !contenders.is_empty();
        for &r in &contenders {
            let then = scope.standing_until(&candidates[r].purchase.key, newcomer.started)?;
            let lapsed = then.is_some_and(|then| match rank(then) {
                Some(0) => false,
                Some(_) => true,
                None => then.status.is_some_and(SubscriptionStatus::is_terminal),
            });
            if !lapsed {
                all_lapsed = false;
                break;
            }
        }
        if all_lapsed {
            contenders.clear();
        }
        contenders.push(i);
    }
    Ok(contenders
        .into_iter()
        .filter_map(|i| standing(candidates[i].purchase).map(|s| (s, i)))
        .min()
        .map(|(_, i)| i)
        .or(candidates.len().checked_sub(1)))
}

/// A provisionable purchase of one workspace.
struct Candidate<'p> {
    purchase: &'p Purchase,
    binding: Binding,
    plan: PlanKey,
    purchaser: Option<Email>,
    note: PriceNote,
}

struct Builder<'f> {
    facts: Facts<'f>,
    out: Derivation,
}

impl Builder<'_> {
    fn outcome(
        &mut self,
        purchase: &Purchase,
        status: OutcomeStatus,
        reason: &'static str,
        scenario: Option<Scenario>,
    ) {
        for id in &purchase.events {
            self.out.outcomes.insert(
                id.clone(),
                EventOutcome {
                    status,
                    reason,
                    scenario,
                },
            );
        }
    }

    fn effect(&mut self, effect: Effect) {
        self.out.effects.entry(effect.key.clone()).or_insert(effect);
    }

    /// A refund takes the purchase out for good, whatever case it was held
    /// by — except a plan change to an unknown price (S16): that purchase
    /// is still paying for a plan the catalog knows.
    fn refunded(&self, purchase: &Purchase) -> bool {
        let kept_plan = purchase.price_history.iter().any(|prices| {
            self.facts
                .catalog
                .best_plan(prices.iter().map(String::as_str))
                .is_some()
        });
        [
            CaseKind::MissingWorkspace,
            CaseKind::DuplicateSubscription,
            CaseKind::CustomerConflict,
            CaseKind::UnknownPrice,
        ]
        .iter()
        .filter(|kind| !(kept_plan && **kind == CaseKind::UnknownPrice))
        .any(|kind| {
            self.facts.settlements.get(&kind.key(purchase.key.as_str()))
                == Some(&Settlement::Refunded)
        })
    }

    fn link(&mut self, purchase: &Purchase, workspace: &WorkspaceId) {
        if let Some(sub) = &purchase.subscription {
            self.out
                .links
                .insert(("subscription", sub.to_string(), workspace.clone()));
        }
        if let Some(customer) = &purchase.customer {
            self.out
                .links
                .insert(("customer", customer.to_string(), workspace.clone()));
        }
        for session in &purchase.session_ids {
            self.out
                .links
                .insert(("session", session.clone(), workspace.clone()));
        }
    }

    /// Opens a held case with its support alert and, when the purchaser is
    /// known, the message telling them what happens next.
    fn hold(
        &mut self,
        kind: CaseKind,
        purchase: &Purchase,
        purchaser: Option<&Email>,
        workspace: Option<&WorkspaceId>,
        details: CaseDetails,
        purchaser_message: Option<MessageKind>,
    ) {
        let key = kind.key(purchase.key.as_str());
        let scenario = match (kind, details.action, purchaser_message) {
            (CaseKind::MissingWorkspace, _, _) => Scenario::S5,
            (CaseKind::DuplicateSubscription, Some(DuplicateAction::CancelLapsed), _) => {
                Scenario::S15
            }
            (CaseKind::DuplicateSubscription, _, _) => Scenario::S8,
            (CaseKind::CustomerConflict, _, _) => Scenario::S9,
            (CaseKind::UnknownPrice, _, None) => Scenario::S16,
            (CaseKind::UnknownPrice, _, Some(_)) => Scenario::S10,
            (CaseKind::EmailMismatch, _, _) => Scenario::S2,
            (CaseKind::PaymentDisputed | CaseKind::PaymentRefunded, _, _) => Scenario::S17,
        };
        // An operator dismissed exactly this case: it is not raised again (a
        // different case about the same purchase still can be).
        if self.facts.settlements.get(&key) == Some(&Settlement::Dismissed) {
            self.outcome(
                purchase,
                OutcomeStatus::Processed,
                "settled_dismissed",
                Some(scenario),
            );
            return;
        }
        self.outcome(purchase, OutcomeStatus::Held, kind.as_str(), Some(scenario));
        let mut alert = Effect::new(MessageKind::SupportAlert, Recipient::Support, &key);
        alert.case_key = Some(key.clone());
        alert.workspace = workspace.cloned();
        alert.purchase = Some(purchase.key.to_string());
        alert.purchaser_email = purchaser.cloned();
        alert.variant = match (kind, details.action, purchaser_message) {
            (_, Some(DuplicateAction::CancelLapsed), _) => Some("cancel_lapsed"),
            (CaseKind::UnknownPrice, _, None) => Some("plan_kept"),
            _ => None,
        };
        // A case that comes back as another flavour is news to support.
        if let Some(variant) = alert.variant {
            alert.key = format!("support_alert:{key}:{variant}:support");
        }
        self.effect(alert);
        if let (Some(message), Some(email)) = (purchaser_message, purchaser) {
            let mut effect = Effect::new(
                message,
                Recipient::Email(email.clone()),
                purchase.key.as_str(),
            );
            effect.case_key = Some(key.clone());
            effect.workspace = workspace.cloned();
            effect.purchase = Some(purchase.key.to_string());
            self.effect(effect);
        }
        self.out.cases.insert(
            key.clone(),
            Case {
                key,
                kind,
                scenario,
                state: CaseState::Held,
                workspace: workspace.cloned(),
                purchaser_email: purchaser.cloned(),
                customer: purchase.customer.clone(),
                subscription: purchase.subscription.clone(),
                checkout_session: purchase.session_ids.iter().next().cloned(),
                events: purchase.events.clone(),
                details,
            },
        );
    }
}

fn owners(workspace: &Workspace) -> Vec<Email> {
    workspace.owners().cloned().collect()
}

/// Emails and `metadata.workspace_id` by customer, from customer events (the
/// last word in convergence order).
fn customer_facts(
    events: &[BillingEvent],
) -> (BTreeMap<CustomerId, Email>, BTreeMap<CustomerId, String>) {
    let mut sorted: Vec<&BillingEvent> = events.iter().collect();
    sorted.sort_by(|a, b| super::purchase::convergence_order(a, b));
    let mut emails = BTreeMap::new();
    let mut workspaces = BTreeMap::new();
    for event in sorted {
        if let EventKind::CustomerChanged(c) | EventKind::CustomerDeleted(c) = &event.kind {
            if let Some(email) = &c.email {
                emails.insert(c.id.clone(), email.clone());
            }
            if let Some(workspace) = &c.metadata_workspace {
                workspaces.insert(c.id.clone(), workspace.clone());
            }
        }
    }
    (emails, workspaces)
}

/// Derives everything from the facts and the full set of events of a scope.
/// `scope_workspaces` are workspaces whose billing state must be recomputed
/// even if no purchase binds to them any more.
pub fn derive(
    facts: Facts<'_>,
    events: &[BillingEvent],
    scope_workspaces: &BTreeSet<WorkspaceId>,
) -> Derivation {
    match derive_scope(facts, ScopeEvents::full(events), scope_workspaces) {
        Ok(derivation) => derivation,
        Err(_) => unreachable!("without checkpoints every event is there"),
    }
}

/// [`derive`] over a scope whose long histories come as checkpoints: the
/// same derivation, unless it needs what a checkpoint covers.
pub fn derive_scope(
    facts: Facts<'_>,
    scope: ScopeEvents<'_>,
    scope_workspaces: &BTreeSet<WorkspaceId>,
) -> Result<Derivation, NeedsHistory> {
    let events = scope.events;
    let purchases = scope.purchases()?;
    let (emails, customer_metadata) = customer_facts(events);
    let purchaser_of: BTreeMap<PurchaseKey, Option<Email>> = purchases
        .values()
        .map(|p| {
            let from_intent = p
                .session_ids
                .iter()
                .find_map(|s| facts.intents.get(s))
                .and_then(|i| i.purchaser.clone());
            let email = p
                .purchaser_email
                .clone()
                .or_else(|| p.customer.as_ref().and_then(|c| emails.get(c).cloned()))
                .or(from_intent);
            (p.key.clone(), email)
        })
        .collect();
    let bindings = bind_all(&purchases, &purchaser_of, &customer_metadata, &facts);

    let mut b = Builder {
        facts,
        out: Derivation::default(),
    };
    for workspace in scope_workspaces {
        b.out
            .billing
            .insert(workspace.clone(), BillingState::default());
    }
    // Events that belong to no purchase: customer updates, one-off invoices, setup sessions.
    for event in events {
        if purchase_key(event).is_none()
            && !matches!(
                event.kind,
                EventKind::Dispute(_) | EventKind::ChargeRefunded(_)
            )
        {
            let reason = match event.kind {
                EventKind::CustomerChanged(_) | EventKind::CustomerDeleted(_) => {
                    "customer_recorded"
                }
                _ => "not_a_purchase",
            };
            b.out.outcomes.insert(
                event.id.clone(),
                EventOutcome {
                    status: OutcomeStatus::Processed,
                    reason,
                    scenario: None,
                },
            );
        }
    }

    let mut by_workspace: BTreeMap<WorkspaceId, Vec<Candidate<'_>>> = BTreeMap::new();
    for purchase in purchases.values() {
        let Some((binding, conflict)) = bindings.get(&purchase.key).cloned() else {
            continue;
        };
        let purchaser = purchaser_of.get(&purchase.key).cloned().flatten();
        if let Some(workspace) = binding.workspace() {
            b.link(purchase, workspace);
            b.out.billing.entry(workspace.clone()).or_default();
        }
        if !purchase.paid {
            if purchase.payment_failed
                && let Some(email) = &purchaser
            {
                let mut effect = Effect::new(
                    MessageKind::PaymentFailed,
                    Recipient::Email(email.clone()),
                    purchase.key.as_str(),
                );
                effect.about_checkout = true;
                effect.workspace = binding.workspace().cloned();
                effect.purchase = Some(purchase.key.to_string());
                if let PlanResolution::Known { plan, .. } =
                    resolve_plan(purchase, &binding, facts.catalog)
                {
                    effect.plan = Some(plan.key.clone());
                }
                b.effect(effect);
            }
            let (status, reason) = if purchase.payment_failed {
                (OutcomeStatus::Processed, "payment_failed")
            } else if binding.workspace().is_some() {
                (OutcomeStatus::Processed, "not_paid_yet")
            } else {
                // Kept, and applied when a binding arrives (DESIGN.md §2.3).
                (OutcomeStatus::Held, "awaiting_binding")
            };
            // A checkout completed unpaid waits for its bank (S18).
            let scenario = (purchase.payment_failed || purchase.awaiting_async_payment)
                .then_some(Scenario::S18);
            b.outcome(purchase, status, reason, scenario);
            continue;
        }
        if b.refunded(purchase) {
            b.outcome(purchase, OutcomeStatus::Processed, "settled_refunded", None);
            continue;
        }
        let client_refs: Vec<String> = purchase.client_reference_ids.iter().cloned().collect();
        let workspace = match &binding {
            Binding::TrustedButMissing(requested) => {
                let details = CaseDetails {
                    requested_workspace: Some(requested.clone()),
                    client_reference_ids: client_refs,
                    ..CaseDetails::default()
                };
                b.hold(
                    CaseKind::MissingWorkspace,
                    purchase,
                    purchaser.as_ref(),
                    None,
                    details,
                    Some(MessageKind::AccessDelayed),
                );
                continue;
            }
            Binding::Unbound { candidates } => {
                if let (UnmatchedPolicy::CreateWorkspace, Some(owner)) = (facts.policy, &purchaser)
                    && let Ok(id) = WorkspaceId::parse(format!("ws_{}", purchase.key.as_str()))
                {
                    b.out.workspaces_to_create.push(WorkspaceRequest {
                        id,
                        name: format!("{}'s workspace", owner.as_str()),
                        owner: owner.clone(),
                        purchase: purchase.key.to_string(),
                    });
                    b.outcome(
                        purchase,
                        OutcomeStatus::Held,
                        "awaiting_workspace",
                        Some(Scenario::S5),
                    );
                    continue;
                }
                let details = CaseDetails {
                    candidates: candidates.clone(),
                    client_reference_ids: client_refs,
                    ..CaseDetails::default()
                };
                b.hold(
                    CaseKind::MissingWorkspace,
                    purchase,
                    purchaser.as_ref(),
                    None,
                    details,
                    Some(MessageKind::AccessDelayed),
                );
                continue;
            }
            other => other.workspace().cloned(),
        };
        let Some(workspace) = workspace else { continue };
        if let Some(conflict) = conflict {
            let details = CaseDetails {
                bound_workspace: Some(conflict.customer_workspace),
                candidates: vec![workspace.clone()],
                ..CaseDetails::default()
            };
            b.hold(
                CaseKind::CustomerConflict,
                purchase,
                purchaser.as_ref(),
                Some(&workspace),
                details,
                None,
            );
            continue;
        }
        match resolve_plan(purchase, &binding, facts.catalog) {
            PlanResolution::Known { plan, unknown } => {
                by_workspace.entry(workspace).or_default().push(Candidate {
                    purchase,
                    binding,
                    plan: plan.key.clone(),
                    purchaser,
                    note: if unknown.is_empty() {
                        PriceNote::None
                    } else {
                        PriceNote::AddOnUnknown(unknown)
                    },
                })
            }
            PlanResolution::Kept { plan, unknown } => {
                by_workspace.entry(workspace).or_default().push(Candidate {
                    purchase,
                    binding,
                    plan: plan.key.clone(),
                    purchaser,
                    note: PriceNote::KeptUnknown(unknown),
                })
            }
            PlanResolution::Unknown(prices) => {
                let details = CaseDetails {
                    unknown_prices: prices,
                    ..CaseDetails::default()
                };
                b.hold(
                    CaseKind::UnknownPrice,
                    purchase,
                    purchaser.as_ref(),
                    Some(&workspace),
                    details,
                    Some(MessageKind::AccessDelayed),
                );
            }
            // A subscription's own events bring its price; a one-time checkout
            // has nothing more coming, so it needs a person.
            PlanResolution::NotYet if purchase.subscription.is_some() => {
                b.outcome(purchase, OutcomeStatus::Held, "awaiting_price", None);
            }
            PlanResolution::NotYet => b.hold(
                CaseKind::UnknownPrice,
                purchase,
                purchaser.as_ref(),
                Some(&workspace),
                CaseDetails::default(),
                Some(MessageKind::AccessDelayed),
            ),
        }
    }

    for (workspace_id, mut candidates) in by_workspace {
        candidates.sort_by(|x, y| {
            (x.purchase.started, &x.purchase.key).cmp(&(y.purchase.started, &y.purchase.key))
        });
        let canonical = choose_canonical(scope, &candidates)?;
        let canonical_key = canonical.map(|c| candidates[c].purchase.key.to_string());
        let canonical_started = canonical.map(|c| candidates[c].purchase.started);
        let mut replaced_lapsed = false;
        for (index, candidate) in candidates.iter().enumerate() {
            if Some(index) == canonical {
                continue;
            }
            // A later purchase beside the one that holds the plan is a
            // duplicate to refund (S8); an earlier one it replaced (or that
            // lapsed since) is to be cancelled (S15); one that ended is done.
            let action = standing(candidate.purchase).map(|_| {
                if canonical_started.is_some_and(|c| candidate.purchase.started < c) {
                    DuplicateAction::CancelLapsed
                } else {
                    // Bought after it, or in the same second (two checkouts at once).
                    DuplicateAction::RefundDuplicate
                }
            });
            replaced_lapsed |= action == Some(DuplicateAction::CancelLapsed);
            match action {
                Some(action) => {
                    let details = CaseDetails {
                        canonical: canonical_key.clone(),
                        action: Some(action),
                        ..CaseDetails::default()
                    };
                    // The purchaser of a lapsed one is not told of a refund:
                    // support cancels it so it never collects again.
                    let message = (action == DuplicateAction::RefundDuplicate)
                        .then_some(MessageKind::DuplicateCharge);
                    b.hold(
                        CaseKind::DuplicateSubscription,
                        candidate.purchase,
                        candidate.purchaser.as_ref(),
                        Some(&workspace_id),
                        details,
                        message,
                    );
                    price_note(&mut b, &workspace_id, candidate);
                }
                None => b.outcome(
                    candidate.purchase,
                    OutcomeStatus::Processed,
                    "superseded",
                    None,
                ),
            }
        }
        if let Some(index) = canonical {
            let candidate = candidates.swap_remove(index);
            provision(&mut b, &workspace_id, &candidate, replaced_lapsed);
            price_note(&mut b, &workspace_id, &candidate);
        }
    }
    for purchase in purchases.values() {
        if purchase.tie
            && let Some(subscription) = &purchase.subscription
        {
            b.out.ties.insert(subscription.clone());
        }
    }
    payments(&mut b, events, &purchases, &bindings, &purchaser_of);
    Ok(b.out)
}

/// The cases the catalog's view of a provisioned purchase's prices warrants.
fn price_note(b: &mut Builder<'_>, workspace: &WorkspaceId, candidate: &Candidate<'_>) {
    match &candidate.note {
        PriceNote::None => {}
        PriceNote::AddOnUnknown(prices) => {
            let purchase = candidate.purchase;
            let key = CaseKind::UnknownPrice.key(purchase.key.as_str());
            b.out.cases.entry(key.clone()).or_insert_with(|| Case {
                key,
                kind: CaseKind::UnknownPrice,
                scenario: Scenario::S10,
                state: CaseState::AutoResolved,
                workspace: Some(workspace.clone()),
                purchaser_email: candidate.purchaser.clone(),
                customer: purchase.customer.clone(),
                subscription: purchase.subscription.clone(),
                checkout_session: purchase.session_ids.iter().next().cloned(),
                events: purchase.events.clone(),
                details: CaseDetails {
                    unknown_prices: prices.clone(),
                    ..CaseDetails::default()
                },
            });
        }
        // S16: still paying, so the plan in force stays; support updates the
        // catalog (then replays) or the subscription. The purchaser is told
        // nothing: nothing changed for them.
        PriceNote::KeptUnknown(prices) => b.hold(
            CaseKind::UnknownPrice,
            candidate.purchase,
            candidate.purchaser.as_ref(),
            Some(workspace),
            CaseDetails {
                unknown_prices: prices.clone(),
                ..CaseDetails::default()
            },
            None,
        ),
    }
}

/// The purchase a dispute or refund is about, and the invoice it paid when
/// that is known: by invoice id, then by charge or payment intent, then by
/// the customer's latest purchase.
fn attach<'p>(
    purchases: &'p BTreeMap<PurchaseKey, Purchase>,
    invoice: Option<&str>,
    refs: &[&str],
    customer: Option<&CustomerId>,
) -> Option<(&'p Purchase, Option<String>)> {
    if let Some(invoice) = invoice
        && let Some(p) = purchases.values().find(|p| {
            p.paid_invoices.contains_key(invoice) || p.payments.values().any(|v| v == invoice)
        })
    {
        return Some((p, Some(invoice.to_owned())));
    }
    for reference in refs {
        if let Some((p, paid)) = purchases
            .values()
            .find_map(|p| p.payments.get(*reference).map(|paid| (p, paid)))
        {
            return Some((p, Some(paid.clone())));
        }
    }
    let customer = customer?;
    purchases
        .values()
        .filter(|p| p.customer.as_ref() == Some(customer))
        .max_by_key(|p| (p.latest_paid.is_some(), p.started, &p.key))
        .map(|p| (p, invoice.map(str::to_owned)))
}

/// What the events said of one object, when, and which events said it.
type History<'e, T> = (Vec<(&'e T, Timestamp)>, BTreeSet<EventId>);

/// Every word on each object in convergence order, with the events that spoke of it.
fn history_by<'e, T>(
    events: &'e [BillingEvent],
    pick: impl Fn(&'e EventKind) -> Option<&'e T>,
    id: impl Fn(&T) -> &str,
) -> BTreeMap<String, History<'e, T>> {
    let mut sorted: Vec<&BillingEvent> = events.iter().collect();
    sorted.sort_by(|a, b| super::purchase::convergence_order(a, b));
    let mut out: BTreeMap<String, History<'e, T>> = BTreeMap::new();
    for event in sorted {
        if let Some(object) = pick(&event.kind) {
            let entry = out.entry(id(object).to_owned()).or_default();
            entry.0.push((object, event.created));
            entry.1.insert(event.id.clone());
        }
    }
    out
}

/// A held money case about a purchase (S17): a support alert, no change of
/// access (Stripe cancels or not, and admit follows the subscription).
struct PaymentCase<'p> {
    kind: CaseKind,
    about: String,
    purchase: Option<&'p Purchase>,
    workspace: Option<WorkspaceId>,
    purchaser: Option<Email>,
    customer: Option<CustomerId>,
    events: BTreeSet<EventId>,
    payment: PaymentDetails,
}

fn hold_payment(b: &mut Builder<'_>, case: PaymentCase<'_>) {
    let key = case.kind.key(&case.about);
    let outcome = |b: &mut Builder<'_>, status, reason| {
        for id in &case.events {
            b.out.outcomes.insert(
                id.clone(),
                EventOutcome {
                    status,
                    reason,
                    scenario: Some(Scenario::S17),
                },
            );
        }
    };
    match b.facts.settlements.get(&key) {
        Some(Settlement::Dismissed) => {
            outcome(b, OutcomeStatus::Processed, "settled_dismissed");
            return;
        }
        Some(Settlement::Refunded) => {
            outcome(b, OutcomeStatus::Processed, "settled_refunded");
            return;
        }
        None => {}
    }
    outcome(b, OutcomeStatus::Held, case.kind.as_str());
    let purchase_key = case.purchase.map(|p| p.key.to_string());
    let mut alert = Effect::new(MessageKind::SupportAlert, Recipient::Support, &key);
    alert.case_key = Some(key.clone());
    alert.workspace.clone_from(&case.workspace);
    alert.purchase.clone_from(&purchase_key);
    alert.purchaser_email.clone_from(&case.purchaser);
    alert.payment = Some(case.payment.clone());
    b.effect(alert);
    b.out.cases.insert(
        key.clone(),
        Case {
            key,
            kind: case.kind,
            scenario: Scenario::S17,
            state: CaseState::Held,
            workspace: case.workspace,
            purchaser_email: case.purchaser,
            customer: case
                .purchase
                .and_then(|p| p.customer.clone())
                .or(case.customer),
            subscription: case.purchase.and_then(|p| p.subscription.clone()),
            checkout_session: case
                .purchase
                .and_then(|p| p.session_ids.iter().next().cloned()),
            events: case.events,
            details: CaseDetails {
                payment: Some(case.payment),
                ..CaseDetails::default()
            },
        },
    );
}

/// S17: disputes, and full refunds of the latest paid invoice.
fn payments(
    b: &mut Builder<'_>,
    events: &[BillingEvent],
    purchases: &BTreeMap<PurchaseKey, Purchase>,
    bindings: &BTreeMap<PurchaseKey, (Binding, Option<Conflict>)>,
    purchaser_of: &BTreeMap<PurchaseKey, Option<Email>>,
) {
    let workspace_of = |p: &Purchase| {
        bindings
            .get(&p.key)
            .and_then(|(binding, _)| binding.workspace().cloned())
    };
    let purchaser = |p: &Purchase| purchaser_of.get(&p.key).cloned().flatten();
    let disputes = history_by(
        events,
        |kind| match kind {
            EventKind::Dispute(d) => Some(d),
            _ => None,
        },
        |d: &Dispute| d.id.as_str(),
    );
    for (id, (history, ids)) in disputes {
        let Some((dispute, _)) = history.last().copied() else {
            continue;
        };
        if dispute.settled_for_merchant() {
            for event in ids {
                b.out.outcomes.insert(
                    event,
                    EventOutcome {
                        status: OutcomeStatus::Processed,
                        reason: "dispute_won",
                        scenario: Some(Scenario::S17),
                    },
                );
            }
            continue;
        }
        let refs: Vec<&str> = [&dispute.charge, &dispute.payment_intent]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let found = attach(purchases, None, &refs, None);
        let purchase = found.as_ref().map(|(p, _)| *p);
        hold_payment(
            b,
            PaymentCase {
                kind: CaseKind::PaymentDisputed,
                about: id.clone(),
                purchase,
                workspace: purchase.and_then(workspace_of),
                purchaser: purchase.and_then(purchaser),
                customer: None,
                events: ids,
                payment: PaymentDetails {
                    dispute: Some(id),
                    charge: dispute.charge.clone(),
                    payment_intent: dispute.payment_intent.clone(),
                    invoice: found.and_then(|(_, invoice)| invoice),
                    status: dispute.status.clone(),
                    reason: dispute.reason.clone(),
                    amount: dispute.amount,
                    amount_refunded: None,
                    currency: dispute.currency.clone(),
                },
            },
        );
    }
    let refunds = history_by(
        events,
        |kind| match kind {
            EventKind::ChargeRefunded(c) => Some(c),
            _ => None,
        },
        |c: &ChargeRefund| c.id.as_str(),
    );
    for (id, (history, ids)) in refunds {
        // Refunds only add up: the most refunded word on the charge is the
        // latest, whatever the order of same-second events.
        let Some((charge, refunded_at)) = history
            .iter()
            .copied()
            .max_by_key(|(c, _)| (c.is_full(), c.amount_refunded.unwrap_or(0)))
        else {
            continue;
        };
        let refs: Vec<&str> = std::iter::once(charge.id.as_str())
            .chain(charge.payment_intent.as_deref())
            .collect();
        let found = attach(
            purchases,
            charge.invoice.as_deref(),
            &refs,
            charge.customer.as_ref(),
        );
        // A full refund of what the workspace last paid (or of a payment
        // admit cannot place, which may be it) needs a person; a partial
        // refund or one of an older invoice is only recorded.
        let held = match &found {
            // The latest as of the refund: a renewal paid since does not settle it.
            Some((p, Some(invoice))) => {
                charge.is_full() && p.latest_paid_at(refunded_at) == Some(invoice.as_str())
            }
            Some((_, None)) => charge.is_full(),
            None => false,
        };
        if !held {
            let reason = if found.is_some() {
                "refund_recorded"
            } else {
                "refund_not_linked"
            };
            for event in ids {
                b.out.outcomes.insert(
                    event,
                    // Only recorded: no row of the table decided anything.
                    EventOutcome {
                        status: OutcomeStatus::Processed,
                        reason,
                        scenario: None,
                    },
                );
            }
            continue;
        }
        let purchase = found.as_ref().map(|(p, _)| *p);
        hold_payment(
            b,
            PaymentCase {
                kind: CaseKind::PaymentRefunded,
                about: id.clone(),
                purchase,
                workspace: purchase.and_then(workspace_of),
                purchaser: purchase.and_then(purchaser),
                customer: charge.customer.clone(),
                events: ids,
                payment: PaymentDetails {
                    dispute: None,
                    charge: Some(id),
                    payment_intent: charge.payment_intent.clone(),
                    invoice: found.and_then(|(_, invoice)| invoice),
                    status: None,
                    reason: None,
                    amount: charge.amount,
                    amount_refunded: charge.amount_refunded,
                    currency: charge.currency.clone(),
                },
            },
        );
    }
}

fn paid_plan_applies(status: SubscriptionStatus) -> bool {
    status.is_live()
}

/// Rows S1–S4, S11, S12: the billing state and the messages of the purchase
/// that holds a workspace's plan.
/// The row that decided a provisioned purchase: its state first (S11, S12),
/// then whether it replaced a lapsed subscription (S15), then its binding.
fn provisioned_scenario(
    b: &Builder<'_>,
    workspace_id: &WorkspaceId,
    candidate: &Candidate<'_>,
    replaced_lapsed: bool,
) -> Scenario {
    let purchase = candidate.purchase;
    let status = purchase.status.unwrap_or(SubscriptionStatus::Active);
    let purchaser = candidate.purchaser.as_ref();
    let administers =
        b.facts.directory.get(workspace_id).is_some_and(|w| {
            purchaser.is_none_or(|p| w.role_of(p).is_some_and(|r| r.administers()))
        });
    let initiated = matches!(
        &candidate.binding,
        Binding::Trusted { intent: Some(intent), .. } if purchaser == Some(&intent.initiator)
    );
    let bound_as = |kept: &BTreeSet<String>| {
        std::iter::once(purchase.key.as_str())
            .chain(purchase.session_ids.iter().map(String::as_str))
            .any(|id| kept.contains(id))
    };
    let remembered = bound_as(b.facts.remembered_purchases);
    let created_for = bound_as(b.facts.created_for_purchases);
    // An operator who invited the purchaser (any role) onboards them: S1.
    let invited = matches!(candidate.binding, Binding::Operator(_))
        && b.facts
            .directory
            .get(workspace_id)
            .is_some_and(|w| purchaser.is_some_and(|p| w.role_of(p).is_some()));
    match status {
        SubscriptionStatus::PastDue => Scenario::S11,
        SubscriptionStatus::Canceled
        | SubscriptionStatus::Unpaid
        | SubscriptionStatus::IncompleteExpired => Scenario::S12,
        s if s.is_live() && purchase.scheduled_end().is_some() => Scenario::S12,
        _ if replaced_lapsed => Scenario::S15,
        // Still paying for the plan in force after a change to an unknown price.
        _ if matches!(candidate.note, PriceNote::KeptUnknown(_)) => Scenario::S16,
        _ => match &candidate.binding {
            Binding::KnownCustomer(_) => Scenario::S3,
            Binding::PurchaserAdministers(_) => Scenario::S4,
            Binding::Operator(_) if remembered => Scenario::S4,
            // The workspace made for an unmatched purchase: the S5 row's other outcome.
            Binding::Operator(_) if created_for => Scenario::S5,
            _ if administers || initiated || invited => Scenario::S1,
            _ => Scenario::S2,
        },
    }
}

fn provision(
    b: &mut Builder<'_>,
    workspace_id: &WorkspaceId,
    candidate: &Candidate<'_>,
    replaced_lapsed: bool,
) {
    let scenario = provisioned_scenario(b, workspace_id, candidate, replaced_lapsed);
    let Candidate {
        purchase,
        binding,
        plan,
        purchaser,
        ..
    } = candidate;
    let purchase = *purchase;
    let status = purchase.status.unwrap_or(SubscriptionStatus::Active);
    let free = b.facts.catalog.free_plan().key.clone();
    let state = BillingState {
        subscription_status: Some(status),
        subscription_plan: Some(if paid_plan_applies(status) {
            plan.clone()
        } else {
            free
        }),
        stripe_customer_id: purchase.customer.clone(),
        stripe_subscription_id: purchase.subscription.clone(),
        current_period_end: purchase.current_period_end,
        cancel_at_period_end: purchase.cancel_at_period_end,
        cancel_at: purchase.scheduled_end(),
        purchaser_email: purchaser.clone(),
        updated_by_event: Some(purchase.last_event.clone()),
        past_due_since: purchase.past_due_since,
    };
    b.out.billing.insert(workspace_id.clone(), state);
    b.out
        .billing_scenarios
        .insert(workspace_id.clone(), scenario);
    b.outcome(
        purchase,
        OutcomeStatus::Processed,
        "provisioned",
        Some(scenario),
    );
    if matches!(binding, Binding::PurchaserAdministers(_)) {
        b.out
            .remember
            .insert(("purchase", purchase.key.to_string(), workspace_id.clone()));
        if let Some(customer) = &purchase.customer {
            b.out
                .remember
                .insert(("customer", customer.to_string(), workspace_id.clone()));
        }
    }

    let Some(workspace) = b.facts.directory.get(workspace_id).cloned() else {
        return;
    };
    let about = purchase.key.to_string();
    let base = |kind: MessageKind, recipient: Email| {
        let mut effect = Effect::new(kind, Recipient::Email(recipient), &about);
        effect.workspace = Some(workspace_id.clone());
        effect.purchase = Some(about.clone());
        effect.plan = Some(plan.clone());
        effect
    };
    let purchaser_role = purchaser.as_ref().and_then(|p| workspace.role_of(p));
    let purchaser_administers = purchaser_role.is_some_and(|r| r.administers());

    if status.is_live() {
        let (onboard, billing_contact): (Vec<Email>, Option<Email>) = match (binding, purchaser) {
            (_, Some(p)) if purchaser_administers => (vec![p.clone()], None),
            (
                Binding::Trusted {
                    intent: Some(intent),
                    ..
                },
                Some(p),
            ) if &intent.initiator == p => (vec![p.clone()], None),
            // An operator invited the purchaser (any role): they sign in themselves.
            (Binding::Operator(_), Some(p)) if purchaser_role.is_some() => (vec![p.clone()], None),
            // S2: trusted (or operator) binding, purchaser is not an administrator:
            // the workspace's people are onboarded, the purchaser is told who they are.
            (Binding::Trusted { .. } | Binding::Operator(_), Some(p)) => {
                let initiator = match &binding {
                    Binding::Trusted {
                        intent: Some(intent),
                        ..
                    } => Some(intent.initiator.clone()),
                    _ => None,
                }
                .filter(|i| workspace.role_of(i).is_some_and(|r| r.administers()));
                let recipients = initiator.map_or_else(|| owners(&workspace), |i| vec![i]);
                (recipients, Some(p.clone()))
            }
            _ => (owners(&workspace), None),
        };
        for recipient in onboard {
            let mut effect = base(MessageKind::Onboarding, recipient.clone());
            effect.sign_in_email = Some(recipient);
            b.effect(effect);
        }
        if let Some(contact) = billing_contact {
            let key = CaseKind::EmailMismatch.key(&about);
            let mut notice = base(MessageKind::BillingContactNotice, contact.clone());
            notice.administrators = workspace.administrators().cloned().collect();
            notice.case_key = Some(key.clone());
            b.effect(notice);
            b.out.cases.insert(
                key.clone(),
                Case {
                    key,
                    kind: CaseKind::EmailMismatch,
                    scenario: Scenario::S2,
                    state: CaseState::AutoResolved,
                    workspace: Some(workspace_id.clone()),
                    purchaser_email: Some(contact),
                    customer: purchase.customer.clone(),
                    subscription: purchase.subscription.clone(),
                    checkout_session: purchase.session_ids.iter().next().cloned(),
                    events: purchase.events.clone(),
                    details: CaseDetails::default(),
                },
            );
        }
    }

    // S11: a renewal failed and has not been paid since.
    if status == SubscriptionStatus::PastDue {
        let recipients = purchaser
            .clone()
            .map_or_else(|| owners(&workspace), |p| vec![p]);
        let grace_ends = purchase
            .past_due_since
            .map(|since| since.plus_seconds(b.facts.grace_period_secs));
        for invoice in &purchase.unpaid_failed_invoices {
            for recipient in &recipients {
                let mut effect = base(MessageKind::PaymentFailed, recipient.clone());
                effect.key = format!("payment_failed:{about}:{invoice}:{}", recipient.as_str());
                effect.grace_ends = grace_ends;
                b.effect(effect);
            }
        }
    }

    // S12: paid access ends (now, or at period end when cancellation is scheduled).
    let ending = match status {
        SubscriptionStatus::Canceled
        | SubscriptionStatus::Unpaid
        | SubscriptionStatus::IncompleteExpired => {
            Some(purchase.ended.or(purchase.current_period_end))
        }
        s if s.is_live() && purchase.scheduled_end().is_some() => Some(purchase.scheduled_end()),
        _ => None,
    };
    if let Some(access_ends) = ending {
        for owner in owners(&workspace) {
            let mut effect = base(MessageKind::Cancellation, owner);
            effect.access_ends = access_ends;
            b.effect(effect);
        }
    }
}
