-- The raw bodies in a table of their own. SQLite rewrites a whole row on
-- an update, and reads past a column to reach the ones after it: with 3–8 kB
-- bodies in the row, every status update rewrote the body and every read of
-- a key or a status walked its overflow pages.
CREATE TABLE stripe_event_bodies (
    id      TEXT PRIMARY KEY NOT NULL,   -- stripe_events.id
    payload BLOB NOT NULL                -- the raw body, byte for byte
) STRICT;
INSERT INTO stripe_event_bodies (id, payload) SELECT id, payload FROM stripe_events;
ALTER TABLE stripe_events DROP COLUMN payload;

-- Throughput: events parsed once, derivations checked against per-key
-- versions instead of holding the write lock, and slimmer inbox indexes.

-- The billing event as admit-stripe read it at ingress (JSON of
-- admit_core::BillingEvent), so that the processor never parses a raw body
-- again. NULL for a type admit does not act on, a thin event, a body it
-- cannot read, and rows stored before this migration: the processor reads
-- those from `payload`.
ALTER TABLE stripe_events ADD COLUMN billing TEXT;

-- When it was received, in milliseconds: receipt → outcome is mostly well
-- under a second, and events received in one second are claimed in the
-- order they arrived. NULL for rows stored before this migration.
ALTER TABLE stripe_events ADD COLUMN received_ms INTEGER;

