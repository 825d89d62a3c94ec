-- The floor of any count read that is a function call: a built-in set-returning function with
-- two OUT columns returning five rows, reading no table at all.
SELECT * FROM pg_catalog.pg_options_to_table(ARRAY['Open=60000', 'Dispatched=60000', 'Delivered=60000', 'Cancelled=60000', 'Invoiced=60000']);
