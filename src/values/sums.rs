//! Exact sums of a column per group, kept the way `sum()` computes them and reversible, so that
//! a deleted row can be taken out again. Each summed column of a group is five numbers:
//! - the sum of its finite values, a decimal with no bound on its digits (no overflow, no float);
//! - how many values are not NULL (`sum()` is NULL when none is);
//! - how many are `NaN`, `Infinity` and `-Infinity` (numeric has them; they cannot be added into
//!   the finite part and taken out again, so they are counted: one `NaN`, or both infinities, make
//!   the sum `NaN`; one infinity makes it that infinity).
//!
//! A counter row stores them as `numeric[]`, five elements per summed column in order.

use num_bigint::BigInt;
use pgrx::pg_sys;
use pgrx::AnyNumeric;
use std::cmp::Ordering;
use std::str::FromStr;

/// The numbers a counter row stores per summed column.
pub const PARTS: usize = 5;

/// A decimal: `mantissa * 10^-scale`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Decimal {
    mantissa: BigInt,
    scale: u32,
}

impl Decimal {
    fn parse(text: &str) -> Decimal {
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        Decimal {
            mantissa: BigInt::from_str(&format!("{whole}{fraction}"))
                .expect("numeric output is a decimal number"),
            scale: fraction.len() as u32,
        }
    }

    fn rescaled(&self, scale: u32) -> BigInt {
        &self.mantissa * BigInt::from(10u32).pow(scale - self.scale)
    }

    fn add(&mut self, other: &Decimal, sign: i64) {
        let scale = self.scale.max(other.scale);
        self.mantissa = self.rescaled(scale) + other.rescaled(scale) * sign;
        self.scale = scale;
    }

    fn is_zero(&self) -> bool {
        self.mantissa == BigInt::from(0)
    }
}

impl std::fmt::Display for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let digits = self.mantissa.magnitude().to_string();
        let sign = if self.mantissa.sign() == num_bigint::Sign::Minus {
            "-"
        } else {
            ""
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

impl Sum {
    /// `sign` (+1 or -1) times one value of a summed column: an integer or a numeric, by its
    /// text form (numeric's output has no exponent). NULL adds nothing.
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

    /// From the five numbers a counter row stores.
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
    let parts: Vec<AnyNumeric> = sums
        .iter()
        .flat_map(|s| s.parts())
        .map(|p| AnyNumeric::from_str(&p).expect("numeric input of a decimal"))
        .collect();
    pgrx::IntoDatum::into_datum(parts)
}

/// The `numeric[]` of a counter row back to its sums (none for NULL).
///
/// # Safety
/// `datum` is the `sums` of a counter row, or None.
pub unsafe fn from_datum(datum: Option<pg_sys::Datum>) -> Vec<Sum> {
    from_numerics(datum.and_then(|d| <Vec<AnyNumeric> as pgrx::FromDatum>::from_datum(d, false)))
}

/// A `numeric[]` of sums (a counter row's, or one the SQL of `Tracked::sums_sql` computed) back
/// to its sums (none for NULL).
pub fn from_numerics(numerics: Option<Vec<AnyNumeric>>) -> Vec<Sum> {
    let parts: Vec<String> = numerics
        .map(|v| v.iter().map(|n| n.to_string()).collect())
        .unwrap_or_default();
    parts.chunks(PARTS).map(Sum::from_parts).collect()
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
