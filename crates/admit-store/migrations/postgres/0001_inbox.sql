-- PostgreSQL support began at schema version 10: this first migration
-- creates the whole schema as SQLite's migrations 1–10 leave it, and
-- migrations 2–10 of this dialect are empty. From version 11 on, both
-- dialects get each version's change in a file of the same number.
--
-- Types follow SQLite's: unix seconds as BIGINT, JSON as TEXT (the store
-- binds and reads the same values on both), booleans as BOOLEAN.

CREATE TABLE stripe_events (
    id                  TEXT PRIMARY KEY,
    type                TEXT NOT NULL,
    created             BIGINT NOT NULL,
    api_version         TEXT,
    livemode            BOOLEAN NOT NULL,
    object_type         TEXT NOT NULL,
    object_id           TEXT,
    customer_id         TEXT,
    metadata            TEXT NOT NULL,      -- JSON object of string metadata
    headers             TEXT NOT NULL,      -- JSON object of the headers that matter
    source              TEXT NOT NULL,      -- webhook | api_fetch | backfill
    received_at         BIGINT NOT NULL,    -- unix seconds
    status              TEXT NOT NULL DEFAULT 'received'
                        CHECK (status IN ('received', 'processed', 'held', 'ignored', 'failed')),
    attempts            BIGINT NOT NULL DEFAULT 0,
    next_attempt_at     BIGINT,
    last_error          TEXT,
    processed_at        BIGINT,
    subscription_id     TEXT,
    checkout_session_id TEXT,
    workspace_hint      TEXT,
    purchaser_email     TEXT,
    lease_until         BIGINT,
    outcome             TEXT,
    charge_id           TEXT,
    payment_intent_id   TEXT,
    scenario            TEXT,
    billing             TEXT,               -- JSON of admit_core::BillingEvent, as read at ingress
    received_ms         BIGINT
);
CREATE INDEX stripe_events_unsettled ON stripe_events (received_at, received_ms, id)
    WHERE status IN ('received', 'failed');
CREATE INDEX stripe_events_by_customer ON stripe_events (customer_id) WHERE customer_id IS NOT NULL;
CREATE INDEX stripe_events_by_object ON stripe_events (object_id) WHERE object_id IS NOT NULL;
CREATE INDEX stripe_events_by_subscription ON stripe_events (subscription_id)
    WHERE subscription_id IS NOT NULL;
CREATE INDEX stripe_events_by_session ON stripe_events (checkout_session_id)
    WHERE checkout_session_id IS NOT NULL;
CREATE INDEX stripe_events_by_workspace_hint ON stripe_events (workspace_hint)
    WHERE workspace_hint IS NOT NULL;
CREATE INDEX stripe_events_by_charge ON stripe_events (charge_id) WHERE charge_id IS NOT NULL;
CREATE INDEX stripe_events_by_payment_intent ON stripe_events (payment_intent_id)
    WHERE payment_intent_id IS NOT NULL;
CREATE INDEX stripe_events_ignored ON stripe_events (outcome, received_at) WHERE status = 'ignored';
CREATE INDEX stripe_events_by_received ON stripe_events (received_at DESC, id DESC);
CREATE INDEX stripe_events_by_source ON stripe_events (source, received_at);

CREATE TABLE stripe_event_bodies (
    id         TEXT PRIMARY KEY,               -- stripe_events.id
    payload    BYTEA NOT NULL,                 -- the body as stored (see encoding)
    encoding   TEXT NOT NULL DEFAULT 'identity',
    raw_length BIGINT
);

CREATE TABLE workspaces (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE members (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    email        TEXT NOT NULL,                 -- normalised: trimmed, lower-case
    role         TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    added_at     BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, email)
);
CREATE INDEX members_by_email ON members (email);

CREATE TABLE checkout_intents (
    session_id      TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL REFERENCES workspaces (id),
    initiator_email TEXT NOT NULL,
    purchaser_email TEXT,
    plan            TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);

CREATE TABLE bindings (
    kind         TEXT NOT NULL CHECK (kind IN ('customer', 'purchase')),
    stripe_id    TEXT NOT NULL,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    source       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (kind, stripe_id)
);

CREATE TABLE billing_states (
    workspace_id           TEXT PRIMARY KEY REFERENCES workspaces (id),
    subscription_status    TEXT,
    subscription_plan      TEXT,
    stripe_customer_id     TEXT,
    stripe_subscription_id TEXT,
    current_period_end     BIGINT,
    cancel_at_period_end   BOOLEAN NOT NULL DEFAULT FALSE,
    purchaser_email        TEXT,
    updated_by_event       TEXT,
    past_due_since         BIGINT,
    updated_at             BIGINT NOT NULL,
    cancel_at              BIGINT
);

CREATE TABLE stripe_links (
    kind         TEXT NOT NULL CHECK (kind IN ('subscription', 'customer', 'session')),
    stripe_id    TEXT NOT NULL,
    workspace_id TEXT NOT NULL,
    PRIMARY KEY (kind, stripe_id, workspace_id)
);
CREATE INDEX stripe_links_by_workspace ON stripe_links (workspace_id);

