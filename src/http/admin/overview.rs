//! `/admin`: the readiness memo and the counts an on-call engineer starts
//! from, each linking to its list.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use admit_core::readiness::{RECENT_SECS, SIGNATURE_CODES};
use axum::extract::State;
use axum::response::Response;
use serde_json::json;

use super::page::{ConsoleError, render};
use super::session::SignedIn;
use crate::http::AppState;
use crate::readiness::Report;

/// A memo older than this is rebuilt in the background while the page
/// shows the last one: building it asks the mail transport and Stripe,
/// which a page load must not wait for.
const MEMO_TTL_SECS: i64 = 30;

/// The last memo this instance built, and whether a rebuild is running.
#[derive(Debug, Default)]
pub struct MemoCache {
    last: Mutex<Option<(i64, Report)>>,
    rebuilding: AtomicBool,
}

/// The memo: the last one, rebuilt in the background when stale; built
/// here only when there is none yet.
async fn memo(state: &AppState) -> Result<Report, ConsoleError> {
    let now = state.clock.now().unix();
    let cached = state
        .console
        .memo
        .last
        .lock()
        .ok()
        .and_then(|last| last.clone());
    match cached {
        Some((at, report)) => {
            if now - at >= MEMO_TTL_SECS
                && !state.console.memo.rebuilding.swap(true, Ordering::AcqRel)
            {
                let state = state.clone();
                tokio::spawn(async move {
                    if let Err(e) = rebuild(&state).await {
                        tracing::warn!(error = %crate::telemetry::error_chain(e.as_ref()), "the console could not rebuild the readiness memo");
                    }
                    state
                        .console
                        .memo
                        .rebuilding
                        .store(false, Ordering::Release);
                });
            }
            Ok(report)
        }
        None => rebuild(state).await.map_err(ConsoleError::Internal),
    }
}

async fn rebuild(state: &AppState) -> anyhow::Result<Report> {
    let report = crate::http::ops::current_report(state).await?;
    if let Ok(mut last) = state.console.memo.last.lock() {
        *last = Some((state.clock.now().unix(), report.clone()));
    }
    Ok(report)
}

pub async fn page(State(state): State<AppState>, me: SignedIn) -> Result<Response, ConsoleError> {
    let now = state.clock.now();
    let report = memo(&state).await?;
    // Webhooks and refusals as of the memo; the queues are read now.
    let facts = &report.inbox;
    let backlog = state.store.backlog().await?;
    let held: Vec<_> = backlog
        .held
        .iter()
        .map(|(kind, count)| {
            let oldest = backlog
                .held_oldest
                .iter()
                .find(|(k, _)| k == kind)
                .map(|(_, at)| now.unix() - at.unix());
            json!({"kind": kind, "count": count, "oldest_age": oldest})
        })
        .collect();
    let signature_failures: u64 = facts
        .rejections_recent
        .iter()
        .filter(|(code, _)| SIGNATURE_CODES.contains(&code.as_str()))
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
            "recent_hours": RECENT_SECS / 3600,
        }),
    )
}
