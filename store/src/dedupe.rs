//! Each record once, whichever items hold it: a reader's view of a table
//! that holds some records twice, once per layout (a tenant that changed
//! its layout and got a batch resent across the change, `packed.rs`).
//!
//! A record is named by its device and its record-layout `rk` (time, seq,
//! index), which both layouts keep: the record item's key, and the `rk` of
//! its line in a packed item. [`Dedupe`] takes a device's stored items in
//! key order (SQLite's `ORDER BY device, rk`, a DynamoDB Query; a Scan
//! returns each device's items together and in key order too) and gives
//! each record the first time it is met, skipping its copies.
//!
//! It streams, and remembers keys, not records: both layouts' keys start
//! with a time, the record's or a packed item's earliest, so once an item
//! whose key starts at time `t` is read, every copy of a record before `t`
//! has been read, and its key is forgotten. What it remembers is the keys
//! of the records given at the current millisecond or later: a packed
//! item's (at most an hour of them), or those of the packed items whose
//! times overlap.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::key::{RangeKey, TIME_DIGITS};
use crate::packed::{PackError, stored_records};

/// What a [`Dedupe`] skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copies {
    /// Records held once by each layout (expected after a layout change).
    pub across_layouts: u64,
    /// Records held twice by items of the same layout: never written by
    /// this gateway (a record has one key per layout); a sign of an older
    /// version's packed parts, or of a table written by hand.
    pub same_layout: u64,
    /// Items read out of key order for their device (a reader that does not
    /// keep it): copies may then be given twice.
    pub unordered_items: u64,
}

/// Gives a table's records once each; see the module doc.
#[derive(Debug, Default)]
pub struct Dedupe {
    device: Option<String>,
    /// The last item's `rk`, to notice a reader out of key order.
    last_item_rk: String,
    /// The keys of the records given that a later item may hold again, and
    /// whether a packed item held them.
    given: BTreeMap<RangeKey, bool>,
    copies: Copies,
}

fn string_attr<'a>(item: &'a Value, name: &str) -> &'a str {
    item.get(name)
        .and_then(|v| v.get("S").or(Some(v)))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

impl Dedupe {
    /// A deduplicator with nothing read.
    pub fn new() -> Dedupe {
        Dedupe::default()
    }

    /// Reads one stored item (DynamoDB JSON, as either store gives it);
    /// calls `give` with each of its records (its record-layout item in
    /// plain JSON) not given before.
    pub fn item<E: From<PackError>>(
        &mut self,
        item: &Value,
        mut give: impl FnMut(Value) -> Result<(), E>,
    ) -> Result<(), E> {
        self.item_and_copies(item, |record, copy| if copy { Ok(()) } else { give(record) })
    }

    /// Like [`Dedupe::item`], but calls `give` with every record of the
    /// item, copies too, and whether it is one (`true`): for a reader that
    /// wants something of every copy (the latest `received_at`) but counts
    /// each record once.
    pub fn item_and_copies<E: From<PackError>>(
        &mut self,
        item: &Value,
        mut give: impl FnMut(Value, bool) -> Result<(), E>,
    ) -> Result<(), E> {
        let device = string_attr(item, "device");
        let rk = string_attr(item, "rk");
        if self.device.as_deref() != Some(device) {
            self.finish();
            self.device = Some(device.to_owned());
        } else if rk < self.last_item_rk.as_str() {
            self.copies.unordered_items += 1;
        }
        self.last_item_rk.clear();
        self.last_item_rk.push_str(rk);
        // No later item holds a record before this item's time.
        if let Some(time) = rk.get(..TIME_DIGITS).and_then(|t| t.parse::<u64>().ok()) {
            self.given = self.given.split_off(&RangeKey {
                time_ms: time,
                seq: 0,
                index: 0,
            });
        }
        let packed = item.get("records").is_some();
        for record in stored_records(item)? {
            let key = record.get("rk").and_then(Value::as_str).and_then(RangeKey::parse);
            let Some(key) = key else {
                // Not a record this gateway wrote: given as it is.
                give(record, false)?;
                continue;
            };
            let copy = match self.given.get(&key) {
                Some(was_packed) if *was_packed == packed => {
                    self.copies.same_layout += 1;
                    true
                }
                Some(_) => {
                    self.copies.across_layouts += 1;
                    true
                }
                None => {
                    self.given.insert(key, packed);
                    false
                }
            };
            give(record, copy)?;
        }
        Ok(())
    }

