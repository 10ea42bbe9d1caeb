//! Compressed BATCH payloads (AWP1.md §2): `u32 uncompressed_length`, then an
//! LZ4 block or one Zstandard frame.
//!
//! Inflating is where a hostile peer can make a receiver allocate or work
//! far beyond what it sent, so the order of checks matters:
//!
//! 1. the declared length is checked against `max_batch_bytes` before anything
//!    else (FRAME_TOO_LARGE);
//! 2. cheap impossibilities are refused without allocating: an LZ4 block cannot
//!    expand more than 255×, and a Zstandard frame that states its content
//!    size must state the declared one;
//! 3. the output buffer is exactly the declared length, and the decompressor
//!    fails as soon as the data would run past it, so a "bomb" costs at most
//!    `declared` bytes of work and memory (MALFORMED_FRAME).

#[cfg(feature = "zstd")]
use std::cell::RefCell;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{FieldError, FrameError, Problem};
use crate::header::FrameType;
use crate::limits::{Compression, Limits};

#[cfg(feature = "zstd")]
/// The Zstandard level the encoder uses: the library default, a good
/// ratio at several hundred MB/s, which is what agents use too.
const ZSTD_LEVEL: i32 = 3;

#[cfg(feature = "zstd")]
thread_local! {
    // Contexts are ~100 KiB each to create; one per thread serves every frame.
    static ZSTD_DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
    static ZSTD_COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
}

/// How long a BATCH payload is once inflated, read from its layout without
/// inflating it: an uncompressed payload's own length, or the
/// `uncompressed_length` a compressed one declares (unchecked: a receiver
/// compares it with its limits). `None` for a compressed payload too short
/// to declare one.
pub fn inflated_len(compression: Compression, payload: &[u8]) -> Option<usize> {
    match compression {
        Compression::None => Some(payload.len()),
        _ => payload
            .first_chunk::<4>()
            .map(|declared| u32::from_be_bytes(*declared) as usize),
    }
}

/// Inflates a compressed BATCH payload into exactly its declared length.
pub(crate) fn inflate(codec: Compression, payload: &[u8], limits: &Limits) -> Result<Bytes, FrameError> {
    let Some((declared, data)) = payload.split_first_chunk::<4>() else {
        return Err(FrameError::malformed(
            FrameType::Batch,
            FieldError::new("uncompressed_length", Problem::Truncated),
        ));
    };
    let declared = u32::from_be_bytes(*declared);
    if declared > limits.max_batch_bytes {
        return Err(FrameError::DecompressedTooLarge {
            declared,
            limit: limits.max_batch_bytes,
        });
    }
    let bad = |reason| FrameError::BadCompressedPayload {
        codec,
        declared,
        reason,
    };
    let len = declared as usize;
    match codec {
        Compression::None => Ok(Bytes::copy_from_slice(payload)),
        Compression::Lz4 => {
            // Each LZ4 sequence of n input bytes yields at most 255n output bytes.
            if len > data.len().saturating_mul(255).saturating_add(16) {
                return Err(bad("declared length beyond LZ4's maximum expansion"));
            }
            let mut out = vec![0u8; len];
            match lz4_flex::block::decompress_into(data, &mut out) {
                Ok(n) if n == len => Ok(Bytes::from(out)),
                Ok(_) => Err(bad("inflates to fewer bytes")),
                Err(lz4_flex::block::DecompressError::OutputTooSmall { .. }) => Err(bad("inflates to more bytes")),
                Err(_) => Err(bad("not a valid LZ4 block")),
            }
        }
        #[cfg(not(feature = "zstd"))]
        Compression::Zstd => Err(bad("Zstandard is not built in (awp-protocol's feature zstd)")),
        #[cfg(feature = "zstd")]
        Compression::Zstd => {
            match zstd::zstd_safe::get_frame_content_size(data) {
                Ok(Some(size)) if size != u64::from(declared) => {
                    return Err(bad("Zstandard frame states another content size"));
                }
                Ok(_) => {}
                Err(_) => return Err(bad("not a Zstandard frame")),
            }
            // Exactly one frame: no second frame or trailing bytes after it.
            match zstd::zstd_safe::find_frame_compressed_size(data) {
                Ok(n) if n == data.len() => {}
                Ok(_) => return Err(bad("bytes after the Zstandard frame")),
                Err(_) => return Err(bad("not a valid Zstandard frame")),
            }
            let mut out = Vec::with_capacity(len);
            let result = ZSTD_DECOMPRESSOR.with_borrow_mut(|slot| {
                let decompressor = match slot {
                    Some(d) => d,
                    None => slot.insert(zstd::bulk::Decompressor::new().map_err(|_| bad("zstd context unavailable"))?),
                };
                decompressor
                    .decompress_to_buffer(data, &mut out)
                    .map_err(|_| bad("corrupt, or inflates to more bytes"))
            });
            match result? {
                n if n == len => Ok(Bytes::from(out)),
                _ => Err(bad("inflates to fewer bytes")),
            }
        }
    }
}

