//! Records to storage items (AWP1.md §7): one pure function, shared by every
//! sink, so a record becomes the same item whatever stores it.
//!
//! An [`Item`] is the record's DynamoDB item: the key (`device`, `rk`) and
//! the other attributes in the order of the spec's tables. Sinks either send
//! it as is (DynamoDB) or store its [`Item::to_dynamodb_json`] text (SQLite).
//!
//! Numbers are kept as the decimal strings DynamoDB wants (`N` values are
//! strings on its wire): latitudes are exactly `lat_e7 / 10^7`, floats are
//! the shortest decimal that reads back as the same `f64`.

use awp_protocol::{AttrValue, BatchError, BatchFrame, Limits, Platform, Record, RecordBody};
use serde_json::{Map, Value, json};

/// A DynamoDB attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum ItemValue {
    /// String.
    S(String),
    /// Number, as its decimal text.
    N(String),
    /// Binary.
    B(Vec<u8>),
    /// Boolean.
    Bool(bool),
    /// Null (always `{"NULL": true}`).
    Null,
    /// Map, in insertion order.
    M(Vec<(String, ItemValue)>),
}

/// One stored record: DynamoDB's key and attributes.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// Partition key: the device id.
    pub device: String,
    /// Sort key: `{time:013}#{seq:020}#{index:05}`.
    pub rk: String,
    /// Every other attribute, in the order of AWP1.md §7's tables.
    pub attrs: Vec<(&'static str, ItemValue)>,
}

/// What an item needs besides its record: the session's and the batch's.
#[derive(Clone, Copy, Debug)]
pub struct ItemContext<'a> {
    /// The device id from HELLO.
    pub device_id: &'a str,
    /// The platform from HELLO.
    pub platform: Platform,
    /// The agent version from HELLO (omitted from items when empty).
    pub agent_version: &'a str,
    /// The batch's seq.
    pub seq: u64,
    /// The gateway's clock when the batch arrived, unix ms.
    pub received_at_ms: u64,
    /// Unix seconds; `Some` only when the tenant has a retention period.
    pub expires_at: Option<u64>,
}

/// The storage key's sort part: record time, batch seq, index in batch.
pub fn range_key(time_ms: u64, seq: u64, index: u32) -> String {
    format!("{time_ms:013}#{seq:020}#{index:05}")
}

