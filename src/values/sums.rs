//! Exact sums of a column per group, kept the way `sum()` computes them and reversible, so that
//! a deleted row can be taken out again. Each summed column of a group is five numbers:
//! - the sum of its finite values, a decimal with no bound on its digits (no overflow, no float);
//! - how many values are not NULL (`sum()` is NULL when none is);
//! - how many are `NaN`, `Infinity` and `-Infinity` (numeric has them; they cannot be added into
//!   the finite part and taken out again, so they are counted: one `NaN`, or both infinities, make
//!   the sum `NaN`; one infinity makes it that infinity).
//!
//! A counter row stores them as `numeric[]`, five elements per summed column in order.

use crate::pg::errors;
use crate::pg::numeric::{self, Numeric};
use num_bigint::BigInt;
use pgrx::pg_sys;
use pgrx::AnyNumeric;
use std::cmp::Ordering;
use std::str::FromStr;

/// The numbers a counter row stores per summed column.
pub const PARTS: usize = 5;

/// An integer, in an `i128` while it fits (nearly always: a sum of bigints needs 2^64 rows to
/// leave it), else unbounded. Never `Big` when it fits, so equal values compare equal.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Mantissa {
    Small(i128),
    Big(BigInt),
}

impl Default for Mantissa {
    fn default() -> Self {
        Mantissa::Small(0)
    }
}

impl Mantissa {
    fn big(&self) -> BigInt {
        match self {
            Mantissa::Small(m) => BigInt::from(*m),
            Mantissa::Big(m) => m.clone(),
        }
    }

    fn of_big(m: BigInt) -> Mantissa {
        i128::try_from(&m).map_or(Mantissa::Big(m), Mantissa::Small)
    }

    /// `self * 10^exponent`.
    fn shifted(&self, exponent: u32) -> Mantissa {
        if let Mantissa::Small(m) = self {
            if let Some(shifted) = 10i128.checked_pow(exponent).and_then(|p| m.checked_mul(p)) {
                return Mantissa::Small(shifted);
            }
        }
        Mantissa::Big(self.big() * BigInt::from(10u32).pow(exponent))
    }

    /// `self + other * sign`.
    fn plus(&self, other: &Mantissa, sign: i64) -> Mantissa {
        if let (Mantissa::Small(a), Mantissa::Small(b)) = (self, other) {
            if let Some(sum) = b
                .checked_mul(i128::from(sign))
                .and_then(|b| a.checked_add(b))
            {
                return Mantissa::Small(sum);
            }
        }
        Mantissa::of_big(self.big() + other.big() * sign)
    }
}

impl std::fmt::Display for Mantissa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mantissa::Small(m) => write!(f, "{m}"),
            Mantissa::Big(m) => write!(f, "{m}"),
        }
    }
}

/// A decimal: `mantissa * 10^-scale`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Decimal {
    mantissa: Mantissa,
    scale: u32,
}

impl Decimal {
    #[cfg(any(test, feature = "pg_test"))]
    fn parse(text: &str) -> Decimal {
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = format!("{whole}{fraction}");
        let mantissa = i128::from_str(&digits).map_or_else(
            |_| Mantissa::Big(BigInt::from_str(&digits).expect("numeric output is a decimal")),
            Mantissa::Small,
        );
        Decimal {
            mantissa,
            scale: fraction.len() as u32,
        }
    }

    /// A finite `numeric`, read from its digits.
    fn of_numeric(value: &numeric::Finite) -> Decimal {
        let mut mantissa = Mantissa::default();
        let mut count = 0;
        for digit in value.digits() {
            mantissa = mantissa.shifted(4).plus(&Mantissa::Small(digit.into()), 1);
            count += 1;
        }
        // The last digit has weight `weight - count + 1`: the value is `mantissa * 10000^that`,
        // shown with `scale` places. Digits past the scale are zeros, so dividing is exact.
        let exponent = 4 * (value.weight - count + 1) + value.scale as i32;
        let mantissa = match u32::try_from(exponent) {
            Ok(up) => mantissa.shifted(up),
            Err(_) => {
                let down = exponent.unsigned_abs();
                match (mantissa, 10i128.checked_pow(down)) {
                    (Mantissa::Small(m), Some(d)) => Mantissa::Small(m / d),
                    (Mantissa::Small(_), None) => Mantissa::Small(0),
                    (Mantissa::Big(m), _) => Mantissa::of_big(m / BigInt::from(10u32).pow(down)),
                }
            }
        };
        Decimal {
            mantissa: if value.negative {
                Mantissa::default().plus(&mantissa, -1)
            } else {
                mantissa
            },
            scale: value.scale,
        }
    }

