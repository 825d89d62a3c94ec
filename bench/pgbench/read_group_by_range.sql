-- What read_groups.sql reads, counted live, through the index on (workos_org_id, created_at).
\set start random(0, 365 - :days)
\set stop :start + :days
SELECT ARRAY[status, carrier], count(*) FROM loads
 WHERE workos_org_id = 'org_big'
   AND created_at >= '2026-01-01 00:17:23+00'::timestamptz + :start::int * interval '1 day'
   AND created_at < '2026-01-01 00:17:23+00'::timestamptz + :stop::int * interval '1 day' + interval '5 hours 3 minutes'
 GROUP BY 1;
