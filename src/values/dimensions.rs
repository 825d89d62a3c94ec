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

use crate::values::text_form;
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

/// Which counts a key of a timed tracking holds. Writers add to *fresh* keys, one per row's
/// bucket. `recalculate()` settles them (see `maintenance::settle`): it moves each fresh key's
/// count to the *settled* key of the same bucket and adds it to the *day* and *month* totals
/// that bucket falls in (for a bucket that divides a day), all in one transaction. A bucket's
/// count is then its fresh plus its settled keys, and a day's or month's settled part is its
/// total: reads over long ranges add up a total per month and day instead of a key per bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Fresh,
    Settled,
    Day,
    Month,
}

impl Level {
    /// What follows `@` in its keys: nothing for a fresh key, a letter for the others.
    fn tag(self) -> &'static str {
        match self {
            Level::Fresh => "",
            Level::Settled => "h",
            Level::Day => "d",
            Level::Month => "m",
        }
    }
}

/// The digits of a NULL time's "bucket": above every real bucket's (the largest is
/// 18446744073709551615), so that a fresh key is `@` and 20 digits whatever its time.
const NULL_TIME: &str = "99999999999999999999";

/// The group key a dimensional tracking keeps as its counters' status: for a timed tracking `@`,
/// the level's tag and the bucket's start (`NULL_TIME` for a NULL time); then for each grouping
/// value `;` and `-` for NULL or its length in bytes, `:` and the value. A start is written as
/// 20 digits, offset to be unsigned, so that keys order by bucket under any collation that orders
/// digits (see `orders_keys`).
pub fn encode(bucket: Option<Option<i64>>, values: &[Option<&str>]) -> String {
    let prefix = match bucket {
        None => String::new(),
        Some(None) => format!("@{NULL_TIME}"),
        Some(Some(start)) => level_bound(Level::Fresh, start),
    };
    with_values(prefix, values)
}

/// The key of `values` at `level` for the bucket (or day, or month) starting at `start`.
pub fn encode_at(level: Level, start: i64, values: &[Option<String>]) -> String {
    let values: Vec<Option<&str>> = values.iter().map(Option::as_deref).collect();
    with_values(level_bound(level, start), &values)
}

fn with_values(mut key: String, values: &[Option<&str>]) -> String {
    key.reserve(values.iter().flatten().map(|v| v.len() + 4).sum::<usize>() + 2 * values.len());
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

/// The lowest key at `level` of the bucket starting at `start`: every key of it and of the
/// buckets after it is at least this, every key of the buckets before it less, under a collation
/// that `orders_keys` accepts.
pub fn level_bound(level: Level, start: i64) -> String {
    format!(
        "@{}{:020}",
        level.tag(),
        start.wrapping_sub(i64::MIN) as u64
    )
}

/// Above every key at `level` (a fresh key's NULL time included), below every key of a later
/// level.
fn level_end(level: Level) -> String {
    match level {
        // Digits sort before letters: every fresh key, before the first tag.
        Level::Fresh => "@a".into(),
        level => format!("@{}{NULL_TIME}", level.tag()),
    }
}

/// Whether text compares under `collation` so that keys order as `level_bound` and `level_end`
/// say: digits in their order, before letters and before the rest of a key, a shorter key before
/// one it begins. Every deterministic collation does; checked on sample keys all the same, once
/// per collation.
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
    let less = |a: &str, b: &str| text_form::compare(a, b, collation).is_lt();
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
    let values: [Vec<Option<String>>; 4] = [
        vec![None],
        vec![Some(String::new())],
        vec![Some("zz".into()), Some("9".into())],
        vec![Some("A a".into()), None],
    ];
    let levels = [Level::Fresh, Level::Settled, Level::Day, Level::Month];
    let ordered = levels.iter().all(|&level| {
        // Keys of other levels lie outside every range of this one.
        let others_outside = levels.iter().filter(|&&l| l != level).all(|&other| {
            starts.iter().all(|&start| {
                values.iter().all(|v| {
                    let key = encode_at(other, start, v);
                    less(&key, &level_bound(level, i64::MIN)) || !less(&key, &level_end(level))
                })
            })
        });
        let fresh_nulls_below_end = values.iter().all(|v| {
            let v: Vec<Option<&str>> = v.iter().map(Option::as_deref).collect();
            let null = encode(Some(None), &v);
            less(&null, &level_end(Level::Fresh))
                && !less(&null, &level_bound(Level::Fresh, i64::MAX))
        });
        others_outside
            && fresh_nulls_below_end
            && starts.windows(2).all(|pair| {
                let (earlier, later) = (pair[0], pair[1]);
                values.iter().all(|v| {
                    let key = encode_at(level, earlier, v);
                    let next = level_bound(level, later);
                    !less(&key, &level_bound(level, earlier))
                        && less(&key, &next)
                        && less(&level_bound(level, earlier), &next)
                        && less(&key, &level_end(level))
                })
            })
    });
    CHECKED.with(|c| c.borrow_mut().push((collation, ordered)));
    ordered
}

