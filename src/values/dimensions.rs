//! Several grouping columns and a time bucket: how a row's group key is made, kept and read
//! back. A tracking that groups by one column and no time keeps that column's text as its
//! counters' status, as it always has; any other keeps an encoded key there: the bucket the
//! row's time falls in, then each grouping value, in a form that decodes without ambiguity
//! whatever the values hold. Everything that groups counters by status (the write path, drift
//! repair, backfill, the fold, TRUNCATE, Citus' counters shards) thereby groups them by the whole
//! key, unchanged; only reads decode it.
//!
//! Buckets follow `date_bin` from the origin 2000-01-01 00:00:00 UTC (PostgreSQL's epoch, where
//! its timestamps count microseconds from) for a fixed width (`'15 minutes'`, `'1 day'`: a day is
//! 24 hours, as for `date_bin`), or are whole calendar months (`'1 month'`, `'3 months'`,
//! `'1 year'`) counted from January 2000. For a `timestamptz` column they are cut in UTC or, with
//! a time zone, in that zone's local time; a `timestamp` or `date` column is cut on its own value.

use pgrx::pg_sys;
use pgrx::IntoDatum;

const USECS_PER_DAY: i64 = 86_400_000_000;

/// How a time column's values fall into buckets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucketing {
    pub width: Width,
    /// Cut in this zone's local time (a `timestamptz` column only); `None` for UTC.
    pub zone: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    /// A fixed number of microseconds.
    Fixed(i64),
    /// A number of calendar months.
    Months(i32),
}

/// Why an interval cannot be a bucket width.
pub fn width_of(months: i32, days: i32, micros: i64) -> Result<Width, &'static str> {
    match (months, days, micros) {
        (0, 0, 0) => Err("is zero"),
        (m, 0, 0) if m > 0 => Ok(Width::Months(m)),
        (m, _, _) if m != 0 => Err("mixes months or years with days or a time"),
        (_, d, t) => {
            let width = i64::from(d)
                .checked_mul(USECS_PER_DAY)
                .and_then(|d| d.checked_add(t))
                .ok_or("is too long")?;
            if width <= 0 || d < 0 || t < 0 {
                Err("is negative")
            } else {
                Ok(Width::Fixed(width))
            }
        }
    }
}

/// Days from 2000-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 730_425
}

/// The (year, month) of a day counted from 2000-01-01.
fn civil_from_days(days: i64) -> (i64, i64) {
    let z = days + 730_425;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month)
}

impl Width {
    /// The width as (months, microseconds), one of them zero: how SQL and trigger arguments
    /// carry it.
    pub fn parts(self) -> (i32, i64) {
        match self {
            Width::Months(m) => (m, 0),
            Width::Fixed(w) => (0, w),
        }
    }

    /// The width as the interval `org_stats.tracked` shows: months, else whole days, else time.
    pub fn as_interval(self) -> pgrx::datum::Interval {
        let (months, days, micros) = match self {
            Width::Months(m) => (m, 0, 0),
            Width::Fixed(w) if w % USECS_PER_DAY == 0 => (0, (w / USECS_PER_DAY) as i32, 0),
            Width::Fixed(w) => (0, 0, w),
        };
        pgrx::datum::Interval::new(months, days, micros).expect("a bucket's width as an interval")
    }

    /// The start of the bucket of a local time (microseconds from 2000-01-01 00:00).
    fn start(self, local: i64) -> i64 {
        match self {
            Width::Fixed(w) => local.div_euclid(w) * w,
            Width::Months(n) => {
                let (year, month) = civil_from_days(local.div_euclid(USECS_PER_DAY));
                let months = (year - 2000) * 12 + (month - 1);
                let first = months.div_euclid(i64::from(n)) * i64::from(n);
                days_from_civil(2000 + first.div_euclid(12), first.rem_euclid(12) + 1, 1)
                    * USECS_PER_DAY
            }
        }
    }

