-- org_stats 0.2.0 -> 0.3.0 (applied by ALTER EXTENSION org_stats UPDATE).
-- Change notifications (src/live.rs): a per-tracking switch and secret channel, and the functions
-- that turn them on, subscribe and catch up. Counts and trackings carry over untouched.

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
