-- The row of the decision table (S1–S18) that decided each event and case.
ALTER TABLE stripe_events ADD COLUMN scenario TEXT;
ALTER TABLE cases ADD COLUMN scenario TEXT;
