//! Which pooled connections may be used again, and the write probe's
//! bookkeeping: both dialects' pools ask [`PoolHealth::keep`] before they
//! hand out an idle connection.
//!
//! Two kinds of connection are closed instead:
//!
//! - One still inside a transaction. A transaction whose `COMMIT` failed
//!   (SQLite on a full disk: `SQLITE_FULL`, and SQLite has already rolled
//!   the transaction back) is rolled back again when dropped; that
//!   `ROLLBACK` fails too ("no transaction is active"), so sqlx's count of
//!   open transactions on the connection stays at 1, the pool's ping still
//!   succeeds, and the connection went back to the pool. Every later
//!   `begin_with("BEGIN IMMEDIATE")` on it then failed with "attempted to
//!   call begin_with at non-zero transaction depth", and left it so: one
//!   bad commit poisoned a connection for good (issue 14). The check is
//!   made after the pool's ping on acquire (`test_before_acquire`), which
//!   runs behind the rollback a dropped transaction queued, so the count
//!   is settled by then and a healthy connection is never closed for it.
//!   It is made here, in the pool, rather than where each of the store's
//!   transactions begins and commits: a `Transaction` owns its pooled
//!   connection and offers no way to close it, and any of them (a
//!   savepoint's release too) can be the one that fails. (sqlx's
//!   PostgreSQL driver lowers the count when it queues a rollback, so
//!   there the rule is a safeguard.)
//! - One opened before a write probe failed, or before the first probe
//!   that succeeded after one failed. Such a connection may never write
//!   again: SQLite opens a file it may not write read-only (quietly, and
//!   for good), a PostgreSQL session keeps the `default_transaction_read_only`
//!   it started with (a standby's, say). Replaced as they are next taken
//!   from the pool, the connections of the time writes failed do not fail
//!   the writes after it: once the probe passes, so do they.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use sqlx::pool::PoolConnectionMetadata;

#[derive(Debug)]
pub(crate) struct PoolHealth {
    /// When this was made, before the pool's first connection: what
    /// `replace_before` counts from.
    origin: Instant,
    /// Connections opened before this many nanoseconds after `origin` are
    /// closed when next acquired (0: none). An atomic, not a lock: every
    /// acquire reads it.
    replace_before: AtomicU64,
    /// Whether the last write probe failed.
    probe_failed: AtomicBool,
}

impl PoolHealth {
    pub(crate) fn new() -> Self {
        Self {
            origin: Instant::now(),
            replace_before: AtomicU64::new(0),
            probe_failed: AtomicBool::new(false),
        }
    }

    /// Nanoseconds from `origin` to `at` (0 before it).
    fn since_origin(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether an idle connection may be handed out again (`false`: the
    /// pool closes it and opens another). Cheap: no statement runs.
    pub(crate) fn keep(&self, in_transaction: bool, meta: &PoolConnectionMetadata) -> bool {
        if in_transaction {
            tracing::warn!(
                "a pooled database connection is still inside a transaction (a COMMIT or \
                 ROLLBACK on it failed): it is closed, not used again"
            );
            return false;
        }
        let replace_before = self.replace_before.load(Ordering::Acquire);
        let opened = Instant::now()
            .checked_sub(meta.age)
            .map_or(0, |opened| self.since_origin(opened));
        if opened < replace_before {
            tracing::info!("replacing a database connection opened before a write probe");
            return false;
        }
        true
    }

    /// Records a write probe's outcome: a failure, and the first success
    /// after one, have every connection opened until now replaced.
    pub(crate) fn probed(&self, ok: bool) {
        let failed_before = self.probe_failed.swap(!ok, Ordering::AcqRel);
        if !ok || failed_before {
            self.replace_before
                .store(self.since_origin(Instant::now()).max(1), Ordering::Release);
            if ok {
                tracing::info!(
                    "the database can be written again; connections opened before are replaced"
                );
            }
        }
    }
}