/// Maps one record (already checked) to its item. `time_ms` is the record's
/// time in unix ms, `index` its 0-based index in its batch.
pub fn record_item(record: &Record<'_>, time_ms: u64, index: u32, ctx: &ItemContext<'_>) -> Item {
    let mut attrs: Vec<(&'static str, ItemValue)> = Vec::with_capacity(14);
    attrs.push(("kind", ItemValue::S(record.kind_name().to_owned())));
    attrs.push(("ts", num(time_ms)));
    attrs.push(("seq", num(ctx.seq)));
    attrs.push(("received_at", num(ctx.received_at_ms)));
    attrs.push(("platform", ItemValue::S(ctx.platform.as_str().to_owned())));
    if !ctx.agent_version.is_empty() {
        attrs.push(("agent_version", ItemValue::S(ctx.agent_version.to_owned())));
    }
    if let Some(expires_at) = ctx.expires_at {
        attrs.push(("expires_at", num(expires_at)));
    }
    match &record.body {
        RecordBody::Location(l) => {
            attrs.push(("lat", ItemValue::N(format_e7(l.lat_e7))));
            attrs.push(("lon", ItemValue::N(format_e7(l.lon_e7))));
            attrs.push(("accuracy_m", num(l.accuracy_m)));
        }
        RecordBody::AppUsage(a) => {
            attrs.push(("app", ItemValue::S(a.app.to_string())));
            if !a.title.is_empty() {
                attrs.push(("title", ItemValue::S(a.title.to_string())));
            }
            attrs.push(("foreground_ms", num(a.foreground_ms)));
        }
        RecordBody::NetUsage(n) => {
            if !n.app.is_empty() {
                attrs.push(("app", ItemValue::S(n.app.to_string())));
            }
            attrs.push(("network", ItemValue::S(n.network.as_str().to_owned())));
            attrs.push(("bytes_tx", num(n.bytes_tx)));
            attrs.push(("bytes_rx", num(n.bytes_rx)));
        }
        RecordBody::Message(m) => {
            attrs.push(("direction", ItemValue::S(m.direction.as_str().to_owned())));
            attrs.push(("channel", ItemValue::S(m.channel.as_str().to_owned())));
            if !m.peer.is_empty() {
                attrs.push(("peer", ItemValue::S(m.peer.to_string())));
            }
            attrs.push(("size", num(m.size)));
        }
        RecordBody::Event(e) => {
            attrs.push(("name", ItemValue::S(e.name.to_string())));
            let map = e
                .attrs
                .iter()
                .map(|a| {
                    let value = match &a.value {
                        AttrValue::Null => ItemValue::Null,
                        AttrValue::Bool(v) => ItemValue::Bool(*v),
                        AttrValue::Int(v) => ItemValue::N(v.to_string()),
                        AttrValue::Float(v) => ItemValue::N(format_f64(*v)),
                        AttrValue::String(s) => ItemValue::S(s.to_string()),
                        AttrValue::Bytes(b) => ItemValue::B(b.to_vec()),
                    };
                    (a.key.to_string(), value)
                })
                .collect();
            attrs.push(("attrs", ItemValue::M(map)));
        }
        RecordBody::Unknown(u) => {
            attrs.push(("kind_id", num(u.kind)));
            attrs.push(("body", ItemValue::B(u.body.to_vec())));
        }
    }
    Item {
        device: ctx.device_id.to_owned(),
        rk: range_key(time_ms, ctx.seq, index),
        attrs,
    }
}

/// Decodes, checks and maps a whole batch in one pass. Any bad record fails
/// the batch (ACK REJECTED): no items are returned for it.
pub fn batch_items(batch: &BatchFrame, ctx: &ItemContext<'_>, limits: &Limits) -> Result<Vec<Item>, BatchError> {
    let mut records = batch.records(limits)?;
    let mut items = Vec::with_capacity((records.declared_count() as usize).min(batch.content().len() / 3));
    let mut index = 0u32;
    while let Some(record) = records.next() {
        let record = record?;
        let time_ms = records.record_time_ms(&record);
        let item = record_item(&record, time_ms, index, ctx);
        if item.size_bytes() > MAX_ITEM_BYTES {
            return Err(BatchError {
                index: Some(index),
                error: awp_protocol::FieldError {
                    field: "body",
                    problem: awp_protocol::Problem::Rule("makes an item over DynamoDB's 400 KB item limit"),
                },
            });
        }
        items.push(item);
        index += 1;
    }
    Ok(items)
}

/// DynamoDB's item size limit (names and values, UTF-8 and binary lengths).
///
/// Of the record kinds AWP/1 defines, the largest item is an EVENT with 64
/// attributes of 64-byte keys and 4,096-byte values: about 270 KB, well
/// within it. Only a record of an unknown kind (kept whole, up to the
/// frame's length) can exceed it; such a batch is answered ACK REJECTED
/// naming the record, the same in every sink, since no table could hold it.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

impl ItemValue {
    /// The value in DynamoDB JSON, e.g. `{"N": "42"}`.
    pub fn to_dynamodb_json(&self) -> Value {
        match self {
            ItemValue::S(s) => json!({ "S": s }),
            ItemValue::N(n) => json!({ "N": n }),
            ItemValue::B(b) => json!({ "B": base64(b) }),
            ItemValue::Bool(v) => json!({ "BOOL": v }),
            ItemValue::Null => json!({ "NULL": true }),
            ItemValue::M(entries) => {
                let map: Map<String, Value> = entries.iter().map(|(k, v)| (k.clone(), v.to_dynamodb_json())).collect();
                json!({ "M": map })
            }
        }
    }

    /// DynamoDB's size of the value (without its attribute name).
    pub fn size_bytes(&self) -> usize {
        match self {
            ItemValue::S(s) => s.len(),
            ItemValue::N(n) => {
                let digits = n.bytes().take_while(|c| *c != b'E').filter(u8::is_ascii_digit).count();
                digits.div_ceil(2) + 1
            }
            ItemValue::B(b) => b.len(),
            ItemValue::Bool(_) | ItemValue::Null => 1,
            ItemValue::M(entries) => 3 + entries.iter().map(|(k, v)| k.len() + v.size_bytes() + 1).sum::<usize>(),
        }
    }
}

impl Item {
    /// The whole item (key included) in DynamoDB JSON, as in the `items` of
    /// `protocol/tests/vectors.json`.
    pub fn to_dynamodb_json(&self) -> Value {
        let mut map = Map::with_capacity(self.attrs.len() + 2);
        map.insert("device".to_owned(), json!({ "S": self.device }));
        map.insert("rk".to_owned(), json!({ "S": self.rk }));
        for (name, value) in &self.attrs {
            map.insert((*name).to_owned(), value.to_dynamodb_json());
        }
        Value::Object(map)
    }

    /// An estimate of DynamoDB's item size (names plus values), for batching
    /// writes by bytes (DynamoDB caps an item at 400 KB and a batch at 16 MB).
    pub fn size_bytes(&self) -> usize {
        "device".len()
            + self.device.len()
            + "rk".len()
            + self.rk.len()
            + self
                .attrs
                .iter()
                .map(|(name, v)| name.len() + v.size_bytes())
                .sum::<usize>()
    }

    /// The value of an attribute (not `device` or `rk`), if present.
    pub fn get(&self, name: &str) -> Option<&ItemValue> {
        self.attrs.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

fn num(v: u64) -> ItemValue {
    ItemValue::N(v.to_string())
}

/// `v / 10^7` in decimal, exactly, without trailing zeros: 525200066 →
/// `52.5200066`, 134049540 → `13.404954`, 0 → `0`.
pub fn format_e7(v: i32) -> String {
    let abs = i64::from(v).unsigned_abs();
    let (int, frac) = (abs / 10_000_000, abs % 10_000_000);
    let sign = if v < 0 { "-" } else { "" };
    if frac == 0 {
        return format!("{sign}{int}");
    }
    let frac = format!("{frac:07}");
    format!("{sign}{int}.{}", frac.trim_end_matches('0'))
}

/// The shortest decimal that reads back as the same `f64` (Rust's shortest
/// round-trip digits), plain when the decimal exponent is in -6..=20 (as
/// JavaScript prints numbers), else `<mantissa>E<exponent>`: 0.1 → `0.1`,
/// 1e21 → `1E21`, 1e-7 → `1E-7`, -2.5e-100 → `-2.5E-100`; ±0 → `0`.
/// `v` must be finite (EVENT floats are).
pub fn format_f64(v: f64) -> String {
    if v == 0.0 {
        return "0".to_owned();
    }
    // `{:e}` without a precision gives the shortest round-trip digits:
    // "-2.5e-100", "1e21", "3.14159e0".
    let sci = format!("{v:e}");
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return sci;
    };
    let Ok(exp) = exp.parse::<i32>() else {
        return sci;
    };
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::with_capacity(digits.len() + 24);
    out.push_str(sign);
    if (0..=20).contains(&exp) {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', int_len - digits.len()));
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    } else if (-6..0).contains(&exp) {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('E');
        out.push_str(&exp.to_string());
    }
    out
}

/// Standard base64 with padding (RFC 4648 §4), as DynamoDB JSON writes `B`.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use std::borrow::Cow;

    use awp_protocol::{AppUsage, Attr, Decoded, Event, Frame, Message, NetUsage};
    use bytes::Bytes;

    use super::*;

    const VECTORS: &str = include_str!("../../protocol/tests/vectors.json");

    fn vector(name: &str) -> Value {
        let all: Value = serde_json::from_str(VECTORS).unwrap();
        all["valid"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no vector {name}"))
            .clone()
    }

    fn batch_frame(v: &Value) -> BatchFrame {
        let bytes = Bytes::from(hex::decode(v["hex"].as_str().unwrap()).unwrap());
        match awp_protocol::decode(&bytes, &Limits::default()).unwrap() {
            Decoded::Complete(Frame::Batch(b), len) => {
                assert_eq!(len, bytes.len());
                b
            }
            other => panic!("not a whole BATCH: {other:?}"),
        }
    }

    fn ctx(seq: u64) -> ItemContext<'static> {
        ItemContext {
            device_id: "dev-0001",
            platform: Platform::Android,
            agent_version: "4.2.0",
            seq,
            received_at_ms: 1_764_000_009_999,
            expires_at: None,
        }
    }

    /// The items of a vector's batch, as DynamoDB JSON without
    /// `received_at`/`expires_at`.
    fn mapped(name: &str) -> Vec<Value> {
        let frame = batch_frame(&vector(name));
        batch_items(&frame, &ctx(frame.seq()), &Limits::default())
            .unwrap()
            .iter()
            .map(|item| {
                let mut v = item.to_dynamodb_json();
                let obj = v.as_object_mut().unwrap();
                assert_eq!(obj.remove("received_at"), Some(json!({"N": "1764000009999"})));
                assert_eq!(obj.remove("expires_at"), None);
                v
            })
            .collect()
    }

    /// Test data: the items that `batch_mixed_kinds` must become.
    pub(crate) fn mixed_kinds_items() -> Vec<Item> {
        let frame = batch_frame(&vector("batch_mixed_kinds"));
        batch_items(&frame, &ctx(frame.seq()), &Limits::default()).unwrap()
    }

    /// Test data: the expected DynamoDB JSON of `batch_mixed_kinds`' items
    /// (without `received_at`).
    pub(crate) fn mixed_kinds_expected() -> Vec<Value> {
        vector("batch_mixed_kinds")["items"].as_array().unwrap().clone()
    }

    #[test]
    fn every_vector_with_items_maps_exactly() {
        let all: Value = serde_json::from_str(VECTORS).unwrap();
        let mut checked = 0;
        for v in all["valid"].as_array().unwrap() {
            let Some(items) = v["items"].as_array() else { continue };
            let name = v["name"].as_str().unwrap();
            assert_eq!(&mapped(name), items, "vector {name}");
            checked += 1;
        }
        assert!(checked >= 2, "only {checked} vectors with items");
    }

    #[test]
    fn compressed_vectors_map_like_the_uncompressed_one() {
        let expected = mixed_kinds_expected();
        for name in ["batch_mixed_lz4", "batch_mixed_zstd"] {
            assert_eq!(mapped(name), expected, "vector {name}");
        }
    }

    #[test]
    fn attribute_order_follows_the_spec_tables() {
        let items = mixed_kinds_items();
        let names: Vec<&str> = items[4].attrs.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "kind",
                "ts",
                "seq",
                "received_at",
                "platform",
                "agent_version",
                "direction",
                "channel",
                "peer",
                "size"
            ]
        );
        let ItemValue::M(attrs) = items[6].get("attrs").unwrap() else {
            panic!()
        };
        let keys: Vec<&str> = attrs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["ok", "n", "pi", "s", "raw", "none", "big", "tiny", "empty"]);
    }

    #[test]
    fn expires_at_only_with_retention() {
        let record = Record {
            time_offset_ms: 0,
            body: RecordBody::Location(awp_protocol::Location {
                lat_e7: 0,
                lon_e7: -5_000_000,
                accuracy_m: 3,
            }),
        };
        let mut c = ctx(9);
        let item = record_item(&record, 1_000, 2, &c);
        assert_eq!(item.get("expires_at"), None);
        assert_eq!(item.rk, "0000000001000#00000000000000000009#00002");
        c.expires_at = Some(1_800_000_000);
        let item = record_item(&record, 1_000, 2, &c);
        assert_eq!(item.get("expires_at"), Some(&ItemValue::N("1800000000".into())));
        let json = item.to_dynamodb_json();
        assert_eq!(json["expires_at"], json!({"N": "1800000000"}));
        assert_eq!(json["received_at"], json!({"N": "1764000009999"}));
        assert_eq!(json["lat"], json!({"N": "0"}));
        assert_eq!(json["lon"], json!({"N": "-0.5"}));
        // Attribute order: expires_at right after the common ones.
        let names: Vec<&str> = item.attrs.iter().map(|(n, _)| *n).collect();
        assert_eq!(&names[4..7], ["platform", "agent_version", "expires_at"]);
    }

    #[test]
    fn empty_fields_are_omitted() {
        let mut c = ctx(1);
        c.agent_version = "";
        let at = |body| {
            record_item(
                &Record {
                    time_offset_ms: 0,
                    body,
                },
                5,
                0,
                &c,
            )
        };
        let app = at(RecordBody::AppUsage(AppUsage {
            app: Cow::Borrowed("a"),
            title: Cow::Borrowed(""),
            foreground_ms: 1,
        }));
        assert_eq!(app.get("agent_version"), None);
        assert_eq!(app.get("title"), None);
        assert_eq!(app.get("app"), Some(&ItemValue::S("a".into())));
        let net = at(RecordBody::NetUsage(NetUsage {
            app: Cow::Borrowed(""),
            network: awp_protocol::Network::Wifi,
            bytes_tx: 1,
            bytes_rx: 2,
        }));
        assert_eq!(net.get("app"), None);
        assert_eq!(net.get("network"), Some(&ItemValue::S("wifi".into())));
        let msg = at(RecordBody::Message(Message {
            direction: awp_protocol::Direction::In,
            channel: awp_protocol::Channel::Chat,
            peer: Cow::Borrowed(""),
            size: 0,
        }));
        assert_eq!(msg.get("peer"), None);
        // An empty string attribute of an EVENT is kept (it is a value).
        let ev = at(RecordBody::Event(Event {
            name: Cow::Borrowed("e"),
            attrs: vec![Attr {
                key: Cow::Borrowed("k"),
                value: AttrValue::String(Cow::Borrowed("")),
            }],
        }));
        assert_eq!(ev.to_dynamodb_json()["attrs"], json!({"M": {"k": {"S": ""}}}));
    }

    #[test]
    fn e7_formatting() {
        for (v, s) in [
            (525_200_066, "52.5200066"),
            (134_049_540, "13.404954"),
            (-338_688_197, "-33.8688197"),
            (0, "0"),
            (1, "0.0000001"),
            (-1, "-0.0000001"),
            (900_000_000, "90"),
            (-1_800_000_000, "-180"),
            (-5_000_000, "-0.5"),
            (i32::MIN, "-214.7483648"),
        ] {
            assert_eq!(format_e7(v), s, "{v}");
        }
    }

    #[test]
    #[allow(clippy::approx_constant)] // 3.14159 is the vectors' value, not PI
    fn float_formatting() {
        for (v, s) in [
            (0.1, "0.1"),
            (1e21, "1E21"),
            (1e20, "100000000000000000000"),
            (1e-7, "1E-7"),
            (1e-6, "0.000001"),
            (123_456.789, "123456.789"),
            (-2.5e-100, "-2.5E-100"),
            (9.99e125, "9.99E125"),
            (1e-130, "1E-130"),
            (3.14159, "3.14159"),
            (-0.0, "0"),
            (0.0, "0"),
            (1.0, "1"),
            (-42.0, "-42"),
            (1.5e-5, "0.000015"),
            (0.30000000000000004, "0.30000000000000004"),
            (f64::MAX, "1.7976931348623157E308"),
            (1.2345e20, "123450000000000000000"),
        ] {
            assert_eq!(format_f64(v), s, "{v:e}");
        }
        // Every output reads back as the same f64.
        let mut x = 1.234_567_890_123_4e-130_f64;
        while x < 9.99e125 {
            for v in [x, -x] {
                let s = format_f64(v);
                assert_eq!(s.parse::<f64>().unwrap(), v, "{s}");
            }
            x *= 7.77;
        }
    }

    #[test]
    fn base64_standard_padded() {
        for (input, out) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
            (&[0x00, 0xff], "AP8="),
            (&[0xfb, 0xff, 0xbf], "+/+/"),
        ] {
            assert_eq!(base64(input), out);
        }
    }

    #[test]
    fn size_estimate() {
        let item = Item {
            device: "d".into(),
            rk: "r".into(),
            attrs: vec![
                ("s", ItemValue::S("héllo".into())),
                ("n", ItemValue::N("-123.45".into())),
                ("b", ItemValue::B(vec![1, 2, 3])),
                ("t", ItemValue::Bool(true)),
                ("z", ItemValue::Null),
                ("m", ItemValue::M(vec![("k".into(), ItemValue::N("1".into()))])),
            ],
        };
        // device 6+1, rk 2+1, s 1+6, n 1+(5 digits → 3+1), b 1+3, t 1+1, z 1+1, m 1+(3+1+2+1)
        assert_eq!(item.size_bytes(), 7 + 3 + 7 + 5 + 4 + 2 + 2 + 8);
        assert!(mixed_kinds_items().iter().all(|i| i.size_bytes() > 60));
    }

    #[test]
    fn every_rejected_vector_fails_the_batch_like_decode() {
        let v: Value = serde_json::from_str(VECTORS).unwrap();
        let limits = Limits::default();
        let mut checked = 0;
        for bad in v["invalid"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["expect"] == "REJECTED")
        {
            let bytes = Bytes::from(hex::decode(bad["hex"].as_str().unwrap()).unwrap());
            let Ok(Decoded::Complete(Frame::Batch(frame), _)) = awp_protocol::decode(&bytes, &limits) else {
                panic!("{}: not a BATCH", bad["name"]);
            };
            let err = batch_items(&frame, &ctx(frame.seq()), &limits).unwrap_err();
            // Compared as text: a NaN in the error is not equal to itself.
            let want = frame.decode(&limits).unwrap_err();
            assert_eq!(format!("{err:?}"), format!("{want:?}"), "{}", bad["name"]);
            checked += 1;
        }
        assert!(checked > 10);
    }
}
