-- Installs the portable edition as this role, an ordinary one (no superuser, in a cluster that
-- does not load org_stats' library), then the oracle and the tables every other test uses
-- (pg_test.sh runs pg_regress from the repository's root, which \i paths start from).
SELECT rolsuper FROM pg_roles WHERE rolname = current_user;
SELECT count(*) AS libraries FROM pg_settings WHERE name = 'shared_preload_libraries' AND setting LIKE '%org_stats%';
\set ECHO none
\i portable/org_stats.sql
\set ECHO all
SELECT p.proname, p.prosecdef FROM pg_proc p
 WHERE p.pronamespace = 'org_stats'::regnamespace AND p.proname = 'count_by_status' ORDER BY 1, 2;
\i tests/sql/oracle.sql
