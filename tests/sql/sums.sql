-- Sums per (org, status) of integer and numeric columns, exact: NULLs ignored as sum() ignores
-- them (a group of NULLs sums to NULL), no overflow past bigint, numeric's NaN and infinities
-- counted so that deleting them restores the finite sum. totals() returns counts and sums
-- together and equals SELECT status, count(*), sum(col) ... GROUP BY.
CREATE TABLE ledger (id serial PRIMARY KEY, workos_org_id text NOT NULL, status text NOT NULL,
                     amount_cents bigint, amount numeric(12, 2), qty smallint);
INSERT INTO ledger (workos_org_id, status, amount_cents, amount, qty)
SELECT 'org' || (i % 3), (ARRAY['DRAFT', 'SENT', 'PAID'])[1 + i % 3], i * 100, i * 1.25, i % 7
  FROM generate_series(1, 90) i;
INSERT INTO ledger (workos_org_id, status, amount_cents, amount) VALUES ('org0', 'VOID', NULL, NULL);
SELECT org_stats.track('ledger', sum_columns => ARRAY['amount_cents', 'amount', 'qty']);
SELECT * FROM org_stats.totals('ledger', 'org0');
SELECT * FROM totals_mismatches('ledger', 'ledger', sum_col => 'amount_cents');
SELECT * FROM totals_mismatches('ledger', 'ledger', sum_col => 'amount');
SELECT * FROM totals_mismatches('ledger', 'ledger', sum_col => 'qty');

-- Writes move the sums: updates of the summed columns alone, status changes, org moves,
-- deletes, NULLs, COPY.
UPDATE ledger SET amount_cents = amount_cents + 1 WHERE id % 5 = 0;
UPDATE ledger SET amount = NULL WHERE id % 6 = 0;
UPDATE ledger SET status = 'PAID' WHERE status = 'SENT' AND id % 2 = 0;
UPDATE ledger SET workos_org_id = 'org7' WHERE id IN (3, 4);
DELETE FROM ledger WHERE id % 11 = 0;
COPY ledger (workos_org_id, status, amount_cents, amount, qty) FROM stdin;
org7	PAID	5	0.05	1
org7	PAID	\N	\N	\N
\.
SELECT * FROM totals_mismatches('ledger', 'ledger', sum_col => 'amount_cents');
SELECT * FROM totals_mismatches('ledger', 'ledger', sum_col => 'amount');
SELECT * FROM totals_mismatches('ledger', 'ledger', sum_col => 'qty');

-- A group whose values are all NULL sums to NULL, as sum() does.
SELECT status, count, sums FROM org_stats.totals('ledger', 'org0') WHERE status = 'VOID';

-- Past bigint: three values near its maximum sum exactly, in numeric.
CREATE TABLE big_sums (id serial PRIMARY KEY, workos_org_id text, status text, v bigint, x numeric);
SELECT org_stats.track('big_sums', sum_columns => ARRAY['v', 'x']);
INSERT INTO big_sums (workos_org_id, status, v, x)
VALUES ('acme', 'Open', 9223372036854775807, 123456789012345678901234567890.123456789),
       ('acme', 'Open', 9223372036854775807, -0.000000001),
       ('acme', 'Open', 9223372036854775806, 1e30);
SELECT status, count, sums FROM org_stats.totals('big_sums', 'acme');
SELECT sum(v) AS oracle_v, sum(x) AS oracle_x FROM big_sums;
SELECT * FROM totals_mismatches('big_sums', 'big_sums', sum_col => 'v');
SELECT * FROM totals_mismatches('big_sums', 'big_sums', sum_col => 'x');

-- NaN and the infinities: the sum is what sum() says, and deleting them brings the finite sum back.
INSERT INTO big_sums (workos_org_id, status, x) VALUES ('acme', 'Open', 'Infinity');
SELECT sums ->> 'x' AS with_infinity FROM org_stats.totals('big_sums', 'acme');
INSERT INTO big_sums (workos_org_id, status, x) VALUES ('acme', 'Open', '-Infinity');
SELECT sums ->> 'x' AS with_both_infinities, (SELECT sum(x) FROM big_sums)::text AS oracle FROM org_stats.totals('big_sums', 'acme');
DELETE FROM big_sums WHERE x = 'Infinity';
SELECT sums ->> 'x' AS with_minus_infinity FROM org_stats.totals('big_sums', 'acme');
INSERT INTO big_sums (workos_org_id, status, x) VALUES ('acme', 'Open', 'NaN');
SELECT sums ->> 'x' AS with_nan FROM org_stats.totals('big_sums', 'acme');
DELETE FROM big_sums WHERE x IN ('NaN', '-Infinity');
SELECT * FROM totals_mismatches('big_sums', 'big_sums', sum_col => 'x');

-- Drift in sums is reported and repaired like drift in counts.
UPDATE org_stats.counters SET sums[1] = sums[1] + 7
 WHERE table_id = (SELECT t.table_id FROM org_stats.tracked t WHERE t.relid = 'big_sums'::regclass);
SELECT org_id, status, stored, actual, stored_sums ->> 'v' AS stored_v, actual_sums ->> 'v' AS actual_v
  FROM org_stats.check_drift('big_sums');
SELECT count(*) AS repaired FROM org_stats.recalculate('big_sums');
SELECT * FROM totals_mismatches('big_sums', 'big_sums', sum_col => 'v');

-- Columns that cannot be summed exactly, unknown or repeated ones are refused.
\pset format unaligned
\pset fieldsep ' | '
CREATE TABLE floats (workos_org_id text, status text, f double precision, t text);
SELECT * FROM error_of($$SELECT org_stats.track('floats', sum_columns => ARRAY['f'])$$);
SELECT * FROM error_of($$SELECT org_stats.track('floats', sum_columns => ARRAY['t'])$$);
SELECT * FROM error_of($$SELECT org_stats.track('floats', sum_columns => ARRAY['nope'])$$);
SELECT * FROM error_of($$SELECT org_stats.track('ledger', sum_columns => ARRAY['qty', 'qty'], name => 'ledger_twice')$$);
\pset format aligned

SELECT org_stats.untrack('ledger');
SELECT org_stats.untrack('big_sums');
DROP TABLE ledger, big_sums, floats;
