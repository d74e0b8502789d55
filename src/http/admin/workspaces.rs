//! `/admin/workspaces`: the list, and a workspace's page — members, billing
//! state, entitlements as `/v1/access` computes them, its audit history,
//! events, cases and mail, and the "verify access" check `admit verify` runs.

use admit_core::provisioning::member_access;
use admit_core::{Email, Role, WorkspaceId};
use admit_store::{AuditQuery, CaseQuery, EventQuery, ListKind, OutboxQuery, WorkspaceQuery};
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::page::{ConsoleError, render};
use super::session::SignedIn;
use super::{LIST_SIZE, list_cursor, next_href};
use crate::http::AppState;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    q: Option<String>,
    cursor: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    me: SignedIn,
    Query(query): Query<ListQuery>,
) -> Result<Response, ConsoleError> {
    let text = query
        .q
        .map(|q| q.trim().to_owned())
        .filter(|q| !q.is_empty());
    let page = state
        .store
        .workspaces(&WorkspaceQuery {
            text: text.clone(),
            after: list_cursor(query.cursor.as_deref(), ListKind::Workspaces)?,
            limit: LIST_SIZE,
            ..WorkspaceQuery::default()
        })
        .await?;
    let rows: Vec<Value> = page
        .items
        .iter()
        .map(|w| {
            json!({
                "id": w.id.as_str(), "name": w.name, "created_at": w.created_at.unix(),
                "status": w.subscription_status, "plan": w.subscription_plan, "members": w.members,
            })
        })
        .collect();
    let filters = [("q", text.clone().unwrap_or_default())];
    render(
        "workspaces.html",
        Some(&me),
        json!({
            "title": "Workspaces", "section": "workspaces", "q": text, "rows": rows,
            "next": next_href("/admin/workspaces", &filters, page.next.as_ref()),
        }),
    )
}

pub async fn page(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    workspace_page(&state, &me, &id, None).await
}

async fn workspace_page(
    state: &AppState,
    me: &SignedIn,
    id: &str,
    verify: Option<Value>,
) -> Result<Response, ConsoleError> {
    let not_found = || ConsoleError::NotFound("no workspace with this id");
    let id = WorkspaceId::parse(id).map_err(|_| not_found())?;
    let store = state.store.as_ref();
    let workspace = store.get_workspace(&id).await?.ok_or_else(not_found)?;
    let billing = store.get_billing(&id).await?;
    let now = state.clock.now();
    let billing_view = crate::http::billing::billing_view(billing.as_ref(), state, now);
    let billing = billing.unwrap_or_default();
    // What `/v1/access` answers for any member: the plan's entitlements.
    let access = member_access(
        Some(Role::Member),
        &billing,
        &state.config.catalog,
        state.config.grace_period_secs,
        now,
    );
    let entitlements = serde_json::to_value(&access.entitlements).unwrap_or(Value::Null);
    let members: Vec<Value> = workspace
        .members
        .iter()
        .map(|(email, role)| json!({"email": email.as_str(), "role": role.as_str()}))
        .collect();
    let audit = store
        .audit(&AuditQuery {
            workspace: Some(id.clone()),
            limit: 50,
            ..AuditQuery::default()
        })
        .await?;
    let audit: Vec<Value> = audit
        .items
        .iter()
        .map(|a| {
            json!({
                "at": a.entry.at.unix(), "actor": a.entry.actor, "action": a.entry.action,
                "subject": a.entry.subject, "cause": a.entry.cause,
                "before": a.entry.before.as_ref().map(Value::to_string),
                "after": a.entry.after.as_ref().map(Value::to_string),
            })
        })
        .collect();
    let events = store
        .events(&EventQuery {
            workspace: Some(id.clone()),
            limit: 25,
            ..EventQuery::default()
        })
        .await?;
    let cases = store
        .cases(&CaseQuery {
            workspace: Some(id.clone()),
            limit: 25,
            ..CaseQuery::default()
        })
        .await?;
    let mail = store
        .outbox(&OutboxQuery {
            workspace: Some(id.clone()),
            limit: 25,
            ..OutboxQuery::default()
        })
        .await?;
    let mut response = render(
        "workspace.html",
        Some(me),
        json!({
            "title": format!("Workspace {}", workspace.id), "section": "workspaces",
            "workspace": {"id": workspace.id.as_str(), "name": workspace.name, "created_at": workspace.created_at.unix()},
            "members": members,
            "billing": billing_view,
            "plan": access.plan.as_str(), "plan_reason": access.plan_reason.as_str(),
            "entitlements": entitlements,
            "audit": audit,
            "events": events.items.iter().map(super::events::summary).collect::<Vec<_>>(),
            "events_more": events.next.is_some(),
            "cases": cases.items.iter().map(|c| json!({
                "id": c.id, "kind": c.kind, "state": c.state, "created_at": c.created_at.unix(),
                "purchaser_email": c.purchaser_email,
            })).collect::<Vec<_>>(),
            "mail": mail.items.iter().map(super::outbox::row).collect::<Vec<_>>(),
            "verify": verify,
        }),
    )?;
    if verify.as_ref().is_some_and(|v| v["error"].is_string()) {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub struct VerifyForm {
    #[serde(default)]
    email: String,
}

/// Runs `admit verify` for an email and shows its verdict on the page.
pub async fn verify(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<VerifyForm>,
) -> Result<Response, ConsoleError> {
    let workspace = WorkspaceId::parse(id.as_str())
        .map_err(|_| ConsoleError::NotFound("no workspace with this id"))?;
    let verdict = match Email::parse(form.email.trim()) {
        Err(e) => json!({"email": form.email, "error": e.to_string()}),
        Ok(email) => {
            let request = crate::verify::Request {
                workspace,
                email,
                plan: None,
            };
            let report = crate::verify::check(
                state.store.as_ref(),
                &state.config.catalog,
                state.config.grace_period_secs,
                &request,
                state.clock.now(),
            )
            .await?;
            json!({
                "email": request.email.as_str(),
                "verdict": report.verdict.as_str(),
                "text": crate::verify::render_text(&request, &report),
            })
        }
    };
    workspace_page(&state, &me, &id, Some(verdict)).await
}
