-- Only track() (running as the extension owner) may attach the trigger functions to a table:
-- a role that could create its own trigger with them could forge another table's counts.
REVOKE EXECUTE ON FUNCTION org_stats.org_stats_row_trigger(), org_stats.org_stats_flush_trigger(),
    org_stats.org_stats_truncate_trigger() FROM PUBLIC;
