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

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};

use crate::compress;
use crate::error::{BatchError, EncodeError, FieldError, FrameError, Problem};
use crate::header::{FrameType, encode_frame};
use crate::limits::{Compression, Limits};
use crate::wire::{
    Res, bytes_field, bytes_len, check_len, check_range, end, f64_field, fail, field_error, i32_field, put_bytes,
    put_str, put_svarint, put_varint, str_field, svarint, take_field, u8_field, varint, varint_len, zigzag,
};

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

/// One record: a time relative to its batch and a body laid out by kind.
#[derive(Clone, Debug, PartialEq)]
pub struct Record<'a> {
    /// Added to the batch's `base_time_ms`; the sum must be ≥ 0.
    pub time_offset_ms: i64,
    /// The kind and its fields.
    pub body: RecordBody<'a>,
}

/// The body of a record, by kind (AWP1.md §5).
#[derive(Clone, Debug, PartialEq)]
pub enum RecordBody<'a> {
    /// Kind 1.
    Location(Location),
    /// Kind 2.
    AppUsage(AppUsage<'a>),
    /// Kind 3.
    NetUsage(NetUsage<'a>),
    /// Kind 4.
    Message(Message<'a>),
    /// Kind 5.
    Event(Event<'a>),
    /// Kind 6 and above: not known to AWP/1 version 1, kept whole.
    Unknown(Unknown<'a>),
}

/// The wire kind numbers.
pub mod kind {
    /// LOCATION.
    pub const LOCATION: u64 = 1;
    /// APP_USAGE.
    pub const APP_USAGE: u64 = 2;
    /// NET_USAGE.
    pub const NET_USAGE: u64 = 3;
    /// MESSAGE.
    pub const MESSAGE: u64 = 4;
    /// EVENT.
    pub const EVENT: u64 = 5;
    /// The first kind this version does not know.
    pub const FIRST_UNKNOWN: u64 = 6;
}

impl<'a> Record<'a> {
    /// The wire kind number.
    pub fn kind(&self) -> u64 {
        match &self.body {
            RecordBody::Location(_) => kind::LOCATION,
            RecordBody::AppUsage(_) => kind::APP_USAGE,
            RecordBody::NetUsage(_) => kind::NET_USAGE,
            RecordBody::Message(_) => kind::MESSAGE,
            RecordBody::Event(_) => kind::EVENT,
            RecordBody::Unknown(u) => u.kind,
        }
    }

    /// The kind's name as stored in items: `location`, ..., `event`, `unknown`.
    pub fn kind_name(&self) -> &'static str {
        match &self.body {
            RecordBody::Location(_) => "location",
            RecordBody::AppUsage(_) => "app_usage",
            RecordBody::NetUsage(_) => "net_usage",
            RecordBody::Message(_) => "message",
            RecordBody::Event(_) => "event",
            RecordBody::Unknown(_) => "unknown",
        }
    }

    fn parse(input: &'a [u8]) -> Res<'a, Record<'a>> {
        let (input, kind) = varint(input, "kind")?;
        let (input, time_offset_ms) = svarint(input, "time_offset_ms")?;
        let (input, body_len) = varint(input, "body_len")?;
        let (rest, body) = take_field(input, body_len, "body")?;
        let (body_rest, parsed) = match kind {
            kind::LOCATION => Location::parse(body).map(|(r, b)| (r, RecordBody::Location(b)))?,
            kind::APP_USAGE => AppUsage::parse(body).map(|(r, b)| (r, RecordBody::AppUsage(b)))?,
            kind::NET_USAGE => NetUsage::parse(body).map(|(r, b)| (r, RecordBody::NetUsage(b)))?,
            kind::MESSAGE => Message::parse(body).map(|(r, b)| (r, RecordBody::Message(b)))?,
            kind::EVENT => Event::parse(body).map(|(r, b)| (r, RecordBody::Event(b)))?,
            0 => return fail("kind", Problem::Rule("0 is not a record kind")),
            _ => (
                &body[body.len()..],
                RecordBody::Unknown(Unknown {
                    kind,
                    body: Cow::Borrowed(body),
                }),
            ),
        };
        end(body_rest, "body").map_err(nom::Err::Error)?;
        Ok((
            rest,
            Record {
                time_offset_ms,
                body: parsed,
            },
        ))
    }

    /// Checks the record's rules; `base_time_ms` is its batch's.
    pub fn check(&self, base_time_ms: u64) -> Result<(), FieldError> {
        if record_time(base_time_ms, self.time_offset_ms).is_none() {
            return Err(FieldError::new(
                "time_offset_ms",
                Problem::Rule("makes the record time (base_time_ms + time_offset_ms) negative or above u64::MAX"),
            ));
        }
        match &self.body {
            RecordBody::Location(b) => b.check(),
            RecordBody::AppUsage(b) => b.check(),
            RecordBody::NetUsage(b) => b.check(),
            RecordBody::Message(b) => b.check(),
            RecordBody::Event(b) => b.check(),
            RecordBody::Unknown(b) => check_range("kind", b.kind, kind::FIRST_UNKNOWN, u64::MAX),
        }
    }

    fn body_len(&self) -> usize {
        match &self.body {
            RecordBody::Location(b) => 8 + varint_len(b.accuracy_m),
            RecordBody::AppUsage(b) => bytes_len(b.app.len()) + bytes_len(b.title.len()) + varint_len(b.foreground_ms),
            RecordBody::NetUsage(b) => bytes_len(b.app.len()) + 1 + varint_len(b.bytes_tx) + varint_len(b.bytes_rx),
            RecordBody::Message(b) => 2 + bytes_len(b.peer.len()) + varint_len(b.size),
            RecordBody::Event(b) => {
                bytes_len(b.name.len())
                    + varint_len(b.attrs.len() as u64)
                    + b.attrs.iter().map(Attr::encoded_len).sum::<usize>()
            }
            RecordBody::Unknown(b) => b.body.len(),
        }
    }

    /// The record's encoded length, header fields included.
    pub fn encoded_len(&self) -> usize {
        let body_len = self.body_len();
        varint_len(self.kind()) + varint_len(zigzag(self.time_offset_ms)) + varint_len(body_len as u64) + body_len
    }

    fn write(&self, b: &mut BytesMut) {
        put_varint(b, self.kind());
        put_svarint(b, self.time_offset_ms);
        put_varint(b, self.body_len() as u64);
        match &self.body {
            RecordBody::Location(l) => {
                b.put_i32(l.lat_e7);
                b.put_i32(l.lon_e7);
                put_varint(b, l.accuracy_m);
            }
            RecordBody::AppUsage(a) => {
                put_str(b, &a.app);
                put_str(b, &a.title);
                put_varint(b, a.foreground_ms);
            }
            RecordBody::NetUsage(n) => {
                put_str(b, &n.app);
                b.put_u8(n.network as u8);
                put_varint(b, n.bytes_tx);
                put_varint(b, n.bytes_rx);
            }
            RecordBody::Message(m) => {
                b.put_u8(m.direction as u8);
                b.put_u8(m.channel as u8);
                put_str(b, &m.peer);
                put_varint(b, m.size);
            }
            RecordBody::Event(e) => {
                put_str(b, &e.name);
                put_varint(b, e.attrs.len() as u64);
                for attr in &e.attrs {
                    attr.write(b);
                }
            }
            RecordBody::Unknown(u) => b.put_slice(&u.body),
        }
    }

    /// A copy that owns its strings and bytes.
    pub fn into_owned(self) -> Record<'static> {
        let body = match self.body {
            RecordBody::Location(l) => RecordBody::Location(l),
            RecordBody::AppUsage(a) => RecordBody::AppUsage(AppUsage {
                app: owned(a.app),
                title: owned(a.title),
                foreground_ms: a.foreground_ms,
            }),
            RecordBody::NetUsage(n) => RecordBody::NetUsage(NetUsage {
                app: owned(n.app),
                network: n.network,
                bytes_tx: n.bytes_tx,
                bytes_rx: n.bytes_rx,
            }),
            RecordBody::Message(m) => RecordBody::Message(Message {
                direction: m.direction,
                channel: m.channel,
                peer: owned(m.peer),
                size: m.size,
            }),
            RecordBody::Event(e) => RecordBody::Event(Event {
                name: owned(e.name),
                attrs: e.attrs.into_iter().map(Attr::into_owned).collect(),
            }),
            RecordBody::Unknown(u) => RecordBody::Unknown(Unknown {
                kind: u.kind,
                body: Cow::Owned(u.body.into_owned()),
            }),
        };
        Record {
            time_offset_ms: self.time_offset_ms,
            body,
        }
    }
}

fn owned(s: Cow<'_, str>) -> Cow<'static, str> {
    Cow::Owned(s.into_owned())
}

/// LOCATION (kind 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// Latitude in 1e-7 degrees, −900,000,000 … 900,000,000.
    pub lat_e7: i32,
    /// Longitude in 1e-7 degrees, −1,800,000,000 … 1,800,000,000.
    pub lon_e7: i32,
    /// Accuracy radius in metres, ≤ 1,000,000.
    pub accuracy_m: u64,
}

impl Location {
    fn parse(input: &[u8]) -> Res<'_, Location> {
        let (input, lat_e7) = i32_field(input, "lat_e7")?;
        let (input, lon_e7) = i32_field(input, "lon_e7")?;
        let (input, accuracy_m) = varint(input, "accuracy_m")?;
        Ok((
            input,
            Location {
                lat_e7,
                lon_e7,
                accuracy_m,
            },
        ))
    }

    /// The rules of AWP1.md §5 for LOCATION.
    pub fn check(&self) -> Result<(), FieldError> {
        check_range("lat_e7", self.lat_e7, -900_000_000, 900_000_000)?;
        check_range("lon_e7", self.lon_e7, -1_800_000_000, 1_800_000_000)?;
        check_range("accuracy_m", self.accuracy_m, 0, 1_000_000)
    }
}

/// APP_USAGE (kind 2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppUsage<'a> {
    /// 1–256 bytes.
    pub app: Cow<'a, str>,
    /// 0–512 bytes.
    pub title: Cow<'a, str>,
    /// Time in the foreground.
    pub foreground_ms: u64,
}

