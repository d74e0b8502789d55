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
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}
