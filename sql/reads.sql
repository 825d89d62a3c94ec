-- count_by_status() returns its rows in one call (materialize mode), which #[pg_extern] cannot
-- declare; the other reads are declared by pgrx from src/reads.rs. Then the view of every count,
-- which reads distributed trackings through a function (so it comes after the functions).
CREATE FUNCTION org_stats.count_by_status(tbl regclass, org_id text)
    RETURNS TABLE (status text, count bigint)
    STRICT STABLE PARALLEL RESTRICTED
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'count_by_status_wrapper';

-- The same for a tracking named by text: a tracking's name, or a table's (its default tracking).
CREATE FUNCTION org_stats.count_by_status(tracking text, org_id text)
    RETURNS TABLE (status text, count bigint)
    STRICT STABLE PARALLEL RESTRICTED
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'count_by_status_of_wrapper';

-- One row per non-zero (tracking, org, status) whose counts are authoritative (backfilled, and kept
-- where the table's rows are), for the
-- tables the querying role may SELECT from and (unless org_stats.count_under_rls is on) whose
-- row-level security does not apply to it. A security barrier, so no function of the caller's
-- sees rows of other tables before those checks.
CREATE VIEW org_stats.organization_stats WITH (security_barrier) AS
SELECT t.relid AS table_name, c.org_id, c.status,
       pg_catalog.sum(c.n)::bigint AS count, s.last_recalculated, t.name AS tracking
  FROM org_stats.counters c
  JOIN org_stats.tracked t ON t.table_id OPERATOR(pg_catalog.=) c.table_id
  LEFT JOIN org_stats.org_state s
         ON s.org_id OPERATOR(pg_catalog.=) c.org_id AND s.table_id OPERATOR(pg_catalog.=) c.table_id
 WHERE pg_catalog.has_table_privilege(t.relid, 'SELECT')
   AND (NOT pg_catalog.row_security_active(t.relid)
        OR COALESCE(pg_catalog.current_setting('org_stats.count_under_rls', true), 'off')::boolean)
   AND (t.backfilled_at IS NOT NULL OR s.backfilled_at IS NOT NULL)
   -- Since 0.5.0: not a tracking whose table Citus moved from this node (src/citus.rs), nor
   -- one that groups by more than a status (org_stats.groups() reads those).
   AND t.counted_in IS NULL AND org_stats.live_reason(t.table_id) IS NULL
   AND t.group_columns IS NULL AND t.time_column IS NULL
 GROUP BY t.table_id, t.relid, t.name, c.org_id, c.status, s.last_recalculated
HAVING pg_catalog.sum(c.n) OPERATOR(pg_catalog.<>) 0
UNION ALL
-- Since 0.3.0: distributed trackings on Citus, whose counters live next to their shards
-- (src/citus.rs); the function checks the same rights itself.
SELECT t.relid, d.org_id, d.status, d.count, s.last_recalculated, t.name
  FROM org_stats.distributed_counts() d
  JOIN org_stats.tracked t ON t.table_id OPERATOR(pg_catalog.=) d.table_id
  LEFT JOIN org_stats.org_state s
         ON s.org_id OPERATOR(pg_catalog.=) d.org_id AND s.table_id OPERATOR(pg_catalog.=) d.table_id
 WHERE (t.backfilled_at IS NOT NULL OR s.backfilled_at IS NOT NULL)
   AND t.group_columns IS NULL AND t.time_column IS NULL;

GRANT SELECT ON org_stats.organization_stats TO PUBLIC;

-- Per tracking: what is counted, what still awaits backfill, how the last recalculation went.
CREATE VIEW org_stats.health AS
SELECT t.relid AS table_name,
       k.orgs_counted,
       k.rows_counted,
       CASE WHEN t.backfilled_at IS NOT NULL THEN 0
            ELSE b.orgs_total OPERATOR(pg_catalog.-) b.orgs_done END AS orgs_not_backfilled,
       t.backfilled_at,
       t.last_recalculated,
       t.last_groups_repaired,
       t.name AS tracking,
       -- Since 0.5.0: why its reads count the table's rows live instead of reading its counters
       -- (NULL when they read them): Citus keeps the rows where no counters can be (src/citus.rs).
       org_stats.live_reason(t.table_id) AS live_reason
  FROM org_stats.tracked t
  LEFT JOIN org_stats.backfill_state b ON b.table_id OPERATOR(pg_catalog.=) t.table_id
  -- Its counter rows, in org_stats.counters or (since 0.3.0) on Citus next to its shards.
  CROSS JOIN LATERAL (
        SELECT pg_catalog.count(*) FILTER (WHERE o.n OPERATOR(pg_catalog.<>) 0) AS orgs_counted,
               COALESCE(pg_catalog.sum(o.n), 0)::bigint AS rows_counted
          FROM (SELECT u.org_id, pg_catalog.sum(u.n) AS n
                  FROM (SELECT c.org_id, c.n FROM org_stats.counters c
                         WHERE c.table_id OPERATOR(pg_catalog.=) t.table_id
                           -- Since 0.5.0: not the day and month totals of a timed tracking,
                           -- which repeat its settled counts (src/maintenance/settle.rs).
                           AND (t.time_column IS NULL OR c.status OPERATOR(pg_catalog.!~) '^@[dm]')
                        UNION ALL
                        SELECT d.org_id, d.count FROM org_stats.distributed_counts() d
                         WHERE d.table_id OPERATOR(pg_catalog.=) t.table_id) u
                 GROUP BY u.org_id) o) k;
