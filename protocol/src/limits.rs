//! Receiver limits and the compression codecs.

use std::fmt;

/// The largest HELLO payload (AWP1.md §2), whatever the other limits.
pub const MAX_HELLO_LEN: u32 = 4096;

/// The bounds a decoder enforces. Every allocation the decoder makes is
/// bounded by one of these (see the crate docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload of any frame but HELLO (advertised as WELCOME's
    /// `max_frame_len`; AWP/1 requires at least 65,536).
    pub max_frame_len: u32,
    /// Largest record count in one BATCH (WELCOME's `max_batch_records`).
    pub max_batch_records: u32,
    /// Largest uncompressed BATCH payload a compressed BATCH may declare.
    pub max_batch_bytes: u32,
    /// Codecs this side accepts in BATCH frames (WELCOME's `compression`).
    /// A BATCH compressed with another codec is MALFORMED_FRAME.
    pub accepted_compression: CompressionSet,
}

impl Limits {
    /// The spec's defaults: 1 MiB frames, 1,000 records, 4 MiB decompressed,
    /// LZ4 and Zstandard accepted.
    pub const DEFAULT: Limits = Limits {
        max_frame_len: 1 << 20,
        max_batch_records: 1000,
        max_batch_bytes: 4 << 20,
        accepted_compression: CompressionSet::ALL,
    };

    /// The payload limit for a frame of this type.
    pub fn payload_limit(&self, frame_type: crate::FrameType) -> u32 {
        if frame_type == crate::FrameType::Hello {
            MAX_HELLO_LEN
        } else {
            self.max_frame_len
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// The compression of a frame's payload: bits 0–1 of the header flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// Not compressed.
    #[default]
    None,
    /// An LZ4 block, after a `u32` uncompressed length.
    Lz4,
    /// One Zstandard frame, after a `u32` uncompressed length.
    Zstd,
}

impl Compression {
    /// The flags value (bits 0–1) of this codec.
    pub fn flags(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 1,
            Compression::Zstd => 2,
        }
    }

    /// The codec's bit in a HELLO or WELCOME `compression` bitmask.
    pub fn bit(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 1,
            Compression::Zstd => 2,
        }
    }

    /// The lower-case name (`none`, `lz4`, `zstd`), as in `vectors.json`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of codecs: the `compression` bitmask of HELLO and WELCOME.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct CompressionSet(u8);

impl CompressionSet {
    /// No codec.
    pub const NONE: CompressionSet = CompressionSet(0);
    /// LZ4 and Zstandard.
    pub const ALL: CompressionSet = CompressionSet(0b11);

    /// The set for a wire bitmask, or `None` if it has bits AWP/1 does not define.
    pub fn from_bits(bits: u8) -> Option<CompressionSet> {
        (bits & !0b11 == 0).then_some(CompressionSet(bits))
    }

    /// The wire bitmask.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Whether a BATCH compressed with `codec` is allowed (uncompressed always is).
    pub fn allows(self, codec: Compression) -> bool {
        self.0 & codec.bit() == codec.bit()
    }

    /// The codecs in both sets: what a server puts in WELCOME.
    pub fn intersect(self, other: CompressionSet) -> CompressionSet {
        CompressionSet(self.0 & other.0)
    }

    /// This set with `codec` added.
    pub fn with(self, codec: Compression) -> CompressionSet {
        CompressionSet(self.0 | codec.bit())
    }
}