impl<'a> AppUsage<'a> {
    fn parse(input: &'a [u8]) -> Res<'a, AppUsage<'a>> {
        let (input, app) = str_field(input, "app", 0, u64::MAX)?;
        let (input, title) = str_field(input, "title", 0, u64::MAX)?;
        let (input, foreground_ms) = varint(input, "foreground_ms")?;
        Ok((
            input,
            AppUsage {
                app: Cow::Borrowed(app),
                title: Cow::Borrowed(title),
                foreground_ms,
            },
        ))
    }

    /// The rules of AWP1.md §5 for APP_USAGE.
    pub fn check(&self) -> Result<(), FieldError> {
        check_len("app", self.app.len(), 1, 256)?;
        check_len("title", self.title.len(), 0, 512)
    }
}

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $value:literal => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name {
            $($(#[$vdoc])* $variant = $value),+
        }

        impl $name {
            /// Every value, in wire order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value for a wire byte, if defined.
            pub fn from_u8(v: u8) -> Option<$name> {
                match v {
                    $($value => Some($name::$variant),)+
                    _ => None,
                }
            }

            /// The name stored in items.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }
    };
}

wire_enum! {
    /// NET_USAGE `network`.
    Network {
        /// 0
        Unknown = 0 => "unknown",
        /// 1
        Wifi = 1 => "wifi",
        /// 2
        Cellular = 2 => "cellular",
        /// 3
        Ethernet = 3 => "ethernet",
        /// 4
        Other = 4 => "other",
    }
}

wire_enum! {
    /// MESSAGE `direction`.
    Direction {
        /// 0: received.
        In = 0 => "in",
        /// 1: sent.
        Out = 1 => "out",
    }
}

wire_enum! {
    /// MESSAGE `channel`.
    Channel {
        /// 0
        Sms = 0 => "sms",
        /// 1: `size` is seconds.
        Call = 1 => "call",
        /// 2
        Email = 2 => "email",
        /// 3
        Chat = 3 => "chat",
        /// 4
        Other = 4 => "other",
    }
}

fn enum_field<'a, T>(input: &'a [u8], field: &'static str, from: fn(u8) -> Option<T>) -> Res<'a, T> {
    let (input, raw) = u8_field(input, field)?;
    match from(raw) {
        Some(v) => Ok((input, v)),
        None => fail(field, Problem::UnknownValue(raw.into())),
    }
}

/// NET_USAGE (kind 3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetUsage<'a> {
    /// 0–256 bytes.
    pub app: Cow<'a, str>,
    /// The network type.
    pub network: Network,
    /// Bytes sent.
    pub bytes_tx: u64,
    /// Bytes received.
    pub bytes_rx: u64,
}