    /// As a `numeric` shown with `scale` places.
    fn numeric(&self) -> pg_sys::Datum {
        match &self.mantissa {
            Mantissa::Small(m) => match i64::try_from(*m) {
                Ok(m) => numeric::from_scaled(m, self.scale),
                Err(_) => numeric::from_text(&self.to_string()),
            },
            Mantissa::Big(_) => numeric::from_text(&self.to_string()),
        }
    }

    fn add(&mut self, other: &Decimal, sign: i64) {
        let scale = self.scale.max(other.scale);
        self.mantissa = self
            .mantissa
            .shifted(scale - self.scale)
            .plus(&other.mantissa.shifted(scale - other.scale), sign);
        self.scale = scale;
    }

    fn is_zero(&self) -> bool {
        self.mantissa == Mantissa::Small(0)
    }

    /// A count stored as a numeric.
    fn integer(&self) -> i64 {
        match &self.mantissa {
            Mantissa::Small(m) => 10i128
                .checked_pow(self.scale)
                .and_then(|p| i64::try_from(m / p).ok()),
            Mantissa::Big(_) => None,
        }
        .unwrap_or_else(|| errors::counters_altered("holds a count of sums out of range"))
    }
}

impl std::fmt::Display for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.mantissa.to_string();
        let (sign, digits) = match text.strip_prefix('-') {
            Some(digits) => ("-", digits),
            None => ("", text.as_str()),
        };
        let scale = self.scale as usize;
        if scale == 0 {
            return write!(f, "{sign}{digits}");
        }
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (whole, fraction) = padded.split_at(padded.len() - scale);
        write!(f, "{sign}{whole}.{fraction}")
    }
}

/// The running sum of one column over some rows (or the change of it a statement makes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sum {
    finite: Decimal,
    values: i64,
    nan: i64,
    infinity: i64,
    minus_infinity: i64,
}

/// The types a column may have to be summed (a domain counts as its base type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Summand {
    Int2,
    Int4,
    Int8,
    Numeric,
}

/// How values of `type_oid` are summed; `None` if they cannot be summed exactly.
pub fn summand(type_oid: pg_sys::Oid) -> Option<Summand> {
    // SAFETY: a catalog lookup on a type OID.
    match unsafe { pg_sys::getBaseType(type_oid) } {
        pg_sys::INT2OID => Some(Summand::Int2),
        pg_sys::INT4OID => Some(Summand::Int4),
        pg_sys::INT8OID => Some(Summand::Int8),
        pg_sys::NUMERICOID => Some(Summand::Numeric),
        _ => None,
    }
}

impl Sum {
    /// `sign` (+1 or -1) times `value`, a value of a summed column of type `summand`, read as it
    /// is stored (no text on the way). NULL adds nothing.
    ///
    /// # Safety
    /// `value` must be a value of that type, or None for NULL.
    pub unsafe fn of_datum(value: Option<pg_sys::Datum>, summand: Summand, sign: i64) -> Sum {
        let mut sum = Sum::default();
        let Some(value) = value else {
            return sum;
        };
        sum.values = sign;
        let integer = match summand {
            Summand::Int2 => i64::from(value.value() as i16),
            Summand::Int4 => i64::from(value.value() as i32),
            Summand::Int8 => value.value() as i64,
            Summand::Numeric => {
                match numeric::read(value) {
                    Numeric::Finite(f) => sum.finite.add(&Decimal::of_numeric(&f), sign),
                    Numeric::NaN => sum.nan = sign,
                    Numeric::Infinity => sum.infinity = sign,
                    Numeric::MinusInfinity => sum.minus_infinity = sign,
                }
                return sum;
            }
        };
        sum.finite.mantissa = Mantissa::Small(i128::from(integer) * i128::from(sign));
        sum
    }

