//! Frames as JSON, in the shape of the `frame` objects of `vectors.json`:
//! what `gateway inspect` prints, and how tests state frames.
//!
//! Bytes are lower-case hex; enumerations are their wire numbers; a BATCH
//! lists its decoded records and names its compression only when it has one.

use std::borrow::Cow;

use serde_json::{Map, Value, json};

use crate::batch::{
    AppUsage, Attr, AttrValue, Batch, Channel, Direction, Event, Location, Message, NetUsage, Network, Record,
    RecordBody, Unknown,
};
use crate::error::{BatchError, EncodeError};
use crate::frame::{Ack, AckStatus, ErrorFrame, Frame, GoAway, Hello, HelloAuth, Platform, Welcome};
use crate::limits::{Compression, CompressionSet, Limits};

/// A JSON value that does not describe a frame.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct JsonError {
    /// Where in the object (`records[3].location.lat_e7`).
    pub path: String,
    /// What is wrong there.
    pub problem: String,
}

/// A frame read from JSON: a BATCH comes as its content, since its frame is
/// made by encoding that content.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonFrame {
    /// Any frame but BATCH.
    Frame(Frame),
    /// A BATCH's content and the compression to send it with.
    Batch(Batch<'static>, Compression),
}

impl JsonFrame {
    /// Encodes the frame (checking every rule) as one buffer.
    pub fn encode(&self, limits: &Limits) -> Result<bytes::BytesMut, EncodeError> {
        let mut out = bytes::BytesMut::new();
        match self {
            JsonFrame::Frame(f) => f.encode(&mut out)?,
            JsonFrame::Batch(b, c) => b.encode(*c, limits, &mut out)?,
        }
        Ok(out)
    }
}

/// The JSON form of a frame. A BATCH's content is decoded with `limits`;
/// if it breaks a rule, that error is returned (answered with ACK REJECTED).
pub fn frame_to_json(frame: &Frame, limits: &Limits) -> Result<Value, BatchError> {
    Ok(match frame {
        Frame::Hello(h) => {
            let (expiry, token) = match &h.auth {
                HelloAuth::Token { expiry, token } => (*expiry, hex::encode(token)),
                HelloAuth::ClientCert => (0, String::new()),
            };
            json!({
                "type": "HELLO",
                "min_version": h.min_version,
                "max_version": h.max_version,
                "tenant_id": h.tenant_id,
                "device_id": h.device_id,
                "platform": h.platform as u8,
                "agent_version": h.agent_version,
                "compression": h.compression.bits(),
                "auth_method": h.auth.method(),
                "token_expiry": expiry,
                "token": token,
            })
        }
        Frame::Welcome(w) => json!({
            "type": "WELCOME",
            "version": w.version,
            "session_id": hex::encode(w.session_id),
            "max_frame_len": w.max_frame_len,
            "max_batch_records": w.max_batch_records,
            "max_inflight": w.max_inflight,
            "heartbeat_ms": w.heartbeat_ms,
            "compression": w.compression.bits(),
        }),
        Frame::Batch(b) => batch_to_json(&b.decode(limits)?, b.compression()),
        Frame::Ack(a) => json!({
            "type": "ACK",
            "seq": a.seq,
            "status": a.status as u8,
            "retry_after_ms": a.retry_after_ms,
            "message": a.message,
        }),
        Frame::Ping(n) => json!({"type": "PING", "nonce": n}),
        Frame::Pong(n) => json!({"type": "PONG", "nonce": n}),
        Frame::GoAway(g) => json!({
            "type": "GOAWAY",
            "reconnect_after_ms": g.reconnect_after_ms,
            "reason": g.reason,
        }),
        Frame::Error(e) => json!({"type": "ERROR", "code": e.code, "message": e.message}),
        Frame::Bye => json!({"type": "BYE"}),
    })
}

