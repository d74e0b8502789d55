//! SQLite side of sign-in tokens.

use admit_core::{Email, Role, Timestamp, WorkspaceId};
use sqlx::Row;

use super::SqliteStore;
use crate::StoreError;
use crate::signin::{RedeemedToken, SigninStore};

#[async_trait::async_trait]
impl SigninStore for SqliteStore {
    async fn issue_signin_token(
        &self,
        token_hash: &str,
        workspace: &WorkspaceId,
        email: &Email,
        outbox_id: Option<i64>,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if let Some(outbox_id) = outbox_id {
            sqlx::query("DELETE FROM signin_tokens WHERE outbox_id = ? AND used_at IS NULL")
                .bind(outbox_id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO signin_tokens (token_hash, workspace_id, email, outbox_id, created_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?)",
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
    }

    async fn redeem_signin_token(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<RedeemedToken, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let row = sqlx::query("SELECT workspace_id, email, expires_at, used_at FROM signin_tokens WHERE token_hash = ?")
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
        let role: Option<String> =
            sqlx::query_scalar("SELECT role FROM members WHERE workspace_id = ? AND email = ?")
                .bind(&workspace)
                .bind(&email)
                .fetch_optional(&mut *tx)
                .await?;
        let role = role
            .as_deref()
            .map(|r| {
                Role::parse(r).ok_or_else(|| StoreError::Corrupt("unknown member role".into()))
            })
            .transpose()?
            .ok_or(StoreError::TokenNotAMember)?;
        sqlx::query(
            "UPDATE signin_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL",
        )
        .bind(now.unix())
        .bind(token_hash)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(RedeemedToken {
            workspace: WorkspaceId::parse(workspace)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            email: Email::parse(&email).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            role,
        })
    }
}
