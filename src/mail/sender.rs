//! The outbox sender: claims due messages (one recipient each), up to a
//! bound at once, renders and sends each, and records every attempt. A message accepted by the
//! transport is `sent` and never sent again; a failure is kept with its
//! error and retried with exponential backoff, or becomes `dead` — visible
//! in `/v1/outbox`, resent only by an operator — when it is permanent or the
//! attempts run out. Nothing is dropped.
//!
//! A crash between the transport's acceptance and `mark_sent` sends the
//! message again once the lease expires; it carries the same `Message-ID`,
//! so receivers can drop the copy.

use std::sync::Arc;
use std::time::Duration;

use admit_core::{Email, Timestamp, WorkspaceId};
use admit_store::{OutboxRow, Store, StoreError};

use super::render::{MailContext, render_message};
use super::transport::{Transport, build_message};
use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::{Metrics, OutboxFailureLabels, OutboxSentLabels};
use crate::telemetry::error_chain;
use crate::worker::{InFlight, Worker};

/// How long a claimed message is reserved. Short, so a restart after a
/// crash sends it again within seconds; renewed every `RENEW_EVERY` while
/// the attempt runs, so a slow send (up to the transport's 30 s) keeps it.
const LEASE_SECS: i64 = 15;
const RENEW_EVERY: Duration = Duration::from_secs(5);
/// Attempts made at once.
const CONCURRENCY: u32 = 8;
/// Retry backoff: 30 s, 1 min, 2 min … capped at an hour.
const RETRY: admit_core::Backoff =
    admit_core::Backoff::new(Duration::from_secs(30), Duration::from_secs(3600));
const NO_SUPPORT_ADDRESS: &str = "no support address configured: set ADMIT_SUPPORT_EMAIL";

#[derive(Debug, Clone)]
pub struct Sender {
    store: Arc<dyn Store>,
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
    transport: Arc<Transport>,
    metrics: Arc<Metrics>,
    /// Messages being sent, with their current lease.
    in_flight: InFlight<Vec<(i64, Timestamp)>>,
}

/// Why an attempt failed, as stored in `last_error`; `permanent` skips the retries.
#[derive(Debug)]
struct Failure {
    error: String,
    permanent: bool,
}

impl Failure {
    fn permanent(error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            permanent: true,
        }
    }

    fn transient(error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            permanent: false,
        }
    }
}

/// The wait after a failed attempt, given the attempts made before it.
fn retry_delay(previous_attempts: i64) -> i64 {
    let retry = u32::try_from(previous_attempts.max(0))
        .unwrap_or(u32::MAX)
        .saturating_add(1);
    RETRY.delay_secs(retry)
}

