-- The floor for pooled_status.sql: the same status change plus the two counter UPDATEs it needs
-- (old status, new status), on rows this client alone writes, by hand, in the same statement.
\set target random(1, 200000)
\set s random(1, 5)
WITH changed AS (UPDATE pooled SET status = (ARRAY['Open', 'Dispatched', 'Delivered', 'Cancelled', 'Invoiced'])[:s]
                  WHERE id = :target RETURNING 1)
UPDATE pool_floor SET n = n + (SELECT count(*) FROM changed) WHERE client = :client_id;