impl<'a> NetUsage<'a> {
    fn parse(input: &'a [u8]) -> Res<'a, NetUsage<'a>> {
        let (input, app) = str_field(input, "app", 0, u64::MAX)?;
        let (input, network) = enum_field(input, "network", Network::from_u8)?;
        let (input, bytes_tx) = varint(input, "bytes_tx")?;
        let (input, bytes_rx) = varint(input, "bytes_rx")?;
        Ok((
            input,
            NetUsage {
                app: Cow::Borrowed(app),
                network,
                bytes_tx,
                bytes_rx,
            },
        ))
    }

    /// The rules of AWP1.md §5 for NET_USAGE.
    pub fn check(&self) -> Result<(), FieldError> {
        check_len("app", self.app.len(), 0, 256)
    }
}

/// MESSAGE (kind 4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// In or out.
    pub direction: Direction,
    /// The channel.
    pub channel: Channel,
    /// 0–256 bytes.
    pub peer: Cow<'a, str>,
    /// Bytes; seconds for calls.
    pub size: u64,
}

impl<'a> Message<'a> {
    fn parse(input: &'a [u8]) -> Res<'a, Message<'a>> {
        let (input, direction) = enum_field(input, "direction", Direction::from_u8)?;
        let (input, channel) = enum_field(input, "channel", Channel::from_u8)?;
        let (input, peer) = str_field(input, "peer", 0, u64::MAX)?;
        let (input, size) = varint(input, "size")?;
        Ok((
            input,
            Message {
                direction,
                channel,
                peer: Cow::Borrowed(peer),
                size,
            },
        ))
    }

