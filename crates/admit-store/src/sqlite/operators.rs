//! SQLite side of console operators, their sessions and sign-in attempts.
//!
//! Every change takes the write lock up front (`BEGIN IMMEDIATE`), so a
//! change and its audit entry commit together and a setup token, redeemed
//! by one conditional update, is redeemed once.

use admit_core::{OperatorRole, Timestamp};

use super::SqliteStore;
use super::audit;
use crate::StoreError;
use crate::directory::Actor;
use crate::operators::{
    LOGIN_FAILURE_MEMORY_SECS, Operator, OperatorCredentials, OperatorSecret, OperatorSession,
    OperatorStore, first_idle_end, operator_audit, role_json, self_actor, session_live,
    slid_idle_end,
};
use crate::rows::{Columns, operator_row};
use crate::values::corrupt;

const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

#[async_trait::async_trait]
impl OperatorStore for SqliteStore {
    async fn add_operator(
        &self,
        name: &str,
        role: OperatorRole,
        secret: &OperatorSecret,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<Operator, StoreError> {
        let (password_hash, token_hash, token_expires_at) = match secret {
            OperatorSecret::PasswordHash(hash) => (Some(hash.as_str()), None, None),
            OperatorSecret::SetupToken {
                token_hash,
                expires_at,
            } => (None, Some(token_hash.as_str()), Some(expires_at.unix())),
        };
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let inserted = sqlx::query(
            "INSERT INTO operators (name, role, password_hash, setup_token_hash, setup_expires_at,
                 created_at)
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(password_hash)
        .bind(token_hash)
        .bind(token_expires_at)
        .bind(now.unix())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::OperatorExists);
        }
        audit::insert(
            &mut tx,
            &operator_audit(
                "operator.added",
                name,
                actor.to_string(),
                None,
                Some(role_json(role)),
                now,
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(Operator {
            name: name.to_owned(),
            role,
            created_at: now,
            password_set: password_hash.is_some(),
        })
    }

    async fn operators(&self) -> Result<Vec<Operator>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, role, created_at, password_hash IS NOT NULL AS password_set
             FROM operators ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(operator_row).collect()
    }

