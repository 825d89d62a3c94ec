-- Trackings grouped by several columns and by a time bucket. groups() and series() equal a live
-- GROUP BY of the rows whose time is in [since, until), for any two instants: whole buckets come
-- from the counters, the rows of the buckets a bound cuts from the table. groups_mismatches()
-- (tests/sql/setup.sql) is the oracle; pg_regress runs in the time zone PST8PDT.
CREATE TABLE shipments (
    id            serial PRIMARY KEY,
    workos_org_id text NOT NULL,
    status        text,
    carrier       text,
    created_at    timestamptz,
    rate_cents    bigint,
    hazmat        boolean NOT NULL DEFAULT false
);
INSERT INTO shipments (workos_org_id, status, carrier, created_at, rate_cents, hazmat)
SELECT 'org' || (i % 3), (ARRAY['Open', 'Delivered', 'Cancelled'])[1 + (i / 3) % 3],
       (ARRAY['UPS', 'FedEx', NULL])[1 + (i / 5) % 3],
       '2026-10-25 00:00+00'::timestamptz + i * interval '53 minutes', i * 100, i % 10 = 0
  FROM generate_series(1, 1500) i;
INSERT INTO shipments (workos_org_id, status, carrier, created_at, rate_cents)
VALUES ('org0', 'Open', 'UPS', NULL, 1), ('org0', 'Open', 'UPS', 'infinity', 2),
       ('org1', 'Open', 'UPS', '-infinity', 3);

-- Without an index on (org, time) track() says that reads cut buckets from the table slowly.
SELECT org_stats.track('shipments', name => 'lanes', group_by => ARRAY['status', 'carrier'],
                       time_column => 'created_at', bucket => '1 hour',
                       sum_columns => ARRAY['rate_cents'], filter => 'NOT hazmat');
CREATE INDEX ON shipments (workos_org_id, created_at);
SELECT tracking, group_by, time_column, bucket, bucket_time_zone, sum_columns, filter
  FROM org_stats.tracked_tables WHERE tracking = 'lanes';

-- All time, and between two instants that cut buckets, each compared with the oracle.
SELECT * FROM org_stats.groups('lanes', 'org1');
SELECT * FROM groups_mismatches('lanes', 'shipments', 'ARRAY[status, carrier]', filter => 'NOT hazmat',
                                sum_col => 'rate_cents');
SELECT * FROM org_stats.groups('lanes', 'org1', '2026-11-02 09:10+00', '2026-11-05 17:45+00');
SELECT * FROM groups_mismatches('lanes', 'shipments', 'ARRAY[status, carrier]', 'created_at',
                                '2026-11-02 09:10+00', '2026-11-05 17:45+00', 'NOT hazmat', 'rate_cents');
-- Bounds on bucket edges, one bound, bounds inside one bucket, and the infinities.
SELECT * FROM groups_mismatches('lanes', 'shipments', 'ARRAY[status, carrier]', 'created_at',
                                '2026-11-02 09:00+00', '2026-11-05 17:00+00', 'NOT hazmat', 'rate_cents');
SELECT * FROM groups_mismatches('lanes', 'shipments', 'ARRAY[status, carrier]', 'created_at',
                                since => '2026-11-20 23:59:59.999999+00', filter => 'NOT hazmat');
SELECT * FROM groups_mismatches('lanes', 'shipments', 'ARRAY[status, carrier]', 'created_at',
                                until => '2026-10-26 00:00:00.000001+00', filter => 'NOT hazmat');
SELECT * FROM groups_mismatches('lanes', 'shipments', 'ARRAY[status, carrier]', 'created_at',
                                '2026-11-03 10:05+00', '2026-11-03 10:55+00', 'NOT hazmat', 'rate_cents');
SELECT * FROM groups_mismatches('lanes', 'shipments', 'ARRAY[status, carrier]', 'created_at',
                                '-infinity', 'infinity', 'NOT hazmat', 'rate_cents');
SELECT * FROM groups_mismatches('lanes', 'shipments', 'ARRAY[status, carrier]', 'created_at',
                                since => 'infinity', filter => 'NOT hazmat');
