//! Records of a kind this version does not know (6 and above), kept
//! whole.

use std::borrow::Cow;

/// A record of a kind this version does not know (6 and above), kept whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unknown<'a> {
    /// The kind number (≥ 6).
    pub kind: u64,
    /// The body bytes as received.
    pub body: Cow<'a, [u8]>,
}
