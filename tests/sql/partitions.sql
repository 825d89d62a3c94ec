-- Partitioned tables: rows routed to partitions, moved between partitions by an UPDATE, written
-- through a partition directly, and partitions truncated (ddl_changes: partitions made, attached
-- and detached).
CREATE TABLE shipments (
    id            bigint,
    workos_org_id uuid,
    status        text
) PARTITION BY LIST (status);
CREATE TABLE shipments_open PARTITION OF shipments FOR VALUES IN ('Open', 'Dispatched');
CREATE TABLE shipments_closed PARTITION OF shipments FOR VALUES IN ('Delivered', 'Cancelled');
CREATE TABLE shipments_other PARTITION OF shipments DEFAULT;
INSERT INTO shipments
SELECT i, ('00000000-0000-0000-0000-00000000000' || (i % 3))::uuid,
       (ARRAY['Open', 'Dispatched', 'Delivered', 'Cancelled'])[1 + i % 4]
  FROM generate_series(1, 400) i;
SELECT org_stats.track('shipments');
SELECT * FROM org_stats.count_by_status('shipments', '00000000-0000-0000-0000-000000000001');

-- An UPDATE moving rows to another partition (delete there, insert here) keeps counts exact.
UPDATE shipments SET status = 'Delivered' WHERE status = 'Open' AND id < 100;
SELECT * FROM org_stats.count_by_status('shipments', '00000000-0000-0000-0000-000000000001');
SELECT count(*) AS mismatches FROM mismatches('shipments');

-- Writing a partition directly is counted for the partitioned table.
INSERT INTO shipments_other VALUES (1000, '00000000-0000-0000-0000-000000000001', 'Lost'), (1001, '00000000-0000-0000-0000-000000000001', NULL);
DELETE FROM shipments_open WHERE id < 20;
SELECT * FROM org_stats.count_by_status('shipments', '00000000-0000-0000-0000-000000000001');
SELECT count(*) AS mismatches FROM mismatches('shipments');

-- Truncating one partition removes its share; truncating the parent removes all.
TRUNCATE shipments_closed;
SELECT * FROM org_stats.count_by_status('shipments', '00000000-0000-0000-0000-000000000001');
SELECT count(*) AS mismatches FROM mismatches('shipments');
BEGIN;
TRUNCATE shipments;
SELECT count(*) AS counts_left FROM org_stats.organization_stats WHERE table_name = 'shipments'::regclass;
ROLLBACK;
SELECT count(*) AS mismatches FROM mismatches('shipments');

SELECT org_stats.untrack('shipments');
SELECT count(*) AS triggers_left FROM pg_trigger t JOIN pg_partition_tree('shipments') p ON p.relid = t.tgrelid;
DROP TABLE shipments;