-- A row whose time is NULL counts only with neither bound; since >= until has no rows.
SELECT count FROM org_stats.groups('lanes', 'org0') WHERE key = '{Open,UPS}';
SELECT count FROM org_stats.groups('lanes', 'org0', '-infinity', 'infinity') WHERE key = '{Open,UPS}';
SELECT count(*) AS no_rows FROM org_stats.groups('lanes', 'org0', '2026-11-03', '2026-11-03');
SELECT count(*) AS no_rows FROM org_stats.groups('lanes', 'org0', '2026-11-04', '2026-11-03');

-- series(): the same rows per bucket, only buckets with rows; those a bound cuts hold only the
-- rows within the bounds.
SELECT * FROM org_stats.series('lanes', 'org2', '2026-11-02 09:10+00', '2026-11-02 20:45+00');
SELECT * FROM groups_mismatches('lanes', 'shipments', 'ARRAY[status, carrier]', 'created_at',
                                '2026-11-02 09:10+00', '2026-11-04 13:45+00', 'NOT hazmat', 'rate_cents',
                                'date_bin(''1 hour'', created_at, ''2000-01-01 00:00+00'')');
SELECT * FROM groups_mismatches('lanes', 'shipments', 'ARRAY[status, carrier]', 'created_at',
                                filter => 'NOT hazmat', sum_col => 'rate_cents',
                                bucket_sql => 'CASE WHEN isfinite(created_at) THEN date_bin(''1 hour'', created_at, ''2000-01-01 00:00+00'') ELSE created_at END');

-- Many orgs at once: each org once, in the order given, as groups() of each.
SELECT * FROM org_stats.groups('lanes', ARRAY['org2', 'org0', NULL, 'org2', 'nobody'],
                               '2026-11-02 09:10+00', '2026-11-02 21:00+00');
(SELECT org_id, key, count, sums::text FROM org_stats.groups('lanes', ARRAY['org2', 'org0', 'org1'], '2026-11-01', '2026-11-03')
 EXCEPT ALL
 SELECT o, g.key, g.count, g.sums::text FROM unnest(ARRAY['org2', 'org0', 'org1']) o,
        org_stats.groups('lanes', o, '2026-11-01', '2026-11-03') g)
UNION ALL
(SELECT o, g.key, g.count, g.sums::text FROM unnest(ARRAY['org2', 'org0', 'org1']) o,
        org_stats.groups('lanes', o, '2026-11-01', '2026-11-03') g
 EXCEPT ALL
 SELECT org_id, key, count, sums::text FROM org_stats.groups('lanes', ARRAY['org2', 'org0', 'org1'], '2026-11-01', '2026-11-03'));

-- Every write path moves rows between keys and buckets: the time column and a grouping column
-- updated, deletes, COPY, an org move, a rolled-back savepoint.
UPDATE shipments SET created_at = created_at + interval '3 days 40 minutes' WHERE id % 7 = 0;
UPDATE shipments SET carrier = 'DHL' WHERE id % 11 = 0;
UPDATE shipments SET created_at = NULL WHERE id % 17 = 0;
UPDATE shipments SET hazmat = NOT hazmat WHERE id % 19 = 0;
UPDATE shipments SET workos_org_id = 'org9' WHERE id % 23 = 0;
DELETE FROM shipments WHERE id % 13 = 0;
COPY shipments (workos_org_id, status, carrier, created_at, rate_cents) FROM stdin;
org0	Open	UPS	2026-11-03 10:30:00+00	7
org0	Open	\N	2026-11-03 10:31:00+00	\N
\.
BEGIN;
SAVEPOINT s;
UPDATE shipments SET created_at = created_at - interval '1 day';
ROLLBACK TO SAVEPOINT s;
INSERT INTO shipments (workos_org_id, status, carrier, created_at, rate_cents) VALUES ('org1', 'Open', 'UPS', now(), 5);
COMMIT;
SELECT * FROM groups_mismatches('lanes', 'shipments', 'ARRAY[status, carrier]', filter => 'NOT hazmat',
                                sum_col => 'rate_cents');
