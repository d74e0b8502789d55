-- The inbox: every signature-verified Stripe event, exactly as received.
-- The event id is the idempotency key: a redelivery inserts nothing.
CREATE TABLE stripe_events (
    id              TEXT PRIMARY KEY NOT NULL,
    type            TEXT NOT NULL,
    created         INTEGER NOT NULL,
    api_version     TEXT,
    livemode        INTEGER NOT NULL CHECK (livemode IN (0, 1)),
    object_type     TEXT NOT NULL,
    object_id       TEXT,
    customer_id     TEXT,
    metadata        TEXT NOT NULL,            -- JSON object of string metadata
    payload         BLOB NOT NULL,            -- the raw body, byte for byte
    headers         TEXT NOT NULL,            -- JSON object of the headers that matter
    source          TEXT NOT NULL,            -- webhook | api_fetch | backfill
    received_at     INTEGER NOT NULL,         -- unix seconds
    status          TEXT NOT NULL DEFAULT 'received'
                    CHECK (status IN ('received', 'processed', 'held', 'ignored', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    last_error      TEXT,
    processed_at    INTEGER
) STRICT;

CREATE INDEX stripe_events_by_status ON stripe_events (status, next_attempt_at, received_at);
CREATE INDEX stripe_events_by_customer ON stripe_events (customer_id);
CREATE INDEX stripe_events_by_object ON stripe_events (object_id);
