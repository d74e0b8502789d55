use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("unsupported database URL: {reason}")]
    UnsupportedUrl { reason: &'static str },
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("migration failed")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error(
        "the database schema is behind: migration {missing} is not applied (run `admit migrate`)"
    )]
    NotMigrated { missing: i64 },
    #[error("a workspace with this id already exists")]
    WorkspaceExists,
    #[error("no workspace with this id")]
    WorkspaceNotFound,
    #[error(
        "the workspace has a running subscription; it ends (or is canceled) before the workspace is removed"
    )]
    WorkspaceHasSubscription,
    #[error("support has held cases about the workspace; resolve them before it is removed")]
    WorkspaceHasHeldCases,
    #[error("the workspace's last owner cannot be removed or demoted")]
    LastOwner,
    #[error("this email is not a member of the workspace")]
    MemberNotFound,
    #[error("an operator with this name already exists")]
    OperatorExists,
    #[error("no case with this id")]
    CaseNotFound,
    #[error("the case is already resolved")]
    CaseAlreadyResolved,
    #[error("the resolution does not fit the case: {0}")]
    ResolutionInvalid(&'static str),
    #[error("the provisioning decision failed: {0}")]
    Decision(String),
    #[error("no sign-in token like this was issued")]
    TokenNotFound,
    #[error("this sign-in link was already used")]
    TokenUsed,
    #[error("this sign-in link has expired")]
    TokenExpired,
    #[error("the person this link was for is no longer a member of the workspace")]
    TokenNotAMember,
    #[error("no outbox message with this id")]
    OutboxNotFound,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The transaction that held this write (with others) failed.
    #[error("the batch this write was part of failed")]
    BatchFailed(#[source] std::sync::Arc<StoreError>),
    #[error("the ingest writer has stopped")]
    WriterStopped,
}

impl StoreError {
    /// The error with its causes, for an event's `last_error` and logs.
    pub(crate) fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }

    /// A PostgreSQL deadlock, serialisation failure or lock timeout: the
    /// transaction lost a race with another instance and can run again.
    pub(crate) fn is_lost_race(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => {
                matches!(e.code().as_deref(), Some("40P01" | "40001" | "55P03"))
            }
            StoreError::BatchFailed(inner) => inner.is_lost_race(),
            _ => false,
        }
    }
}
