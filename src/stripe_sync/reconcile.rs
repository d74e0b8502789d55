//! `admit reconcile [--apply]`: compares Stripe's subscriptions and customers
//! with admit's billing state, reports the drift, and with `--apply` repairs
//! it by recording Stripe's current objects as events (so the repair takes
//! the same path, and leaves the same audit entries, as a webhook).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use admit_core::{BillingState, Catalog, Timestamp, WorkspaceId};
use admit_store::{AuditEntry, CaseWrite, OutboxWrite, Store};
use admit_stripe::SubscriptionView;
use admit_stripe::api::StripeClient;
use serde_json::{Value, json};

use super::{SyncError, record_object, subscription_event_type};
use crate::provision::case_id;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftRow {
    pub workspace: String,
    pub subscription: String,
    pub field: &'static str,
    pub admit: String,
    pub stripe: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    pub subscriptions_checked: usize,
    pub drift: Vec<DriftRow>,
    /// Subscriptions recorded as events to repair the drift (`--apply`).
    pub repaired: usize,
    /// Workspaces with more than one Stripe customer, and those customers.
    pub duplicate_customers: BTreeMap<String, BTreeSet<String>>,
    /// `duplicate_customer` cases opened by this run.
    pub cases_opened: usize,
}

fn text<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn plan_of(view: &SubscriptionView, catalog: &Catalog) -> Option<String> {
    view.price_ids
        .iter()
        .find_map(|p| catalog.plan_for_price(p))
        .map(|p| p.key.to_string())
}

/// The differences between what Stripe says of a subscription and what admit holds.
fn compare(
    workspace: &str,
    view: &SubscriptionView,
    billing: Option<&BillingState>,
    catalog: &Catalog,
) -> Vec<DriftRow> {
    let row = |field, admit: String, stripe: String| DriftRow {
        workspace: workspace.to_owned(),
        subscription: view.id.clone(),
        field,
        admit,
        stripe,
    };
    let status = view.status.clone();
    let Some(billing) = billing.filter(|b| {
        b.stripe_subscription_id.as_ref().map(|s| s.as_str()) == Some(view.id.as_str())
    }) else {
        return vec![row("subscription", "not tracked".into(), text(status))];
    };
    let mut rows = Vec::new();
    let admit_status = billing.subscription_status.map(|s| s.as_str().to_owned());
    if admit_status != status {
        rows.push(row("subscription_status", text(admit_status), text(status)));
    }
    // The stored plan is the free tier once the subscription ended; compare the paid plan only while live.
    let live = billing.subscription_status.is_some_and(|s| s.is_live());
    let admit_plan = billing.subscription_plan.as_ref().map(ToString::to_string);
    let stripe_plan = plan_of(view, catalog);
    if live && admit_plan != stripe_plan {
        rows.push(row(
            "subscription_plan",
            text(admit_plan),
            text(stripe_plan),
        ));
    }
    let admit_end = billing.current_period_end.map(Timestamp::unix);
    if view.current_period_end.is_some() && admit_end != view.current_period_end {
        rows.push(row(
            "current_period_end",
            text(admit_end),
            text(view.current_period_end),
        ));
    }
    if billing.cancel_at_period_end != view.cancel_at_period_end {
        rows.push(row(
            "cancel_at_period_end",
            billing.cancel_at_period_end.to_string(),
            view.cancel_at_period_end.to_string(),
        ));
    }
    rows
}

pub async fn reconcile(
    store: &Arc<dyn Store>,
    client: &StripeClient,
    catalog: &Catalog,
    support_email: Option<&str>,
    now: Timestamp,
    apply: bool,
) -> Result<ReconcileReport, SyncError> {
    let mut report = ReconcileReport::default();
    let mut customers_by_workspace: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();

    for object in client.list_subscriptions(None).await? {
        let Some(view) = SubscriptionView::from_object(&object) else {
            continue;
        };
        let linked = store.workspace_of_subscription(&view.id).await?;
        let Some(workspace) = linked
            .map(|w| w.to_string())
            .or_else(|| view.metadata_workspace.clone())
        else {
            // Not a subscription admit provisions.
            continue;
        };
        report.subscriptions_checked += 1;
        let Ok(workspace_id) = WorkspaceId::parse(workspace.clone()) else {
            continue;
        };
        if let Some(customer) = &view.customer {
            customers_by_workspace
                .entry(workspace.clone())
                .or_default()
                .insert(customer.clone());
        }
        let billing = store.get_billing(&workspace_id).await?;
        let mut drift = compare(&workspace, &view, billing.as_ref(), catalog);
        // A subscription admit never heard of, while the workspace runs on another: not drift but a duplicate (the processor decides).
        if drift.first().is_some_and(|d| d.field == "subscription")
            && store.count_subscription_events(&view.id).await? > 0
        {
            drift.clear();
        }
        if drift.is_empty() {
            continue;
        }
        if apply {
            record_object(store, subscription_event_type(&object), &object, now).await?;
            report.repaired += 1;
        }
        report.drift.extend(drift);
    }

    for customer in client.list_customers().await? {
        let Some(id) = customer.get("id").and_then(Value::as_str) else {
            continue;
        };
        let Some(workspace) = customer
            .pointer("/metadata/workspace_id")
            .and_then(Value::as_str)
        else {
            continue;
        };
        if customer.get("deleted").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        customers_by_workspace
            .entry(workspace.to_owned())
            .or_default()
            .insert(id.to_owned());
    }
    for (workspace, customers) in customers_by_workspace {
        if customers.len() < 2 {
            continue;
        }
        if apply
            && open_duplicate_customer_case(store, &workspace, &customers, support_email, now)
                .await?
        {
            report.cases_opened += 1;
        }
        report.duplicate_customers.insert(workspace, customers);
    }
    Ok(report)
}

