-- The oracle every test compares against (a live GROUP BY on the base table, in the same
-- statement, so the same snapshot, as the counts under test) and the freight app's tables;
-- included by setup.sql (native edition) and setup_portable.sql (portable edition).
-- Every (org, status) where org_stats.count_by_status() disagrees with a live GROUP BY.
-- The orgs checked are those with rows plus those org_stats still has counts for.
CREATE FUNCTION mismatches(tbl regclass, org_col name DEFAULT 'workos_org_id', status_col name DEFAULT 'status')
RETURNS TABLE (org_id text, status text, counted bigint, actual bigint)
LANGUAGE plpgsql AS $fn$
BEGIN
    RETURN QUERY EXECUTE format($q$
        WITH actual AS (
            SELECT %1$I::text AS org_id, %2$I::text AS status, count(*) AS n
              FROM %3$s WHERE %1$I IS NOT NULL GROUP BY 1, 2),
        orgs AS (
            SELECT a.org_id FROM actual a
            UNION SELECT s.org_id FROM org_stats.organization_stats s WHERE s.table_name = %3$L::regclass),
        counted AS (
            SELECT o.org_id, c.status, c.count FROM orgs o, org_stats.count_by_status(%3$L, o.org_id) c)
        SELECT coalesce(a.org_id, c.org_id), coalesce(a.status, c.status), c.count, a.n
          FROM actual a FULL JOIN counted c
            ON a.org_id = c.org_id AND a.status IS NOT DISTINCT FROM c.status
         WHERE a.n IS DISTINCT FROM c.count
         ORDER BY 1, 2 $q$, org_col, status_col, tbl);
END
$fn$;

-- Every (org, status) where org_stats.totals() of `tracking` disagrees with a live GROUP BY of
-- the rows of `tbl` satisfying `filter`: the count and, if `sum_col` is given, the sum() of that
-- column. The orgs checked are those with rows plus those any tracking of `tbl` has counts for.
CREATE FUNCTION totals_mismatches(tracking text, tbl regclass, filter text DEFAULT 'true',
                                  sum_col name DEFAULT NULL, org_col name DEFAULT 'workos_org_id',
                                  status_col name DEFAULT 'status')
RETURNS TABLE (org_id text, status text, counted bigint, actual bigint, counted_sum numeric, actual_sum numeric)
LANGUAGE plpgsql AS $fn$
BEGIN
    RETURN QUERY EXECUTE format($q$
        WITH actual AS (
            SELECT %1$I::text AS org_id, %2$I::text AS status, count(*) AS n, %5$s AS s
              FROM %3$s WHERE %1$I IS NOT NULL AND (%4$s) GROUP BY 1, 2),
        orgs AS (
            SELECT t.%1$I::text AS org_id FROM %3$s t WHERE t.%1$I IS NOT NULL
            UNION SELECT s.org_id FROM org_stats.organization_stats s WHERE s.table_name = %3$L::regclass),
        counted AS (
            SELECT o.org_id, t.status, t.count, (t.sums ->> %6$L)::numeric AS s
              FROM orgs o, org_stats.totals(%7$L, o.org_id) t)
        SELECT coalesce(a.org_id, c.org_id), coalesce(a.status, c.status), c.count, a.n, c.s, a.s
          FROM actual a FULL JOIN counted c
            ON a.org_id = c.org_id AND a.status IS NOT DISTINCT FROM c.status
         WHERE a.n IS DISTINCT FROM c.count OR a.s IS DISTINCT FROM c.s
         ORDER BY 1, 2 $q$,
        org_col, status_col, tbl, filter,
        CASE WHEN sum_col IS NULL THEN 'NULL::numeric' ELSE format('sum(%I)::numeric', sum_col) END,
        sum_col, tracking);
END
$fn$;

-- Every (org, bucket, key) where org_stats.groups() (or, given `bucket_sql`, series()) of
-- `tracking` disagrees with a live GROUP BY of the rows of `tbl` satisfying `filter` whose
-- `time_col` is in [since, until): the count and, if `sum_col` is given, the sum() of that
-- column. `key_sql` is the key as SQL (ARRAY[a::text, b::text]); `bucket_sql` the start of a
-- row's bucket (date_bin(...), date_trunc(...)). The orgs checked are those with rows plus those
-- the tracking has counters for.
CREATE FUNCTION groups_mismatches(tracking text, tbl regclass, key_sql text, time_col name DEFAULT NULL,
                                  since timestamptz DEFAULT NULL, until timestamptz DEFAULT NULL,
                                  filter text DEFAULT 'true', sum_col name DEFAULT NULL,
                                  bucket_sql text DEFAULT NULL, org_col name DEFAULT 'workos_org_id')
