-- DROP EXTENSION org_stats CASCADE takes the triggers with it and leaves the tracked tables
-- intact and writable; without CASCADE it refuses while tables are tracked.
CREATE TABLE survivor (workos_org_id text, status text);
INSERT INTO survivor VALUES ('acme', 'Open');
SELECT org_stats.track('survivor');
\set VERBOSITY terse
DROP EXTENSION org_stats;
\set VERBOSITY default
SET client_min_messages = warning;
DROP EXTENSION org_stats CASCADE;
RESET client_min_messages;
SELECT count(*) AS org_stats_triggers FROM pg_trigger WHERE tgname LIKE 'org_stats%';
INSERT INTO survivor VALUES ('acme', 'Closed');
UPDATE loads SET status = 'Open' WHERE id = (SELECT min(id) FROM loads);
SELECT status, count(*) FROM survivor GROUP BY 1 ORDER BY 1;
-- And it can be installed again.
CREATE EXTENSION org_stats;
SELECT org_stats.track('survivor');
SELECT * FROM org_stats.count_by_status('survivor', 'acme');
