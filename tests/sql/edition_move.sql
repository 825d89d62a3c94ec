-- Moving a database between the editions (docs/managed.md, "Moving between editions"): counts
-- are exact before, after each move and after writes that follow it. In a database of its own,
-- where the portable edition is installed first.
CREATE DATABASE org_stats_editions;
\c org_stats_editions
\set ECHO none
SET client_min_messages = warning;
\i portable/org_stats.sql
\i tests/sql/oracle.sql
RESET client_min_messages;
\set ECHO all
CREATE TABLE moved (id serial, workos_org_id text, status text, amount numeric, deleted_at timestamptz);
INSERT INTO moved (workos_org_id, status, amount, deleted_at)
SELECT 'org' || (i % 3), (ARRAY['Open', 'Paid'])[1 + i % 2], i, CASE WHEN i % 5 = 0 THEN now() END
  FROM generate_series(1, 50) i;
SELECT org_stats.track('moved', filter => 'deleted_at IS NULL', sum_columns => ARRAY['amount']);
UPDATE moved SET status = 'Paid' WHERE id % 3 = 0;
SELECT * FROM totals_mismatches('moved', 'moved', 'deleted_at IS NULL', 'amount');

-- Portable to native, in one transaction: the portable schema goes (its triggers with it), the
-- extension comes, the table is tracked again and counted.
BEGIN;
SET LOCAL client_min_messages = warning;
DROP SCHEMA org_stats CASCADE;
CREATE EXTENSION org_stats;
SELECT org_stats.track('moved', filter => 'deleted_at IS NULL', sum_columns => ARRAY['amount']);
COMMIT;
SELECT extversion IS NOT NULL AS native FROM pg_extension WHERE extname = 'org_stats';
DELETE FROM moved WHERE id % 7 = 0;
INSERT INTO moved (workos_org_id, status, amount) VALUES ('org1', 'Open', 7);
SELECT * FROM totals_mismatches('moved', 'moved', 'deleted_at IS NULL', 'amount');

-- Native to portable: the extension goes, the script comes (its own COMMIT ends this
-- transaction), the table is tracked again and counted.
BEGIN;
SET LOCAL client_min_messages = warning;
DROP EXTENSION org_stats CASCADE;
\set ECHO none
\i portable/org_stats.sql
\set ECHO all
SELECT org_stats.track('moved', filter => 'deleted_at IS NULL', sum_columns => ARRAY['amount']);
SELECT count(*) AS native FROM pg_extension WHERE extname = 'org_stats';
UPDATE moved SET deleted_at = now() WHERE id % 4 = 0;
SELECT * FROM totals_mismatches('moved', 'moved', 'deleted_at IS NULL', 'amount');

\c org_stats_test
DROP DATABASE org_stats_editions;
