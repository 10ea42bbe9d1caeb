//! BATCH frames and their records (AWP1.md §4.3, §5).
//!
//! A BATCH is decoded in two steps with two kinds of failure:
//!
//! - the frame level ([`BatchFrame`], done by [`crate::Frame::parse`]):
//!   compression and `seq`. A failure here is a [`FrameError`] and ends the
//!   connection, since without a `seq` there is nothing to answer;
//! - the content ([`BatchFrame::decode`] → [`Batch`]): `base_time_ms`,
//!   `count` and every record. A failure here is a [`BatchError`] naming
//!   the first bad record, answered with ACK REJECTED.
//!
//! Decoded records borrow their strings and bytes from the frame's buffer
//! (`Cow::Borrowed`), so decoding a batch allocates one `Vec` of records (and
//! one per EVENT record with attributes), whatever the size of its strings.
//! The same types with owned strings build batches to encode.
//!
//! Every rule is stated once, in the `check` methods, which both the decoder
//! (after reading a record's wire structure) and the encoder (before writing)
//! run.
//!
//! # Layout
//!
//! This file is the envelope (the frame, the batch, its records as an
//! iterator, a batch prepared for sending); `record.rs` is a record and its
//! kinds, and each kind has a file of its own (`location.rs`,
//! `app_usage.rs`, `net_usage.rs`, `message.rs`, `event.rs`, `unknown.rs`),
//! the wire enums of NET_USAGE and MESSAGE are in `enums.rs`.

mod app_usage;
mod enums;
mod event;
mod location;
mod message;
mod net_usage;
mod record;
mod unknown;

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};

use crate::compress;
use crate::error::{BatchError, EncodeError, FieldError, FrameError, Problem};
use crate::header::{FrameType, encode_frame};
use crate::limits::{Compression, Limits};
use crate::wire::{Res, check_range, end, fail, field_error, put_varint, u8_field, varint, varint_len};

pub use app_usage::AppUsage;
pub use enums::{Channel, Direction, Network};
pub use event::{Attr, AttrValue, Event, MAX_ATTR_VALUE_LEN, MAX_EVENT_ATTRS, is_storable_float};
pub use location::Location;
pub use message::Message;
pub use net_usage::NetUsage;
pub use record::{Record, RecordBody, kind};
pub use unknown::Unknown;

/// A BATCH at the frame level: its `seq`, the compression it came with, and
/// its uncompressed content (everything after `seq`), not yet decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchFrame {
    seq: u64,
    compression: Compression,
    content: Bytes,
}

impl BatchFrame {
    /// Inflates the payload if compressed, and reads `seq` (≥ 1).
    pub(crate) fn parse(compression: Compression, payload: Bytes, limits: &Limits) -> Result<BatchFrame, FrameError> {
        let raw = if compression == Compression::None {
            payload
        } else {
            if !limits.accepted_compression.allows(compression) {
                return Err(FrameError::CompressionNotAccepted(compression));
            }
            compress::inflate(compression, &payload, limits)?
        };
        let malformed = |e| FrameError::malformed(FrameType::Batch, e);
        let (rest, seq) = varint(&raw, "seq").map_err(|e| malformed(field_error(e)))?;
        if seq == 0 {
            return Err(malformed(FieldError::new("seq", Problem::Rule("must be at least 1"))));
        }
        let content = raw.slice(raw.len() - rest.len()..);
        Ok(BatchFrame {
            seq,
            compression,
            content,
        })
    }

    /// The batch's sequence number (≥ 1).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The compression the frame arrived with.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// The uncompressed content after `seq`: `base_time_ms`, `count`, records.
    pub fn content(&self) -> &Bytes {
        &self.content
    }