/// The JSON form of a BATCH's content.
pub fn batch_to_json(batch: &Batch<'_>, compression: Compression) -> Value {
    let mut obj = Map::new();
    obj.insert("type".into(), "BATCH".into());
    obj.insert("seq".into(), batch.seq.into());
    obj.insert("base_time_ms".into(), batch.base_time_ms.into());
    obj.insert("records".into(), batch.records.iter().map(record_to_json).collect());
    if compression != Compression::None {
        obj.insert("compression".into(), compression.name().into());
    }
    Value::Object(obj)
}

fn record_to_json(record: &Record<'_>) -> Value {
    let (key, body) = match &record.body {
        RecordBody::Location(l) => (
            "location",
            json!({"lat_e7": l.lat_e7, "lon_e7": l.lon_e7, "accuracy_m": l.accuracy_m}),
        ),
        RecordBody::AppUsage(a) => (
            "app_usage",
            json!({"app": a.app, "title": a.title, "foreground_ms": a.foreground_ms}),
        ),
        RecordBody::NetUsage(n) => (
            "net_usage",
            json!({"app": n.app, "network": n.network as u8, "bytes_tx": n.bytes_tx, "bytes_rx": n.bytes_rx}),
        ),
        RecordBody::Message(m) => (
            "message",
            json!({"direction": m.direction as u8, "channel": m.channel as u8, "peer": m.peer, "size": m.size}),
        ),
        RecordBody::Event(e) => {
            let attrs: Vec<Value> = e
                .attrs
                .iter()
                .map(|a| {
                    let (tag, value) = match &a.value {
                        AttrValue::Null => ("null", Value::Null),
                        AttrValue::Bool(v) => ("bool", Value::from(*v)),
                        AttrValue::Int(v) => ("int", Value::from(*v)),
                        AttrValue::Float(v) => ("float", Value::from(*v)),
                        AttrValue::String(s) => ("string", Value::from(s.as_ref())),
                        AttrValue::Bytes(b) => ("bytes", Value::from(hex::encode(b))),
                    };
                    let mut obj = Map::new();
                    obj.insert("key".into(), a.key.as_ref().into());
                    obj.insert(tag.into(), value);
                    Value::Object(obj)
                })
                .collect();
            ("event", json!({"name": e.name, "attrs": attrs}))
        }
        RecordBody::Unknown(u) => ("unknown", json!({"body": hex::encode(&u.body)})),
    };
    let mut obj = Map::new();
    obj.insert("kind".into(), record.kind().into());
    obj.insert("time_offset_ms".into(), record.time_offset_ms.into());
    obj.insert(key.into(), body);
    Value::Object(obj)
}

