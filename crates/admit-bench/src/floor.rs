//! The durable-ingest floor: the least any webhook receiver must do. Verify
//! the signature, append the body to a log, `fdatasync`, answer; concurrent
//! deliveries share one sync (one writer task takes whatever queued up).
//! admit's figures are read against this one, measured in the same run.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::sync::{mpsc, oneshot};

struct Floor {
    secret: String,
    appends: mpsc::Sender<(Bytes, oneshot::Sender<bool>)>,
}

/// Starts the floor server on loopback; returns its URL.
pub async fn start(secret: &str, log: PathBuf) -> anyhow::Result<String> {
    let (appends, mut queue) = mpsc::channel::<(Bytes, oneshot::Sender<bool>)>(1024);
    std::thread::spawn(move || {
        let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
        else {
            return;
        };
        let mut batch = Vec::new();
        while let Some(first) = queue.blocking_recv() {
            batch.push(first);
            while batch.len() < 256 {
                match queue.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            let ok = batch.iter().all(|(body, _)| {
                file.write_all(&(body.len() as u64).to_le_bytes()).is_ok()
                    && file.write_all(body).is_ok()
            }) && file.sync_data().is_ok();
            for (_, reply) in batch.drain(..) {
                let _ = reply.send(ok);
            }
        }
    });
    let state = Arc::new(Floor {
        secret: secret.to_owned(),
        appends,
    });
    let router = axum::Router::new()
        .route("/webhooks/stripe", post(receive))
        .route("/v1/access", axum::routing::get(access))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(url)
}

async fn receive(State(floor): State<Arc<Floor>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let Some(header) = headers
        .get("stripe-signature")
        .and_then(|h| h.to_str().ok())
    else {
        return StatusCode::BAD_REQUEST;
    };
    let now = admit::Clock::now(&admit::SystemClock);
    if admit_stripe::verify_signature(header, &body, &[floor.secret.as_str()], now, Some(300))
        .is_err()
    {
        return StatusCode::BAD_REQUEST;
    }
    let (reply, synced) = oneshot::channel();
    if floor.appends.send((body, reply)).await.is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    match synced.await {
        Ok(true) => StatusCode::OK,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The access check's floor: an answer of the same shape, from memory, with
/// no token check and no database: what HTTP on this machine allows.
async fn access() -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        r#"{"allowed":true,"role":"owner","plan":"pro","subscription_status":"active","entitlements":{"features":["priority_support"],"limits":{"seats":10}},"reason":"active"}"#,
    )
}