RETURNS TABLE (org_id text, bucket timestamptz, key text[], counted bigint, actual bigint,
               counted_sum numeric, actual_sum numeric)
LANGUAGE plpgsql AS $fn$
BEGIN
    RETURN QUERY EXECUTE format($q$
        WITH actual AS (
            SELECT %1$I::text AS org_id, (%2$s)::timestamptz AS bucket, %3$s AS key, count(*) AS n, %4$s AS s
              FROM %5$s
             WHERE %1$I IS NOT NULL AND (%6$s)
               AND ($1 IS NULL OR %7$s >= $1) AND ($2 IS NULL OR %7$s < $2)
             GROUP BY 1, 2, 3),
        orgs AS (
            SELECT t.%1$I::text AS org_id FROM %5$s t WHERE t.%1$I IS NOT NULL
            UNION SELECT c.org_id FROM org_stats.counters c JOIN org_stats.tracked k USING (table_id)
                   WHERE k.name = %8$L OR (k.name IS NULL AND k.relid = %5$L::regclass AND %5$L = %8$L)),
        counted AS (
            SELECT o.org_id, g.bucket, g.key, g.count, (g.sums ->> %9$L)::numeric AS s
              FROM orgs o, LATERAL (%10$s) g)
        SELECT coalesce(a.org_id, c.org_id), coalesce(a.bucket, c.bucket), coalesce(a.key, c.key),
               c.count, a.n, c.s, a.s
          FROM actual a FULL JOIN counted c
            ON a.org_id = c.org_id AND a.bucket IS NOT DISTINCT FROM c.bucket AND a.key IS NOT DISTINCT FROM c.key
         WHERE a.n IS DISTINCT FROM c.count OR a.s IS DISTINCT FROM c.s
         ORDER BY 1, 2, 3 $q$,
        org_col, coalesce(bucket_sql, 'NULL'), key_sql,
        CASE WHEN sum_col IS NULL THEN 'NULL::numeric' ELSE format('sum(%I)::numeric', sum_col) END,
        tbl, filter, coalesce(quote_ident(time_col), 'NULL::timestamptz'), tracking, sum_col,
        CASE WHEN bucket_sql IS NULL
             THEN format('SELECT NULL::timestamptz AS bucket, r.key, r.count, r.sums
                            FROM org_stats.groups(%L, o.org_id, $1, $2) r', tracking)
             ELSE format('SELECT r.bucket, r.key, r.count, r.sums
                            FROM org_stats.series(%L, o.org_id, $1, $2) r', tracking) END)
    USING since, until;
END
$fn$;

-- The freight app's tables.
CREATE TYPE load_status AS ENUM ('Open', 'Dispatched', 'Delivered', 'Cancelled');
CREATE TABLE loads (
    id            bigserial PRIMARY KEY,
    workos_org_id text,
    status        load_status,
    reference     text
);
CREATE TABLE invoices (
    id            bigserial PRIMARY KEY,
    workos_org_id text NOT NULL,
    status        text NOT NULL DEFAULT 'DRAFT',
    amount        numeric
);

-- Runs a statement expected to fail and shows its SQLSTATE, message and hint (the statement runs
-- in a subtransaction, so whatever it did is rolled back with it).
CREATE FUNCTION error_of(stmt text, OUT code text, OUT message text, OUT hint text)
LANGUAGE plpgsql AS $fn$
BEGIN
    EXECUTE stmt;
    message := 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, message = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
END
$fn$;

-- The oracle itself catches a wrong count: corrupt one counter directly (as their owner) and it
-- reports exactly that group; put it back and it reports nothing.
CREATE TABLE oracle_check (workos_org_id text, status text);
INSERT INTO oracle_check VALUES ('acme', 'Open'), ('acme', 'Open'), ('acme', 'Closed');
SELECT org_stats.track('oracle_check');
UPDATE org_stats.counters SET n = n + 5 WHERE org_id = 'acme' AND status = 'Open';
SELECT * FROM mismatches('oracle_check');
UPDATE org_stats.counters SET n = n - 5 WHERE org_id = 'acme' AND status = 'Open';
SELECT * FROM mismatches('oracle_check');
SELECT org_stats.untrack('oracle_check');
DROP TABLE oracle_check;