/// A group key decoded: its level, its bucket's start (`None`: no time column; `Some(None)`: a
/// NULL time) and its grouping values.
pub struct Key {
    pub level: Level,
    pub bucket: Option<Option<i64>>,
    pub values: Vec<Option<String>>,
}

/// Decodes what `encode` and `encode_at` made.
pub fn decode(key: &str) -> Key {
    let (level, bucket, mut rest) = match key.strip_prefix('@') {
        None => (Level::Fresh, None, key),
        Some(after) => {
            let (level, after) = match after.as_bytes().first() {
                Some(b'h') => (Level::Settled, &after[1..]),
                Some(b'd') => (Level::Day, &after[1..]),
                Some(b'm') => (Level::Month, &after[1..]),
                _ => (Level::Fresh, after),
            };
            let (start, rest) = after.split_at(20);
            let bucket = (start != NULL_TIME).then(|| {
                let offset: u64 = start.parse().expect("a bucket start");
                (offset as i64).wrapping_add(i64::MIN)
            });
            (level, Some(bucket), rest)
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
    Key {
        level,
        bucket,
        values,
    }
}

/// A group key as people read it: its grouping values as a `text[]` prints, then with a time
/// column ` @ ` and its bucket's start as a `timestamptz` (`instants`) or `timestamp` prints, or
/// `NULL` for the rows whose time is NULL, and which total it is if it is a day's or a month's.
/// What drift checks show as a dimensional key's status.
pub fn display(key: &str, instants: bool) -> String {
    let key = decode(key);
    let level = key.level;
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
    match level {
        Level::Day => shown.push_str(" (day total)"),
        Level::Month => shown.push_str(" (month total)"),
        Level::Fresh | Level::Settled => {}
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

/// The times whose buckets `scans` bounds: beyond them (some 5,500 years from 2000), a bound
/// leaves that side unbounded.
const BOUNDED: i64 = 2_000_000 * USECS_PER_DAY;

/// A range of keys at one level, from the first (inclusive) to the second (exclusive).
pub type Scan = (Level, String, String);

impl Bucketing {
    /// The coarser totals `recalculate()` settles a bucket's counts into (see `Level`): a day's
    /// and a month's for a bucket that divides a day, a month's for a day; none otherwise.
    pub fn totals(&self) -> Vec<(Level, Bucketing)> {
        let with = |width| Bucketing {
            width,
            zone: self.zone.clone(),
        };
        match self.width {
            Width::Fixed(w) if w < USECS_PER_DAY && USECS_PER_DAY % w == 0 => vec![
                (Level::Day, with(Width::Fixed(USECS_PER_DAY))),
                (Level::Month, with(Width::Months(1))),
            ],
            Width::Fixed(USECS_PER_DAY) => vec![(Level::Month, with(Width::Months(1)))],
            _ => Vec::new(),
        }
    }

    /// The key ranges that hold the counts of `[since, until)`: fresh and settled keys of the
    /// buckets that may hold its rows (see `part`: a day wider on both sides for a `timestamp`
    /// or `date` column, not `instants`), except, unless `per_bucket`, where whole months and
    /// days inside the range are read from their totals instead. Fresh and settled keys read are
    /// to be classified with `part`; a total read is inside the range. Keys of rows whose time is
    /// NULL may come along.
    pub fn scans(
        &self,
        since: Option<i64>,
        until: Option<i64>,
        instants: bool,
        per_bucket: bool,
    ) -> Vec<Scan> {
        let margin = if instants { 0 } else { USECS_PER_DAY };
        let near = |t: i64| (-BOUNDED..=BOUNDED).contains(&t);
        let key = |level, t: Option<i64>, first| match t {
            Some(t) => level_bound(level, t),
            None if first => level_bound(level, i64::MIN),
            None => level_end(level),
        };
        // The buckets the bounds may want, as starts (None: unbounded).
        let from = since.filter(|s| near(*s)).map(|s| self.bucket(s - margin));
        let to = until
            .filter(|u| near(*u))
            .map(|u| self.next(self.bucket(u + margin)));
        let fine = |level, from: Option<i64>, to: Option<i64>| -> Scan {
            (level, key(level, from, true), key(level, to, false))
        };
        let mut scans = vec![fine(Level::Fresh, from, to)];
        // The totals' cover: whole periods inside the range, bounds that are infinite or near.
        let usable = |b: Option<i64>, infinite| b.is_none_or(|b| b == infinite || near(b));
        let totals = if per_bucket
            || !usable(since, i64::MIN)
            || !usable(until, i64::MAX)
            || since == Some(i64::MAX)
            || until == Some(i64::MIN)
        {
            Vec::new()
        } else {
            self.totals()
        };
        let since = since.filter(|s| *s != i64::MIN);
        let until = until.filter(|u| *u != i64::MAX);
        let inside = |coarse: &Bucketing| -> Option<(Option<i64>, Option<i64>)> {
            let lo = since.map(|s| {
                let t = s + margin;
                let p = coarse.bucket(t);
                if p < t {
                    coarse.next(p)
                } else {
                    p
                }
            });
            let hi = until.map(|u| coarse.bucket(u - margin));
            match (lo, hi) {
                (Some(lo), Some(hi)) if lo >= hi => None,
                span => Some(span),
            }
        };
        let span_of = |wanted: Level| {
            totals
                .iter()
                .find(|(level, _)| *level == wanted)
                .and_then(|(_, coarse)| inside(coarse))
        };
        let (months, days) = (span_of(Level::Month), span_of(Level::Day));
        let mut total = |level, (lo, hi): (Option<i64>, Option<i64>)| {
            if !matches!((lo, hi), (Some(lo), Some(hi)) if lo >= hi) {
                scans.push((level, key(level, lo, true), key(level, hi, false)));
            }
        };
        if let Some(months) = months {
            total(Level::Month, months);
        }
        if let Some(days) = days {
            // The days around the months (none on a side where both are unbounded), or all.
            match months {
                Some(months) => {
                    if months.0.is_some() {
                        total(Level::Day, (days.0, months.0));
                    }
                    if months.1.is_some() {
                        total(Level::Day, (months.1, days.1));
                    }
                }
                None => total(Level::Day, days),
            }
        }
        // Days span the months they surround.
        let covered = days.or(months);
        match covered {
            None => scans.push(fine(Level::Settled, from, to)),
            Some((lo, hi)) => {
                if let Some(lo) = lo {
                    scans.push(fine(Level::Settled, from, Some(lo)));
                }
                if let Some(hi) = hi {
                    scans.push(fine(Level::Settled, Some(hi), to));
                }
            }
        }
        scans
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