SELECT * FROM groups_mismatches('lanes', 'shipments', 'ARRAY[status, carrier]', 'created_at',
                                '2026-11-02 09:10+00', '2026-11-05 17:45+00', 'NOT hazmat', 'rate_cents');
SELECT * FROM groups_mismatches('lanes', 'shipments', 'ARRAY[status, carrier]', 'created_at',
                                '2026-11-01 00:00+00', '2026-11-09 00:00+00', 'NOT hazmat', 'rate_cents',
                                'date_bin(''1 hour'', created_at, ''2000-01-01 00:00+00'')');
SELECT * FROM org_stats.check_drift('lanes');

-- recalculate() settles the hours' counts into day and month totals (see docs/dimensions.md):
-- reads between two instants then add up whole months and days from those, and stay exact;
-- writes after it add to the hours again.
SELECT count(*) AS repaired FROM org_stats.recalculate('lanes');
SELECT count(*) > 0 AS has_day_totals
  FROM org_stats.counters c JOIN org_stats.tracked t USING (table_id)
 WHERE t.name = 'lanes' AND c.status LIKE '@d%';
SELECT * FROM groups_mismatches('lanes', 'shipments', 'ARRAY[status, carrier]', filter => 'NOT hazmat',
                                sum_col => 'rate_cents');
SELECT * FROM groups_mismatches('lanes', 'shipments', 'ARRAY[status, carrier]', 'created_at',
                                '2026-10-26 09:10+00', '2026-11-25 17:45+00', 'NOT hazmat', 'rate_cents');
SELECT * FROM groups_mismatches('lanes', 'shipments', 'ARRAY[status, carrier]', 'created_at',
                                '2026-11-01 00:00+00', '2026-12-01 00:00+00', 'NOT hazmat', 'rate_cents');
SELECT * FROM groups_mismatches('lanes', 'shipments', 'ARRAY[status, carrier]', 'created_at',
                                since => '2026-11-03 10:05+00', filter => 'NOT hazmat', sum_col => 'rate_cents');
UPDATE shipments SET created_at = created_at + interval '1 day 2 hours' WHERE id % 5 = 0;
DELETE FROM shipments WHERE id % 29 = 0;
SELECT * FROM groups_mismatches('lanes', 'shipments', 'ARRAY[status, carrier]', 'created_at',
                                '2026-10-26 09:10+00', '2026-11-25 17:45+00', 'NOT hazmat', 'rate_cents');
SELECT * FROM groups_mismatches('lanes', 'shipments', 'ARRAY[status, carrier]', 'created_at',
                                '2026-10-30 00:00+00', '2026-11-12 13:00+00', 'NOT hazmat', 'rate_cents',
                                'date_bin(''1 hour'', created_at, ''2000-01-01 00:00+00'')');
-- A day's total that differs from its hours is drift, shown as such, and repaired.
UPDATE org_stats.counters SET n = n + 3
 WHERE ctid = (SELECT c.ctid FROM org_stats.counters c JOIN org_stats.tracked t USING (table_id)
                WHERE t.name = 'lanes' AND c.org_id = 'org2' AND c.status LIKE '@d%' ORDER BY c.status LIMIT 1);
SELECT org_id, status, stored - actual AS off_by FROM org_stats.check_drift('lanes');
SELECT count(*) AS repaired FROM org_stats.recalculate('lanes');
SELECT * FROM org_stats.check_drift('lanes');
SELECT * FROM groups_mismatches('lanes', 'shipments', 'ARRAY[status, carrier]', filter => 'NOT hazmat',
                                sum_col => 'rate_cents');

-- The reads by status refuse a tracking grouped by several columns, and say what reads it;
-- count() of all of an org's rows is the one that still answers.
SELECT * FROM error_of($$SELECT * FROM org_stats.count_by_status('lanes', 'org1')$$);
SELECT * FROM error_of($$SELECT * FROM org_stats.totals('lanes', 'org1')$$);
SELECT * FROM error_of($$SELECT org_stats.counts('lanes', 'org1')$$);
SELECT org_stats.count('lanes', 'org1') AS counted,
       (SELECT count(*) FROM shipments WHERE workos_org_id = 'org1' AND NOT hazmat) AS actual;
