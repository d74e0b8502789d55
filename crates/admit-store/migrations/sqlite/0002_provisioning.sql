-- Provisioning: workspaces and members, what binds payments to them, the
-- derived billing state, held cases, the outbox and the audit log.

-- Inbox columns the processor uses to find everything an event relates to.
ALTER TABLE stripe_events ADD COLUMN subscription_id TEXT;
ALTER TABLE stripe_events ADD COLUMN checkout_session_id TEXT;
ALTER TABLE stripe_events ADD COLUMN workspace_hint TEXT;   -- metadata.workspace_id as sent
ALTER TABLE stripe_events ADD COLUMN purchaser_email TEXT;  -- normalised, to find the workspaces it administers
ALTER TABLE stripe_events ADD COLUMN lease_until INTEGER;   -- a worker holds the event until then
ALTER TABLE stripe_events ADD COLUMN outcome TEXT;          -- machine-readable reason of the status
CREATE INDEX stripe_events_by_subscription ON stripe_events (subscription_id);
CREATE INDEX stripe_events_by_session ON stripe_events (checkout_session_id);
CREATE INDEX stripe_events_by_workspace_hint ON stripe_events (workspace_hint);
CREATE INDEX stripe_events_claimable ON stripe_events (status, next_attempt_at)
    WHERE status IN ('received', 'failed');

CREATE TABLE workspaces (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE members (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    email        TEXT NOT NULL,                 -- normalised: trimmed, lower-case
    role         TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    added_at     INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, email)
) STRICT;
CREATE INDEX members_by_email ON members (email);

-- Checkout sessions admit created: the trusted binding of a session id.
CREATE TABLE checkout_intents (
    session_id      TEXT PRIMARY KEY NOT NULL,
    workspace_id    TEXT NOT NULL REFERENCES workspaces (id),
    initiator_email TEXT NOT NULL,
    purchaser_email TEXT,
    plan            TEXT NOT NULL,
    created_at      INTEGER NOT NULL
) STRICT;

-- Bindings that do not come from events: customers admit created for a
-- workspace, operators' `bind` / `invite_purchaser` resolutions, workspaces
-- created for unmatched purchases. `kind` says what `stripe_id` is:
-- a customer id, or a purchase (subscription id, or checkout session id for
-- one-time payments).
CREATE TABLE bindings (
    kind         TEXT NOT NULL CHECK (kind IN ('customer', 'purchase')),
    stripe_id    TEXT NOT NULL,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    source       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (kind, stripe_id)
) STRICT;

-- Derived from the events; rewritten by each derivation of its scope.
CREATE TABLE billing_states (
    workspace_id           TEXT PRIMARY KEY NOT NULL REFERENCES workspaces (id),
    subscription_status    TEXT,
    subscription_plan      TEXT,
    stripe_customer_id     TEXT,
    stripe_subscription_id TEXT,
    current_period_end     INTEGER,
    cancel_at_period_end   INTEGER NOT NULL DEFAULT 0,
    purchaser_email        TEXT,
    updated_by_event       TEXT,
    past_due_since         INTEGER,
    updated_at             INTEGER NOT NULL
) STRICT;

-- Derived: which workspace each subscription and customer was bound to, so
-- that a later event finds the other events of the same workspace.
CREATE TABLE stripe_links (
    kind         TEXT NOT NULL CHECK (kind IN ('subscription', 'customer', 'session')),
    stripe_id    TEXT NOT NULL,
    workspace_id TEXT NOT NULL,
    PRIMARY KEY (kind, stripe_id, workspace_id)
) STRICT;
CREATE INDEX stripe_links_by_workspace ON stripe_links (workspace_id);

CREATE TABLE cases (
    id                     TEXT PRIMARY KEY NOT NULL,
    case_key               TEXT NOT NULL UNIQUE,   -- what the case is about; one case per key
    kind                   TEXT NOT NULL,
    workspace_id           TEXT,
    purchaser_email        TEXT,
    stripe_customer_id     TEXT,
    stripe_subscription_id TEXT,
    checkout_session_id    TEXT,
    event_ids              TEXT NOT NULL,          -- JSON array
    details                TEXT NOT NULL,          -- JSON object: candidates, prices, …
    state                  TEXT NOT NULL CHECK (state IN ('held', 'resolved')),
    resolution             TEXT,                   -- auto | bind | invite_purchaser | mark_refunded | dismiss
    resolution_workspace   TEXT,
    resolution_role        TEXT,
    resolution_note        TEXT,
    resolved_by            TEXT,
    created_at             INTEGER NOT NULL,
    resolved_at            INTEGER
) STRICT;
CREATE INDEX cases_by_state ON cases (state, created_at);

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    workspace_id    TEXT,
    about           TEXT,                          -- the purchase (subscription or session id)
    case_key        TEXT,
    payload         TEXT NOT NULL,                 -- JSON: what the template needs
    state           TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'dead', 'superseded')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER
) STRICT;
CREATE INDEX outbox_by_state ON outbox (state, next_attempt_at);
CREATE INDEX outbox_by_about ON outbox (about);

CREATE TABLE audit_log (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           INTEGER NOT NULL,
    actor        TEXT NOT NULL,   -- stripe:evt_… | api | admin:… | system
    action       TEXT NOT NULL,
    workspace_id TEXT,
    subject      TEXT,            -- what changed: billing, member:…, case:…
    before       TEXT,            -- JSON
    after        TEXT,            -- JSON
    cause        TEXT
) STRICT;
CREATE INDEX audit_by_workspace ON audit_log (workspace_id, id);
