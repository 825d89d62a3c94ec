-- The README's demo (./pg_test.sh demo): a freight app's loads and invoices, tracked by org_stats.
\set ON_ERROR_STOP 1
\pset footer off
\echo '== installing org_stats and loading ~130k sample rows'
CREATE EXTENSION org_stats;
CREATE TYPE load_status AS ENUM ('Open', 'Dispatched', 'Delivered', 'Cancelled');
CREATE TABLE loads (id bigserial PRIMARY KEY, workos_org_id text NOT NULL, status load_status NOT NULL, created_at timestamptz DEFAULT now());
CREATE TABLE invoices (id bigserial PRIMARY KEY, workos_org_id text NOT NULL, status text NOT NULL, amount numeric);
CREATE INDEX ON loads (workos_org_id);
CREATE INDEX ON invoices (workos_org_id);
INSERT INTO loads (workos_org_id, status)
SELECT CASE WHEN i % 10 < 6 THEN 'org_acme' ELSE 'org_' || (i % 4) END,
       (ARRAY['Open', 'Dispatched', 'Delivered', 'Delivered', 'Cancelled']::load_status[])[1 + (i * 7) % 5]
  FROM generate_series(1, 100000) i;
INSERT INTO invoices (workos_org_id, status, amount)
SELECT CASE WHEN i % 2 = 0 THEN 'org_acme' ELSE 'org_' || (i % 4) END,
       (ARRAY['DRAFT', 'SENT', 'PAID', 'VOID'])[1 + (i / 2) % 4], i % 1000
  FROM generate_series(1, 30000) i;
ANALYZE loads, invoices;

\echo '== tracking both tables (counts existing rows once)'
SELECT org_stats.track('loads');
SELECT org_stats.track('invoices');
SELECT table_name, org_column, status_column FROM org_stats.tracked_tables;

\echo '== the dashboard of org_acme'
SELECT * FROM org_stats.count_by_status('loads', 'org_acme');
SELECT org_stats.counts('invoices', 'org_acme') AS invoices;

\echo '== the app writes: one load delivered, a bulk void, a new load; counts follow at once'
UPDATE loads SET status = 'Delivered' WHERE id = (SELECT min(id) FROM loads WHERE workos_org_id = 'org_acme' AND status = 'Open');
UPDATE invoices SET status = 'VOID' WHERE workos_org_id = 'org_acme' AND status = 'DRAFT' AND amount < 100;
INSERT INTO loads (workos_org_id, status) VALUES ('org_acme', 'Open');
SELECT * FROM org_stats.count_by_status('loads', 'org_acme');
SELECT org_stats.count('invoices', 'org_acme', 'VOID') AS acme_void_invoices;

\echo '== invoice amounts by status (sums kept with the counts), and soft-deleted loads left out (a filter)'
SELECT org_stats.track('invoices', sum_columns => ARRAY['amount'], name => 'invoice_amounts');
SELECT * FROM org_stats.totals('invoice_amounts', 'org_acme');
ALTER TABLE loads ADD COLUMN deleted_at timestamptz;
SELECT org_stats.track('loads', filter => 'deleted_at IS NULL', name => 'live_loads');
UPDATE loads SET deleted_at = now() WHERE workos_org_id = 'org_acme' AND status = 'Cancelled' AND id % 2 = 0;
SELECT l.status, l.count AS live, a.count AS all_loads
  FROM org_stats.count_by_status('live_loads', 'org_acme') l
  JOIN org_stats.count_by_status('loads', 'org_acme') a USING (status);
SELECT * FROM org_stats.count_by_status('live_loads', ARRAY['org_0', 'org_1', 'org_2']);

\echo '== same answer, two ways: live GROUP BY vs org_stats (200 runs each)'
DO $$
DECLARE
    started timestamptz;
    group_by_ms numeric;
    org_stats_ms numeric;
BEGIN
    started := clock_timestamp();
    FOR i IN 1..200 LOOP
        PERFORM status::text, count(*) FROM loads WHERE workos_org_id = 'org_acme' GROUP BY 1;
    END LOOP;
    group_by_ms := extract(epoch FROM clock_timestamp() - started) * 1000 / 200;
    started := clock_timestamp();
    FOR i IN 1..200 LOOP
        PERFORM * FROM org_stats.count_by_status('loads', 'org_acme');
    END LOOP;
    org_stats_ms := extract(epoch FROM clock_timestamp() - started) * 1000 / 200;
    RAISE NOTICE 'GROUP BY over % rows: % ms per query; org_stats.count_by_status: % ms per query (% times faster)',
        (SELECT count(*) FROM loads WHERE workos_org_id = 'org_acme'),
        round(group_by_ms, 3), round(org_stats_ms, 3), round(group_by_ms / org_stats_ms);
END
$$;

\echo '== and they agree'
SELECT (SELECT jsonb_object_agg(status, n) FROM (SELECT status, count(*) AS n FROM loads WHERE workos_org_id = 'org_acme' GROUP BY 1) g)
       = org_stats.counts('loads', 'org_acme') AS counts_equal_group_by;

\echo '== drift: writes that bypassed the triggers, found and repaired'
SET session_replication_role = replica;
INSERT INTO loads (workos_org_id, status) VALUES ('org_acme', 'Open'), ('org_1', 'Cancelled');
DELETE FROM invoices WHERE id IN (2, 4, 6);
RESET session_replication_role;
SELECT * FROM org_stats.check_drift();
SELECT * FROM org_stats.recalculate();
SELECT count(*) AS drift_left FROM org_stats.check_drift();
SELECT tables, orgs_checked, groups_repaired, triggered_by FROM org_stats.recalculation_log;

\echo '== migrating a table online: track without backfill, CALL backfill, schedule recalculation'
CREATE TABLE shipments (id bigserial PRIMARY KEY, workos_org_id text NOT NULL, status text NOT NULL);
CREATE INDEX ON shipments (workos_org_id);
INSERT INTO shipments (workos_org_id, status)
SELECT 'org_' || (i % 6), (ARRAY['Booked', 'InTransit', 'Arrived'])[1 + i % 3] FROM generate_series(1, 60000) i;
SELECT org_stats.track('shipments', backfill => false);
CALL org_stats.backfill('shipments', batch_size => 2);
SELECT table_name, orgs_done, orgs_total, rows_done, percent FROM org_stats.backfill_progress;
CREATE EXTENSION IF NOT EXISTS pg_cron;
SELECT org_stats.schedule_recalculation() > 0 AS scheduled;
SELECT jobname, schedule, command FROM cron.job WHERE jobname = 'org_stats_recalculate';
SELECT org_stats.unschedule_recalculation() AS unscheduled;
SELECT table_name, orgs_counted, rows_counted, orgs_not_backfilled, last_groups_repaired FROM org_stats.health;
