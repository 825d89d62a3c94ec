-- count_by_status() returns its rows in one call (materialize mode), which #[pg_extern] cannot
-- declare; the other reads are declared by pgrx from src/reads.rs.
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
