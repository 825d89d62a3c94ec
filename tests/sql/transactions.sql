-- Counters are written in the writer's transaction: exact inside it at every isolation level,
-- rolled back with it, and with rolled-back savepoints.
TRUNCATE loads;
INSERT INTO loads (workos_org_id, status) SELECT 'acme', 'Open' FROM generate_series(1, 10);

-- Rollback.
BEGIN;
INSERT INTO loads (workos_org_id, status) SELECT 'acme', 'Delivered' FROM generate_series(1, 5);
SELECT * FROM org_stats.count_by_status('loads', 'acme');
ROLLBACK;
SELECT * FROM org_stats.count_by_status('loads', 'acme');

-- Savepoints: what a rolled-back savepoint did is not counted; a released one is.
BEGIN;
INSERT INTO loads (workos_org_id, status) VALUES ('acme', 'Dispatched');
SAVEPOINT a;
UPDATE loads SET status = 'Cancelled' WHERE workos_org_id = 'acme';
SAVEPOINT b;
DELETE FROM loads WHERE workos_org_id = 'acme';
SELECT * FROM org_stats.count_by_status('loads', 'acme');
ROLLBACK TO SAVEPOINT b;
SELECT * FROM org_stats.count_by_status('loads', 'acme');
ROLLBACK TO SAVEPOINT a;
SAVEPOINT c;
INSERT INTO loads (workos_org_id, status) VALUES ('acme', 'Delivered');
RELEASE SAVEPOINT c;
SELECT * FROM org_stats.count_by_status('loads', 'acme');
SELECT * FROM mismatches('loads');
COMMIT;
SELECT * FROM org_stats.count_by_status('loads', 'acme');

-- A failed statement inside a PL/pgSQL exception block leaves no trace.
DO $$
BEGIN
    BEGIN
        INSERT INTO loads (workos_org_id, status) SELECT 'acme', 'Open' FROM generate_series(1, 100);
        PERFORM 1 / 0;
    EXCEPTION WHEN division_by_zero THEN
        RAISE NOTICE 'inner block rolled back';
    END;
    INSERT INTO loads (workos_org_id, status) VALUES ('acme', 'Open');
END
$$;
SELECT * FROM org_stats.count_by_status('loads', 'acme');

-- A statement that fails half-way (the third row violates NOT NULL on invoices) counts nothing.
\set VERBOSITY terse
INSERT INTO invoices (workos_org_id, status) VALUES ('acme', 'DRAFT'), ('acme', 'DRAFT'), (NULL, 'DRAFT');
\set VERBOSITY default
SELECT * FROM org_stats.count_by_status('invoices', 'acme');

-- Each isolation level reads its own writes, counted exactly, in the same transaction.
BEGIN ISOLATION LEVEL REPEATABLE READ;
UPDATE loads SET status = 'Delivered' WHERE id IN (SELECT id FROM loads WHERE workos_org_id = 'acme' LIMIT 4);
SELECT * FROM org_stats.count_by_status('loads', 'acme');
SELECT * FROM mismatches('loads');
COMMIT;
BEGIN ISOLATION LEVEL SERIALIZABLE;
DELETE FROM loads WHERE id IN (SELECT id FROM loads WHERE workos_org_id = 'acme' AND status = 'Delivered' LIMIT 2);
SELECT * FROM org_stats.count_by_status('loads', 'acme');
SELECT * FROM mismatches('loads');
COMMIT;
