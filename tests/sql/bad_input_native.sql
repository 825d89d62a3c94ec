-- Bad input to what only the native edition has (the portable one has neither): Citus'
-- distribute() without Citus, and trackings by several columns and by time buckets. Each gets a
-- clear error with its SQLSTATE and a HINT, and changes nothing.
\pset format unaligned
\pset fieldsep ' | '
-- org_stats.distribute() needs Citus.
SELECT * FROM error_of($$SELECT org_stats.distribute('loads')$$);

-- Grouping by several columns and by time: group_by empty, too long, repeated, a column of
-- another type or none at all, a status_column that disagrees with it; a bucket that is zero,
-- negative or mixes months with days, or missing; a time column of another type; a time zone
-- for a column without one, or unknown. Reads between two instants need a time column;
-- series() too.
CREATE TABLE trips (workos_org_id text, status text, carrier text, at timestamptz, day date, note jsonb);
SELECT * FROM error_of($$SELECT org_stats.track('trips', group_by => '{}')$$);
SELECT * FROM error_of($$SELECT org_stats.track('trips', group_by => ARRAY['status','carrier','status','carrier','status','carrier','status','carrier','status'])$$);
SELECT * FROM error_of($$SELECT org_stats.track('trips', group_by => ARRAY['status', 'carrier', 'status'])$$);
SELECT * FROM error_of($$SELECT org_stats.track('trips', group_by => ARRAY['status', NULL])$$);
SELECT * FROM error_of($$SELECT org_stats.track('trips', group_by => ARRAY['status', 'note'])$$);
SELECT * FROM error_of($$SELECT org_stats.track('trips', group_by => ARRAY['status', 'shipper'])$$);
SELECT * FROM error_of($$SELECT org_stats.track('trips', status_column => 'carrier', group_by => ARRAY['status'])$$);
SELECT * FROM error_of($$SELECT org_stats.track('trips', time_column => 'at', bucket => '0 hours')$$);
SELECT * FROM error_of($$SELECT org_stats.track('trips', time_column => 'at', bucket => '-1 hour')$$);
SELECT * FROM error_of($$SELECT org_stats.track('trips', time_column => 'at', bucket => '1 day -1 hour')$$);
SELECT * FROM error_of($$SELECT org_stats.track('trips', time_column => 'at', bucket => '1 month 2 days')$$);
SELECT * FROM error_of($$SELECT org_stats.track('trips', time_column => 'at')$$);
SELECT * FROM error_of($$SELECT org_stats.track('trips', bucket => '1 day')$$);
SELECT * FROM error_of($$SELECT org_stats.track('trips', time_column => 'carrier', bucket => '1 day')$$);
SELECT * FROM error_of($$SELECT org_stats.track('trips', time_column => 'arrived_at', bucket => '1 day')$$);
SELECT * FROM error_of($$SELECT org_stats.track('trips', time_column => 'day', bucket => '1 day', bucket_time_zone => 'Europe/Paris')$$);
SELECT * FROM error_of($$SELECT org_stats.track('trips', time_column => 'at', bucket => '1 day', bucket_time_zone => 'Mars/Olympus')$$);
SELECT org_stats.track('trips', group_by => ARRAY['status', 'carrier']);
SELECT * FROM error_of($$SELECT * FROM org_stats.groups('trips', 'acme', since => now())$$);
SELECT * FROM error_of($$SELECT * FROM org_stats.series('trips', 'acme', NULL, NULL)$$);
SELECT org_stats.untrack('trips');
DROP TABLE trips;
\pset format aligned
