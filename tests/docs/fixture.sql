-- The tables the examples of README.md and docs/ run against (tests/docs.py loads this into a
-- fresh database for each document): a freight app's loads and invoices, a few orgs.
CREATE TABLE loads (
    id            bigserial PRIMARY KEY,
    workos_org_id text,
    status        text,
    deleted_at    timestamptz
);
INSERT INTO loads (workos_org_id, status)
SELECT v.org, v.status
  FROM (VALUES ('org_acme', 'Open', 12), ('org_acme', 'Delivered', 3), ('org_acme', 'Cancelled', 1),
               ('org_globex', 'Open', 5), ('org_globex', 'Delivered', 8)) AS v(org, status, n),
       generate_series(1, v.n);
-- Soft-deleted: two of org_acme's open loads.
UPDATE loads SET deleted_at = '2026-11-30 12:00+00' WHERE id IN (1, 2);
CREATE INDEX ON loads (workos_org_id);

CREATE TABLE invoices (
    id            bigserial PRIMARY KEY,
    workos_org_id text,
    status        text,
    amount_cents  bigint
);
INSERT INTO invoices (workos_org_id, status, amount_cents)
SELECT v.org, v.status, v.cents * i
  FROM (VALUES ('org_acme', 'DRAFT', 4, 12500), ('org_acme', 'PAID', 6, 9900), ('org_acme', 'VOID', 1, 500),
               ('org_globex', 'PAID', 2, 30000)) AS v(org, status, n, cents),
       generate_series(1, v.n) i;
CREATE INDEX ON invoices (workos_org_id);

-- docs/dimensions.md: deliveries of org_acme over three days, by carrier, with their rates.
CREATE TABLE deliveries (
    id            bigserial PRIMARY KEY,
    workos_org_id text,
    status        text,
    carrier       text,
    delivered_at  timestamptz,
    rate_cents    bigint
);
INSERT INTO deliveries (workos_org_id, status, carrier, delivered_at, rate_cents)
SELECT 'org_acme', CASE WHEN i % 5 = 0 THEN 'Late' ELSE 'OnTime' END, (ARRAY['UPS', 'FedEx'])[1 + i % 2],
       '2026-11-02 08:00+00'::timestamptz + i * interval '2 hours 10 minutes', 1000 + 10 * i
  FROM generate_series(1, 30) i;
CREATE INDEX ON deliveries (workos_org_id, delivered_at);
-- Timestamps print in UTC, whatever the server's zone.
SET TimeZone = 'UTC';