/// Reads a frame from its JSON form. Values are taken as given: the rules
/// are checked when the frame is encoded.
pub fn frame_from_json(v: &Value) -> Result<JsonFrame, JsonError> {
    let o = Obj::new(v, String::new())?;
    let frame = match o.str("type")? {
        "HELLO" => {
            let method = o.uint::<u8>("auth_method")?;
            let auth = match method {
                1 => HelloAuth::Token {
                    expiry: o.uint("token_expiry")?,
                    token: o
                        .hex("token")?
                        .try_into()
                        .map_err(|_| o.err("token", "must be 32 bytes"))?,
                },
                2 => HelloAuth::ClientCert,
                _ => return Err(o.err("auth_method", "must be 1 or 2")),
            };
            Frame::Hello(Hello {
                min_version: o.uint("min_version")?,
                max_version: o.uint("max_version")?,
                tenant_id: o.str("tenant_id")?.to_owned(),
                device_id: o.str("device_id")?.to_owned(),
                platform: Platform::from_u8(o.uint("platform")?).ok_or_else(|| o.err("platform", "unknown"))?,
                agent_version: o.str("agent_version")?.to_owned(),
                compression: CompressionSet::from_bits(o.uint("compression")?)
                    .ok_or_else(|| o.err("compression", "unknown bits"))?,
                auth,
            })
        }
        "WELCOME" => Frame::Welcome(Welcome {
            version: o.uint("version")?,
            session_id: o
                .hex("session_id")?
                .try_into()
                .map_err(|_| o.err("session_id", "must be 16 bytes"))?,
            max_frame_len: o.uint("max_frame_len")?,
            max_batch_records: o.uint("max_batch_records")?,
            max_inflight: o.uint("max_inflight")?,
            heartbeat_ms: o.uint("heartbeat_ms")?,
            compression: CompressionSet::from_bits(o.uint("compression")?)
                .ok_or_else(|| o.err("compression", "unknown bits"))?,
        }),
        "BATCH" => {
            let compression = match o.0.get("compression").and_then(Value::as_str) {
                None | Some("none") => Compression::None,
                Some("lz4") => Compression::Lz4,
                Some("zstd") => Compression::Zstd,
                Some(_) => return Err(o.err("compression", "must be none, lz4 or zstd")),
            };
            let records = o
                .array("records")?
                .iter()
                .enumerate()
                .map(|(i, r)| parse_record(&Obj::new(r, format!("records[{i}]"))?))
                .collect::<Result<Vec<_>, _>>()?;
            let batch = Batch {
                seq: o.uint("seq")?,
                base_time_ms: o.uint("base_time_ms")?,
                records,
            };
            return Ok(JsonFrame::Batch(batch, compression));
        }
        "ACK" => Frame::Ack(Ack {
            seq: o.uint("seq")?,
            status: match o.uint::<u8>("status")? {
                0 => AckStatus::Ok,
                1 => AckStatus::Retry,
                2 => AckStatus::Rejected,
                _ => return Err(o.err("status", "must be 0, 1 or 2")),
            },
            retry_after_ms: o.uint("retry_after_ms")?,
            message: o.str("message")?.to_owned(),
        }),
        "PING" => Frame::Ping(o.uint("nonce")?),
        "PONG" => Frame::Pong(o.uint("nonce")?),
        "GOAWAY" => Frame::GoAway(GoAway {
            reconnect_after_ms: o.uint("reconnect_after_ms")?,
            reason: o.str("reason")?.to_owned(),
        }),
        "ERROR" => Frame::Error(ErrorFrame {
            code: o.uint("code")?,
            message: o.str("message")?.to_owned(),
        }),
        "BYE" => Frame::Bye,
        _ => return Err(o.err("type", "not an AWP/1 frame type")),
    };
    Ok(JsonFrame::Frame(frame))
}

/// Reads one record in the shape of `vectors.json`'s records (`kind`,
/// `time_offset_ms` and the body under its kind's name). Values are taken as
/// given: check the record ([`Record::check`]) before using it.
pub fn record_from_json(v: &Value) -> Result<Record<'static>, JsonError> {
    parse_record(&Obj::new(v, String::new())?)
}

