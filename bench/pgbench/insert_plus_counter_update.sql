-- The floor of any exact counter kept in the writer's transaction: the same single-row insert
-- plus one UPDATE of a counter row this client alone writes, by hand, no trigger, in the same
-- statement (one round trip, like the insert alone).
\set o random(0, 99)
WITH inserted AS (INSERT INTO loads (workos_org_id, status) VALUES ('org_' || :o, 'Open') RETURNING 1)
UPDATE bench_floor SET n = n + (SELECT count(*) FROM inserted) WHERE client = :client_id;
