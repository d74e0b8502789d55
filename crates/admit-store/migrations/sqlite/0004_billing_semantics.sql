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

-- Events stored before this migration: their charge and payment intent, so
-- that a dispute of an older charge still finds its purchase.
UPDATE stripe_events SET
    charge_id = CASE json_type(CAST(payload AS TEXT), '$.data.object.charge')
        WHEN 'text' THEN json_extract(CAST(payload AS TEXT), '$.data.object.charge')
        WHEN 'object' THEN json_extract(CAST(payload AS TEXT), '$.data.object.charge.id')
    END,
    payment_intent_id = CASE json_type(CAST(payload AS TEXT), '$.data.object.payment_intent')
        WHEN 'text' THEN json_extract(CAST(payload AS TEXT), '$.data.object.payment_intent')
        WHEN 'object' THEN json_extract(CAST(payload AS TEXT), '$.data.object.payment_intent.id')
    END
WHERE type IN ('invoice.paid', 'invoice.payment_succeeded', 'invoice.payment_failed',
               'checkout.session.completed', 'checkout.session.async_payment_succeeded',
               'checkout.session.async_payment_failed')
  AND json_valid(CAST(payload AS TEXT));
