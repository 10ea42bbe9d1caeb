//! Field encodings of AWP1.md §3: nom parsers for reading, `BufMut` writers
//! for writing.
//!
//! Every parser takes the field's name, so that an error says which field
//! broke (`lat_e7 out of range ...`), and works on complete input: the frame
//! layer has already buffered the whole payload, so running out of bytes is
//! [`Problem::Truncated`], never "need more".

use std::borrow::Cow;

use bytes::BufMut;
use nom::IResult;

use crate::error::{FieldError, Problem};

/// The parsers' result: nom's `IResult`, with a field and its problem as the error.
pub(crate) type Res<'a, T> = IResult<&'a [u8], T, FieldError>;

#[inline]
#[cold]
pub(crate) fn fail<T>(field: &'static str, problem: Problem) -> Res<'static, T> {
    Err(nom::Err::Error(FieldError::new(field, problem)))
}

/// Unwraps a nom result into the field error (complete parsers only produce
/// `Err::Error`/`Err::Failure`).
#[inline]
pub(crate) fn field_error(e: nom::Err<FieldError>) -> FieldError {
    match e {
        nom::Err::Error(e) | nom::Err::Failure(e) => e,
        // Unreachable with complete parsers; answered as truncation rather than a panic.
        nom::Err::Incomplete(_) => FieldError::new("", Problem::Truncated),
    }
}

/// Reads `N` bytes. (nom's `be_*` parsers go through its generic `Input`
/// trait, whose `take_from` did not inline into the record loop: measured at
/// 4–8% of BATCH decoding. `split_first_chunk` compiles to a length check
/// and a load.)
#[inline(always)]
fn fixed<'a, const N: usize>(input: &'a [u8], field: &'static str) -> Res<'a, [u8; N]> {
    match input.split_first_chunk::<N>() {
        Some((bytes, rest)) => Ok((rest, *bytes)),
        None => fail(field, Problem::Truncated),
    }
}

#[inline(always)]
pub(crate) fn u8_field<'a>(input: &'a [u8], field: &'static str) -> Res<'a, u8> {
    fixed::<1>(input, field).map(|(rest, b)| (rest, b[0]))
}

#[inline(always)]
pub(crate) fn u16_field<'a>(input: &'a [u8], field: &'static str) -> Res<'a, u16> {
    fixed(input, field).map(|(rest, b)| (rest, u16::from_be_bytes(b)))
}

#[inline(always)]
pub(crate) fn u64_field<'a>(input: &'a [u8], field: &'static str) -> Res<'a, u64> {
    fixed(input, field).map(|(rest, b)| (rest, u64::from_be_bytes(b)))
}

#[inline(always)]
pub(crate) fn i32_field<'a>(input: &'a [u8], field: &'static str) -> Res<'a, i32> {
    fixed(input, field).map(|(rest, b)| (rest, i32::from_be_bytes(b)))
}

#[inline(always)]
pub(crate) fn f64_field<'a>(input: &'a [u8], field: &'static str) -> Res<'a, f64> {
    fixed(input, field).map(|(rest, b)| (rest, f64::from_be_bytes(b)))
}

#[inline(always)]
pub(crate) fn take_field<'a>(input: &'a [u8], len: u64, field: &'static str) -> Res<'a, &'a [u8]> {
    // nom's `take` with the length check done on u64: a length that does not
    // fit in usize cannot be satisfied by any input.
    match usize::try_from(len).ok().and_then(|n| input.split_at_checked(n)) {
        Some((taken, rest)) => Ok((rest, taken)),
        None => fail(field, Problem::Truncated),
    }
}

/// An unsigned LEB128 varint: at most 10 bytes, minimal, fits in u64.
#[inline(always)]
pub(crate) fn varint<'a>(input: &'a [u8], field: &'static str) -> Res<'a, u64> {
    // One-byte values are by far the most common (kinds, lengths, small counts).
    match input.first() {
        Some(&b) if b < 0x80 => Ok((&input[1..], u64::from(b))),
        _ => varint_multi(input, field),
    }
}

#[inline(never)]
fn varint_multi<'a>(input: &'a [u8], field: &'static str) -> Res<'a, u64> {
    let mut value = 0u64;
    for (i, &b) in input.iter().enumerate().take(10) {
        if i == 9 && b > 1 {
            // The tenth byte holds only bit 63.
            let problem = if b & 0x80 != 0 {
                Problem::VarintTooLong
            } else {
                Problem::VarintOverflow
            };
            return fail(field, problem);
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if b == 0 {
                return fail(field, Problem::NonMinimalVarint);
            }
            return Ok((&input[i + 1..], value));
        }
    }
    fail(field, Problem::Truncated)
}

/// A zigzag-mapped signed varint.
#[inline(always)]
pub(crate) fn svarint<'a>(input: &'a [u8], field: &'static str) -> Res<'a, i64> {
    let (rest, raw) = varint(input, field)?;
    Ok((rest, unzigzag(raw)))
}

#[inline]
pub(crate) fn unzigzag(raw: u64) -> i64 {
    ((raw >> 1) as i64) ^ -((raw & 1) as i64)
}

#[inline]
pub(crate) fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

