//! In-backend unit tests of internals: the text form of each supported type and the
//! subtransaction bookkeeping of pending deltas. The SQL surface is tested by pg_regress
//! (tests/sql), interleavings by pg_isolation_regress (tests/isolation), and the invariant by the
//! randomized model test (tests/integration/tests/randomized_invariant.rs).

#[pgrx::pg_schema]
mod tests {
    use crate::counters::deltas::{self, Delta, Group};
    use crate::counters::placement::Place;
    use crate::values::sums::Sum;
    use crate::values::text_form;
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
            place: Place::Local,
            org_id: org.into(),
            status: Some("Open".into()),
        }
    }

    fn pending(org: &str) -> i64 {
        deltas::pending(1, Some(org))
            .iter()
            .map(|(_, _, d)| d.n)
            .sum()
    }

    fn rows(n: i64) -> Delta {
        Delta { n, sums: vec![] }
    }

    #[pg_test]
    fn pending_deltas_follow_subtransactions() {
        deltas::clear();
        deltas::add(1, Place::Local, "a", Some("Open"), &rows(2));
        unsafe {
            pg_sys::BeginInternalSubTransaction(std::ptr::null());
            deltas::add(1, Place::Local, "a", Some("Open"), &rows(5));
            deltas::add(1, Place::Local, "b", Some("Open"), &rows(1));
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
            deltas::add(1, Place::Local, "b", Some("Open"), &rows(3));
            pg_sys::ReleaseCurrentSubTransaction();
        }
        assert_eq!(
            deltas::take_current(),
            vec![(group("a"), rows(2)), (group("b"), rows(3))],
            "a released savepoint's deltas belong to the parent"
        );
        assert_eq!(deltas::len(), 0);
    }

    #[pg_test]
    fn sums_add_exactly_and_print_as_numeric() {
        let mut s = Sum::of(Some("1.50"), 1);
        s.add(&Sum::of(Some("2.5"), 1));
        s.add(&Sum::of(Some("-0.005"), 1));
        assert_eq!(s.value().as_deref(), Some("3.995"));
        s.add(&Sum::of(Some("3.995"), -1));
        assert_eq!(s.value().as_deref(), Some("0.000"));
        let big = "123456789012345678901234567890123456789012345678901234567890";
        let mut b = Sum::of(Some(big), 1);
        b.add(&Sum::of(Some(big), 1));
        assert_eq!(
            b.value().as_deref(),
            Some("246913578024691357802469135780246913578024691357802469135780")
        );
        assert_eq!(Sum::of(Some("-0.5"), 1).value().as_deref(), Some("-0.5"));
        assert_eq!(
            Sum::of(Some("0.05"), 1).negated().value().as_deref(),
            Some("-0.05")
        );
    }

    #[pg_test]
    fn sums_of_nulls_and_special_values_behave_as_sum_does_and_come_out_again() {
        let mut s = Sum::of(None, 1);
        assert_eq!(s.value(), None);
        s.add(&Sum::of(Some("Infinity"), 1));
        assert_eq!(s.value().as_deref(), Some("Infinity"));
        s.add(&Sum::of(Some("-Infinity"), 1));
        assert_eq!(s.value().as_deref(), Some("NaN"));
        s.add(&Sum::of(Some("Infinity"), -1));
        assert_eq!(s.value().as_deref(), Some("-Infinity"));
        s.add(&Sum::of(Some("-Infinity"), -1));
        assert_eq!(s.value(), None);
        assert!(s.is_zero());
        let round_trip = Sum::from_parts(&Sum::of(Some("-12.340"), 1).parts());
        assert_eq!(round_trip.value().as_deref(), Some("-12.340"));
    }
}
