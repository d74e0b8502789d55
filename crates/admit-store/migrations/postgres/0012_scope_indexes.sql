-- Indexes for what every scope read asks: the bindings of a workspace
-- (each round of the scope's growth), and the cases of a purchase or a
-- customer (each derivation). Without them both scan their whole table.
CREATE INDEX bindings_by_workspace ON bindings (workspace_id);
CREATE INDEX cases_by_subscription ON cases (stripe_subscription_id)
    WHERE stripe_subscription_id IS NOT NULL;
CREATE INDEX cases_by_session ON cases (checkout_session_id)
    WHERE checkout_session_id IS NOT NULL;
CREATE INDEX cases_by_customer ON cases (stripe_customer_id)
    WHERE stripe_customer_id IS NOT NULL;
