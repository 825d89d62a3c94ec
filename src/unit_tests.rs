//! In-backend unit tests of internals: the text form of each supported type and the
//! subtransaction bookkeeping of pending deltas. The SQL surface is tested by pg_regress
//! (tests/sql), interleavings by pg_isolation_regress (tests/isolation), and the invariant by the
//! randomized model test (tests/model).

#[pgrx::pg_schema]
mod tests {
    use crate::deltas::{self, Group};
    use crate::text_form;
    use pgrx::prelude::*;

    fn text_of(sql_value: &str) -> String {
        let (datum, type_oid) = Spi::connect(|client| {
            let row = client
                .select(
                    &format!("SELECT {sql_value}, pg_typeof({sql_value})::oid"),
                    None,
                    &[],
                )
                .unwrap()
                .first();
            (
                row.get_datum_by_ordinal(1).unwrap().unwrap(),
                row.get::<pg_sys::Oid>(2).unwrap().unwrap(),
            )
        });
        let form = text_form::for_type(type_oid).expect("supported type");
        unsafe { text_form::to_text(form, datum).into_owned() }
    }

    #[pg_test]
    fn text_form_matches_cast_to_text() {
        Spi::run("CREATE TYPE mood AS ENUM ('Open', 'Delivered')").unwrap();
        Spi::run("CREATE DOMAIN org_code AS varchar(10)").unwrap();
        for value in [
            "'Open'::text",
            "'Open'::varchar",
            "'ab'::char(5)",
            "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid",
            "(-42)::int2",
            "42::int4",
            "9007199254740993::int8",
            "'Delivered'::mood",
            "'acme'::org_code",
            "'x'::name",
        ] {
            let expected: String = Spi::get_one(&format!("SELECT ({value})::text"))
                .unwrap()
                .unwrap();
            assert_eq!(text_of(value), expected, "text form of {value}");
        }
    }

    #[pg_test]
    fn text_form_refuses_types_whose_cast_differs_from_output() {
        for type_name in ["boolean", "inet", "jsonb", "timestamptz", "numeric"] {
            let oid: pg_sys::Oid = Spi::get_one(&format!("SELECT '{type_name}'::regtype::oid"))
                .unwrap()
                .unwrap();
            assert!(
                text_form::for_type(oid).is_none(),
                "{type_name} must be refused"
            );
        }
    }

    fn group(org: &str) -> Group {
        Group {
            table_id: 1,
            org_id: org.into(),
            status: Some("Open".into()),
        }
    }

    fn pending(org: &str) -> i64 {
        deltas::pending_for_org(1, org).iter().map(|(_, n)| n).sum()
    }

    #[pg_test]
    fn pending_deltas_follow_subtransactions() {
        deltas::clear();
        deltas::add(1, "a", Some("Open"), 2);
        unsafe {
            pg_sys::BeginInternalSubTransaction(std::ptr::null());
            deltas::add(1, "a", Some("Open"), 5);
            deltas::add(1, "b", Some("Open"), 1);
            assert_eq!((pending("a"), pending("b")), (7, 1));
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        assert_eq!(
            (pending("a"), pending("b")),
            (2, 0),
            "a rolled-back savepoint drops its own deltas"
        );
        unsafe {
            pg_sys::BeginInternalSubTransaction(std::ptr::null());
            deltas::add(1, "b", Some("Open"), 3);
            pg_sys::ReleaseCurrentSubTransaction();
        }
        assert_eq!(
            deltas::take_current(),
            vec![(group("a"), 2), (group("b"), 3)],
            "a released savepoint's deltas belong to the parent"
        );
        assert_eq!(deltas::len(), 0);
    }
}