/// Appends the payload for `raw` to `dst`: `raw` itself when uncompressed,
/// else `u32 uncompressed_length` and the compressed form.
pub(crate) fn deflate(codec: Compression, raw: &[u8], dst: &mut BytesMut) {
    if codec == Compression::None {
        dst.put_slice(raw);
        return;
    }
    let start = dst.len();
    dst.put_u32(raw.len() as u32);
    match codec {
        Compression::None => {}
        Compression::Lz4 => {
            let max = lz4_flex::block::get_maximum_output_size(raw.len());
            dst.resize(start + 4 + max, 0);
            let n = lz4_flex::block::compress_into(raw, &mut dst[start + 4..])
                .expect("buffer sized by get_maximum_output_size");
            dst.truncate(start + 4 + n);
        }
        #[cfg(not(feature = "zstd"))]
        Compression::Zstd => stored_zstd_frame(raw, dst),
        #[cfg(feature = "zstd")]
        Compression::Zstd => {
            let max = zstd::zstd_safe::compress_bound(raw.len());
            dst.resize(start + 4 + max, 0);
            let n = ZSTD_COMPRESSOR.with_borrow_mut(|slot| {
                let compressor = match slot {
                    Some(c) => c,
                    None => slot.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL).expect("zstd context")),
                };
                compressor
                    .compress_to_buffer(raw, &mut dst[start + 4..])
                    .expect("buffer sized by compress_bound")
            });
            dst.truncate(start + 4 + n);
        }
    }
}

/// A valid Zstandard frame of raw (stored) blocks, for a build without the
/// library: never chosen by the client such a build is part of, it keeps
/// `deflate` total rather than panicking (RFC 8878 §3.1.1).
#[cfg(any(test, not(feature = "zstd")))]
fn stored_zstd_frame(raw: &[u8], dst: &mut BytesMut) {
    const MAX_BLOCK: usize = 128 * 1024;
    dst.put_u32_le(0xFD2F_B528);
    // Frame header descriptor: single segment, 4-byte content size.
    dst.put_u8(0b1010_0000);
    dst.put_u32_le(raw.len() as u32);
    let mut chunks = raw.chunks(MAX_BLOCK).peekable();
    if chunks.peek().is_none() {
        // One empty last block.
        dst.put_slice(&[1, 0, 0]);
    }
    while let Some(chunk) = chunks.next() {
        let last = u32::from(chunks.peek().is_none());
        // Block header: last flag, type 0 (raw), size; little-endian 3 bytes.
        let header = last | ((chunk.len() as u32) << 3);
        dst.put_slice(&header.to_le_bytes()[..3]);
        dst.put_slice(chunk);
    }
}

#[cfg(test)]
mod inflated_len_tests {
    use super::*;

    #[test]
    fn the_declared_length_is_read_without_inflating() {
        assert_eq!(inflated_len(Compression::None, b"abc"), Some(3));
        assert_eq!(inflated_len(Compression::Lz4, &[0, 0, 1, 0, 0xff]), Some(256));
        assert_eq!(inflated_len(Compression::Zstd, &[0, 0, 0]), None);
    }

    #[test]
    fn a_stored_zstd_frame_is_what_zstd_reads() {
        for len in [0, 1, 1000, 128 * 1024, 128 * 1024 + 1, 300_000] {
            let raw: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut frame = BytesMut::new();
            stored_zstd_frame(&raw, &mut frame);
            assert_eq!(zstd::decode_all(&frame[..]).unwrap(), raw, "{len} bytes");
        }
    }
}
