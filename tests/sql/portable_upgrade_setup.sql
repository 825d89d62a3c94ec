-- Not a test of its own: pg_test.sh runs it in the portable edition's regress database after
-- installing the previous published script, before setup_portable installs the current one over
-- it; portable_upgrade then checks what it left. A tracking with a filter and sums, a plain one,
-- written to before the upgrade.
CREATE TABLE upgraded (id serial, workos_org_id text, status text, amount numeric, deleted_at timestamptz);
INSERT INTO upgraded (workos_org_id, status, amount, deleted_at)
SELECT 'org' || (i % 3), (ARRAY['Open', 'Paid', 'Void'])[1 + i % 3], i * 1.25,
       CASE WHEN i % 5 = 0 THEN '2026-01-01'::timestamptz END
  FROM generate_series(1, 60) i;
SELECT org_stats.track('upgraded', filter => 'deleted_at IS NULL', sum_columns => ARRAY['amount']);
SELECT org_stats.track('upgraded', name => 'upgraded_all');
UPDATE upgraded SET status = 'Paid' WHERE id % 4 = 0;
DELETE FROM upgraded WHERE id % 7 = 0;
