-- Bad input gets a clear error with its SQLSTATE and a HINT, and changes nothing.
\pset format unaligned
\pset fieldsep ' | '
SELECT * FROM error_of($$SELECT org_stats.track('loads')$$);
SELECT * FROM error_of($$SELECT org_stats.track('no_such_table')$$);
CREATE TABLE bills (workos_org_id text, status text, amount numeric);
SELECT * FROM error_of($$SELECT org_stats.track('bills', org_column => 'tenant')$$);
SELECT * FROM error_of($$SELECT org_stats.track('bills', status_column => 'Status')$$);
SELECT * FROM error_of($$SELECT org_stats.track('bills', status_column => 'amount')$$);

CREATE VIEW open_loads AS SELECT * FROM loads WHERE status = 'Open';
CREATE MATERIALIZED VIEW load_totals AS SELECT workos_org_id, status FROM loads;
CREATE TEMP TABLE scratch_loads (workos_org_id text, status text);
CREATE UNLOGGED TABLE fast_loads (workos_org_id text, status text);
CREATE SEQUENCE some_seq;
SELECT * FROM error_of($$SELECT org_stats.track('open_loads')$$);
SELECT * FROM error_of($$SELECT org_stats.track('load_totals')$$);
SELECT * FROM error_of($$SELECT org_stats.track('scratch_loads')$$);
SELECT * FROM error_of($$SELECT org_stats.track('fast_loads')$$);
SELECT * FROM error_of($$SELECT org_stats.track('some_seq')$$);

-- Legacy inheritance (child rows are read through the parent but fire only the child's triggers)
-- and nondeterministic collations (a GROUP BY would merge values the triggers count apart).
CREATE TABLE parent_loads (workos_org_id text, status text);
CREATE TABLE child_loads () INHERITS (parent_loads);
CREATE COLLATION case_blind (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE blind_loads (workos_org_id text, status text COLLATE case_blind);
SELECT * FROM error_of($$SELECT org_stats.track('parent_loads')$$);
SELECT * FROM error_of($$SELECT org_stats.track('blind_loads')$$);

-- A backfilling track() refuses REPEATABLE READ, where its count could miss rows.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT * FROM error_of($$SELECT org_stats.track('bills')$$);
ROLLBACK;

SELECT * FROM error_of($$SELECT org_stats.untrack('bills')$$);
SELECT * FROM error_of($$SELECT org_stats.count_by_status('bills', 'acme')$$);
SELECT * FROM error_of($$SELECT org_stats.count('open_loads', 'acme')$$);

-- Column names are identifiers, never SQL: nothing in them is executed.
CREATE TABLE tricky ("a""; DROP TABLE loads; --" text, "b'); DROP TABLE loads; --" text);
SELECT org_stats.track('tricky', 'a"; DROP TABLE loads; --', 'b''); DROP TABLE loads; --');
INSERT INTO tricky VALUES ('acme', 'Open'), ('acme', 'Open');
SELECT * FROM org_stats.count_by_status('tricky', 'acme');
TRUNCATE tricky;
SELECT org_stats.untrack('tricky');
SELECT count(*) AS loads_still_there FROM pg_class WHERE relname = 'loads';
SELECT * FROM error_of($$SELECT org_stats.count('loads', 'acme''; DROP TABLE loads; --')$$);

-- Nothing above changed the registry.
SELECT table_name FROM org_stats.tracked_tables ORDER BY 1;
\pset format aligned
DROP VIEW open_loads;
DROP MATERIALIZED VIEW load_totals;
DROP TABLE scratch_loads, fast_loads, tricky, bills, child_loads, parent_loads, blind_loads;
DROP COLLATION case_blind;
DROP SEQUENCE some_seq;
