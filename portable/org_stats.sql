-- org_stats, portable edition: the same counts in plain SQL and PL/pgSQL, for PostgreSQL where no
-- extension library can be loaded (RDS, Cloud SQL, Azure, Supabase, Neon). Installed by the role
-- that owns the tables it will track, with no superuser right:
--
--     psql -v ON_ERROR_STOP=1 -f portable/org_stats.sql
--
-- Running it again (or a newer copy) over an installed one keeps every tracking and count.
-- docs/managed.md says how it counts and what differs from the native edition.
--
-- How it counts: each tracking gets statement triggers with transition tables. A statement adds,
-- per (org, status) it changed, its delta to a counter row of its own session (one row per
-- session, tracking, org and status), so writers never update each other's rows: no waits, no
-- deadlocks, no serialization failures from counting. A count is the sum of its rows.
-- recalculate() folds the rows of sessions that have ended into one row per group and repairs
-- any drift there; writers never touch that row.

BEGIN;
SET LOCAL search_path = pg_catalog, pg_temp;
SET LOCAL client_min_messages = warning;

CREATE SCHEMA IF NOT EXISTS org_stats;
GRANT USAGE ON SCHEMA org_stats TO PUBLIC;

CREATE TABLE IF NOT EXISTS org_stats.tracked (
    table_id             serial      PRIMARY KEY,
    relid                regclass    NOT NULL,
    org_column           name        NOT NULL,
    status_column        name        NOT NULL,
    tracked_at           timestamptz NOT NULL DEFAULT pg_catalog.now(),
    backfilled_at        timestamptz,
    last_recalculated    timestamptz,
    last_groups_repaired bigint,
    name                 text        CONSTRAINT tracked_name_key UNIQUE,
    filter               text,
    sum_columns          text[]
);
CREATE UNIQUE INDEX IF NOT EXISTS tracked_relid_key ON org_stats.tracked (relid) WHERE name IS NULL;
-- Of a partitioned table: the tables of its partition tree that have its triggers (see
-- org_stats.make_triggers()); reads count live while the tree differs.
ALTER TABLE org_stats.tracked ADD COLUMN IF NOT EXISTS partitions oid[];
-- The columns a filter reads: the arguments of its function, org_stats.filter_<table_id>().
ALTER TABLE org_stats.tracked ADD COLUMN IF NOT EXISTS filter_columns name[];

-- A group's count is the sum of its rows: one per session that wrote it (`session`, see
-- org_stats.session()), and the settled row (`session` 0) that recalculate() keeps.
CREATE TABLE IF NOT EXISTS org_stats.counters (
    table_id integer NOT NULL,
    org_id   text    NOT NULL,
    status   text,
    session  integer NOT NULL,
    n        bigint  NOT NULL,
    -- Per summed column: the sum of its finite values, how many values are not NULL, how many
    -- are NaN, Infinity and -Infinity (so a deleted row can be taken out again exactly).
    sums     numeric[],
    CONSTRAINT counters_key UNIQUE NULLS NOT DISTINCT (table_id, org_id, status, session)
);

-- Counter rows a partitioned table's triggers wrote while its partition tree differed from the
-- one they were made for (their session negated, see org_stats.make_triggers()).
CREATE INDEX IF NOT EXISTS counters_off_tree ON org_stats.counters (table_id) WHERE session < 0;

CREATE TABLE IF NOT EXISTS org_stats.recalculation_log (
    id              bigserial   PRIMARY KEY,
    started_at      timestamptz NOT NULL,
    finished_at     timestamptz NOT NULL,
    tables          integer     NOT NULL,
    orgs_checked    bigint      NOT NULL,
    groups_repaired bigint      NOT NULL,
    triggered_by    text        NOT NULL
);

REVOKE ALL ON org_stats.tracked, org_stats.counters, org_stats.recalculation_log FROM PUBLIC;

-- The tables of a partitioned table's tree (itself included), in oid order; NULL for a plain table.
-- Its body is parsed here (BEGIN ATOMIC): the trigger functions call it on a writer's search_path.
CREATE OR REPLACE FUNCTION org_stats.partition_tree(tbl regclass) RETURNS oid[]
    LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT array_agg(p.relid::oid ORDER BY p.relid::oid) FROM pg_catalog.pg_partition_tree(tbl) p;
END;

-- Whether a partitioned table's triggers wrote counter rows while its tree differed from the one
-- they were made for: a table attached and detached again since leaves the tree as recorded,
-- but those rows may count rows that left with it. Until recalculate() repairs and folds them.
CREATE OR REPLACE FUNCTION org_stats.written_off_tree(table_id integer) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT EXISTS (SELECT FROM org_stats.counters c WHERE c.table_id = written_off_tree.table_id AND c.session < 0) $$;

-- Whether a tracking's table still exists: it has the tracking's trigger on its columns (see
-- org_stats.make_triggers()), which goes with the table (a table made later with the same oid
-- has none).
CREATE OR REPLACE FUNCTION org_stats.table_exists(relid regclass, table_id integer) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT EXISTS (SELECT FROM pg_catalog.pg_trigger g
                    WHERE g.tgrelid OPERATOR(pg_catalog.=) relid
                      AND g.tgname OPERATOR(pg_catalog.=) ('org_stats_columns_' OPERATOR(pg_catalog.||) table_id)::name)
$$;

-- The trackings, readable by every role (as the native edition's tracked_tables is); a dropped
-- table's are gone (its counters go at the next track() or recalculate()).
CREATE OR REPLACE VIEW org_stats.tracked_tables AS
SELECT t.relid AS table_name, t.org_column, t.status_column, t.tracked_at, t.backfilled_at,
       t.name AS tracking, t.filter, t.sum_columns, false AS notify,
       ARRAY[t.status_column::text] AS group_by,
       NULL::name AS time_column, NULL::interval AS bucket, NULL::text AS bucket_time_zone
  FROM org_stats.tracked t
 WHERE org_stats.table_exists(t.relid, t.table_id);
GRANT SELECT ON org_stats.tracked_tables TO PUBLIC;

-- Counter rows of the tables the querying role may read (SELECT, and no row-level security
-- policy applying to it): a view runs with its owner's rights, but has_table_privilege() and
-- row_security_active() ask about the querying role. Written as conditions on the tracking, so
-- that they are tested once per tracking read, not once per counter row. What the read functions
-- read; `direct`: the counters alone answer reads (backfilled, not partitioned: see live_reason()).
CREATE OR REPLACE VIEW org_stats.readable_counters WITH (security_barrier) AS
SELECT c.table_id, c.org_id, c.status, c.n, c.sums, t.relid, t.name AS tracking,
       t.backfilled_at IS NOT NULL AND t.partitions IS NULL AS direct
  FROM org_stats.tracked t
  JOIN org_stats.counters c ON c.table_id OPERATOR(pg_catalog.=) t.table_id
 WHERE pg_catalog.has_table_privilege(t.relid, 'SELECT') AND NOT pg_catalog.row_security_active(t.relid);
GRANT SELECT ON org_stats.readable_counters TO PUBLIC;

-- Each tracking's identity and columns, for the read functions (run with the caller's rights).
CREATE OR REPLACE VIEW org_stats.trackings AS
SELECT t.table_id, t.relid, t.name, t.org_column, t.status_column, t.filter, t.sum_columns,
       t.backfilled_at, t.partitions, t.filter_columns
  FROM org_stats.tracked t;
GRANT SELECT ON org_stats.trackings TO PUBLIC;

-- Why a tracking's reads count live instead of reading its counters, or NULL: they await its
-- backfill, or partitions were attached or detached since its triggers were made (a partition
-- made since then fires none; an attached table's rows were never counted, a detached one's
-- still are), until recalculate() follows the new tree.
CREATE OR REPLACE FUNCTION org_stats.live_reason(t org_stats.trackings) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN t.backfilled_at IS NULL THEN 'awaiting backfill'
                WHEN t.partitions IS NOT NULL AND (t.partitions IS DISTINCT FROM org_stats.partition_tree(t.relid)
                                                   OR org_stats.written_off_tree(t.table_id))
                THEN 'partitions attached or detached: org_stats.recalculate() follows them' END
$$;

CREATE OR REPLACE VIEW org_stats.organization_stats WITH (security_barrier) AS
SELECT t.relid AS table_name, c.org_id, c.status, pg_catalog.sum(c.n)::bigint AS count,
       t.last_recalculated, t.name AS tracking
  FROM org_stats.counters c
  JOIN org_stats.tracked t ON t.table_id OPERATOR(pg_catalog.=) c.table_id
  JOIN org_stats.trackings k ON k.table_id OPERATOR(pg_catalog.=) t.table_id
 WHERE pg_catalog.has_table_privilege(t.relid, 'SELECT') AND NOT pg_catalog.row_security_active(t.relid)
   AND org_stats.live_reason(k) IS NULL
 GROUP BY t.table_id, t.relid, t.name, c.org_id, c.status, t.last_recalculated
HAVING pg_catalog.sum(c.n) OPERATOR(pg_catalog.<>) 0;
GRANT SELECT ON org_stats.organization_stats TO PUBLIC;

-- This session's number: its counter rows carry it. Chosen at the session's first counted write
-- and held as a session-level advisory lock (class 'orgs', 1869768563), so no live session shares
-- it and recalculate() can tell whose sessions have ended (their lock is free). When the session's
-- last writing transaction did not commit before this transaction's snapshot (it was prepared
-- for two-phase commit, and is pending or committed since), that transaction's row versions are
-- ones this one must neither wait for nor update: the session takes a new number. Called by the
-- trigger functions when the number is not set yet or prepared transactions are enabled.
CREATE OR REPLACE FUNCTION org_stats.session() RETURNS integer
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mine integer := NULLIF(current_setting('org_stats_portable.session', true), '')::integer;
    last xid8;
    this xid8;
