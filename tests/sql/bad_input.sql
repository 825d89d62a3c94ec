-- Bad input gets a clear error with its SQLSTATE and a HINT, and changes nothing.
\pset format unaligned
\pset fieldsep ' | '
SELECT org_stats.track('loads');
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

-- org_stats.distribute() needs Citus.
SELECT * FROM error_of($$SELECT org_stats.distribute('loads')$$);

-- Grouping by several columns and by time: group_by empty, too long, repeated, a column of
-- another type or none at all, a status_column that disagrees with it; a bucket that is zero,
-- negative or mixes months with days, or missing; a time column of another type; a time zone
-- for a column without one, or unknown. Reads between two instants need a time column;
-- series() too.
CREATE TABLE trips (workos_org_id text, status text, carrier text, at timestamptz, day date, note jsonb);
SELECT * FROM error_of($$SELECT org_stats.track('trips', group_by => '{}')$$);
SELECT * FROM error_of($$SELECT org_stats.track('trips', group_by => ARRAY['status','carrier','status','carrier','status','carrier','status','carrier','status'])$$);
SELECT * FROM error_of($$SELECT org_stats.track('trips', group_by => ARRAY['status', 'carrier', 'status'])$$);
SELECT * FROM error_of($$SELECT org_stats.track('trips', group_by => ARRAY['status', NULL])$$);
SELECT * FROM error_of($$SELECT org_stats.track('trips', group_by => ARRAY['status', 'note'])$$);
SELECT * FROM error_of($$SELECT org_stats.track('trips', group_by => ARRAY['status', 'shipper'])$$);
SELECT * FROM error_of($$SELECT org_stats.track('trips', status_column => 'carrier', group_by => ARRAY['status'])$$);
SELECT * FROM error_of($$SELECT org_stats.track('trips', time_column => 'at', bucket => '0 hours')$$);
SELECT * FROM error_of($$SELECT org_stats.track('trips', time_column => 'at', bucket => '-1 hour')$$);
SELECT * FROM error_of($$SELECT org_stats.track('trips', time_column => 'at', bucket => '1 day -1 hour')$$);
SELECT * FROM error_of($$SELECT org_stats.track('trips', time_column => 'at', bucket => '1 month 2 days')$$);
SELECT * FROM error_of($$SELECT org_stats.track('trips', time_column => 'at')$$);
SELECT * FROM error_of($$SELECT org_stats.track('trips', bucket => '1 day')$$);
SELECT * FROM error_of($$SELECT org_stats.track('trips', time_column => 'carrier', bucket => '1 day')$$);
SELECT * FROM error_of($$SELECT org_stats.track('trips', time_column => 'arrived_at', bucket => '1 day')$$);
SELECT * FROM error_of($$SELECT org_stats.track('trips', time_column => 'day', bucket => '1 day', bucket_time_zone => 'Europe/Paris')$$);
SELECT * FROM error_of($$SELECT org_stats.track('trips', time_column => 'at', bucket => '1 day', bucket_time_zone => 'Mars/Olympus')$$);
SELECT org_stats.track('trips', group_by => ARRAY['status', 'carrier']);
SELECT * FROM error_of($$SELECT * FROM org_stats.groups('trips', 'acme', since => now())$$);
SELECT * FROM error_of($$SELECT * FROM org_stats.series('trips', 'acme', NULL, NULL)$$);
SELECT org_stats.untrack('trips');
DROP TABLE trips;

-- Nothing above changed the registry.
SELECT table_name FROM org_stats.tracked_tables ORDER BY 1;
\pset format aligned
DROP VIEW open_loads;
DROP MATERIALIZED VIEW load_totals;
DROP TABLE scratch_loads, fast_loads, tricky, bills, child_loads, parent_loads, blind_loads;
DROP COLLATION case_blind;
DROP SEQUENCE some_seq;
