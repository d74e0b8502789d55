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
