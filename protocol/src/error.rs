//! Errors of the codec and how they map to the protocol's answers.
//!
//! There are two kinds of failure in AWP/1, and two types here:
//!
//! - [`FrameError`]: the byte stream itself is broken (bad preamble, header,
//!   checksum, an undecodable HELLO or BATCH `seq`, a bad compressed payload).
//!   The connection cannot go on; the answer is `ERROR(code)` and a close.
//!   [`FrameError::code`] gives the code.
//! - [`BatchError`]: a BATCH frame was sound but its content breaks a record
//!   rule. The answer is `ACK REJECTED` for that batch's `seq` with
//!   [`BatchError`]'s `Display` as the message; the connection stays open.
//!
//! Both carry a [`Problem`] and the name of the field it was found in, so the
//! message an agent (or a support engineer) reads says exactly what was wrong.

use std::fmt;

use crate::frame_type::FrameType;
use crate::limits::Compression;

/// The error codes of an AWP/1 `ERROR` frame (AWP1.md §4.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    /// The preamble is wrong.
    BadMagic = 1,
    /// No common protocol version.
    UnsupportedVersion = 2,
    /// A header, HELLO, or BATCH frame level cannot be decoded.
    MalformedFrame = 3,
    /// The CRC-32C does not match the payload.
    ChecksumMismatch = 4,
    /// A payload or a decompressed size over the limit.
    FrameTooLarge = 5,
    /// Unknown tenant, bad or expired token, certificate not accepted.
    AuthFailed = 6,
    /// A frame not allowed in this state.
    UnexpectedFrame = 7,
    /// Too many unacknowledged batches, or a `seq` already in flight.
    WindowExceeded = 8,
    /// Nothing heard for three heartbeats.
    IdleTimeout = 9,
    /// The server is at its connection limit.
    ServerBusy = 10,
    /// Anything else.
    Internal = 11,
}

impl ErrorCode {
    /// All codes, in numeric order.
    pub const ALL: [ErrorCode; 11] = [
        ErrorCode::BadMagic,
        ErrorCode::UnsupportedVersion,
        ErrorCode::MalformedFrame,
        ErrorCode::ChecksumMismatch,
        ErrorCode::FrameTooLarge,
        ErrorCode::AuthFailed,
        ErrorCode::UnexpectedFrame,
        ErrorCode::WindowExceeded,
        ErrorCode::IdleTimeout,
        ErrorCode::ServerBusy,
        ErrorCode::Internal,
    ];

    /// The code for a wire value, if AWP/1 defines it.
    pub fn from_u16(value: u16) -> Option<ErrorCode> {
        ErrorCode::ALL.get(usize::from(value).wrapping_sub(1)).copied()
    }