    /// The rules of AWP1.md §5 for MESSAGE.
    pub fn check(&self) -> Result<(), FieldError> {
        check_len("peer", self.peer.len(), 0, 256)
    }
}

/// The most attributes an EVENT may carry.
pub const MAX_EVENT_ATTRS: usize = 64;

/// EVENT (kind 5).
#[derive(Clone, Debug, PartialEq)]
pub struct Event<'a> {
    /// 1–128 bytes.
    pub name: Cow<'a, str>,
    /// 0–64 attributes with unique keys, in wire order.
    pub attrs: Vec<Attr<'a>>,
}

impl<'a> Event<'a> {
    fn parse(input: &'a [u8]) -> Res<'a, Event<'a>> {
        let (input, name) = str_field(input, "name", 0, u64::MAX)?;
        let (mut input, n) = varint(input, "n")?;
        if n > MAX_EVENT_ATTRS as u64 {
            return fail(
                "n",
                Problem::Range {
                    value: n.into(),
                    min: 0,
                    max: MAX_EVENT_ATTRS as i128,
                },
            );
        }
        let mut attrs = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let (rest, attr) = Attr::parse(input)?;
            attrs.push(attr);
            input = rest;
        }
        Ok((
            input,
            Event {
                name: Cow::Borrowed(name),
                attrs,
            },
        ))
    }

    /// The rules of AWP1.md §5 for EVENT.
    pub fn check(&self) -> Result<(), FieldError> {
        check_len("name", self.name.len(), 1, 128)?;
        check_range("n", self.attrs.len() as u64, 0, MAX_EVENT_ATTRS as u64)?;
        for (i, attr) in self.attrs.iter().enumerate() {
            attr.check()?;
            // At most 64 short keys: a quadratic scan beats hashing.
            if self.attrs[..i].iter().any(|a| a.key == attr.key) {
                return Err(FieldError::new("key", Problem::DuplicateKey));
            }
        }
        Ok(())
    }
}

/// One EVENT attribute.
#[derive(Clone, Debug, PartialEq)]
pub struct Attr<'a> {
    /// 1–64 bytes, unique within the record.
    pub key: Cow<'a, str>,
    /// The typed value.
    pub value: AttrValue<'a>,
}

