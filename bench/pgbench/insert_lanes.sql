-- A load of one of 100 orgs, by one of 10 carriers, created now.
\set o random(0, 99)
\set c random(1, 10)
INSERT INTO loads (workos_org_id, status, carrier, created_at) VALUES ('org_' || :o, 'Open', 'carrier_' || :c, now());
