-- org_stats 0.1.0 -> 0.2.0 (applied by ALTER EXTENSION org_stats UPDATE).
-- Counter rows are now taken from a pool per group (src/pool.rs): the rows 0.1.0 wrote stay valid
-- as they are. A table may be tracked more than once (named trackings), with a filter and summed
-- columns; reads take a tracking's name or a table's, many orgs at once, or all of them.

-- Trackings: a table's default tracking (name NULL) and named ones.
ALTER TABLE org_stats.tracked DROP CONSTRAINT tracked_relid_key;
ALTER TABLE org_stats.tracked
    ADD COLUMN name text CONSTRAINT tracked_name_key UNIQUE,
    ADD COLUMN filter text,
    ADD COLUMN sum_columns text[],
    ADD COLUMN filter_columns text[];
CREATE UNIQUE INDEX tracked_relid_key ON org_stats.tracked (relid) WHERE name IS NULL;

-- Sums per counter row, and the counters of a tracking across orgs.
ALTER TABLE org_stats.counters ADD COLUMN sums numeric[];
CREATE INDEX counters_by_table ON org_stats.counters (table_id, status);

-- The views gain a tracking column (and tracked_tables the filter and summed columns).

CREATE OR REPLACE VIEW org_stats.tracked_tables AS
SELECT t.relid AS table_name, t.org_column, t.status_column, t.tracked_at, t.backfilled_at,
       t.name AS tracking, t.filter, t.sum_columns
  FROM org_stats.tracked t;

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
HAVING pg_catalog.sum(c.n) OPERATOR(pg_catalog.<>) 0;

CREATE OR REPLACE VIEW org_stats.backfill_progress AS
SELECT t.relid AS table_name, b.orgs_done, b.orgs_total, b.rows_done,
       pg_catalog.round(100.0 * b.orgs_done / GREATEST(b.orgs_total, 1), 1) AS percent,
       b.started_at, b.updated_at, b.finished_at, t.name AS tracking
  FROM org_stats.backfill_state b JOIN org_stats.tracked t ON t.table_id OPERATOR(pg_catalog.=) b.table_id;

CREATE OR REPLACE VIEW org_stats.health AS
SELECT t.relid AS table_name,
       (SELECT pg_catalog.count(*) FROM (SELECT 1 FROM org_stats.counters c
          WHERE c.table_id OPERATOR(pg_catalog.=) t.table_id GROUP BY c.org_id
         HAVING pg_catalog.sum(c.n) OPERATOR(pg_catalog.<>) 0) o) AS orgs_counted,
       (SELECT COALESCE(pg_catalog.sum(c.n), 0)::bigint FROM org_stats.counters c
         WHERE c.table_id OPERATOR(pg_catalog.=) t.table_id) AS rows_counted,
       CASE WHEN t.backfilled_at IS NOT NULL THEN 0
            ELSE b.orgs_total OPERATOR(pg_catalog.-) b.orgs_done END AS orgs_not_backfilled,
       t.backfilled_at,
       t.last_recalculated,
       t.last_groups_repaired,
       t.name AS tracking
  FROM org_stats.tracked t
  LEFT JOIN org_stats.backfill_state b ON b.table_id OPERATOR(pg_catalog.=) t.table_id;

-- Functions whose arguments or results changed.
DROP FUNCTION org_stats.track(regclass, name, name, boolean);
DROP FUNCTION org_stats.check_drift(regclass, text);
DROP FUNCTION org_stats.recalculate(regclass, text);
DROP FUNCTION org_stats.backfill_targets(regclass);
DROP FUNCTION org_stats.backfill_start(regclass);
DROP FUNCTION org_stats.backfill_batch(regclass, text[]);
DROP FUNCTION org_stats.backfill_finish(regclass);

-- New and changed functions, as the 0.2.0 install script declares them.

