-- track(..., backfill => false) then CALL backfill(): counts are exact before, during and after;
-- an interrupted backfill resumes where it stopped.
SET client_min_messages = warning;  -- backfill's progress NOTICEs carry timings
CREATE TABLE big_loads (id serial PRIMARY KEY, workos_org_id text, status text);
CREATE INDEX ON big_loads (workos_org_id);
INSERT INTO big_loads (workos_org_id, status)
SELECT 'org' || (i % 7), (ARRAY['Open', 'Dispatched', 'Delivered'])[1 + i % 3] FROM generate_series(1, 700) i;
SELECT org_stats.track('big_loads', backfill => false);

-- Before the backfill: answered live, so already exact, also for writes made since tracking.
INSERT INTO big_loads (workos_org_id, status) VALUES ('org1', 'Open'), ('org_new', 'Open');
DELETE FROM big_loads WHERE id = 2;
SELECT * FROM org_stats.count_by_status('big_loads', 'org1');
SELECT count(*) AS mismatches FROM mismatches('big_loads');
SELECT orgs_not_backfilled FROM org_stats.health WHERE table_name = 'big_loads'::regclass;

-- An interrupted run: two batches of two orgs, then it stops (as if cancelled).
SELECT array_length(org_stats.backfill_start('big_loads'), 1) AS orgs_to_count;
SELECT org_stats.backfill_batch('big_loads', ARRAY['org0', 'org1']) AS rows_counted;
SELECT org_stats.backfill_batch('big_loads', ARRAY['org2', 'org3']) AS rows_counted;
SELECT orgs_done, orgs_total, rows_done, finished_at IS NULL AS unfinished FROM org_stats.backfill_progress;
-- Backfilled orgs answer from the counters, the others live; all exact.
INSERT INTO big_loads (workos_org_id, status) VALUES ('org1', 'Delivered'), ('org5', 'Delivered');
SELECT count(*) AS mismatches FROM mismatches('big_loads');

-- The next run counts only the orgs still missing, then marks the table backfilled.
CALL org_stats.backfill('big_loads', batch_size => 2);
SELECT orgs_done, orgs_total, rows_done, percent, finished_at IS NOT NULL AS finished FROM org_stats.backfill_progress;
SELECT table_name, backfilled_at IS NOT NULL AS backfilled FROM org_stats.tracked_tables WHERE table_name = 'big_loads'::regclass;
SELECT * FROM org_stats.count_by_status('big_loads', 'org1');
SELECT count(*) AS mismatches FROM mismatches('big_loads');
SELECT count(*) AS drift FROM org_stats.check_drift('big_loads');
SELECT orgs_not_backfilled FROM org_stats.health WHERE table_name = 'big_loads'::regclass;

-- CALL backfill() with no table backfills every table still waiting, and a bad batch size is refused.
CREATE TABLE later_loads (workos_org_id uuid, status text);
INSERT INTO later_loads SELECT ('00000000-0000-0000-0000-00000000000' || (i % 4))::uuid, 'Open' FROM generate_series(1, 40) i;
SELECT org_stats.track('later_loads', backfill => false);
CALL org_stats.backfill();
SELECT table_name, backfilled_at IS NOT NULL AS backfilled FROM org_stats.tracked_tables
 WHERE table_name IN ('big_loads'::regclass, 'later_loads'::regclass) ORDER BY 1;
SELECT count(*) AS mismatches FROM mismatches('later_loads');
\set VERBOSITY terse
CALL org_stats.backfill('big_loads', batch_size => 0);
\set VERBOSITY default
RESET client_min_messages;
SELECT org_stats.untrack('big_loads');
SELECT org_stats.untrack('later_loads');
DROP TABLE big_loads, later_loads;
