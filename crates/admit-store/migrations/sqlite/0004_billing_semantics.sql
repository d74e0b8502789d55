-- Stripe billing semantics: a scheduled end from `cancel_at`, and the
-- payment ids a dispute or a refund finds its purchase by.

-- When paid access is scheduled to end (`cancel_at`, else the period end
-- when `cancel_at_period_end`); NULL when nothing is scheduled.
ALTER TABLE billing_states ADD COLUMN cancel_at INTEGER;

-- Charges and payment intents named by invoices, one-time checkouts,
-- disputes and refunds.
ALTER TABLE stripe_events ADD COLUMN charge_id TEXT;
ALTER TABLE stripe_events ADD COLUMN payment_intent_id TEXT;
CREATE INDEX stripe_events_by_charge ON stripe_events (charge_id);
CREATE INDEX stripe_events_by_payment_intent ON stripe_events (payment_intent_id);

-- Money cases may name no purchase; they are found by kind and their events.
CREATE INDEX cases_by_kind ON cases (kind, state);
