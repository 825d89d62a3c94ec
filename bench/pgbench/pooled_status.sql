-- A connection of a 60-connection pool gives a random load of the 200,000 loaded a random status.
\set target random(1, 200000)
\set s random(1, 5)
UPDATE pooled SET status = (ARRAY['Open', 'Dispatched', 'Delivered', 'Cancelled', 'Invoiced'])[:s]
 WHERE id = :target;