    /// `sign` (+1 or -1) times one value of a summed column, by its text form (an integer's, or
    /// numeric's output, which has no exponent). NULL adds nothing. The unit tests' way in.
    #[cfg(any(test, feature = "pg_test"))]
    pub fn of(text: Option<&str>, sign: i64) -> Sum {
        let mut sum = Sum::default();
        let Some(text) = text else {
            return sum;
        };
        sum.values = sign;
        match text {
            "NaN" => sum.nan = sign,
            "Infinity" => sum.infinity = sign,
            "-Infinity" => sum.minus_infinity = sign,
            _ => sum.finite.add(&Decimal::parse(text), sign),
        }
        sum
    }

    pub fn add(&mut self, other: &Sum) {
        self.finite.add(&other.finite, 1);
        self.values += other.values;
        self.nan += other.nan;
        self.infinity += other.infinity;
        self.minus_infinity += other.minus_infinity;
    }

    /// The sum that undoes this one.
    pub fn negated(&self) -> Sum {
        let mut zero = Sum::default();
        zero.finite.add(&self.finite, -1);
        Sum {
            finite: zero.finite,
            values: -self.values,
            nan: -self.nan,
            infinity: -self.infinity,
            minus_infinity: -self.minus_infinity,
        }
    }

    pub fn is_zero(&self) -> bool {
        self.finite.is_zero()
            && self.values == 0
            && self.nan == 0
            && self.infinity == 0
            && self.minus_infinity == 0
    }

    /// The five numbers a counter row stores.
    pub fn parts(&self) -> [String; PARTS] {
        [
            self.finite.to_string(),
            self.values.to_string(),
            self.nan.to_string(),
            self.infinity.to_string(),
            self.minus_infinity.to_string(),
        ]
    }

    /// From the five numbers a counter row stores, as text (the unit tests' way back).
    #[cfg(any(test, feature = "pg_test"))]
    pub fn from_parts(parts: &[String]) -> Sum {
        let count = |i: usize| i64::from_str(&parts[i]).expect("a count");
        Sum {
            finite: Decimal::parse(&parts[0]),
            values: count(1),
            nan: count(2),
            infinity: count(3),
            minus_infinity: count(4),
        }
    }

    /// What `sum()` returns: NULL with no value, else NaN, an infinity or the finite sum, as
    /// numeric text.
    pub fn value(&self) -> Option<String> {
        if self.values == 0 {
            return None;
        }
        Some(
            match (
                self.nan > 0 || (self.infinity > 0 && self.minus_infinity > 0),
                self.infinity.cmp(&0),
                self.minus_infinity.cmp(&0),
            ) {
                (true, _, _) => "NaN".into(),
                (false, Ordering::Greater, _) => "Infinity".into(),
                (false, _, Ordering::Greater) => "-Infinity".into(),
                _ => self.finite.to_string(),
            },
        )
    }

    /// The value as JSON: a number (exact, any number of digits), NULL, or for NaN and the
    /// infinities, which JSON numbers cannot be, a string.
    pub fn json(&self) -> serde_json::Value {
        match self.value() {
            None => serde_json::Value::Null,
            Some(v) if v.ends_with("Infinity") || v == "NaN" => serde_json::Value::String(v),
            Some(v) => serde_json::Value::Number(
                serde_json::Number::from_str(&v).expect("a decimal is a JSON number"),
            ),
        }
    }
}

/// The sums of one group as `{"column": sum}` (see `Sum::json`), for `columns` in order.
pub fn json_object(columns: &[String], sums: &[Sum]) -> pgrx::JsonB {
    pgrx::JsonB(serde_json::Value::Object(
        columns
            .iter()
            .cloned()
            .zip(sums.iter().map(Sum::json))
            .collect(),
    ))
}

/// SQL adding up, over a group's rows, their `numeric[]` `array` of `columns` summed columns part
/// by part (as `Sum::add` does); NULL with no summed column.
pub fn total_sql(array: &str, columns: usize) -> String {
    parts_sql(columns, |i| {
        format!("COALESCE(pg_catalog.sum({array}[{i}]), 0)")
    })
}