    async fn operator_credentials(
        &self,
        name: &str,
    ) -> Result<Option<OperatorCredentials>, StoreError> {
        let row = sqlx::query(
            "SELECT name, role, created_at, password_hash IS NOT NULL AS password_set,
                    password_hash
             FROM operators WHERE name = ?",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(OperatorCredentials {
                operator: operator_row(&row)?,
                password_hash: row.maybe_text("password_hash")?,
            })
        })
        .transpose()
    }

    async fn remove_operator(
        &self,
        name: &str,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        // The foreign key cascades too; said here so that no session
        // outlives its operator whatever the connection's settings.
        sqlx::query("DELETE FROM operator_sessions WHERE operator_name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let role: Option<String> =
            sqlx::query_scalar("DELETE FROM operators WHERE name = ? RETURNING role")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(role) = role else {
            return Ok(false);
        };
        let role = crate::values::parse_operator_role(&role)?;
        audit::insert(
            &mut tx,
            &operator_audit(
                "operator.removed",
                name,
                actor.to_string(),
                Some(role_json(role)),
                None,
                now,
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn complete_operator_setup(
        &self,
        token_hash: &str,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<Option<Operator>, StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        // One statement checks and spends the token: a second redemption
        // finds it cleared.
        let row = sqlx::query(
            "UPDATE operators
             SET password_hash = ?, setup_token_hash = NULL, setup_expires_at = NULL
             WHERE setup_token_hash = ? AND setup_expires_at > ?
             RETURNING name, role, created_at, password_hash IS NOT NULL AS password_set",
        )
        .bind(password_hash)
        .bind(token_hash)
        .bind(now.unix())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let operator = operator_row(&row)?;
        audit::insert(
            &mut tx,
            &operator_audit(
                "operator.password_set",
                &operator.name,
                self_actor(&operator.name),
                None,
                None,
                now,
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(operator))
    }

    async fn start_operator_session(
        &self,
        session_hash: &str,
        name: &str,
        now: Timestamp,
        expires_at: Timestamp,
        idle_secs: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        // The operator's ended sessions go as a new one starts.
        sqlx::query(
            "DELETE FROM operator_sessions
             WHERE operator_name = ? AND (expires_at <= ? OR idle_expires_at <= ?)",
        )
        .bind(name)
        .bind(now.unix())
        .bind(now.unix())
        .execute(&mut *tx)
        .await?;
        // From the operator's row: an operator removed meanwhile gets no session.
        let started = sqlx::query(
            "INSERT INTO operator_sessions (session_hash, operator_name, created_at, expires_at,
                 idle_expires_at, last_seen_at)
             SELECT ?, name, ?, ?, ?, ? FROM operators WHERE name = ?",
        )
        .bind(session_hash)
        .bind(now.unix())
        .bind(expires_at.unix())
        .bind(first_idle_end(expires_at, now, idle_secs))
        .bind(now.unix())
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if started == 0 {
            return Ok(());
        }
        audit::insert(
            &mut tx,
            &operator_audit(
                "operator.signed_in",
                name,
                self_actor(name),
                None,
                None,
                now,
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn operator_session(
        &self,
        session_hash: &str,
        now: Timestamp,
        idle_secs: i64,
    ) -> Result<Option<OperatorSession>, StoreError> {
        let row = sqlx::query(
            "SELECT s.expires_at, s.idle_expires_at, o.name, o.role, o.created_at,
                    o.password_hash IS NOT NULL AS password_set
             FROM operator_sessions s JOIN operators o ON o.name = s.operator_name
             WHERE s.session_hash = ?",
        )
        .bind(session_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let expires_at = row.int("expires_at")?;
        let idle_expires_at = row.int("idle_expires_at")?;
        if !session_live(expires_at, idle_expires_at, now) {
            return Ok(None);
        }
        if let Some(end) = slid_idle_end(expires_at, idle_expires_at, now, idle_secs) {
            // Only forward: a concurrent read that moved it further wins.
            sqlx::query(
                "UPDATE operator_sessions SET idle_expires_at = ?, last_seen_at = ?
                 WHERE session_hash = ? AND idle_expires_at < ?",
            )
            .bind(end)
            .bind(now.unix())
            .bind(session_hash)
            .bind(end)
            .execute(&self.pool)
            .await?;
        }
        Ok(Some(OperatorSession {
            operator: operator_row(&row)?,
            expires_at: Timestamp::from_unix(expires_at),
        }))
    }

    async fn end_operator_session(
        &self,
        session_hash: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let name: Option<String> = sqlx::query_scalar(
            "DELETE FROM operator_sessions WHERE session_hash = ? RETURNING operator_name",
        )
        .bind(session_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(name) = name else {
            return Ok(());
        };
        audit::insert(
            &mut tx,
            &operator_audit(
                "operator.signed_out",
                &name,
                self_actor(&name),
                None,
                None,
                now,
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn count_login_attempt(
        &self,
        key: &str,
        now: Timestamp,
        since: Timestamp,
    ) -> Result<u64, StoreError> {
        // The write lock, taken up front, orders concurrent attempts: each
        // counts every attempt committed before it and its own.
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        sqlx::query("DELETE FROM operator_login_failures WHERE at < ?")
            .bind(now.unix() - LOGIN_FAILURE_MEMORY_SECS)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO operator_login_failures (key, at) VALUES (?, ?)")
            .bind(key)
            .bind(now.unix())
            .execute(&mut *tx)
            .await?;
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM operator_login_failures WHERE key = ? AND at >= ?",
        )
        .bind(key)
        .bind(since.unix())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        u64::try_from(count).map_err(corrupt)
    }

    async fn clear_login_attempts(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM operator_login_failures WHERE key = ?")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn setup_token_operator(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT name FROM operators WHERE setup_token_hash = ? AND setup_expires_at > ?",
        )
        .bind(token_hash)
        .bind(now.unix())
        .fetch_optional(&self.pool)
        .await?)
    }
}
