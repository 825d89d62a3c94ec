-- Native edition: rows are counted by row triggers, so every statement trigger sees them (the
-- portable edition counts in statement triggers; docs/managed.md says what that changes).
-- An application's statement trigger that fires before org_stats writes the statement's counts
-- (triggers fire in name order) reads them exact already: a read adds the backend's unwritten
-- deltas, each status in its place in the order (NULL last).
CREATE TABLE seen_in_trigger (id serial, counted text, actual text);
CREATE FUNCTION record_counts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO seen_in_trigger (counted, actual) SELECT
        (SELECT string_agg(coalesce(c.status, 'NULL') || '=' || c.count, ', ' ORDER BY c.o)
           FROM org_stats.count_by_status('loads', 'pending') WITH ORDINALITY AS c(status, count, o)),
        (SELECT string_agg(coalesce(g.s, 'NULL') || '=' || g.n, ', ' ORDER BY g.s)
           FROM (SELECT status::text AS s, count(*) AS n FROM loads WHERE workos_org_id = 'pending' GROUP BY 1) g);
    RETURN NULL;
END $$;
CREATE TRIGGER a_record_counts AFTER INSERT OR UPDATE ON loads FOR EACH STATEMENT EXECUTE FUNCTION record_counts();
INSERT INTO loads (workos_org_id, status) VALUES ('pending', 'Open'), ('pending', 'Open');
INSERT INTO loads (workos_org_id, status) VALUES ('pending', 'Dispatched'), ('pending', NULL), ('pending', 'Cancelled');
UPDATE loads SET status = 'Delivered' WHERE workos_org_id = 'pending' AND status = 'Open';
SELECT counted, counted = actual AS exact FROM seen_in_trigger ORDER BY id;
DROP TRIGGER a_record_counts ON loads;
DROP FUNCTION record_counts;
DROP TABLE seen_in_trigger;
DELETE FROM loads WHERE workos_org_id = 'pending';
