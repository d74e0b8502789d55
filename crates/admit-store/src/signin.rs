//! One-time sign-in tokens: the link in an onboarding email. Only a hash of
//! the token is stored; redeeming marks it used.

use admit_core::{Email, Role, Timestamp, WorkspaceId};

use crate::StoreError;

/// What a redeemed token grants: who, into which workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedeemedToken {
    pub workspace: WorkspaceId,
    pub email: Email,
    /// The role at redemption time: membership is checked again, not assumed.
    pub role: Role,
}

#[async_trait::async_trait]
pub trait SigninStore: Send + Sync {
    /// Stores a token's hash. A retried message gets a fresh token: the
    /// unused tokens of the same message are withdrawn first.
    async fn issue_signin_token(
        &self,
        token_hash: &str,
        workspace: &WorkspaceId,
        email: &Email,
        outbox_id: Option<i64>,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Marks the token used, once, if its email is still a member of its
    /// workspace. `TokenNotFound`, `TokenUsed`, `TokenExpired` or
    /// `TokenNotAMember` (the token stays unused) otherwise.
    async fn redeem_signin_token(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<RedeemedToken, StoreError>;
}
