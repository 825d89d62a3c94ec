INSERT INTO loads (workos_org_id, status) VALUES ('org_7', 'Open');