    /// The start of the bucket after the one starting at `start` (a local time).
    fn next(self, start: i64) -> i64 {
        match self {
            Width::Fixed(w) => start + w,
            Width::Months(n) => {
                let (year, month) = civil_from_days(start.div_euclid(USECS_PER_DAY));
                let months = (year - 2000) * 12 + (month - 1) + i64::from(n);
                days_from_civil(2000 + months.div_euclid(12), months.rem_euclid(12) + 1, 1)
                    * USECS_PER_DAY
            }
        }
    }
}

/// A zone's local time of an instant, and the instant of a local time in it, as PostgreSQL's
/// `AT TIME ZONE` computes them.
fn at_zone(zone: &str, value: i64, to_local: bool) -> i64 {
    let args = [zone.into_datum(), Some(pg_sys::Datum::from(value))];
    let function = if to_local {
        pg_sys::timestamptz_zone
    } else {
        pg_sys::timestamp_zone
    };
    // SAFETY: both functions take (text, a timestamp) and return a timestamp, by value.
    unsafe { pgrx::direct_function_call::<i64>(function, &args) }.expect("a timestamp")
}

impl Bucketing {
    /// The start of the bucket of a time column's value (microseconds from 2000-01-01: UTC for
    /// a `timestamptz`, the value's own for a `timestamp` or `date`).
    pub fn bucket(&self, value: i64) -> i64 {
        match &self.zone {
            None => self.width.start(value),
            Some(zone) => at_zone(zone, self.width.start(at_zone(zone, value, true)), false),
        }
    }

    /// The start of the bucket after the one starting at `start`.
    pub fn next(&self, start: i64) -> i64 {
        match &self.zone {
            None => self.width.next(start),
            Some(zone) => at_zone(zone, self.width.next(at_zone(zone, start, true)), false),
        }
    }
}

/// The microseconds from 2000-01-01 of a time column's value: a timestamp is that already, a
/// date its midnight.
///
/// # Safety
/// `datum` is a non-NULL value of type `type_oid`, one of `time_type` accepts.
pub unsafe fn micros_of(datum: pg_sys::Datum, type_oid: pg_sys::Oid) -> i64 {
    if pg_sys::getBaseType(type_oid) == pg_sys::DATEOID {
        date_micros(datum.value() as i32)
    } else {
        datum.value() as i64
    }
}

/// Whether a time column of this type can be bucketed, and whether it is a `timestamptz` (whose
/// buckets a time zone may cut): `timestamptz`, `timestamp`, `date` and domains over them.
pub fn time_type(type_oid: pg_sys::Oid) -> Option<bool> {
    // SAFETY: a catalog lookup of a type.
    match unsafe { pg_sys::getBaseType(type_oid) } {
        pg_sys::TIMESTAMPTZOID => Some(true),
        pg_sys::TIMESTAMPOID | pg_sys::DATEOID => Some(false),
        _ => None,
    }
}

/// The group key a dimensional tracking keeps as its counters' status: `@` and the bucket's
/// start (`@-` for a NULL time, nothing without a time column), then for each grouping value
/// `;` and `-` for NULL or its length in bytes, `:` and the value. A start is written as 20
/// digits, offset to be unsigned, so that keys order by bucket under any collation's order of
/// digits.
pub fn encode(bucket: Option<Option<i64>>, values: &[Option<&str>]) -> String {
    let mut key =
        String::with_capacity(24 + values.iter().flatten().map(|v| v.len() + 4).sum::<usize>());
    match bucket {
        None => {}
        Some(None) => key.push_str("@-"),
        Some(Some(start)) => key.push_str(&bucket_bound(start)),
    }
    for value in values {
        match value {
            None => key.push_str(";-"),
            Some(v) => {
                key.push(';');
                key.push_str(&v.len().to_string());
                key.push(':');
                key.push_str(v);
            }
        }
    }
    key
}

/// The lowest key of the bucket starting at `start`: every key of it and of the buckets after it
/// is at least this, every key of the buckets before it less, under a collation that
/// `orders_keys` accepts.
pub fn bucket_bound(start: i64) -> String {
    format!("@{:020}", start.wrapping_sub(i64::MIN) as u64)
}

