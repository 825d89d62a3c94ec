-- org_stats storage. Users read it through the views and functions below; only the extension's
-- owner writes it (the triggers write as that owner, see src/security.rs).

-- One row per tracking: a table counted per (org, status), all its rows or those its filter
-- selects, with the sums of some columns. table_id, not the table's OID, names a tracking
-- everywhere else, so counters and trigger arguments survive dump/restore (which gives tables
-- new OIDs) and renames. A table has at most one default tracking (name NULL), read by the
-- table's name, and any number of named ones.
CREATE SEQUENCE org_stats.tracked_table_id_seq AS integer;
CREATE TABLE org_stats.tracked (
    table_id      integer     NOT NULL DEFAULT pg_catalog.nextval('org_stats.tracked_table_id_seq') PRIMARY KEY,
    relid         regclass    NOT NULL,
    org_column    name        NOT NULL,
    status_column name        NOT NULL,
    tracked_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- Set once every org's pre-existing rows are counted (track() with backfill, a finished
    -- backfill() or a whole-table recalculate()); until then see org_state.backfilled_at.
    backfilled_at timestamptz,
    last_recalculated    timestamptz,
    last_groups_repaired bigint,
    -- Since 0.2.0 (added at the end, as the upgrade adds them): the tracking's name (NULL: the
    -- default tracking), the filter as stored (see src/filter.rs), the summed columns and the
    -- columns the filter reads.
    name           text CONSTRAINT tracked_name_key UNIQUE,
    filter         text,
    sum_columns    text[],
    filter_columns text[],
    -- Since 0.3.0: whether the tracking sends change notifications, on its secret channel
    -- (src/live.rs).
    notify         boolean NOT NULL DEFAULT false,
    channel        text,
    -- Since 0.5.0: where its counts are kept (src/citus.rs): NULL for org_stats.counters, the
    -- name of the distributed counters table next to its shards on Citus, or '' for nowhere (Citus
    -- keeps its rows where no counters can be next to them; its reads count them live).
    counted_in     text,
    -- Since 0.5.0: a tracking may group by more than its status column (src/values/dimensions.rs):
    -- the other grouping columns, in order, and a time column whose values are bucketed (a
    -- fixed interval or whole months, cut in bucket_time_zone's local time or else UTC). Its
    -- counters' status is then an encoded group key.
    group_columns    text[],
    time_column      name,
    bucket           interval,
    bucket_time_zone text
);
CREATE UNIQUE INDEX tracked_relid_key ON org_stats.tracked (relid) WHERE name IS NULL;
ALTER SEQUENCE org_stats.tracked_table_id_seq OWNED BY org_stats.tracked.table_id;

-- The counters, keyed by org first (so they can be co-located with tenant data on Citus).
-- A (table, org, status) count is the sum of its rows; a writer adds to a row no other
-- transaction holds, or adds a row in a slot no concurrent writer can pick (see src/pool.rs), so
-- writers never wait on one another's counter rows. A NULL status is a status of its own, hence
-- NULLS NOT DISTINCT.
CREATE TABLE org_stats.counters (
    org_id   text    NOT NULL,
    table_id integer NOT NULL,
    status   text,
    slot     integer NOT NULL,
    n        bigint  NOT NULL,
    CONSTRAINT counters_key UNIQUE NULLS NOT DISTINCT (org_id, table_id, status, slot),
    -- Since 0.2.0: the sums of a tracking's summed columns, five numbers each (see src/sums.rs).
    sums     numeric[]
) WITH (fillfactor = 50);
-- A tracking's rows of every org, for totals across orgs.
CREATE INDEX counters_by_table ON org_stats.counters (table_id, status);

-- Per (table, org) bookkeeping of maintenance: when the org was last recalculated, and when its
-- counters became authoritative (before that, reads of a table still being backfilled count live).
CREATE TABLE org_stats.org_state (
    org_id            text        NOT NULL,
    table_id          integer     NOT NULL,
    last_recalculated timestamptz,
    backfilled_at     timestamptz,
    PRIMARY KEY (org_id, table_id)
);

-- One row per recalculate() run.
CREATE SEQUENCE org_stats.recalculation_log_id_seq;
CREATE TABLE org_stats.recalculation_log (
    id              bigint      NOT NULL DEFAULT pg_catalog.nextval('org_stats.recalculation_log_id_seq') PRIMARY KEY,
    started_at      timestamptz NOT NULL,
    finished_at     timestamptz NOT NULL,
    tables          integer     NOT NULL,
    orgs_checked    bigint      NOT NULL,
    groups_repaired bigint      NOT NULL,
    triggered_by    text        NOT NULL
);

-- Progress of backfill() per table, committed with every batch so other sessions can watch it.
CREATE TABLE org_stats.backfill_state (
    table_id    integer PRIMARY KEY,
    orgs_total  bigint      NOT NULL,
    orgs_done   bigint      NOT NULL DEFAULT 0,
    rows_done   bigint      NOT NULL DEFAULT 0,
    started_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    finished_at timestamptz
);

SELECT pg_catalog.pg_extension_config_dump('org_stats.tracked', '');
SELECT pg_catalog.pg_extension_config_dump('org_stats.tracked_table_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('org_stats.counters', '');
SELECT pg_catalog.pg_extension_config_dump('org_stats.org_state', '');
ALTER SEQUENCE org_stats.recalculation_log_id_seq OWNED BY org_stats.recalculation_log.id;
SELECT pg_catalog.pg_extension_config_dump('org_stats.recalculation_log', '');
SELECT pg_catalog.pg_extension_config_dump('org_stats.recalculation_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('org_stats.backfill_state', '');

REVOKE ALL ON org_stats.tracked, org_stats.counters, org_stats.org_state, org_stats.tracked_table_id_seq,
    org_stats.recalculation_log, org_stats.recalculation_log_id_seq, org_stats.backfill_state FROM PUBLIC;

CREATE VIEW org_stats.tracked_tables AS
SELECT t.relid AS table_name, t.org_column, t.status_column, t.tracked_at, t.backfilled_at,
       t.name AS tracking, t.filter, t.sum_columns, t.notify,
       -- Since 0.5.0: every grouping column, the status column first, and the time bucket.
       ARRAY[t.status_column::pg_catalog.text] OPERATOR(pg_catalog.||) COALESCE(t.group_columns, '{}') AS group_by,
       t.time_column, t.bucket, t.bucket_time_zone
  FROM org_stats.tracked t;

-- Backfill progress of each tracking that has had one.
CREATE VIEW org_stats.backfill_progress AS
SELECT t.relid AS table_name, b.orgs_done, b.orgs_total, b.rows_done,
       pg_catalog.round(100.0 * b.orgs_done / GREATEST(b.orgs_total, 1), 1) AS percent,
       b.started_at, b.updated_at, b.finished_at, t.name AS tracking
  FROM org_stats.backfill_state b JOIN org_stats.tracked t ON t.table_id OPERATOR(pg_catalog.=) b.table_id;

GRANT USAGE ON SCHEMA org_stats TO PUBLIC;
GRANT SELECT ON org_stats.tracked_tables TO PUBLIC;