fn parse_record(o: &Obj<'_>) -> Result<Record<'static>, JsonError> {
    let kind: u64 = o.uint("kind")?;
    let time_offset_ms =
        o.0.get("time_offset_ms")
            .and_then(Value::as_i64)
            .ok_or_else(|| o.err("time_offset_ms", "must be an i64"))?;
    let body = match kind {
        1 => {
            let b = o.obj("location")?;
            RecordBody::Location(Location {
                lat_e7: b.int("lat_e7")?,
                lon_e7: b.int("lon_e7")?,
                accuracy_m: b.uint("accuracy_m")?,
            })
        }
        2 => {
            let b = o.obj("app_usage")?;
            RecordBody::AppUsage(AppUsage {
                app: b.string("app")?,
                title: b.string("title")?,
                foreground_ms: b.uint("foreground_ms")?,
            })
        }
        3 => {
            let b = o.obj("net_usage")?;
            RecordBody::NetUsage(NetUsage {
                app: b.string("app")?,
                network: Network::from_u8(b.uint("network")?).ok_or_else(|| b.err("network", "unknown"))?,
                bytes_tx: b.uint("bytes_tx")?,
                bytes_rx: b.uint("bytes_rx")?,
            })
        }
        4 => {
            let b = o.obj("message")?;
            RecordBody::Message(Message {
                direction: Direction::from_u8(b.uint("direction")?).ok_or_else(|| b.err("direction", "unknown"))?,
                channel: Channel::from_u8(b.uint("channel")?).ok_or_else(|| b.err("channel", "unknown"))?,
                peer: b.string("peer")?,
                size: b.uint("size")?,
            })
        }
        5 => {
            let b = o.obj("event")?;
            let attrs = b
                .array("attrs")?
                .iter()
                .enumerate()
                .map(|(i, a)| attr_from_json(&Obj::new(a, format!("{}.attrs[{i}]", b.1))?))
                .collect::<Result<Vec<_>, _>>()?;
            RecordBody::Event(Event {
                name: b.string("name")?,
                attrs,
            })
        }
        _ => {
            let b = o.obj("unknown")?;
            RecordBody::Unknown(Unknown {
                kind,
                body: Cow::Owned(b.hex("body")?),
            })
        }
    };
    Ok(Record { time_offset_ms, body })
}

fn attr_from_json(o: &Obj<'_>) -> Result<Attr<'static>, JsonError> {
    let key = o.string("key")?;
    let value = if o.0.contains_key("null") {
        AttrValue::Null
    } else if let Some(v) = o.0.get("bool") {
        AttrValue::Bool(v.as_bool().ok_or_else(|| o.err("bool", "must be a boolean"))?)
    } else if let Some(v) = o.0.get("int") {
        AttrValue::Int(v.as_i64().ok_or_else(|| o.err("int", "must be an i64"))?)
    } else if let Some(v) = o.0.get("float") {
        AttrValue::Float(v.as_f64().ok_or_else(|| o.err("float", "must be a number"))?)
    } else if o.0.contains_key("string") {
        AttrValue::String(o.string("string")?)
    } else if o.0.contains_key("bytes") {
        AttrValue::Bytes(Cow::Owned(o.hex("bytes")?))
    } else {
        return Err(o.err("value", "needs one of null, bool, int, float, string, bytes"));
    };
    Ok(Attr { key, value })
}

/// A JSON object with its path, for error messages.
struct Obj<'v>(&'v Map<String, Value>, String);

impl<'v> Obj<'v> {
    fn new(v: &'v Value, path: String) -> Result<Obj<'v>, JsonError> {
        match v.as_object() {
            Some(m) => Ok(Obj(m, path)),
            None => Err(JsonError {
                path,
                problem: "must be an object".into(),
            }),
        }
    }

    fn err(&self, key: &str, problem: &str) -> JsonError {
        JsonError {
            path: if self.1.is_empty() {
                key.to_owned()
            } else {
                format!("{}.{key}", self.1)
            },
            problem: problem.to_owned(),
        }
    }

    fn get(&self, key: &str) -> Result<&'v Value, JsonError> {
        self.0.get(key).ok_or_else(|| self.err(key, "missing"))
    }

    fn obj(&self, key: &str) -> Result<Obj<'v>, JsonError> {
        Obj::new(self.get(key)?, self.err(key, "").path)
    }

    fn array(&self, key: &str) -> Result<&'v Vec<Value>, JsonError> {
        self.get(key)?
            .as_array()
            .ok_or_else(|| self.err(key, "must be an array"))
    }

    fn str(&self, key: &str) -> Result<&'v str, JsonError> {
        self.get(key)?.as_str().ok_or_else(|| self.err(key, "must be a string"))
    }

    fn string(&self, key: &str) -> Result<Cow<'static, str>, JsonError> {
        Ok(Cow::Owned(self.str(key)?.to_owned()))
    }

    fn hex(&self, key: &str) -> Result<Vec<u8>, JsonError> {
        hex::decode(self.str(key)?).map_err(|_| self.err(key, "must be hex"))
    }

    fn uint<T: TryFrom<u64>>(&self, key: &str) -> Result<T, JsonError> {
        self.get(key)?
            .as_u64()
            .and_then(|v| T::try_from(v).ok())
            .ok_or_else(|| self.err(key, "must be an unsigned integer in range"))
    }

    fn int<T: TryFrom<i64>>(&self, key: &str) -> Result<T, JsonError> {
        self.get(key)?
            .as_i64()
            .and_then(|v| T::try_from(v).ok())
            .ok_or_else(|| self.err(key, "must be an integer in range"))
    }
}
