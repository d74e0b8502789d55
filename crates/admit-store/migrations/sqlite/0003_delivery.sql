-- Delivery: one-time sign-in tokens (only their hash is stored).
CREATE TABLE signin_tokens (
    token_hash   TEXT PRIMARY KEY NOT NULL,   -- hex SHA-256 of the token
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    email        TEXT NOT NULL,
    outbox_id    INTEGER,                     -- the message that carried it
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    used_at      INTEGER
) STRICT;
CREATE INDEX signin_tokens_by_outbox ON signin_tokens (outbox_id);
