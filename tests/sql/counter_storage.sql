-- The native edition writes its counters directly, through the heap and index access methods:
-- what that must keep true (the portable edition writes them with SQL).
-- One transaction flushing the same counter row statement after statement outgrows its page, so
-- some updates cannot stay HOT and must add index entries: amcheck finds every counter row in
-- the key index, and the counts stay exact.
CREATE EXTENSION amcheck;
DO $$
BEGIN
    FOR i IN 1 .. 400 LOOP
        INSERT INTO loads (workos_org_id, status) VALUES ('org5', 'Open');
    END LOOP;
END $$;
SELECT bt_index_check('org_stats.counters_key', heapallindexed => true);
SELECT count(*) AS mismatches FROM mismatches('loads');

-- An index added to the counters by hand is kept current by the direct writes too (no update
-- can stay HOT with n indexed); a new row of a new group goes into it as well.
CREATE INDEX counters_by_n ON org_stats.counters (n);
INSERT INTO loads (workos_org_id, status) VALUES ('org_indexed', 'Open');
DO $$
BEGIN
    FOR i IN 1 .. 400 LOOP
        UPDATE loads SET status = CASE WHEN status = 'Open' THEN 'Delivered'::load_status ELSE 'Open' END
         WHERE id = (SELECT min(id) FROM loads WHERE workos_org_id = 'org5');
    END LOOP;
END $$;
SELECT bt_index_check('org_stats.counters_by_n', heapallindexed => true);
SELECT bt_index_check('org_stats.counters_key', heapallindexed => true);
SELECT count(*) AS mismatches FROM mismatches('loads');
DROP INDEX org_stats.counters_by_n;
DROP EXTENSION amcheck;

-- A trigger or rule on the counters would be bypassed by the direct writes, so writes refuse
-- it (and nothing is half done: the statement fails as a whole).
CREATE FUNCTION counters_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER counters_audit AFTER UPDATE ON org_stats.counters FOR EACH ROW EXECUTE FUNCTION counters_audit();
SELECT * FROM error_of($$INSERT INTO loads (workos_org_id, status) VALUES ('org5', 'Open')$$);
DROP TRIGGER counters_audit ON org_stats.counters;
DROP FUNCTION counters_audit();
SELECT count(*) AS mismatches FROM mismatches('loads');
