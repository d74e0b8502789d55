//! `/admin/cases`: the held queue, a case's story (its events, the scenario,
//! what the purchaser was told, the candidates) and its resolution forms.

use std::time::Duration;

use admit_core::provisioning::CaseKind;
use admit_core::{EventId, OperatorRole, Role, WorkspaceId};
use admit_store::{CaseQuery, CaseResolution, EventStatus, OutboxQuery, StoreError, StoredCase};
use admit_store::{ListKind, WorkspaceQuery};
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::page::{ConsoleError, render};
use super::session::{Acting, SignedIn};
use super::{DoneQuery, LIST_SIZE, list_cursor, next_href, nonempty};
use crate::http::AppState;

/// How long a resolution waits for the processor to re-provision the
/// case's events before it shows the result (the page says if it is not done).
const SETTLE_WAIT: Duration = Duration::from_secs(3);

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    kind: Option<String>,
    older_than: Option<String>,
    cursor: Option<String>,
}

/// `1h`, `1d`, `7d`: the queue's age filter.
fn age_secs(raw: &str) -> Option<i64> {
    Some(match raw {
        "1h" => 3_600,
        "1d" => 86_400,
        "7d" => 7 * 86_400,
        _ => return None,
    })
}

pub async fn list(
    State(state): State<AppState>,
    me: SignedIn,
    Query(query): Query<ListQuery>,
) -> Result<Response, ConsoleError> {
    let now = state.clock.now();
    let case_state = match query.state.as_deref().filter(|s| !s.is_empty()) {
        None => Some("held"),
        Some("all") => None,
        Some(s @ ("held" | "resolved")) => Some(s),
        Some(_) => {
            return Err(ConsoleError::BadRequest(
                "state must be held, resolved or all".into(),
            ));
        }
    };
    let kind = query.kind.filter(|k| !k.is_empty());
    if let Some(kind) = &kind
        && CaseKind::parse(kind).is_none()
        && kind != "duplicate_customer"
    {
        return Err(ConsoleError::BadRequest(format!(
            "{kind:?} is not a case kind"
        )));
    }
    let older_than = query.older_than.filter(|o| !o.is_empty());
    let created_before =
        match &older_than {
            None => None,
            Some(raw) => Some(now.plus_seconds(-age_secs(raw).ok_or_else(|| {
                ConsoleError::BadRequest("older_than must be 1h, 1d or 7d".into())
            })?)),
        };
    let page = state
        .store
        .cases(&CaseQuery {
            state: case_state.map(str::to_owned),
            kind: kind.clone(),
            created_before,
            after: list_cursor(query.cursor.as_deref(), ListKind::Cases)?,
            limit: LIST_SIZE,
            ..CaseQuery::default()
        })
        .await?;
    let rows: Vec<Value> = page
        .items
        .iter()
        .map(|c| {
            json!({
                "id": c.id, "kind": c.kind, "state": c.state, "scenario": c.scenario,
                "purchaser_email": c.purchaser_email, "workspace_id": c.workspace_id,
                "age": now.unix() - c.created_at.unix(), "created_at": c.created_at.unix(),
            })
        })
        .collect();
    let filters = [
        ("state", case_state.unwrap_or("all").to_owned()),
        ("kind", kind.clone().unwrap_or_default()),
        ("older_than", older_than.clone().unwrap_or_default()),
    ];
    render(
        "cases.html",
        Some(&me),
        json!({
            "title": "Cases", "section": "cases", "rows": rows,
            "state": case_state.unwrap_or("all"), "kind": kind, "older_than": older_than,
            "kinds": CaseKind::ALL.iter().map(|k| k.as_str()).chain(["duplicate_customer"]).collect::<Vec<_>>(),
            "next": next_href("/admin/cases", &filters, page.next.as_ref()),
        }),
    )
}

pub async fn page(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    Query(query): Query<DoneQuery>,
) -> Result<Response, ConsoleError> {
    case_page(&state, &me, &id, query.done.is_some(), None).await
}