/// Whether text compares under `collation` so that keys order by bucket as `bucket_bound` says:
/// digits in their order and before the rest of a key, a shorter key before one it begins. Every
/// deterministic collation does; checked on sample keys all the same, once per collation.
pub fn orders_keys(collation: pg_sys::Oid) -> bool {
    thread_local! {
        static CHECKED: std::cell::RefCell<Vec<(pg_sys::Oid, bool)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    if let Some(known) = CHECKED.with(|c| {
        c.borrow()
            .iter()
            .find(|(o, _)| *o == collation)
            .map(|(_, k)| *k)
    }) {
        return known;
    }
    let less = |a: &str, b: &str| {
        // SAFETY: both are valid strings; varstr_cmp compares them under an existing collation.
        unsafe {
            pg_sys::varstr_cmp(
                a.as_ptr().cast(),
                a.len() as i32,
                b.as_ptr().cast(),
                b.len() as i32,
                collation,
            ) < 0
        }
    };
    let starts = [
        i64::MIN,
        -86_400_000_000,
        -1,
        0,
        1,
        9,
        10,
        99,
        100,
        3_600_000_000,
        i64::MAX,
    ];
    let values: [&[Option<&str>]; 4] = [
        &[None],
        &[Some("")],
        &[Some("zz"), Some("9")],
        &[Some("A a"), None],
    ];
    let ordered = starts.windows(2).all(|pair| {
        let (earlier, later) = (pair[0], pair[1]);
        values.iter().all(|v| {
            let (key, next) = (encode(Some(Some(earlier)), v), bucket_bound(later));
            !less(&key, &bucket_bound(earlier))
                && less(&key, &next)
                && less(&bucket_bound(earlier), &next)
        })
    });
    CHECKED.with(|c| c.borrow_mut().push((collation, ordered)));
    ordered
}

/// A group key decoded: its bucket's start (`None`: no time column; `Some(None)`: a NULL time)
/// and its grouping values.
pub struct Key {
    pub bucket: Option<Option<i64>>,
    pub values: Vec<Option<String>>,
}

/// Decodes what `encode` made.
pub fn decode(key: &str) -> Key {
    let (bucket, mut rest) = match key.strip_prefix('@') {
        None => (None, key),
        Some(after) => {
            let end = after.find(';').unwrap_or(after.len());
            let start = &after[..end];
            let bucket = (start != "-").then(|| {
                let offset: u64 = start.parse().expect("a bucket start");
                (offset as i64).wrapping_add(i64::MIN)
            });
            (Some(bucket), &after[end..])
        }
    };
    let mut values = Vec::new();
    while let Some(after) = rest.strip_prefix(';') {
        if let Some(after) = after.strip_prefix('-') {
            values.push(None);
            rest = after;
            continue;
        }
        let colon = after.find(':').expect("a value's length");
        let len: usize = after[..colon].parse().expect("a value's length");
        let value = &after[colon + 1..colon + 1 + len];
        values.push(Some(value.to_owned()));
        rest = &after[colon + 1 + len..];
    }
    Key { bucket, values }
}

/// A group key as people read it: its grouping values as a `text[]` prints, then with a time
/// column ` @ ` and its bucket's start as a `timestamptz` (`instants`) or `timestamp` prints, or
/// `NULL` for the rows whose time is NULL. What drift checks show as a dimensional key's status.
pub fn display(key: &str, instants: bool) -> String {
    let key = decode(key);
    let mut shown = output(key.values, pg_sys::TEXTARRAYOID);
    if let Some(bucket) = key.bucket {
        shown.push_str(" @ ");
        match bucket {
            None => shown.push_str("NULL"),
            Some(start) => {
                let type_oid = if instants {
                    pg_sys::TIMESTAMPTZOID
                } else {
                    pg_sys::TIMESTAMPOID
                };
                shown.push_str(&output(start, type_oid));
            }
        }
    }
    shown
}

/// A value as its type's output function prints it.
fn output(value: impl IntoDatum, type_oid: pg_sys::Oid) -> String {
    let datum = value.into_datum().expect("a value");
    // SAFETY: the datum is a value of the type; its output function returns a palloc'd string.
    unsafe {
        let (mut function, mut varlena) = (pg_sys::Oid::INVALID, false);
        pg_sys::getTypeOutputInfo(type_oid, &mut function, &mut varlena);
        std::ffi::CStr::from_ptr(pg_sys::OidOutputFunctionCall(function, datum))
            .to_string_lossy()
            .into_owned()
    }
}

/// The microseconds of an infinite timestamp (PostgreSQL's own), kept as a bucket of its own.
fn finite(micros: i64) -> bool {
    micros != i64::MIN && micros != i64::MAX
}

impl Bucketing {
    /// The bucket of a time value, `None` for NULL.
    pub fn of(&self, micros: Option<i64>) -> Option<i64> {
        micros.map(|m| if finite(m) { self.bucket(m) } else { m })
    }

    fn from_sql(months: i32, micros: i64, zone: Option<&str>) -> Bucketing {
        Bucketing {
            width: if months > 0 {
                Width::Months(months)
            } else {
                Width::Fixed(micros)
            },
            zone: zone.map(str::to_owned),
        }
    }
}

fn key_of(values: Vec<Option<String>>, bucket: Option<Option<i64>>) -> String {
    let values: Vec<Option<&str>> = values.iter().map(Option::as_deref).collect();
    encode(bucket, &values)
}

/// `encode` for SQL: the key the triggers make for a row of a tracking grouped by several
/// columns and no time, computed by the GROUP BYs that backfill and repair its counts, so that
/// both group alike.
#[pgrx::pg_extern(immutable, strict, parallel_safe, name = "group_key")]
fn group_key_untimed(values: Vec<Option<String>>) -> String {
    key_of(values, None)
}

/// `group_key` of a row whose time column is a `timestamptz`, bucketed by `months` months or
/// `micros` microseconds, cut in `zone` (NULL: UTC).
#[pgrx::pg_extern(immutable, parallel_safe, name = "group_key")]
fn group_key_timestamptz(
    values: Vec<Option<String>>,
    time: Option<pgrx::datum::TimestampWithTimeZone>,
    months: i32,
    micros: i64,
    zone: Option<&str>,
) -> String {
    let bucketing = Bucketing::from_sql(months, micros, zone);
    key_of(values, Some(bucketing.of(time.map(|t| t.into_inner()))))
}

/// `group_key` of a row whose time column is a `timestamp`.
#[pgrx::pg_extern(immutable, parallel_safe, name = "group_key")]
fn group_key_timestamp(
    values: Vec<Option<String>>,
    time: Option<pgrx::datum::Timestamp>,
    months: i32,
    micros: i64,
) -> String {
    let bucketing = Bucketing::from_sql(months, micros, None);
    key_of(values, Some(bucketing.of(time.map(|t| t.into_inner()))))
}

/// `group_key` of a row whose time column is a `date`.
#[pgrx::pg_extern(immutable, parallel_safe, name = "group_key")]
fn group_key_date(
    values: Vec<Option<String>>,
    time: Option<pgrx::datum::Date>,
    months: i32,
    micros: i64,
) -> String {
    let bucketing = Bucketing::from_sql(months, micros, None);
    key_of(
        values,
        Some(bucketing.of(time.map(|d| date_micros(d.into_inner())))),
    )
}

/// A date's midnight in microseconds from 2000-01-01 (infinite dates as infinite timestamps).
pub fn date_micros(days: i32) -> i64 {
    match days {
        i32::MIN => i64::MIN,
        i32::MAX => i64::MAX,
        d => i64::from(d) * USECS_PER_DAY,
    }
}

/// How a bucket stands to a range of instants `[since, until)` (`None`: unbounded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Every value it can hold is in the range: its counters count for the range.
    Whole,
    /// None is.
    Outside,
    /// Some may be: the range counts its rows from the table.
    Cut,
}

