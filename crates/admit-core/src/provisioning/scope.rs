//! The scope of an event: every stored event that shares a customer,
//! subscription, checkout session, workspace or payment with it, grown to a
//! fixpoint through the links and bindings admit holds and the workspaces
//! the purchasers administer. This is the policy; each store runs it with
//! its own queries.

use std::collections::BTreeSet;

/// A scope that keeps growing after this many rounds is cut off: real
/// scopes (a workspace's customers and subscriptions) settle in two or
/// three, and one that does not close would let a derivation overwrite
/// workspaces it saw only part of.
pub const MAX_SCOPE_ROUNDS: usize = 8;

/// The ids an inbox row is found by. Computed from the parsed event at
/// ingestion, and again when the event is processed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventKeys {
    pub customer: Option<String>,
    pub subscription: Option<String>,
    pub session: Option<String>,
    pub workspace_hint: Option<String>,
    pub purchaser_email: Option<String>,
    /// The charge and payment intent the event names (an invoice's payment,
    /// a dispute's or a refund's charge).
    pub charge: Option<String>,
    pub payment_intent: Option<String>,
}

/// The ids a scope has reached so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeKeys {
    pub customers: BTreeSet<String>,
    pub subscriptions: BTreeSet<String>,
    pub sessions: BTreeSet<String>,
    pub workspaces: BTreeSet<String>,
    pub emails: BTreeSet<String>,
    /// Charge and payment-intent ids (their prefixes keep them apart).
    pub payments: BTreeSet<String>,
}

impl ScopeKeys {
    /// How far the scope has grown; the fixpoint is reached when a round
    /// adds nothing.
    pub fn size(&self) -> usize {
        self.customers.len()
            + self.subscriptions.len()
            + self.sessions.len()
            + self.workspaces.len()
            + self.emails.len()
            + self.payments.len()
    }

    /// An event in scope brings everything it names.
    pub fn add_event(&mut self, keys: &EventKeys) {
        let add = |set: &mut BTreeSet<String>, value: &Option<String>| {
            if let Some(v) = value.as_ref().filter(|v| !v.is_empty()) {
                set.insert(v.clone());
            }
        };
        add(&mut self.customers, &keys.customer);
        add(&mut self.subscriptions, &keys.subscription);
        add(&mut self.sessions, &keys.session);
        add(&mut self.workspaces, &keys.workspace_hint);
        add(&mut self.emails, &keys.purchaser_email);
        add(&mut self.payments, &keys.charge);
        add(&mut self.payments, &keys.payment_intent);
    }

    /// A link or binding brings its Stripe id and its workspace: `kind` is
    /// `customer`, `subscription`, `session`, or `purchase` (a subscription
    /// or a one-time session).
    pub fn add_link(&mut self, kind: &str, id: String, workspace: String) {
        match kind {
            "customer" => {
                self.customers.insert(id);
            }
            "subscription" => {
                self.subscriptions.insert(id);
            }
            "session" => {
                self.sessions.insert(id);
            }
            _ if id.starts_with("sub_") => {
                self.subscriptions.insert(id);
            }
            _ => {
                self.sessions.insert(id);
            }
        }
        self.workspaces.insert(workspace);
    }

    /// Rule 3 needs every workspace a purchaser administers, and each of
    /// those workspaces' other purchases (a second subscription is S8).
    pub fn add_administered(&mut self, workspaces: impl IntoIterator<Item = String>) {
        self.workspaces.extend(workspaces);
    }

    /// Subscriptions and one-time sessions: what purchase bindings name.
    pub fn purchases(&self) -> BTreeSet<String> {
        self.subscriptions.union(&self.sessions).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_links_and_administrators_grow_the_scope() {
        let mut scope = ScopeKeys::default();
        scope.add_event(&EventKeys {
            customer: Some("cus_1".into()),
            subscription: Some("sub_1".into()),
            workspace_hint: Some(String::new()),
            charge: Some("ch_1".into()),
            payment_intent: Some("pi_1".into()),
            ..EventKeys::default()
        });
        assert_eq!(scope.size(), 4, "an empty hint adds nothing");
        scope.add_link("purchase", "sub_2".into(), "ws_a".into());
        scope.add_link("purchase", "cs_test_1".into(), "ws_a".into());
        scope.add_link("customer", "cus_1".into(), "ws_b".into());
        assert_eq!(
            scope.purchases(),
            BTreeSet::from(["cs_test_1".into(), "sub_1".into(), "sub_2".into()])
        );
        scope.add_administered(["ws_c".to_owned()]);
        assert_eq!(
            scope.workspaces,
            BTreeSet::from(["ws_a".into(), "ws_b".into(), "ws_c".into()])
        );
    }
}
