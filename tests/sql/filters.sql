-- A filter counts only the rows satisfying it: soft-deleted loads drop out of "open loads" when
-- deleted_at is set and come back when it is cleared, through every write path; the counts equal
-- a live GROUP BY with the same WHERE.
CREATE TABLE soft_loads (id serial PRIMARY KEY, workos_org_id text, status load_status,
                         deleted_at timestamptz, archived boolean NOT NULL DEFAULT false);
INSERT INTO soft_loads (workos_org_id, status, deleted_at)
SELECT 'org' || (i % 3), (ARRAY['Open', 'Dispatched', 'Delivered']::load_status[])[1 + i % 3],
       CASE WHEN i % 4 = 0 THEN '2026-01-01'::timestamptz END
  FROM generate_series(1, 60) i;
SELECT org_stats.track('soft_loads', filter => 'deleted_at IS NULL');
SELECT * FROM totals_mismatches('soft_loads', 'soft_loads', 'deleted_at IS NULL');
SELECT * FROM org_stats.count_by_status('soft_loads', 'org1');

-- Soft delete, undelete, a status change of a deleted row (nothing), an org move of a deleted
-- row (nothing), hard delete of deleted and live rows, a bulk soft delete, inserts of both kinds.
UPDATE soft_loads SET deleted_at = now() WHERE id IN (1, 2, 3);
UPDATE soft_loads SET deleted_at = NULL WHERE id = 4;
UPDATE soft_loads SET status = 'Cancelled' WHERE id = 8;
UPDATE soft_loads SET workos_org_id = 'org9' WHERE id = 12;
DELETE FROM soft_loads WHERE id IN (16, 17);
UPDATE soft_loads SET deleted_at = now() WHERE workos_org_id = 'org2' AND status = 'Delivered';
INSERT INTO soft_loads (workos_org_id, status, deleted_at) VALUES ('org1', 'Open', NULL), ('org1', 'Open', now());
SELECT * FROM totals_mismatches('soft_loads', 'soft_loads', 'deleted_at IS NULL');
SELECT * FROM org_stats.count_by_status('soft_loads', 'org1');

-- Inside a transaction, with a savepoint rolled back, the counts follow the filter too.
BEGIN;
UPDATE soft_loads SET deleted_at = now() WHERE workos_org_id = 'org1';
SELECT org_stats.count('soft_loads', 'org1') AS org1_open_in_transaction;
SAVEPOINT s;
UPDATE soft_loads SET deleted_at = NULL WHERE workos_org_id = 'org1';
ROLLBACK TO SAVEPOINT s;
SELECT * FROM totals_mismatches('soft_loads', 'soft_loads', 'deleted_at IS NULL');
ROLLBACK;
SELECT * FROM totals_mismatches('soft_loads', 'soft_loads', 'deleted_at IS NULL');

-- Filters of several columns, with built-in functions and operators, enums and booleans.
CREATE TABLE fees (id serial PRIMARY KEY, workos_org_id text, status text, amount numeric, archived boolean);
INSERT INTO fees (workos_org_id, status, amount, archived)
SELECT 'org' || (i % 2), (ARRAY['DRAFT', 'PAID', 'VOID'])[1 + i % 3], i * 1.5, i % 5 = 0 FROM generate_series(1, 40) i;
SELECT org_stats.track('fees', filter => $$status <> 'VOID' AND NOT archived AND coalesce(amount, 0) > 10 AND lower(status) LIKE 'p%'$$);
UPDATE fees SET archived = NOT archived WHERE id % 3 = 0;
UPDATE fees SET amount = NULL WHERE id % 7 = 0;
SELECT * FROM totals_mismatches('fees', 'fees', $$status <> 'VOID' AND NOT archived AND coalesce(amount, 0) > 10 AND lower(status) LIKE 'p%'$$);
-- The filter as stored: printed by PostgreSQL, with the search path pinned to pg_catalog.
SELECT table_name, filter FROM org_stats.tracked_tables WHERE table_name IN ('soft_loads'::regclass, 'fees'::regclass) ORDER BY 1;
SELECT org_stats.untrack('fees');

-- What a filter may not be: org_stats evaluates it with its own rights, so only built-in
-- immutable functions and operators over the table's own columns and constants.
CREATE FUNCTION my_check(text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT true $$;
CREATE DOMAIN positive AS numeric CHECK (VALUE > 0);
\pset format unaligned
\pset fieldsep ' | '
SELECT * FROM error_of($$SELECT org_stats.track('fees', filter => 'amount > (SELECT 1)')$$);
SELECT * FROM error_of($$SELECT org_stats.track('fees', filter => 'random() < 0.5')$$);
SELECT * FROM error_of($$SELECT org_stats.track('fees', filter => 'now() > ''2026-01-01''')$$);
SELECT * FROM error_of($$SELECT org_stats.track('fees', filter => 'current_date > ''2026-01-01''')$$);
SELECT * FROM error_of($$SELECT org_stats.track('fees', filter => 'my_check(status)')$$);
SELECT * FROM error_of($$SELECT org_stats.track('fees', filter => 'amount::positive > 1')$$);
SELECT * FROM error_of($$SELECT org_stats.track('fees', filter => 'ctid > ''(0,1)''')$$);
SELECT * FROM error_of($$SELECT org_stats.track('fees', filter => 'count(*) > 1')$$);
SELECT * FROM error_of($$SELECT org_stats.track('fees', filter => 'amount')$$);
SELECT * FROM error_of($$SELECT org_stats.track('fees', filter => 'no_such_column IS NULL')$$);
SELECT * FROM error_of($$SELECT org_stats.track('fees', filter => 'true) FROM pg_authid WHERE (true')$$);
SELECT * FROM error_of($$SELECT org_stats.track('fees', filter => 'true; DROP TABLE fees')$$);
\pset format aligned
SELECT count(*) AS fees_trackings FROM org_stats.tracked_tables WHERE table_name = 'fees'::regclass;
DROP FUNCTION my_check(text);
DROP DOMAIN positive;

SELECT org_stats.untrack('soft_loads');
DROP TABLE soft_loads, fees;
