//! A record as the agent makes it: its own time (unix ms), its kind, and its
//! body, checked against AWP1.md §5 when it is made, so that nothing reaches
//! the queue that the gateway would answer with ACK REJECTED.
//!
//! A [`Record`] holds its body already encoded: the queue writes those bytes
//! as they are, and a sealed batch is written from them
//! ([`awp_protocol::content_from_parts`]).

use std::borrow::Cow;

use awp_protocol::{
    AppUsage, Attr, AttrValue, Channel, Direction, Event, FieldError, Location, Message, NetUsage, Network, RecordBody,
    RecordParts, Unknown,
};
use bytes::BytesMut;

/// A record that breaks a rule of AWP/1, or JSON that does not describe one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordError {
    /// A field breaks its rule (AWP1.md §5).
    #[error("{0}")]
    Field(FieldError),
    /// The time is above what a record can carry (i64::MAX ms).
    #[error("time_ms {0} is above {max}", max = i64::MAX)]
    Time(u64),
    /// The JSON is not a record (`push_json`).
    #[error("{0}")]
    Json(#[from] awp_protocol::json::JsonError),
    /// The JSON text does not parse.
    #[error("not JSON: {0}")]
    Syntax(String),
}

impl From<FieldError> for RecordError {
    fn from(e: FieldError) -> RecordError {
        RecordError::Field(e)
    }
}

/// One checked record: its time, kind and encoded body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    time_ms: u64,
    kind: u64,
    body: Vec<u8>,
}

impl Record {
    /// Any record body at `time_ms` (unix milliseconds), checked.
    pub fn new(time_ms: u64, body: RecordBody<'_>) -> Result<Record, RecordError> {
        let offset = i64::try_from(time_ms).map_err(|_| RecordError::Time(time_ms))?;
        let record = awp_protocol::Record {
            time_offset_ms: offset,
            body,
        };
        record.check(0)?;
        let mut body = BytesMut::new();
        record.write_body(&mut body);
        Ok(Record {
            time_ms,
            kind: record.kind(),
            body: body.to_vec(),
        })
    }

    /// LOCATION: latitude and longitude in 1e-7 degrees, accuracy in metres.
    pub fn location(time_ms: u64, lat_e7: i32, lon_e7: i32, accuracy_m: u64) -> Result<Record, RecordError> {
        Record::new(
            time_ms,
            RecordBody::Location(Location {
                lat_e7,
                lon_e7,
                accuracy_m,
            }),
        )
    }

    /// APP_USAGE: an app (1–256 bytes), its window title (0–512) and its
    /// time in the foreground.
    pub fn app_usage(time_ms: u64, app: &str, title: &str, foreground_ms: u64) -> Result<Record, RecordError> {
        Record::new(
            time_ms,
            RecordBody::AppUsage(AppUsage {
                app: Cow::Borrowed(app),
                title: Cow::Borrowed(title),
                foreground_ms,
            }),
        )
    }

    /// NET_USAGE: an app (0–256 bytes), the network, bytes sent and received.
    pub fn net_usage(
        time_ms: u64,
        app: &str,
        network: Network,
        bytes_tx: u64,
        bytes_rx: u64,
    ) -> Result<Record, RecordError> {
        Record::new(
            time_ms,
            RecordBody::NetUsage(NetUsage {
                app: Cow::Borrowed(app),
                network,
                bytes_tx,
                bytes_rx,
            }),
        )
    }

    /// MESSAGE: direction, channel, peer (0–256 bytes), size (bytes; seconds
    /// for calls).
    pub fn message(
        time_ms: u64,
        direction: Direction,
        channel: Channel,
        peer: &str,
        size: u64,
    ) -> Result<Record, RecordError> {
        Record::new(
            time_ms,
            RecordBody::Message(Message {
                direction,
                channel,
                peer: Cow::Borrowed(peer),
                size,
            }),
        )
    }

    /// EVENT: a name (1–128 bytes) and up to 64 attributes with unique keys.
    pub fn event<'a>(
        time_ms: u64,
        name: &str,
        attrs: impl IntoIterator<Item = (&'a str, AttrValue<'a>)>,
    ) -> Result<Record, RecordError> {
        Record::new(
            time_ms,
            RecordBody::Event(Event {
                name: Cow::Borrowed(name),
                attrs: attrs
                    .into_iter()
                    .map(|(key, value)| Attr {
                        key: Cow::Borrowed(key),
                        value,
                    })
                    .collect(),
            }),
        )
    }

    /// A kind this version of AWP/1 does not know (≥ 6), as its body bytes:
    /// the gateway keeps it whole.
    pub fn unknown(time_ms: u64, kind: u64, body: &[u8]) -> Result<Record, RecordError> {
        Record::new(
            time_ms,
            RecordBody::Unknown(Unknown {
                kind,
                body: Cow::Borrowed(body),
            }),
        )
    }

    /// A record in the JSON shape of the test vectors' records, with
    /// `time_ms` (absolute unix ms) in place of `time_offset_ms`:
    /// `{"kind": 1, "time_ms": 1700000000000, "location": {...}}`.
    pub fn from_json(text: &str) -> Result<Record, RecordError> {
        let mut value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| RecordError::Syntax(e.to_string()))?;
        let time_ms = match value.get("time_ms") {
            Some(t) => t.as_u64().ok_or_else(|| {
                RecordError::Json(awp_protocol::json::JsonError {
                    path: "time_ms".into(),
                    problem: "must be unix milliseconds (a u64)".into(),
                })
            })?,
            None => {
                return Err(RecordError::Json(awp_protocol::json::JsonError {
                    path: "time_ms".into(),
                    problem: "missing".into(),
                }));
            }
        };
        let offset = i64::try_from(time_ms).map_err(|_| RecordError::Time(time_ms))?;
        if let Some(object) = value.as_object_mut() {
            object.insert("time_offset_ms".into(), offset.into());
        }
        let record = awp_protocol::json::record_from_json(&value)?;
        Record::new(time_ms, record.body)
    }

    /// The record's time, unix milliseconds.
    pub fn time_ms(&self) -> u64 {
        self.time_ms
    }

    /// The wire kind.
    pub fn kind(&self) -> u64 {
        self.kind
    }

    /// The encoded body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The record as [`awp_protocol::content_from_parts`] takes it.
    pub fn parts(&self) -> RecordParts<'_> {
        RecordParts {
            time_ms: self.time_ms,
            kind: self.kind,
            body: &self.body,
        }
    }
}

#[cfg(test)]
#[path = "record_test.rs"]
mod tests;
