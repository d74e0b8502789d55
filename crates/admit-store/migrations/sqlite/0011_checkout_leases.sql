-- One checkout being created per workspace at a time, across every admit
-- instance on the database: the holder leases the workspace's row while it
-- asks Stripe for a customer and a session, so two concurrent checkouts
-- never create two customers for one workspace. A lease ends when its
-- holder is done, or by itself at `until` if the holder died.
CREATE TABLE checkout_leases (
    workspace_id TEXT PRIMARY KEY NOT NULL,
    holder       TEXT NOT NULL,
    until        INTEGER NOT NULL
) STRICT;
