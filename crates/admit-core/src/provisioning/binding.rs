//! The binding rules of DESIGN.md §2.1: which workspace a purchase belongs
//! to. In order, first match wins: an operator's binding, a trusted binding
//! (metadata or a checkout intent), the customer's known workspace, the one
//! workspace the purchaser administers. `client_reference_id` is never a
//! binding: anyone can put anything there in a Payment Link URL.

use std::collections::BTreeMap;

use super::purchase::{Purchase, PurchaseKey};
use super::{CheckoutIntent, Facts};
use crate::{CustomerId, Email, WorkspaceId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// An operator bound it (a case resolution) or admit created a workspace for it.
    Operator(WorkspaceId),
    /// `metadata.workspace_id` or a checkout intent; `intent` when it came from one.
    Trusted {
        workspace: WorkspaceId,
        intent: Option<CheckoutIntent>,
    },
    /// Trusted metadata naming a workspace that does not exist.
    TrustedButMissing(String),
    /// The customer was already bound to this workspace.
    KnownCustomer(WorkspaceId),
    /// The purchaser administers exactly this one workspace.
    PurchaserAdministers(WorkspaceId),
    /// No rule matched; `candidates` are what an operator may choose from.
    Unbound { candidates: Vec<WorkspaceId> },
}

impl Binding {
    pub fn workspace(&self) -> Option<&WorkspaceId> {
        match self {
            Binding::Operator(w)
            | Binding::Trusted { workspace: w, .. }
            | Binding::KnownCustomer(w)
            | Binding::PurchaserAdministers(w) => Some(w),
            Binding::TrustedButMissing(_) | Binding::Unbound { .. } => None,
        }
    }

    pub fn rule(&self) -> &'static str {
        match self {
            Binding::Operator(_) => "operator",
            Binding::Trusted {
                intent: Some(_), ..
            } => "checkout_intent",
            Binding::Trusted { intent: None, .. } => "metadata",
            Binding::TrustedButMissing(_) => "metadata_missing_workspace",
            Binding::KnownCustomer(_) => "known_customer",
            Binding::PurchaserAdministers(_) => "purchaser_administers",
            Binding::Unbound { .. } => "unbound",
        }
    }
}

/// Rules 0 and 1: bindings a purchase carries itself.
fn direct(purchase: &Purchase, facts: &Facts<'_>) -> Option<Binding> {
    let operator = std::iter::once(purchase.key.as_str())
        .chain(purchase.session_ids.iter().map(String::as_str))
        .find_map(|id| facts.purchase_bindings.get(id));
    if let Some(workspace) = operator {
        // A kept rule-3 binding is a fact like an operator's: the messages
        // follow the purchaser's role now; its scenario stays S4.
        return Some(Binding::Operator(workspace.clone()));
    }
    if let Some(intent) = purchase
        .session_ids
        .iter()
        .find_map(|id| facts.intents.get(id))
    {
        return Some(if facts.directory.get(&intent.workspace).is_some() {
            Binding::Trusted {
                workspace: intent.workspace.clone(),
                intent: Some(intent.clone()),
            }
        } else {
            Binding::TrustedButMissing(intent.workspace.to_string())
        });
    }
    let raw = purchase.metadata_workspaces.first()?;
    Some(match facts.directory.get_raw(raw) {
        Some(workspace) => Binding::Trusted {
            workspace: workspace.id.clone(),
            intent: None,
        },
        None => Binding::TrustedButMissing(raw.clone()),
    })
}

/// The workspace each customer is known to belong to: the facts first, then
/// the earliest purchase of that customer with a direct binding. Also returns
/// which purchase established a derived binding.
fn customer_workspaces(
    purchases: &BTreeMap<PurchaseKey, Purchase>,
    direct: &BTreeMap<PurchaseKey, Binding>,
    customer_metadata: &BTreeMap<CustomerId, String>,
    facts: &Facts<'_>,
) -> BTreeMap<CustomerId, (WorkspaceId, Option<PurchaseKey>)> {
    let mut known: BTreeMap<CustomerId, (WorkspaceId, Option<PurchaseKey>)> = facts
        .customer_bindings
        .iter()
        .map(|(c, w)| (c.clone(), (w.clone(), None)))
        .collect();
    // Customer metadata is set with the merchant's key (admit sets it when it
    // creates a customer for a workspace): as good as a binding.
    for (customer, raw) in customer_metadata {
        if let Some(workspace) = facts.directory.get_raw(raw) {
            known
                .entry(customer.clone())
                .or_insert_with(|| (workspace.id.clone(), None));
        }
    }
    let mut ordered: Vec<&Purchase> = purchases.values().collect();
    ordered.sort_by(|a, b| (a.started, &a.key).cmp(&(b.started, &b.key)));
    for purchase in ordered {
        let (Some(customer), Some(workspace)) = (
            &purchase.customer,
            direct.get(&purchase.key).and_then(Binding::workspace),
        ) else {
            continue;
        };
        known
            .entry(customer.clone())
            .or_insert_with(|| (workspace.clone(), Some(purchase.key.clone())));
    }
    known
}

/// A purchase bound to one workspace while its customer belongs to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub customer_workspace: WorkspaceId,
}

/// Binds every purchase. Returns the binding and, for direct bindings that
/// contradict the customer's known workspace, the conflict (S9).
pub fn bind_all(
    purchases: &BTreeMap<PurchaseKey, Purchase>,
    purchaser_of: &BTreeMap<PurchaseKey, Option<Email>>,
    customer_metadata: &BTreeMap<CustomerId, String>,
    facts: &Facts<'_>,
) -> BTreeMap<PurchaseKey, (Binding, Option<Conflict>)> {
    let direct: BTreeMap<PurchaseKey, Binding> = purchases
        .values()
        .filter_map(|p| direct(p, facts).map(|b| (p.key.clone(), b)))
        .collect();
    let customers = customer_workspaces(purchases, &direct, customer_metadata, facts);
    purchases
        .values()
        .map(|purchase| {
            let known = purchase.customer.as_ref().and_then(|c| customers.get(c));
            if let Some(binding) = direct.get(&purchase.key) {
                // An operator's binding settles the question; only trusted metadata can conflict.
                let conflict = match (binding, known) {
                    (Binding::Trusted { workspace, .. }, Some((bound, source)))
                        if bound != workspace && source.as_ref() != Some(&purchase.key) =>
                    {
                        Some(Conflict {
                            customer_workspace: bound.clone(),
                        })
                    }
                    _ => None,
                };
                return (purchase.key.clone(), (binding.clone(), conflict));
            }
            if let Some((workspace, _)) = known
                && facts.directory.get(workspace).is_some()
            {
                return (
                    purchase.key.clone(),
                    (Binding::KnownCustomer(workspace.clone()), None),
                );
            }
            let administered = purchaser_of
                .get(&purchase.key)
                .and_then(Option::as_ref)
                .map(|email| facts.directory.administered_by(email))
                .unwrap_or_default();
            let binding = match administered.as_slice() {
                [only] => Binding::PurchaserAdministers(only.id.clone()),
                several => Binding::Unbound {
                    candidates: several.iter().map(|w| w.id.clone()).collect(),
                },
            };
            (purchase.key.clone(), (binding, None))
        })
        .collect()
}
