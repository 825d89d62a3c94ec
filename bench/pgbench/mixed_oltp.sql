-- 8 clients, 10 hot orgs: insert, status change, delete or org change of a random load.
\set o random(0, 9)
\set p random(0, 9)
\set target :org0_first + :o * 1000 + random(0, 999)
\set s random(1, 5)
\set op random(1, 4)
\if :op = 1
INSERT INTO loads (workos_org_id, status) VALUES ('org_' || :o, 'Open');
\elif :op = 2
UPDATE loads SET status = (ARRAY['Open', 'Dispatched', 'Delivered', 'Cancelled', 'Invoiced'])[:s] WHERE id = :target;
\elif :op = 3
DELETE FROM loads WHERE id = :target;
\else
UPDATE loads SET workos_org_id = 'org_' || :p WHERE id = :target;
\endif