    /// Decodes and checks the content. The records borrow from this frame.
    pub fn decode(&self, limits: &Limits) -> Result<Batch<'_>, BatchError> {
        Batch::decode_content(self.seq, &self.content, limits)
    }

    /// Reads `base_time_ms` and `count` and returns an iterator that decodes
    /// and checks one record per step, without collecting them: the
    /// gateway turns each record into an item as it goes. The iterator ends
    /// with the first error (a bad record, or bytes after the last one);
    /// a batch is valid only if it ends without one.
    pub fn records(&self, limits: &Limits) -> Result<Records<'_>, BatchError> {
        Records::new(&self.content, limits)
    }

    /// Writes the frame back: `seq` and the content, compressed as it came.
    pub(crate) fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let mut raw = BytesMut::with_capacity(varint_len(self.seq) + self.content.len());
        put_varint(&mut raw, self.seq);
        raw.put_slice(&self.content);
        encode_frame(dst, FrameType::Batch, self.compression, |b| {
            compress::deflate(self.compression, &raw, b);
            Ok::<(), EncodeError>(())
        })
    }
}

/// A BATCH's content, decoded and checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch<'a> {
    /// Chosen by the client, ≥ 1, unique per device for a batch's content.
    pub seq: u64,
    /// Unix milliseconds; each record's time is relative to it.
    pub base_time_ms: u64,
    /// 1 – `max_batch_records` records.
    pub records: Vec<Record<'a>>,
}

/// The fewest bytes a record takes on the wire (kind, offset, body_len).
const MIN_RECORD_LEN: usize = 3;

impl<'a> Batch<'a> {
    /// Decodes the content of a BATCH (everything after `seq`), checking
    /// every rule. This is what [`BatchFrame::decode`] runs; it is public for
    /// fuzzing and for tools that hold the content without a frame.
    pub fn decode_content(seq: u64, content: &'a [u8], limits: &Limits) -> Result<Batch<'a>, BatchError> {
        let mut iter = Records::new(content, limits)?;
        // Reserve no more than the remaining bytes could possibly hold.
        let mut records = Vec::with_capacity((iter.declared_count() as usize).min(content.len() / MIN_RECORD_LEN));
        for record in &mut iter {
            records.push(record?);
        }
        Ok(Batch {
            seq,
            base_time_ms: iter.base_time_ms(),
            records,
        })
    }

    /// Checks every rule of the content, as the decoder does.
    pub fn check(&self, limits: &Limits) -> Result<(), BatchError> {
        if self.seq == 0 {
            return Err(BatchError {
                index: None,
                error: FieldError::new("seq", Problem::Rule("must be at least 1")),
            });
        }
        check_count(self.records.len() as u64, limits).map_err(|error| BatchError { index: None, error })?;
        for (index, record) in self.records.iter().enumerate() {
            record.check(self.base_time_ms).map_err(|error| BatchError {
                index: Some(index as u32),
                error,
            })?;
        }
        Ok(())
    }

    /// The time of a record of this batch, in unix milliseconds.
    pub fn record_time_ms(&self, record: &Record<'_>) -> u64 {
        record_time(self.base_time_ms, record.time_offset_ms).unwrap_or(0)
    }

    /// The uncompressed payload length: `seq`, `base_time_ms`, `count`, records.
    pub fn encoded_len(&self) -> usize {
        varint_len(self.seq)
            + varint_len(self.base_time_ms)
            + varint_len(self.records.len() as u64)
            + self.records.iter().map(Record::encoded_len).sum::<usize>()
    }

    /// Checks the batch against `limits` and appends it to `dst` as one
    /// BATCH frame compressed with `compression`.
    pub fn encode(&self, compression: Compression, limits: &Limits, dst: &mut BytesMut) -> Result<(), EncodeError> {
        self.check(limits).map_err(EncodeError::Batch)?;
        encode_batch_frame(self.encoded_len(), compression, limits, dst, |b| self.write_raw(b))
    }

    fn write_raw(&self, b: &mut BytesMut) {
        put_varint(b, self.seq);
        self.write_content(b);
    }

    /// Everything after `seq`: `base_time_ms`, `count`, records.
    fn write_content(&self, b: &mut BytesMut) {
        put_varint(b, self.base_time_ms);
        put_varint(b, self.records.len() as u64);
        for record in &self.records {
            record.write(b);
        }
    }

    /// A copy that owns its strings and bytes, free of the frame's buffer.
    pub fn into_owned(self) -> Batch<'static> {
        Batch {
            seq: self.seq,
            base_time_ms: self.base_time_ms,
            records: self.records.into_iter().map(Record::into_owned).collect(),
        }
    }
}

