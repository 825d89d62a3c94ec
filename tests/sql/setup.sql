-- Installs the native edition, then the oracle and the tables every other test uses
-- (pg_test.sh runs pg_regress from the repository's root, which \i paths start from).
CREATE EXTENSION org_stats;
SELECT extname, extversion FROM pg_extension WHERE extname = 'org_stats';
\i tests/sql/oracle.sql
