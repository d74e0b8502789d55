//! PostgreSQL side of console operators, their sessions and sign-in attempts.
//!
//! A setup token is redeemed by one conditional update: a concurrent
//! redemption waits for the row and then finds the token cleared. Each
//! change runs with [`super::retrying`], as every short operator path does.

use admit_core::{OperatorRole, Timestamp};

use super::PgStore;
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

#[async_trait::async_trait]
impl OperatorStore for PgStore {
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
        super::retrying(|| async move {
            let mut tx = self.pool.begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO operators (name, role, password_hash, setup_token_hash, setup_expires_at,
                     created_at)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING",
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
        })
        .await
    }

    async fn operators(&self) -> Result<Vec<Operator>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, role, created_at, password_hash IS NOT NULL AS password_set
             FROM operators ORDER BY name COLLATE \"C\"",
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
             FROM operators WHERE name = $1",
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
        super::retrying(|| async move {
            let mut tx = self.pool.begin().await?;
            // The foreign key cascades too; said here so that no session
            // outlives its operator whatever the connection's settings.
            sqlx::query("DELETE FROM operator_sessions WHERE operator_name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            let role: Option<String> =
                sqlx::query_scalar("DELETE FROM operators WHERE name = $1 RETURNING role")
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
        })
        .await
    }

    async fn complete_operator_setup(
        &self,
        token_hash: &str,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<Option<Operator>, StoreError> {
        super::retrying(|| async move {
            let mut tx = self.pool.begin().await?;
            // One statement checks and spends the token: a second redemption
            // finds it cleared.
            let row = sqlx::query(
                "UPDATE operators
                 SET password_hash = $1, setup_token_hash = NULL, setup_expires_at = NULL
                 WHERE setup_token_hash = $2 AND setup_expires_at > $3
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
        })
        .await
    }

    async fn start_operator_session(
        &self,
        session_hash: &str,
        name: &str,
        now: Timestamp,
        expires_at: Timestamp,
        idle_secs: i64,
    ) -> Result<(), StoreError> {
        super::retrying(|| async move {
            let mut tx = self.pool.begin().await?;
            // The operator's ended sessions go as a new one starts.
            sqlx::query(
                "DELETE FROM operator_sessions
                 WHERE operator_name = $1 AND (expires_at <= $2 OR idle_expires_at <= $3)",
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
                 SELECT $1, name, $2, $3, $4, $5 FROM operators WHERE name = $6",
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
        })
        .await
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
             WHERE s.session_hash = $1",
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
                "UPDATE operator_sessions SET idle_expires_at = $1, last_seen_at = $2
                 WHERE session_hash = $3 AND idle_expires_at < $4",
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
        super::retrying(|| async move {
            let mut tx = self.pool.begin().await?;
            let name: Option<String> = sqlx::query_scalar(
                "DELETE FROM operator_sessions WHERE session_hash = $1 RETURNING operator_name",
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
        })
        .await
    }

    async fn count_login_attempt(
        &self,
        key: &str,
        now: Timestamp,
        since: Timestamp,
    ) -> Result<u64, StoreError> {
        super::retrying(|| async move {
            let mut tx = self.pool.begin().await?;
            // Concurrent attempts on one key wait for each other here; each
            // statement after it (READ COMMITTED) sees every attempt
            // committed before, so each counts those and its own.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(format!("login:{key}"))
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM operator_login_failures WHERE at < $1")
                .bind(now.unix() - LOGIN_FAILURE_MEMORY_SECS)
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO operator_login_failures (key, at) VALUES ($1, $2)")
                .bind(key)
                .bind(now.unix())
                .execute(&mut *tx)
                .await?;
            let count: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM operator_login_failures WHERE key = $1 AND at >= $2",
            )
            .bind(key)
            .bind(since.unix())
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            u64::try_from(count).map_err(corrupt)
        })
        .await
    }

    async fn clear_login_attempts(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM operator_login_failures WHERE key = $1")
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
            "SELECT name FROM operators WHERE setup_token_hash = $1 AND setup_expires_at > $2",
        )
        .bind(token_hash)
        .bind(now.unix())
        .fetch_optional(&self.pool)
        .await?)
    }
}
