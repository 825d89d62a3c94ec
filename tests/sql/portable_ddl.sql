-- The portable edition without event triggers (docs/managed.md, "What differs"): DDL on a
-- tracked table never makes it miscount. Dropping a tracked column or changing its type is
-- refused; renaming one makes writes fail, with a HINT, until the table is tracked again;
-- partitions attached or detached make reads count live until recalculate() follows them;
-- TRUNCATE is refused at REPEATABLE READ; a dropped table is forgotten; running the script again
-- keeps every count.
CREATE TABLE crates (id serial, workos_org_id text, status text, weight integer, lost_at timestamptz);
INSERT INTO crates (workos_org_id, status, weight)
SELECT 'org' || (i % 2), (ARRAY['Open', 'Closed'])[1 + i % 2], i FROM generate_series(1, 20) i;
SELECT org_stats.track('crates', filter => 'lost_at IS NULL', sum_columns => ARRAY['weight']);
\pset format unaligned
\pset fieldsep ' | '
-- The tracked columns (org, status, summed, read by the filter) cannot be dropped or change type;
-- other columns can.
SELECT * FROM error_of($$ALTER TABLE crates DROP COLUMN status$$);
SELECT * FROM error_of($$ALTER TABLE crates DROP COLUMN lost_at$$);
SELECT * FROM error_of($$ALTER TABLE crates ALTER COLUMN weight TYPE bigint$$);
ALTER TABLE crates DROP COLUMN id;
INSERT INTO crates VALUES ('org1', 'Open', 5, NULL);
SELECT * FROM totals_mismatches('crates', 'crates', 'lost_at IS NULL', 'weight');

-- Renaming a tracked column: writes fail, with an error saying what to do (nothing is counted
-- wrong), until the table is tracked again, in the transaction of the rename or after it. This
-- session's writes above planned the trigger functions' statements before the rename.
ALTER TABLE crates RENAME COLUMN status TO state;
SELECT * FROM error_of($$INSERT INTO crates VALUES ('org1', 'Open', 1, NULL)$$);
SELECT code, message FROM error_of($$DELETE FROM crates WHERE weight = 5$$);
SELECT code, message FROM error_of($$SELECT * FROM org_stats.check_drift('crates')$$);
-- Another column given the old name is not counted in its place.
BEGIN;
ALTER TABLE crates ADD COLUMN status text;
SELECT code, message FROM error_of($$INSERT INTO crates VALUES ('org1', 'Open', 1, NULL, 'Open')$$);
ROLLBACK;
BEGIN;
SELECT org_stats.untrack('crates');
SELECT org_stats.track('crates', status_column => 'state', filter => 'lost_at IS NULL', sum_columns => ARRAY['weight']);
COMMIT;
INSERT INTO crates VALUES ('org1', 'Open', 1, NULL);
SELECT * FROM totals_mismatches('crates', 'crates', 'lost_at IS NULL', 'weight', status_col => 'state');

