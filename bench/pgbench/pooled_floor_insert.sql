-- The floor of any exact counter kept in the writer's transaction, for pooled_insert.sql: the
-- same insert plus the one counter UPDATE it needs, on a row this client alone writes, by hand,
-- no trigger, in the same statement.
\set o random(1, 2000)
\set s random(1, 5)
WITH inserted AS (INSERT INTO pooled (workos_org_id, status)
                  VALUES ('org_' || :o, (ARRAY['Open', 'Dispatched', 'Delivered', 'Cancelled', 'Invoiced'])[:s])
                  RETURNING 1)
UPDATE pool_floor SET n = n + (SELECT count(*) FROM inserted) WHERE client = :client_id AND k = 0;
