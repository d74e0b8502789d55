//! A subscription as admit needs it, read from either API generation:
//! current (`items.data[].price`, period on the item) and legacy 2017-08-15
//! (`plan` on the subscription and items, period on the subscription).
//!
//! Fields are read from the JSON value one by one rather than through a
//! typed struct, so that a null or an oddly typed field costs that field
//! only, never the whole subscription.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionView {
    pub id: String,
    pub customer: Option<String>,
    /// As Stripe wrote it, so that a status newer than admit survives to the
    /// caller, which decides what an unknown one means.
    pub status: Option<String>,
    /// Price ids of the items; a legacy plan id is a price id too.
    pub price_ids: Vec<String>,
    pub current_period_end: Option<i64>,
    pub cancel_at_period_end: bool,
    /// A scheduled end; null when none (or when unscheduled again).
    pub cancel_at: Option<i64>,
    /// `metadata.workspace_id`.
    pub metadata_workspace: Option<String>,
    /// The subscription's own `created`.
    pub created: Option<i64>,
}

impl SubscriptionView {
    /// Reads `data.object` of a `customer.subscription.*` event. `None` when
    /// the object is not a subscription or has no id.
    pub fn from_object(object: &Value) -> Option<Self> {
        Self::read(object).ok()
    }

    /// Like [`SubscriptionView::from_object`], saying why an object is not a
    /// subscription.
    pub fn read(object: &Value) -> Result<Self, &'static str> {
        if object["object"].as_str() != Some("subscription") {
            return Err("`data.object` is not a subscription");
        }
        let id = non_empty(&object["id"]).ok_or("the subscription has no `id`")?;
        let items = list_items(&object["items"]);
        let mut price_ids = item_prices(items);
        if price_ids.is_empty()
            && let Some(plan) = reference_id(&object["plan"])
        {
            price_ids.push(plan.to_owned());
        }
        Ok(Self {
            id: id.to_owned(),
            customer: reference_id(&object["customer"]).map(str::to_owned),
            status: non_empty(&object["status"]).map(str::to_owned),
            price_ids,
            current_period_end: object["current_period_end"]
                .as_i64()
                .or_else(|| item_period_end(items)),
            cancel_at_period_end: object["cancel_at_period_end"].as_bool().unwrap_or(false),
            cancel_at: object["cancel_at"].as_i64(),
            metadata_workspace: metadata_string(object, "workspace_id").map(str::to_owned),
            created: object["created"].as_i64(),
        })
    }
}

/// `items.data` of a subscription (or of its `previous_attributes`).
pub(crate) fn list_items(items: &Value) -> &[Value] {
    items["data"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// Price ids of subscription items, in item order.
pub(crate) fn item_prices(items: &[Value]) -> Vec<String> {
    let mut price_ids = Vec::new();
    for item in items {
        // Current items carry both, and `plan` is only a compatibility
        // mirror of `price`; legacy items carry only `plan`.
        if let Some(price) = reference_id(&item["price"]).or_else(|| reference_id(&item["plan"])) {
            push_unique(&mut price_ids, price);
        }
    }
    price_ids
}

/// Since API 2025-03-31 the period lives on each item; the subscription's
/// period ends when its last item's does.
pub(crate) fn item_period_end(items: &[Value]) -> Option<i64> {
    items
        .iter()
        .filter_map(|item| item["current_period_end"].as_i64())
        .max()
}

/// A non-empty string, or nothing.
pub(crate) fn non_empty(value: &Value) -> Option<&str> {
    value.as_str().filter(|s| !s.is_empty())
}

/// Stripe writes a reference either as an id or, when expanded, as the object.
pub(crate) fn reference_id(value: &Value) -> Option<&str> {
    match value {
        Value::Object(_) => non_empty(&value["id"]),
        _ => non_empty(value),
    }
}

/// `metadata[key]` of an object. Empty counts as unset, as it does when the
/// API is asked to write an empty value.
pub(crate) fn metadata_string<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    non_empty(&object["metadata"][key])
}

pub(crate) fn push_unique(ids: &mut Vec<String>, id: &str) {
    if !ids.iter().any(|known| known == id) {
        ids.push(id.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn current_shape_reads_price_and_item_period() {
        let object = json!({
            "id": "sub_1", "object": "subscription", "customer": "cus_1", "status": "active",
            "cancel_at_period_end": false, "created": 1795000000,
            "metadata": {"workspace_id": "ws_1"},
            "items": {"object": "list", "data": [{"object": "subscription_item",
                "price": {"id": "price_pro", "object": "price"}, "current_period_end": 1797592009}]}
        });
        let sub = SubscriptionView::from_object(&object).expect("a subscription");
        assert_eq!(sub.price_ids, ["price_pro"]);
        assert_eq!(sub.current_period_end, Some(1_797_592_009));
        assert_eq!(sub.customer.as_deref(), Some("cus_1"));
        assert_eq!(sub.status.as_deref(), Some("active"));
        assert_eq!(sub.metadata_workspace.as_deref(), Some("ws_1"));
        assert_eq!(sub.created, Some(1_795_000_000));
    }

    #[test]
    fn legacy_shape_reads_plan_and_subscription_period() {
        let object = json!({
            "id": "sub_2", "object": "subscription", "customer": {"id": "cus_2"}, "status": "active",
            "current_period_end": 1795639999, "cancel_at_period_end": true,
            "plan": {"id": "plan_pro", "object": "plan"},
            "items": {"object": "list", "data": [{"object": "subscription_item", "plan": {"id": "plan_pro"}}]}
        });
        let sub = SubscriptionView::from_object(&object).expect("a subscription");
        assert_eq!(sub.price_ids, ["plan_pro"]);
        assert_eq!(sub.current_period_end, Some(1_795_639_999));
        assert!(sub.cancel_at_period_end);
        assert_eq!(sub.customer.as_deref(), Some("cus_2"));
    }

    #[test]
    fn a_subscription_without_items_falls_back_to_its_plan() {
        let object = json!({
            "id": "sub_3", "object": "subscription", "status": "active",
            "items": null, "plan": "plan_basic"
        });
        let sub = SubscriptionView::from_object(&object).expect("a subscription");
        assert_eq!(sub.price_ids, ["plan_basic"]);
    }

    #[test]
    fn nulls_and_odd_types_cost_only_their_field() {
        let object = json!({
            "id": "sub_4", "object": "subscription", "customer": null, "status": 7,
            "items": {"data": [{"price": null, "plan": 5, "current_period_end": "soon"},
                               {"price": "price_a"}, {"price": {"id": "price_a"}}, "junk"]},
            "current_period_end": null, "cancel_at_period_end": "yes",
            "metadata": {"workspace_id": ""}, "created": "yesterday"
        });
        let sub = SubscriptionView::from_object(&object).expect("a subscription");
        assert_eq!(
            sub,
            SubscriptionView {
                id: "sub_4".into(),
                customer: None,
                status: None,
                price_ids: vec!["price_a".into()],
                current_period_end: None,
                cancel_at_period_end: false,
                cancel_at: None,
                metadata_workspace: None,
                created: None,
            }
        );
    }

    #[test]
    fn other_objects_are_not_subscriptions() {
        assert_eq!(
            SubscriptionView::from_object(
                &json!({"id": "in_1", "object": "invoice", "status": "paid"})
            ),
            None
        );
        assert_eq!(SubscriptionView::from_object(&json!("nope")), None);
        assert_eq!(
            SubscriptionView::read(&json!({"object": "subscription", "id": ""})),
            Err("the subscription has no `id`")
        );
    }
}
