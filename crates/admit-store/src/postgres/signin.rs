//! PostgreSQL side of sign-in tokens.
//!
//! Redemption is single-use across instances: the token's row is locked
//! (`FOR UPDATE`) before it is checked, so a second redemption of the same
//! token waits for the first and then reads it as used.

use admit_core::{Email, Timestamp, WorkspaceId};
use sqlx::Row;

use super::PgStore;
use crate::StoreError;
use crate::signin::{RedeemedToken, SigninStore};
use crate::values::{parse_email, parse_role, parse_workspace};

#[async_trait::async_trait]
impl SigninStore for PgStore {
    async fn issue_signin_token(
        &self,
        token_hash: &str,
        workspace: &WorkspaceId,
        email: &Email,
        outbox_id: Option<i64>,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        super::retrying(|| async move {
            let mut tx = self.pool.begin().await?;
            if let Some(outbox_id) = outbox_id {
                sqlx::query("DELETE FROM signin_tokens WHERE outbox_id = $1 AND used_at IS NULL")
                    .bind(outbox_id)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "INSERT INTO signin_tokens (token_hash, workspace_id, email, outbox_id, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(token_hash)
            .bind(workspace.as_str())
            .bind(email.as_str())
            .bind(outbox_id)
            .bind(now.unix())
            .bind(expires_at.unix())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn redeem_signin_token(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<RedeemedToken, StoreError> {
        super::retrying(|| async move {
            let mut tx = self.pool.begin().await?;
            // The row lock makes the checks below and the update one step: a
            // concurrent redemption waits here, then reads the row as this
            // transaction left it (used, or untouched if this one refused).
            let row = sqlx::query(
                "SELECT workspace_id, email, expires_at, used_at FROM signin_tokens
                 WHERE token_hash = $1 FOR UPDATE",
            )
            .bind(token_hash)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::TokenNotFound)?;
            let used: Option<i64> = row.try_get("used_at")?;
            if used.is_some() {
                return Err(StoreError::TokenUsed);
            }
            let expires_at: i64 = row.try_get("expires_at")?;
            if now.unix() >= expires_at {
                return Err(StoreError::TokenExpired);
            }
            let workspace: String = row.try_get("workspace_id")?;
            let email: String = row.try_get("email")?;
            let role: Option<String> = sqlx::query_scalar(
                "SELECT role FROM members WHERE workspace_id = $1 AND email = $2",
            )
            .bind(&workspace)
            .bind(&email)
            .fetch_optional(&mut *tx)
            .await?;
            let role = role
                .as_deref()
                .map(parse_role)
                .transpose()?
                .ok_or(StoreError::TokenNotAMember)?;
            let marked = sqlx::query(
                "UPDATE signin_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL",
            )
            .bind(now.unix())
            .bind(token_hash)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            // Unreachable while the row is locked; kept so that a token is never
            // granted twice whatever the isolation level.
            if marked != 1 {
                return Err(StoreError::TokenUsed);
            }
            tx.commit().await?;
            Ok(RedeemedToken {
                workspace: parse_workspace(workspace)?,
                email: parse_email(&email)?,
                role,
            })
        })
        .await
    }
}