async fn case_page(
    state: &AppState,
    me: &SignedIn,
    id: &str,
    done: bool,
    error: Option<String>,
) -> Result<Response, ConsoleError> {
    let store = state.store.as_ref();
    let case = store
        .get_case(id)
        .await?
        .ok_or(ConsoleError::NotFound("no case with this id"))?;
    let mut events = Vec::new();
    for raw in &case.event_ids {
        let Ok(event_id) = EventId::parse(raw.as_str()) else {
            continue;
        };
        if let Some(e) = store.get_event(&event_id).await? {
            events.push(json!({
                "id": e.id.as_str(), "type": e.event_type, "status": e.status.as_str(),
                "outcome": e.outcome, "scenario": e.scenario, "received_at": e.received_at.unix(),
            }));
        }
    }
    // What the purchaser was told: the messages to them, this case's first.
    let mut told: Vec<Value> = Vec::new();
    if let Some(email) = &case.purchaser_email {
        let page = store
            .outbox(&OutboxQuery {
                recipient: Some(email.clone()),
                limit: 50,
                ..OutboxQuery::default()
            })
            .await?;
        told = page
            .items
            .iter()
            .map(|m| {
                json!({
                    "id": m.id, "kind": m.kind, "state": m.state, "recipient": m.recipient,
                    "workspace_id": m.workspace_id, "created_at": m.created_at.unix(),
                    "this_case": m.case_key.as_deref() == Some(case.key.as_str()),
                })
            })
            .collect();
        told.sort_by_key(|m| !m["this_case"].as_bool().unwrap_or(false));
    }
    let candidates = picker(state, &case).await?;
    let queued = queued_since_resolution(state, &case).await?;
    let actions = admit_core::provisioning::case_actions(CaseKind::parse(&case.kind));
    let result = (done && case.state != "held").then(|| result_text(&case, &events, &queued));
    let mut response = render(
        "case.html",
        Some(me),
        json!({
            "title": format!("Case {}", case.id), "section": "cases",
            "case": crate::http::cases::case_view(&case),
            "events": events, "told": told, "candidates": candidates,
            "actions": actions, "roles": ["member", "admin", "owner"],
            "result": result, "result_workspace": case.resolution_workspace,
            "invite_targets": invite_targets(&case),
            "may_make_owner": me.operator.role == OperatorRole::Admin,
            "error": error,
        }),
    )?;
    if error.is_some() {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(response)
}

/// What the operator's action did, in words.
fn result_text(case: &StoredCase, events: &[Value], queued: &[String]) -> String {
    let mut statuses: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for event in events {
        *statuses
            .entry(event["status"].as_str().unwrap_or("?"))
            .or_default() += 1;
    }
    let waiting = statuses
        .get(EventStatus::Received.as_str())
        .copied()
        .unwrap_or(0);
    let tally = statuses
        .iter()
        .map(|(status, n)| format!("{n} {status}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mail = if queued.is_empty() {
        " No mail was queued by it yet.".to_owned()
    } else {
        format!(" Mail queued: {}.", queued.join("; "))
    };
    let after = if events.is_empty() {
        String::new()
    } else if waiting == 0 {
        format!(" Re-provisioned: the case's events are {tally}.{mail}")
    } else {
        format!(
            " The case's events are {tally}: the processor is still at work, reload in a moment.{mail}"
        )
    };
    let by = case.resolved_by.as_deref().unwrap_or("an operator");
    match case.resolution.as_deref() {
        Some("bind") => format!(
            "Bound to {} by {by}.{after}",
            case.resolution_workspace
                .as_deref()
                .unwrap_or("a workspace")
        ),
        Some("invite_purchaser") => format!(
            "The purchaser was invited to {} as {} by {by}.{after}",
            case.resolution_workspace
                .as_deref()
                .unwrap_or("the workspace"),
            case.resolution_role.as_deref().unwrap_or("member")
        ),
        Some("mark_refunded") => format!("Marked refunded by {by}."),
        Some("dismiss") => format!("Dismissed by {by}."),
        _ => format!("Resolved by {by}."),
    }
}

/// The messages queued for the resolution's workspace since it was resolved,
/// as `kind to recipient (state)`.
async fn queued_since_resolution(
    state: &AppState,
    case: &StoredCase,
) -> Result<Vec<String>, ConsoleError> {
    let (Some(workspace), Some(resolved_at)) = (
        case.resolution_workspace
            .as_deref()
            .and_then(|w| WorkspaceId::parse(w).ok()),
        case.resolved_at,
    ) else {
        return Ok(Vec::new());
    };
    let page = state
        .store
        .outbox(&OutboxQuery {
            workspace: Some(workspace),
            limit: 25,
            ..OutboxQuery::default()
        })
        .await?;
    Ok(page
        .items
        .iter()
        .filter(|m| m.created_at >= resolved_at)
        .map(|m| format!("{} to {} ({})", m.kind, m.recipient, m.state))
        .collect())
}

/// The bind picker: the case's candidates, the purchaser's workspaces, the
/// workspace the purchase asked for, then the newest workspaces.
async fn picker(state: &AppState, case: &StoredCase) -> Result<Vec<Value>, ConsoleError> {
    let mut seen = std::collections::BTreeSet::new();
    let mut options = Vec::new();
    let mut add = |id: &str, label: String, group: &str| {
        if seen.insert(id.to_owned()) {
            options.push(json!({"id": id, "label": label, "group": group}));
        }
    };
    for candidate in case.details["candidates"].as_array().into_iter().flatten() {
        if let Some(id) = candidate.as_str() {
            add(id, id.to_owned(), "Candidates");
        }
    }
    if let Some(requested) = case.details["requested_workspace"].as_str()
        && let Ok(id) = WorkspaceId::parse(requested)
        && let Some(w) = state.store.get_workspace(&id).await?
    {
        add(w.id.as_str(), format!("{} ({})", w.id, w.name), "Requested");
    }
    if let Some(email) = &case.purchaser_email {
        let mine = state
            .store
            .workspaces(&WorkspaceQuery {
                member_email: Some(email.clone()),
                limit: 25,
                ..WorkspaceQuery::default()
            })
            .await?;
        for w in &mine.items {
            add(
                w.id.as_str(),
                format!("{} ({})", w.id, w.name),
                "The purchaser's",
            );
        }
    }
    let newest = state
        .store
        .workspaces(&WorkspaceQuery {
            limit: 50,
            ..WorkspaceQuery::default()
        })
        .await?;
    for w in &newest.items {
        add(w.id.as_str(), format!("{} ({})", w.id, w.name), "Newest");
    }
    Ok(options)
}

#[derive(Debug, Deserialize)]
pub struct ResolveForm {
    #[serde(default)]
    action: String,
    workspace_id: Option<String>,
    workspace_other: Option<String>,
    role: Option<String>,
    note: Option<String>,
}

/// The workspaces support may invite the purchaser into from this case: its
/// own and its candidates. (Anyone who pays could otherwise be let into any
/// workspace by one support operator.)
fn invite_targets(case: &StoredCase) -> Vec<String> {
    let mut targets: Vec<String> = case
        .workspace_id
        .iter()
        .cloned()
        .chain(
            case.details["candidates"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c.as_str().map(str::to_owned)),
        )
        .collect();
    targets.sort();
    targets.dedup();
    targets
}

/// The form as a resolution, or what is wrong with it.
fn resolution(
    form: &ResolveForm,
    case: &StoredCase,
    me: &SignedIn,
) -> Result<CaseResolution, String> {
    let workspace = |fallback: Option<&str>| {
        let raw = nonempty(form.workspace_other.as_deref())
            .or_else(|| nonempty(form.workspace_id.as_deref()))
            .or_else(|| fallback.map(str::to_owned))
            .ok_or("pick a workspace")?;
        WorkspaceId::parse(raw).map_err(|e| e.to_string())
    };
    let is_admin = me.operator.role == OperatorRole::Admin;
    let note = nonempty(form.note.as_deref());
    Ok(match form.action.as_str() {
        "bind" => CaseResolution::Bind {
            workspace: workspace(None)?,
        },
        "invite_purchaser" => {
            let role = match nonempty(form.role.as_deref()) {
                None => Role::Member,
                Some(raw) => Role::parse(&raw).ok_or("the role must be member, admin or owner")?,
            };
            if role == Role::Owner && !is_admin {
                return Err("only an admin operator makes the purchaser an owner".into());
            }
            let target = workspace(case.workspace_id.as_deref())?;
            if !is_admin && !invite_targets(case).iter().any(|t| t == target.as_str()) {
                return Err(format!(
                    "support invites the purchaser only into the case's own workspace or one of its candidates, not {target}: bind the case instead, or ask an admin"
                ));
            }
            CaseResolution::InvitePurchaser {
                workspace: target,
                role,
            }
        }
        "mark_refunded" | "dismiss" => {
            let Some(note) = note else {
                return Err("a note is required: say why, for whoever reads this case next".into());
            };
            if form.action == "dismiss" {
                CaseResolution::Dismiss { note: Some(note) }
            } else {
                CaseResolution::MarkRefunded { note: Some(note) }
            }
        }
        _ => return Err("choose bind, invite_purchaser, mark_refunded or dismiss".into()),
    })
}

pub async fn resolve(
    State(state): State<AppState>,
    Acting(me): Acting,
    Path(id): Path<String>,
    Form(form): Form<ResolveForm>,
) -> Result<Response, ConsoleError> {
    let case = state
        .store
        .get_case(&id)
        .await?
        .ok_or(ConsoleError::NotFound("no case with this id"))?;
    let resolution = match resolution(&form, &case, &me) {
        Ok(resolution) => resolution,
        Err(problem) => return case_page(&state, &me, &id, false, Some(problem)).await,
    };
    let resolved = state
        .store
        .resolve_case(&id, &resolution, &me.operator.actor(), state.clock.now())
        .await;
    let refused =
        |problem: String| async { case_page(&state, &me, &id, false, Some(problem)).await };
    match resolved {
        Ok(_) => {}
        Err(
            e @ (StoreError::CaseAlreadyResolved
            | StoreError::ResolutionInvalid(_)
            | StoreError::WorkspaceNotFound
            | StoreError::LastOwner),
        ) => return refused(e.to_string()).await,
        Err(e) => return Err(e.into()),
    }
    tracing::info!(case_id = %id, action = resolution.as_str(), operator = %me.operator.name, "case resolved in the console");
    state.wake.notify_one();
    if state.config.process_in_background {
        settle(&state, &case.event_ids).await;
    }
    Ok(Redirect::to(&format!("/admin/cases/{id}?done=1")).into_response())
}

/// Waits a little for the processor to take the case's events again, so
/// the page after the action can say what it did.
async fn settle(state: &AppState, event_ids: &[String]) {
    let deadline = tokio::time::Instant::now() + SETTLE_WAIT;
    let ids: Vec<EventId> = event_ids
        .iter()
        .filter_map(|raw| EventId::parse(raw.as_str()).ok())
        .collect();
    while tokio::time::Instant::now() < deadline {
        let mut waiting = false;
        for id in &ids {
            if let Ok(Some(e)) = state.store.get_event(id).await {
                waiting |= e.status == EventStatus::Received;
            }
        }
        if !waiting {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
