//! The AWP/1 codec: every frame and record of the Agent Wire Protocol
//! (`docs/AWP1.md`), decoded and encoded byte for byte. Pure: no IO, no
//! async runtime. The gateway, the simulator and the fuzzers all use it;
//! nothing else in the project reads or writes AWP bytes.
//!
//! # How bytes flow through it
//!
//! ```text
//!  bytes from a socket
//!     │
//!     ├─ check_preamble ────────────── BAD_MAGIC (with a hint for TLS / HTTP)
//!     ▼
//!  check(buf, limits) ─── 12 header bytes only: type, flags, reserved,
//!     │                   length ≤ limit ───────────── MALFORMED_FRAME / FRAME_TOO_LARGE
//!     │   Incomplete(n) → read n more bytes (never more than the limit)
//!     ▼
//!  Frame::parse(header, payload) ── CRC-32C first ─── CHECKSUM_MISMATCH
//!     │  HELLO/WELCOME/ACK/...: fields + rules ─────── MALFORMED_FRAME
//!     │  BATCH: inflate (bounded by the declared size
//!     │         and max_batch_bytes), read seq ─────── MALFORMED_FRAME / FRAME_TOO_LARGE
//!     ▼
//!  BatchFrame::decode(limits) ── base_time, count,
//!     │                          every record's rules ── BatchError → ACK REJECTED
//!     ▼                                                   ("record 3: lat_e7 out of range ...")
//!  Batch { seq, base_time_ms, records: Vec<Record<'_>> }  (strings borrowed from the frame)
//! ```
//!
//! Encoding runs the other way ([`Frame::encode`], [`Batch::encode`]) and
//! checks the same rules first, so the encoder never writes what the decoder
//! would refuse; encodings are canonical (minimal varints), so decoding then
//! encoding an uncompressed frame gives back the same bytes.
//!
//! # Bounds
//!
//! Nothing is allocated from a peer's say-so beyond the [`Limits`]: a
//! frame's payload is buffered only after its header passed the length check;
//! a compressed BATCH's output buffer is its declared size, checked against
//! `max_batch_bytes` first, and inflation stops at that size; the record
//! vector is reserved for at most `min(count, bytes left / 3)` records, and
//! `count` is at most `max_batch_records`.
//!
//! # Features
//!
//! - `codec` (default): [`codec::AwpCodec`], a tokio-util `Decoder`/`Encoder`.
//! - `json` (default): [`json`], frames in the JSON shape of `vectors.json`.
//! - `sample`: [`sample`], realistic record mixes for benchmarks and the simulator.
//!
//! Device tokens (HMAC-SHA256, constant-time verification) are in [`token`].
#![forbid(unsafe_code)]

mod batch;
mod compress;
mod error;
mod frame;
mod frame_type;
mod header;
mod limits;
pub mod token;
mod wire;

#[cfg(feature = "codec")]
pub mod codec;
#[cfg(feature = "json")]
pub mod json;
#[cfg(feature = "sample")]
pub mod sample;

pub use batch::{
    AppUsage, Attr, AttrValue, Batch, BatchFrame, Channel, Direction, Event, Location, MAX_ATTR_VALUE_LEN,
    MAX_EVENT_ATTRS, Message, NetUsage, Network, PreparedBatch, Record, RecordBody, RecordParts, Records, Unknown,
    content_from_parts, is_storable_float, kind,
};
pub use compress::inflated_len;
pub use error::{BatchError, EncodeError, ErrorCode, FieldError, FrameError, Problem};
pub use frame::{
    Ack, AckStatus, Decoded, ErrorFrame, Frame, GoAway, Hello, HelloAuth, MAX_MESSAGE_LEN, MAX_REASON_LEN, Platform,
    Welcome, check, decode, is_valid_device_id, is_valid_tenant_id,
};
pub use header::{FrameType, HEADER_LEN, Header, MAGIC, check_preamble, crc};
pub use limits::{Compression, CompressionSet, Limits, MAX_HELLO_LEN};
pub use wire::truncate_utf8;

/// The protocol versions this crate speaks.
pub const SUPPORTED_VERSIONS: &[u8] = &[1];