-- organization_stats shows per-status trackings only.
SELECT count(*) AS lanes_rows FROM org_stats.organization_stats WHERE tracking = 'lanes';

-- Drift is shown with the key decoded, and repaired.
UPDATE org_stats.counters SET n = n + 2
 WHERE ctid = (SELECT c.ctid FROM org_stats.counters c JOIN org_stats.tracked t USING (table_id)
                WHERE t.name = 'lanes' AND c.org_id = 'org1' AND c.n > 0 ORDER BY c.status LIMIT 1);
SELECT org_id, status, stored - actual AS off_by FROM org_stats.check_drift('lanes');
SELECT org_id, status, stored - actual AS off_by FROM org_stats.recalculate('lanes');
SELECT * FROM org_stats.check_drift('lanes');

-- One grouping column and a bucket: the reads by status add up the buckets; calendar months
-- cut in a time zone's local time (series() gives their starts as instants).
SELECT org_stats.track('shipments', name => 'monthly', time_column => 'created_at', bucket => '1 month',
                       bucket_time_zone => 'Asia/Tokyo', sum_columns => ARRAY['rate_cents']);
SELECT * FROM org_stats.count_by_status('monthly', 'org2');
SELECT status, count(*) FROM shipments WHERE workos_org_id = 'org2' GROUP BY 1 ORDER BY 1;
SELECT * FROM totals_mismatches('monthly', 'shipments', sum_col => 'rate_cents');
SELECT * FROM org_stats.series('monthly', 'org2', NULL, NULL);
-- A day bucket settles into month totals; the reads by status add up each row once.
SELECT org_stats.track('shipments', name => 'daily', time_column => 'created_at', bucket => '1 day');
SELECT count(*) AS repaired FROM org_stats.recalculate('daily');
INSERT INTO shipments (workos_org_id, status, carrier, created_at, rate_cents) VALUES ('org2', 'Open', 'UPS', '2026-11-03 10:30+00', 9);
SELECT * FROM totals_mismatches('daily', 'shipments');
SELECT org_stats.count('daily', 'org2') AS counted, (SELECT count(*) FROM shipments WHERE workos_org_id = 'org2') AS actual;
SELECT * FROM groups_mismatches('daily', 'shipments', 'ARRAY[status]', 'created_at', '2026-10-20 13:00+00', '2026-11-20 08:00+00');
SELECT orgs_counted, rows_counted, (SELECT count(*) FROM shipments) AS actual FROM org_stats.health WHERE tracking = 'daily';
SELECT * FROM groups_mismatches('monthly', 'shipments', 'ARRAY[status]', 'created_at',
                                '2026-10-31 15:00+00', '2026-11-30 15:00+00', sum_col => 'rate_cents',
                                bucket_sql => '(date_trunc(''month'', created_at AT TIME ZONE ''Asia/Tokyo'')) AT TIME ZONE ''Asia/Tokyo''');
SELECT * FROM groups_mismatches('monthly', 'shipments', 'ARRAY[status]', 'created_at',
                                '2026-11-02 09:10+00', '2026-11-12 17:45+00', sum_col => 'rate_cents',
                                bucket_sql => '(date_trunc(''month'', created_at AT TIME ZONE ''Asia/Tokyo'')) AT TIME ZONE ''Asia/Tokyo''');

-- A date column and a timestamp column: compared with instants in the session's time zone, as
-- the WHERE of the oracle compares them; buckets of whole weeks from Saturday 2000-01-01.
CREATE TABLE visits (workos_org_id text, status text, day date, at timestamp);
INSERT INTO visits
SELECT 'org' || (i % 2), (ARRAY['new', 'seen'])[1 + i % 2], DATE '2026-09-01' + i / 4,
       TIMESTAMP '2026-09-01 00:00' + i * interval '7 hours'
  FROM generate_series(1, 400) i;
