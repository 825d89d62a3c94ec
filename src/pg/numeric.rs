//! `numeric` values and `numeric[]` arrays made and read without their text form: a counter
//! row's sums are written and read on every flush, and going through `numeric_in`/`numeric_out`
//! and decimal strings cost more than the rest of the flush.
//!
//! Reading relies on numeric's stored form (`src/backend/utils/adt/numeric.c`), unchanged since
//! PostgreSQL 9.1 save for the special values 14 added: a 2-byte header (short form: sign, display
//! scale and weight) or a 4-byte one (sign and display scale, then the weight), then base-10000
//! digits, the first of weight `weight`.

use pgrx::pg_sys;

const SIGN_MASK: u16 = 0xC000;
const NEGATIVE: u16 = 0x4000;
const SHORT: u16 = 0x8000;
const SHORT_NEGATIVE: u16 = 0x2000;
const SHORT_SCALE_MASK: u16 = 0x1F80;
const SHORT_SCALE_SHIFT: u16 = 7;
const SHORT_WEIGHT_NEGATIVE: u16 = 0x0040;
const SHORT_WEIGHT_MASK: u16 = 0x003F;
const LONG_SCALE_MASK: u16 = 0x3FFF;
const NAN: u16 = 0xC000;
const INFINITY: u16 = 0xD000;

/// A finite numeric: `±(digits in base 10000, the first of weight `weight`)`, shown with `scale`
/// decimal places.
pub struct Finite<'a> {
    pub negative: bool,
    /// The digits as stored (native-endian 2-byte integers, not necessarily aligned).
    digits: &'a [u8],
    pub weight: i32,
    pub scale: u32,
}

impl Finite<'_> {
    /// The base-10000 digits, most significant first.
    pub fn digits(&self) -> impl Iterator<Item = u16> + '_ {
        self.digits
            .chunks_exact(2)
            .map(|d| u16::from_ne_bytes([d[0], d[1]]))
    }
}

/// A `numeric` value.
pub enum Numeric<'a> {
    Finite(Finite<'a>),
    NaN,
    Infinity,
    MinusInfinity,
}

/// Reads the `numeric` at `datum` (as stored in a row or an array: it may be toasted or have a
/// short header).
///
/// # Safety
/// `datum` must be a non-NULL `numeric`; the result lives in it or the current memory context.
pub unsafe fn read<'a>(datum: pg_sys::Datum) -> Numeric<'a> {
    let value = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
    let data = pgrx::varlena::vardata_any(value) as *const u8;
    let length = pgrx::varlena::varsize_any_exhdr(value);
    let header = u16::from_ne_bytes([*data, *data.add(1)]);
    let (negative, scale, weight, skip) = match header & SIGN_MASK {
        SHORT => {
            let weight = i32::from(header & SHORT_WEIGHT_MASK);
            let weight = if header & SHORT_WEIGHT_NEGATIVE != 0 {
                weight - i32::from(SHORT_WEIGHT_MASK) - 1
            } else {
                weight
            };
            let scale = (header & SHORT_SCALE_MASK) >> SHORT_SCALE_SHIFT;
            (header & SHORT_NEGATIVE != 0, scale, weight, 2)
        }
        SIGN_MASK => {
            return match header {
                NAN => Numeric::NaN,
                INFINITY => Numeric::Infinity,
                _ => Numeric::MinusInfinity,
            }
        }
        sign => {
            let weight = i16::from_ne_bytes([*data.add(2), *data.add(3)]);
            (
                sign == NEGATIVE,
                header & LONG_SCALE_MASK,
                i32::from(weight),
                4,
            )
        }
    };
    Numeric::Finite(Finite {
        negative,
        digits: std::slice::from_raw_parts(data.add(skip), length - skip),
        weight,
        scale: u32::from(scale),
    })
}

/// `mantissa * 10^-scale` as a `numeric` shown with `scale` decimal places.
pub fn from_scaled(mantissa: i64, scale: u32) -> pg_sys::Datum {
    // SAFETY: both build a numeric in the current memory context from plain integers.
    let numeric = unsafe {
        if scale == 0 {
            pg_sys::int64_to_numeric(mantissa)
        } else {
            pg_sys::int64_div_fast_to_numeric(mantissa, scale as i32)
        }
    };
    pg_sys::Datum::from(numeric)
}

/// A `numeric` from its text form (for what does not fit `from_scaled`).
pub fn from_text(text: &str) -> pg_sys::Datum {
    let value = <pgrx::AnyNumeric as std::str::FromStr>::from_str(text).expect("a decimal");
    pgrx::IntoDatum::into_datum(value).expect("a numeric is not NULL")
}

/// A one-dimensional `numeric[]` of `elements` (none NULL).
pub fn array(elements: &mut [pg_sys::Datum]) -> pg_sys::Datum {
    // SAFETY: the elements are numerics; numeric is a 4-byte-aligned varlena.
    let array = unsafe {
        pg_sys::construct_array(
            elements.as_mut_ptr(),
            elements.len() as i32,
            pg_sys::NUMERICOID,
            -1,
            false,
            pg_sys::TYPALIGN_INT as std::ffi::c_char,
        )
    };
    pg_sys::Datum::from(array)
}

/// The elements of a `numeric[]` in order (a NULL element is none), for `read`.
///
/// # Safety
/// `datum` must be a non-NULL `numeric[]`; the elements live in it or the current memory context.
pub unsafe fn elements(datum: pg_sys::Datum) -> Vec<Option<pg_sys::Datum>> {
    let array = pg_sys::pg_detoast_datum(datum.cast_mut_ptr()) as *mut pg_sys::ArrayType;
    let mut values = std::ptr::null_mut();
    let mut nulls = std::ptr::null_mut();
    let mut count = 0;
    pg_sys::deconstruct_array(
        array,
        pg_sys::NUMERICOID,
        -1,
        false,
        pg_sys::TYPALIGN_INT as std::ffi::c_char,
        &mut values,
        &mut nulls,
        &mut count,
    );
    (0..count as usize)
        .map(|i| (!*nulls.add(i)).then(|| *values.add(i)))
        .collect()
}
