//! The sort key `rk` (AWP1.md §7): `{time:013}#{seq:020}#{index:05}`,
//! zero-padded decimal. Its text sorts like the tuple (record time, batch
//! seq, index in batch), so a device's items are read in time order and a
//! time range is a key range; and it is a pure function of the record, so a
//! resent batch lands on the same keys and is stored once.

use crate::text::push_padded;

/// Digits of the record time: unix ms up to [`MAX_TIME_MS`].
pub const TIME_DIGITS: usize = 13;
/// The latest record time `rk` can hold: 9,999,999,999,999 ms, in the year 2286.
pub const MAX_TIME_MS: u64 = 9_999_999_999_999;
/// Digits of the batch seq: any u64.
pub const SEQ_DIGITS: usize = 20;
/// Digits of the index in the batch.
pub const INDEX_DIGITS: usize = 5;
/// The length of an `rk`.
pub const RK_LEN: usize = TIME_DIGITS + 1 + SEQ_DIGITS + 1 + INDEX_DIGITS;

/// The parts of an `rk`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RangeKey {
    /// The record's time, unix ms.
    pub time_ms: u64,
    /// Its batch's seq.
    pub seq: u64,
    /// Its 0-based index in the batch.
    pub index: u32,
}

impl RangeKey {
    /// Appends the key's text to `out`.
    pub fn push_to(&self, out: &mut String) {
        push_padded(out, self.time_ms, TIME_DIGITS);
        out.push('#');
        push_padded(out, self.seq, SEQ_DIGITS);
        out.push('#');
        push_padded(out, u64::from(self.index), INDEX_DIGITS);
    }

    /// Parses an `rk`; `None` if it is not one.
    pub fn parse(rk: &str) -> Option<RangeKey> {
        let mut parts = rk.split('#');
        let time = parts.next()?;
        let seq = parts.next()?;
        let index = parts.next()?;
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        if parts.next().is_some()
            || !digits(time, TIME_DIGITS)
            || !digits(seq, SEQ_DIGITS)
            || !digits(index, INDEX_DIGITS)
        {
            return None;
        }
        Some(RangeKey {
            time_ms: time.parse().ok()?,
            seq: seq.parse().ok()?,
            index: index.parse().ok()?,
        })
    }
}

impl std::fmt::Display for RangeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = String::with_capacity(RK_LEN);
        self.push_to(&mut s);
        f.write_str(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        let key = RangeKey {
            time_ms: 1_000,
            seq: 9,
            index: 2,
        };
        let text = key.to_string();
        assert_eq!(text, "0000000001000#00000000000000000009#00002");
        assert_eq!(text.len(), RK_LEN);
        assert_eq!(RangeKey::parse(&text), Some(key));
        let max = RangeKey {
            time_ms: 9_999_999_999_999,
            seq: u64::MAX,
            index: 99_999,
        };
        assert_eq!(RangeKey::parse(&max.to_string()), Some(max));
    }

    #[test]
    fn text_order_is_key_order() {
        let a = RangeKey {
            time_ms: 5,
            seq: 100,
            index: 0,
        };
        let b = RangeKey {
            time_ms: 5,
            seq: 100,
            index: 1,
        };
        let c = RangeKey {
            time_ms: 6,
            seq: 1,
            index: 0,
        };
        assert!(a.to_string() < b.to_string() && b.to_string() < c.to_string());
    }

    #[test]
    fn other_text_is_not_a_key() {
        for bad in [
            "",
            "1#2#3",
            "0000000001000#00000000000000000009",
            "0000000001000#0000000000000000000x#00002",
            "0000000001000#00000000000000000009#00002#1",
            "00000000010000#0000000000000000009#00002",
        ] {
            assert_eq!(RangeKey::parse(bad), None, "{bad}");
        }
    }
}
