SELECT * FROM org_stats.count_by_status('loads', 'org_big');
