-- org_stats 0.2.0 -> 0.3.0 (applied by ALTER EXTENSION org_stats UPDATE).
-- Change notifications (src/live.rs): a per-tracking switch and secret channel, and the functions
-- that turn them on, subscribe and catch up. Citus (src/citus.rs): organization_stats shows
-- distributed trackings, the DROP handler knows shard trigger names and distributed counters, and
-- DROP EXTENSION drops the distributed counters first.
-- Counts and trackings carry over untouched.

ALTER TABLE org_stats.tracked
    ADD COLUMN notify boolean NOT NULL DEFAULT false,
    ADD COLUMN channel text;

-- tracked_tables gains the switch at the end.
CREATE OR REPLACE VIEW org_stats.tracked_tables AS
SELECT t.relid AS table_name, t.org_column, t.status_column, t.tracked_at, t.backfilled_at,
       t.name AS tracking, t.filter, t.sum_columns, t.notify
  FROM org_stats.tracked t;

-- The new functions, as the 0.3.0 install script declares them.

CREATE  FUNCTION "set_notify"(
	"tracking" TEXT, /* & str */
	"enabled" bool DEFAULT true /* bool */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'set_notify_wrapper';

CREATE  FUNCTION "listen"(
	"tracking" TEXT /* & str */
) RETURNS TEXT /* String */
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'listen_wrapper';

CREATE  FUNCTION "changed_since"(
	"token" TEXT /* Option < & str > */
) RETURNS TABLE (
	"table_name" regclass,  /* Option < RegClass > */
	"tracking" TEXT,  /* Option < String > */
	"org_id" TEXT,  /* Option < String > */
	"token" TEXT,  /* String */
	"resync" bool  /* bool */
)
VOLATILE PARALLEL RESTRICTED
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'changed_since_wrapper';

-- Citus: organization_stats and health show distributed trackings too, through this function.
CREATE  FUNCTION "distributed_counts"() RETURNS TABLE (
	"table_id" INT,  /* i32 */
	"org_id" TEXT,  /* String */
	"status" TEXT,  /* Option < String > */
	"count" bigint  /* i64 */
)
STRICT STABLE PARALLEL RESTRICTED
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'distributed_counts_wrapper';

-- One row per non-zero (tracking, org, status) whose counts are authoritative (backfilled), for the
-- tables the querying role may SELECT from and (unless org_stats.count_under_rls is on) whose
-- row-level security does not apply to it. A security barrier, so no function of the caller's
-- sees rows of other tables before those checks.
CREATE OR REPLACE VIEW org_stats.organization_stats WITH (security_barrier) AS
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
 WHERE t.backfilled_at IS NOT NULL OR s.backfilled_at IS NOT NULL;

-- Per tracking: what is counted, what still awaits backfill, how the last recalculation went.
CREATE OR REPLACE VIEW org_stats.health AS
SELECT t.relid AS table_name,
       k.orgs_counted,
       k.rows_counted,
       CASE WHEN t.backfilled_at IS NOT NULL THEN 0
            ELSE b.orgs_total OPERATOR(pg_catalog.-) b.orgs_done END AS orgs_not_backfilled,
       t.backfilled_at,
       t.last_recalculated,
       t.last_groups_repaired,
       t.name AS tracking
  FROM org_stats.tracked t
  LEFT JOIN org_stats.backfill_state b ON b.table_id OPERATOR(pg_catalog.=) t.table_id
  -- Its counter rows, in org_stats.counters or (since 0.3.0) on Citus next to its shards.
  CROSS JOIN LATERAL (
        SELECT pg_catalog.count(*) FILTER (WHERE o.n OPERATOR(pg_catalog.<>) 0) AS orgs_counted,
               COALESCE(pg_catalog.sum(o.n), 0)::bigint AS rows_counted
          FROM (SELECT u.org_id, pg_catalog.sum(u.n) AS n
                  FROM (SELECT c.org_id, c.n FROM org_stats.counters c
                         WHERE c.table_id OPERATOR(pg_catalog.=) t.table_id
                        UNION ALL
                        SELECT d.org_id, d.count FROM org_stats.distributed_counts() d
                         WHERE d.table_id OPERATOR(pg_catalog.=) t.table_id) u
                 GROUP BY u.org_id) o) k;

-- Citus: a group's counters table goes with its last tracked table.
CREATE  FUNCTION "drop_unused_counters"() RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'drop_unused_counters_wrapper';

-- Citus: the DROP handler as the 0.3.0 install script declares it.
-- On DROP: a tracked column (org, status, summed, or read by a filter) may not go; a dropped tracked table is forgotten; a dropped partition
-- of a tracked table takes its rows along without deleting them, so the table is recounted.
CREATE OR REPLACE FUNCTION org_stats.on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    dropped record;
    tracked record;
    recount integer[] := '{}';
    counters regclass;
BEGIN
    FOR dropped IN SELECT * FROM pg_catalog.pg_event_trigger_dropped_objects() LOOP
        IF dropped.object_type OPERATOR(pg_catalog.=) 'table column' THEN
            IF EXISTS (SELECT FROM org_stats.tracked t
                        WHERE t.relid OPERATOR(pg_catalog.=) dropped.objid
                          AND (dropped.address_names[3] IN (t.org_column::text, t.status_column::text)
                               OR dropped.address_names[3] OPERATOR(pg_catalog.=)
                                  ANY (COALESCE(t.sum_columns, '{}') OPERATOR(pg_catalog.||) COALESCE(t.filter_columns, '{}'))))
               AND NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger_dropped_objects() d
                                WHERE d.objid OPERATOR(pg_catalog.=) dropped.objid
                                  AND d.object_type OPERATOR(pg_catalog.=) 'table') THEN
                RAISE EXCEPTION 'cannot drop column % of table %: org_stats counts by it',
                    dropped.address_names[3], dropped.address_names[2]
                    USING ERRCODE = 'dependent_objects_still_exist',
                          HINT = format('Untrack the table first: SELECT org_stats.untrack(%L);',
                                        dropped.address_names[1] || '.' || dropped.address_names[2]);
            END IF;
        ELSIF dropped.object_type OPERATOR(pg_catalog.=) 'table' THEN
            DELETE FROM org_stats.counters c USING org_stats.tracked t
             WHERE t.relid OPERATOR(pg_catalog.=) dropped.objid AND c.table_id OPERATOR(pg_catalog.=) t.table_id;
            -- On Citus, a distributed table's counters are in the table co-located with it
            -- (src/citus.rs), which Citus has already forgotten the dropped table's group of.
            FOR counters IN SELECT c.oid::pg_catalog.regclass FROM pg_catalog.pg_class c
                             WHERE c.relnamespace OPERATOR(pg_catalog.=) 'org_stats'::pg_catalog.regnamespace
                               AND c.relname OPERATOR(pg_catalog.~) '^counters_[0-9]+$' AND c.relkind OPERATOR(pg_catalog.=) 'r'
                               AND EXISTS (SELECT FROM org_stats.tracked t WHERE t.relid OPERATOR(pg_catalog.=) dropped.objid) LOOP
                EXECUTE pg_catalog.format('DELETE FROM %s c USING org_stats.tracked t
                                            WHERE t.relid OPERATOR(pg_catalog.=) $1 AND c.table_id OPERATOR(pg_catalog.=) t.table_id', counters)
                  USING dropped.objid;
            END LOOP;
            DELETE FROM org_stats.org_state s USING org_stats.tracked t
             WHERE t.relid OPERATOR(pg_catalog.=) dropped.objid AND s.table_id OPERATOR(pg_catalog.=) t.table_id;
            DELETE FROM org_stats.backfill_state b USING org_stats.tracked t
             WHERE t.relid OPERATOR(pg_catalog.=) dropped.objid AND b.table_id OPERATOR(pg_catalog.=) t.table_id;
            DELETE FROM org_stats.tracked t WHERE t.relid OPERATOR(pg_catalog.=) dropped.objid;
        ELSIF dropped.object_type OPERATOR(pg_catalog.=) 'trigger'
              AND dropped.address_names[3] LIKE 'org\_stats\_flush\_%'
              AND EXISTS (SELECT FROM pg_catalog.pg_event_trigger_dropped_objects() d
                           WHERE d.object_type OPERATOR(pg_catalog.=) 'table'
                             AND d.address_names[1:2] OPERATOR(pg_catalog.=) dropped.address_names[1:2]) THEN
            -- A tracked table's statement trigger went with a table that is not the tracked
            -- table itself (that one is forgotten above, and is not recounted below): a partition.
            -- On a Citus worker a shard's trigger is named <trigger>_<shard id>.
            recount := recount
                OPERATOR(pg_catalog.||) pg_catalog.split_part(pg_catalog.substr(dropped.address_names[3], 17), '_', 1)::integer;
        END IF;
    END LOOP;
    FOR tracked IN SELECT t.relid FROM org_stats.tracked t WHERE t.table_id OPERATOR(pg_catalog.=) ANY (recount) LOOP
        RAISE NOTICE 'org_stats: recounting % after one of its partitions was dropped', tracked.relid;
        PERFORM org_stats.recalculate(tracked.relid);
    END LOOP;
    -- On Citus: a group's counters table goes with its last tracked table.
    PERFORM org_stats.drop_unused_counters();
END
$$;

-- Before DROP EXTENSION org_stats: on Citus, the counters tables of distributed trackings are
-- dropped first, so their shards go from every node (src/citus.rs).
CREATE FUNCTION org_stats.on_drop_extension() RETURNS event_trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'on_drop_extension';
CREATE EVENT TRIGGER org_stats_drop_extension ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION') EXECUTE FUNCTION org_stats.on_drop_extension();
REVOKE EXECUTE ON FUNCTION org_stats.on_drop_extension(), org_stats.drop_unused_counters() FROM PUBLIC;
