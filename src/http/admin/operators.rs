//! `/admin/operators`: the operators, for admins (they are managed with
//! `admit operator` on the server).

use axum::extract::State;
use axum::response::Response;
use serde_json::json;

use super::page::{ConsoleError, render};
use super::session::SignedIn;
use crate::http::AppState;

pub async fn page(State(state): State<AppState>, me: SignedIn) -> Result<Response, ConsoleError> {
    if me.operator.role != admit_core::OperatorRole::Admin {
        return Err(ConsoleError::Forbidden("only an admin sees the operators"));
    }
    let operators = state.store.operators().await?;
    render(
        "operators.html",
        Some(&me),
        json!({
            "title": "Operators", "section": "operators",
            "operators": operators.iter().map(|o| json!({
                "name": o.name, "role": o.role.as_str(), "created_at": o.created_at.unix(),
                "password_set": o.password_set,
            })).collect::<Vec<_>>(),
        }),
    )
}
