SELECT status, count(*) FROM loads WHERE workos_org_id = 'org_big' GROUP BY status;
