//! A subscription as admit needs it, read from either API generation:
//! current (`items.data[].price`, period on the item) and legacy 2017-08-15
//! (`plan` on the subscription and items, period on the subscription).

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionView {
    pub id: String,
    pub customer: Option<String>,
    pub status: String,
    /// Price ids of the items; a legacy plan id is a price id too.
    pub price_ids: Vec<String>,
    pub current_period_end: Option<i64>,
    pub cancel_at_period_end: bool,
}

#[derive(Deserialize)]
struct RawSubscription {
    id: String,
    object: String,
    customer: Option<Value>,
    status: String,
    #[serde(default)]
    items: Option<RawList>,
    #[serde(default)]
    plan: Option<IdRef>,
    current_period_end: Option<i64>,
    #[serde(default)]
    cancel_at_period_end: Option<bool>,
}

#[derive(Deserialize)]
struct RawList {
    #[serde(default)]
    data: Vec<RawItem>,
}

#[derive(Deserialize)]
struct RawItem {
    price: Option<IdRef>,
    plan: Option<IdRef>,
    current_period_end: Option<i64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IdRef {
    Id(String),
    Expanded { id: String },
}

impl IdRef {
    fn id(self) -> String {
        match self {
            IdRef::Id(id) | IdRef::Expanded { id } => id,
        }
    }
}

impl SubscriptionView {
    /// Reads `data.object` of a `customer.subscription.*` event. `None` when
    /// the object is not a subscription.
    pub fn from_object(object: &Value) -> Option<Self> {
        let raw = RawSubscription::deserialize(object).ok()?;
        if raw.object != "subscription" {
            return None;
        }
        let items = raw.items.map(|list| list.data).unwrap_or_default();
        let item_period_end = items
            .iter()
            .filter_map(|item| item.current_period_end)
            .max();
        let mut price_ids: Vec<String> = items
            .into_iter()
            .filter_map(|item| item.price.or(item.plan).map(IdRef::id))
            .collect();
        if price_ids.is_empty()
            && let Some(plan) = raw.plan
        {
            price_ids.push(plan.id());
        }
        let customer = raw.customer.and_then(|c| match c {
            Value::String(id) => Some(id),
            Value::Object(map) => map.get("id").and_then(Value::as_str).map(str::to_owned),
            _ => None,
        });
        Some(Self {
            id: raw.id,
            customer,
            status: raw.status,
            price_ids,
            current_period_end: raw.current_period_end.or(item_period_end),
            cancel_at_period_end: raw.cancel_at_period_end.unwrap_or(false),
        })
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
            "cancel_at_period_end": false,
            "items": {"object": "list", "data": [{"object": "subscription_item",
                "price": {"id": "price_pro", "object": "price"}, "current_period_end": 1797592009}]}
        });
        let sub = SubscriptionView::from_object(&object).expect("a subscription");
        assert_eq!(sub.price_ids, ["price_pro"]);
        assert_eq!(sub.current_period_end, Some(1_797_592_009));
        assert_eq!(sub.customer.as_deref(), Some("cus_1"));
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
    fn other_objects_are_not_subscriptions() {
        assert_eq!(
            SubscriptionView::from_object(
                &json!({"id": "in_1", "object": "invoice", "status": "paid"})
            ),
            None
        );
        assert_eq!(SubscriptionView::from_object(&json!("nope")), None);
    }
}
