-- Org and status columns of any type with a text form: counted under exactly `value::text`.
CREATE TYPE mood AS ENUM ('happy', 'sad');
CREATE DOMAIN org_code AS varchar(8);
CREATE TABLE typed (
    org_uuid uuid, org_int integer, org_big bigint, org_char char(6), org_domain org_code,
    st_enum mood, st_text text, st_small smallint, flag boolean, seen timestamptz
);
INSERT INTO typed VALUES
    ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 7, 9007199254740993, 'ab', 'acme', 'happy', 'x', 1, true, now()),
    ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 7, 9007199254740993, 'ab', 'acme', 'sad', 'y', 2, false, now()),
    ('b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', -3, 1, 'cd  ', 'globex', NULL, NULL, NULL, NULL, now());

SELECT org_stats.track('typed', 'org_uuid', 'st_enum');
SELECT * FROM org_stats.count_by_status('typed', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
SELECT org_stats.untrack('typed');

SELECT org_stats.track('typed', 'org_int', 'st_small');
SELECT * FROM org_stats.count_by_status('typed', '-3');
SELECT count(*) AS mismatches FROM mismatches('typed', 'org_int', 'st_small');
SELECT org_stats.untrack('typed');

SELECT org_stats.track('typed', 'org_char', 'st_text');
-- char(n) counts without its padding, as ::text does.
INSERT INTO typed (org_char, st_text) VALUES ('cd', 'z');
SELECT * FROM org_stats.count_by_status('typed', 'cd');
SELECT count(*) AS mismatches FROM mismatches('typed', 'org_char', 'st_text');
SELECT org_stats.untrack('typed');

SELECT org_stats.track('typed', 'org_domain', 'st_enum');
SELECT count(*) AS mismatches FROM mismatches('typed', 'org_domain', 'st_enum');
SELECT org_stats.untrack('typed');

SELECT org_stats.track('typed', 'org_big', 'st_text');
SELECT * FROM org_stats.count_by_status('typed', '9007199254740993');
SELECT org_stats.untrack('typed');

-- Types whose cast to text differs from their output (boolean: 'true' vs 't') or that are no
-- identifier (timestamptz) are refused.
\pset format unaligned
\pset fieldsep ' | '
SELECT * FROM error_of($$SELECT org_stats.track('typed', 'org_uuid', 'flag')$$);
SELECT * FROM error_of($$SELECT org_stats.track('typed', 'seen', 'st_text')$$);
\pset format aligned
SELECT count(*) AS tracked FROM org_stats.tracked_tables WHERE table_name = 'typed'::regclass;
DROP TABLE typed;
