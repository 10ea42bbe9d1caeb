//! A record: its time and body, the body's kinds (AWP1.md §5), and what
//! every record is checked for.

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};

use crate::error::{FieldError, Problem};
use crate::wire::{
    Res, bytes_len, check_range, end, fail, put_str, put_svarint, put_varint, svarint, take_field, varint, varint_len,
    zigzag,
};

use super::*;

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

    pub(super) fn parse(input: &'a [u8]) -> Res<'a, Record<'a>> {
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

    pub(super) fn body_len(&self) -> usize {
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

    pub(super) fn write(&self, b: &mut BytesMut) {
        put_varint(b, self.kind());
        put_svarint(b, self.time_offset_ms);
        put_varint(b, self.body_len() as u64);
        self.write_body(b);
    }

    /// Appends the body alone (no kind, time or length), as laid out by its
    /// kind: what an agent's queue keeps of a record, beside its kind and
    /// time, to write it into a batch later ([`super::content_from_parts`]).
    /// Check the record first ([`Record::check`]): this writes what it holds.
    pub fn write_body(&self, b: &mut BytesMut) {
        b.reserve(self.body_len());
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
