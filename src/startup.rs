//! Building and running the app. The CLI, the integration tests and the
//! benchmarks all start admit through [`App::build`] and [`App::run`].

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;

use crate::clock::Clock;
use crate::config::Config;
use crate::http::{self, AppState};
use crate::mail::sender::Sender;
use crate::mail::transport::Transport;
use crate::metrics::Metrics;
use crate::provision::Processor;

#[derive(Debug)]
pub struct App {
    state: AppState,
    transport: Arc<Transport>,
}

impl App {
    /// Connects the store (running migrations when configured), sets up the
    /// mail transport and wires the routes. Binds nothing: the caller brings
    /// the listener.
    pub async fn build(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let transport = Transport::from_config(&config.mail)
            .context("cannot set up the mail transport (ADMIT_MAIL_URL)")?;
        let store = admit_store::connect(&config.database_url)
            .await
            .with_context(|| {
                format!(
                    "cannot open the database {}",
                    crate::config::redact_url(&config.database_url)
                )
            })?;
        if config.migrate_on_start {
            store
                .migrate()
                .await
                .context("cannot apply database migrations")?;
        }
        let stripe = crate::stripe_sync::client(&config).context(
            "cannot set up the Stripe API client (ADMIT_STRIPE_API_KEY, ADMIT_STRIPE_API_BASE)",
        )?;
        Ok(Self {
            state: AppState {
                config: Arc::new(config),
                store,
                clock,
                metrics: Metrics::new(),
                wake: Arc::new(tokio::sync::Notify::new()),
                stripe,
                checkout_locks: Arc::default(),
                sync_budget: Arc::default(),
            },
            transport: Arc::new(transport),
        })
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The inbox processor of this app (tests step it with `drain`).
    pub fn processor(&self) -> Processor {
        Processor::new(
            self.state.store.clone(),
            self.state.config.clone(),
            self.state.clock.clone(),
        )
        .with_stripe(self.state.stripe.clone())
    }

    /// The outbox sender of this app (tests step it with `drain`).
    pub fn sender(&self) -> Sender {
        Sender::new(
            self.state.store.clone(),
            self.state.config.clone(),
            self.state.clock.clone(),
            self.transport.clone(),
            self.state.metrics.clone(),
        )
    }

    pub fn router(&self) -> Router {
        http::router(self.state.clone())
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight
    /// requests finish and closes the database.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let router = self.router();
        // One stop signal per worker: `notify_one` keeps its permit for a
        // worker that is busy when shutdown starts.
        let mut workers: Vec<_> = if self.state.config.process_in_background {
            let processor_stop = Arc::new(tokio::sync::Notify::new());
            let sender_stop = Arc::new(tokio::sync::Notify::new());
            // The sender polls; it has its own wake so it never takes the processor's.
            let sender_wake = Arc::new(tokio::sync::Notify::new());
            vec![
                (
                    processor_stop.clone(),
                    tokio::spawn(
                        self.processor()
                            .run(self.state.wake.clone(), processor_stop),
                    ),
                ),
                (
                    sender_stop.clone(),
                    tokio::spawn(self.sender().run(sender_wake, sender_stop)),
                ),
            ]
        } else {
            Vec::new()
        };
        let interval = self.state.config.stripe.reconcile_interval_secs;
        if interval > 0
            && let Some(client) = self.state.stripe.clone()
        {
            let stop = Arc::new(tokio::sync::Notify::new());
            workers.push((
                stop.clone(),
                tokio::spawn(reconcile_periodically(
                    self.state.clone(),
                    client,
                    interval,
                    stop,
                )),
            ));
        }
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
            .context("the HTTP server failed");
        for (stop, worker) in workers {
            // A worker finishes the step it is in; an interrupted transaction rolls back.
            stop.notify_one();
            let _ = worker.await;
        }
        self.state.store.close().await;
        result
    }
}

/// `reconcile --apply` every `interval` seconds; the processor (woken) applies what it records.
async fn reconcile_periodically(
    state: AppState,
    client: admit_stripe::api::StripeClient,
    interval: u64,
    stop: Arc<tokio::sync::Notify>,
) {
    loop {
        tokio::select! {
            () = stop.notified() => return,
            () = tokio::time::sleep(std::time::Duration::from_secs(interval)) => {}
        }
        let support = state
            .config
            .support_email
            .as_ref()
            .map(|e| e.as_str().to_owned());
        match crate::stripe_sync::reconcile(
            &state.store,
            &client,
            &state.config.catalog,
            support.as_deref(),
            state.clock.now(),
            true,
        )
        .await
        {
            Ok(report) => {
                tracing::info!(
                    checked = report.subscriptions_checked,
                    differences = report.drift.len(),
                    repaired = report.repaired,
                    cases_opened = report.cases_opened,
                    "reconciled with Stripe"
                );
                state.wake.notify_one();
            }
            Err(error) => {
                tracing::warn!(error = %error, "reconciliation with Stripe failed; trying again next time")
            }
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