BEGIN
    -- Without prepared transactions (the default, and most providers'), none of this can happen.
    IF current_setting('max_prepared_transactions') <> '0' THEN
        last := NULLIF(current_setting('org_stats_portable.transaction', true), '')::xid8;
        this := pg_current_xact_id();
        IF last IS DISTINCT FROM this THEN
            IF mine IS NOT NULL AND last IS NOT NULL AND NOT pg_visible_in_snapshot(last, pg_current_snapshot()) THEN
                IF pg_xact_status(last) IS DISTINCT FROM 'aborted' THEN
                    PERFORM pg_advisory_unlock(1869768563, mine);
                    mine := NULL;
                END IF;
            END IF;
            PERFORM set_config('org_stats_portable.transaction', this::text, false);
        END IF;
    END IF;
    IF mine IS NULL THEN
        LOOP
            mine := 1 + floor(random() * 2147483646)::integer;
            EXIT WHEN pg_try_advisory_lock(1869768563, mine);
        END LOOP;
        PERFORM set_config('org_stats_portable.session', mine::text, false);
    END IF;
    RETURN mine;
END
$$;
REVOKE ALL ON FUNCTION org_stats.session() FROM PUBLIC;

-- Two sums arrays added part by part (NULL as zeros), and a sum of them.
-- Their bodies are parsed here, on this script's search_path (BEGIN ATOMIC), not where a
-- trigger function inlines them: a writer's search_path cannot change what they call.
CREATE OR REPLACE FUNCTION org_stats.sums_plus(a numeric[], b numeric[]) RETURNS numeric[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT CASE WHEN a IS NULL THEN b WHEN b IS NULL THEN a ELSE
           ARRAY(SELECT COALESCE(a[i], 0) + COALESCE(b[i], 0)
                   FROM generate_series(1, GREATEST(cardinality(a), cardinality(b))) i) END;
END;
CREATE OR REPLACE FUNCTION org_stats.sums_minus(a numeric[], b numeric[]) RETURNS numeric[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT CASE WHEN a IS NULL AND b IS NULL THEN NULL ELSE
           ARRAY(SELECT COALESCE(a[i], 0) - COALESCE(b[i], 0)
                   FROM generate_series(1, GREATEST(cardinality(a), cardinality(b))) i) END;
END;
-- The aggregate skips NULLs (trackings without sums): its step is strict.
CREATE OR REPLACE FUNCTION org_stats.sums_add(a numeric[], b numeric[]) RETURNS numeric[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT org_stats.sums_plus(a, b) $$;
CREATE OR REPLACE AGGREGATE org_stats.sums_total(numeric[]) (
    SFUNC = org_stats.sums_add, STYPE = numeric[], PARALLEL = SAFE
);

-- What sum() returns for each summed column, as `{"column": sum}`: NULL without values, NaN,
-- an infinity (as strings, which JSON numbers cannot be), else the exact finite sum.
CREATE OR REPLACE FUNCTION org_stats.sums_json(columns text[], sums numeric[]) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT COALESCE(jsonb_object_agg(columns[i], CASE
               WHEN COALESCE(sums[5 * i - 3], 0) = 0 THEN 'null'::jsonb
               WHEN sums[5 * i - 2] > 0 OR (sums[5 * i - 1] > 0 AND sums[5 * i] > 0) THEN '"NaN"'
               WHEN sums[5 * i - 1] > 0 THEN '"Infinity"'
               WHEN sums[5 * i] > 0 THEN '"-Infinity"'
               ELSE to_jsonb(sums[5 * i - 4]) END), '{}')
      FROM generate_series(1, COALESCE(cardinality(columns), 0)) i
$$;

-- The base type of a column (through any domains), or NULL if it has none.
CREATE OR REPLACE FUNCTION org_stats.column_type(tbl regclass, col name) RETURNS regtype
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    WITH RECURSIVE base(oid, typtype, typbasetype) AS (
        SELECT t.oid, t.typtype, t.typbasetype
          FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
         WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped
        UNION ALL
        SELECT t.oid, t.typtype, t.typbasetype FROM base b JOIN pg_type t ON t.oid = b.typbasetype
         WHERE b.typtype = 'd')
    SELECT oid::regtype FROM base WHERE typtype <> 'd'
$$;

-- SQL for the text a column's value is counted under, as the native edition counts it:
-- `value::text`, but an enum through its output function (its owner may cast it otherwise).
-- The column is named alone, not as `r.col`: a missing `r.col` is tried as a function `col(r)`
-- on the caller's search_path, a missing `col` is not (see org_stats.make_triggers()).
CREATE OR REPLACE FUNCTION org_stats.text_sql(tbl regclass, col name) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN t.typtype = 'e'
                THEN format('pg_catalog.textin(pg_catalog.enum_out(%I))', col)
                ELSE format('%I::pg_catalog.text', col) END
      FROM pg_type t WHERE t.oid = org_stats.column_type(tbl, col)
$$;

-- SQL of a tracking's groups over `source`, a query of (org_id, status, s, v1 .. vn) rows: s is
-- +1 for a row counted in, -1 for one counted out, v1 .. vn its summed columns' values. Gives
-- (org_id, status, n, sums) per group, sums as the counters keep them (see org_stats.counters).
CREATE OR REPLACE FUNCTION org_stats.groups_sql(tbl regclass, sum_columns text[], source text) RETURNS text
    LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
DECLARE
    parts text[] := '{}';
    i     integer;
    v     text;
    finite text;
    special boolean;
BEGIN
    FOR i IN 1 .. COALESCE(cardinality(sum_columns), 0) LOOP
        v := format('d.v%s', i);
        special := org_stats.column_type(tbl, sum_columns[i]) = 'numeric'::regtype;
        finite := CASE WHEN special
                       THEN format('%1$s::pg_catalog.numeric OPERATOR(pg_catalog.<>) ''NaN'' AND %1$s::pg_catalog.numeric OPERATOR(pg_catalog.<>) ''Infinity'' AND %1$s::pg_catalog.numeric OPERATOR(pg_catalog.<>) ''-Infinity''', v)
                       ELSE format('%s IS NOT NULL', v) END;
        parts := parts || ARRAY[
            format('COALESCE(pg_catalog.sum(CASE WHEN %s THEN d.s OPERATOR(pg_catalog.*) %s::pg_catalog.numeric END), 0)', finite, v),
            format('COALESCE(pg_catalog.sum(d.s) FILTER (WHERE %s IS NOT NULL), 0)', v)];
        parts := parts || CASE WHEN special THEN ARRAY[
            format('COALESCE(pg_catalog.sum(d.s) FILTER (WHERE %s::pg_catalog.numeric OPERATOR(pg_catalog.=) ''NaN''), 0)', v),
            format('COALESCE(pg_catalog.sum(d.s) FILTER (WHERE %s::pg_catalog.numeric OPERATOR(pg_catalog.=) ''Infinity''), 0)', v),
            format('COALESCE(pg_catalog.sum(d.s) FILTER (WHERE %s::pg_catalog.numeric OPERATOR(pg_catalog.=) ''-Infinity''), 0)', v)]
            ELSE ARRAY['0', '0', '0'] END;
    END LOOP;
    RETURN format('SELECT d.org_id, d.status, pg_catalog.sum(d.s)::pg_catalog.int8 AS n, %s AS sums
                     FROM (%s) d GROUP BY d.org_id, d.status',
                  CASE WHEN cardinality(parts) = 0 THEN 'NULL::pg_catalog.numeric[]'
                       ELSE format('ARRAY[%s]::pg_catalog.numeric[]', array_to_string(parts, ', ')) END,
                  source);
END
$$;

-- The columns a tracking reads (org, status, summed, read by its filter), each once, in order.
CREATE OR REPLACE FUNCTION org_stats.tracked_columns(t org_stats.trackings) RETURNS name[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT ARRAY(SELECT DISTINCT c FROM unnest(ARRAY[t.org_column, t.status_column] || t.sum_columns::name[]
                                               || t.filter_columns) c WHERE c IS NOT NULL ORDER BY 1)
$$;

-- True if the columns a tracking reads are where track() found them, else an error saying how to
-- track the table again: the trigger that holds them (see org_stats.make_triggers()) keeps their
-- attribute numbers, so a column renamed, or another given its name, shows here (before that
-- trigger is made, the names are looked up as they are). The SQL that reads the columns by name
-- calls it with a constant; declared IMMUTABLE, it is run by the planner when it plans that SQL
-- (a session's first few executions, and again after DDL on the table), not when a plan
-- executes, and its call is then folded away.
CREATE OR REPLACE FUNCTION org_stats.columns_in_place(table_id integer) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t     org_stats.trackings;
    named name[];
    held  name[];
    kept  int2vector;
BEGIN
    SELECT * INTO t FROM org_stats.trackings k WHERE k.table_id = columns_in_place.table_id;
    named := org_stats.tracked_columns(t);
    SELECT g.tgattr INTO kept FROM pg_trigger g WHERE g.tgrelid = t.relid AND g.tgname = 'org_stats_columns_' || t.table_id;
    held := CASE WHEN FOUND
                 THEN ARRAY(SELECT a.attname FROM pg_attribute a
                             WHERE a.attrelid = t.relid AND a.attnum = ANY (kept) AND NOT a.attisdropped ORDER BY 1)
                 ELSE ARRAY(SELECT a.attname FROM pg_attribute a
                             WHERE a.attrelid = t.relid AND a.attname = ANY (named) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY 1) END;
    IF t.table_id IS NOT NULL AND named <> held THEN
        RAISE EXCEPTION 'columns of table % that org_stats reads were renamed or dropped', t.relid
            USING ERRCODE = 'undefined_column',
                  DETAIL = format('The tracking reads %s; those columns are now %s.',
                                  array_to_string(named, ', '), COALESCE(NULLIF(array_to_string(held, ', '), ''), 'gone')),
                  HINT = format('The portable edition does not follow renames: track the table again under the new names, in the transaction that renames them: SELECT org_stats.untrack(%L); SELECT org_stats.track(%L%s, ...).',
                                COALESCE(t.name, t.relid::text), t.relid::text,
                                CASE WHEN t.name IS NOT NULL THEN format(', name => %L', t.name) ELSE '' END);
    END IF;
    RETURN true;
END
$$;

-- SQL of the rows of `relation` a tracking counts, as (org_id, status, s, v1 .. vn), with s =
-- `sign` and `extra` a further condition. Every name in it is schema-qualified or a column of
-- `relation`, so it means the same on any search_path (the filter is a function, see
-- org_stats.make_triggers()).
CREATE OR REPLACE FUNCTION org_stats.rows_sql(t org_stats.trackings, relation text, sign integer, extra text DEFAULT 'true')
    RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT format('SELECT %s AS org_id, %s AS status, %s AS s%s FROM %s r WHERE org_stats.columns_in_place(%s) AND %I IS NOT NULL AND (%s) AND (%s)',
                  org_stats.text_sql(t.relid, t.org_column),
                  org_stats.text_sql(t.relid, t.status_column),
                  sign,
                  (SELECT string_agg(format(', %I AS v%s', c, i), '' ORDER BY i)
                     FROM unnest(t.sum_columns) WITH ORDINALITY AS u(c, i)),
                  relation, t.table_id, t.org_column,
                  CASE WHEN t.filter IS NULL THEN 'true'
                       ELSE format('org_stats.%I(%s)', 'filter_' || t.table_id,
                                   (SELECT string_agg(format('%I', c), ', ' ORDER BY i)
                                      FROM unnest(t.filter_columns) WITH ORDINALITY AS u(c, i))) END,
                  extra)
$$;

-- SQL of the groups a tracking's table holds now, counted live: (org_id, status, n, sums), of
-- the orgs in the text[] $1 (NULL: all).
CREATE OR REPLACE FUNCTION org_stats.actual_sql(t org_stats.trackings) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT org_stats.groups_sql(t.relid, t.sum_columns,
        org_stats.rows_sql(t, t.relid::text, 1,
                           format('$1 IS NULL OR %s OPERATOR(pg_catalog.=) ANY ($1)',
                                  org_stats.text_sql(t.relid, t.org_column))))
$$;

-- Those groups, of the orgs in `orgs` (NULL: all).
CREATE OR REPLACE FUNCTION org_stats.actual_groups(t org_stats.trackings, orgs text[])
    RETURNS TABLE (org_id text, status text, n bigint, sums numeric[])
    LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
BEGIN
    PERFORM org_stats.columns_in_place(t.table_id);
    RETURN QUERY EXECUTE org_stats.actual_sql(t) USING orgs;
END
$$;

-- The groups of a tracking with count and sums, of the orgs in `orgs` (NULL: all): from its
-- counters, or, while org_stats.live_reason() gives a reason, counted live (exact either way). One simple query
-- per case, so that each keeps one plan for the session.
CREATE OR REPLACE FUNCTION org_stats.groups_of(t org_stats.trackings, orgs text[])
    RETURNS TABLE (org_id text, status text, n bigint, sums numeric[])
    LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
BEGIN
    IF org_stats.live_reason(t) IS NOT NULL THEN
        RETURN QUERY SELECT * FROM org_stats.actual_groups(t, orgs) a WHERE a.n <> 0;
    ELSIF cardinality(orgs) = 1 THEN
        -- One org, the dashboard's read: compared as a scalar, its plan is kept (with an array,
        -- the planner would plan it again at every call).
        RETURN QUERY
        SELECT c.org_id, c.status, sum(c.n)::bigint, org_stats.sums_total(c.sums)
          FROM org_stats.readable_counters c
         WHERE c.table_id = t.table_id AND c.org_id = orgs[1]
         GROUP BY c.org_id, c.status
        HAVING sum(c.n) <> 0;
    ELSE
        RETURN QUERY
        SELECT c.org_id, c.status, sum(c.n)::bigint, org_stats.sums_total(c.sums)
          FROM org_stats.readable_counters c
         WHERE c.table_id = t.table_id AND (orgs IS NULL OR c.org_id = ANY (orgs))
         GROUP BY c.org_id, c.status
        HAVING sum(c.n) <> 0;
    END IF;
END
$$;

-- Whether `expr` can be one expression: parentheses that balance outside quotes.
CREATE OR REPLACE FUNCTION org_stats.single_expression(expr text) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
    depth integer := 0;
    quote text;
    c     text;
BEGIN
    FOREACH c IN ARRAY regexp_split_to_array(expr, '') LOOP
        IF quote IS NOT NULL THEN
            quote := CASE WHEN c = quote THEN NULL ELSE quote END;  -- a doubled quote reopens
        ELSIF c IN ('''', '"') THEN
            quote := c;
        ELSIF c = '(' THEN
            depth := depth + 1;
        ELSIF c = ')' THEN
            depth := depth - 1;
            EXIT WHEN depth < 0;
        END IF;
    END LOOP;
    RETURN depth = 0 AND quote IS NULL;
END
$$;

-- A filter checked as the native edition checks it: PostgreSQL parses it as a CHECK constraint
-- of an empty temporary copy of the table, which refuses subqueries, aggregates, window and
-- set-returning functions and system columns, and wants a boolean; it may call built-in
-- immutable functions only, use no domain and read no whole row. Returns it as PostgreSQL prints
-- it with search_path pg_catalog (what the trigger functions run with), and the columns it reads.
CREATE OR REPLACE FUNCTION org_stats.checked_filter(tbl regclass, filter text, OUT stored text, OUT columns name[])
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
DECLARE
    hint  constant text := 'A filter is a boolean expression over the table''s own columns and constants, using built-in (pg_catalog) immutable functions and operators only, such as deleted_at IS NULL or status <> ''VOID'': org_stats evaluates it with its own rights.';
    shown constant text := (SELECT c.relname FROM pg_class c WHERE c.oid = tbl);
    copy  regclass;
    tree  text;
    why   text;
BEGIN
    IF filter IS NULL THEN
        RETURN;
    END IF;
    -- Never two statements: a semicolon is refused even inside a string constant.
    IF strpos(filter, ';') > 0 THEN
        RAISE EXCEPTION 'invalid filter of table %: syntax error at or near ";"', shown
            USING ERRCODE = 'syntax_error', HINT = hint;
    END IF;
    IF NOT org_stats.single_expression(filter) THEN
        RAISE EXCEPTION 'filter of table % is not a single expression', shown
            USING ERRCODE = 'invalid_object_definition', HINT = hint;
    END IF;
    EXECUTE format('CREATE TEMP TABLE org_stats_filter (LIKE %s)', tbl);
    copy := 'pg_temp.org_stats_filter'::regclass;
    BEGIN
        EXECUTE format('ALTER TABLE pg_temp.org_stats_filter ADD CONSTRAINT org_stats_filter CHECK (%s)', filter);
    EXCEPTION WHEN syntax_error_or_access_rule_violation OR data_exception OR feature_not_supported
                   OR invalid_object_definition OR grouping_error OR windowing_error THEN
        RAISE EXCEPTION 'invalid filter of table %: %', shown,
              replace(replace(replace(SQLERRM, 'check constraints', 'filters'), 'check constraint', 'filter'),
                      'argument of CHECK ', 'argument of org_stats filter ')
            USING ERRCODE = SQLSTATE, HINT = hint;
    END;
    SELECT k.conbin::text, org_stats.printed_check(copy) INTO tree, stored
      FROM pg_constraint k WHERE k.conrelid = copy AND k.conname = 'org_stats_filter';
    why := (SELECT format('calls %s, which is not a built-in immutable function', f.oid::regprocedure)
              FROM regexp_matches(tree, ':(?:funcid|opfuncid) (\d+)', 'g') WITH ORDINALITY m(id, i)
              JOIN pg_proc f ON f.oid = m.id[1]::oid
             WHERE f.pronamespace <> 'pg_catalog'::regnamespace OR f.provolatile <> 'i'
             ORDER BY m.i LIMIT 1);
    why := COALESCE(why,
                    CASE WHEN tree ~ '\{COERCETODOMAIN ' THEN 'uses a domain, whose constraints could call any function'
                         WHEN tree ~ ':varattno (0|-)' THEN 'reads a system column or a whole row' END);
    IF why IS NULL THEN
        -- What the node text does not name (CURRENT_DATE, a cast through a type's output
        -- function) is left to PostgreSQL's own test of an index expression.
        BEGIN
            EXECUTE format('CREATE INDEX ON pg_temp.org_stats_filter ((%s))', stored);
        EXCEPTION WHEN invalid_object_definition THEN
            why := 'is not immutable (it depends on the time, a setting or the session)';
        END;
    END IF;
    IF why IS NOT NULL THEN
        RAISE EXCEPTION 'filter of table % %', shown, why USING ERRCODE = 'invalid_object_definition', HINT = hint;
    END IF;
    columns := ARRAY(SELECT DISTINCT a.attname FROM regexp_matches(tree, ':varattno (\d+)', 'g') m(n)
                       JOIN pg_attribute a ON a.attrelid = copy AND a.attnum = m.n[1]::smallint
                      ORDER BY 1);
    DROP TABLE pg_temp.org_stats_filter;
END
$$;

-- A CHECK constraint of `rel` as PostgreSQL prints it with search_path pg_catalog, so names
-- outside pg_catalog come out qualified.
CREATE OR REPLACE FUNCTION org_stats.printed_check(rel regclass) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog
AS $$ SELECT pg_get_expr(k.conbin, k.conrelid) FROM pg_constraint k WHERE k.conrelid = rel AND k.contype = 'c' $$;

-- Per-tracking trigger functions: made by track(), named after the tracking's table_id, run
-- with their owner's rights (the tracking owner's: the counters are not writable by others).
-- They pin no search_path, which would cost each statement a setting's change and undoing:
-- every name in them is schema-qualified, and the filter is a function whose body was parsed
-- here (BEGIN ATOMIC) on search_path pg_catalog, inlined where it is called. So whatever a
-- writer's search_path, they call nothing of the writer's. Each table of a partition tree
-- gets the statement triggers (a statement fires those of the table it names only, and their
-- transition tables hold the rows of every partition below it); the tree is recorded in
-- tracked.partitions. Made again, they replace the ones there, and a table that left the tree
-- loses them.
CREATE OR REPLACE FUNCTION org_stats.make_triggers(t org_stats.trackings) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tree   oid[] := org_stats.partition_tree(t.relid);
    rel    oid;
    event  text;
    source text;
    kept   text := CASE WHEN t.sum_columns IS NULL
                        THEN 'g.n OPERATOR(pg_catalog.<>) 0'
                        ELSE format('g.n OPERATOR(pg_catalog.<>) 0 OR g.sums OPERATOR(pg_catalog.<>) pg_catalog.array_fill(0::pg_catalog.numeric, ARRAY[%s])',
                                    5 * cardinality(t.sum_columns)) END;
    added  text := CASE WHEN t.sum_columns IS NULL THEN ''
                        ELSE ', sums = org_stats.sums_plus(c.sums, excluded.sums)' END;
    upsert text := 'ON CONFLICT ON CONSTRAINT counters_key DO UPDATE SET n = c.n OPERATOR(pg_catalog.+) excluded.n';
    -- The columns the tracking reads: held by a trigger, and each a variable of the trigger
    -- functions (see below), of the column's base type (a domain's constraints would be checked
    -- on the variable's NULL), its name quoted (%I leaves PL/pgSQL's own keywords bare).
    columns name[] := org_stats.tracked_columns(t);
    variables text := (SELECT string_agg(format('"%s" %I.%I;', replace(c, '"', '""'), n.nspname, y.typname), ' ' ORDER BY c)
                         FROM unnest(columns) c
                         JOIN pg_type y ON y.oid = org_stats.column_type(t.relid, c)
                         JOIN pg_namespace n ON n.oid = y.typnamespace);
BEGIN
    PERFORM org_stats.columns_in_place(t.table_id);
    IF t.filter IS NOT NULL THEN
        EXECUTE format('CREATE OR REPLACE FUNCTION org_stats.%I(%s) RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
                        BEGIN ATOMIC SELECT (%s); END',
                       'filter_' || t.table_id,
                       (SELECT string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY u.i)
                          FROM unnest(t.filter_columns) WITH ORDINALITY AS u(c, i)
                          JOIN pg_attribute a ON a.attrelid = t.relid AND a.attname = u.c),
                       t.filter);
    END IF;
    FOREACH event IN ARRAY ARRAY['insert', 'update', 'delete'] LOOP
        source := CASE event
            WHEN 'insert' THEN org_stats.rows_sql(t, 'org_stats_new', 1)
            WHEN 'delete' THEN org_stats.rows_sql(t, 'org_stats_old', -1)
            ELSE org_stats.rows_sql(t, 'org_stats_new', 1) || ' UNION ALL '
                 || org_stats.rows_sql(t, 'org_stats_old', -1) END;
        EXECUTE format($f$
            CREATE OR REPLACE FUNCTION org_stats.%1$I() RETURNS trigger
                LANGUAGE plpgsql SECURITY DEFINER
            AS $body$
            #variable_conflict use_column
            <<org_stats_trigger>>
            DECLARE
                setting pg_catalog.text := pg_catalog.current_setting('org_stats_portable.session', true);
                mine integer;
            BEGIN
                -- This session's number, once it has one and without prepared transactions.
                IF setting OPERATOR(pg_catalog.<>) '' AND pg_catalog.current_setting('max_prepared_transactions') OPERATOR(pg_catalog.=) '0' THEN
                    mine := setting::integer;
                ELSE
                    mine := org_stats.session();
                END IF;
                %7$s
                -- A tracked column renamed since: its name below is then this block's variable,
                -- not a column, so the statement still parses and the planner runs
                -- org_stats.columns_in_place(), which says what happened and what to do.
                DECLARE
                    %8$s
                BEGIN
                    INSERT INTO org_stats.counters AS c (table_id, org_id, status, session, n, sums)
                    SELECT %2$s, g.org_id, g.status, org_stats_trigger.mine, g.n, g.sums
                      FROM (%3$s) g
                     WHERE %4$s
                        %6$s %5$s;
                END;
                RETURN NULL;
            END
            $body$ $f$,
            format('count_%s_%s', t.table_id, event), t.table_id,
            org_stats.groups_sql(t.relid, t.sum_columns, source), kept, added, upsert,
            -- A partition tree that is not the one these triggers were made for: the rows go to
            -- negated sessions, which make reads count live until recalculate().
            CASE WHEN tree IS NULL THEN '' ELSE format(
                'IF NOT pg_catalog.array_eq(org_stats.partition_tree(%s::pg_catalog.oid::pg_catalog.regclass), %L::pg_catalog.oid[]) THEN
                     mine := 0 OPERATOR(pg_catalog.-) mine;
                 END IF;', t.relid::oid, tree) END,
            variables);
    END LOOP;
    -- TRUNCATE has no transition table. A table's own: its counts go. A partition's: its rows
    -- are counted out first (the parent's TRUNCATE fires every partition's trigger). Either
    -- would miss rows committed after a REPEATABLE READ snapshot, which TRUNCATE removes too.
    EXECUTE format($f$
        CREATE OR REPLACE FUNCTION org_stats.%1$I() RETURNS trigger
            LANGUAGE plpgsql SECURITY DEFINER
        AS $body$
        BEGIN
            IF pg_catalog.current_setting('transaction_isolation') OPERATOR(pg_catalog.<>) 'read committed' THEN
                RAISE EXCEPTION 'TRUNCATE of a table org_stats counts must run at READ COMMITTED'
                    USING ERRCODE = 'invalid_transaction_state',
                          HINT = 'The portable edition counts what TRUNCATE removes on the statement''s snapshot, which at REPEATABLE READ misses rows committed since the transaction began; run it in a READ COMMITTED transaction.';
            END IF;
            %2$s
            RETURN NULL;
        END
        $body$ $f$, format('count_%s_truncate', t.table_id),
        CASE WHEN tree IS NULL
             THEN format('DELETE FROM org_stats.counters WHERE table_id OPERATOR(pg_catalog.=) %s;', t.table_id)
             ELSE format($e$EXECUTE 'SELECT org_stats.columns_in_place(%s)';
                            EXECUTE pg_catalog.format(%L, TG_RELID::pg_catalog.regclass) USING org_stats.session();$e$,
                         t.table_id,
                         replace(replace(
                             format('INSERT INTO org_stats.counters AS c (table_id, org_id, status, session, n, sums)
                                     SELECT %s, g.org_id, g.status, $1, g.n, g.sums FROM (%s) g WHERE %s %s %s',
                                    t.table_id,
                                    org_stats.groups_sql(t.relid, t.sum_columns,
                                                         org_stats.rows_sql(t, 'ONLY org_stats_truncated', -1)),
                                    kept, upsert, added),
                             '%', '%%'), 'ONLY org_stats_truncated r', 'ONLY %1$s r')) END);
    FOREACH event IN ARRAY ARRAY['insert', 'update', 'delete', 'truncate'] LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION org_stats.%I() FROM PUBLIC', format('count_%s_%s', t.table_id, event));
    END LOOP;
    FOREACH rel IN ARRAY COALESCE(tree, ARRAY[t.relid::oid]) LOOP
        FOREACH event IN ARRAY ARRAY['insert', 'update', 'delete', 'truncate'] LOOP
            EXECUTE format('CREATE OR REPLACE TRIGGER %I %s %s ON %s %s FOR EACH STATEMENT EXECUTE FUNCTION org_stats.%I()',
                           format('org_stats_%s_%s', event, t.table_id),
                           CASE event WHEN 'truncate' THEN 'BEFORE' ELSE 'AFTER' END, upper(event), rel::regclass,
                           CASE event WHEN 'insert' THEN 'REFERENCING NEW TABLE AS org_stats_new'
                                      WHEN 'delete' THEN 'REFERENCING OLD TABLE AS org_stats_old'
                                      WHEN 'update' THEN 'REFERENCING OLD TABLE AS org_stats_old NEW TABLE AS org_stats_new'
                                      ELSE '' END,
                           format('count_%s_%s', t.table_id, event));
        END LOOP;
    END LOOP;
    FOREACH rel IN ARRAY COALESCE(t.partitions, '{}') LOOP
        IF rel <> ALL (COALESCE(tree, '{}')) THEN
            PERFORM org_stats.drop_triggers_of(t, rel::regclass);
        END IF;
    END LOOP;
    -- A trigger that never fires, on the columns the tracking reads: PostgreSQL then refuses to
    -- drop them or change their type, either of which would break or skew the counting, and it
    -- keeps their attribute numbers (see org_stats.columns_in_place()).
    EXECUTE format('CREATE OR REPLACE TRIGGER %I BEFORE UPDATE OF %s ON %s FOR EACH STATEMENT WHEN (false) EXECUTE FUNCTION org_stats.holds_columns()',
                   format('org_stats_columns_%s', t.table_id),
                   (SELECT string_agg(quote_ident(c), ', ') FROM unnest(columns) c), t.relid);
    UPDATE org_stats.tracked k SET partitions = tree WHERE k.table_id = t.table_id;
END
$$;
REVOKE ALL ON FUNCTION org_stats.make_triggers(org_stats.trackings) FROM PUBLIC;

-- The function of the trigger org_stats.make_triggers() holds a tracking's columns with.
CREATE OR REPLACE FUNCTION org_stats.holds_columns() RETURNS trigger
    LANGUAGE plpgsql
AS $$ BEGIN RETURN NULL; END $$;

CREATE OR REPLACE FUNCTION org_stats.drop_triggers_of(t org_stats.trackings, rel regclass) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
DECLARE
    trigger name;
BEGIN
    FOR trigger IN SELECT g.tgname FROM pg_trigger g
                    WHERE g.tgrelid = rel AND g.tgname ~ ('^org_stats_[a-z]+_' || t.table_id || '$') LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', trigger, rel);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION org_stats.drop_triggers_of(org_stats.trackings, regclass) FROM PUBLIC;

CREATE OR REPLACE FUNCTION org_stats.drop_triggers(t org_stats.trackings) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
DECLARE
    rel   oid;
    event text;
BEGIN
    FOR rel IN SELECT DISTINCT r FROM unnest(ARRAY[t.relid::oid] || COALESCE(t.partitions, '{}')
                                             || COALESCE(org_stats.partition_tree(t.relid), '{}')) r
                WHERE EXISTS (SELECT FROM pg_class c WHERE c.oid = r) LOOP
        PERFORM org_stats.drop_triggers_of(t, rel::regclass);
    END LOOP;
    FOREACH event IN ARRAY ARRAY['insert', 'update', 'delete', 'truncate'] LOOP
        EXECUTE format('DROP FUNCTION IF EXISTS org_stats.%I()', format('count_%s_%s', t.table_id, event));
    END LOOP;
    FOR event IN SELECT p.oid::regprocedure::text FROM pg_proc p
                  WHERE p.pronamespace = 'org_stats'::regnamespace AND p.proname = 'filter_' || t.table_id LOOP
        EXECUTE format('DROP FUNCTION %s', event);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION org_stats.drop_triggers(org_stats.trackings) FROM PUBLIC;

-- Adds to the settled rows (session 0) what the counters lack of the table's rows of the orgs in
-- `orgs` (NULL: all), computed and written in one statement, so on one snapshot: exact however
-- writers go on meanwhile. Returns the groups it changed (with `repair`; else those it would),
-- as check_drift() shows them.
CREATE OR REPLACE FUNCTION org_stats.drift(t org_stats.trackings, orgs text[], repair boolean)
    RETURNS TABLE (table_name regclass, org_id text, status text, stored bigint, actual bigint, tracking text,
                   stored_sums jsonb, actual_sums jsonb)
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
BEGIN
    PERFORM org_stats.columns_in_place(t.table_id);
    RETURN QUERY EXECUTE format($q$
        WITH stored AS (
            SELECT c.org_id, c.status, sum(c.n)::bigint AS n, org_stats.sums_total(c.sums) AS sums
              FROM org_stats.counters c
             WHERE c.table_id = %1$s AND ($1 IS NULL OR c.org_id = ANY ($1))
             GROUP BY c.org_id, c.status),
        actual AS (%2$s),
        differ AS (
            SELECT COALESCE(a.org_id, s.org_id) AS org_id, COALESCE(a.status, s.status) AS status,
                   COALESCE(s.n, 0) AS stored, COALESCE(a.n, 0) AS actual, s.sums AS stored_sums, a.sums AS actual_sums
              FROM actual a FULL JOIN stored s ON a.org_id = s.org_id AND a.status IS NOT DISTINCT FROM s.status
             WHERE COALESCE(a.n, 0) <> COALESCE(s.n, 0)
                OR org_stats.sums_minus(a.sums, s.sums) <> %3$s),
        repaired AS (%4$s)
        SELECT $2, d.org_id, d.status, d.stored, d.actual, $3,
               org_stats.sums_json($4, d.stored_sums), org_stats.sums_json($4, d.actual_sums)
          FROM differ d, (SELECT count(*) FROM repaired) r
         ORDER BY d.org_id, d.status $q$,
        t.table_id,
        org_stats.actual_sql(t),
        CASE WHEN t.sum_columns IS NULL THEN 'NULL'
             ELSE format('array_fill(0::numeric, ARRAY[%s])', 5 * cardinality(t.sum_columns)) END,
        CASE WHEN repair THEN format($r$
            INSERT INTO org_stats.counters AS c (table_id, org_id, status, session, n, sums)
            SELECT %s, d.org_id, d.status, 0, d.actual - d.stored, org_stats.sums_minus(d.actual_sums, d.stored_sums)
              FROM differ d
                ON CONFLICT ON CONSTRAINT counters_key DO UPDATE
               SET n = c.n + excluded.n, sums = org_stats.sums_plus(c.sums, excluded.sums)
            RETURNING 1 $r$, t.table_id)
             ELSE 'SELECT 1 WHERE false' END)
    USING orgs, t.relid, t.name, t.sum_columns;
END
$$;
REVOKE ALL ON FUNCTION org_stats.drift(org_stats.trackings, text[], boolean) FROM PUBLIC;

-- Caller must own the table (directly or through a role), as for the native edition.
CREATE OR REPLACE FUNCTION org_stats.require_owner(tbl regclass, action text) RETURNS void
    LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
BEGIN
    IF NOT pg_has_role((SELECT relowner FROM pg_class WHERE oid = tbl), 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table %', tbl USING ERRCODE = 'insufficient_privilege',
            HINT = format('org_stats.%s() acts only on tables the caller owns, directly or through a role.', action);
    END IF;
END
$$;

-- Refuses a read of `tbl` (`shown` as the caller named it) by a role that may not SELECT from
-- it, or that its row-level security policies apply to: the counts include every row. (The
-- reads test both conditions first and call it only to raise.)
CREATE OR REPLACE FUNCTION org_stats.require_readable(tbl regclass, shown text) RETURNS void
    LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
BEGIN
    IF NOT has_table_privilege(tbl, 'SELECT') THEN
        RAISE EXCEPTION 'permission denied for table %', shown USING ERRCODE = 'insufficient_privilege',
            HINT = 'Counts of a table are visible to roles with SELECT on it; ask its owner to GRANT SELECT.';
    END IF;
    IF row_security_active(tbl) THEN
        RAISE EXCEPTION 'row-level security on table % applies to this role', shown USING ERRCODE = 'insufficient_privilege',
            HINT = 'The counts include rows its policies may hide from this role. The portable edition has no setting to allow them (docs/managed.md); read them as a role the policies do not apply to.';
    END IF;
END
$$;

-- The default tracking of `tbl` (`shown` as the caller named it), if the caller may read it.
CREATE OR REPLACE FUNCTION org_stats.tracking_of(tbl regclass, shown text DEFAULT NULL) RETURNS org_stats.trackings
    LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
DECLARE
    found org_stats.trackings;
BEGIN
    SELECT * INTO found FROM org_stats.trackings t WHERE t.relid = tbl AND t.name IS NULL;
    IF found.table_id IS NULL THEN
        RAISE EXCEPTION 'table % is not tracked by org_stats', COALESCE(shown, tbl::text)
            USING ERRCODE = 'undefined_object',
                  HINT = 'Track it with org_stats.track(); org_stats.tracked_tables lists the tracked tables.';
    END IF;
    IF NOT has_table_privilege(tbl, 'SELECT') OR row_security_active(tbl) THEN
        PERFORM org_stats.require_readable(tbl, COALESCE(shown, tbl::text));
    END IF;
    RETURN found;
END
$$;

-- The tracking a read names: a tracking's name, else a table's default tracking.
CREATE OR REPLACE FUNCTION org_stats.tracking_of(reference text) RETURNS org_stats.trackings
    LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
DECLARE
    found org_stats.trackings;
    tbl   regclass;
BEGIN
    SELECT * INTO found FROM org_stats.trackings t WHERE t.name = reference;
    IF found.table_id IS NOT NULL THEN
        IF NOT has_table_privilege(found.relid, 'SELECT') OR row_security_active(found.relid) THEN
            PERFORM org_stats.require_readable(found.relid, reference);
        END IF;
        RETURN found;
    END IF;
    -- Resolved on the caller's search_path, as a regclass argument would be.
    tbl := pg_catalog.to_regclass(reference);
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'no tracking or table is named "%"', reference USING ERRCODE = 'undefined_object',
            HINT = 'Name a tracking, or a tracked table as a regclass would (schema-qualified if it is not on the search path); org_stats.tracked_tables lists each tracking''s table and name.';
    END IF;
    RETURN org_stats.tracking_of(tbl, reference);
END
$$;

-- ---------------------------------------------------------------------------------------------
-- The SQL surface: the native edition's functions, with the same arguments and results.

CREATE OR REPLACE FUNCTION org_stats.track(tbl regclass, org_column name DEFAULT 'workos_org_id',
                                           status_column name DEFAULT 'status', backfill boolean DEFAULT true,
                                           filter text DEFAULT NULL, sum_columns text[] DEFAULT NULL,
                                           name text DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
DECLARE
    t      org_stats.trackings;
    class  pg_class;
    col    text;
    typ    regtype;
    role   text;
    checked record;
BEGIN
    -- The checks, in the native edition's order, before anything changes.
    PERFORM org_stats.required(arg, what)
       FROM (VALUES (tbl IS NULL, 'tbl'), (array_position(sum_columns, NULL) IS NOT NULL, 'an element of sum_columns'),
                    (status_column IS NULL, 'status_column'), (org_column IS NULL, 'org_column'),
                    (backfill IS NULL, 'backfill')) v(arg, what);
    SELECT * INTO class FROM pg_class c WHERE c.oid = tbl;
    IF class.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is not a table', tbl USING ERRCODE = 'wrong_object_type',
            HINT = 'org_stats tracks plain and partitioned tables; track the table a view or materialized view reads from.';
    END IF;
    IF class.relpersistence <> 'p' THEN
        RAISE EXCEPTION '% is %', tbl, CASE class.relpersistence WHEN 't' THEN 'a temporary table' ELSE 'an unlogged table' END
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'org_stats tracks permanent tables only: temporary tables vanish with their session and unlogged ones are emptied by a crash, while the counters are shared and crash-safe.';
    END IF;
    PERFORM org_stats.require_owner(tbl, 'track');
    IF name IS NULL AND EXISTS (SELECT FROM org_stats.tracked k WHERE k.relid = tbl AND k.name IS NULL) THEN
        RAISE EXCEPTION 'table % is already tracked by org_stats', tbl USING ERRCODE = 'duplicate_object',
            HINT = 'To change its columns, call org_stats.untrack() first, then org_stats.track() again; to track it another way as well, give the new tracking a name => ''...''.';
    END IF;
    IF EXISTS (SELECT FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = tbl AND NOT c.relispartition) THEN
        RAISE EXCEPTION '% has inheritance children', tbl USING ERRCODE = 'feature_not_supported',
            HINT = 'Rows of a child table are read through its parent but fire only the child''s triggers; org_stats tracks plain tables and declarative partitioning.';
    END IF;
    IF class.relispartition THEN
        RAISE EXCEPTION '% is a partition of %', tbl, pg_partition_root(tbl) USING ERRCODE = 'feature_not_supported',
            HINT = 'The portable edition tracks a partitioned table as a whole: a write through its parent fires no statement trigger of the partition. Track the partitioned table, with a filter on the partition key if you need its share.';
    END IF;
    FOREACH col IN ARRAY ARRAY[org_column::text, status_column::text] LOOP
        role := CASE WHEN col = org_column THEN 'org_column' ELSE 'status_column' END;
        typ := org_stats.column_type(tbl, col);
        IF typ IS NULL THEN
            RAISE EXCEPTION 'column "%" of relation % does not exist', col, tbl USING ERRCODE = 'undefined_column',
                HINT = format('Name the column with %s => ''...''; column names are case-sensitive.', role);
        END IF;
        IF NOT (typ = ANY ('{text,varchar,bpchar,name,uuid,int2,int4,int8}'::regtype[])
                OR (SELECT typtype FROM pg_type WHERE oid = typ) = 'e') THEN
            RAISE EXCEPTION 'column "%" of relation % has a type org_stats cannot count by', col, tbl
                USING ERRCODE = 'datatype_mismatch',
                      HINT = 'Supported types: text, varchar, char(n), name, uuid, smallint, integer, bigint, enums, and domains over them.';
        END IF;
        IF NOT COALESCE((SELECT l.collisdeterministic FROM pg_attribute a JOIN pg_collation l ON l.oid = a.attcollation
                          WHERE a.attrelid = tbl AND a.attname = col), true) THEN
            RAISE EXCEPTION 'column "%" of relation % has a nondeterministic collation', col, tbl
                USING ERRCODE = 'feature_not_supported',
                      HINT = 'Such a collation makes different strings equal, so a GROUP BY would merge values the triggers count apart; use a deterministic collation for the column.';
        END IF;
    END LOOP;
    FOREACH col IN ARRAY COALESCE(sum_columns, '{}') LOOP
        IF array_position(sum_columns, col) < array_position(sum_columns, col, array_position(sum_columns, col) + 1) THEN
            RAISE EXCEPTION 'column "%" is named twice in sum_columns', col USING ERRCODE = 'duplicate_column',
                HINT = 'Name each summed column once.';
        END IF;
        typ := org_stats.column_type(tbl, col);
        IF typ IS NULL THEN
            RAISE EXCEPTION 'column "%" of relation % does not exist', col, tbl USING ERRCODE = 'undefined_column',
                HINT = 'Name the summed columns with sum_columns => ARRAY[''...'']; column names are case-sensitive.';
        END IF;
        IF NOT typ = ANY ('{int2,int4,int8,numeric}'::regtype[]) THEN
            RAISE EXCEPTION 'column "%" of relation % has a type org_stats cannot sum', col, tbl
                USING ERRCODE = 'datatype_mismatch',
                      HINT = 'Summed columns must be smallint, integer, bigint or numeric (or domains over them): their sums are kept exactly, without float.';
        END IF;
    END LOOP;
    IF name IS NOT NULL THEN
        IF name = '' OR octet_length(name) > 63 OR strpos(name, '.') > 0 THEN
            RAISE EXCEPTION 'invalid tracking name "%"', name USING ERRCODE = 'invalid_parameter_value',
                HINT = 'A tracking name has 1 to 63 bytes, as an identifier, and no dot (a name with a dot is a schema-qualified table''s); leave name NULL for the table''s default tracking, read by the table''s name.';
        END IF;
        IF to_regclass(name) IS NOT NULL THEN
            RAISE EXCEPTION 'tracking name "%" is the name of a relation', name USING ERRCODE = 'duplicate_object',
                HINT = 'Reads take a tracking''s name or a table''s name, so the two must differ: pick another name, for example the table''s name with what it counts, such as loads_by_lane.';
        END IF;
        IF EXISTS (SELECT FROM org_stats.tracked k WHERE k.name = track.name) THEN
            RAISE EXCEPTION 'tracking "%" already exists', name USING ERRCODE = 'duplicate_object',
                HINT = 'Tracking names are unique; untrack it first, or pick another name.';
        END IF;
    END IF;
    checked := org_stats.checked_filter(tbl, filter);
    IF backfill AND current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'org_stats.track() with backfill must run at READ COMMITTED' USING ERRCODE = 'invalid_transaction_state',
            HINT = 'At REPEATABLE READ the snapshot predates the lock that stops writers, so rows committed in between would be missed. Run it at READ COMMITTED, or use backfill => false and CALL org_stats.backfill().';
    END IF;
    PERFORM org_stats.forget_dropped();
    -- Writers wait from here to the end of the transaction: the backfill below sees every row.
    EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', tbl);
    INSERT INTO org_stats.tracked (relid, org_column, status_column, name, filter, filter_columns, sum_columns)
    VALUES (tbl, org_column, status_column, name, checked.stored, checked.columns, sum_columns);
    SELECT * INTO t FROM org_stats.trackings k WHERE k.table_id = currval(pg_get_serial_sequence('org_stats.tracked', 'table_id'));
    PERFORM org_stats.make_triggers(t);
    IF backfill THEN
        PERFORM org_stats.drift(t, NULL, true);
        UPDATE org_stats.tracked k SET backfilled_at = now() WHERE k.table_id = t.table_id;
    END IF;
END
$$;

-- Forgets the trackings of dropped tables, and their counters.
CREATE OR REPLACE FUNCTION org_stats.forget_dropped() RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
DECLARE
    t org_stats.trackings;
BEGIN
    FOR t IN SELECT * FROM org_stats.trackings k WHERE NOT org_stats.table_exists(k.relid, k.table_id) LOOP
        PERFORM org_stats.drop_triggers(t);
        DELETE FROM org_stats.counters c WHERE c.table_id = t.table_id;
        DELETE FROM org_stats.tracked k WHERE k.table_id = t.table_id;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION org_stats.forget_dropped() FROM PUBLIC;

-- Raises the native edition's error for a NULL argument `what` of track() when `missing`.
CREATE OR REPLACE FUNCTION org_stats.required(missing boolean, what text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF missing THEN
        RAISE EXCEPTION 'org_stats.track(): % must not be NULL', what
            USING ERRCODE = 'null_value_not_allowed', HINT = 'Leave the argument out to take its default.';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION org_stats.untrack_tracking(t org_stats.trackings) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
BEGIN
    IF EXISTS (SELECT FROM pg_class WHERE oid = t.relid) THEN
        PERFORM org_stats.require_owner(t.relid, 'untrack');
    END IF;
    PERFORM org_stats.drop_triggers(t);
    DELETE FROM org_stats.counters c WHERE c.table_id = t.table_id;
    DELETE FROM org_stats.tracked k WHERE k.table_id = t.table_id;
END
$$;

CREATE OR REPLACE FUNCTION org_stats.untrack(tbl regclass) RETURNS void
    LANGUAGE sql STRICT VOLATILE PARALLEL UNSAFE
AS $$ SELECT org_stats.untrack_tracking(org_stats.tracking_of(tbl)) $$;

CREATE OR REPLACE FUNCTION org_stats.untrack(tracking text) RETURNS void
    LANGUAGE sql STRICT VOLATILE PARALLEL UNSAFE
AS $$ SELECT org_stats.untrack_tracking(org_stats.tracking_of(tracking)) $$;

-- The reads are PL/pgSQL: a SQL function's plan is made again at every call of the query that
-- calls it, a PL/pgSQL function's once per session. Each takes its tracking as
-- org_stats.tracking_of() finds it (by table or by name); the shared part is done once, here.
CREATE OR REPLACE FUNCTION org_stats.count_of(t org_stats.trackings, org_id text, only_status boolean, status text)
    RETURNS bigint
    LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
BEGIN
    RETURN (SELECT COALESCE(sum(g.n), 0)::bigint FROM org_stats.groups_of(t, ARRAY[org_id]) g
             WHERE NOT only_status OR g.status IS NOT DISTINCT FROM count_of.status);
END
$$;

CREATE OR REPLACE FUNCTION org_stats.counts_of(t org_stats.trackings, org_id text) RETURNS jsonb
    LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
BEGIN
    RETURN (SELECT COALESCE(jsonb_object_agg(g.status, g.n) FILTER (WHERE g.status IS NOT NULL), '{}')
              FROM org_stats.groups_of(t, ARRAY[org_id]) g);
END
$$;

-- The dashboard's read, first in one statement that finds the tracking, tests the caller's rights
-- and reads the counters (one plan, one PL/pgSQL call: a third of the read's time); when that
-- finds nothing (no rows, not allowed, not tracked, or reads count live), through tracking_of()
-- and groups_of(), which say why or count live.
CREATE OR REPLACE FUNCTION org_stats.count_by_status(tbl regclass, org_id text)
    RETURNS TABLE (status text, count bigint) LANGUAGE plpgsql STRICT STABLE PARALLEL RESTRICTED
AS $$
BEGIN
    RETURN QUERY
    SELECT c.status, sum(c.n)::bigint FROM org_stats.readable_counters c
     WHERE c.relid = tbl AND c.tracking IS NULL AND c.direct AND c.org_id = count_by_status.org_id
     GROUP BY c.status HAVING sum(c.n) <> 0 ORDER BY c.status;
    IF NOT FOUND THEN
        RETURN QUERY SELECT g.status, g.n FROM org_stats.groups_of(org_stats.tracking_of(tbl), ARRAY[org_id]) g
                      ORDER BY g.status;
    END IF;
END
$$;

-- As above; a tracking's name first, else a table's default tracking (as tracking_of(text)).
CREATE OR REPLACE FUNCTION org_stats.count_by_status(tracking text, org_id text)
    RETURNS TABLE (status text, count bigint) LANGUAGE plpgsql STRICT STABLE PARALLEL RESTRICTED
AS $$
BEGIN
    RETURN QUERY
    SELECT c.status, sum(c.n)::bigint FROM org_stats.readable_counters c
     WHERE CASE WHEN EXISTS (SELECT FROM org_stats.trackings k WHERE k.name = count_by_status.tracking)
                THEN c.tracking = count_by_status.tracking
                ELSE c.tracking IS NULL AND c.relid = pg_catalog.to_regclass(count_by_status.tracking) END
       AND c.direct AND c.org_id = count_by_status.org_id
     GROUP BY c.status HAVING sum(c.n) <> 0 ORDER BY c.status;
    IF NOT FOUND THEN
        RETURN QUERY SELECT g.status, g.n FROM org_stats.groups_of(org_stats.tracking_of(tracking), ARRAY[org_id]) g
                      ORDER BY g.status;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION org_stats.count_by_status(tracking text, org_ids text[])
    RETURNS TABLE (org_id text, status text, count bigint)
    LANGUAGE plpgsql STRICT STABLE PARALLEL RESTRICTED
AS $$
BEGIN
    RETURN QUERY
    SELECT g.org_id, g.status, g.n
      FROM org_stats.groups_of(org_stats.tracking_of(tracking), org_ids) g
      JOIN (SELECT o, min(i) AS i FROM unnest(org_ids) WITH ORDINALITY u(o, i) GROUP BY o) k ON k.o = g.org_id
     ORDER BY k.i, g.status;
END
$$;

CREATE OR REPLACE FUNCTION org_stats.count(tbl regclass, org_id text) RETURNS bigint
    LANGUAGE plpgsql STRICT STABLE PARALLEL RESTRICTED
AS $$ BEGIN RETURN org_stats.count_of(org_stats.tracking_of(tbl), org_id, false, NULL); END $$;

CREATE OR REPLACE FUNCTION org_stats.count(tracking text, org_id text) RETURNS bigint
    LANGUAGE plpgsql STRICT STABLE PARALLEL RESTRICTED
AS $$ BEGIN RETURN org_stats.count_of(org_stats.tracking_of(tracking), org_id, false, NULL); END $$;

-- Not strict: a NULL status counts the rows whose status is NULL.
CREATE OR REPLACE FUNCTION org_stats.count(tbl regclass, org_id text, status text) RETURNS bigint
    LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
BEGIN
    RETURN CASE WHEN tbl IS NOT NULL AND org_id IS NOT NULL
                THEN org_stats.count_of(org_stats.tracking_of(tbl), org_id, true, status) END;
END
$$;

CREATE OR REPLACE FUNCTION org_stats.count(tracking text, org_id text, status text) RETURNS bigint
    LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
BEGIN
    RETURN CASE WHEN tracking IS NOT NULL AND org_id IS NOT NULL
                THEN org_stats.count_of(org_stats.tracking_of(tracking), org_id, true, status) END;
END
$$;

CREATE OR REPLACE FUNCTION org_stats.counts(tbl regclass, org_id text) RETURNS jsonb
    LANGUAGE plpgsql STRICT STABLE PARALLEL RESTRICTED
AS $$ BEGIN RETURN org_stats.counts_of(org_stats.tracking_of(tbl), org_id); END $$;

CREATE OR REPLACE FUNCTION org_stats.counts(tracking text, org_id text) RETURNS jsonb
    LANGUAGE plpgsql STRICT STABLE PARALLEL RESTRICTED
AS $$ BEGIN RETURN org_stats.counts_of(org_stats.tracking_of(tracking), org_id); END $$;

CREATE OR REPLACE FUNCTION org_stats.totals(tracking text, org_id text)
    RETURNS TABLE (status text, count bigint, sums jsonb)
    LANGUAGE plpgsql STRICT STABLE PARALLEL RESTRICTED
AS $$
BEGIN
    RETURN QUERY
    SELECT g.status, g.n, org_stats.sums_json(t.sum_columns, g.sums)
      FROM org_stats.tracking_of(tracking) t, org_stats.groups_of(t, ARRAY[org_id]) g
     ORDER BY g.status;
END
$$;

CREATE OR REPLACE FUNCTION org_stats.totals(tracking text, org_ids text[])
    RETURNS TABLE (org_id text, status text, count bigint, sums jsonb)
    LANGUAGE plpgsql STRICT STABLE PARALLEL RESTRICTED
AS $$
BEGIN
    RETURN QUERY
    SELECT g.org_id, g.status, g.n, org_stats.sums_json(t.sum_columns, g.sums)
      FROM org_stats.tracking_of(tracking) t, org_stats.groups_of(t, org_ids) g
      JOIN (SELECT o, min(i) AS i FROM unnest(org_ids) WITH ORDINALITY u(o, i) GROUP BY o) k ON k.o = g.org_id
     ORDER BY k.i, g.status;
END
$$;

CREATE OR REPLACE FUNCTION org_stats.totals(tracking text)
    RETURNS TABLE (status text, count bigint, sums jsonb)
    LANGUAGE plpgsql STRICT STABLE PARALLEL RESTRICTED
AS $$
BEGIN
    RETURN QUERY
    SELECT g.status, sum(g.n)::bigint, org_stats.sums_json(t.sum_columns, org_stats.sums_total(g.sums))
      FROM org_stats.tracking_of(tracking) t, org_stats.groups_of(t, NULL) g
     GROUP BY g.status, t.sum_columns
    HAVING sum(g.n) <> 0
     ORDER BY g.status;
END
$$;

CREATE OR REPLACE FUNCTION org_stats.check_drift(tbl regclass DEFAULT NULL, org_id text DEFAULT NULL)
    RETURNS TABLE (table_name regclass, org_id text, status text, stored bigint, actual bigint, tracking text,
                   stored_sums jsonb, actual_sums jsonb)
    LANGUAGE sql STABLE PARALLEL RESTRICTED
AS $$
    SELECT d.*
      FROM org_stats.trackings t
     CROSS JOIN LATERAL org_stats.drift(t, CASE WHEN check_drift.org_id IS NOT NULL THEN ARRAY[check_drift.org_id] END, false) d
     WHERE (tbl IS NULL OR t.relid = tbl) AND pg_has_role((SELECT relowner FROM pg_class WHERE oid = t.relid), 'USAGE')
     ORDER BY t.table_id, d.org_id, d.status
$$;

CREATE OR REPLACE FUNCTION org_stats.check_drift(tracking text, org_id text DEFAULT NULL)
    RETURNS TABLE (table_name regclass, org_id text, status text, stored bigint, actual bigint, tracking text,
                   stored_sums jsonb, actual_sums jsonb)
    LANGUAGE sql STABLE PARALLEL RESTRICTED
AS $$
    SELECT * FROM org_stats.drift(org_stats.tracking_of(check_drift.tracking),
                                  CASE WHEN check_drift.org_id IS NOT NULL THEN ARRAY[check_drift.org_id] END, false)
$$;

-- Folds the counter rows of sessions that have ended (their advisory lock is free) into the
-- settled rows, and drops settled rows that add nothing. Rows of live sessions are left alone:
-- their sessions may write them, and must never wait or fail for it.
CREATE OR REPLACE FUNCTION org_stats.fold() RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
DECLARE
    gone integer;
BEGIN
    FOR gone IN SELECT DISTINCT c.session FROM org_stats.counters c WHERE c.session <> 0 LOOP
        CONTINUE WHEN NOT pg_try_advisory_xact_lock(1869768563, gone);
        -- A prepared transaction may still hold rows of an ended session: left for later.
        WITH moved AS (DELETE FROM org_stats.counters c
                        WHERE c.ctid = ANY (ARRAY(SELECT l.ctid FROM org_stats.counters l WHERE l.session = gone
                                                     FOR UPDATE SKIP LOCKED))
                       RETURNING c.table_id, c.org_id, c.status, c.n, c.sums)
        INSERT INTO org_stats.counters AS c (table_id, org_id, status, session, n, sums)
        SELECT m.table_id, m.org_id, m.status, 0, sum(m.n), org_stats.sums_total(m.sums)
          FROM moved m GROUP BY m.table_id, m.org_id, m.status
            ON CONFLICT ON CONSTRAINT counters_key DO UPDATE
           SET n = c.n + excluded.n, sums = org_stats.sums_plus(c.sums, excluded.sums);
    END LOOP;
    DELETE FROM org_stats.counters c
     WHERE c.session = 0 AND c.n = 0 AND (c.sums IS NULL OR c.sums = array_fill(0::numeric, ARRAY[cardinality(c.sums)]));
END
$$;
REVOKE ALL ON FUNCTION org_stats.fold() FROM PUBLIC;

-- recalculate() of the trackings in `targets`: repairs their drift, completes a pending backfill
-- (a whole-table repair is one), folds ended sessions' rows, logs the run.
CREATE OR REPLACE FUNCTION org_stats.recalculate_trackings(targets org_stats.trackings[], only_org text, triggered_by text)
    RETURNS TABLE (table_name regclass, org_id text, status text, stored bigint, actual bigint, tracking text,
                   stored_sums jsonb, actual_sums jsonb)
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
DECLARE
    t        org_stats.trackings;
    started  timestamptz := clock_timestamp();
    repaired bigint := 0;
    orgs     bigint := 0;
    changed  bigint;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'org_stats.recalculate() must run at READ COMMITTED' USING ERRCODE = 'invalid_transaction_state',
            HINT = 'Its count must come from a snapshot taken after it has locked out other maintenance of the table; run it in its own READ COMMITTED transaction.';
    END IF;
    -- One recalculation at a time: the settled rows are written by it alone.
    PERFORM pg_advisory_xact_lock(1869768563, 0);
    PERFORM org_stats.forget_dropped();
    FOREACH t IN ARRAY targets LOOP
        CONTINUE WHEN NOT EXISTS (SELECT FROM org_stats.tracked k WHERE k.table_id = t.table_id);
        PERFORM org_stats.require_owner(t.relid, 'recalculate');
        IF t.partitions IS DISTINCT FROM org_stats.partition_tree(t.relid) THEN
            -- Partitions came or went: each table of the tree now gets the triggers (waiting for
            -- its writers), and the repair below, on a later snapshot, counts what they missed.
            PERFORM org_stats.make_triggers(t);
        END IF;
        RETURN QUERY SELECT * FROM org_stats.drift(t, CASE WHEN only_org IS NOT NULL THEN ARRAY[only_org] END, true);
        GET DIAGNOSTICS changed = ROW_COUNT;
        repaired := repaired + changed;
        orgs := orgs + (SELECT count(DISTINCT c.org_id) FROM org_stats.counters c WHERE c.table_id = t.table_id);
        UPDATE org_stats.tracked k
           SET last_recalculated = now(), last_groups_repaired = changed,
               backfilled_at = CASE WHEN only_org IS NULL THEN COALESCE(k.backfilled_at, now()) ELSE k.backfilled_at END
         WHERE k.table_id = t.table_id;
    END LOOP;
    PERFORM org_stats.fold();
    INSERT INTO org_stats.recalculation_log (started_at, finished_at, tables, orgs_checked, groups_repaired, triggered_by)
    VALUES (started, clock_timestamp(), COALESCE(cardinality(targets), 0), orgs, repaired, triggered_by);
END
$$;
REVOKE ALL ON FUNCTION org_stats.recalculate_trackings(org_stats.trackings[], text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION org_stats.recalculate(tbl regclass DEFAULT NULL, org_id text DEFAULT NULL)
    RETURNS TABLE (table_name regclass, org_id text, status text, stored bigint, actual bigint, tracking text,
                   stored_sums jsonb, actual_sums jsonb)
    LANGUAGE sql VOLATILE PARALLEL UNSAFE
AS $$
    SELECT * FROM org_stats.recalculate_trackings(
        ARRAY(SELECT t FROM org_stats.trackings t
               WHERE (tbl IS NULL OR t.relid = tbl)
                 AND EXISTS (SELECT FROM pg_class c WHERE c.oid = t.relid AND pg_has_role(c.relowner, 'USAGE'))
               ORDER BY t.table_id),
        org_id, 'manual')
$$;

CREATE OR REPLACE FUNCTION org_stats.recalculate(tracking text, org_id text DEFAULT NULL)
    RETURNS TABLE (table_name regclass, org_id text, status text, stored bigint, actual bigint, tracking text,
                   stored_sums jsonb, actual_sums jsonb)
    LANGUAGE sql VOLATILE PARALLEL UNSAFE
AS $$ SELECT * FROM org_stats.recalculate_trackings(ARRAY[org_stats.tracking_of(tracking)], org_id, 'manual') $$;

-- Counts the rows a tracking made with backfill => false found, online: a batch of orgs per
-- transaction, each repaired on one snapshot while writers go on. Reads count live until done.
CREATE OR REPLACE PROCEDURE org_stats.backfill(tbl regclass DEFAULT NULL, batch_size integer DEFAULT 500)
    LANGUAGE plpgsql
AS $$
DECLARE
    t    org_stats.trackings;
    orgs text[];
    done integer;
BEGIN
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size must be a positive number of orgs, not %', batch_size
            USING ERRCODE = 'invalid_parameter_value', HINT = 'The default, 500, suits most tables.';
    END IF;
    FOR t IN SELECT * FROM org_stats.trackings k WHERE k.backfilled_at IS NULL AND (tbl IS NULL OR k.relid = tbl)
               ORDER BY k.table_id LOOP
        PERFORM org_stats.require_owner(t.relid, 'backfill');
        PERFORM org_stats.columns_in_place(t.table_id);
        EXECUTE format('SELECT array_agg(DISTINCT o) FROM (SELECT %s AS o FROM %s r WHERE %I IS NOT NULL) x',
                       org_stats.text_sql(t.relid, t.org_column), t.relid, t.org_column) INTO orgs;
        done := 0;
        WHILE done < COALESCE(cardinality(orgs), 0) LOOP
            PERFORM org_stats.drift(t, orgs[done + 1 : done + batch_size], true);
            done := done + batch_size;
            COMMIT;
        END LOOP;
        UPDATE org_stats.tracked k SET backfilled_at = now() WHERE k.table_id = t.table_id;
        COMMIT;
    END LOOP;
END
$$;

CREATE OR REPLACE VIEW org_stats.health AS
SELECT t.relid AS table_name,
       k.orgs_counted,
       k.rows_counted,
       CASE WHEN t.backfilled_at IS NOT NULL THEN 0 END AS orgs_not_backfilled,
       t.backfilled_at,
       t.last_recalculated,
       t.last_groups_repaired,
       t.name AS tracking,
       org_stats.live_reason(k2) AS live_reason
  FROM org_stats.tracked t
  JOIN org_stats.trackings k2 ON k2.table_id = t.table_id
 CROSS JOIN LATERAL (
        SELECT count(*) FILTER (WHERE o.n <> 0) AS orgs_counted, COALESCE(sum(o.n), 0)::bigint AS rows_counted
          FROM (SELECT c.org_id, sum(c.n) AS n FROM org_stats.counters c
                 WHERE c.table_id = t.table_id GROUP BY c.org_id) o) k
 WHERE pg_catalog.has_table_privilege(t.relid, 'SELECT') AND NOT pg_catalog.row_security_active(t.relid);
GRANT SELECT ON org_stats.health TO PUBLIC;

-- Where pg_cron is installed: recalculate() every night (or on `schedule`), as the caller.
CREATE OR REPLACE FUNCTION org_stats.schedule_recalculation(schedule text DEFAULT '0 3 * * *') RETURNS bigint
    LANGUAGE plpgsql STRICT VOLATILE PARALLEL UNSAFE
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in this database' USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Ask your provider to enable pg_cron (CREATE EXTENSION pg_cron), or run SELECT org_stats.recalculate() from your own scheduler.';
    END IF;
    RETURN cron.schedule('org_stats_recalculate', schedule,
                         'SELECT pg_catalog.count(*) FROM org_stats.recalculate_trackings(ARRAY(SELECT t FROM org_stats.trackings t ORDER BY t.table_id), NULL, ''pg_cron'')');
END
$$;

CREATE OR REPLACE FUNCTION org_stats.unschedule_recalculation() RETURNS boolean
    LANGUAGE plpgsql STRICT VOLATILE PARALLEL UNSAFE
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
        RETURN false;
    END IF;
    RETURN EXISTS (SELECT FROM cron.job WHERE jobname = 'org_stats_recalculate')
           AND cron.unschedule('org_stats_recalculate');
END
$$;

-- Over an installed copy: what earlier copies had and this one has not.
DROP FUNCTION IF EXISTS org_stats.cannot_read(text);
DROP FUNCTION IF EXISTS org_stats.statuses_of(org_stats.trackings, text);
DROP FUNCTION IF EXISTS org_stats.text_sql(regclass, name, text);

-- Over an installed copy: each tracking's filter as this version stores it, and its triggers as
-- this version makes them, replaced in place in this transaction, so no write goes uncounted and
-- no trigger function of an earlier copy stays. A partitioned table whose partitions changed
-- since keeps the tree its counts were kept for recorded, so its reads still count live until
-- recalculate() repairs them (see live_reason()).
DO $$
DECLARE
    t org_stats.trackings;
BEGIN
    -- A table with its insert trigger (dropped tables are forgotten by track() and recalculate(),
    -- and another table given a dropped one's oid has none).
    FOR t IN SELECT * FROM org_stats.trackings k
              WHERE EXISTS (SELECT FROM pg_trigger g WHERE g.tgrelid = k.relid AND g.tgname = 'org_stats_insert_' || k.table_id)
              ORDER BY k.table_id LOOP
        PERFORM org_stats.columns_in_place(t.table_id);
        SELECT c.stored, c.columns INTO t.filter, t.filter_columns FROM org_stats.checked_filter(t.relid, t.filter) c;
        UPDATE org_stats.tracked k SET filter = t.filter, filter_columns = t.filter_columns WHERE k.table_id = t.table_id;
        PERFORM org_stats.make_triggers(t);
        UPDATE org_stats.tracked k SET partitions = t.partitions WHERE k.table_id = t.table_id;
    END LOOP;
END
$$;

COMMIT;
