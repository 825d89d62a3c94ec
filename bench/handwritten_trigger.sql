-- Variant (b) of the benchmark: the counter trigger users write by hand today. One counter row per
-- (table, org, status), upserted by a PL/pgSQL row trigger for every row written. It is correct
-- for single-row writes but quadratic inside one big statement (every row updates the same few
-- counter rows, each update leaving a dead version the next must step over) and deadlocks when
-- concurrent transactions touch the same counters in different orders.
CREATE TABLE hand_counts (
    tbl    text   NOT NULL,
    org_id text   NOT NULL,
    status text   NOT NULL,
    n      bigint NOT NULL,
    PRIMARY KEY (tbl, org_id, status)
);

CREATE FUNCTION hand_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE hand_counts SET n = n - 1
         WHERE tbl = TG_TABLE_NAME AND org_id = OLD.workos_org_id AND status = OLD.status;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO hand_counts VALUES (TG_TABLE_NAME, NEW.workos_org_id, NEW.status, 1)
        ON CONFLICT (tbl, org_id, status) DO UPDATE SET n = hand_counts.n + 1;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION hand_track(t regclass) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('INSERT INTO hand_counts SELECT %L, workos_org_id, status, count(*) FROM %s GROUP BY 2, 3',
                   t::text, t);
    EXECUTE format('CREATE TRIGGER hand_count AFTER INSERT OR DELETE OR UPDATE OF workos_org_id, status ON %s
                    FOR EACH ROW EXECUTE FUNCTION hand_count()', t);
END
$$;
