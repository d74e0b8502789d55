//! `/admin`: the readiness memo and the counts an on-call engineer starts
//! from, each linking to its list.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::Response;
use serde_json::json;

use super::MEMO_TTL_SECS;
use super::page::{ConsoleError, render};
use super::session::SignedIn;
use crate::http::AppState;

/// The memo, from the cache while it is fresh.
async fn memo(state: &AppState) -> Result<crate::readiness::Report, ConsoleError> {
    let now = state.clock.now().unix();
    if let Ok(cached) = state.console.memo.lock()
        && let Some((at, report)) = cached.as_ref()
        && now - at < MEMO_TTL_SECS
    {
        return Ok(report.clone());
    }
    let report = crate::http::ops::current_report(state)
        .await
        .map_err(ConsoleError::Internal)?;
    if let Ok(mut cached) = state.console.memo.lock() {
        *cached = Some((now, report.clone()));
    }
    Ok(report)
}

pub async fn page(State(state): State<AppState>, me: SignedIn) -> Result<Response, ConsoleError> {
    let now = state.clock.now();
    let report = memo(&state).await?;
    // Held ages, webhooks and refusals as of the memo; the queues are live.
    let facts = &report.inbox;
    let backlog = state.store.backlog().await?;
    // Held cases come oldest first: the first of a kind is its oldest.
    let mut oldest: BTreeMap<&str, i64> = BTreeMap::new();
    for case in &facts.held_cases {
        oldest
            .entry(case.kind.as_str())
            .or_insert(now.unix() - case.created_at.unix());
    }
    let held: Vec<_> = backlog
        .held
        .iter()
        .map(|(kind, count)| {
            json!({"kind": kind, "count": count, "oldest_age": oldest.get(kind.as_str())})
        })
        .collect();
    let signature_failures: u64 = facts
        .rejections_recent
        .iter()
        .filter(|(code, _)| code.starts_with("signature") || code.starts_with("timestamp"))
        .map(|(_, n)| n)
        .sum();
    render(
        "overview.html",
        Some(&me),
        json!({
            "title": "Overview",
            "section": "overview",
            "memo": crate::readiness::render_json(&report),
            "held": held,
            "held_total": backlog.held.iter().map(|(_, n)| n).sum::<u64>(),
            "failed_events": backlog.failed_events,
            "dead_mail": backlog.dead_mail,
            "pending_mail": backlog.pending_mail,
            "backlog": backlog.inbox,
            "oldest_unprocessed_age": backlog.oldest_unprocessed.map(|t| now.unix() - t.unix()),
            "last_webhook_at": facts.last_webhook_at.map(|t| t.unix()),
            "webhooks_recent": facts.webhooks_recent,
            "signature_failures": signature_failures,
            "rejections": facts.rejections_recent.iter().map(|(code, n)| json!({"code": code, "count": n})).collect::<Vec<_>>(),
            "recent_hours": admit_core::readiness::RECENT_SECS / 3600,
        }),
    )
}