async fn open_duplicate_customer_case(
    store: &Arc<dyn Store>,
    workspace: &str,
    customers: &BTreeSet<String>,
    support_email: Option<&str>,
    now: Timestamp,
) -> Result<bool, SyncError> {
    let key = format!("duplicate_customer:{workspace}");
    let id = case_id(&key);
    let workspace_id = WorkspaceId::parse(workspace.to_owned()).ok();
    let case = CaseWrite {
        // Reconciliation's own kind, outside the decision table.
        scenario: None,
        id: id.clone(),
        key: key.clone(),
        kind: "duplicate_customer".into(),
        workspace_id: workspace_id.as_ref().map(ToString::to_string),
        purchaser_email: None,
        // Customers go in the details, not the customer column: no event derives this case.
        customer_id: None,
        subscription_id: None,
        checkout_session_id: None,
        event_ids: Vec::new(),
        details: json!({ "customers": customers }),
        state: "held".into(),
        resolution: None,
    };
    let alert = OutboxWrite {
        idempotency_key: format!("support_alert:{key}:support"),
        kind: "support_alert".into(),
        recipient: support_email.map_or_else(|| "support".to_owned(), str::to_owned),
        workspace_id: case.workspace_id.clone(),
        about: None,
        case_key: Some(key.clone()),
        payload: json!({
            "kind": "support_alert",
            "workspace_id": case.workspace_id,
            "case_key": key,
            "case_id": id,
            "customers": customers,
        }),
        not_before: now,
    };
    let audit = AuditEntry {
        at: now,
        actor: "reconcile".into(),
        action: "case.opened".into(),
        workspace_id,
        subject: Some(format!("case:{id}")),
        before: None,
        after: Some(
            json!({ "kind": "duplicate_customer", "state": "held", "customers": customers }),
        ),
        cause: Some("several Stripe customers carry this workspace".into()),
    };
    Ok(store.record_case(&case, &[alert], &audit, now).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use admit_core::{CustomerId, PlanKey, SubscriptionId, SubscriptionStatus};

    fn catalog() -> Catalog {
        let plan = |key: &str, prices: &[&str], free| admit_core::Plan {
            key: PlanKey::new(key),
            name: key.into(),
            prices: prices.iter().map(|p| (*p).to_owned()).collect(),
            entitlements: admit_core::Entitlements::default(),
            free_tier: free,
            rank: 0,
        };
        Catalog::new([
            plan("free", &[], true),
            plan("pro", &["price_pro"], false),
            plan("team", &["price_team"], false),
        ])
        .expect("catalog")
    }

    fn view(status: &str, price: &str, end: i64, cancel: bool) -> SubscriptionView {
        SubscriptionView::from_object(&json!({
            "id": "sub_1", "object": "subscription", "customer": "cus_1", "status": status,
            "cancel_at_period_end": cancel, "current_period_end": end,
            "items": {"data": [{"price": {"id": price}}]}
        }))
        .expect("a subscription")
    }

    fn billing(status: SubscriptionStatus, plan: &str, end: i64) -> BillingState {
        BillingState {
            subscription_status: Some(status),
            subscription_plan: Some(PlanKey::new(plan)),
            stripe_customer_id: Some(CustomerId::parse("cus_1").expect("id")),
            stripe_subscription_id: Some(SubscriptionId::parse("sub_1").expect("id")),
            current_period_end: Some(Timestamp::from_unix(end)),
            ..BillingState::default()
        }
    }

    #[test]
    fn in_step_means_no_drift() {
        let state = billing(SubscriptionStatus::Active, "pro", 100);
        assert!(
            compare(
                "ws_1",
                &view("active", "price_pro", 100, false),
                Some(&state),
                &catalog()
            )
            .is_empty()
        );
    }

    #[test]
    fn every_differing_field_is_a_row() {
        let state = billing(SubscriptionStatus::Active, "pro", 100);
        let rows = compare(
            "ws_1",
            &view("past_due", "price_team", 200, true),
            Some(&state),
            &catalog(),
        );
        let fields: Vec<_> = rows
            .iter()
            .map(|r| (r.field, r.admit.as_str(), r.stripe.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                ("subscription_status", "active", "past_due"),
                ("subscription_plan", "pro", "team"),
                ("current_period_end", "100", "200"),
                ("cancel_at_period_end", "false", "true"),
            ]
        );
    }

    #[test]
    fn a_canceled_subscription_is_compared_by_status_not_plan() {
        let state = billing(SubscriptionStatus::Canceled, "free", 100);
        assert!(
            compare(
                "ws_1",
                &view("canceled", "price_pro", 100, false),
                Some(&state),
                &catalog()
            )
            .is_empty()
        );
    }

    #[test]
    fn a_subscription_admit_does_not_track_is_reported() {
        let rows = compare(
            "ws_1",
            &view("active", "price_pro", 100, false),
            None,
            &catalog(),
        );
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].field, rows[0].stripe.as_str()),
            ("subscription", "active")
        );
    }
}
