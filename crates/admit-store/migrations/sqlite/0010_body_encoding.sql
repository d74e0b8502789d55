-- Raw bodies compressed: an LZ4 block with its length first ('lz4'), or as
-- received ('identity', every row stored before this migration). Stripe's
-- JSON shrinks to about half, and the inbox is mostly bodies.
ALTER TABLE stripe_event_bodies ADD COLUMN encoding TEXT NOT NULL DEFAULT 'identity';
-- The body's length as received (NULL before this migration: the
-- payload's own length then).
ALTER TABLE stripe_event_bodies ADD COLUMN raw_length INTEGER;
