//! In-backend unit tests of internals: the text form of each supported type, the
//! subtransaction bookkeeping of pending deltas, and time buckets and group keys. The SQL surface is tested by pg_regress
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

    /// Decimal texts of every shape a sum meets: signs, 0 to 60 digits before the point, 0 to
    /// 20 after, trailing and leading zeros, from a fixed pseudo-random sequence.
    fn decimals() -> Vec<String> {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |bound: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % bound
        };
        let mut out: Vec<String> = ["0", "0.0", "-0.000", "1", "-1", "9999", "10000", "0.0001"]
            .map(String::from)
            .into();
        for _ in 0..2000 {
            let digits = |n: u64, next: &mut dyn FnMut(u64) -> u64| {
                (0..n)
                    .map(|_| char::from(b'0' + next(10) as u8))
                    .collect::<String>()
            };
            let whole = digits(1 + next(60), &mut next);
            let whole = whole.trim_start_matches('0');
            let whole = if whole.is_empty() { "0" } else { whole };
            let scale = next(21);
            let sign = if next(2) == 0 { "-" } else { "" };
            let sign = if whole == "0" && scale == 0 { "" } else { sign };
            out.push(match scale {
                0 => format!("{sign}{whole}"),
                _ => format!("{sign}{whole}.{}", digits(scale, &mut next)),
            });
        }
        out
    }

    #[pg_test]
    fn sums_read_and_write_numeric_as_numeric_in_and_out_do() {
        use crate::values::sums::{self, Summand};
        use std::str::FromStr;
        for text in decimals() {
            let stored = AnyNumeric::from_str(&text).unwrap();
            let shown = stored.to_string();
            let datum = stored.into_datum();
            // SAFETY: a numeric datum.
            let read = unsafe { Sum::of_datum(datum, Summand::Numeric, 1) };
            assert_eq!(read.value().as_deref(), Some(shown.as_str()), "read {text}");
            assert_eq!(read, Sum::of(Some(&shown), 1), "read {text}");
            let mut twice = read.clone();
            twice.add(&Sum::of(Some(&shown), -1).negated());
            let array = sums::to_datum(&[read.clone(), twice.clone()]);
            let written: Vec<String> = unsafe {
                <Vec<AnyNumeric> as FromDatum>::from_datum(array.unwrap(), false).unwrap()
            }
            .iter()
            .map(|n| n.to_string())
            .collect();
            let expected: Vec<String> = [read.parts(), twice.parts()].concat();
            assert_eq!(written, expected, "written {text}");
            // SAFETY: the counters' numeric[] just made.
            assert_eq!(
                unsafe { sums::from_datum(array) },
                vec![read, twice],
                "{text}"
            );
        }
        for (value, summand, text) in [
            (i16::MIN.into_datum(), Summand::Int2, i16::MIN.to_string()),
            (i32::MIN.into_datum(), Summand::Int4, i32::MIN.to_string()),
            (i64::MIN.into_datum(), Summand::Int8, i64::MIN.to_string()),
            (i64::MAX.into_datum(), Summand::Int8, i64::MAX.to_string()),
        ] {
            // SAFETY: a datum of that type.
            let sum = unsafe { Sum::of_datum(value, summand, -1) };
            assert_eq!(sum, Sum::of(Some(&text), -1), "{text}");
        }
    }

    use crate::values::dimensions::{self, width_of, Bucketing, Part, Width};

    const HOUR: i64 = 3_600_000_000;
    const DAY: i64 = 24 * HOUR;

    fn micros_of(sql: &str) -> i64 {
        Spi::get_one::<i64>(&format!(
            "SELECT ((extract(epoch FROM {sql}) - 946684800) * 1000000)::int8"
        ))
        .unwrap()
        .unwrap()
    }

    #[pg_test]
    fn bucket_widths_are_checked() {
        assert_eq!(width_of(0, 0, 0), Err("is zero"));
        assert_eq!(
            width_of(1, 1, 0),
            Err("mixes months or years with days or a time")
        );
        assert_eq!(width_of(0, 0, -5), Err("is negative"));
        assert_eq!(width_of(0, 1, -HOUR), Err("is negative"));
        assert_eq!(width_of(3, 0, 0), Ok(Width::Months(3)));
        assert_eq!(width_of(0, 1, HOUR), Ok(Width::Fixed(DAY + HOUR)));
    }

    /// Month buckets against date_trunc() and date_bin() of PostgreSQL, from 1900 to 2100.
    #[pg_test]
    fn buckets_match_date_trunc_and_date_bin() {
        let months = |n| Bucketing {
            width: Width::Months(n),
            zone: None,
        };
        let hours = Bucketing {
            width: Width::Fixed(7 * HOUR),
            zone: None,
        };
        let mut day = -36_524;
        while day < 36_524 {
            let at = day * DAY + 5 * HOUR + 17;
            let sql =
                format!("('2000-01-01 00:00+00'::timestamptz + interval '{at} microseconds')");
            let month = micros_of(&format!("date_trunc('month', {sql}, 'UTC')"));
            assert_eq!(months(1).bucket(at), month, "{sql}");
            let next = micros_of(&format!(
                "date_trunc('month', {sql}, 'UTC') + interval '1 month'"
            ));
            assert_eq!(months(1).next(month), next, "{sql}");
            let quarter_of_2000 = micros_of(&format!(
                "'2000-01-01 00:00+00'::timestamptz + interval '3 months' * \
                 floor(((extract(year FROM {sql} AT TIME ZONE 'UTC') - 2000) * 12 \
                        + extract(month FROM {sql} AT TIME ZONE 'UTC') - 1) / 3)"
            ));
            assert_eq!(months(3).bucket(at), quarter_of_2000, "{sql}");
            let binned = micros_of(&format!(
                "date_bin('7 hours', {sql}, '2000-01-01 00:00+00')"
            ));
            assert_eq!(hours.bucket(at), binned, "{sql}");
            day += 37;
        }
    }

    /// Calendar buckets cut in a time zone's local time: a day across a change of daylight saving
    /// time is 23 or 25 hours long.
    #[pg_test]
    fn buckets_in_a_time_zone() {
        let days = Bucketing {
            width: Width::Fixed(DAY),
            zone: Some("America/New_York".into()),
        };
        let at = micros_of("'2026-11-01 12:00-05'::timestamptz");
        let start = days.bucket(at);
        assert_eq!(start, micros_of("'2026-11-01 00:00-04'::timestamptz"));
        assert_eq!(days.next(start) - start, 25 * HOUR);
    }

    #[pg_test]
    fn keys_round_trip() {
        for (bucket, values) in [
            (None, vec![Some("Open"), Some("UPS")]),
            (Some(None), vec![None, Some("")]),
            (Some(Some(-5)), vec![Some(";-:@3:x"), None]),
            (Some(Some(i64::MAX)), vec![Some("ü")]),
            (Some(Some(i64::MIN)), vec![None]),
        ] {
            let key = dimensions::decode(&dimensions::encode(bucket, &values));
            assert_eq!(key.bucket, bucket);
            let values: Vec<_> = values.iter().map(|v| v.map(str::to_owned)).collect();
            assert_eq!(key.values, values);
        }
        // Keys order by bucket, as text, whatever follows.
        let early = dimensions::encode(Some(Some(-HOUR)), &[Some("zz")]);
        let late = dimensions::encode(Some(Some(HOUR)), &[Some("aa")]);
        assert!(early < late);
    }

    #[pg_test]
    fn parts_of_a_range() {
        let hours = Bucketing {
            width: Width::Fixed(HOUR),
            zone: None,
        };
        let (since, until) = (Some(HOUR / 2), Some(3 * HOUR));
        assert_eq!(hours.part(Some(0), since, until, true), Part::Cut);
        assert_eq!(hours.part(Some(HOUR), since, until, true), Part::Whole);
        assert_eq!(hours.part(Some(2 * HOUR), since, until, true), Part::Whole);
        assert_eq!(
            hours.part(Some(3 * HOUR), since, until, true),
            Part::Outside
        );
        // A timestamp compares in the session's time zone: within a day of a bound, cut.
        assert_eq!(hours.part(Some(HOUR), since, until, false), Part::Cut);
        assert_eq!(hours.part(None, since, None, true), Part::Outside);
        assert_eq!(hours.part(None, None, None, true), Part::Whole);
        assert_eq!(hours.part(Some(i64::MAX), since, None, true), Part::Whole);
        assert_eq!(
            hours.part(Some(i64::MAX), since, until, true),
            Part::Outside
        );
        assert_eq!(hours.part(Some(i64::MIN), None, until, false), Part::Whole);
    }

    /// The key ranges a read between two instants scans count every hour of it once: a whole
    /// hour from a day's or a month's total or from its settled key, never both; a cut hour from
    /// neither (the table counts it); an hour outside from no total.
    #[pg_test]
    fn scans_count_each_bucket_once() {
        use crate::values::dimensions::Level;
        // Scans are ranges of the counters' index: under these collations, of the keys below.
        assert!(dimensions::orders_keys(pg_sys::DEFAULT_COLLATION_OID));
        assert!(dimensions::orders_keys(pg_sys::C_COLLATION_OID));
        let base = micros_of("'2026-10-28 00:00+00'::timestamptz");
        for zone in [None, Some("America/New_York".to_string())] {
            let hours = Bucketing {
                width: Width::Fixed(HOUR),
                zone: zone.clone(),
            };
            let totals = hours.totals();
            let cases = [
                (
                    Some(base + 17 * 60_000_000),
                    Some(base + 40 * DAY + 5 * HOUR + 3),
                ),
                (Some(base + 3 * DAY), Some(base + 3 * DAY + 7 * HOUR)),
                (Some(base + 5 * HOUR), Some(base + 9 * DAY)),
                (None, Some(base + 20 * DAY + 90_000_000)),
                (Some(base + 2 * DAY + 1), None),
                (None, None),
                (Some(i64::MIN), Some(base + 33 * DAY)),
                (Some(base + 4 * DAY), Some(base + 4 * DAY)),
            ];
            for (since, until) in cases {
                for instants in [true, false] {
                    let scans = hours.scans(since, until, instants, false);
                    let scanned = |level: Level, key: &str| {
                        scans
                            .iter()
                            .filter(|(l, from, to)| {
                                *l == level && key >= from.as_str() && key < to.as_str()
                            })
                            .count()
                    };
                    let values = [Some("Open".to_string())];
                    for h in -24 * 20..24 * 80 {
                        let start = hours.bucket(base + h * HOUR);
                        let part = hours.part(Some(start), since, until, instants);
                        let in_totals: usize = totals
                            .iter()
                            .map(|(level, coarse)| {
                                scanned(
                                    *level,
                                    &dimensions::encode_at(*level, coarse.bucket(start), &values),
                                )
                            })
                            .sum();
                        let settled = scanned(
                            Level::Settled,
                            &dimensions::encode_at(Level::Settled, start, &values),
                        );
                        let fresh = scanned(
                            Level::Fresh,
                            &dimensions::encode_at(Level::Fresh, start, &values),
                        );
                        let case = format!("{zone:?} {since:?} {until:?} {instants} hour {start}: {part:?}, totals {in_totals}, settled {settled}, fresh {fresh}");
                        match part {
                            Part::Whole => {
                                assert!(in_totals + settled == 1 && fresh == 1, "{case}")
                            }
                            Part::Cut => {
                                assert!(in_totals == 0 && settled == 1 && fresh == 1, "{case}")
                            }
                            Part::Outside => assert!(in_totals == 0, "{case}"),
                        }
                    }
                }
            }
        }
    }
}