/// How far a `timestamp` or `date` value and the instant PostgreSQL compares it as (in the
/// session's time zone) can lie apart, with room to spare: zones are at most 14 hours off UTC.
const LOCAL_MARGIN: i128 = USECS_PER_DAY as i128;

/// The times whose buckets `key_range` bounds: beyond them (some 5,500 years from 2000), a bound
/// leaves that side unbounded.
const BOUNDED: i64 = 2_000_000 * USECS_PER_DAY;

impl Bucketing {
    /// The keys of the buckets that may hold rows of `[since, until)` (see `part`): from the
    /// bucket of `since` to before the bucket after that of `until`, a day wider on both sides
    /// for a `timestamp` or `date` column (not `instants`); `None`: unbounded. Keys of rows whose
    /// time is NULL may fall in the range or not.
    pub fn key_range(
        &self,
        since: Option<i64>,
        until: Option<i64>,
        instants: bool,
    ) -> (Option<String>, Option<String>) {
        let margin = if instants { 0 } else { USECS_PER_DAY };
        let bounded = |t: i64| (-BOUNDED..=BOUNDED).contains(&t).then_some(t);
        let from = since
            .and_then(|s| bounded(s - margin))
            .map(|s| bucket_bound(self.bucket(s)));
        let to = until
            .and_then(|u| bounded(u + margin))
            .map(|u| bucket_bound(self.next(self.bucket(u))));
        (from, to)
    }

