-- The operators' inbox list pages newest first.
CREATE INDEX stripe_events_by_received ON stripe_events (received_at DESC, id DESC);
