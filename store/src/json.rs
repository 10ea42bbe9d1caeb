//! Items as DynamoDB JSON text (`{"device":{"S":"dev-0001"},"rk":{"S":...},
//! "lat":{"N":"52.52"},...}`): the form of the vectors' `items`, of the
//! SQLite sink's `item` column, and what the null sink renders and throws
//! away.
//!
//! [`JsonItems`] renders the items of a batch one at a time into one reused
//! `String`: what every item of a batch shares (the device, the seq part of
//! `rk`, `seq`, `received_at`, `platform`, `agent_version`, `expires_at`) is
//! rendered once per batch, the rest per record straight from the decoded
//! record. Nothing is allocated per record once the buffers have grown.

use awp_protocol::{AttrValue, BatchError, RecordBody};

use crate::batch::{AcceptedBatch, StoredRecord};
use crate::key::{INDEX_DIGITS, SEQ_DIGITS, TIME_DIGITS};
use crate::text::{push_base64, push_e7, push_f64, push_i64, push_json_str, push_padded, push_padded_digits, push_u64};

/// The attributes every item of `batch` has, in both layouts: `"seq":…`
/// to `expires_at` (`agent_version` left out when empty, `expires_at`
/// when the tenant keeps records forever), as DynamoDB JSON.
pub(crate) fn push_batch_attributes(out: &mut String, batch: &AcceptedBatch) {
    let origin = batch.origin();
    out.push_str(r#""seq":{"N":""#);
    push_u64(out, batch.seq());
    out.push_str(r#""},"received_at":{"N":""#);
    push_u64(out, batch.received_at_ms());
    out.push_str(r#""},"platform":{"S":""#);
    out.push_str(origin.platform.as_str());
    out.push_str(r#""}"#);
    if !origin.agent_version.is_empty() {
        out.push_str(r#","agent_version":{"S":"#);
        push_json_str(out, &origin.agent_version);
        out.push('}');
    }
    if let Some(e) = batch.expires_at() {
        out.push_str(r#","expires_at":{"N":""#);
        push_u64(out, e);
        out.push_str(r#""}"#);
    }
}

/// One rendered item.
#[derive(Debug, Clone, Copy)]
pub struct JsonItem<'a> {
    /// The partition key.
    pub device: &'a str,
    /// The sort key.
    pub rk: &'a str,
    /// The whole item, key included, as DynamoDB JSON.
    pub json: &'a str,
}

/// Renders items as DynamoDB JSON; keep one and reuse it, its buffers stay.
#[derive(Debug, Default)]
pub struct JsonItems {
    /// `{"device":{"S":"…"},"rk":{"S":"` for the current batch.
    head: String,
    /// `#<seq:020>#`.
    seq_part: String,
    /// `,"seq":…` to the end of the attributes every item of the batch shares.
    common: String,
    /// The item being rendered.
    item: String,
}

impl JsonItems {
    /// A renderer with empty buffers.
    pub fn new() -> JsonItems {
        JsonItems::default()
    }

    /// Calls `each` with every item of `batch`, in record order. Stops at the
    /// first error `each` returns, or if walking the records fails (which a
    /// checked batch does not; `E: From<BatchError>` carries it).
    pub fn render<E: From<BatchError>>(
        &mut self,
        batch: &AcceptedBatch,
        mut each: impl FnMut(JsonItem<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.begin(batch);
        for record in batch.records() {
            let record = record?;
            let rk = self.render_record(&record);
            each(JsonItem {
                device: batch.device_id(),
                rk: &self.item[rk],
                json: &self.item,
            })?;
        }
        Ok(())
    }

    /// Renders what every item of `batch` shares.
    pub(crate) fn begin(&mut self, batch: &AcceptedBatch) {
        let origin = batch.origin();
        self.head.clear();
        self.head.push_str(r#"{"device":{"S":"#);
        push_json_str(&mut self.head, &origin.device_id);
        self.head.push_str(r#"},"rk":{"S":""#);
        self.seq_part.clear();
        self.seq_part.push('#');
        push_padded(&mut self.seq_part, batch.seq(), SEQ_DIGITS);
        self.seq_part.push('#');
        // Starts by closing `ts`, which comes right before it.
        self.common.clear();
        self.common.push_str(r#""},"#);
        push_batch_attributes(&mut self.common, batch);
    }

    /// One record's item, after [`JsonItems::begin`] with its batch.
    pub(crate) fn render_record_json(&mut self, r: &StoredRecord<'_>) -> &str {
        self.render_record(r);
        &self.item
    }

    /// Renders one record's item into `self.item`; returns where `rk` is in it.
    ///
    /// The fixed parts are literals, so they are copied without a call; the
    /// record time is formatted once for both `rk` and `ts`.
    fn render_record(&mut self, r: &StoredRecord<'_>) -> std::ops::Range<usize> {
        let out = &mut self.item;
        out.clear();
        out.push_str(&self.head);
        let rk_start = out.len();
        let mut time = itoa::Buffer::new();
        let time = time.format(r.key.time_ms);
        push_padded_digits(out, time, TIME_DIGITS);
        out.push_str(&self.seq_part);
        push_padded(out, u64::from(r.key.index), INDEX_DIGITS);
        let rk = rk_start..out.len();
        out.push_str(match &r.record.body {
            RecordBody::Location(_) => r#""},"kind":{"S":"location"},"ts":{"N":""#,
            RecordBody::AppUsage(_) => r#""},"kind":{"S":"app_usage"},"ts":{"N":""#,
            RecordBody::NetUsage(_) => r#""},"kind":{"S":"net_usage"},"ts":{"N":""#,
            RecordBody::Message(_) => r#""},"kind":{"S":"message"},"ts":{"N":""#,
            RecordBody::Event(_) => r#""},"kind":{"S":"event"},"ts":{"N":""#,
            RecordBody::Unknown(_) => r#""},"kind":{"S":"unknown"},"ts":{"N":""#,
        });
        out.push_str(time);
        out.push_str(&self.common);
        match &r.record.body {
            RecordBody::Location(l) => {
                out.push_str(r#","lat":{"N":""#);
                push_e7(out, l.lat_e7);
                out.push_str(r#""},"lon":{"N":""#);
                push_e7(out, l.lon_e7);
                out.push_str(r#""},"accuracy_m":{"N":""#);
                push_u64(out, l.accuracy_m);
                out.push_str(r#""}}"#);
            }
            RecordBody::AppUsage(a) => {
                out.push_str(r#","app":{"S":"#);
                push_json_str(out, &a.app);
                if !a.title.is_empty() {
                    out.push_str(r#"},"title":{"S":"#);
                    push_json_str(out, &a.title);
                }
                out.push_str(r#"},"foreground_ms":{"N":""#);
                push_u64(out, a.foreground_ms);
                out.push_str(r#""}}"#);
            }
            RecordBody::NetUsage(n) => {
                if !n.app.is_empty() {
                    out.push_str(r#","app":{"S":"#);
                    push_json_str(out, &n.app);
                    out.push('}');
                }
                out.push_str(r#","network":{"S":""#);
                out.push_str(n.network.as_str());
                out.push_str(r#""},"bytes_tx":{"N":""#);
                push_u64(out, n.bytes_tx);
                out.push_str(r#""},"bytes_rx":{"N":""#);
                push_u64(out, n.bytes_rx);
                out.push_str(r#""}}"#);
            }
            RecordBody::Message(m) => {
                out.push_str(r#","direction":{"S":""#);
                out.push_str(m.direction.as_str());
                out.push_str(r#""},"channel":{"S":""#);
                out.push_str(m.channel.as_str());
                out.push_str(r#""}"#);
                if !m.peer.is_empty() {
                    out.push_str(r#","peer":{"S":"#);
                    push_json_str(out, &m.peer);
                    out.push('}');
                }
                out.push_str(r#","size":{"N":""#);
                push_u64(out, m.size);
                out.push_str(r#""}}"#);
            }
            RecordBody::Event(e) => {
                out.push_str(r#","name":{"S":"#);
                push_json_str(out, &e.name);
                out.push_str(r#"},"attrs":{"M":{"#);
                for (i, attr) in e.attrs.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    push_json_str(out, &attr.key);
                    match &attr.value {
                        AttrValue::Null => out.push_str(r#":{"NULL":true}"#),
                        AttrValue::Bool(true) => out.push_str(r#":{"BOOL":true}"#),
                        AttrValue::Bool(false) => out.push_str(r#":{"BOOL":false}"#),
                        AttrValue::Int(v) => {
                            out.push_str(r#":{"N":""#);
                            push_i64(out, *v);
                            out.push_str(r#""}"#);
                        }
                        AttrValue::Float(v) => {
                            out.push_str(r#":{"N":""#);
                            push_f64(out, *v);
                            out.push_str(r#""}"#);
                        }
                        AttrValue::String(s) => {
                            out.push_str(r#":{"S":"#);
                            push_json_str(out, s);
                            out.push('}');
                        }
                        AttrValue::Bytes(b) => {
                            out.push_str(r#":{"B":""#);
                            push_base64(out, b);
                            out.push_str(r#""}"#);
                        }
                    }
                }
                out.push_str("}}}");
            }
            RecordBody::Unknown(u) => {
                out.push_str(r#","kind_id":{"N":""#);
                push_u64(out, u.kind);
                out.push_str(r#""},"body":{"B":""#);
                push_base64(out, &u.body);
                out.push_str(r#""}}"#);
            }
        }
        rk
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::tests::{accept_vector, accept_vector_with};

    /// A batch's items, parsed back, without `received_at` (the vectors leave it out).
    fn items_of(batch: &AcceptedBatch) -> Vec<Value> {
        let mut out = Vec::new();
        JsonItems::new()
            .render::<BatchError>(batch, |item| {
                let mut v: Value = serde_json::from_str(item.json).unwrap();
                assert_eq!(v["device"]["S"], item.device);
                assert_eq!(v["rk"]["S"], item.rk);
                assert_eq!(v["received_at"], json!({"N": batch.received_at_ms().to_string()}));
                v.as_object_mut().unwrap().remove("received_at");
                out.push(v);
                Ok(())
            })
            .unwrap();
        out
    }

    #[test]
    fn every_vector_with_items_renders_exactly() {
        let mut checked = 0;
        for (v, items) in awp_testkit::vectors().with_items() {
            assert_eq!(items_of(&accept_vector(&v.name)), items, "vector {}", v.name);
            checked += 1;
        }
        assert!(checked >= 2, "only {checked} vectors with items");
    }

    #[test]
    fn compressed_vectors_render_like_the_uncompressed_one() {
        let expected = awp_testkit::vectors().valid("batch_mixed_kinds").items.clone().unwrap();
        for name in ["batch_mixed_lz4", "batch_mixed_zstd"] {
            assert_eq!(items_of(&accept_vector(name)), expected, "vector {name}");
        }
    }

    #[test]
    fn expires_at_only_with_retention_and_empty_fields_left_out() {
        let plain = accept_vector_with("batch_mixed_kinds", "", None);
        for item in items_of(&plain) {
            assert!(item.get("expires_at").is_none());
            assert!(
                item.get("agent_version").is_none(),
                "an empty agent_version is left out"
            );
        }
        let kept = accept_vector_with("batch_mixed_kinds", "4.2.0", Some(1_800_000_000));
        for item in items_of(&kept) {
            assert_eq!(item["expires_at"], json!({"N": "1800000000"}));
            assert_eq!(item["agent_version"], json!({"S": "4.2.0"}));
        }
    }

    #[test]
    fn strings_that_need_escaping_stay_valid_json() {
        let batch = crate::tests::accept_records(
            "dev\"ice",
            vec![awp_protocol::RecordBody::AppUsage(awp_protocol::AppUsage {
                app: "a\\b\"c".into(),
                title: "line\nbreak \u{1}".into(),
                foreground_ms: 5,
            })],
        );
        let items = items_of(&batch);
        assert_eq!(items[0]["device"], json!({"S": "dev\"ice"}));
        assert_eq!(items[0]["app"], json!({"S": "a\\b\"c"}));
        assert_eq!(items[0]["title"], json!({"S": "line\nbreak \u{1}"}));
    }
}

#[cfg(test)]
mod properties {
    //! Whatever a valid record holds, its item is valid JSON that says the
    //! same: strings of any characters, any integers, any storable floats,
    //! any bytes.
    use std::borrow::Cow;

    use awp_protocol::{AppUsage, Attr, AttrValue, Event, RecordBody, is_storable_float};
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;
    use crate::text::base64;

    fn text(max: usize) -> impl Strategy<Value = String> {
        prop::collection::vec(any::<char>(), 1..max).prop_map(|c| {
            let mut s: String = c.into_iter().collect();
            while s.len() > 256 {
                s.pop();
            }
            s
        })
    }

    fn float() -> impl Strategy<Value = f64> {
        any::<f64>().prop_filter("storable", |v| is_storable_float(*v))
    }

    fn render_one(body: RecordBody<'static>) -> Value {
        let batch = crate::tests::accept_records("dev-0001", vec![body]);
        let mut out = None;
        JsonItems::new()
            .render::<BatchError>(&batch, |item| {
                out = Some(serde_json::from_str(item.json).expect("valid JSON"));
                Ok(())
            })
            .unwrap();
        out.unwrap()
    }

    proptest! {
        #[test]
        fn strings_survive(app in text(64), title in text(64)) {
            let item = render_one(RecordBody::AppUsage(AppUsage {
                app: Cow::Owned(app.clone()),
                title: Cow::Owned(title.clone()),
                foreground_ms: 1,
            }));
            prop_assert_eq!(item["app"]["S"].as_str(), Some(app.as_str()));
            prop_assert_eq!(item["title"]["S"].as_str(), Some(title.as_str()));
        }

        #[test]
        fn event_values_survive(int in any::<i64>(), f in float(), s in text(32), b in prop::collection::vec(any::<u8>(), 0..64)) {
            let item = render_one(RecordBody::Event(Event {
                name: Cow::Borrowed("e"),
                attrs: vec![
                    Attr { key: Cow::Borrowed("i"), value: AttrValue::Int(int) },
                    Attr { key: Cow::Borrowed("f"), value: AttrValue::Float(f) },
                    Attr { key: Cow::Borrowed("s"), value: AttrValue::String(Cow::Owned(s.clone())) },
                    Attr { key: Cow::Borrowed("b"), value: AttrValue::Bytes(Cow::Owned(b.clone())) },
                ],
            }));
            let attrs = &item["attrs"]["M"];
            prop_assert_eq!(attrs["i"]["N"].as_str().unwrap().parse::<i64>().unwrap(), int);
            let text = attrs["f"]["N"].as_str().unwrap();
            prop_assert_eq!(text.parse::<f64>().unwrap(), f, "{}", text);
            prop_assert_eq!(attrs["s"]["S"].as_str(), Some(s.as_str()));
            let encoded = base64(&b);
            prop_assert_eq!(attrs["b"]["B"].as_str(), Some(encoded.as_str()));
        }
    }
}
