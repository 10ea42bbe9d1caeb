//! Items as the DynamoDB SDK's attribute maps, and attribute maps read back
//! as DynamoDB JSON (the form [`crate::json`] writes), so the two sinks'
//! items can be compared with each other and with the vectors.

use std::collections::HashMap;

use awp_protocol::{AttrValue, BatchError, RecordBody};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};

use crate::batch::{AcceptedBatch, StoredRecord};
use crate::packed::PackedItem;
use crate::text::{push_e7, push_f64};

/// A packed item (`crate::packed`) as an attribute map.
pub fn packed_item(item: &PackedItem<'_>) -> HashMap<String, AttributeValue> {
    let origin = item.batch.origin();
    let mut map = HashMap::with_capacity(12);
    map.insert("device".to_owned(), AttributeValue::S(origin.device_id.clone()));
    map.insert("rk".to_owned(), AttributeValue::S(item.rk.to_owned()));
    map.insert("count".to_owned(), number(u64::from(item.count)));
    map.insert("t_min".to_owned(), number(item.t_min));
    map.insert("t_max".to_owned(), number(item.t_max));
    map.insert(
        "kinds".to_owned(),
        AttributeValue::Ss(item.kinds().map(str::to_owned).collect()),
    );
    map.insert("seq".to_owned(), number(item.batch.seq()));
    map.insert("received_at".to_owned(), number(item.batch.received_at_ms()));
    map.insert(
        "platform".to_owned(),
        AttributeValue::S(origin.platform.as_str().to_owned()),
    );
    if !origin.agent_version.is_empty() {
        map.insert(
            "agent_version".to_owned(),
            AttributeValue::S(origin.agent_version.clone()),
        );
    }
    if let Some(e) = item.batch.expires_at() {
        map.insert("expires_at".to_owned(), number(e));
    }
    map.insert("records".to_owned(), AttributeValue::B(Blob::new(item.records)));
    map
}

/// Builds the attribute maps of a batch's items. What every item of the
/// batch shares is built once and cloned into each (the SDK's maps own
/// their strings, so each item allocates its own).
#[derive(Debug)]
pub struct AttributeItems {
    common: Vec<(&'static str, AttributeValue)>,
    device: AttributeValue,
}

impl AttributeItems {
    /// The shared attributes of `batch`'s items.
    pub fn new(batch: &AcceptedBatch) -> AttributeItems {
        let origin = batch.origin();
        let mut common = vec![
            ("seq", number(batch.seq())),
            ("received_at", number(batch.received_at_ms())),
            ("platform", AttributeValue::S(origin.platform.as_str().to_owned())),
        ];
        if !origin.agent_version.is_empty() {
            common.push(("agent_version", AttributeValue::S(origin.agent_version.clone())));
        }
        if let Some(e) = batch.expires_at() {
            common.push(("expires_at", number(e)));
        }
        AttributeItems {
            common,
            device: AttributeValue::S(origin.device_id.clone()),
        }
    }

    /// The item of one record.
    pub fn item(&self, r: &StoredRecord<'_>) -> HashMap<String, AttributeValue> {
        let mut map = HashMap::with_capacity(self.common.len() + 8);
        let mut put = |name: &str, value: AttributeValue| {
            map.insert(name.to_owned(), value);
        };
        put("device", self.device.clone());
        put("rk", AttributeValue::S(r.key.to_string()));
        put("kind", AttributeValue::S(r.record.kind_name().to_owned()));
        put("ts", number(r.key.time_ms));
        for (name, value) in &self.common {
            put(name, value.clone());
        }
        let s = |v: &str| AttributeValue::S(v.to_owned());
        match &r.record.body {
            RecordBody::Location(l) => {
                put("lat", AttributeValue::N(text(|t| push_e7(t, l.lat_e7))));
                put("lon", AttributeValue::N(text(|t| push_e7(t, l.lon_e7))));
                put("accuracy_m", number(l.accuracy_m));
            }
            RecordBody::AppUsage(a) => {
                put("app", s(&a.app));
                if !a.title.is_empty() {
                    put("title", s(&a.title));
                }
                put("foreground_ms", number(a.foreground_ms));
            }
            RecordBody::NetUsage(n) => {
                if !n.app.is_empty() {
                    put("app", s(&n.app));
                }
                put("network", s(n.network.as_str()));
                put("bytes_tx", number(n.bytes_tx));
                put("bytes_rx", number(n.bytes_rx));
            }
            RecordBody::Message(m) => {
                put("direction", s(m.direction.as_str()));
                put("channel", s(m.channel.as_str()));
                if !m.peer.is_empty() {
                    put("peer", s(&m.peer));
                }
                put("size", number(m.size));
            }
            RecordBody::Event(e) => {
                put("name", s(&e.name));
                let attrs = e
                    .attrs
                    .iter()
                    .map(|a| {
                        let value = match &a.value {
                            AttrValue::Null => AttributeValue::Null(true),
                            AttrValue::Bool(v) => AttributeValue::Bool(*v),
                            AttrValue::Int(v) => AttributeValue::N(v.to_string()),
                            AttrValue::Float(v) => AttributeValue::N(text(|t| push_f64(t, *v))),
                            AttrValue::String(v) => s(v),
                            AttrValue::Bytes(b) => AttributeValue::B(Blob::new(b.to_vec())),
                        };
                        (a.key.to_string(), value)
                    })
                    .collect();
                put("attrs", AttributeValue::M(attrs));
            }
            RecordBody::Unknown(u) => {
                put("kind_id", number(u.kind));
                put("body", AttributeValue::B(Blob::new(u.body.to_vec())));
            }
        }
        map
    }

