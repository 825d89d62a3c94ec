-- Event triggers that keep org_stats in step with DDL on tracked tables (see src/ddl.rs).

-- Around ALTER TABLE and CREATE TABLE: renames, type changes, partitions created, attached, detached.
CREATE FUNCTION org_stats.on_ddl_start() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM org_stats.ddl_start();
END
$$;

CREATE FUNCTION org_stats.on_ddl_end() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM org_stats.ddl_end();
END
$$;

-- On DROP: a tracked column (org, status, summed, or read by a filter) may not go; a dropped tracked table is forgotten; a dropped partition
-- of a tracked table takes its rows along without deleting them, so the table is recounted.
CREATE FUNCTION org_stats.on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    dropped record;
    tracked record;
    recount integer[] := '{}';
    counters regclass;
BEGIN
    FOR dropped IN SELECT * FROM pg_catalog.pg_event_trigger_dropped_objects() LOOP
        IF dropped.object_type OPERATOR(pg_catalog.=) 'table column' THEN
            IF EXISTS (SELECT FROM org_stats.tracked t
                        WHERE t.relid OPERATOR(pg_catalog.=) dropped.objid
                          AND (dropped.address_names[3] IN (t.org_column::text, t.status_column::text, t.time_column::text)
                               OR dropped.address_names[3] OPERATOR(pg_catalog.=)
                                  ANY (COALESCE(t.sum_columns, '{}') OPERATOR(pg_catalog.||) COALESCE(t.filter_columns, '{}')
                                       OPERATOR(pg_catalog.||) COALESCE(t.group_columns, '{}'))))
               AND NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger_dropped_objects() d
                                WHERE d.objid OPERATOR(pg_catalog.=) dropped.objid
                                  AND d.object_type OPERATOR(pg_catalog.=) 'table') THEN
                RAISE EXCEPTION 'cannot drop column % of table %: org_stats counts by it',
                    dropped.address_names[3], dropped.address_names[2]
                    USING ERRCODE = 'dependent_objects_still_exist',
                          HINT = format('Untrack the table first: SELECT org_stats.untrack(%L);',
                                        dropped.address_names[1] || '.' || dropped.address_names[2]);
            END IF;
        ELSIF dropped.object_type OPERATOR(pg_catalog.=) 'table' THEN
            DELETE FROM org_stats.counters c USING org_stats.tracked t
             WHERE t.relid OPERATOR(pg_catalog.=) dropped.objid AND c.table_id OPERATOR(pg_catalog.=) t.table_id;
            -- On Citus, a distributed table's counters are in the table co-located with it
            -- (src/citus.rs), which Citus has already forgotten the dropped table's group of.
            FOR counters IN SELECT c.oid::pg_catalog.regclass FROM pg_catalog.pg_class c
                             WHERE c.relnamespace OPERATOR(pg_catalog.=) 'org_stats'::pg_catalog.regnamespace
                               AND c.relname OPERATOR(pg_catalog.~) '^counters_[0-9]+$' AND c.relkind OPERATOR(pg_catalog.=) 'r'
                               AND EXISTS (SELECT FROM org_stats.tracked t WHERE t.relid OPERATOR(pg_catalog.=) dropped.objid) LOOP
                EXECUTE pg_catalog.format('DELETE FROM %s c USING org_stats.tracked t
                                            WHERE t.relid OPERATOR(pg_catalog.=) $1 AND c.table_id OPERATOR(pg_catalog.=) t.table_id', counters)
                  USING dropped.objid;
            END LOOP;
            DELETE FROM org_stats.org_state s USING org_stats.tracked t
             WHERE t.relid OPERATOR(pg_catalog.=) dropped.objid AND s.table_id OPERATOR(pg_catalog.=) t.table_id;
            DELETE FROM org_stats.backfill_state b USING org_stats.tracked t
             WHERE t.relid OPERATOR(pg_catalog.=) dropped.objid AND b.table_id OPERATOR(pg_catalog.=) t.table_id;
            -- Citus drops a table to replace it by a new one of the same name and triggers
            -- (undistribute_table(), alter_distributed_table()): with Citus, the registration stays
            -- until commit, when org_stats follows it to the new table or forgets it (src/citus.rs).
            IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
                DELETE FROM org_stats.tracked t WHERE t.relid OPERATOR(pg_catalog.=) dropped.objid;
            END IF;
        ELSIF dropped.object_type OPERATOR(pg_catalog.=) 'trigger'
              AND dropped.address_names[3] LIKE 'org\_stats\_flush\_%'
              AND EXISTS (SELECT FROM pg_catalog.pg_event_trigger_dropped_objects() d
                           WHERE d.object_type OPERATOR(pg_catalog.=) 'table'
                             AND d.address_names[1:2] OPERATOR(pg_catalog.=) dropped.address_names[1:2]) THEN
            -- A tracked table's statement trigger went with a table that is not the tracked
            -- table itself (that one is forgotten above, and is not recounted below): a partition.
            -- On a Citus worker a shard's trigger is named <trigger>_<shard id>.
            recount := recount
                OPERATOR(pg_catalog.||) pg_catalog.split_part(pg_catalog.substr(dropped.address_names[3], 17), '_', 1)::integer;
        END IF;
    END LOOP;
    FOR tracked IN SELECT t.relid FROM org_stats.tracked t WHERE t.table_id OPERATOR(pg_catalog.=) ANY (recount)
                      AND EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) t.relid) LOOP
        RAISE NOTICE 'org_stats: recounting % after one of its partitions was dropped', tracked.relid;
        PERFORM org_stats.recalculate(tracked.relid);
    END LOOP;
    -- On Citus: a group's counters table goes with its last tracked table.
    PERFORM org_stats.drop_unused_counters();
END
$$;

CREATE EVENT TRIGGER org_stats_ddl_start ON ddl_command_start
    WHEN TAG IN ('ALTER TABLE', 'CREATE TABLE') EXECUTE FUNCTION org_stats.on_ddl_start();
CREATE EVENT TRIGGER org_stats_ddl_end ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'CREATE TABLE') EXECUTE FUNCTION org_stats.on_ddl_end();
CREATE EVENT TRIGGER org_stats_sql_drop ON sql_drop EXECUTE FUNCTION org_stats.on_sql_drop();

-- Before DROP EXTENSION org_stats: on Citus, the counters tables of distributed trackings are
-- dropped first, so their shards go from every node (src/citus.rs).
CREATE FUNCTION org_stats.on_drop_extension() RETURNS event_trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'on_drop_extension';
CREATE EVENT TRIGGER org_stats_drop_extension ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION') EXECUTE FUNCTION org_stats.on_drop_extension();
REVOKE EXECUTE ON FUNCTION org_stats.on_drop_extension(), org_stats.drop_unused_counters() FROM PUBLIC;

REVOKE EXECUTE ON FUNCTION org_stats.ddl_start(), org_stats.ddl_end() FROM PUBLIC;
