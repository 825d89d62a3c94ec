-- Every row change moves exactly one count: create, status change, org change, delete.
TRUNCATE loads;
SELECT * FROM org_stats.count_by_status('loads', 'acme');

INSERT INTO loads (workos_org_id, status) VALUES ('acme', 'Open');
INSERT INTO loads (workos_org_id, status) VALUES ('acme', 'Open'), ('acme', 'Open'), ('globex', 'Open');
SELECT * FROM org_stats.count_by_status('loads', 'acme');

-- A status change moves one row from Open to Dispatched.
UPDATE loads SET status = 'Dispatched' WHERE id = (SELECT min(id) FROM loads WHERE workos_org_id = 'acme');
SELECT * FROM org_stats.count_by_status('loads', 'acme');

-- Updating other columns, or setting the same status, changes nothing.
UPDATE loads SET reference = 'PO-1' WHERE workos_org_id = 'acme';
UPDATE loads SET status = status WHERE workos_org_id = 'acme';
SELECT * FROM org_stats.count_by_status('loads', 'acme');

-- Moving a row to another org moves its count.
UPDATE loads SET workos_org_id = 'globex' WHERE id = (SELECT max(id) FROM loads WHERE workos_org_id = 'acme');
SELECT * FROM org_stats.count_by_status('loads', 'globex');

-- A NULL status is a status of its own; a NULL org is nobody's.
INSERT INTO loads (workos_org_id, status) VALUES ('acme', NULL), (NULL, 'Open');
UPDATE loads SET workos_org_id = NULL WHERE workos_org_id = 'globex' AND status = 'Open' AND id = (SELECT min(id) FROM loads WHERE workos_org_id = 'globex');
SELECT * FROM org_stats.count_by_status('loads', 'acme');
SELECT * FROM org_stats.count_by_status('loads', 'globex');

-- count() in total and per status (a NULL status argument counts the NULL-status rows);
-- counts() as JSON, where the NULL status has no key.
SELECT org_stats.count('loads', 'acme') AS total,
       org_stats.count('loads', 'acme', 'Open') AS open,
       org_stats.count('loads', 'acme', 'Delivered') AS delivered,
       org_stats.count('loads', 'acme', NULL) AS no_status,
       org_stats.counts('loads', 'acme') AS json;
-- An org with no rows counts 0; a NULL org gives NULL / no rows.
SELECT org_stats.count('loads', 'nobody') AS nobody, org_stats.counts('loads', 'nobody') AS nobody_json;
SELECT org_stats.count('loads', NULL) AS null_org, org_stats.count('loads', NULL, 'Open') AS null_org_status;
SELECT count(*) AS rows_for_null_org FROM org_stats.count_by_status('loads', NULL);
-- count_by_status() is a set-returning function like any other: in the select list too, and
-- once per outer row.
SELECT org_stats.count_by_status('loads', 'acme');
SELECT o.org, c.* FROM (VALUES ('acme'), ('globex'), ('nobody')) o(org)
  CROSS JOIN LATERAL org_stats.count_by_status('loads', o.org) c ORDER BY 1, 2;

-- Deleting removes the count; a status whose count reaches zero disappears.
DELETE FROM loads WHERE workos_org_id = 'acme' AND status IS NULL;
DELETE FROM loads WHERE workos_org_id = 'acme' AND status = 'Dispatched';
SELECT * FROM org_stats.count_by_status('loads', 'acme');
SELECT table_name, org_id, status, count FROM org_stats.organization_stats ORDER BY org_id, status;
SELECT * FROM mismatches('loads');