-- Tracked columns of domains whose constraints refuse NULL are counted, and a rename of one is
-- caught as any other (the trigger functions' variable for it is of its base type).
CREATE DOMAIN regress_code AS text NOT NULL CHECK (VALUE <> '');
-- So is a column named like a PL/pgSQL keyword.
CREATE TABLE coded (workos_org_id regress_code, status regress_code, loop integer);
SELECT org_stats.track('coded', sum_columns => ARRAY['loop']);
INSERT INTO coded VALUES ('org1', 'Open', 3), ('org1', 'Closed', 4);
UPDATE coded SET status = 'Closed' WHERE loop = 3;
SELECT * FROM totals_mismatches('coded', 'coded', sum_col => 'loop');
ALTER TABLE coded RENAME COLUMN status TO state;
SELECT code, message FROM error_of($$INSERT INTO coded VALUES ('org1', 'Open', 1)$$);
SELECT org_stats.untrack('coded');
DROP TABLE coded;
DROP DOMAIN regress_code;

-- TRUNCATE at REPEATABLE READ is refused and changes nothing; at READ COMMITTED it empties the counts.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT * FROM error_of($$TRUNCATE crates$$);
COMMIT;
SELECT * FROM totals_mismatches('crates', 'crates', 'lost_at IS NULL', 'weight', status_col => 'state');
\pset format aligned

-- Running the script again (an upgrade in place) keeps every count and goes on counting.
SELECT * FROM org_stats.totals('crates', 'org1');
\set ECHO none
\i portable/org_stats.sql
\set ECHO all
SELECT * FROM org_stats.totals('crates', 'org1');
UPDATE crates SET state = 'Closed' WHERE workos_org_id = 'org1' AND weight < 10;
SELECT * FROM totals_mismatches('crates', 'crates', 'lost_at IS NULL', 'weight', status_col => 'state');

-- A dropped table is forgotten: gone from tracked_tables at once, its counters at the next track().
DROP TABLE crates;
SELECT count(*) AS trackings FROM org_stats.tracked_tables WHERE tracking IS NULL AND table_name::text = 'crates';
CREATE TABLE crates2 (workos_org_id text, status text);
SELECT org_stats.track('crates2');
SELECT count(*) AS orphan_counters FROM org_stats.counters c
 WHERE NOT EXISTS (SELECT FROM org_stats.tracked t WHERE t.table_id = c.table_id);
SELECT org_stats.untrack('crates2');
DROP TABLE crates2;

-- Partitions attached or detached after track(): reads count live (health says why) until
-- recalculate() puts the triggers on the new tree and repairs what they missed.
CREATE TABLE legs (workos_org_id text, status text, day date) PARTITION BY RANGE (day);
CREATE TABLE legs_jan PARTITION OF legs FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
INSERT INTO legs SELECT 'acme', 'Done', '2026-01-15' FROM generate_series(1, 5);
SELECT org_stats.track('legs');
CREATE TABLE legs_feb (workos_org_id text, status text, day date);
INSERT INTO legs_feb SELECT 'acme', 'Open', '2026-02-03' FROM generate_series(1, 3);
ALTER TABLE legs ATTACH PARTITION legs_feb FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
INSERT INTO legs_feb VALUES ('acme', 'Open', '2026-02-04');
SELECT live_reason FROM org_stats.health WHERE table_name = 'legs'::regclass;
SELECT * FROM org_stats.count_by_status('legs', 'acme');
SELECT * FROM mismatches('legs');
-- Running the script again meanwhile (an upgrade) re-makes its triggers, and its reads stay live.
\set ECHO none
\i portable/org_stats.sql
\set ECHO all
SELECT live_reason FROM org_stats.health WHERE table_name = 'legs'::regclass;
INSERT INTO legs VALUES ('acme', 'Open', '2026-02-06');
SELECT * FROM mismatches('legs');
SELECT count(*) AS repaired FROM org_stats.recalculate('legs');
SELECT live_reason FROM org_stats.health WHERE table_name = 'legs'::regclass;
INSERT INTO legs_feb VALUES ('acme', 'Open', '2026-02-05');
SELECT * FROM org_stats.count_by_status('legs', 'acme');
SELECT * FROM mismatches('legs');
ALTER TABLE legs DETACH PARTITION legs_jan;
SELECT * FROM org_stats.count_by_status('legs', 'acme');
SELECT count(*) AS repaired FROM org_stats.recalculate('legs');
INSERT INTO legs_jan VALUES ('acme', 'Done', '2026-01-20');
SELECT * FROM org_stats.count_by_status('legs', 'acme');
SELECT * FROM mismatches('legs');
-- A table attached, written into through the parent and detached again before recalculate():
-- the tree is as recorded, but the counts held its rows; those were written apart (a negated
-- session), so reads count live until recalculate().
CREATE TABLE legs_mar (workos_org_id text, status text, day date);
ALTER TABLE legs ATTACH PARTITION legs_mar FOR VALUES FROM ('2026-03-01') TO ('2026-04-01');
SELECT count(*) AS repaired FROM org_stats.recalculate('legs');
CREATE TABLE legs_apr (workos_org_id text, status text, day date);
ALTER TABLE legs ATTACH PARTITION legs_apr FOR VALUES FROM ('2026-04-01') TO ('2026-05-01');
INSERT INTO legs VALUES ('acme', 'Open', '2026-04-02'), ('acme', 'Done', '2026-03-02');
ALTER TABLE legs DETACH PARTITION legs_apr;
SELECT live_reason FROM org_stats.health WHERE table_name = 'legs'::regclass;
SELECT * FROM org_stats.count_by_status('legs', 'acme');
SELECT * FROM mismatches('legs');
SELECT count(*) AS repaired FROM org_stats.recalculate('legs');
SELECT live_reason FROM org_stats.health WHERE table_name = 'legs'::regclass;
SELECT * FROM mismatches('legs');
DROP TABLE legs_apr;
-- A partition's TRUNCATE after a rename stops at the same error, every time, also in a session
-- whose TRUNCATE of a partition (here an empty one) ran before the rename.
TRUNCATE legs_mar;
ALTER TABLE legs RENAME COLUMN status TO state;
\pset format unaligned
SELECT code, message FROM error_of($$TRUNCATE legs_feb$$);
SELECT code, message FROM error_of($$TRUNCATE legs_feb$$);
\pset format aligned
ALTER TABLE legs RENAME COLUMN state TO status;
-- A partition cannot be tracked on its own: a write through its parent fires none of its
-- statement triggers.
\pset format unaligned
SELECT * FROM error_of($$SELECT org_stats.track('legs_feb')$$);
\pset format aligned
SELECT org_stats.untrack('legs');
SELECT count(*) AS triggers_left FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relname IN ('legs', 'legs_jan', 'legs_feb') AND NOT t.tgisinternal;
DROP TABLE legs, legs_jan;