/// The records of a BATCH, decoded and checked one at a time (see
/// [`BatchFrame::records`]).
#[derive(Clone, Debug)]
pub struct Records<'a> {
    input: &'a [u8],
    base_time_ms: u64,
    count: u32,
    index: u32,
    done: bool,
}

impl<'a> Records<'a> {
    /// Reads `base_time_ms` and `count` from a BATCH's content (everything
    /// after `seq`); [`BatchFrame::records`] is the usual way in.
    pub fn new(content: &'a [u8], limits: &Limits) -> Result<Records<'a>, BatchError> {
        let batch_err = |e: nom::Err<FieldError>| BatchError {
            index: None,
            error: field_error(e),
        };
        let (input, base_time_ms) = varint(content, "base_time_ms").map_err(batch_err)?;
        let (input, count) = varint(input, "count").map_err(batch_err)?;
        check_count(count, limits).map_err(|error| BatchError { index: None, error })?;
        Ok(Records {
            input,
            base_time_ms,
            // check_count bounded it by max_batch_records, a u32.
            count: count as u32,
            index: 0,
            done: false,
        })
    }

    /// The batch's `base_time_ms`.
    pub fn base_time_ms(&self) -> u64 {
        self.base_time_ms
    }

    /// The batch's declared record count.
    pub fn declared_count(&self) -> u32 {
        self.count
    }

    /// The time of a record of this batch, in unix milliseconds.
    pub fn record_time_ms(&self, record: &Record<'_>) -> u64 {
        record_time(self.base_time_ms, record.time_offset_ms).unwrap_or(0)
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, BatchError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.index == self.count {
            self.done = true;
            return match end(self.input, "records") {
                Ok(()) => None,
                Err(error) => Some(Err(BatchError { index: None, error })),
            };
        }
        let index = self.index;
        let parsed = Record::parse(self.input)
            .map_err(field_error)
            .and_then(|(rest, record)| record.check(self.base_time_ms).map(|()| (rest, record)));
        match parsed {
            Ok((rest, record)) => {
                self.input = rest;
                self.index += 1;
                Some(Ok(record))
            }
            Err(error) => {
                self.done = true;
                Some(Err(BatchError {
                    index: Some(index),
                    error,
                }))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some((self.count - self.index) as usize + 1))
    }
}

/// A batch's content (everything after `seq`) checked and encoded once, to be
/// sent under many `seq`s: the load simulator varies only what must vary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedBatch {
    content: Bytes,
    records: u32,
}

impl PreparedBatch {
    /// Checks `batch` against `limits` (its `seq` is ignored) and encodes its content.
    pub fn new(batch: &Batch<'_>, limits: &Limits) -> Result<PreparedBatch, EncodeError> {
        // Checked with seq 1 whatever its own: only the content is kept.
        let checked = Batch {
            seq: batch.seq.max(1),
            base_time_ms: batch.base_time_ms,
            records: batch.records.clone(),
        };
        checked.check(limits).map_err(EncodeError::Batch)?;
        let mut content = BytesMut::with_capacity(checked.encoded_len());
        checked.write_content(&mut content);
        Ok(PreparedBatch {
            content: content.freeze(),
            records: checked.records.len() as u32,
        })
    }

    /// Takes a content already encoded (everything after `seq`), checking
    /// every rule as a receiver would: what an agent's queue wrote and read
    /// back is sent only if the gateway would take it.
    pub fn from_content(content: Bytes, limits: &Limits) -> Result<PreparedBatch, BatchError> {
        let mut records = Records::new(&content, limits)?;
        for record in &mut records {
            record?;
        }
        let count = records.declared_count();
        Ok(PreparedBatch {
            content,
            records: count,
        })
    }

    /// The number of records.
    pub fn records(&self) -> u32 {
        self.records
    }

    /// The encoded content (after `seq`).
    pub fn content(&self) -> &Bytes {
        &self.content
    }

