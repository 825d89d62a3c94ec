-- CALL org_stats.backfill(): counts the existing rows of tables tracked with backfill => false,
-- online: one transaction per batch of orgs, so writers are never held up for more than one batch
-- (they never wait at all: see src/drift.rs), and a cancelled run resumes where it stopped.
-- A procedure with COMMIT may be neither SECURITY DEFINER nor carry a SET search_path clause, so
-- every name below is schema-qualified; the privileged work happens in the Rust functions it calls.
CREATE PROCEDURE org_stats.backfill(tbl regclass DEFAULT NULL, batch_size integer DEFAULT 500)
LANGUAGE plpgsql AS $$
DECLARE
    target  text;
    orgs    text[];
    total   integer;
    done    integer;
    rows    bigint;
    started timestamptz;
    elapsed double precision;
    rate    double precision;
BEGIN
    IF batch_size IS NULL OR batch_size OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'batch_size must be a positive number of orgs, not %', batch_size
            USING ERRCODE = 'invalid_parameter_value', HINT = 'The default, 500, suits most tables.';
    END IF;
    FOREACH target IN ARRAY org_stats.backfill_targets(tbl) LOOP
        orgs := org_stats.backfill_start(target);
        total := COALESCE(pg_catalog.array_length(orgs, 1), 0);
        done := 0;
        rows := 0;
        started := pg_catalog.clock_timestamp();
        COMMIT;
        WHILE done OPERATOR(pg_catalog.<) total LOOP
            rows := rows OPERATOR(pg_catalog.+) org_stats.backfill_batch(target,
                orgs[done OPERATOR(pg_catalog.+) 1 : done OPERATOR(pg_catalog.+) batch_size]);
            done := LEAST(done OPERATOR(pg_catalog.+) batch_size, total);
            COMMIT;
            elapsed := pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) started);
            rate := done OPERATOR(pg_catalog./) GREATEST(elapsed, 0.001);
            RAISE NOTICE 'org_stats.backfill %: % / % orgs, % rows, % orgs/s, ETA % s',
                target, done, total, rows, pg_catalog.round(rate::numeric),
                pg_catalog.round(((total OPERATOR(pg_catalog.-) done) OPERATOR(pg_catalog./) rate)::numeric);
        END LOOP;
        PERFORM org_stats.backfill_finish(target);
        COMMIT;
    END LOOP;
END
$$;
