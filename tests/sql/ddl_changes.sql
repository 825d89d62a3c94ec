-- DDL on tracked tables: counting follows renames and type changes, new and attached partitions
-- are counted, detached and dropped ones are not, a tracked column cannot be dropped, and a
-- dropped table is forgotten.
CREATE TABLE fleet (id serial, workos_org_id text, status text);
INSERT INTO fleet (workos_org_id, status) SELECT 'acme', (ARRAY['Open', 'Closed'])[1 + i % 2] FROM generate_series(1, 10) i;
SELECT org_stats.track('fleet');

-- Renaming the table or the tracked columns keeps counting.
ALTER TABLE fleet RENAME TO trucks;
ALTER TABLE trucks RENAME COLUMN status TO state;
ALTER TABLE trucks RENAME COLUMN workos_org_id TO tenant;
SELECT table_name, org_column, status_column FROM org_stats.tracked_tables WHERE table_name = 'trucks'::regclass;
INSERT INTO trucks (tenant, state) VALUES ('acme', 'Open');
UPDATE trucks SET state = 'Closed' WHERE id = 1;
SELECT * FROM org_stats.count_by_status('trucks', 'acme');
SELECT * FROM mismatches('trucks', 'tenant', 'state');

-- A type change to another supported type recounts (the text form may change); to an unsupported
-- one it is refused.
CREATE TYPE truck_state AS ENUM ('Open', 'Closed');
ALTER TABLE trucks ALTER COLUMN state TYPE truck_state USING state::truck_state;
SELECT * FROM mismatches('trucks', 'tenant', 'state');
SELECT * FROM error_of($$ALTER TABLE trucks ALTER COLUMN state TYPE boolean USING state = 'Open'$$);

-- A tracked column cannot be dropped; other columns can.
SELECT * FROM error_of($$ALTER TABLE trucks DROP COLUMN state$$);
ALTER TABLE trucks DROP COLUMN id;
INSERT INTO trucks VALUES ('acme', 'Open');
SELECT * FROM mismatches('trucks', 'tenant', 'state');

-- Dropping the table forgets it.
DROP TABLE trucks;
SELECT count(*) AS still_registered FROM org_stats.tracked t WHERE t.relid::text = 'trucks';
SELECT count(*) AS orphan_counters FROM org_stats.counters c WHERE NOT EXISTS (SELECT FROM org_stats.tracked t WHERE t.table_id = c.table_id);
DROP TYPE truck_state;

-- A filter and summed columns follow DDL too: renaming a column the filter reads rewrites it,
-- dropping one is refused and a changed type is checked again and recounted; a summed column's
-- type may change to another summable type (the sums are recounted), not to another.
CREATE TABLE soft_fees (id serial, workos_org_id text, status text, qty integer, deleted_at timestamptz);
INSERT INTO soft_fees (workos_org_id, status, qty, deleted_at)
SELECT 'org' || (i % 3), (ARRAY['DRAFT', 'PAID'])[1 + i % 2], i, CASE WHEN i % 4 = 0 THEN '2026-01-01'::timestamptz END
  FROM generate_series(1, 40) i;
SELECT org_stats.track('soft_fees', filter => 'deleted_at IS NULL', sum_columns => ARRAY['qty']);
ALTER TABLE soft_fees RENAME COLUMN deleted_at TO removed_at;
SELECT filter FROM org_stats.tracked_tables WHERE table_name = 'soft_fees'::regclass;
UPDATE soft_fees SET removed_at = now() WHERE id = 5;
SELECT * FROM totals_mismatches('soft_fees', 'soft_fees', 'removed_at IS NULL', 'qty');
\pset format unaligned
\pset fieldsep ' | '
SELECT * FROM error_of($$ALTER TABLE soft_fees DROP COLUMN removed_at$$);
SELECT * FROM error_of($$ALTER TABLE soft_fees DROP COLUMN qty$$);
SELECT * FROM error_of($$ALTER TABLE soft_fees ALTER COLUMN qty TYPE text$$);
\pset format aligned
ALTER TABLE soft_fees ALTER COLUMN removed_at TYPE timestamp;
ALTER TABLE soft_fees ALTER COLUMN qty TYPE numeric;
SELECT * FROM totals_mismatches('soft_fees', 'soft_fees', 'removed_at IS NULL', 'qty');
SELECT count(*) AS drift FROM org_stats.check_drift('soft_fees');
SELECT org_stats.untrack('soft_fees');
DROP TABLE soft_fees;

-- Partitions: created, attached (with rows), written directly, detached, dropped.
CREATE TABLE trips (workos_org_id text, status text, day date) PARTITION BY RANGE (day);
CREATE TABLE trips_jan PARTITION OF trips FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
INSERT INTO trips SELECT 'acme', 'Done', '2026-01-15' FROM generate_series(1, 5);
SELECT org_stats.track('trips');
CREATE TABLE trips_feb PARTITION OF trips FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
INSERT INTO trips_feb VALUES ('acme', 'Open', '2026-02-02');
CREATE TABLE trips_mar (workos_org_id text, status text, day date);
INSERT INTO trips_mar SELECT 'acme', 'Open', '2026-03-03' FROM generate_series(1, 3);
ALTER TABLE trips ATTACH PARTITION trips_mar FOR VALUES FROM ('2026-03-01') TO ('2026-04-01');
SELECT * FROM org_stats.count_by_status('trips', 'acme');
SELECT * FROM mismatches('trips');
TRUNCATE trips_mar;
SELECT * FROM mismatches('trips');
INSERT INTO trips_mar SELECT 'acme', 'Open', '2026-03-04' FROM generate_series(1, 2);
ALTER TABLE trips DETACH PARTITION trips_jan;
SELECT * FROM org_stats.count_by_status('trips', 'acme');
SELECT * FROM mismatches('trips');
TRUNCATE trips_jan;
SELECT * FROM mismatches('trips');
DROP TABLE trips_feb;
SELECT * FROM org_stats.count_by_status('trips', 'acme');
SELECT * FROM mismatches('trips');
-- A partition can be tracked on its own too, independently of its parent.
SELECT org_stats.track('trips_mar');
UPDATE trips SET status = 'Done' WHERE day = '2026-03-04';
SELECT * FROM org_stats.count_by_status('trips_mar', 'acme');
SELECT * FROM mismatches('trips_mar');
SELECT * FROM mismatches('trips');
SELECT org_stats.untrack('trips_mar');
SELECT org_stats.untrack('trips');
DROP TABLE trips, trips_jan;
