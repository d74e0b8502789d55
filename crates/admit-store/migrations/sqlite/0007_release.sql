-- The release gate: refused webhook deliveries counted by hour and error
-- code (a flood adds to one row, not one row a request), for the
-- readiness memo's "signature failures in the last 24 h".
CREATE TABLE webhook_rejections (
    hour  INTEGER NOT NULL,   -- unix seconds at the start of the hour
    code  TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (hour, code)
) STRICT;

-- Gate runs, reconciliations and release decisions are audit entries
-- without a workspace; readiness looks them up by action.
CREATE INDEX audit_by_action ON audit_log (action, id);

-- The memo's "latest verified webhook" and "deliveries in the last 24 h".
CREATE INDEX stripe_events_by_source ON stripe_events (source, received_at);