    /// How the bucket starting at `start` (`None`: the rows whose time is NULL) stands to the
    /// range; `instants`: whether the column is a `timestamptz`, whose values are instants (a
    /// `timestamp` or `date` compares with an instant in the session's time zone, so a bucket
    /// within a day of a bound is cut).
    pub fn part(
        &self,
        start: Option<i64>,
        since: Option<i64>,
        until: Option<i64>,
        instants: bool,
    ) -> Part {
        let Some(start) = start else {
            // WHERE time >= since AND time < until keeps no NULL time; no bound keeps every row.
            return if since.is_none() && until.is_none() {
                Part::Whole
            } else {
                Part::Outside
            };
        };
        let (lo, hi, margin) = if finite(start) {
            let margin = if instants { 0 } else { LOCAL_MARGIN };
            (i128::from(start), i128::from(self.next(start)), margin)
        } else {
            // An infinite time compares as itself in every zone.
            (i128::from(start), i128::from(start) + 1, 0)
        };
        let since = since.map_or(i128::MIN, i128::from);
        let until = until.map_or(i128::MAX, i128::from);
        if since <= lo - margin && hi + margin <= until {
            Part::Whole
        } else if hi + margin <= since || lo - margin >= until {
            Part::Outside
        } else {
            Part::Cut
        }
    }
}

/// What a dimensional tracking's triggers carry besides the status column: the other grouping
/// columns and the time column with its bucketing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub group: Vec<String>,
    pub time: Option<(String, Bucketing)>,
}

/// What starts a trigger argument that carries a `Spec` (a column name cannot well start so).
const SPEC_ARG: &str = "\u{1}dimensions ";

impl Spec {
    /// The spec as a trigger argument.
    pub fn to_arg(&self) -> String {
        let time = self.time.as_ref().map(|(column, bucketing)| {
            let (months, micros) = bucketing.width.parts();
            serde_json::json!({"column": column, "months": months, "micros": micros, "zone": bucketing.zone})
        });
        format!(
            "{SPEC_ARG}{}",
            serde_json::json!({"group": self.group, "time": time})
        )
    }

    /// The spec a trigger argument carries, if it carries one.
    pub fn from_arg(arg: &str) -> Option<Spec> {
        let json: serde_json::Value = serde_json::from_str(arg.strip_prefix(SPEC_ARG)?).ok()?;
        let group = json["group"]
            .as_array()?
            .iter()
            .map(|c| c.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()?;
        let time = match &json["time"] {
            serde_json::Value::Null => None,
            time => Some((
                time["column"].as_str()?.to_owned(),
                Bucketing::from_sql(
                    i32::try_from(time["months"].as_i64()?).ok()?,
                    time["micros"].as_i64()?,
                    time["zone"].as_str(),
                ),
            )),
        };
        Some(Spec { group, time })
    }

    /// Whether a trigger argument carries a spec.
    pub fn is_arg(arg: &[u8]) -> bool {
        arg.starts_with(SPEC_ARG.as_bytes())
    }
}