impl Sender {
    pub fn new(
        store: Arc<dyn Store>,
        config: Arc<Config>,
        clock: Arc<dyn Clock>,
        transport: Arc<Transport>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            config,
            clock,
            transport,
            metrics,
            in_flight: InFlight::default(),
        }
    }

    /// Claims up to `CONCURRENCY` due messages and makes one attempt at
    /// each, at once: a slow server costs its own messages their deadline
    /// and holds up no other. Returns how many attempts were recorded.
    pub async fn send_batch(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let rows = self
            .store
            .claim_messages(now, LEASE_SECS, CONCURRENCY)
            .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let lease = now.plus_seconds(LEASE_SECS);
        self.in_flight
            .hold(rows.iter().map(|row| (row.id, lease)).collect());
        let attempts = futures::future::join_all(rows.into_iter().map(|row| async move {
            let id = row.id;
            let recorded = self.deliver(row, now).await;
            // Recorded (or failed to record, then its lease runs out): not ours to give back.
            self.in_flight.update(|held| held.retain(|(h, _)| *h != id));
            recorded
        }));
        tokio::pin!(attempts);
        let mut renew =
            tokio::time::interval_at(tokio::time::Instant::now() + RENEW_EVERY, RENEW_EVERY);
        let recorded = loop {
            tokio::select! {
                recorded = &mut attempts => break recorded,
                _ = renew.tick() => self.renew_leases().await,
            }
        };
        self.in_flight.done();
        let mut done = 0;
        for attempt in recorded {
            attempt?;
            done += 1;
        }
        Ok(done)
    }

    /// Keeps the leases of the messages being sent; a lease lost (this
    /// process stalled past it) is logged: the attempt goes on, and the
    /// Message-ID lets receivers drop a second copy.
    async fn renew_leases(&self) {
        let held = self
            .in_flight
            .update(|held| held.clone())
            .unwrap_or_default();
        let until = self.clock.now().plus_seconds(LEASE_SECS);
        for (id, lease) in held {
            match self.store.renew_message_lease(id, lease, until).await {
                Ok(true) => {
                    self.in_flight.update(|held| {
                        for entry in held.iter_mut().filter(|(h, _)| *h == id) {
                            entry.1 = until;
                        }
                    });
                }
                Ok(false) => {
                    tracing::warn!(outbox_id = id, "lost the lease of a message being sent");
                }
                Err(error) => {
                    tracing::warn!(outbox_id = id, error = %error_chain(&error), "could not renew a message's lease");
                }
            }
        }
    }

    async fn deliver(&self, row: OutboxRow, now: Timestamp) -> Result<(), StoreError> {
        match self.attempt(&row, now).await {
            Ok(()) => {
                let sent_at = self.clock.now();
                self.store.mark_sent(row.id, sent_at).await?;
                let kind = OutboxSentLabels {
                    kind: row.kind.clone(),
                };
                self.metrics.outbox_sent.get_or_create(&kind).inc();
                self.metrics
                    .delivery_lag
                    .get_or_create(&kind)
                    .observe((sent_at.unix() - row.created_at.unix()).max(0) as f64);
                tracing::info!(outbox_id = row.id, kind = %row.kind, outcome = "sent", "message sent");
            }
            Err(failure) => self.record_failure(&row, now, failure).await?,
        }
        Ok(())
    }

    async fn record_failure(
        &self,
        row: &OutboxRow,
        now: Timestamp,
        failure: Failure,
    ) -> Result<(), StoreError> {
        let attempts = row.attempts + 1;
        let exhausted = attempts >= i64::from(self.config.mail.max_attempts);
        let retry_at =
            (!failure.permanent && !exhausted).then(|| now.plus_seconds(retry_delay(row.attempts)));
        self.store
            .mark_failed(row.id, &failure.error, retry_at)
            .await?;
        self.metrics
            .outbox_failures
            .get_or_create(&OutboxFailureLabels {
                kind: row.kind.clone(),
                permanent: failure.permanent,
            })
            .inc();
        // SMTP replies may quote the address; the log never shows it.
        let error = if row.recipient.contains('@') {
            failure.error.replace(&row.recipient, "[recipient]")
        } else {
            failure.error.clone()
        };
        match retry_at {
            Some(retry_at) => tracing::warn!(
                outbox_id = row.id,
                kind = %row.kind,
                outcome = "retry",
                attempts,
                retry_at = retry_at.unix(),
                error = %error,
                "message not sent; will retry"
            ),
            None => tracing::error!(
                outbox_id = row.id,
                kind = %row.kind,
                outcome = "dead",
                attempts,
                permanent = failure.permanent,
                error = %error,
                "message not sent; dead until an operator resends it"
            ),
        }
        Ok(())
    }

    /// Renders, builds and sends one message. The sign-in token of an
    /// onboarding message lives only in the link; the store keeps its hash.
    async fn attempt(&self, row: &OutboxRow, now: Timestamp) -> Result<(), Failure> {
        let mail = &self.config.mail;
        let recipient = if row.recipient == "support" {
            // Written while no support address was configured: use today's, if any.
            match &self.config.support_email {
                Some(address) => address.as_str().to_owned(),
                None => return Err(Failure::permanent(NO_SUPPORT_ADDRESS)),
            }
        } else {
            row.recipient.clone()
        };
        let mut token_hash = None;
        let link = if row.kind == "onboarding" {
            let (token, hash) = crate::signin::new_token().map_err(|e| {
                Failure::transient(format!("no randomness for a sign-in token: {e}"))
            })?;
            let workspace = row
                .workspace_id
                .as_deref()
                .ok_or_else(|| Failure::permanent("an onboarding message without a workspace"))?;
            token_hash = Some(hash);
            Some(mail.signin_link(workspace, &token))
        } else {
            None
        };
        let ctx = MailContext {
            product_name: &mail.product_name,
            support_email: self.config.support_email.as_ref().map(Email::as_str),
            public_url: &mail.public_url,
            app_home_url: &mail.app_home_url,
        };
        let rendered = render_message(&row.kind, &recipient, &row.payload, link.as_deref(), &ctx)
            .map_err(|e| Failure::permanent(error_chain(&e)))?;
        let message = build_message(
            &mail.from,
            &recipient,
            &rendered,
            &row.idempotency_key,
            mail.from.email.domain(),
            now,
        )
        .map_err(|e| Failure::permanent(error_chain(&e)))?;
        if let Some(hash) = token_hash {
            self.issue_token(row, &recipient, &hash, now).await?;
        }
        self.transport.send(&message).await.map_err(|e| Failure {
            error: error_chain(&e),
            permanent: e.is_permanent(),
        })
    }

    async fn issue_token(
        &self,
        row: &OutboxRow,
        recipient: &str,
        hash: &str,
        now: Timestamp,
    ) -> Result<(), Failure> {
        let workspace = row
            .workspace_id
            .as_deref()
            .map(WorkspaceId::parse)
            .transpose()
            .map_err(|e| Failure::permanent(format!("the message's workspace id: {e}")))?
            .ok_or_else(|| Failure::permanent("an onboarding message without a workspace"))?;
        let email = Email::parse(recipient)
            .map_err(|_| Failure::permanent("the recipient is not a usable email address"))?;
        let expires_at = now.plus_seconds(self.config.mail.signin_token_ttl_secs);
        self.store
            .issue_signin_token(hash, &workspace, &email, Some(row.id), expires_at, now)
            .await
            .map_err(|e| {
                Failure::transient(format!(
                    "cannot store the sign-in token: {}",
                    error_chain(&e)
                ))
            })
    }

    /// Sends until nothing is due; returns how many attempts it made. A failed
    /// attempt is rescheduled into the future, so this ends.
    pub async fn drain(&self) -> Result<usize, StoreError> {
        let mut done = 0;
        loop {
            match self.send_batch().await? {
                0 => return Ok(done),
                n => done += n,
            }
        }
    }
}

impl Worker for Sender {
    const NAME: &'static str = "outbox sender";

    async fn step(&self) -> Result<bool, StoreError> {
        Ok(self.send_batch().await? > 0)
    }

    async fn release(&self) {
        for (id, lease_until) in self.in_flight.take().unwrap_or_default() {
            if let Err(error) = self.store.release_message(id, lease_until).await {
                tracing::error!(outbox_id = id, error = %error_chain(&error), "could not release a message's lease");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_at_30_seconds_doubles_and_is_capped_at_an_hour() {
        assert_eq!(retry_delay(0), 30);
        assert_eq!(retry_delay(1), 60);
        assert_eq!(retry_delay(2), 120);
        assert_eq!(retry_delay(6), 1920);
        assert_eq!(retry_delay(7), 3600);
        assert_eq!(retry_delay(40), 3600);
        assert_eq!(retry_delay(-1), 30);
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Quoting(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot send")]
    struct Wrapping(#[source] Quoting);

    #[test]
    fn the_error_chain_keeps_every_cause_once() {
        let error = Wrapping(Quoting(std::io::Error::other("550 no such user")));
        assert_eq!(error_chain(&error), "cannot send: outer: 550 no such user");
    }
}
