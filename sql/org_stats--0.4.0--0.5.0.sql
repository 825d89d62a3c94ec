-- org_stats 0.4.0 -> 0.5.0 (applied by ALTER EXTENSION org_stats UPDATE).
-- Citus (src/citus.rs): org_stats follows what Citus' own functions do to a tracked table
-- (create_distributed_table() and its concurrent form, alter_distributed_table(),
-- update_distributed_table_colocation(), undistribute_table()), so each tracking records where its
-- counts are kept; health says why a tracking's reads count its rows live, if they do.
-- Dimensions (src/values/dimensions.rs): a tracking may group by several columns and a time
-- bucket, read by groups() and series(); track() takes group_by, time_column, bucket and
-- bucket_time_zone. Counts and trackings carry over untouched.

-- Where each tracking's counts are kept. A distributed tracking of 0.4.0 keeps them in the
-- counters table co-located with its table.
ALTER TABLE org_stats.tracked ADD COLUMN counted_in text;
DO $$
BEGIN
    IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
        EXECUTE 'UPDATE org_stats.tracked t SET counted_in = ''org_stats.counters_'' OPERATOR(pg_catalog.||) p.colocationid
                   FROM pg_catalog.pg_dist_partition p
                  WHERE p.logicalrelid OPERATOR(pg_catalog.=) t.relid AND p.partmethod OPERATOR(pg_catalog.=) ''h''';
    END IF;
END
$$;

CREATE  FUNCTION "live_reason"(
	"table_id" INT /* i32 */
) RETURNS TEXT /* Option < String > */
STRICT STABLE PARALLEL RESTRICTED
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'live_reason_wrapper';

-- What a tracking groups by besides its status column (NULL for every 0.4.0 tracking).
ALTER TABLE org_stats.tracked
    ADD COLUMN group_columns    text[],
    ADD COLUMN time_column      name,
    ADD COLUMN bucket           interval,
    ADD COLUMN bucket_time_zone text;

CREATE OR REPLACE VIEW org_stats.tracked_tables AS
SELECT t.relid AS table_name, t.org_column, t.status_column, t.tracked_at, t.backfilled_at,
       t.name AS tracking, t.filter, t.sum_columns, t.notify,
       -- Since 0.5.0: every grouping column, the status column first, and the time bucket.
       ARRAY[t.status_column::pg_catalog.text] OPERATOR(pg_catalog.||) COALESCE(t.group_columns, '{}') AS group_by,
       t.time_column, t.bucket, t.bucket_time_zone
  FROM org_stats.tracked t;

DROP FUNCTION org_stats.track(regclass, name, name, boolean, text, text[], text);
CREATE  FUNCTION "group_key"(
	"values" TEXT[] /* Vec < Option < String > > */
) RETURNS TEXT /* String */
IMMUTABLE STRICT PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'group_key_untimed_wrapper';

CREATE  FUNCTION "group_key"(
	"values" TEXT[], /* Vec < Option < String > > */
	"time" timestamp with time zone, /* Option < pgrx :: datum :: TimestampWithTimeZone > */
	"months" INT, /* i32 */
	"micros" bigint, /* i64 */
	"zone" TEXT /* Option < & str > */
) RETURNS TEXT /* String */
IMMUTABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'group_key_timestamptz_wrapper';

CREATE  FUNCTION "group_key"(
	"values" TEXT[], /* Vec < Option < String > > */
	"time" timestamp, /* Option < pgrx :: datum :: Timestamp > */
	"months" INT, /* i32 */
	"micros" bigint /* i64 */
) RETURNS TEXT /* String */
IMMUTABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'group_key_timestamp_wrapper';

CREATE  FUNCTION "group_key"(
	"values" TEXT[], /* Vec < Option < String > > */
	"time" date, /* Option < pgrx :: datum :: Date > */
	"months" INT, /* i32 */
	"micros" bigint /* i64 */
) RETURNS TEXT /* String */
IMMUTABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'group_key_date_wrapper';

CREATE  FUNCTION "groups"(
	"tracking" TEXT, /* Option < & str > */
	"org_id" TEXT, /* Option < & str > */
	"since" timestamp with time zone DEFAULT NULL, /* Option < TimestampWithTimeZone > */
	"until" timestamp with time zone DEFAULT NULL /* Option < TimestampWithTimeZone > */
) RETURNS TABLE (
	"key" TEXT[],  /* Vec < Option < String > > */
	"count" bigint,  /* i64 */
	"sums" jsonb  /* pgrx :: JsonB */
)
STABLE PARALLEL RESTRICTED
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'groups_wrapper';

CREATE  FUNCTION "groups"(
	"tracking" TEXT, /* Option < & str > */
	"org_ids" TEXT[], /* :: std :: option :: Option < Vec < Option < String > > > */
	"since" timestamp with time zone DEFAULT NULL, /* Option < TimestampWithTimeZone > */
	"until" timestamp with time zone DEFAULT NULL /* Option < TimestampWithTimeZone > */
) RETURNS TABLE (
	"org_id" TEXT,  /* String */
	"key" TEXT[],  /* Vec < Option < String > > */
	"count" bigint,  /* i64 */
	"sums" jsonb  /* pgrx :: JsonB */
)
STABLE PARALLEL RESTRICTED 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'groups_of_orgs_wrapper';

CREATE  FUNCTION "series"(
	"tracking" TEXT, /* Option < & str > */
	"org_id" TEXT, /* Option < & str > */
	"since" timestamp with time zone, /* Option < TimestampWithTimeZone > */
	"until" timestamp with time zone /* Option < TimestampWithTimeZone > */
) RETURNS TABLE (
	"bucket" timestamp with time zone,  /* Option < TimestampWithTimeZone > */
	"key" TEXT[],  /* Vec < Option < String > > */
	"count" bigint,  /* i64 */
	"sums" jsonb  /* pgrx :: JsonB */
)
STABLE PARALLEL RESTRICTED
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'series_wrapper';

CREATE  FUNCTION "track"(
	"tbl" regclass, /* Option < RegClass > */
	"org_column" name DEFAULT 'workos_org_id', /* Option < Name > */
	"status_column" name DEFAULT 'status', /* Option < Name > */
	"backfill" bool DEFAULT true, /* Option < bool > */
	"filter" TEXT DEFAULT NULL, /* Option < & str > */
	"sum_columns" TEXT[] DEFAULT NULL, /* :: std :: option :: Option < Vec < Option < String > > > */
	"name" TEXT DEFAULT NULL, /* Option < & str > */
	"group_by" TEXT[] DEFAULT NULL, /* :: std :: option :: Option < Vec < Option < String > > > */
	"time_column" name DEFAULT NULL, /* Option < Name > */
	"bucket" interval DEFAULT NULL, /* Option < pgrx :: datum :: Interval > */
	"bucket_time_zone" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS void
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'start_tracking_grouped_wrapper';

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

CREATE OR REPLACE VIEW org_stats.health AS
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
                          AND (dropped.address_names[3] IN (t.org_column::text, t.status_column::text, t.time_column::text)
                               OR dropped.address_names[3] OPERATOR(pg_catalog.=)
                                  ANY (COALESCE(t.sum_columns, '{}') OPERATOR(pg_catalog.||) COALESCE(t.filter_columns, '{}')
                                       OPERATOR(pg_catalog.||) COALESCE(t.group_columns, '{}'))))
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
            -- Citus drops a table to replace it by a new one of the same name and triggers
            -- (undistribute_table(), alter_distributed_table()): with Citus, the registration stays
            -- until commit, when org_stats follows it to the new table or forgets it (src/citus.rs).
            IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
                DELETE FROM org_stats.tracked t WHERE t.relid OPERATOR(pg_catalog.=) dropped.objid;
            END IF;
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
    FOR tracked IN SELECT t.relid FROM org_stats.tracked t WHERE t.table_id OPERATOR(pg_catalog.=) ANY (recount)
                      AND EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) t.relid) LOOP
        RAISE NOTICE 'org_stats: recounting % after one of its partitions was dropped', tracked.relid;
        PERFORM org_stats.recalculate(tracked.relid);
    END LOOP;
    -- On Citus: a group's counters table goes with its last tracked table.
    PERFORM org_stats.drop_unused_counters();
END
$$;
