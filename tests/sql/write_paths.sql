-- Every way of writing rows keeps the counts equal to a live GROUP BY.
TRUNCATE loads;
SELECT org_stats.track('invoices');

-- INSERT ... SELECT of many rows over several orgs (one counter write per group, not per row).
INSERT INTO loads (workos_org_id, status)
SELECT 'org' || (i % 5), (ARRAY['Open', 'Dispatched', 'Delivered']::load_status[])[1 + i % 3]
  FROM generate_series(1, 3000) i;
SELECT count(*) AS mismatches FROM mismatches('loads');
SELECT * FROM org_stats.count_by_status('loads', 'org1');

-- Bulk status update and bulk void.
UPDATE loads SET status = 'Delivered' WHERE workos_org_id = 'org1' AND status = 'Dispatched';
INSERT INTO invoices (workos_org_id, status, amount) SELECT 'org' || (i % 3), 'DRAFT', i FROM generate_series(1, 600) i;
UPDATE invoices SET status = 'VOID' WHERE amount < 100;
SELECT * FROM org_stats.count_by_status('invoices', 'org0');
SELECT count(*) AS mismatches FROM mismatches('loads');

-- COPY.
COPY invoices (workos_org_id, status, amount) FROM stdin;
org0	PAID	10
org0	PAID	20
org9	DRAFT	30
\.
SELECT * FROM org_stats.count_by_status('invoices', 'org9');

-- INSERT ... ON CONFLICT DO NOTHING / DO UPDATE.
INSERT INTO invoices (id, workos_org_id, status) VALUES (1, 'org0', 'DRAFT') ON CONFLICT (id) DO NOTHING;
INSERT INTO invoices (id, workos_org_id, status) VALUES (1, 'org0', 'PAID'), (100000, 'org9', 'DRAFT')
    ON CONFLICT (id) DO UPDATE SET status = excluded.status, workos_org_id = excluded.workos_org_id;
SELECT * FROM org_stats.count_by_status('invoices', 'org9');

-- MERGE inserting, updating and deleting in one statement.
CREATE TEMP TABLE changes (id bigint, workos_org_id text, status text);
INSERT INTO changes VALUES (2, 'org9', 'PAID'), (3, NULL, 'DELETE'), (200000, 'org9', 'DRAFT');
MERGE INTO invoices i USING changes c ON i.id = c.id
 WHEN MATCHED AND c.status = 'DELETE' THEN DELETE
 WHEN MATCHED THEN UPDATE SET status = c.status, workos_org_id = c.workos_org_id
 WHEN NOT MATCHED THEN INSERT (id, workos_org_id, status) VALUES (c.id, c.workos_org_id, c.status);
SELECT * FROM org_stats.count_by_status('invoices', 'org9');

-- Writable CTEs: one statement writing both tracked tables.
WITH voided AS (
    UPDATE invoices SET status = 'VOID' WHERE workos_org_id = 'org2' AND status = 'DRAFT' RETURNING id
), cancelled AS (
    UPDATE loads SET status = 'Cancelled' WHERE workos_org_id = 'org2' AND status = 'Open' RETURNING id
)
INSERT INTO loads (workos_org_id, status) SELECT 'org2', 'Open' FROM voided LIMIT 3;
SELECT * FROM org_stats.count_by_status('loads', 'org2');
SELECT * FROM org_stats.count_by_status('invoices', 'org2');

-- DELETE of many rows.
DELETE FROM loads WHERE workos_org_id = 'org3';
SELECT count(*) AS org3_statuses FROM org_stats.count_by_status('loads', 'org3');

SELECT count(*) AS mismatches FROM mismatches('loads');
SELECT count(*) AS mismatches FROM mismatches('invoices');

-- TRUNCATE empties the counts of that table only.
TRUNCATE invoices;
SELECT count(*) AS invoice_counts FROM org_stats.organization_stats WHERE table_name = 'invoices'::regclass;
SELECT count(*) AS load_counts FROM org_stats.organization_stats WHERE table_name = 'loads'::regclass;
SELECT count(*) AS mismatches FROM mismatches('loads');