SELECT org_stats.track('visits', name => 'weekly', time_column => 'day', bucket => '7 days');
SELECT org_stats.track('visits', name => 'hourly', time_column => 'at', bucket => '3 hours');
SELECT * FROM groups_mismatches('weekly', 'visits', 'ARRAY[status]', 'day', '2026-09-10 13:00-07', '2026-10-01');
SELECT * FROM groups_mismatches('weekly', 'visits', 'ARRAY[status]', 'day', '2026-09-10', '2026-10-01',
                                bucket_sql => 'date_bin(''7 days'', day::timestamp, ''2000-01-01'')');
SELECT * FROM groups_mismatches('hourly', 'visits', 'ARRAY[status]', 'at', '2026-09-10 13:20+02', '2026-10-01 01:00-07');
SELECT * FROM groups_mismatches('hourly', 'visits', 'ARRAY[status]', 'at', '2026-09-10 13:20+02', '2026-10-01 01:00-07',
                                bucket_sql => 'date_bin(''3 hours'', at, ''2000-01-01 00:00''::timestamp)');
SELECT * FROM org_stats.series('weekly', 'org1', '2026-09-10', '2026-10-01');

-- A grouping or time column renamed is followed; its type changed, counted again; dropped,
-- refused.
ALTER TABLE shipments RENAME COLUMN carrier TO shipper;
ALTER TABLE shipments RENAME COLUMN created_at TO placed_at;
SELECT tracking, group_by, time_column FROM org_stats.tracked_tables WHERE tracking = 'lanes';
INSERT INTO shipments (workos_org_id, status, shipper, placed_at, rate_cents) VALUES ('org1', 'Open', 'UPS', '2026-11-03 10:30+00', 9);
SELECT * FROM groups_mismatches('lanes', 'shipments', 'ARRAY[status, shipper]', 'placed_at',
                                '2026-11-02 09:10+00', '2026-11-05 17:45+00', 'NOT hazmat', 'rate_cents');
ALTER TABLE shipments ALTER COLUMN shipper TYPE varchar(20);
SELECT * FROM groups_mismatches('lanes', 'shipments', 'ARRAY[status, shipper]', 'placed_at',
                                '2026-11-02 09:10+00', '2026-11-05 17:45+00', 'NOT hazmat', 'rate_cents');
SELECT * FROM error_of('ALTER TABLE shipments DROP COLUMN shipper');
SELECT * FROM error_of('ALTER TABLE shipments DROP COLUMN placed_at');
SELECT * FROM error_of('ALTER TABLE shipments ALTER COLUMN placed_at TYPE timestamp');
SELECT * FROM error_of('ALTER TABLE shipments ALTER COLUMN placed_at TYPE text');
ALTER TABLE visits ALTER COLUMN at TYPE timestamptz;
SELECT * FROM groups_mismatches('hourly', 'visits', 'ARRAY[status]', 'at', '2026-09-10 13:20+02', '2026-10-01 01:00-07',
                                bucket_sql => 'date_bin(''3 hours'', at, ''2000-01-01 00:00+00'')');
-- A renamed table: reads that count cut buckets from it follow.
ALTER TABLE visits RENAME TO visits_renamed;
SELECT * FROM groups_mismatches('hourly', 'visits_renamed', 'ARRAY[status]', 'at', '2026-09-10 13:20+02', '2026-10-01 01:00-07',
                                bucket_sql => 'date_bin(''3 hours'', at, ''2000-01-01 00:00+00'')');
ALTER TABLE visits_renamed RENAME TO visits;

-- TRUNCATE empties every key; untrack removes the tracking.
TRUNCATE shipments;
SELECT count(*) AS after_truncate FROM org_stats.groups('lanes', 'org1');
INSERT INTO shipments (workos_org_id, status, shipper, placed_at, rate_cents) VALUES ('org1', 'Open', 'UPS', '2026-11-03 10:30+00', 9);
SELECT * FROM org_stats.groups('lanes', 'org1');
SELECT org_stats.untrack('lanes'), org_stats.untrack('monthly'), org_stats.untrack('daily'), org_stats.untrack('weekly'), org_stats.untrack('hourly');
DROP TABLE shipments, visits;