CREATE  FUNCTION "track"(
	"tbl" regclass, /* Option < RegClass > */
	"org_column" name DEFAULT 'workos_org_id', /* Option < Name > */
	"status_column" name DEFAULT 'status', /* Option < Name > */
	"backfill" bool DEFAULT true, /* Option < bool > */
	"filter" TEXT DEFAULT NULL, /* Option < & str > */
	"sum_columns" TEXT[] DEFAULT NULL, /* :: std :: option :: Option < Vec < Option < String > > > */
	"name" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS void
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'start_tracking_wrapper';

CREATE  FUNCTION "untrack"(
	"tracking" TEXT /* & str */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'untrack_by_name_wrapper';

CREATE  FUNCTION "count"(
	"tracking" TEXT, /* & str */
	"org_id" TEXT /* & str */
) RETURNS bigint /* i64 */
STRICT STABLE PARALLEL RESTRICTED 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'count_all_of_wrapper';

CREATE  FUNCTION "count"(
	"tracking" TEXT, /* Option < & str > */
	"org_id" TEXT, /* Option < & str > */
	"status" TEXT /* Option < & str > */
) RETURNS bigint /* Option < i64 > */
STABLE PARALLEL RESTRICTED 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'count_status_of_wrapper';

CREATE  FUNCTION "counts"(
	"tracking" TEXT, /* & str */
	"org_id" TEXT /* & str */
) RETURNS jsonb /* pgrx :: JsonB */
STRICT STABLE PARALLEL RESTRICTED 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'counts_by_tracking_wrapper';

CREATE  FUNCTION "count_by_status"(
	"tracking" TEXT, /* & str */
	"org_ids" TEXT[] /* Vec < Option < String > > */
) RETURNS TABLE (
	"org_id" TEXT,  /* String */
	"status" TEXT,  /* Option < String > */
	"count" bigint  /* i64 */
)
STRICT STABLE PARALLEL RESTRICTED 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'count_by_status_of_orgs_wrapper';

CREATE  FUNCTION "totals"(
	"tracking" TEXT, /* & str */
	"org_id" TEXT /* & str */
) RETURNS TABLE (
	"status" TEXT,  /* Option < String > */
	"count" bigint,  /* i64 */
	"sums" jsonb  /* pgrx :: JsonB */
)
STRICT STABLE PARALLEL RESTRICTED
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'totals_wrapper';

CREATE  FUNCTION "totals"(
	"tracking" TEXT, /* & str */
	"org_ids" TEXT[] /* Vec < Option < String > > */
) RETURNS TABLE (
	"org_id" TEXT,  /* String */
	"status" TEXT,  /* Option < String > */
	"count" bigint,  /* i64 */
	"sums" jsonb  /* pgrx :: JsonB */
)
STRICT STABLE PARALLEL RESTRICTED 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'totals_of_orgs_wrapper';

CREATE  FUNCTION "totals"(
	"tracking" TEXT /* & str */
) RETURNS TABLE (
	"status" TEXT,  /* Option < String > */
	"count" bigint,  /* i64 */
	"sums" jsonb  /* pgrx :: JsonB */
)
STRICT STABLE PARALLEL RESTRICTED 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'totals_of_all_wrapper';

CREATE  FUNCTION "check_drift"(
	"tbl" regclass DEFAULT NULL, /* Option < RegClass > */
	"org_id" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS TABLE (
	"table_name" regclass,  /* RegClass */
	"org_id" TEXT,  /* String */
	"status" TEXT,  /* Option < String > */
	"stored" bigint,  /* i64 */
	"actual" bigint,  /* i64 */
	"tracking" TEXT,  /* Option < String > */
	"stored_sums" jsonb,  /* Option < pgrx :: JsonB > */
	"actual_sums" jsonb  /* Option < pgrx :: JsonB > */
)
STABLE PARALLEL RESTRICTED 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_drift_of_table_wrapper';

CREATE  FUNCTION "check_drift"(
	"tracking" TEXT, /* Option < & str > */
	"org_id" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS TABLE (
	"table_name" regclass,  /* RegClass */
	"org_id" TEXT,  /* String */
	"status" TEXT,  /* Option < String > */
	"stored" bigint,  /* i64 */
	"actual" bigint,  /* i64 */
	"tracking" TEXT,  /* Option < String > */
	"stored_sums" jsonb,  /* Option < pgrx :: JsonB > */
	"actual_sums" jsonb  /* Option < pgrx :: JsonB > */
)
STABLE PARALLEL RESTRICTED 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_drift_of_wrapper';

CREATE  FUNCTION "recalculate"(
	"tbl" regclass DEFAULT NULL, /* Option < RegClass > */
	"org_id" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS TABLE (
	"table_name" regclass,  /* RegClass */
	"org_id" TEXT,  /* String */
	"status" TEXT,  /* Option < String > */
	"stored" bigint,  /* i64 */
	"actual" bigint,  /* i64 */
	"tracking" TEXT,  /* Option < String > */
	"stored_sums" jsonb,  /* Option < pgrx :: JsonB > */
	"actual_sums" jsonb  /* Option < pgrx :: JsonB > */
)
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'recalculate_of_table_wrapper';

CREATE  FUNCTION "recalculate"(
	"tracking" TEXT, /* Option < & str > */
	"org_id" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS TABLE (
	"table_name" regclass,  /* RegClass */
	"org_id" TEXT,  /* String */
	"status" TEXT,  /* Option < String > */
	"stored" bigint,  /* i64 */
	"actual" bigint,  /* i64 */
	"tracking" TEXT,  /* Option < String > */
	"stored_sums" jsonb,  /* Option < pgrx :: JsonB > */
	"actual_sums" jsonb  /* Option < pgrx :: JsonB > */
)
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'recalculate_of_wrapper';

CREATE  FUNCTION "backfill_targets"(
	"tbl" regclass /* Option < RegClass > */
) RETURNS TEXT[] /* Vec < String > */
STABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'trackings_to_backfill_wrapper';

CREATE  FUNCTION "backfill_start"(
	"tracking" TEXT /* & str */
) RETURNS TEXT[] /* Vec < String > */
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'backfill_start_tracking_wrapper';

CREATE  FUNCTION "backfill_batch"(
	"tracking" TEXT, /* & str */
	"orgs" TEXT[] /* Vec < String > */
) RETURNS bigint /* i64 */
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'backfill_batch_tracking_wrapper';

CREATE  FUNCTION "backfill_finish"(
	"tracking" TEXT /* & str */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'backfill_finish_tracking_wrapper';

CREATE FUNCTION org_stats.count_by_status(tracking text, org_id text)
    RETURNS TABLE (status text, count bigint)
    STRICT STABLE PARALLEL RESTRICTED
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'count_by_status_of_wrapper';

CREATE OR REPLACE PROCEDURE org_stats.backfill(tbl regclass DEFAULT NULL, batch_size integer DEFAULT 500)
LANGUAGE plpgsql AS $$
DECLARE
    target  text;
    orgs    text[];
    total   integer;
    done    integer;
    rows    bigint;
    started timestamptz;
    elapsed double precision;
    rate    double precision;
BEGIN
    IF batch_size IS NULL OR batch_size OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'batch_size must be a positive number of orgs, not %', batch_size
            USING ERRCODE = 'invalid_parameter_value', HINT = 'The default, 500, suits most tables.';
    END IF;
    FOREACH target IN ARRAY org_stats.backfill_targets(tbl) LOOP
        orgs := org_stats.backfill_start(target);
        total := COALESCE(pg_catalog.array_length(orgs, 1), 0);
        done := 0;
        rows := 0;
        started := pg_catalog.clock_timestamp();
        COMMIT;
        WHILE done OPERATOR(pg_catalog.<) total LOOP
            rows := rows OPERATOR(pg_catalog.+) org_stats.backfill_batch(target,
                orgs[done OPERATOR(pg_catalog.+) 1 : done OPERATOR(pg_catalog.+) batch_size]);
            done := LEAST(done OPERATOR(pg_catalog.+) batch_size, total);
            COMMIT;
            elapsed := pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) started);
            rate := done OPERATOR(pg_catalog./) GREATEST(elapsed, 0.001);
            RAISE NOTICE 'org_stats.backfill %: % / % orgs, % rows, % orgs/s, ETA % s',
                target, done, total, rows, pg_catalog.round(rate::numeric),
                pg_catalog.round(((total OPERATOR(pg_catalog.-) done) OPERATOR(pg_catalog./) rate)::numeric);
        END LOOP;
        PERFORM org_stats.backfill_finish(target);
        COMMIT;
    END LOOP;
END
$$;

-- A dropped summed column, or one a filter reads, is refused like a dropped tracked column.

CREATE OR REPLACE FUNCTION org_stats.on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    dropped record;
    tracked record;
    recount integer[] := '{}';
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
            recount := recount || pg_catalog.substr(dropped.address_names[3], 17)::integer;
        END IF;
    END LOOP;
    FOR tracked IN SELECT t.relid FROM org_stats.tracked t WHERE t.table_id OPERATOR(pg_catalog.=) ANY (recount) LOOP
        RAISE NOTICE 'org_stats: recounting % after one of its partitions was dropped', tracked.relid;
        PERFORM org_stats.recalculate(tracked.relid);
    END LOOP;
END
$$;