CREATE TABLE cases (
    id                     TEXT PRIMARY KEY,
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
    resolution             TEXT,
    resolution_workspace   TEXT,
    resolution_role        TEXT,
    resolution_note        TEXT,
    resolved_by            TEXT,
    created_at             BIGINT NOT NULL,
    resolved_at            BIGINT,
    scenario               TEXT
);
CREATE INDEX cases_by_state ON cases (state, created_at);
CREATE INDEX cases_by_kind ON cases (kind, state);

CREATE TABLE outbox (
    id              BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    workspace_id    TEXT,
    about           TEXT,                          -- the purchase (subscription or session id)
    case_key        TEXT,
    payload         TEXT NOT NULL,                 -- JSON: what the template needs
    state           TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'dead', 'superseded')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until     BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    sent_at         BIGINT
);
CREATE INDEX outbox_by_state ON outbox (state, next_attempt_at);
CREATE INDEX outbox_by_about ON outbox (about);

CREATE TABLE audit_log (
    id           BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    at           BIGINT NOT NULL,
    actor        TEXT NOT NULL,   -- stripe:evt_… | api | admin:… | system
    action       TEXT NOT NULL,
    workspace_id TEXT,
    subject      TEXT,
    before       TEXT,            -- JSON
    after        TEXT,            -- JSON
    cause        TEXT
);
CREATE INDEX audit_by_workspace ON audit_log (workspace_id, id);
CREATE INDEX audit_by_action ON audit_log (action, id);

CREATE TABLE signin_tokens (
    token_hash   TEXT PRIMARY KEY,             -- hex SHA-256 of the token
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    email        TEXT NOT NULL,
    outbox_id    BIGINT,                       -- the message that carried it
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT
);
CREATE INDEX signin_tokens_by_outbox ON signin_tokens (outbox_id);

CREATE TABLE webhook_rejections (
    hour  BIGINT NOT NULL,    -- unix seconds at the start of the hour
    code  TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (hour, code)
);

CREATE TABLE subscription_checkpoints (
    subscription_id TEXT PRIMARY KEY,
    through         BIGINT NOT NULL,   -- every event of the subscription created at or before this second…
    events          BIGINT NOT NULL,   -- …and how many (another count: read in full)
    version         BIGINT NOT NULL,   -- the core's fold version that took it
    fold            TEXT NOT NULL,
    updated_at      BIGINT NOT NULL
);

-- Whether a text is JSON (PostgreSQL 15 has no `IS JSON`): a checkpoint
-- whose fold is not is replaced whatever it counts.
CREATE FUNCTION admit_is_json(t TEXT) RETURNS BOOLEAN LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    PERFORM t::jsonb;
    RETURN TRUE;
EXCEPTION WHEN others THEN
    RETURN FALSE;
END $$;

-- One counter per id a scope can reach (see SQLite's migration 8). A
-- derivation reads its scope and these versions in one snapshot; its
-- commit locks the rows of every key it read (inserting missing ones
-- first), in key order, and writes only if none moved. The triggers bump
-- them whenever a row a derivation reads changes, whoever writes it; a
-- bump waits for a commit holding that key, so an overlapping writer is
-- ordered after it.
CREATE TABLE scope_versions (
    key     TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);

CREATE FUNCTION admit_bump(keys TEXT[]) RETURNS void LANGUAGE sql AS $$
    INSERT INTO scope_versions (key, version)
    SELECT DISTINCT k, 1 FROM unnest(keys) AS k WHERE k IS NOT NULL ORDER BY k
    ON CONFLICT (key) DO UPDATE SET version = scope_versions.version + 1;
$$;

CREATE FUNCTION admit_event_settled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM admit_bump(ARRAY[
        NEW.customer_id, NEW.subscription_id, NEW.checkout_session_id, NEW.charge_id,
        NEW.payment_intent_id, 'w:' || NEW.workspace_hint, 'e:' || NEW.purchaser_email,
        OLD.customer_id, OLD.subscription_id, OLD.checkout_session_id, OLD.charge_id,
        OLD.payment_intent_id, 'w:' || OLD.workspace_hint, 'e:' || OLD.purchaser_email]);
    RETURN NULL;
END $$;
-- An event's outcome, or the ids it is found by (old and new), changed; a
-- claim (attempts, lease) bumps nothing.
CREATE TRIGGER stripe_events_settled AFTER UPDATE OF status, outcome, scenario, customer_id,
    subscription_id, checkout_session_id, workspace_hint, purchaser_email, charge_id,
    payment_intent_id ON stripe_events FOR EACH ROW
WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.outcome IS DISTINCT FROM NEW.outcome
      OR OLD.scenario IS DISTINCT FROM NEW.scenario
      OR OLD.customer_id IS DISTINCT FROM NEW.customer_id
      OR OLD.subscription_id IS DISTINCT FROM NEW.subscription_id
      OR OLD.checkout_session_id IS DISTINCT FROM NEW.checkout_session_id
      OR OLD.workspace_hint IS DISTINCT FROM NEW.workspace_hint
      OR OLD.purchaser_email IS DISTINCT FROM NEW.purchaser_email
      OR OLD.charge_id IS DISTINCT FROM NEW.charge_id
      OR OLD.payment_intent_id IS DISTINCT FROM NEW.payment_intent_id)
