-- org_stats 0.3.0 -> 0.4.0 (applied by ALTER EXTENSION org_stats UPDATE).
-- Citus (src/citus.rs): distribute() turns a tracked table into a distributed one and carries its
-- counts onto the shards. Filters and summed columns of distributed trackings need no change of
-- the SQL surface. Counts and trackings carry over untouched.

CREATE  FUNCTION "distribute"(
	"tbl" regclass, /* Option < RegClass > */
	"shard_count" INT DEFAULT NULL, /* Option < i32 > */
	"colocate_with" TEXT DEFAULT 'default' /* Option < & str > */
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'distribute_wrapper';