    /// Forgets what was read (at the end, or of a device's items).
    pub fn finish(&mut self) {
        self.given.clear();
        self.last_item_rk.clear();
    }

    /// Records skipped as copies so far.
    pub fn copies(&self) -> Copies {
        self.copies
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packed::Packer;
    use crate::tests::accept_vector;

    /// The batch's items in the record layout (DynamoDB JSON).
    fn record_items(name: &str) -> Vec<Value> {
        let batch = accept_vector(name);
        let mut out = Vec::new();
        crate::JsonItems::new()
            .render::<PackError>(&batch, |item| {
                out.push(serde_json::from_str(item.json).unwrap());
                Ok(())
            })
            .unwrap();
        out
    }

    /// The batch as packed items (DynamoDB JSON).
    fn packed_items(name: &str) -> Vec<Value> {
        let batch = accept_vector(name);
        let mut out = Vec::new();
        Packer::new()
            .unwrap()
            .pack::<PackError>(&batch, |item| {
                let mut json = String::new();
                item.push_json(&mut json);
                out.push(serde_json::from_str(&json).unwrap());
                Ok(())
            })
            .unwrap();
        out
    }

    /// The records `items` give, read in key order, and the copies skipped.
    fn read(mut items: Vec<Value>) -> (Vec<String>, Copies) {
        items.sort_by(|a, b| {
            (string_attr(a, "device"), string_attr(a, "rk")).cmp(&(string_attr(b, "device"), string_attr(b, "rk")))
        });
        let mut dedupe = Dedupe::new();
        let mut out = Vec::new();
        for item in &items {
            dedupe
                .item::<PackError>(item, |r| {
                    out.push(r["rk"].as_str().unwrap().to_owned());
                    Ok(())
                })
                .unwrap();
        }
        dedupe.finish();
        out.sort();
        (out, dedupe.copies())
    }

    #[test]
    fn a_batch_held_by_both_layouts_gives_each_record_once() {
        let records = record_items("batch_mixed_kinds");
        let mut want: Vec<String> = records.iter().map(|i| string_attr(i, "rk").to_owned()).collect();
        want.sort();
        let (alone, copies) = read(records.clone());
        assert_eq!((alone, copies), (want.clone(), Copies::default()));
        let (packed, _) = read(packed_items("batch_mixed_kinds"));
        assert_eq!(packed, want);
        let both = records.into_iter().chain(packed_items("batch_mixed_kinds")).collect();
        let (given, copies) = read(both);
        assert_eq!(given, want, "each record once");
        assert_eq!(copies.across_layouts, want.len() as u64);
        assert_eq!((copies.same_layout, copies.unordered_items), (0, 0));
    }

    #[test]
    fn two_packed_items_holding_a_record_are_counted_apart() {
        let mut items = packed_items("batch_one_location");
        let mut other = items[0].clone();
        // The same records under another key (as an older version's parts were).
        other["rk"]["S"] = Value::from(format!("{}#p001", string_attr(&items[0], "rk")));
        items.push(other);
        let (given, copies) = read(items);
        assert_eq!(given.len(), 1);
        assert_eq!(copies.same_layout, 1);
    }

    #[test]
    fn another_devices_records_are_not_copies() {
        let mut items = record_items("batch_one_location");
        let mut other = items[0].clone();
        other["device"]["S"] = Value::from("dev-0002");
        items.push(other);
        let (given, copies) = read(items);
        assert_eq!(given.len(), 2);
        assert_eq!(copies, Copies::default());
    }
}
