//! `/admin/search?q=`: whatever a customer or Stripe gives — an email, a
//! workspace id or name, `cus_`, `sub_`, `cs_`, `in_`, `pi_`, `evt_`, a case
//! id — leads to the workspaces, cases and events it names. Anything but an
//! email is also looked for in workspace ids and names. An exact id with one
//! match goes straight to its page.

use admit_core::{EventId, WorkspaceId};
use admit_store::{CaseQuery, EventQuery, WorkspaceQuery};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::page::{ConsoleError, render};
use super::session::SignedIn;
use crate::http::AppState;

/// Each kind of result shows at most this many.
const PER_KIND: u32 = 25;

#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
}

fn hit(kind: &str, href: String, label: &str, detail: String) -> Value {
    json!({"kind": kind, "href": href, "label": label, "detail": detail})
}

pub async fn page(
    State(state): State<AppState>,
    me: SignedIn,
    Query(query): Query<SearchQuery>,
) -> Result<Response, ConsoleError> {
    let q = query.q.trim();
    let (results, exact) = if q.is_empty() {
        (Vec::new(), None)
    } else {
        find(&state, q).await?
    };
    if let (Some(exact), 1) = (exact, results.len()) {
        return Ok(Redirect::to(&exact).into_response());
    }
    render(
        "search.html",
        Some(&me),
        json!({"title": "Search", "q": q, "results": results, "per_kind": PER_KIND}),
    )
}

/// The results, and the page of an exact id when `q` is one.
async fn find(state: &AppState, q: &str) -> Result<(Vec<Value>, Option<String>), ConsoleError> {
    let store = state.store.as_ref();
    let mut results = Vec::new();
    let mut exact = None;

    if let Ok(id) = EventId::parse(q)
        && let Some(event) = store.get_event(&id).await?
    {
        let href = format!("/admin/events/{}", event.id);
        exact = Some(href.clone());
        results.push(hit(
            "event",
            href,
            event.id.as_str(),
            format!("{} · {}", event.event_type, event.status.as_str()),
        ));
    }
    if q.starts_with("case_")
        && let Some(case) = store.get_case(q).await?
    {
        let href = format!("/admin/cases/{}", case.id);
        exact = Some(href.clone());
        results.push(hit(
            "case",
            href,
            &case.id,
            format!("{} · {}", case.kind, case.state),
        ));
    }
    if !results.is_empty() {
        return Ok((results, exact));
    }

    let email = q
        .contains('@')
        .then(|| admit_core::Email::parse(q).ok().map(String::from))
        .flatten();
    let stripe_id = (email.is_none() && looks_like_stripe_id(q)).then(|| q.to_owned());

    if let Ok(id) = WorkspaceId::parse(q)
        && let Some(workspace) = store.get_workspace(&id).await?
    {
        let href = format!("/admin/workspaces/{id}");
        exact = Some(href.clone());
        results.push(hit("workspace", href, id.as_str(), workspace.name));
    }
    let workspaces = store
        .workspaces(&WorkspaceQuery {
            text: email.is_none().then(|| q.to_owned()),
            member_email: email.clone(),
            stripe_id: None,
            after: None,
            limit: PER_KIND,
        })
        .await?;
    let mut workspaces = workspaces.items;
    if let Some(stripe_id) = &stripe_id {
        let billed = store
            .workspaces(&WorkspaceQuery {
                stripe_id: Some(stripe_id.clone()),
                limit: PER_KIND,
                ..WorkspaceQuery::default()
            })
            .await?;
        workspaces.extend(billed.items);
    }
    let mut listed = std::collections::BTreeSet::new();
    for w in &workspaces {
        if !listed.insert(w.id.clone()) {
            continue;
        }
        if exact.as_deref() == Some(format!("/admin/workspaces/{}", w.id).as_str()) {
            continue;
        }
        results.push(hit(
            "workspace",
            format!("/admin/workspaces/{}", w.id),
            w.id.as_str(),
            format!(
                "{} · {} · {}",
                w.name,
                w.subscription_plan.as_deref().unwrap_or("no plan"),
                w.subscription_status
                    .as_deref()
                    .unwrap_or("no subscription")
            ),
        ));
    }
    if email.is_some() || stripe_id.is_some() {
        let cases = store
            .cases(&CaseQuery {
                email: email.clone(),
                stripe_id: stripe_id.clone(),
                limit: PER_KIND,
                ..CaseQuery::default()
            })
            .await?;
        for case in &cases.items {
            results.push(hit(
                "case",
                format!("/admin/cases/{}", case.id),
                &case.id,
                format!(
                    "{} · {} · {}",
                    case.kind,
                    case.state,
                    case.purchaser_email.as_deref().unwrap_or("no email")
                ),
            ));
        }
        let events = store
            .events(&EventQuery {
                purchaser_email: email,
                stripe_id,
                limit: PER_KIND,
                ..EventQuery::default()
            })
            .await?;
        for event in &events.items {
            results.push(hit(
                "event",
                format!("/admin/events/{}", event.id),
                event.id.as_str(),
                format!("{} · {}", event.event_type, event.status.as_str()),
            ));
        }
    }
    // A workspace id is exact only when nothing else matched.
    let exact = exact.filter(|_| results.len() == 1);
    Ok((results, exact))
}

/// The prefixes of the Stripe ids a customer or Stripe's dashboard gives:
/// customer, subscription, checkout session, invoice, payment intent,
/// charge, dispute, refund, price, event.
const STRIPE_PREFIXES: &[&str] = &[
    "cus", "sub", "cs", "in", "pi", "ch", "dp", "du", "re", "price", "evt",
];

/// `cus_…`, `sub_…`, `cs_test_…`, `in_…`: a known prefix, `_`, a token.
fn looks_like_stripe_id(q: &str) -> bool {
    q.split_once('_').is_some_and(|(prefix, rest)| {
        STRIPE_PREFIXES.contains(&prefix)
            && !rest.is_empty()
            && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

#[cfg(test)]
mod tests {
    use super::looks_like_stripe_id;

    #[test]
    fn stripe_ids_are_told_from_names() {
        for id in [
            "cus_Q1",
            "sub_1Pabc",
            "cs_test_a1",
            "in_1X",
            "pi_3Y",
            "evt_1",
        ] {
            assert!(looks_like_stripe_id(id), "{id}");
        }
        for other in [
            "Acme",
            "acme corp",
            "ws_acme",
            "dev_ops",
            "_x",
            "Cus_1",
            "cus_",
            "a@b.test",
        ] {
            assert!(!looks_like_stripe_id(other), "{other}");
        }
    }
}
