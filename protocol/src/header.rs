//! The preamble and the 12-byte frame header (AWP1.md §1–2).

use bytes::{BufMut, BytesMut};

use crate::error::{EncodeError, FrameError};
pub use crate::frame_type::FrameType;
use crate::limits::{Compression, Limits};

/// The 4 bytes a client sends before its first frame: `\x89AWP`.
pub const MAGIC: [u8; 4] = [0x89, 0x41, 0x57, 0x50];

/// The length of a frame header.
pub const HEADER_LEN: usize = 12;

/// A frame header that passed every check that needs only its 12 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The frame type.
    pub frame_type: FrameType,
    /// The payload's compression (only ever set on BATCH).
    pub compression: Compression,
    /// The payload length.
    pub length: u32,
    /// The CRC-32C of the payload as sent.
    pub crc: u32,
}

impl Header {
    /// Decodes a header and checks type, flags and reserved bits; the length
    /// is checked separately by [`Header::check_length`], so that a caller
    /// can decide on the frame type first (a server answers anything but
    /// HELLO before WELCOME with UNEXPECTED_FRAME, whatever its length).
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Result<Header, FrameError> {
        let frame_type = FrameType::from_u8(bytes[0]).ok_or(FrameError::UnknownFrameType(bytes[0]))?;
        let flags = bytes[1];
        let compression = match flags {
            0 => Compression::None,
            1 => Compression::Lz4,
            2 => Compression::Zstd,
            _ => return Err(FrameError::InvalidFlags(flags)),
        };
        let reserved = u16::from_be_bytes([bytes[2], bytes[3]]);
        if reserved != 0 {
            return Err(FrameError::ReservedNotZero(reserved));
        }
        if compression != Compression::None && frame_type != FrameType::Batch {
            return Err(FrameError::CompressedNonBatch(frame_type));
        }
        Ok(Header {
            frame_type,
            compression,
            length: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
            crc: u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
        })
    }

    /// Refuses a payload longer than the limit for this frame type, before
    /// any of it is read or allocated.
    pub fn check_length(&self, limits: &Limits) -> Result<(), FrameError> {
        let limit = limits.payload_limit(self.frame_type);
        if self.length > limit {
            return Err(FrameError::FrameTooLarge {
                frame_type: self.frame_type,
                length: self.length,
                limit,
            });
        }
        Ok(())
    }

    /// The whole frame's length: header plus payload.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.length as usize
    }

    /// Checks the payload against the header's CRC-32C.
    pub fn check_crc(&self, payload: &[u8]) -> Result<(), FrameError> {
        let computed = crc(payload);
        if computed != self.crc {
            return Err(FrameError::ChecksumMismatch {
                expected: self.crc,
                computed,
            });
        }
        Ok(())
    }
}

/// The CRC-32C of a payload (0 for an empty one, as the spec requires).
#[inline]
pub fn crc(payload: &[u8]) -> u32 {
    crc32c::crc32c(payload)
}

/// Checks the preamble. `Ok(None)` asks for more bytes: fewer than 4 arrived.
pub fn check_preamble(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    match buf.first_chunk::<4>() {
        None => Ok(None),
        Some(found) if *found == MAGIC => Ok(Some(MAGIC.len())),
        Some(found) => Err(FrameError::BadMagic { found: *found }),
    }
}

/// Appends one frame to `dst`: a header placeholder, the payload that
/// `write_payload` appends, then the header filled in with the payload's
/// length and CRC. On error `dst` is left as it was.
pub(crate) fn encode_frame<E>(
    dst: &mut BytesMut,
    frame_type: FrameType,
    compression: Compression,
    write_payload: impl FnOnce(&mut BytesMut) -> Result<(), E>,
) -> Result<(), E>
where
    E: From<EncodeError>,
{
    let start = dst.len();
    dst.put_bytes(0, HEADER_LEN);
    if let Err(e) = write_payload(dst) {
        dst.truncate(start);
        return Err(e);
    }
    let payload_len = dst.len() - start - HEADER_LEN;
    let Ok(length) = u32::try_from(payload_len) else {
        dst.truncate(start);
        return Err(EncodeError::TooLong {
            frame_type,
            length: payload_len,
        }
        .into());
    };
    let crc = crc(&dst[start + HEADER_LEN..]);
    let header = &mut dst[start..start + HEADER_LEN];
    header[0] = frame_type as u8;
    header[1] = compression.flags();
    header[4..8].copy_from_slice(&length.to_be_bytes());
    header[8..12].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}