/// A varint length and that many bytes, the length within `min..=max`.
#[inline(always)]
pub(crate) fn bytes_field<'a>(input: &'a [u8], field: &'static str, min: u64, max: u64) -> Res<'a, &'a [u8]> {
    let (rest, len) = varint(input, field)?;
    if len < min || len > max {
        return fail(field, Problem::Length { len, min, max });
    }
    take_field(rest, len, field)
}

/// A varint length and that many bytes of UTF-8, the length within `min..=max`.
#[inline(always)]
pub(crate) fn str_field<'a>(input: &'a [u8], field: &'static str, min: u64, max: u64) -> Res<'a, &'a str> {
    let (rest, raw) = bytes_field(input, field, min, max)?;
    match std::str::from_utf8(raw) {
        Ok(s) => Ok((rest, s)),
        Err(_) => fail(field, Problem::InvalidUtf8),
    }
}

/// Fails with [`Problem::TrailingBytes`] unless the input is used up.
#[inline]
pub(crate) fn end(input: &[u8], field: &'static str) -> Result<(), FieldError> {
    if input.is_empty() {
        Ok(())
    } else {
        Err(FieldError::new(field, Problem::TrailingBytes))
    }
}

/// Checks a length against `min..=max` for the encoder and `check` functions.
#[inline]
pub(crate) fn check_len(field: &'static str, len: usize, min: u64, max: u64) -> Result<(), FieldError> {
    let len = len as u64;
    if len < min || len > max {
        Err(FieldError::new(field, Problem::Length { len, min, max }))
    } else {
        Ok(())
    }
}

/// Checks an integer against `min..=max`.
#[inline]
pub(crate) fn check_range(
    field: &'static str,
    value: impl Into<i128>,
    min: impl Into<i128>,
    max: impl Into<i128>,
) -> Result<(), FieldError> {
    let (value, min, max) = (value.into(), min.into(), max.into());
    if value < min || value > max {
        Err(FieldError::new(field, Problem::Range { value, min, max }))
    } else {
        Ok(())
    }
}

/// The number of bytes `put_varint` writes for `v`.
#[inline]
pub(crate) fn varint_len(v: u64) -> usize {
    // 1 + floor(bits/7), with 0 taking one byte.
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

#[inline]
pub(crate) fn put_varint(dst: &mut impl BufMut, mut v: u64) {
    while v >= 0x80 {
        dst.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    dst.put_u8(v as u8);
}

#[inline]
pub(crate) fn put_svarint(dst: &mut impl BufMut, v: i64) {
    put_varint(dst, zigzag(v));
}

#[inline]
pub(crate) fn put_bytes(dst: &mut impl BufMut, b: &[u8]) {
    put_varint(dst, b.len() as u64);
    dst.put_slice(b);
}

#[inline]
pub(crate) fn put_str(dst: &mut impl BufMut, s: &str) {
    put_bytes(dst, s.as_bytes());
}

/// The encoded size of a string or bytes field.
#[inline]
pub(crate) fn bytes_len(len: usize) -> usize {
    varint_len(len as u64) + len
}

/// Shortens `text` to at most `max` bytes at a character boundary, for the
/// free-text fields a server fills in (ACK and ERROR messages, GOAWAY reasons).
pub fn truncate_utf8(text: Cow<'_, str>, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return text;
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    match text {
        Cow::Borrowed(s) => Cow::Borrowed(&s[..cut]),
        Cow::Owned(mut s) => {
            s.truncate(cut);
            Cow::Owned(s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, v);
        out
    }

    #[test]
    fn varint_round_trips_and_lengths_agree() {
        for v in [
            0,
            1,
            127,
            128,
            300,
            16383,
            16384,
            u32::MAX as u64,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let bytes = enc(v);
            assert_eq!(bytes.len(), varint_len(v), "{v}");
            assert_eq!(varint(&bytes, "v"), Ok((&[][..], v)));
        }
        assert_eq!(enc(u64::MAX).len(), 10);
    }

    #[test]
    fn varint_rejects_what_the_spec_forbids() {
        let err = |b: &[u8]| field_error(varint(b, "v").unwrap_err()).problem;
        assert_eq!(err(&[0x81, 0x00]), Problem::NonMinimalVarint);
        assert_eq!(err(&[0x80]), Problem::Truncated);
        assert_eq!(err(&[]), Problem::Truncated);
        assert_eq!(err(&[0xff; 11]), Problem::VarintTooLong);
        let mut over = vec![0xff; 9];
        over.push(0x02);
        assert_eq!(err(&over), Problem::VarintOverflow);
    }

    #[test]
    fn zigzag_matches_the_spec_formula() {
        for n in [0i64, -1, 1, -2, 2, i64::MIN, i64::MAX, -1500] {
            assert_eq!(unzigzag(zigzag(n)), n);
        }
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
        assert_eq!(zigzag(i64::MIN), u64::MAX);
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate_utf8(Cow::Borrowed("héllo"), 2), "h");
        assert_eq!(truncate_utf8(Cow::Owned("héllo".into()), 3), "hé");
        assert_eq!(truncate_utf8(Cow::Borrowed("abc"), 5), "abc");
    }
}