    /// Every item of `batch`, in record order.
    pub fn items(batch: &AcceptedBatch) -> Result<Vec<HashMap<String, AttributeValue>>, BatchError> {
        let builder = AttributeItems::new(batch);
        batch.records().map(|r| r.map(|r| builder.item(&r))).collect()
    }
}

fn number(v: u64) -> AttributeValue {
    AttributeValue::N(itoa::Buffer::new().format(v).to_owned())
}

fn text(write: impl FnOnce(&mut String)) -> String {
    let mut s = String::new();
    write(&mut s);
    s
}

/// An item read back from DynamoDB, as DynamoDB JSON.
pub fn attributes_to_json(item: &HashMap<String, AttributeValue>) -> Value {
    fn value(v: &AttributeValue) -> Value {
        match v {
            AttributeValue::S(s) => json!({"S": s}),
            AttributeValue::N(n) => json!({"N": n}),
            AttributeValue::B(b) => json!({"B": crate::text::base64(b.as_ref())}),
            AttributeValue::Bool(b) => json!({"BOOL": b}),
            AttributeValue::Null(_) => json!({"NULL": true}),
            AttributeValue::Ss(v) => json!({"SS": v}),
            AttributeValue::L(v) => json!({"L": v.iter().map(value).collect::<Vec<_>>()}),
            AttributeValue::M(m) => {
                json!({"M": m.iter().map(|(k, v)| (k.clone(), value(v))).collect::<serde_json::Map<_, _>>()})
            }
            // Types the gateway never writes; shown, not dropped.
            other => json!({"UNSUPPORTED": format!("{other:?}")}),
        }
    }
    Value::Object(item.iter().map(|(k, v)| (k.clone(), value(v))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::JsonItems;
    use crate::tests::{accept_vector, accept_vector_with};

    #[test]
    fn a_packed_items_attribute_map_says_what_its_json_says() {
        let batch = accept_vector_with("batch_mixed_kinds", "4.2.0", Some(1_900_000_000));
        crate::packed::Packer::new()
            .unwrap()
            .pack::<crate::packed::PackError>(&batch, |item| {
                let mut json = String::new();
                item.push_json(&mut json);
                let json: Value = serde_json::from_str(&json).unwrap();
                assert_eq!(attributes_to_json(&packed_item(&item)), json);
                assert_eq!(json["kinds"]["SS"].as_array().unwrap().len(), 6, "{json}");
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn attribute_maps_say_what_the_json_says() {
        for name in ["batch_one_location", "batch_mixed_kinds", "batch_mixed_zstd"] {
            for batch in [accept_vector(name), accept_vector_with(name, "", Some(1_900_000_000))] {
                let maps = AttributeItems::items(&batch).unwrap();
                let mut json = Vec::new();
                JsonItems::new()
                    .render::<BatchError>(&batch, |item| {
                        json.push(serde_json::from_str::<Value>(item.json).unwrap());
                        Ok(())
                    })
                    .unwrap();
                let read_back: Vec<Value> = maps.iter().map(attributes_to_json).collect();
                assert_eq!(read_back, json, "{name}");
            }
        }
    }
}
