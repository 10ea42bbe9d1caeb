//! The text forms items use, written into a caller's `String` without
//! allocating: JSON strings, DynamoDB numbers (`N` values are decimal text),
//! zero-padded key parts and base64.

use base64::Engine as _;

/// Appends `s` as a JSON string literal, quotes included (RFC 8259 §7:
/// `"` and `\` escaped, control characters as `\n`, `\t`, ... or `\u00XX`).
/// Most strings need no escaping; they are checked eight bytes at a time
/// and copied whole.
#[inline]
pub fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let clean = clean_prefix(s.as_bytes());
    if clean == s.len() {
        out.push_str(s);
    } else {
        escape_from(out, s, clean);
    }
    out.push('"');
}

/// The length of the longest prefix of `bytes` that needs no escaping. It
/// ends at the end or at an escaped byte, which is ASCII, so it is a
/// character boundary.
#[inline]
fn clean_prefix(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while let Some(chunk) = bytes[i..].first_chunk::<8>() {
        let w = u64::from_le_bytes(*chunk);
        // A byte's high bit in `hits`: it is below 0x20, or '"', or '\'.
        // Exact for ASCII bytes; bytes of 0x80 and above never match.
        let below_space = w.wrapping_sub(ONES * 0x20) & !w;
        let quote = w ^ (ONES * u64::from(b'"'));
        let backslash = w ^ (ONES * u64::from(b'\\'));
        let is_quote = quote.wrapping_sub(ONES) & !quote;
        let is_backslash = backslash.wrapping_sub(ONES) & !backslash;
        if (below_space | is_quote | is_backslash) & HIGH != 0 {
            break;
        }
        i += 8;
    }
    while i < bytes.len() && !needs_escape(bytes[i]) {
        i += 1;
    }
    i
}

