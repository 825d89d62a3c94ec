-- Drift injected the ways it happens in production is reported exactly by check_drift() and
-- repaired exactly by recalculate(), which logs the run; afterwards there is no drift.
CREATE TABLE drifty (id serial PRIMARY KEY, workos_org_id text, status text);
INSERT INTO drifty (workos_org_id, status)
SELECT 'org' || (i % 3), (ARRAY['Open', 'Closed'])[1 + i % 2] FROM generate_series(1, 60) i;
SELECT org_stats.track('drifty');
SELECT * FROM org_stats.check_drift('drifty');

-- 1. Writes with triggers off for replication.
SET session_replication_role = replica;
INSERT INTO drifty (workos_org_id, status) VALUES ('org1', 'Open'), ('org1', 'Lost');
RESET session_replication_role;
-- 2. Writes with the triggers disabled.
ALTER TABLE drifty DISABLE TRIGGER USER;
DELETE FROM drifty WHERE id IN (3, 6);
ALTER TABLE drifty ENABLE TRIGGER USER;
-- 3. A manual edit of the counter storage.
UPDATE org_stats.counters SET n = n + 7 WHERE org_id = 'org2' AND status = 'Closed';

-- Exactly the injected groups, nothing else; check_drift changes nothing.
SELECT * FROM org_stats.check_drift('drifty');
SELECT * FROM org_stats.check_drift('drifty', 'org1');
SELECT count(*) AS still_drifting FROM org_stats.check_drift();

-- One org at a time, then the rest; each repair reports (stored before, actual after).
SELECT * FROM org_stats.recalculate('drifty', 'org1');
SELECT * FROM org_stats.check_drift('drifty');
SELECT * FROM org_stats.recalculate();
SELECT * FROM org_stats.check_drift();
SELECT * FROM mismatches('drifty');
SELECT * FROM org_stats.recalculate();

-- Every run is logged; every checked org has last_recalculated; health sums it up.
SELECT tables, orgs_checked, groups_repaired, triggered_by, finished_at >= started_at AS ordered
  FROM org_stats.recalculation_log ORDER BY id;
SELECT org_id, count(*) AS statuses, bool_and(last_recalculated IS NOT NULL) AS recalculated
  FROM org_stats.organization_stats WHERE table_name = 'drifty'::regclass GROUP BY 1 ORDER BY 1;
SELECT table_name, orgs_counted, rows_counted, orgs_not_backfilled, last_recalculated IS NOT NULL AS recalculated,
       last_groups_repaired
  FROM org_stats.health WHERE table_name = 'drifty'::regclass;

-- recalculate() repairs with increments read on a snapshot taken after its lock, so it refuses
-- REPEATABLE READ; and it is for the table's owner.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT * FROM error_of($$SELECT * FROM org_stats.recalculate('drifty')$$);
ROLLBACK;
CREATE ROLE drift_outsider;
GRANT SELECT, INSERT, UPDATE, DELETE ON drifty TO drift_outsider;
SET ROLE drift_outsider;
SELECT * FROM error_of($$SELECT * FROM org_stats.recalculate('drifty')$$);
SELECT * FROM error_of($$SELECT * FROM org_stats.check_drift('drifty')$$);
SELECT count(*) AS tables_it_owns FROM org_stats.recalculate();
RESET ROLE;
REVOKE ALL ON drifty FROM drift_outsider;
DROP ROLE drift_outsider;
SELECT org_stats.untrack('drifty');
DROP TABLE drifty;
