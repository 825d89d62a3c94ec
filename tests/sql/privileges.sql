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

-- The owner of an enum may define its own cast to text; org_stats, which reads tables with the
-- extension owner's rights, never calls it (it counts enums by their output function).
CREATE SCHEMA outsider_schema AUTHORIZATION outsider;
SET ROLE outsider;
CREATE TYPE outsider_schema.mood AS ENUM ('calm', 'busy');
CREATE FUNCTION outsider_schema.loud(outsider_schema.mood) RETURNS text LANGUAGE plpgsql AS
    $$BEGIN RAISE EXCEPTION 'user cast ran as %', current_user; END$$;
CREATE CAST (outsider_schema.mood AS text) WITH FUNCTION outsider_schema.loud(outsider_schema.mood);
CREATE TABLE outsider_schema.moods (workos_org_id text, status outsider_schema.mood);
INSERT INTO outsider_schema.moods VALUES ('acme', 'calm'), ('acme', 'busy'), ('acme', 'busy');
SELECT org_stats.track('outsider_schema.moods');
INSERT INTO outsider_schema.moods VALUES ('acme', 'calm');
SELECT * FROM org_stats.count_by_status('outsider_schema.moods', 'acme');
SELECT * FROM org_stats.check_drift('outsider_schema.moods');
TRUNCATE outsider_schema.moods;
SELECT org_stats.count('outsider_schema.moods', 'acme');
SELECT org_stats.untrack('outsider_schema.moods');
RESET ROLE;
DROP SCHEMA outsider_schema CASCADE;

-- Row-level security: a role the policies apply to gets no counts (they would include rows the
-- policies hide from it), unless a superuser allows it with org_stats.count_under_rls.
CREATE TABLE tenant_loads (workos_org_id text, status text);
INSERT INTO tenant_loads VALUES ('tenant-a', 'Open'), ('tenant-b', 'Open');
SELECT org_stats.track('tenant_loads');
ALTER TABLE tenant_loads ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_a ON tenant_loads USING (workos_org_id = 'tenant-a');
GRANT SELECT ON tenant_loads TO app_writer;
SET ROLE app_writer;
SELECT * FROM error_of($$SELECT org_stats.count('tenant_loads', 'tenant-b')$$);
SELECT count(*) AS visible_rows FROM org_stats.organization_stats WHERE table_name = 'tenant_loads'::regclass;
SELECT * FROM error_of($$SET org_stats.count_under_rls = on$$);
RESET ROLE;
SET org_stats.count_under_rls = on;
SET ROLE app_writer;
SELECT org_stats.count('tenant_loads', 'tenant-b') AS allowed_count;
RESET ROLE;
RESET org_stats.count_under_rls;
SELECT org_stats.count('tenant_loads', 'tenant-b') AS owner_count;
SELECT org_stats.untrack('tenant_loads');
REVOKE ALL ON tenant_loads FROM app_writer;
DROP TABLE tenant_loads;

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