#[inline]
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Appends `s` escaped, knowing that `s[..start]` needs no escaping.
#[cold]
fn escape_from(out: &mut String, s: &str, start: usize) {
    out.push_str(&s[..start]);
    let mut from = start;
    for (i, &b) in s.as_bytes().iter().enumerate().skip(start) {
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Every byte matched above is ASCII, so `i` is a character boundary.
        out.push_str(&s[from..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(escape);
        }
        from = i + 1;
    }
    out.push_str(&s[from..]);
}

/// Appends `v` in decimal.
#[inline]
pub fn push_u64(out: &mut String, v: u64) {
    out.push_str(itoa::Buffer::new().format(v));
}

/// Appends `v` in decimal.
#[inline]
pub fn push_i64(out: &mut String, v: i64) {
    out.push_str(itoa::Buffer::new().format(v));
}

/// Appends `v` in decimal, zero-padded on the left to `width` digits.
#[inline]
pub fn push_padded(out: &mut String, v: u64, width: usize) {
    push_padded_digits(out, itoa::Buffer::new().format(v), width);
}

/// Appends `digits`, zero-padded on the left to `width`.
#[inline]
pub fn push_padded_digits(out: &mut String, digits: &str, width: usize) {
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(digits);
}

/// Appends `v / 10^7` in decimal, exactly and without trailing zeros:
/// 525200066 → `52.5200066`, 134049540 → `13.404954`, 0 → `0`.
pub fn push_e7(out: &mut String, v: i32) {
    let abs = i64::from(v).unsigned_abs();
    let (int, frac) = (abs / 10_000_000, abs % 10_000_000);
    if v < 0 {
        out.push('-');
    }
    push_u64(out, int);
    if frac == 0 {
        return;
    }
    out.push('.');
    let mut frac = frac;
    let mut width = 7;
    while frac % 10 == 0 {
        frac /= 10;
        width -= 1;
    }
    push_padded(out, frac, width);
}

/// Appends the shortest decimal that reads back as the same `f64` (Ryū's
/// shortest round-trip digits), plain when the decimal exponent is in
/// -6..=20 (as JavaScript prints numbers), else `<mantissa>E<exponent>`:
/// 0.1 → `0.1`, 1e21 → `1E21`, 1e-7 → `1E-7`, -2.5e-100 → `-2.5E-100`;
/// ±0 → `0`. `v` must be finite (EVENT floats are); a value that is not
/// is written `0`, which callers never reach.
pub fn push_f64(out: &mut String, v: f64) {
    if v == 0.0 || !v.is_finite() {
        out.push('0');
        return;
    }
    let mut ryu = ryu::Buffer::new();
    let d = Digits::of(ryu.format_finite(v.abs()));
    push_decimal(out, v < 0.0, d.as_str(), d.exp);
}

/// Appends `±d.ddd × 10^exp` (`digits` without leading or trailing zeros)
/// plain when `exp` is in -6..=20, else as `<mantissa>E<exponent>`.
fn push_decimal(out: &mut String, negative: bool, digits: &str, exp: i32) {
    if negative {
        out.push('-');
    }
    if (0..=20).contains(&exp) {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            push_padded_right(out, digits, int_len);
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    } else if (-6..0).contains(&exp) {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(digits);
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('E');
        push_i64(out, i64::from(exp));
    }
}

/// `digits` then zeros up to `width`.
fn push_padded_right(out: &mut String, digits: &str, width: usize) {
    out.push_str(digits);
    for _ in digits.len()..width {
        out.push('0');
    }
}

/// A positive decimal as its significant digits (no leading or trailing
/// zeros) and the decimal exponent of the first: `d.ddd × 10^exp`.
struct Digits {
    buf: [u8; 24],
    len: usize,
    exp: i32,
}

impl Digits {
    /// Reads Ryū's output for a positive finite value: `123.45`, `0.0012`,
    /// `1.5e-7`, `1e21`.
    fn of(text: &str) -> Digits {
        let (mantissa, exp) = match text.split_once('e') {
            Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
            None => (text, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let mut d = Digits {
            buf: [b'0'; 24],
            len: 0,
            exp: 0,
        };
        let int = int.trim_start_matches('0');
        let significant = if int.is_empty() {
            // 0.000ddd: the first significant digit is in the fraction.
            let frac_digits = frac.trim_start_matches('0');
            d.exp = exp - (frac.len() - frac_digits.len()) as i32 - 1;
            frac_digits.bytes().chain("".bytes())
        } else {
            d.exp = exp + int.len() as i32 - 1;
            int.bytes().chain(frac.bytes())
        };
        for b in significant.take(d.buf.len()) {
            d.buf[d.len] = b;
            d.len += 1;
        }
        while d.len > 1 && d.buf[d.len - 1] == b'0' {
            d.len -= 1;
        }
        d
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("0")
    }
}

/// Appends `data` in standard base64 with padding (RFC 4648 §4), as
/// DynamoDB JSON writes `B` values.
pub fn push_base64(out: &mut String, data: &[u8]) {
    base64::engine::general_purpose::STANDARD.encode_string(data, out);
}

/// `data` in standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Base64 (standard alphabet, padded) decoded; `None` if it is not.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// The number of decimal digits DynamoDB counts for a number's size.
pub(crate) fn digits_u64(v: u64) -> usize {
    itoa::Buffer::new().format(v).len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e7(v: i32) -> String {
        let mut s = String::new();
        push_e7(&mut s, v);
        s
    }

    fn f64_text(v: f64) -> String {
        let mut s = String::new();
        push_f64(&mut s, v);
        s
    }

    #[test]
    fn e7_formatting() {
        for (v, s) in [
            (525_200_066, "52.5200066"),
            (134_049_540, "13.404954"),
            (-338_688_197, "-33.8688197"),
            (0, "0"),
            (1, "0.0000001"),
            (-1, "-0.0000001"),
            (900_000_000, "90"),
            (-1_800_000_000, "-180"),
            (-5_000_000, "-0.5"),
            (i32::MIN, "-214.7483648"),
            (10_000_010, "1.000001"),
        ] {
            assert_eq!(e7(v), s, "{v}");
        }
    }

    #[test]
    #[allow(clippy::approx_constant)] // 3.14159 is the vectors' value, not PI
    fn float_formatting() {
        for (v, s) in [
            (0.1, "0.1"),
            (1e21, "1E21"),
            (1e20, "100000000000000000000"),
            (1e-7, "1E-7"),
            (1e-6, "0.000001"),
            (123_456.789, "123456.789"),
            (-2.5e-100, "-2.5E-100"),
            (9.99e125, "9.99E125"),
            (1e-130, "1E-130"),
            (3.14159, "3.14159"),
            (-0.0, "0"),
            (0.0, "0"),
            (1.0, "1"),
            (-42.0, "-42"),
            (1.5e-5, "0.000015"),
            (0.30000000000000004, "0.30000000000000004"),
            (f64::MAX, "1.7976931348623157E308"),
            (1.2345e20, "123450000000000000000"),
        ] {
            assert_eq!(f64_text(v), s, "{v:e}");
        }
        // Every output reads back as the same f64.
        let mut x = 1.234_567_890_123_4e-130_f64;
        while x < 9.99e125 {
            for v in [x, -x] {
                let s = f64_text(v);
                assert_eq!(s.parse::<f64>().unwrap(), v, "{s}");
            }
            x *= 7.77;
        }
    }

    /// The same text from Rust's own shortest digits (`{:e}`).
    fn reference_f64(v: f64) -> String {
        if v == 0.0 {
            return "0".into();
        }
        let sci = format!("{:e}", v.abs());
        let (mantissa, exp) = sci.split_once('e').unwrap();
        let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
        let mut out = String::new();
        push_decimal(&mut out, v < 0.0, &digits, exp.parse().unwrap());
        out
    }

    /// Ryū and Rust's formatter both give the shortest digits that read
    /// back as the same value; when two such are equally near (an exact
    /// tie), Ryū takes the even one, as JavaScript does, and Rust the one
    /// above. Everywhere else they agree.
    #[test]
    fn floats_match_rusts_shortest_digits_but_for_ties() {
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let mut checked = 0;
        while checked < 200_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let v = f64::from_bits(rng);
            if !v.is_finite() {
                continue;
            }
            for v in [
                v,
                (v.abs().log2() * 1000.0).round() / 1000.0,
                (rng % 10_000_000) as f64 / 1000.0,
            ] {
                if !v.is_finite() {
                    continue;
                }
                let (ours, reference) = (f64_text(v), reference_f64(v));
                assert_eq!(ours.parse::<f64>().unwrap(), v, "{ours} reads back as {v:e}");
                if ours != reference {
                    assert_eq!(ours.len(), reference.len(), "{v:e}: {ours} vs {reference}");
                    let differ = ours.bytes().zip(reference.bytes()).filter(|(a, b)| a != b).count();
                    assert_eq!(differ, 1, "{v:e}: {ours} vs {reference} differ only in the tie digit");
                }
            }
            checked += 1;
        }
    }

    #[test]
    fn json_strings_are_escaped() {
        for (input, want) in [
            ("plain", r#""plain""#),
            ("a\"b\\c", r#""a\"b\\c""#),
            ("line\nnext\ttab\r", r#""line\nnext\ttab\r""#),
            ("\u{1}\u{1f}\u{8}\u{c}", r#""\u0001\u001f\b\f""#),
            ("héllo ✓ \u{7f}", "\"héllo ✓ \u{7f}\""),
            ("", r#""""#),
            ("sixteen bytes ok", r#""sixteen bytes ok""#),
            ("eight by\"and more", r#""eight by\"and more""#),
            (
                "long enough to use words, then a \\ late",
                r#""long enough to use words, then a \\ late""#,
            ),
            ("ééééééé\u{1}", r#""ééééééé\u0001""#),
        ] {
            let mut s = String::new();
            push_json_str(&mut s, input);
            assert_eq!(s, want);
            // serde_json reads it back as the same string.
            assert_eq!(serde_json::from_str::<String>(&s).unwrap(), input);
        }
    }

    #[test]
    fn padded_digits() {
        let mut s = String::new();
        push_padded(&mut s, 42, 5);
        push_padded(&mut s, 123_456, 3);
        assert_eq!(s, "00042123456");
    }

    #[test]
    fn base64_standard_padded() {
        for (input, out) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foobar", "Zm9vYmFy"),
            (&[0xfb, 0xff, 0xbf], "+/+/"),
        ] {
            assert_eq!(base64(input), out);
        }
    }
}
