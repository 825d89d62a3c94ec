\set o random(0, 99)
INSERT INTO loads (workos_org_id, status) VALUES ('org_' || :o, 'Open');
