//! Building and running the app. The CLI, the integration tests and the
//! benchmarks all start admit through [`App::build`] and [`App::run`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

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
use crate::worker;

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
        let store = admit_store::connect_with(&config.database_url, &config.database_options())
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
        let ingest = crate::inbox::IngestWriter::start(store.clone());
        crate::operators::prepare();
        let public_limit = Arc::new(crate::http::limit::PublicLimit::new(
            config.public_rate_per_minute,
        ));
        Ok(Self {
            state: AppState {
                config: Arc::new(config),
                ingest,
                store,
                clock,
                metrics: Metrics::new(),
                wake: Arc::new(tokio::sync::Notify::new()),
                stripe,
                sync_budget: Arc::default(),
                rejections: Arc::default(),
                console: crate::http::admin::ConsoleState::new(),
                public_limit,
                write_probe: Arc::default(),
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
        .with_metrics(self.state.metrics.clone())
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

    /// Serves until `shutdown` resolves. Then, within
    /// `ADMIT_SHUTDOWN_GRACE_SECS`: stops accepting, stops the workers
    /// claiming, lets in-flight requests and steps finish; what is still
    /// running at the deadline is cut short (its transaction rolls back) and
    /// its leases given back, so the next start takes it at once. Then the
    /// database is closed.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let router = self.router();
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let poll = Duration::from_secs(1);
        let processor = self.processor();
        let sender = self.sender();
        let (processor_task, sender_task) = if self.state.config.process_in_background {
            // The sender has its own wake so it never takes the processor's.
            // Both also wake when another instance on the same database
            // stores events or makes a message due (PostgreSQL).
            let sender_wake = Arc::new(tokio::sync::Notify::new());
            self.state
                .store
                .subscribe(self.state.wake.clone(), sender_wake.clone());
            let processor_task = tokio::spawn(worker::run(
                processor.clone(),
                self.state.wake.clone(),
                poll,
                stop.clone(),
            ));
            let sender_task =
                tokio::spawn(worker::run(sender.clone(), sender_wake, poll, stop.clone()));
            (Some(processor_task), Some(sender_task))
        } else {
            (None, None)
        };
        let interval = self.state.config.stripe.reconcile_interval_secs;
        let reconcile_task = match self.state.stripe.clone() {
            Some(client) if interval > 0 => Some(tokio::spawn(reconcile_periodically(
                self.state.clone(),
                client,
                interval,
                stop.clone(),
            ))),
            _ => None,
        };

        let tally_task = tokio::spawn(flush_rejections(self.state.clone(), stop.clone()));
        let upkeep_task = tokio::spawn(maintain_store(self.state.clone(), stop.clone()));

        // One signal stops the workers claiming and the server accepting.
        let mut draining = stop.clone();
        let limits = crate::server::Limits {
            header_timeout: Duration::from_secs(self.state.config.header_timeout_secs),
            max_connections: usize::try_from(self.state.config.max_connections)
                .unwrap_or(usize::MAX),
        };
        let mut server = tokio::spawn(crate::server::serve(listener, router, limits, async move {
            let _ = draining.wait_for(|stopping| *stopping).await;
        }));
        let served = tokio::select! {
            served = &mut server => Some(served),
            () = shutdown => None,
        };
        let _ = stop_tx.send(true);
        let grace = Duration::from_secs(self.state.config.shutdown_grace_secs);
        let deadline = tokio::time::Instant::now() + grace;

        if let Some(task) = processor_task {
            worker::finish_or_cut(&processor, task, deadline).await;
        }
        if let Some(task) = sender_task {
            worker::finish_or_cut(&sender, task, deadline).await;
        }
        if let Some(mut task) = reconcile_task {
            // Reconciliation only records; cutting it short loses nothing.
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
                tracing::warn!("shutdown grace period over: reconciliation cut short");
            }
        }
        let result = match served {
            Some(served) => served,
            None => match tokio::time::timeout_at(deadline, &mut server).await {
                Ok(served) => served,
                Err(_) => {
                    // Connections still open end with the process.
                    server.abort();
                    tracing::warn!(
                        "shutdown grace period over: no longer waiting for open connections"
                    );
                    Ok(())
                }
            },
        };
        let _ = tokio::time::timeout_at(deadline, tally_task).await;
        let _ = tokio::time::timeout_at(deadline, upkeep_task).await;
        // Closing waits for connections in use; a handler past the deadline
        // must not hold the exit.
        if tokio::time::timeout(Duration::from_secs(2), self.state.store.close())
            .await
            .is_err()
        {
            tracing::warn!("database connections still in use at exit");
        }
        result.context("the HTTP server task failed")
    }
}

/// Writes the tally of refused webhook deliveries every few seconds, and once
/// more when stopping.
async fn flush_rejections(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        let stopping = tokio::select! {
            _ = stop.wait_for(|stopping| *stopping) => true,
            () = tokio::time::sleep(Duration::from_secs(5)) => false,
        };
        state
            .rejections
            .flush(state.store.as_ref(), state.clock.now())
            .await;
        if stopping {
            return;
        }
    }
}

/// The store's upkeep every second (SQLite: the WAL checkpoint), so that
/// no commit on the request path pays for it.
async fn maintain_store(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopping| *stopping) => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if let Err(error) = state.store.maintain().await {
            tracing::warn!(error = %crate::telemetry::error_chain(&error), "store upkeep failed; retried in a second");
        }
    }
}

/// `reconcile --apply` every `interval` seconds; the processor (woken) applies what it records.
async fn reconcile_periodically(
    state: AppState,
    client: admit_stripe::api::StripeClient,
    interval: u64,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopping| *stopping) => return,
            () = tokio::time::sleep(Duration::from_secs(interval)) => {}
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
                if let Err(error) = crate::readiness::record_reconcile(
                    state.store.as_ref(),
                    report.drift.len() + report.duplicate_customers.len(),
                    true,
                    state.clock.now(),
                )
                .await
                {
                    tracing::warn!(error = %crate::telemetry::error_chain(error.as_ref()), "cannot record the reconciliation");
                }
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
                tracing::warn!(error = %crate::telemetry::error_chain(&error), "reconciliation with Stripe failed; trying again next time")
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
