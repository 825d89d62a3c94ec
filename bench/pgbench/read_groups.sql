-- org_big's groups between two instants :days days apart (and 5 h 3 min), both inside hour
-- buckets, at a random place in its year of loads.
\set start random(0, 365 - :days)
\set stop :start + :days
SELECT * FROM org_stats.groups('lanes', 'org_big',
                               '2026-01-01 00:17:23+00'::timestamptz + :start::int * interval '1 day',
                               '2026-01-01 00:17:23+00'::timestamptz + :stop::int * interval '1 day' + interval '5 hours 3 minutes');
