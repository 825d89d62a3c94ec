-- A random load of org_0 (ids org0_first .. org0_first + 999) gets a random status.
\set target :org0_first + random(0, 999)
\set s random(1, 5)
UPDATE loads SET status = (ARRAY['Open', 'Dispatched', 'Delivered', 'Cancelled', 'Invoiced'])[:s]
 WHERE id = :target;
