-- org_stats storage. Users read it through the views and functions below; only the extension's
-- owner writes it (the triggers write as that owner, see src/security.rs).

-- One row per tracked table. table_id, not the table's OID, names a table everywhere else, so
-- counters and trigger arguments survive dump/restore (which gives tables new OIDs) and renames.
CREATE SEQUENCE org_stats.tracked_table_id_seq AS integer;
CREATE TABLE org_stats.tracked (
    table_id      integer     NOT NULL DEFAULT pg_catalog.nextval('org_stats.tracked_table_id_seq') PRIMARY KEY,
    relid         regclass    NOT NULL UNIQUE,
    org_column    name        NOT NULL,
    status_column name        NOT NULL,
    tracked_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    backfilled_at timestamptz
);
ALTER SEQUENCE org_stats.tracked_table_id_seq OWNED BY org_stats.tracked.table_id;

-- The counters, keyed by org first (so they can be co-located with tenant data on Citus).
-- A (table, org, status) count is the sum of its slots: each backend adds to the slot equal to
-- its backend id, so concurrent writers never wait on one another's counter rows; slot 0
-- belongs to backfill and recalculation. A NULL status is a status of its own, hence
-- NULLS NOT DISTINCT.
CREATE TABLE org_stats.counters (
    org_id   text    NOT NULL,
    table_id integer NOT NULL,
    status   text,
    slot     integer NOT NULL,
    n        bigint  NOT NULL,
    CONSTRAINT counters_key UNIQUE NULLS NOT DISTINCT (org_id, table_id, status, slot)
) WITH (fillfactor = 50);

-- Per (table, org) bookkeeping of maintenance runs.
CREATE TABLE org_stats.org_state (
    org_id            text        NOT NULL,
    table_id          integer     NOT NULL,
    last_recalculated timestamptz,
    PRIMARY KEY (org_id, table_id)
);

SELECT pg_catalog.pg_extension_config_dump('org_stats.tracked', '');
SELECT pg_catalog.pg_extension_config_dump('org_stats.tracked_table_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('org_stats.counters', '');
SELECT pg_catalog.pg_extension_config_dump('org_stats.org_state', '');

REVOKE ALL ON org_stats.tracked, org_stats.counters, org_stats.org_state, org_stats.tracked_table_id_seq FROM PUBLIC;

CREATE VIEW org_stats.tracked_tables AS
SELECT t.relid AS table_name, t.org_column, t.status_column, t.tracked_at, t.backfilled_at
  FROM org_stats.tracked t;

-- One row per non-zero (table, org, status), for the tables the querying role may SELECT from.
CREATE VIEW org_stats.organization_stats AS
SELECT t.relid AS table_name, c.org_id, c.status,
       pg_catalog.sum(c.n)::bigint AS count, s.last_recalculated
  FROM org_stats.counters c
  JOIN org_stats.tracked t ON t.table_id OPERATOR(pg_catalog.=) c.table_id
  LEFT JOIN org_stats.org_state s
         ON s.org_id OPERATOR(pg_catalog.=) c.org_id AND s.table_id OPERATOR(pg_catalog.=) c.table_id
 WHERE pg_catalog.has_table_privilege(t.relid, 'SELECT')
 GROUP BY t.relid, c.org_id, c.status, s.last_recalculated
HAVING pg_catalog.sum(c.n) OPERATOR(pg_catalog.<>) 0;

GRANT USAGE ON SCHEMA org_stats TO PUBLIC;
GRANT SELECT ON org_stats.tracked_tables, org_stats.organization_stats TO PUBLIC;