    /// The spec's name of the code, as used in `vectors.json` and in metrics.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::BadMagic => "BAD_MAGIC",
            ErrorCode::UnsupportedVersion => "UNSUPPORTED_VERSION",
            ErrorCode::MalformedFrame => "MALFORMED_FRAME",
            ErrorCode::ChecksumMismatch => "CHECKSUM_MISMATCH",
            ErrorCode::FrameTooLarge => "FRAME_TOO_LARGE",
            ErrorCode::AuthFailed => "AUTH_FAILED",
            ErrorCode::UnexpectedFrame => "UNEXPECTED_FRAME",
            ErrorCode::WindowExceeded => "WINDOW_EXCEEDED",
            ErrorCode::IdleTimeout => "IDLE_TIMEOUT",
            ErrorCode::ServerBusy => "SERVER_BUSY",
            ErrorCode::Internal => "INTERNAL",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What was wrong with one field.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Problem {
    /// The input ended inside the field.
    Truncated,
    /// A varint with a redundant trailing zero byte (AWP/1 varints are minimal).
    NonMinimalVarint,
    /// A varint longer than 10 bytes.
    VarintTooLong,
    /// A varint whose value does not fit in 64 bits.
    VarintOverflow,
    /// A string that is not valid UTF-8.
    InvalidUtf8,
    /// A string or byte string whose length is outside the allowed range.
    Length {
        /// The length found.
        len: u64,
        /// The least length allowed.
        min: u64,
        /// The greatest length allowed.
        max: u64,
    },
    /// An integer outside the allowed range.
    Range {
        /// The value found.
        value: i128,
        /// The least value allowed.
        min: i128,
        /// The greatest value allowed.
        max: i128,
    },
    /// An enumerated value (platform, network, tag, ...) that AWP/1 does not define.
    UnknownValue(u64),
    /// An identifier holding a character outside its allowed set.
    InvalidChar,
    /// Bytes left over after the last field of a payload or record body.
    TrailingBytes,
    /// An event attribute key that appears twice in one record.
    DuplicateKey,
    /// A float that is NaN, infinite, or outside DynamoDB's number range.
    FloatOutOfRange(f64),
    /// A rule across fields, stated in the text.
    Rule(&'static str),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Truncated => f.write_str("truncated"),
            Problem::NonMinimalVarint => f.write_str("varint not minimally encoded"),
            Problem::VarintTooLong => f.write_str("varint longer than 10 bytes"),
            Problem::VarintOverflow => f.write_str("varint above u64::MAX"),
            Problem::InvalidUtf8 => f.write_str("not valid UTF-8"),
            Problem::Length { len, min, max } => {
                write!(f, "length {len} out of range {min}..={max}")
            }
            Problem::Range { value, min, max } => {
                write!(f, "out of range ({value}, allowed {min}..={max})")
            }
            Problem::UnknownValue(v) => write!(f, "unknown value {v}"),
            Problem::InvalidChar => f.write_str("has a character outside its allowed set"),
            Problem::TrailingBytes => f.write_str("has trailing bytes"),
            Problem::DuplicateKey => f.write_str("duplicate key"),
            Problem::FloatOutOfRange(v) => write!(
                f,
                "float {v} not finite or outside DynamoDB's range (0 or 1e-130..=9.99e125 in magnitude)"
            ),
            Problem::Rule(text) => f.write_str(text),
        }
    }
}

/// A field and what was wrong with it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FieldError {
    /// The field's name as AWP1.md spells it (`lat_e7`, `tenant_id`, ...).
    pub field: &'static str,
    /// What was wrong.
    pub problem: Problem,
}

impl FieldError {
    pub(crate) const fn new(field: &'static str, problem: Problem) -> Self {
        FieldError { field, problem }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.field, self.problem)
    }
}

/// A broken byte stream: the connection ends with `ERROR(`[`FrameError::code`]`)`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The 4-byte preamble is not `89 41 57 50`.
    #[error("bad preamble {}{}", hex4(found), preamble_hint(found))]
    BadMagic {
        /// The four bytes received instead.
        found: [u8; 4],
    },
    /// The header's type byte is not one of the nine AWP/1 frame types.
    #[error("unknown frame type 0x{0:02x}")]
    UnknownFrameType(u8),
    /// The header's flags set bits 2–7, or compression value 3.
    #[error("invalid flags 0x{0:02x}")]
    InvalidFlags(u8),
    /// The header's reserved field is not zero.
    #[error("reserved header field is 0x{0:04x}, must be 0")]
    ReservedNotZero(u16),
    /// A frame other than BATCH has a compression flag.
    #[error("{0} frames cannot be compressed")]
    CompressedNonBatch(FrameType),
    /// The header declares a payload longer than the receiver's limit.
    #[error("{frame_type} payload of {length} bytes exceeds the limit of {limit}")]
    FrameTooLarge {
        /// The frame's type.
        frame_type: FrameType,
        /// The declared payload length.
        length: u32,
        /// The limit in force for this frame type.
        limit: u32,
    },
    /// The payload's CRC-32C differs from the header's.
    #[error("checksum mismatch: header says 0x{expected:08x}, payload has 0x{computed:08x}")]
    ChecksumMismatch {
        /// The CRC in the header.
        expected: u32,
        /// The CRC computed over the payload.
        computed: u32,
    },
    /// A payload field that cannot be decoded (every non-BATCH frame, and a BATCH's `seq`).
    #[error("{frame_type}: {error}")]
    Malformed {
        /// The frame's type.
        frame_type: FrameType,
        /// The field and what was wrong with it.
        error: FieldError,
    },
    /// A BATCH compressed with a codec this side did not accept in WELCOME.
    #[error("BATCH compressed with {0}, which was not negotiated")]
    CompressionNotAccepted(Compression),
    /// A compressed BATCH declares an uncompressed length over the batch-size limit.
    #[error("BATCH declares {declared} uncompressed bytes, over the limit of {limit}")]
    DecompressedTooLarge {
        /// The declared uncompressed length.
        declared: u32,
        /// The batch-size limit.
        limit: u32,
    },
    /// A compressed BATCH that is corrupt or does not inflate to exactly its declared length.
    #[error("BATCH {codec} payload does not inflate to its declared {declared} bytes: {reason}")]
    BadCompressedPayload {
        /// The codec named in the flags.
        codec: Compression,
        /// The declared uncompressed length.
        declared: u32,
        /// What went wrong.
        reason: &'static str,
    },
}

