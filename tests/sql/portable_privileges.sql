-- Privileges in the portable edition: an app role with only DML on a tracked table has its writes
-- counted and cannot touch the counters, the trackings or the trigger functions; counts are read
-- only by roles that may SELECT from the table and that no row-level security policy applies to.
CREATE ROLE regress_app_writer;
CREATE ROLE regress_outsider;
-- The installing role may create roles (as managed providers' admin roles may) and switch to them.
GRANT regress_app_writer, regress_outsider TO CURRENT_USER;
CREATE TABLE crates_p (id serial, workos_org_id text, status text);
SELECT org_stats.track('crates_p');
GRANT SELECT, INSERT, UPDATE, DELETE ON crates_p TO regress_app_writer;
GRANT USAGE ON SEQUENCE crates_p_id_seq TO regress_app_writer;
\pset format unaligned
\pset fieldsep ' | '
SET ROLE regress_app_writer;
INSERT INTO crates_p (workos_org_id, status) VALUES ('tenant-a', 'Open'), ('tenant-a', 'Open'), ('tenant-b', 'Open');
UPDATE crates_p SET status = 'Closed' WHERE id = (SELECT min(id) FROM crates_p);
SELECT * FROM org_stats.count_by_status('crates_p', 'tenant-a');
SELECT * FROM error_of($$INSERT INTO org_stats.counters VALUES (1, 'tenant-a', 'Open', 0, 1000)$$);
SELECT * FROM error_of($$UPDATE org_stats.counters SET n = 0$$);
SELECT * FROM error_of($$DELETE FROM org_stats.counters$$);
SELECT * FROM error_of($$SELECT * FROM org_stats.counters$$);
SELECT * FROM error_of($$UPDATE org_stats.tracked SET filter = 'false'$$);
SELECT * FROM error_of($$SELECT org_stats.untrack('crates_p')$$);
SELECT * FROM error_of($$SELECT org_stats.track('crates_p', name => 'mine')$$);
SELECT * FROM error_of($$SELECT * FROM org_stats.recalculate('crates_p')$$);
SELECT * FROM error_of($$ALTER TABLE crates_p DISABLE TRIGGER USER$$);
SELECT * FROM error_of($$SELECT org_stats.session()$$);
RESET ROLE;

-- A role that owns a table of its own cannot attach the trigger functions to it to forge another
-- table's counts, nor read counts of a table it may not SELECT from.
CREATE SCHEMA regress_outsider_schema AUTHORIZATION regress_outsider;
SET ROLE regress_outsider;
CREATE TABLE regress_outsider_schema.forged (workos_org_id text, status text);
-- (permission denied for function org_stats.count_<n>_insert)
SELECT code FROM error_of(format(
    'CREATE TRIGGER forge AFTER INSERT ON regress_outsider_schema.forged REFERENCING NEW TABLE AS org_stats_new FOR EACH STATEMENT EXECUTE FUNCTION %s()',
    (SELECT g.tgfoid::regproc FROM pg_trigger g WHERE g.tgrelid = 'crates_p'::regclass AND g.tgname LIKE 'org_stats_insert_%')));
SELECT * FROM error_of($$SELECT org_stats.count('crates_p', 'tenant-a')$$);
SELECT count(*) AS visible_rows FROM org_stats.organization_stats;
RESET ROLE;
DROP SCHEMA regress_outsider_schema CASCADE;

-- The trigger functions run with the tracking owner's rights and pin no search_path: what a
-- writer plants ahead of pg_catalog on its own (functions, operators, an aggregate, a type in
-- pg_temp, which is searched first for types) is never called; each planted thing fails if it is.
CREATE TABLE fees_p (id serial, workos_org_id text, status text, amount numeric, units integer);
SELECT org_stats.track('fees_p', filter => $$lower(status) <> 'void' AND amount + 1 > 1$$,
                       sum_columns => ARRAY['amount', 'units']);
GRANT SELECT, INSERT, UPDATE, DELETE ON fees_p TO regress_app_writer;
GRANT USAGE ON SEQUENCE fees_p_id_seq TO regress_app_writer;
CREATE SCHEMA regress_planted AUTHORIZATION regress_app_writer;
SET ROLE regress_app_writer;
CREATE FUNCTION regress_planted.planted() RETURNS boolean LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'a planted object ran as %', current_user; END $$;
CREATE FUNCTION regress_planted.lower(text) RETURNS text LANGUAGE sql AS 'SELECT CASE WHEN regress_planted.planted() THEN $1 END';
CREATE FUNCTION regress_planted.current_setting(text, boolean) RETURNS text LANGUAGE sql AS 'SELECT CASE WHEN regress_planted.planted() THEN $1 END';
CREATE FUNCTION regress_planted.text_ne(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT regress_planted.planted()';
CREATE OPERATOR regress_planted.<> (LEFTARG = text, RIGHTARG = text, FUNCTION = regress_planted.text_ne);
CREATE OPERATOR regress_planted.= (LEFTARG = text, RIGHTARG = text, FUNCTION = regress_planted.text_ne);
CREATE FUNCTION regress_planted.bigint_plus(bigint, bigint) RETURNS bigint LANGUAGE sql AS 'SELECT CASE WHEN regress_planted.planted() THEN $1 END';
CREATE OPERATOR regress_planted.+ (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = regress_planted.bigint_plus);
CREATE FUNCTION regress_planted.numeric_plus(numeric, numeric) RETURNS numeric LANGUAGE sql AS 'SELECT CASE WHEN regress_planted.planted() THEN $1 END';
CREATE OPERATOR regress_planted.+ (LEFTARG = numeric, RIGHTARG = numeric, FUNCTION = regress_planted.numeric_plus);
CREATE FUNCTION regress_planted.int_sum(bigint, integer) RETURNS bigint LANGUAGE sql AS 'SELECT CASE WHEN regress_planted.planted() THEN $1 END';
CREATE AGGREGATE regress_planted.sum(integer) (SFUNC = regress_planted.int_sum, STYPE = bigint);
CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (regress_planted.planted());
SET search_path = regress_planted, pg_catalog;
INSERT INTO public.fees_p (workos_org_id, status, amount, units) VALUES ('tenant-a', 'Open', 5, 1), ('tenant-a', 'VOID', 7, 2);
UPDATE public.fees_p SET status = 'Paid', amount = pg_catalog.numeric_add(amount, 1);
DELETE FROM public.fees_p WHERE units = 2;
INSERT INTO public.fees_p (workos_org_id, status, amount, units) VALUES ('tenant-b', 'Open', 3, 4);
-- Nor, once a tracked column is renamed, a function of a row named like it, which a reference to
-- a column that is not there may be taken for: the write fails with org_stats' error.
CREATE FUNCTION regress_planted.planted_when_planned() RETURNS boolean LANGUAGE plpgsql IMMUTABLE
    AS $$ BEGIN RAISE EXCEPTION 'a planted object ran as %', current_user; END $$;
CREATE FUNCTION regress_planted.units(anyelement) RETURNS integer LANGUAGE sql
    AS 'SELECT CASE WHEN regress_planted.planted_when_planned() THEN 1 END';
RESET ROLE;
ALTER TABLE public.fees_p RENAME COLUMN units TO quantity;
SET ROLE regress_app_writer;
SELECT code, message FROM public.error_of($$INSERT INTO public.fees_p (workos_org_id, status, amount, quantity) VALUES ('tenant-b', 'Open', 3, 4)$$);
RESET ROLE;
ALTER TABLE public.fees_p RENAME COLUMN quantity TO units;
SET ROLE regress_app_writer;
RESET search_path;
DROP DOMAIN pg_temp.text;
RESET ROLE;
SELECT * FROM totals_mismatches('fees_p', 'fees_p', $$lower(status) <> 'void' AND amount + 1 > 1$$, 'amount');
SELECT * FROM totals_mismatches('fees_p', 'fees_p', $$lower(status) <> 'void' AND amount + 1 > 1$$, 'units');
SELECT org_stats.untrack('fees_p');
DROP TABLE fees_p;
SET client_min_messages = warning;
DROP SCHEMA regress_planted CASCADE;
RESET client_min_messages;

-- Row-level security: a role the table's policies apply to gets no counts (they include the rows
-- the policies hide from it); the table's owner does.
ALTER TABLE crates_p ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_a ON crates_p USING (workos_org_id = 'tenant-a');
SET ROLE regress_app_writer;
SELECT * FROM error_of($$SELECT org_stats.count('crates_p', 'tenant-b')$$);
SELECT count(*) AS visible_rows FROM org_stats.organization_stats WHERE table_name = 'crates_p'::regclass;
RESET ROLE;
SELECT org_stats.count('crates_p', 'tenant-b') AS owner_count;
\pset format aligned
SELECT org_stats.untrack('crates_p');
DROP TABLE crates_p;
DROP ROLE regress_app_writer, regress_outsider;
