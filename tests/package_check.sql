-- Run by `./pg_test.sh package` in a clean chroot (no Rust, no build tools) after the package was
-- installed with apt-get: the extension installs, tracks a table, follows its writes, and its
-- counts equal a live GROUP BY.
CREATE EXTENSION org_stats;
CREATE TABLE loads (id bigserial PRIMARY KEY, workos_org_id text, status text);
INSERT INTO loads (workos_org_id, status)
SELECT 'org_' || (i % 7), (ARRAY['Open', 'Dispatched', 'Delivered'])[1 + i % 3] FROM generate_series(1, 5000) i;
SELECT org_stats.track('loads');
UPDATE loads SET status = 'Delivered' WHERE id % 5 = 0;
DELETE FROM loads WHERE id % 11 = 0;
INSERT INTO loads (workos_org_id, status) VALUES ('org_new', 'Open');

DO $$
DECLARE
    wrong bigint;
BEGIN
    SELECT count(*) INTO wrong
      FROM (SELECT workos_org_id::text AS org_id, status::text AS status, count(*) AS n
              FROM loads GROUP BY 1, 2) a
      FULL JOIN (SELECT o.org_id, c.status, c.count
                   FROM (SELECT DISTINCT workos_org_id AS org_id FROM loads) o,
                        org_stats.count_by_status('loads', o.org_id) c) c
        ON a.org_id = c.org_id AND a.status = c.status
     WHERE a.n IS DISTINCT FROM c.count;
    IF wrong <> 0 THEN
        RAISE EXCEPTION 'org_stats counts differ from a GROUP BY in % groups', wrong;
    END IF;
END
$$;
SELECT extversion AS installed_version FROM pg_extension WHERE extname = 'org_stats';
SELECT count(*) AS orgs_counted_exactly FROM (SELECT DISTINCT workos_org_id FROM loads) o;
