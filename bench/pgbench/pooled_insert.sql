-- A connection of a 60-connection pool inserts a load for a random org of 2,000.
\set o random(1, 2000)
\set s random(1, 5)
INSERT INTO pooled (workos_org_id, status)
VALUES ('org_' || :o, (ARRAY['Open', 'Dispatched', 'Delivered', 'Cancelled', 'Invoiced'])[:s]);