/// SQL adding two `numeric[]` of `columns` summed columns part by part, a NULL array as zeros;
/// NULL with no summed column.
pub fn plus_sql(a: &str, b: &str, columns: usize) -> String {
    parts_sql(columns, |i| {
        format!("COALESCE({a}[{i}], 0) OPERATOR(pg_catalog.+) COALESCE({b}[{i}], 0)")
    })
}

/// The `numeric[]` of `columns` summed columns whose part `i` (1-based) is `part(i)`; NULL with no
/// summed column.
fn parts_sql(columns: usize, part: impl Fn(usize) -> String) -> String {
    if columns == 0 {
        return "NULL::pg_catalog.numeric[]".into();
    }
    let each: Vec<String> = (1..=columns * PARTS).map(part).collect();
    format!("ARRAY[{}]::pg_catalog.numeric[]", each.join(", "))
}

/// Sums of several columns as the text of the `numeric[]` a counter row stores (NULL for none).
pub fn to_text(sums: &[Sum]) -> Option<String> {
    (!sums.is_empty()).then(|| {
        let parts: Vec<String> = sums.iter().flat_map(|s| s.parts()).collect();
        format!("{{{}}}", parts.join(","))
    })
}

/// Sums of several columns to the `numeric[]` a counter row stores (NULL for none).
pub fn to_datum(sums: &[Sum]) -> Option<pg_sys::Datum> {
    if sums.is_empty() {
        return None;
    }
    let count = |n: i64| numeric::from_scaled(n, 0);
    let mut parts: Vec<pg_sys::Datum> = sums
        .iter()
        .flat_map(|s| {
            [
                s.finite.numeric(),
                count(s.values),
                count(s.nan),
                count(s.infinity),
                count(s.minus_infinity),
            ]
        })
        .collect();
    Some(numeric::array(&mut parts))
}

/// The `numeric[]` of a counter row back to its sums (none for NULL).
///
/// # Safety
/// `datum` is the `sums` of a counter row, or None.
pub unsafe fn from_datum(datum: Option<pg_sys::Datum>) -> Vec<Sum> {
    datum.map_or_else(Vec::new, |d| of_parts(numeric::elements(d)))
}

/// A `numeric[]` of sums (a counter row's, or one the SQL of `Tracked::sums_sql` computed) back
/// to its sums (none for NULL).
pub fn from_numerics(numerics: Option<Vec<AnyNumeric>>) -> Vec<Sum> {
    let parts = numerics
        .into_iter()
        .flatten()
        .map(pgrx::IntoDatum::into_datum);
    // SAFETY: each part is a numeric datum of the current memory context.
    unsafe { of_parts(parts) }
}

/// Sums from the five numbers a counter row stores per summed column, read from their stored
/// form.
///
/// # Safety
/// Each part is a `numeric` datum or None (NULL).
unsafe fn of_parts(parts: impl IntoIterator<Item = Option<pg_sys::Datum>>) -> Vec<Sum> {
    let parts: Vec<Decimal> = parts
        .into_iter()
        .map(|part| match part.map(|p| numeric::read(p)) {
            Some(Numeric::Finite(value)) => Decimal::of_numeric(&value),
            _ => errors::counters_altered("holds sums that are not finite numbers"),
        })
        .collect();
    parts
        .chunks(PARTS)
        .map(|p| {
            let count = |i: usize| p.get(i).map_or(0, Decimal::integer);
            Sum {
                finite: p.first().cloned().unwrap_or_default(),
                values: count(1),
                nan: count(2),
                infinity: count(3),
                minus_infinity: count(4),
            }
        })
        .collect()
}

/// Adds `deltas` into `into` column by column (into may be shorter: it grows).
pub fn add_all(into: &mut Vec<Sum>, deltas: &[Sum]) {
    if into.len() < deltas.len() {
        into.resize(deltas.len(), Sum::default());
    }
    for (sum, delta) in into.iter_mut().zip(deltas) {
        sum.add(delta);
    }
}