EXECUTE FUNCTION admit_event_settled();

-- Every other row a derivation reads: a change bumps the keys of its old
-- and new values.
CREATE FUNCTION admit_workspaces_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN PERFORM admit_bump(ARRAY['w:' || NEW.id]); END IF;
    IF TG_OP <> 'INSERT' THEN PERFORM admit_bump(ARRAY['w:' || OLD.id]); END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER workspaces_changed AFTER INSERT OR UPDATE OR DELETE ON workspaces
    FOR EACH ROW EXECUTE FUNCTION admit_workspaces_changed();

CREATE FUNCTION admit_members_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN PERFORM admit_bump(ARRAY['w:' || NEW.workspace_id, 'e:' || NEW.email]); END IF;
    IF TG_OP <> 'INSERT' THEN PERFORM admit_bump(ARRAY['w:' || OLD.workspace_id, 'e:' || OLD.email]); END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER members_changed AFTER INSERT OR UPDATE OR DELETE ON members
    FOR EACH ROW EXECUTE FUNCTION admit_members_changed();

CREATE FUNCTION admit_checkout_intents_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN PERFORM admit_bump(ARRAY[NEW.session_id, 'w:' || NEW.workspace_id]); END IF;
    IF TG_OP <> 'INSERT' THEN PERFORM admit_bump(ARRAY[OLD.session_id, 'w:' || OLD.workspace_id]); END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER checkout_intents_changed AFTER INSERT OR UPDATE OR DELETE ON checkout_intents
    FOR EACH ROW EXECUTE FUNCTION admit_checkout_intents_changed();

CREATE FUNCTION admit_bindings_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN PERFORM admit_bump(ARRAY[NEW.stripe_id, 'w:' || NEW.workspace_id]); END IF;
    IF TG_OP <> 'INSERT' THEN PERFORM admit_bump(ARRAY[OLD.stripe_id, 'w:' || OLD.workspace_id]); END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER bindings_changed AFTER INSERT OR UPDATE OR DELETE ON bindings
    FOR EACH ROW EXECUTE FUNCTION admit_bindings_changed();

CREATE FUNCTION admit_stripe_links_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN PERFORM admit_bump(ARRAY[NEW.stripe_id, 'w:' || NEW.workspace_id]); END IF;
    IF TG_OP <> 'INSERT' THEN PERFORM admit_bump(ARRAY[OLD.stripe_id, 'w:' || OLD.workspace_id]); END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER stripe_links_changed AFTER INSERT OR UPDATE OR DELETE ON stripe_links
    FOR EACH ROW EXECUTE FUNCTION admit_stripe_links_changed();

CREATE FUNCTION admit_billing_states_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN PERFORM admit_bump(ARRAY['w:' || NEW.workspace_id]); END IF;
    IF TG_OP <> 'INSERT' THEN PERFORM admit_bump(ARRAY['w:' || OLD.workspace_id]); END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER billing_states_changed AFTER INSERT OR UPDATE OR DELETE ON billing_states
    FOR EACH ROW EXECUTE FUNCTION admit_billing_states_changed();

CREATE FUNCTION admit_cases_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN PERFORM admit_bump(ARRAY['k:' || NEW.case_key, NEW.stripe_subscription_id, NEW.checkout_session_id, NEW.stripe_customer_id, 'w:' || NEW.workspace_id]); END IF;
    IF TG_OP <> 'INSERT' THEN PERFORM admit_bump(ARRAY['k:' || OLD.case_key, OLD.stripe_subscription_id, OLD.checkout_session_id, OLD.stripe_customer_id, 'w:' || OLD.workspace_id]); END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER cases_changed AFTER INSERT OR UPDATE OR DELETE ON cases
    FOR EACH ROW EXECUTE FUNCTION admit_cases_changed();

-- A derivation reads the outbox states of its purchases; the sender's own
-- moves (sent, dead) are guarded by the upsert rule and bump nothing.
CREATE FUNCTION admit_outbox_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM admit_bump(ARRAY[NEW.about]);
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_changed_insert AFTER INSERT ON outbox FOR EACH ROW
    WHEN (NEW.about IS NOT NULL) EXECUTE FUNCTION admit_outbox_changed();
CREATE TRIGGER outbox_changed_update AFTER UPDATE OF state ON outbox FOR EACH ROW
    WHEN (NEW.about IS NOT NULL AND NEW.state IN ('pending', 'superseded')
          AND OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION admit_outbox_changed();
