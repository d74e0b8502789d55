//! The one loop every background worker runs (the inbox processor, the
//! outbox sender): do a step while there is work, sleep until woken or the
//! poll interval passes, and stop claiming as soon as shutdown begins. What
//! a step holds when the grace period runs out is given back by
//! [`Worker::release`], so a restart takes it at once instead of waiting for
//! a lease to expire.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use admit_store::StoreError;
use tokio::sync::{Notify, watch};

use crate::telemetry::error_chain;

/// One kind of background work.
pub trait Worker: Clone + Send + Sync + 'static {
    /// For logs.
    const NAME: &'static str;

    /// One unit of work: `Ok(true)` when something was done, `Ok(false)`
    /// when nothing is due.
    fn step(&self) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Gives back the lease of whatever a cut-short step was holding.
    fn release(&self) -> impl Future<Output = ()> + Send;
}

/// What a worker is holding right now: set after a claim, cleared when the
/// step ends normally. A step dropped mid-way leaves it set, for `release`.
#[derive(Debug)]
pub struct InFlight<T>(Arc<Mutex<Option<T>>>);

impl<T> Clone for InFlight<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Default for InFlight<T> {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(None)))
    }
}

impl<T: Clone> InFlight<T> {
    pub fn hold(&self, item: T) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(item);
        }
    }

    pub fn done(&self) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = None;
        }
    }

    /// What was held, emptying the slot.
    pub fn take(&self) -> Option<T> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

impl<T: Default> InFlight<T> {
    /// Works on what is held (an empty `T` when nothing is); `None` if the
    /// lock is poisoned.
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        let mut slot = self.0.lock().ok()?;
        Some(f(slot.get_or_insert_with(T::default)))
    }
}

/// Runs `worker` until `stop` turns true: steps back to back while there is
/// work, checking `stop` between steps, and otherwise waits for `wake` or
/// `poll`. A step in progress when `stop` turns is finished, not cut: the
/// caller bounds it with the grace period.
pub async fn run<W: Worker>(
    worker: W,
    wake: Arc<Notify>,
    poll: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        match worker.step().await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(error) => tracing::error!(
                worker = W::NAME,
                error = %error_chain(&error),
                "background step failed; retrying"
            ),
        }
        tokio::select! {
            _ = stop.changed() => {}
            () = wake.notified() => {}
            () = tokio::time::sleep(poll) => {}
        }
    }
}

/// Waits for `task` until `deadline`; past it, cuts the task short and lets
/// `worker` give back what it held. Returns whether the task finished in time.
pub async fn finish_or_cut<W: Worker>(
    worker: &W,
    mut task: tokio::task::JoinHandle<()>,
    deadline: tokio::time::Instant,
) -> bool {
    match tokio::time::timeout_at(deadline, &mut task).await {
        // Stopped between steps: what it claimed ahead (the processor's
        // batch) and did not start is given back too.
        Ok(Ok(())) => {
            worker.release().await;
            true
        }
        // A step that panicked holds its lease too.
        Ok(Err(error)) => {
            tracing::error!(worker = W::NAME, error = %error, "background worker ended abnormally");
            worker.release().await;
            true
        }
        Err(_) => {
            task.abort();
            let _ = task.await;
            worker.release().await;
            tracing::warn!(
                worker = W::NAME,
                "shutdown grace period over: in-flight work released for the next start"
            );
            false
        }
    }
}
