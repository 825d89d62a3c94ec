-- schedule_recalculation() needs pg_cron in this database; without it the error says how to get
-- it. (The pg_cron job itself is tested end to end in tests/integration/tests/pg_cron_schedule.rs.)
\pset format unaligned
\pset fieldsep ' | '
SELECT * FROM error_of($$SELECT org_stats.schedule_recalculation()$$);
SELECT * FROM error_of($$SELECT org_stats.schedule_recalculation('*/5 * * * *')$$);
SELECT * FROM error_of($$SELECT org_stats.unschedule_recalculation()$$);
\pset format aligned