-- One counter per id a scope can reach: raw Stripe ids (their prefixes keep
-- them apart), 'w:' workspace, 'e:' email, 'k:' case key. A derivation
-- reads its scope and these versions outside the write lock and writes
-- only if none of them moved since. The triggers below bump them whenever a
-- row a derivation reads changes, whoever writes it (the processor, an
-- operator, reconcile), so no write path can be forgotten. The one
-- exception is a new event: it bumps nothing, because it is `received` and
-- is derived itself, with everything its scope holds by then.
CREATE TABLE scope_versions (
    key     TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- An event's outcome, or the ids it is found by (old and new), changed.
CREATE TRIGGER stripe_events_settled AFTER UPDATE OF status, outcome, scenario, customer_id,
    subscription_id, checkout_session_id, workspace_hint, purchaser_email, charge_id,
    payment_intent_id ON stripe_events
WHEN OLD.status IS NOT NEW.status OR OLD.outcome IS NOT NEW.outcome
     OR OLD.scenario IS NOT NEW.scenario OR OLD.customer_id IS NOT NEW.customer_id
     OR OLD.subscription_id IS NOT NEW.subscription_id
     OR OLD.checkout_session_id IS NOT NEW.checkout_session_id
     OR OLD.workspace_hint IS NOT NEW.workspace_hint
     OR OLD.purchaser_email IS NOT NEW.purchaser_email OR OLD.charge_id IS NOT NEW.charge_id
     OR OLD.payment_intent_id IS NOT NEW.payment_intent_id
BEGIN
    INSERT INTO scope_versions (key, version)
    SELECT key, 1 FROM (
        SELECT NEW.customer_id AS key UNION SELECT NEW.subscription_id
        UNION SELECT NEW.checkout_session_id UNION SELECT NEW.charge_id
        UNION SELECT NEW.payment_intent_id UNION SELECT 'w:' || NEW.workspace_hint
        UNION SELECT 'e:' || NEW.purchaser_email
        UNION SELECT OLD.customer_id UNION SELECT OLD.subscription_id
        UNION SELECT OLD.checkout_session_id UNION SELECT OLD.charge_id
        UNION SELECT OLD.payment_intent_id UNION SELECT 'w:' || OLD.workspace_hint
        UNION SELECT 'e:' || OLD.purchaser_email)
    WHERE key IS NOT NULL
    ON CONFLICT (key) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER workspaces_changed_insert AFTER INSERT ON workspaces BEGIN
    INSERT INTO scope_versions (key, version) VALUES ('w:' || NEW.id, 1)
    ON CONFLICT (key) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER workspaces_changed_update AFTER UPDATE ON workspaces BEGIN
    INSERT INTO scope_versions (key, version) VALUES ('w:' || NEW.id, 1)
    ON CONFLICT (key) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER workspaces_changed_delete AFTER DELETE ON workspaces BEGIN
    INSERT INTO scope_versions (key, version) VALUES ('w:' || OLD.id, 1)
    ON CONFLICT (key) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER members_changed_insert AFTER INSERT ON members BEGIN
    INSERT INTO scope_versions (key, version)
    SELECT key, 1 FROM (SELECT 'w:' || NEW.workspace_id AS key UNION SELECT 'e:' || NEW.email)
    WHERE key IS NOT NULL
    ON CONFLICT (key) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER members_changed_update AFTER UPDATE ON members BEGIN
    INSERT INTO scope_versions (key, version)
    SELECT key, 1 FROM (SELECT 'w:' || NEW.workspace_id AS key UNION SELECT 'e:' || NEW.email
                        UNION SELECT 'w:' || OLD.workspace_id UNION SELECT 'e:' || OLD.email)
    WHERE key IS NOT NULL
    ON CONFLICT (key) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER members_changed_delete AFTER DELETE ON members BEGIN
    INSERT INTO scope_versions (key, version)
    SELECT key, 1 FROM (SELECT 'w:' || OLD.workspace_id AS key UNION SELECT 'e:' || OLD.email)
    WHERE key IS NOT NULL
    ON CONFLICT (key) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER checkout_intents_changed AFTER INSERT ON checkout_intents BEGIN
    INSERT INTO scope_versions (key, version)
    SELECT key, 1 FROM (SELECT NEW.session_id AS key UNION SELECT 'w:' || NEW.workspace_id)
    WHERE key IS NOT NULL
    ON CONFLICT (key) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER checkout_intents_changed_update AFTER UPDATE ON checkout_intents BEGIN
    INSERT INTO scope_versions (key, version)
    SELECT key, 1 FROM (SELECT NEW.session_id AS key UNION SELECT 'w:' || NEW.workspace_id
                        UNION SELECT 'w:' || OLD.workspace_id)
    WHERE key IS NOT NULL
    ON CONFLICT (key) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER checkout_intents_changed_delete AFTER DELETE ON checkout_intents BEGIN
    INSERT INTO scope_versions (key, version)
    SELECT key, 1 FROM (SELECT OLD.session_id AS key UNION SELECT 'w:' || OLD.workspace_id)
    WHERE key IS NOT NULL
    ON CONFLICT (key) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER bindings_changed_insert AFTER INSERT ON bindings BEGIN
    INSERT INTO scope_versions (key, version)
    SELECT key, 1 FROM (SELECT NEW.stripe_id AS key UNION SELECT 'w:' || NEW.workspace_id)
    WHERE key IS NOT NULL
    ON CONFLICT (key) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER bindings_changed_update AFTER UPDATE ON bindings BEGIN
    INSERT INTO scope_versions (key, version)
    SELECT key, 1 FROM (SELECT NEW.stripe_id AS key UNION SELECT 'w:' || NEW.workspace_id
                        UNION SELECT 'w:' || OLD.workspace_id)
    WHERE key IS NOT NULL
    ON CONFLICT (key) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER bindings_changed_delete AFTER DELETE ON bindings BEGIN
    INSERT INTO scope_versions (key, version)
    SELECT key, 1 FROM (SELECT OLD.stripe_id AS key UNION SELECT 'w:' || OLD.workspace_id)
    WHERE key IS NOT NULL
    ON CONFLICT (key) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER stripe_links_changed_insert AFTER INSERT ON stripe_links BEGIN
    INSERT INTO scope_versions (key, version)
    SELECT key, 1 FROM (SELECT NEW.stripe_id AS key UNION SELECT 'w:' || NEW.workspace_id)
    WHERE key IS NOT NULL
    ON CONFLICT (key) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER stripe_links_changed_update AFTER UPDATE ON stripe_links BEGIN
    INSERT INTO scope_versions (key, version)
    SELECT key, 1 FROM (SELECT NEW.stripe_id AS key UNION SELECT 'w:' || NEW.workspace_id
                        UNION SELECT OLD.stripe_id UNION SELECT 'w:' || OLD.workspace_id)
    WHERE key IS NOT NULL
    ON CONFLICT (key) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER stripe_links_changed_delete AFTER DELETE ON stripe_links BEGIN
    INSERT INTO scope_versions (key, version)
    SELECT key, 1 FROM (SELECT OLD.stripe_id AS key UNION SELECT 'w:' || OLD.workspace_id)
    WHERE key IS NOT NULL
    ON CONFLICT (key) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER billing_states_changed_insert AFTER INSERT ON billing_states BEGIN
    INSERT INTO scope_versions (key, version) VALUES ('w:' || NEW.workspace_id, 1)
    ON CONFLICT (key) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER billing_states_changed_update AFTER UPDATE ON billing_states BEGIN
    INSERT INTO scope_versions (key, version) VALUES ('w:' || NEW.workspace_id, 1)
    ON CONFLICT (key) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER billing_states_changed_delete AFTER DELETE ON billing_states BEGIN
    INSERT INTO scope_versions (key, version) VALUES ('w:' || OLD.workspace_id, 1)
    ON CONFLICT (key) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER cases_changed_insert AFTER INSERT ON cases BEGIN
    INSERT INTO scope_versions (key, version)
    SELECT key, 1 FROM (
        SELECT 'k:' || NEW.case_key AS key UNION SELECT NEW.stripe_subscription_id
        UNION SELECT NEW.checkout_session_id UNION SELECT NEW.stripe_customer_id
        UNION SELECT 'w:' || NEW.workspace_id)
    WHERE key IS NOT NULL
    ON CONFLICT (key) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER cases_changed_update AFTER UPDATE ON cases BEGIN
    INSERT INTO scope_versions (key, version)
    SELECT key, 1 FROM (
        SELECT 'k:' || NEW.case_key AS key UNION SELECT NEW.stripe_subscription_id
        UNION SELECT NEW.checkout_session_id UNION SELECT NEW.stripe_customer_id
        UNION SELECT 'w:' || NEW.workspace_id
        UNION SELECT OLD.stripe_subscription_id UNION SELECT OLD.checkout_session_id
        UNION SELECT OLD.stripe_customer_id UNION SELECT 'w:' || OLD.workspace_id)
    WHERE key IS NOT NULL
    ON CONFLICT (key) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER cases_changed_delete AFTER DELETE ON cases BEGIN
    INSERT INTO scope_versions (key, version)
    SELECT key, 1 FROM (
        SELECT 'k:' || OLD.case_key AS key UNION SELECT OLD.stripe_subscription_id
        UNION SELECT OLD.checkout_session_id UNION SELECT OLD.stripe_customer_id
        UNION SELECT 'w:' || OLD.workspace_id)
    WHERE key IS NOT NULL
    ON CONFLICT (key) DO UPDATE SET version = version + 1;
END;

-- A derivation reads the outbox states of its purchases; the sender's own
-- moves (sent, dead) are guarded by the upsert rule and bump nothing.
CREATE TRIGGER outbox_changed_insert AFTER INSERT ON outbox WHEN NEW.about IS NOT NULL BEGIN
    INSERT INTO scope_versions (key, version) VALUES (NEW.about, 1)
    ON CONFLICT (key) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER outbox_changed_update AFTER UPDATE OF state ON outbox
WHEN NEW.about IS NOT NULL AND NEW.state IN ('pending', 'superseded') AND OLD.state IS NOT NEW.state
BEGIN
    INSERT INTO scope_versions (key, version) VALUES (NEW.about, 1)
    ON CONFLICT (key) DO UPDATE SET version = version + 1;
END;

-- Slimmer inbox: an index over settled events serves no query, and most
-- events name no charge, payment intent, session or workspace hint.
DROP INDEX stripe_events_by_status;
DROP INDEX stripe_events_claimable;
CREATE INDEX stripe_events_unsettled ON stripe_events (received_at, received_ms, id)
    WHERE status IN ('received', 'failed');
DROP INDEX stripe_events_by_customer;
CREATE INDEX stripe_events_by_customer ON stripe_events (customer_id) WHERE customer_id IS NOT NULL;
DROP INDEX stripe_events_by_object;
CREATE INDEX stripe_events_by_object ON stripe_events (object_id) WHERE object_id IS NOT NULL;
DROP INDEX stripe_events_by_subscription;
CREATE INDEX stripe_events_by_subscription ON stripe_events (subscription_id)
    WHERE subscription_id IS NOT NULL;
DROP INDEX stripe_events_by_session;
CREATE INDEX stripe_events_by_session ON stripe_events (checkout_session_id)
    WHERE checkout_session_id IS NOT NULL;
DROP INDEX stripe_events_by_workspace_hint;
CREATE INDEX stripe_events_by_workspace_hint ON stripe_events (workspace_hint)
    WHERE workspace_hint IS NOT NULL;
DROP INDEX stripe_events_by_charge;
CREATE INDEX stripe_events_by_charge ON stripe_events (charge_id) WHERE charge_id IS NOT NULL;
DROP INDEX stripe_events_by_payment_intent;
CREATE INDEX stripe_events_by_payment_intent ON stripe_events (payment_intent_id)
    WHERE payment_intent_id IS NOT NULL;
-- The memo's mode mismatches of the last day.
CREATE INDEX stripe_events_ignored ON stripe_events (outcome, received_at) WHERE status = 'ignored';