impl FrameError {
    /// The `ERROR` code this failure is answered with.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::BadMagic { .. } => ErrorCode::BadMagic,
            FrameError::ChecksumMismatch { .. } => ErrorCode::ChecksumMismatch,
            FrameError::FrameTooLarge { .. } | FrameError::DecompressedTooLarge { .. } => ErrorCode::FrameTooLarge,
            FrameError::UnknownFrameType(_)
            | FrameError::InvalidFlags(_)
            | FrameError::ReservedNotZero(_)
            | FrameError::CompressedNonBatch(_)
            | FrameError::Malformed { .. }
            | FrameError::CompressionNotAccepted(_)
            | FrameError::BadCompressedPayload { .. } => ErrorCode::MalformedFrame,
        }
    }

    pub(crate) fn malformed(frame_type: FrameType, error: FieldError) -> Self {
        FrameError::Malformed { frame_type, error }
    }
}

fn hex4(b: &[u8; 4]) -> String {
    format!("{:02x} {:02x} {:02x} {:02x}", b[0], b[1], b[2], b[3])
}

/// Explains the two mistakes an operator meets most: TLS or HTTP on an AWP port.
fn preamble_hint(found: &[u8; 4]) -> &'static str {
    const HTTP: [&[u8; 4]; 7] = [b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"OPTI", b"PRI "];
    if found[0] == 0x16 {
        " (a TLS ClientHello: this listener is plaintext, connect without TLS or use the TLS port)"
    } else if HTTP.contains(&found) {
        " (an HTTP request: this port speaks AWP/1, not HTTP)"
    } else {
        " (expected 89 41 57 50)"
    }
}

/// A BATCH whose content breaks a rule: answered with `ACK REJECTED`.
///
/// `Display` gives the ACK message, e.g. `record 3: lat_e7 out of range
/// (900000001, allowed -900000000..=900000000)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchError {
    /// The 0-based index of the first bad record, or `None` for a batch-level
    /// field (`base_time_ms`, `count`, trailing bytes after the records).
    pub index: Option<u32>,
    /// The field and what was wrong with it.
    pub error: FieldError,
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "record {i}: {}", self.error),
            None => write!(f, "batch: {}", self.error),
        }
    }
}

impl std::error::Error for BatchError {}

/// A value the encoder refuses because it breaks a rule of AWP1.md: the
/// encoder never writes a frame that a conforming decoder would refuse.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A field of a non-BATCH frame breaks a rule.
    #[error("{frame_type}: {error}")]
    Field {
        /// The frame's type.
        frame_type: FrameType,
        /// The field and what was wrong with it.
        error: FieldError,
    },
    /// The BATCH content breaks a rule.
    #[error("BATCH: {0}")]
    Batch(BatchError),
    /// The encoded payload would not fit in a frame (its length is a u32).
    #[error("{frame_type} payload of {length} bytes does not fit in a frame")]
    TooLong {
        /// The frame's type.
        frame_type: FrameType,
        /// The payload length.
        length: usize,
    },
}
