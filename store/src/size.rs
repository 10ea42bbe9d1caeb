//! DynamoDB's size of an item, computed from the record without building
//! the item: attribute names plus values, strings and binaries by their
//! length, numbers at one byte per two digits plus one, maps with 3 bytes of
//! their own and 1 per entry. It decides whether a record fits an item
//! (400 KB) and how many items fit one BatchWriteItem request (16 MB).

use awp_protocol::{AttrValue, Record, RecordBody};

use crate::key::{RK_LEN, RangeKey};
use crate::origin::Origin;
use crate::text::{digits_u64, push_e7, push_f64};

/// DynamoDB's item size limit (names and values, UTF-8 and binary lengths).
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

/// Sizes the items of one batch: what they share is summed once.
#[derive(Debug)]
pub struct ItemSizer {
    /// `device`, `rk`, `seq`, `received_at`, `platform`, `agent_version`, `expires_at`.
    common: usize,
    /// For numbers whose digits are counted from their text.
    scratch: String,
}

fn number(digits: usize) -> usize {
    digits.div_ceil(2) + 1
}

fn number_u64(v: u64) -> usize {
    number(digits_u64(v))
}

impl ItemSizer {
    /// A sizer for the items of a batch with these batch attributes
    /// (`AcceptedBatch::item_sizer` gives them).
    pub fn new(origin: &Origin, seq: u64, received_at_ms: u64, expires_at: Option<u64>) -> ItemSizer {
        let mut common = "device".len() + origin.device_id.len() + "rk".len() + RK_LEN;
        common += "seq".len() + number_u64(seq);
        common += "received_at".len() + number_u64(received_at_ms);
        common += "platform".len() + origin.platform.as_str().len();
        if !origin.agent_version.is_empty() {
            common += "agent_version".len() + origin.agent_version.len();
        }
        if let Some(e) = expires_at {
            common += "expires_at".len() + number_u64(e);
        }
        ItemSizer {
            common,
            scratch: String::new(),
        }
    }

    /// The size of the item of `record`, whose key is `key`.
    pub fn item_size(&mut self, key: &RangeKey, record: &Record<'_>) -> usize {
        let mut size = self.common + "kind".len() + record.kind_name().len() + "ts".len() + number_u64(key.time_ms);
        let opt = |name: &str, s: &str| if s.is_empty() { 0 } else { name.len() + s.len() };
        size += match &record.body {
            RecordBody::Location(l) => {
                "lat".len()
                    + self.e7(l.lat_e7)
                    + "lon".len()
                    + self.e7(l.lon_e7)
                    + "accuracy_m".len()
                    + number_u64(l.accuracy_m)
            }
            RecordBody::AppUsage(a) => {
                "app".len() + a.app.len() + opt("title", &a.title) + "foreground_ms".len() + number_u64(a.foreground_ms)
            }
            RecordBody::NetUsage(n) => {
                opt("app", &n.app)
                    + "network".len()
                    + n.network.as_str().len()
                    + "bytes_tx".len()
                    + number_u64(n.bytes_tx)
                    + "bytes_rx".len()
                    + number_u64(n.bytes_rx)
            }
            RecordBody::Message(m) => {
                "direction".len()
                    + m.direction.as_str().len()
                    + "channel".len()
                    + m.channel.as_str().len()
                    + opt("peer", &m.peer)
                    + "size".len()
                    + number_u64(m.size)
            }
            RecordBody::Event(e) => {
                let mut map = 3;
                for attr in &e.attrs {
                    let value = match &attr.value {
                        AttrValue::Null | AttrValue::Bool(_) => 1,
                        AttrValue::Int(v) => number(digits_u64(v.unsigned_abs())),
                        AttrValue::Float(v) => self.float(*v),
                        AttrValue::String(s) => s.len(),
                        AttrValue::Bytes(b) => b.len(),
                    };
                    map += attr.key.len() + value + 1;
                }
                "name".len() + e.name.len() + "attrs".len() + map
            }
            RecordBody::Unknown(u) => "kind_id".len() + number_u64(u.kind) + "body".len() + u.body.len(),
        };
        size
    }

    fn e7(&mut self, v: i32) -> usize {
        self.scratch.clear();
        push_e7(&mut self.scratch, v);
        number(self.scratch.bytes().filter(u8::is_ascii_digit).count())
    }

    fn float(&mut self, v: f64) -> usize {
        self.scratch.clear();
        push_f64(&mut self.scratch, v);
        let digits = self
            .scratch
            .bytes()
            .take_while(|c| *c != b'E')
            .filter(u8::is_ascii_digit)
            .count();
        number(digits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::accept_vector;

    #[test]
    fn sizes_add_up_by_the_rules() {
        let batch = accept_vector("batch_one_location");
        let mut sizer = batch.item_sizer();
        let r = batch.records().next().unwrap().unwrap();
        let RecordBody::Location(l) = &r.record.body else {
            panic!("not a location")
        };
        let device = batch.device_id().len();
        let agent = batch.origin().agent_version.len();
        // The vector's record: its numbers rendered as the item has them.
        let mut lat = String::new();
        push_e7(&mut lat, l.lat_e7);
        let mut lon = String::new();
        push_e7(&mut lon, l.lon_e7);
        let n = |s: &str| s.bytes().filter(u8::is_ascii_digit).count().div_ceil(2) + 1;
        let want = 6
            + device
            + 2
            + 40
            + 4
            + "location".len()
            + 2
            + n(&r.key.time_ms.to_string())
            + 3
            + n(&batch.seq().to_string())
            + 11
            + n(&batch.received_at_ms().to_string())
            + 8
            + batch.origin().platform.as_str().len()
            + if agent > 0 { 13 + agent } else { 0 }
            + 3
            + n(&lat)
            + 3
            + n(&lon)
            + 10
            + n(&l.accuracy_m.to_string());
        assert_eq!(sizer.item_size(&r.key, &r.record), want);
    }

    #[test]
    fn every_item_of_the_mixed_vector_is_sized() {
        let batch = accept_vector("batch_mixed_kinds");
        let mut sizer = batch.item_sizer();
        for r in batch.records() {
            let r = r.unwrap();
            let size = sizer.item_size(&r.key, &r.record);
            assert!((80..2_000).contains(&size), "{size}");
        }
    }
}
