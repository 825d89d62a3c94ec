-- track() installs triggers and counts existing rows; untrack() removes both; tracked_tables lists them.
INSERT INTO loads (workos_org_id, status)
SELECT 'acme', (ARRAY['Open', 'Dispatched', 'Delivered']::load_status[])[1 + i % 3]
  FROM generate_series(1, 30) i;
INSERT INTO loads (workos_org_id, status) VALUES ('globex', 'Open'), (NULL, 'Open');

SELECT org_stats.track('loads');
SELECT table_name, org_column, status_column, tracked_at IS NOT NULL AS tracked, backfilled_at IS NOT NULL AS backfilled
  FROM org_stats.tracked_tables;
-- Its triggers: org_stats' own (named after the tracking's table_id), enabled, one for TRUNCATE.
SELECT bool_and(tgname ~ '^org_stats_[a-z]+_[0-9]+$') AS ours, bool_and(tgenabled = 'O') AS enabled,
       count(*) FILTER (WHERE tgtype & 32 <> 0) AS on_truncate
  FROM pg_trigger WHERE tgrelid = 'loads'::regclass;

-- Existing rows were counted by the backfill; the NULL org belongs to nobody.
SELECT * FROM org_stats.count_by_status('loads', 'acme');
SELECT table_name, org_id, status, count FROM org_stats.organization_stats ORDER BY org_id, status;
SELECT * FROM mismatches('loads');

-- untrack() drops the triggers and the counts; writes go on uncounted.
SELECT org_stats.untrack('loads');
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'loads'::regclass;
SELECT count(*) AS tracked FROM org_stats.tracked_tables;
SELECT count(*) AS counts FROM org_stats.organization_stats;
SELECT code, message FROM error_of($$SELECT * FROM org_stats.count_by_status('loads', 'acme')$$);
INSERT INTO loads (workos_org_id, status) VALUES ('acme', 'Cancelled');

-- Tracking again counts the rows written meanwhile.
SELECT org_stats.track('loads');
SELECT * FROM org_stats.count_by_status('loads', 'acme');
SELECT * FROM mismatches('loads');

-- backfill => false: registered and counting new writes at once; until backfilled, the count
-- functions answer from a live GROUP BY, so they are exact from the first moment.
INSERT INTO invoices (workos_org_id, status) VALUES ('acme', 'DRAFT'), ('acme', 'PAID');
SELECT org_stats.track('invoices', backfill => false);
SELECT table_name, backfilled_at IS NULL AS awaiting_backfill FROM org_stats.tracked_tables ORDER BY 1;
INSERT INTO invoices (workos_org_id, status) VALUES ('acme', 'DRAFT');
SELECT * FROM org_stats.count_by_status('invoices', 'acme');
SELECT * FROM mismatches('invoices');
SELECT org_stats.untrack('invoices');

-- Identifiers that need quoting work, and named arguments pick the columns.
CREATE TABLE "Shipment Loads" ("Org ID" text, "Load Status" varchar(20));
INSERT INTO "Shipment Loads" VALUES ('Acme Inc', 'In Transit'), ('Acme Inc', 'In Transit'), ('O''Brien', 'Open');
SELECT org_stats.track('"Shipment Loads"', org_column => 'Org ID', status_column => 'Load Status');
INSERT INTO "Shipment Loads" VALUES ('O''Brien', 'Open');
SELECT * FROM org_stats.count_by_status('"Shipment Loads"', 'O''Brien');
SELECT * FROM mismatches('"Shipment Loads"', 'Org ID', 'Load Status');
SELECT org_stats.untrack('"Shipment Loads"');
DROP TABLE "Shipment Loads";
