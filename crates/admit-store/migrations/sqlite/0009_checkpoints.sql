-- A checkpoint per subscription: the core's fold of its events up to a
-- second (JSON of admit_core::provisioning::Checkpoint), so that a renewal
-- after years of invoices is derived from the checkpoint and the few events
-- after it, not from every event again. Derived data: deleting a row (or
-- the table's rows, when a version of admit changes the fold) only makes
-- the next derivation of that subscription read its events in full.
CREATE TABLE subscription_checkpoints (
    subscription_id TEXT PRIMARY KEY NOT NULL,
    -- Every event of the subscription created at or before this second...
    through         INTEGER NOT NULL,
    -- ...and how many: a scope read that finds another number (an event
    -- created before `through` arrived since) does not use the checkpoint.
    events          INTEGER NOT NULL,
    -- The version of the core's fold that took it: another version's
    -- checkpoint is set aside, and replaced whatever it counts.
    version         INTEGER NOT NULL,
    fold            TEXT NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;
