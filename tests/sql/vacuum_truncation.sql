-- A writer remembers where it last wrote each group's counter row. recalculate() may fold such a
-- row away and VACUUM may then cut the counters' heap short before the writer's next write: the
-- writer finds no row there (it never reads past the end), takes the group's remaining row, and
-- the counts stay exact.
CREATE TABLE many_orgs (id serial PRIMARY KEY, workos_org_id text, status text);
SELECT org_stats.track('many_orgs');
-- Counter pages that untrack() empties later.
INSERT INTO many_orgs (workos_org_id, status) SELECT 'org' || i, 'Open' FROM generate_series(1, 5000) i;
CREATE TABLE tail (id serial PRIMARY KEY, workos_org_id text, status text);
SELECT org_stats.track('tail');
-- This session's counter row of ('acme', 'Open') goes to the heap's last page; the second write
-- updates it there and remembers where.
INSERT INTO tail (workos_org_id, status) VALUES ('acme', 'Open');
INSERT INTO tail (workos_org_id, status) VALUES ('acme', 'Open');
SELECT (c.ctid::text::point)[0] AS tail_block FROM org_stats.counters c
  JOIN org_stats.tracked t USING (table_id) WHERE t.relid = 'tail'::regclass \gset
SELECT :tail_block = max((ctid::text::point)[0]) AS on_last_page FROM org_stats.counters;

SELECT org_stats.untrack('many_orgs');
-- The emptied pages are now free space; the last one is still in use.
VACUUM org_stats.counters;
-- A second row of the group, nearer the heap's start (in one of the free pages): what a fold of
-- 0.1.0 left in slot 0, or another session writing the org at the same time.
INSERT INTO org_stats.counters (org_id, table_id, status, slot, n)
SELECT 'acme', t.table_id, 'Open', 0, 0 FROM org_stats.tracked t WHERE t.relid = 'tail'::regclass;
SELECT (c.ctid::text::point)[0] < :tail_block AS second_row_nearer_the_start FROM org_stats.counters c
  JOIN org_stats.tracked t USING (table_id) WHERE t.relid = 'tail'::regclass AND c.slot = 0;
-- The fold keeps the row nearer the start, deleting the one the session remembers.
SELECT count(*) AS repaired FROM org_stats.recalculate('tail');
VACUUM org_stats.counters;
SELECT :tail_block >= pg_relation_size('org_stats.counters') / 8192 AS remembered_page_cut_off;

INSERT INTO tail (workos_org_id, status) VALUES ('acme', 'Open'), ('acme', 'Delivered');
SELECT * FROM org_stats.count_by_status('tail', 'acme');
SELECT count(*) AS mismatches FROM mismatches('tail');

SELECT org_stats.untrack('tail');
DROP TABLE many_orgs, tail;