    /// Appends a BATCH frame with this content and `seq` (≥ 1) to `dst`.
    pub fn encode(
        &self,
        seq: u64,
        compression: Compression,
        limits: &Limits,
        dst: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        if seq == 0 {
            return Err(EncodeError::Batch(BatchError {
                index: None,
                error: FieldError::new("seq", Problem::Rule("must be at least 1")),
            }));
        }
        encode_batch_frame(varint_len(seq) + self.content.len(), compression, limits, dst, |b| {
            put_varint(b, seq);
            b.put_slice(&self.content);
        })
    }
}

/// A record kept apart from any batch: its time, kind and encoded body
/// ([`Record::write_body`]). An agent's queue keeps records so, and writes a
/// sealed batch's content from them with [`content_from_parts`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordParts<'a> {
    /// Unix milliseconds.
    pub time_ms: u64,
    /// The wire kind (≥ 1).
    pub kind: u64,
    /// The body, laid out by kind.
    pub body: &'a [u8],
}

/// Appends a BATCH's content (everything after `seq`) made of `records`:
/// `base_time_ms` is the earliest record's time, so every offset is ≥ 0, and
/// the same records always give the same bytes. Nothing is checked here:
/// [`PreparedBatch::from_content`] checks the result as a receiver would.
pub fn content_from_parts(records: &[RecordParts<'_>], dst: &mut BytesMut) {
    let base_time_ms = records.iter().map(|r| r.time_ms).min().unwrap_or(0);
    put_varint(dst, base_time_ms);
    put_varint(dst, records.len() as u64);
    for r in records {
        put_varint(dst, r.kind);
        // time ≥ base; for times up to i64::MAX (what a record checked
        // against base 0 can hold) the difference fits in i64.
        crate::wire::put_svarint(dst, (r.time_ms - base_time_ms) as i64);
        put_varint(dst, r.body.len() as u64);
        dst.put_slice(r.body);
    }
}

/// Appends one BATCH frame whose uncompressed payload (`raw_len` bytes) is
/// written by `write_raw`, compressed as asked, within the limits: the
/// payload at most `max_frame_len`, the uncompressed size of a compressed
/// one at most `max_batch_bytes`.
fn encode_batch_frame(
    raw_len: usize,
    compression: Compression,
    limits: &Limits,
    dst: &mut BytesMut,
    write_raw: impl FnOnce(&mut BytesMut),
) -> Result<(), EncodeError> {
    let too_long = |length| EncodeError::TooLong {
        frame_type: FrameType::Batch,
        length,
    };
    if compression == Compression::None {
        if raw_len > limits.max_frame_len as usize {
            return Err(too_long(raw_len));
        }
        return encode_frame(dst, FrameType::Batch, compression, |b| {
            b.reserve(raw_len);
            write_raw(b);
            Ok::<(), EncodeError>(())
        });
    }
    if raw_len > limits.max_batch_bytes as usize {
        return Err(too_long(raw_len));
    }
    let mut raw = BytesMut::with_capacity(raw_len);
    write_raw(&mut raw);
    let start = dst.len();
    encode_frame(dst, FrameType::Batch, compression, |b| {
        compress::deflate(compression, &raw, b);
        Ok::<(), EncodeError>(())
    })?;
    let payload_len = dst.len() - start - crate::HEADER_LEN;
    if payload_len > limits.max_frame_len as usize {
        dst.truncate(start);
        return Err(too_long(payload_len));
    }
    Ok(())
}

fn check_count(count: u64, limits: &Limits) -> Result<(), FieldError> {
    check_range("count", count, 1, limits.max_batch_records)
}

fn record_time(base_time_ms: u64, offset: i64) -> Option<u64> {
    u64::try_from(i128::from(base_time_ms) + i128::from(offset)).ok()
}

fn owned(s: Cow<'_, str>) -> Cow<'static, str> {
    Cow::Owned(s.into_owned())
}

fn enum_field<'a, T>(input: &'a [u8], field: &'static str, from: fn(u8) -> Option<T>) -> Res<'a, T> {
    let (input, raw) = u8_field(input, field)?;
    match from(raw) {
        Some(v) => Ok((input, v)),
        None => fail(field, Problem::UnknownValue(raw.into())),
    }
}
