-- Many orgs in one read, and the totals of every org of a tracking, from the counters: each
-- equals a live GROUP BY.
CREATE TABLE fleet (id serial PRIMARY KEY, workos_org_id text, status text, miles integer);
INSERT INTO fleet (workos_org_id, status, miles)
SELECT 'org' || (i % 50), (ARRAY['Open', 'Dispatched', 'Delivered'])[1 + i % 3], i
  FROM generate_series(1, 3000) i;
SELECT org_stats.track('fleet', sum_columns => ARRAY['miles']);
UPDATE fleet SET status = 'Delivered' WHERE id % 10 = 0;

-- count_by_status of an array of orgs: one row per (org, status); unknown orgs give no rows,
-- repeated and NULL elements are read once or not at all.
SELECT * FROM org_stats.count_by_status('fleet', ARRAY['org1', 'org2', 'org_unknown', 'org1', NULL]);
SELECT count(*) AS mismatches
  FROM (SELECT workos_org_id AS org_id, status, count(*) AS n FROM fleet GROUP BY 1, 2) a
  FULL JOIN (SELECT * FROM org_stats.count_by_status('fleet', (SELECT array_agg(DISTINCT workos_org_id) FROM fleet))) c
    ON a.org_id = c.org_id AND a.status = c.status
 WHERE a.n IS DISTINCT FROM c.count;
SELECT count(*) AS rows FROM org_stats.count_by_status('fleet', ARRAY[]::text[]);

-- totals of an array of orgs, with sums.
SELECT org_id, status, count, sums FROM org_stats.totals('fleet', ARRAY['org3', 'org4']) ORDER BY 1, 2;
SELECT count(*) AS mismatches
  FROM (SELECT workos_org_id AS org_id, status, count(*) AS n, sum(miles) AS s FROM fleet GROUP BY 1, 2) a
  FULL JOIN (SELECT * FROM org_stats.totals('fleet', (SELECT array_agg(DISTINCT workos_org_id) FROM fleet))) c
    ON a.org_id = c.org_id AND a.status = c.status
 WHERE a.n IS DISTINCT FROM c.count OR a.s IS DISTINCT FROM (c.sums ->> 'miles')::numeric;

-- The whole tracking per status, across orgs, from the counters, inside a transaction with
-- unflushed and flushed writes of its own.
BEGIN;
INSERT INTO fleet (workos_org_id, status, miles) VALUES ('org_new', 'Open', 5);
SELECT t.status, t.count, t.sums, a.n AS actual, a.s AS actual_miles
  FROM org_stats.totals('fleet') t
  FULL JOIN (SELECT status, count(*) AS n, sum(miles) AS s FROM fleet GROUP BY 1) a ON a.status = t.status
 ORDER BY 1;
ROLLBACK;

SELECT org_stats.untrack('fleet');
DROP TABLE fleet;