/// An EVENT attribute value, by tag.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue<'a> {
    /// Tag 0.
    Null,
    /// Tag 1.
    Bool(bool),
    /// Tag 2.
    Int(i64),
    /// Tag 3: finite, and 0 or of magnitude 1e-130 ..= 9.99e125.
    Float(f64),
    /// Tag 4: 0–4,096 bytes.
    String(Cow<'a, str>),
    /// Tag 5: 0–4,096 bytes.
    Bytes(Cow<'a, [u8]>),
}

/// The longest string or bytes attribute value.
pub const MAX_ATTR_VALUE_LEN: usize = 4096;

/// Whether a float fits DynamoDB's number range, as EVENT floats must.
pub fn is_storable_float(v: f64) -> bool {
    v == 0.0 || (v.is_finite() && (1e-130..=9.99e125).contains(&v.abs()))
}

impl<'a> AttrValue<'a> {
    /// The wire tag.
    pub fn tag(&self) -> u8 {
        match self {
            AttrValue::Null => 0,
            AttrValue::Bool(_) => 1,
            AttrValue::Int(_) => 2,
            AttrValue::Float(_) => 3,
            AttrValue::String(_) => 4,
            AttrValue::Bytes(_) => 5,
        }
    }
}

impl<'a> Attr<'a> {
    fn parse(input: &'a [u8]) -> Res<'a, Attr<'a>> {
        let (input, key) = str_field(input, "key", 0, u64::MAX)?;
        let (input, tag) = u8_field(input, "tag")?;
        let (input, value) = match tag {
            0 => (input, AttrValue::Null),
            1 => {
                let (input, v) = u8_field(input, "value")?;
                match v {
                    0 | 1 => (input, AttrValue::Bool(v == 1)),
                    _ => return fail("value", Problem::Rule("bool must be 0 or 1")),
                }
            }
            2 => svarint(input, "value").map(|(i, v)| (i, AttrValue::Int(v)))?,
            3 => f64_field(input, "value").map(|(i, v)| (i, AttrValue::Float(v)))?,
            4 => str_field(input, "value", 0, MAX_ATTR_VALUE_LEN as u64)
                .map(|(i, v)| (i, AttrValue::String(Cow::Borrowed(v))))?,
            5 => bytes_field(input, "value", 0, MAX_ATTR_VALUE_LEN as u64)
                .map(|(i, v)| (i, AttrValue::Bytes(Cow::Borrowed(v))))?,
            other => return fail("tag", Problem::UnknownValue(other.into())),
        };
        Ok((
            input,
            Attr {
                key: Cow::Borrowed(key),
                value,
            },
        ))
    }

    /// The rules of AWP1.md §5 for one attribute (uniqueness is the event's).
    pub fn check(&self) -> Result<(), FieldError> {
        check_len("key", self.key.len(), 1, 64)?;
        match &self.value {
            AttrValue::Float(v) if !is_storable_float(*v) => {
                Err(FieldError::new("value", Problem::FloatOutOfRange(*v)))
            }
            AttrValue::String(s) => check_len("value", s.len(), 0, MAX_ATTR_VALUE_LEN as u64),
            AttrValue::Bytes(b) => check_len("value", b.len(), 0, MAX_ATTR_VALUE_LEN as u64),
            _ => Ok(()),
        }
    }

    fn encoded_len(&self) -> usize {
        bytes_len(self.key.len())
            + 1
            + match &self.value {
                AttrValue::Null => 0,
                AttrValue::Bool(_) => 1,
                AttrValue::Int(v) => varint_len(zigzag(*v)),
                AttrValue::Float(_) => 8,
                AttrValue::String(s) => bytes_len(s.len()),
                AttrValue::Bytes(b) => bytes_len(b.len()),
            }
    }

    fn write(&self, b: &mut BytesMut) {
        put_str(b, &self.key);
        b.put_u8(self.value.tag());
        match &self.value {
            AttrValue::Null => {}
            AttrValue::Bool(v) => b.put_u8(u8::from(*v)),
            AttrValue::Int(v) => put_svarint(b, *v),
            AttrValue::Float(v) => b.put_f64(*v),
            AttrValue::String(s) => put_str(b, s),
            AttrValue::Bytes(v) => put_bytes(b, v),
        }
    }

    /// A copy that owns its strings and bytes.
    pub fn into_owned(self) -> Attr<'static> {
        Attr {
            key: owned(self.key),
            value: match self.value {
                AttrValue::Null => AttrValue::Null,
                AttrValue::Bool(v) => AttrValue::Bool(v),
                AttrValue::Int(v) => AttrValue::Int(v),
                AttrValue::Float(v) => AttrValue::Float(v),
                AttrValue::String(s) => AttrValue::String(owned(s)),
                AttrValue::Bytes(b) => AttrValue::Bytes(Cow::Owned(b.into_owned())),
            },
        }
    }
}

/// A record of a kind this version does not know (6 and above), kept whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unknown<'a> {
    /// The kind number (≥ 6).
    pub kind: u64,
    /// The body bytes as received.
    pub body: Cow<'a, [u8]>,
}
