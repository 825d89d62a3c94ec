-- Running a newer script over an installed one upgrades it in place: the trackings made and
-- written to under the previous script (tests/sql/portable_upgrade_setup.sql, run by pg_test.sh
-- before setup_portable) are exact after it, keep counting every write path, and TRUNCATE.
SELECT tracking, filter, sum_columns FROM org_stats.tracked_tables
 WHERE table_name = 'upgraded'::regclass ORDER BY 1 NULLS FIRST;
SELECT * FROM totals_mismatches('upgraded', 'upgraded', 'deleted_at IS NULL', 'amount');
SELECT * FROM totals_mismatches('upgraded_all', 'upgraded');
INSERT INTO upgraded (workos_org_id, status, amount) VALUES ('org1', 'Open', 10), ('org2', 'Void', NULL);
UPDATE upgraded SET deleted_at = now() WHERE id % 6 = 0;
DELETE FROM upgraded WHERE id % 11 = 0;
SELECT * FROM totals_mismatches('upgraded', 'upgraded', 'deleted_at IS NULL', 'amount');
SELECT * FROM totals_mismatches('upgraded_all', 'upgraded');
TRUNCATE upgraded;
SELECT count(*) AS counts_left FROM org_stats.organization_stats WHERE table_name = 'upgraded'::regclass;
SELECT org_stats.untrack('upgraded');
SELECT org_stats.untrack('upgraded_all');
DROP TABLE upgraded;
