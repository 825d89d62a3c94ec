SELECT status, n FROM hand_counts WHERE tbl = 'loads' AND org_id = 'org_big' AND n <> 0;
