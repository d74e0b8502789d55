//! Group commit at ingress: every webhook handler hands its verified event
//! to one writer task, which writes whatever has queued up meanwhile in one
//! transaction, so concurrent deliveries share one commit and one sync.
//! Each handler is answered only after the transaction holding its event
//! committed: never a 2xx before the event is durable.

use std::sync::Arc;

use admit_store::{InsertOutcome, NewEvent, Store, StoreError};
use tokio::sync::{mpsc, oneshot};

/// How many deliveries one transaction takes at most: enough to merge a
/// burst, small enough that the first in line is not kept long.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<InsertOutcome, StoreError>>;

/// The handle handlers write through. Cheap to clone; the writer task ends
/// when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct IngestWriter {
    queue: mpsc::Sender<(NewEvent, Reply)>,
}

impl IngestWriter {
    /// Starts the writer task on the current runtime.
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (queue, jobs) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(write_batches(store, jobs));
        Self { queue }
    }

    /// Whether the writer task still takes work (readiness depends on it).
    pub fn is_running(&self) -> bool {
        !self.queue.is_closed()
    }

    /// Stores the event (unless one with its id is stored) and returns once
    /// that is committed.
    pub async fn insert(&self, event: NewEvent) -> Result<InsertOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((event, reply))
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }
}

async fn write_batches(store: Arc<dyn Store>, mut jobs: mpsc::Receiver<(NewEvent, Reply)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (events, replies): (Vec<NewEvent>, Vec<Reply>) = batch.drain(..).unzip();
        match store.insert_events(&events).await {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    // A handler that gave up (its client left) needs no answer.
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(error) => {
                let error = Arc::new(error);
                tracing::error!(
                    error = %crate::telemetry::error_chain(error.as_ref()),
                    events = events.len(),
                    "cannot store a batch of webhooks; each is answered 500 and Stripe retries it"
                );
                for reply in replies {
                    let _ = reply.send(Err(StoreError::BatchFailed(error.clone())));
                }
            }
        }
    }
}
