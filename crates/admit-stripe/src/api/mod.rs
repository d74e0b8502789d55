//! The Stripe API client admit needs: customers, Checkout Sessions,
//! subscriptions, prices and the events list, over `reqwest` with rustls
//! (docs/decisions/0006-stripe-client.md).
//!
//! Objects come back as `serde_json::Value`: admit reads them with the same
//! tolerant views it uses for webhook payloads ([`crate::SubscriptionView`],
//! [`crate::billing_event`]), so current and legacy API shapes are handled in
//! one place. Every POST takes an idempotency key that the caller derives
//! from what the call is about, so that a retry, or a second process doing
//! the same work, never creates a second object.

mod client;
mod error;
mod form;
mod limiter;
#[cfg(test)]
mod tests;

use serde::Deserialize;
use serde_json::Value;

pub use client::{ClientConfig, StripeClient};
pub use error::StripeError;
pub use form::Form;

use form::encode_segment;

/// Lists are read at most this many pages deep; past it the caller gets
/// [`StripeError::TooManyPages`] rather than a silently cut list.
pub const MAX_PAGES: u32 = 100;

/// Stripe's largest page.
const PAGE_SIZE: u32 = 100;

/// One page of a Stripe list.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Page {
    pub data: Vec<Value>,
    #[serde(default)]
    pub has_more: bool,
}

/// An event from the events list, in bytes to store in the inbox. Unlike a
/// webhook body these bytes were never signed: the event is trusted because
/// admit fetched it from Stripe with its own key.
pub fn event_body(event: &Value) -> Vec<u8> {
    event.to_string().into_bytes()
}

impl StripeClient {
    /// `POST /v1/customers` with `email` and `metadata[…]`.
    pub async fn create_customer(
        &self,
        email: &str,
        metadata: &[(&str, &str)],
        idempotency_key: &str,
    ) -> Result<Value, StripeError> {
        let form = Form::new().field("email", email).metadata(metadata);
        self.post("/v1/customers", &form, idempotency_key).await
    }

    pub async fn retrieve_customer(&self, id: &str) -> Result<Value, StripeError> {
        self.get(
            &format!("/v1/customers/{}", encode_segment(id)),
            &Form::new(),
        )
        .await
    }

    /// Every customer with exactly this email address. Stripe compares
    /// addresses case-sensitively, so pass the address as it was given to
    /// Stripe.
    pub async fn list_customers_by_email(&self, email: &str) -> Result<Vec<Value>, StripeError> {
        let query = Form::new()
            .field("email", email)
            .field("limit", PAGE_SIZE.to_string());
        self.list_all("/v1/customers", query).await
    }

    /// Every customer of the account (reconciliation groups them by
    /// `metadata.workspace_id`; Stripe's list cannot filter on metadata).
    pub async fn list_customers(&self) -> Result<Vec<Value>, StripeError> {
        let query = Form::new().field("limit", PAGE_SIZE.to_string());
        self.list_all("/v1/customers", query).await
    }

    /// `POST /v1/checkout/sessions` with the caller's form (mode, line items,
    /// URLs, metadata, `subscription_data[metadata]`, …).
    pub async fn create_checkout_session(
        &self,
        form: Form,
        idempotency_key: &str,
    ) -> Result<Value, StripeError> {
        self.post("/v1/checkout/sessions", &form, idempotency_key)
            .await
    }

    /// The session with its subscription expanded, so one call tells what a
    /// completed checkout bought.
    pub async fn retrieve_checkout_session(&self, id: &str) -> Result<Value, StripeError> {
        let path = format!("/v1/checkout/sessions/{}", encode_segment(id));
        self.get(&path, &Form::new().expand("subscription")).await
    }

    pub async fn retrieve_subscription(&self, id: &str) -> Result<Value, StripeError> {
        self.get(
            &format!("/v1/subscriptions/{}", encode_segment(id)),
            &Form::new(),
        )
        .await
    }

    /// Subscriptions in every status, canceled ones included (Stripe's
    /// default leaves those out), of one customer or of the whole account.
    pub async fn list_subscriptions(
        &self,
        customer: Option<&str>,
    ) -> Result<Vec<Value>, StripeError> {
        let mut query = Form::new()
            .field("status", "all")
            .field("limit", PAGE_SIZE.to_string());
        if let Some(customer) = customer {
            query.push("customer", customer);
        }
        self.list_all("/v1/subscriptions", query).await
    }

    pub async fn retrieve_price(&self, id: &str) -> Result<Value, StripeError> {
        self.get(&format!("/v1/prices/{}", encode_segment(id)), &Form::new())
            .await
    }

    /// One page of `GET /v1/events`. `limit` is clamped to Stripe's 1..=100.
    /// Stripe keeps events for 30 days.
    pub async fn list_events(
        &self,
        created_gte: Option<i64>,
        starting_after: Option<&str>,
        limit: u32,
    ) -> Result<Page, StripeError> {
        let mut query = Form::new().field("limit", limit.clamp(1, PAGE_SIZE).to_string());
        if let Some(created_gte) = created_gte {
            query.push("created[gte]", created_gte.to_string());
        }
        if let Some(starting_after) = starting_after {
            query.push("starting_after", starting_after);
        }
        self.page("/v1/events", &query).await
    }

    /// Every event created at or after `created_gte`, oldest first, by
    /// `(created, id)`. Stripe lists newest first and localstripe oldest
    /// first; `starting_after` continues away from the first page in both,
    /// so the pager just follows it and sorts at the end.
    pub async fn all_events_since(&self, created_gte: i64) -> Result<Vec<Value>, StripeError> {
        let query = Form::new()
            .field("limit", PAGE_SIZE.to_string())
            .field("created[gte]", created_gte.to_string());
        let mut events = self.list_all("/v1/events", query).await?;
        events.sort_by(|a, b| {
            (a["created"].as_i64(), a["id"].as_str())
                .cmp(&(b["created"].as_i64(), b["id"].as_str()))
        });
        // Events created while the pages were read can shift a page
        // boundary and show one event on two pages.
        events.dedup_by(|a, b| a["id"] == b["id"]);
        Ok(events)
    }

    async fn page(&self, path: &str, query: &Form) -> Result<Page, StripeError> {
        let value = self.get(path, query).await?;
        serde_json::from_value(value).map_err(StripeError::Decode)
    }

    /// Follows `has_more` with the last item's id as `starting_after`.
    async fn list_all(&self, path: &str, query: Form) -> Result<Vec<Value>, StripeError> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut page_query = query.clone();
            if let Some(cursor) = &cursor {
                page_query.push("starting_after", cursor.as_str());
            }
            let page = self.page(path, &page_query).await?;
            let last_id = page
                .data
                .last()
                .and_then(|item| item["id"].as_str())
                .map(str::to_owned);
            items.extend(page.data);
            if !page.has_more {
                return Ok(items);
            }
            cursor = Some(last_id.ok_or(StripeError::Unexpected(
                "a list page says has_more but its last item has no id",
            ))?);
        }
        Err(StripeError::TooManyPages { pages: MAX_PAGES })
    }
}
