-- An app role with only DML on the tracked tables has its writes counted, cannot touch the
-- counter storage or the tracking, and reads counts only of tables it may SELECT from.
\pset format unaligned
\pset fieldsep ' | '
CREATE ROLE app_writer;
CREATE ROLE outsider;
GRANT SELECT, INSERT, UPDATE, DELETE ON loads, invoices TO app_writer;
GRANT USAGE ON SEQUENCE loads_id_seq, invoices_id_seq TO app_writer;

SET ROLE app_writer;
INSERT INTO loads (workos_org_id, status) VALUES ('tenant-a', 'Open'), ('tenant-a', 'Open');
UPDATE loads SET status = 'Delivered' WHERE id = (SELECT min(id) FROM loads WHERE workos_org_id = 'tenant-a');
SELECT * FROM org_stats.count_by_status('loads', 'tenant-a');
SELECT * FROM error_of($$INSERT INTO org_stats.counters VALUES ('tenant-a', 1, 'Open', 0, 1000)$$);
SELECT * FROM error_of($$UPDATE org_stats.counters SET n = 0$$);
SELECT * FROM error_of($$DELETE FROM org_stats.counters$$);
SELECT * FROM error_of($$TRUNCATE org_stats.counters$$);
SELECT * FROM error_of($$SELECT * FROM org_stats.counters$$);
SELECT * FROM error_of($$SELECT org_stats.untrack('loads')$$);
SELECT * FROM error_of($$SELECT org_stats.track('invoices')$$);
SELECT * FROM error_of($$ALTER TABLE loads DISABLE TRIGGER USER$$);
RESET ROLE;

-- A role that owns a table of its own cannot attach org_stats' trigger functions to it to forge
-- another table's counts.
CREATE TABLE forged (workos_org_id text, status text);
ALTER TABLE forged OWNER TO outsider;
SET ROLE outsider;
SELECT * FROM error_of(format(
    $$CREATE TRIGGER forge AFTER INSERT ON forged FOR EACH ROW EXECUTE FUNCTION org_stats.org_stats_row_trigger(%L, 'workos_org_id', 'status')$$,
    (SELECT 1)));
-- Without SELECT on a table, its counts are not readable either.
SELECT * FROM error_of($$SELECT org_stats.count('loads', 'tenant-a')$$);
SELECT * FROM error_of($$SELECT org_stats.counts('loads', 'tenant-a')$$);
SELECT count(*) AS visible_rows FROM org_stats.organization_stats;
RESET ROLE;

-- Objects planted on the search_path do not change what the triggers and reads do.
CREATE SCHEMA planted;
CREATE TABLE planted.counters (org_id text, table_id integer, status text, slot integer, n bigint);
CREATE FUNCTION planted.unnest(anyarray) RETURNS SETOF anyelement LANGUAGE sql AS 'SELECT NULL::text';
CREATE FUNCTION planted.sum(bigint) RETURNS bigint LANGUAGE sql AS 'SELECT 0::bigint';
SET search_path = planted, public;
INSERT INTO loads (workos_org_id, status) VALUES ('tenant-a', 'Cancelled');
SELECT * FROM org_stats.count_by_status('loads', 'tenant-a');
SELECT count(*) AS planted_rows FROM planted.counters;
RESET search_path;
SELECT * FROM mismatches('loads');

\pset format aligned
DROP SCHEMA planted CASCADE;
DROP TABLE forged;
REVOKE ALL ON loads, invoices FROM app_writer;
REVOKE ALL ON SEQUENCE loads_id_seq, invoices_id_seq FROM app_writer;
DROP ROLE app_writer;
DROP ROLE outsider;
