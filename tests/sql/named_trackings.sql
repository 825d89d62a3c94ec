-- A table can be tracked more than once: its default tracking, read by the table's name, and
-- named ones with other status columns, filters or sums, read by their names. Each is exact;
-- maintenance, views and untrack cover each.
CREATE TABLE lanes (id serial PRIMARY KEY, workos_org_id text, status text, lane text,
                    deleted_at timestamptz, weight integer);
INSERT INTO lanes (workos_org_id, status, lane, weight)
SELECT 'org' || (i % 3), (ARRAY['Open', 'Delivered'])[1 + i % 2], (ARRAY['east', 'west', 'north'])[1 + i % 3], i
  FROM generate_series(1, 60) i;
SELECT org_stats.track('lanes');
SELECT org_stats.track('lanes', status_column => 'lane', name => 'lanes_by_lane');
SELECT org_stats.track('lanes', filter => 'deleted_at IS NULL', sum_columns => ARRAY['weight'], name => 'live_lanes');
SELECT table_name, tracking, status_column, filter, sum_columns FROM org_stats.tracked_tables
 WHERE table_name = 'lanes'::regclass ORDER BY tracking NULLS FIRST;
-- Two trackings' triggers, one flush: each row change is counted by each tracking.
UPDATE lanes SET lane = 'south' WHERE id % 4 = 0;
UPDATE lanes SET deleted_at = now(), status = 'Cancelled' WHERE id % 5 = 0;
DELETE FROM lanes WHERE id % 7 = 0;
INSERT INTO lanes (workos_org_id, status, lane, weight) VALUES ('org1', 'Open', 'east', 1000);
SELECT * FROM org_stats.count_by_status('lanes', 'org1');
SELECT * FROM org_stats.count_by_status('lanes_by_lane', 'org1');
SELECT * FROM org_stats.totals('live_lanes', 'org1');
SELECT * FROM totals_mismatches('lanes', 'lanes');
SELECT * FROM totals_mismatches('lanes_by_lane', 'lanes', status_col => 'lane');
SELECT * FROM totals_mismatches('live_lanes', 'lanes', 'deleted_at IS NULL', 'weight');
SELECT org_stats.count('lanes_by_lane', 'org1', 'south') AS south, org_stats.counts('lanes_by_lane', 'org1') AS lanes;

-- The views list each tracking.
SELECT tracking, sum(count) AS counted FROM org_stats.organization_stats WHERE table_name = 'lanes'::regclass
 GROUP BY 1 ORDER BY 1 NULLS FIRST;
SELECT tracking, orgs_counted, rows_counted FROM org_stats.health WHERE table_name = 'lanes'::regclass
 ORDER BY 1 NULLS FIRST;

-- Maintenance of a table covers every tracking of it; a tracking's name picks one.
UPDATE org_stats.counters SET n = n + 1
 WHERE table_id IN (SELECT t.table_id FROM org_stats.tracked t WHERE t.relid = 'lanes'::regclass) AND org_id = 'org2';
SELECT tracking, count(*) AS drifting FROM org_stats.check_drift('lanes'::regclass) GROUP BY 1 ORDER BY 1 NULLS FIRST;
SELECT count(*) AS repaired FROM org_stats.recalculate('lanes_by_lane');
SELECT tracking, count(*) AS drifting FROM org_stats.check_drift('lanes'::regclass) GROUP BY 1 ORDER BY 1 NULLS FIRST;
SELECT count(*) AS repaired FROM org_stats.recalculate('lanes'::regclass);
SELECT count(*) AS drifting FROM org_stats.check_drift('lanes'::regclass);

-- A named tracking made with backfill => false is counted by CALL backfill() of its table.
SELECT org_stats.track('lanes', status_column => 'lane', filter => 'weight > 20', name => 'heavy_lanes', backfill => false);
SET client_min_messages = warning;  -- backfill's progress NOTICEs carry timings
CALL org_stats.backfill('lanes');
RESET client_min_messages;
SELECT tracking, backfilled_at IS NOT NULL AS backfilled FROM org_stats.tracked_tables
 WHERE table_name = 'lanes'::regclass ORDER BY 1 NULLS FIRST;
SELECT * FROM totals_mismatches('heavy_lanes', 'lanes', 'weight > 20', status_col => 'lane');

-- Names are unique, differ from every relation's, have 1 to 63 bytes and no dot; a second default tracking of
-- a table is refused as before.
\pset format unaligned
\pset fieldsep ' | '
SELECT * FROM error_of($$SELECT org_stats.track('lanes', name => 'lanes_by_lane')$$);
SELECT * FROM error_of($$SELECT org_stats.track('lanes', name => 'loads')$$);
SELECT * FROM error_of($$SELECT org_stats.track('lanes', name => 'public.lanes2')$$);
SELECT * FROM error_of($$SELECT org_stats.track('lanes', name => '')$$);
SELECT * FROM error_of($$SELECT org_stats.track('lanes', name => repeat('x', 64))$$);
SELECT * FROM error_of($$SELECT org_stats.track('lanes')$$);
SELECT * FROM error_of($$SELECT * FROM org_stats.totals('no_such_tracking', 'org1')$$);
SELECT * FROM error_of($$SELECT org_stats.track(NULL)$$);
\pset format aligned

-- untrack() of a name removes that tracking only; of the table, its default tracking.
SELECT org_stats.untrack('lanes_by_lane');
SELECT org_stats.untrack('heavy_lanes');
SELECT org_stats.untrack('lanes');
SELECT tracking FROM org_stats.tracked_tables WHERE table_name = 'lanes'::regclass;
SELECT * FROM totals_mismatches('live_lanes', 'lanes', 'deleted_at IS NULL', 'weight');
-- DROP TABLE forgets every tracking of it.
DROP TABLE lanes;
SELECT count(*) AS trackings_left FROM org_stats.tracked_tables WHERE tracking = 'live_lanes';
