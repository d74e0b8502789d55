-- The console's operators, their sign-in sessions and failed sign-ins.
-- Secrets are never stored: a password as its argon2 PHC string, a setup
-- or session token as the hex SHA-256 of the token.
CREATE TABLE operators (
    name             TEXT PRIMARY KEY,
    role             TEXT NOT NULL CHECK (role IN ('viewer', 'support', 'admin')),
    password_hash    TEXT,                  -- NULL until the setup link is redeemed
    setup_token_hash TEXT UNIQUE,           -- cleared when redeemed
    setup_expires_at BIGINT,
    created_at       BIGINT NOT NULL
);

CREATE TABLE operator_sessions (
    session_hash    TEXT PRIMARY KEY,
    operator_name   TEXT NOT NULL REFERENCES operators (name) ON DELETE CASCADE,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,    -- the absolute end
    idle_expires_at BIGINT NOT NULL,    -- moved on by use, never past expires_at
    last_seen_at    BIGINT NOT NULL
);
CREATE INDEX operator_sessions_by_operator ON operator_sessions (operator_name);

-- One row a sign-in attempt, by a key the caller chooses (an operator name
-- as typed, a client address); a successful sign-in deletes its key's rows,
-- and every key's rows older than a day are deleted as new ones arrive
-- (by `operator_login_failures_by_at`).
CREATE TABLE operator_login_failures (
    key TEXT NOT NULL,
    at  BIGINT NOT NULL
);
CREATE INDEX operator_login_failures_by_key ON operator_login_failures (key, at);
CREATE INDEX operator_login_failures_by_at ON operator_login_failures (at);

-- The console's workspace list pages newest first, ids in byte order as
-- the list compares them (COLLATE "C", see postgres/list.rs).
CREATE INDEX workspaces_by_created ON workspaces (created_at, id COLLATE "C");

-- The console's search by a purchaser's email (the events list's filter).
CREATE INDEX stripe_events_by_purchaser_email ON stripe_events (purchaser_email)
    WHERE purchaser_email IS NOT NULL;

-- The row `/readyz` rewrites every few seconds to find out whether the
-- database can be written (a full disk, a read-only database): one row,
-- which every instance on the database shares.
-- `probes` counts the writes, so each one changes the row (as on SQLite,
-- where a row rewritten unchanged is not written at all).
CREATE TABLE readiness_probe (
    id        SMALLINT PRIMARY KEY CHECK (id = 1),
    probed_at BIGINT NOT NULL,
    probes    BIGINT NOT NULL
);
