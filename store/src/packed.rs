//! The packed layout: one item per accepted BATCH instead of one per
//! record, for tenants with `layout = "packed"`.
//!
//! DynamoDB bills a write unit per item and started KB, and keeps about 100
//! bytes and every attribute name per item: a 100-record batch of small
//! records costs 100 write units in the record layout and one or two packed.
//!
//! # The item
//!
//! | attribute | value |
//! |---|---|
//! | `device` (partition key) | the device id |
//! | `rk` (sort key) | `{t_min:013}#{seq:020}`, `t_min` the item's earliest record time; a batch that needs several items (parts) has `#p000`, `#p001`, … after it, each part its own `t_min` |
//! | `count` | records in the item |
//! | `t_min`, `t_max` | the earliest and latest record time in the item, unix ms |
//! | `kinds` | string set of the record kinds in the item |
//! | `seq`, `received_at`, `platform`, `agent_version`, `expires_at` | as in the record layout (`agent_version` left out when empty, `expires_at` when the tenant keeps records forever) |
//! | `records` | binary: zstd of the records as JSON lines, one per record, in time order (record order among equal times) |
//!
//! Each line is the record's item in the record layout as plain JSON
//! ([`crate::plain`]): numbers as numbers, bytes as base64 strings. Anyone
//! with zstd and a JSON parser reads it, in any language.
//!
//! # Parts
//!
//! A part holds records in time order (record order among equal times)
//! whose own bytes add up to at most [`PART_CONTENT_BYTES`], and whose
//! times span at most [`MAX_PART_SPAN_MS`] (a part always holds at least
//! one record). A record's own bytes are its JSON line less the attributes
//! every line of its batch shares with the session (`seq`, `received_at`,
//! `platform`, `agent_version`, `expires_at`): what the device, seq and
//! record alone determine. So where a batch is cut, and the key and records
//! of every part, depend only on the batch's content: a batch resent from
//! another connection (another agent version, platform, or a retention
//! changed by a reload in between) lands on the same keys with the same
//! records per key and is stored once, keeping either send's attributes.
//! The lines' shared attributes compress to a few bytes each, so an item
//! stays well under DynamoDB's 400 KB; a time-range query reads `rk` from
//! one span before its start. A batch that fits one part (about every batch
//! an agent sends live) is one item, keyed by the batch's earliest record
//! time, without the `#p` suffix. A single record whose packed item would
//! still be over 400 KB (only possible for an unknown kind with a body near
//! the limit that does not compress) cannot be stored packed:
//! [`PackError::TooLarge`] (ACK REJECTED), found before anything of the
//! write is sent.
//!
//! # A tenant that changes its layout
//!
//! The two layouts key a record differently (`{time}#{seq}#{index}` against
//! `{t_min}#{seq}` or `{t_min}#{seq}#p{n}`), so a batch resent after the
//! tenant's layout changed is stored under the other layout's keys as well:
//! the table then holds the record twice, once per layout. Readers that
//! meet both give it once ([`Dedupe`], used by `gateway export` and
//! agent-sim's verify): a record is named by its record-layout `rk` (time,
//! seq, index) within its device, whichever item holds it.

use std::ops::Range;

use awp_protocol::{BatchError, RecordBody};

use crate::batch::AcceptedBatch;
use crate::json::JsonItems;
use crate::key::{SEQ_DIGITS, TIME_DIGITS};
use crate::plain::to_plain;
use crate::size::MAX_ITEM_BYTES;
use crate::text::{push_base64, push_json_str, push_padded, push_padded_digits, push_u64};

/// The most bytes of its records' own content (their JSON lines less the
/// attributes the session gives every line) in one part, before
/// compression.
pub const PART_CONTENT_BYTES: usize = 256 * 1024;

/// The longest time one item's records span, ms: a query for a time range
/// reads the keys from this much before it (`rk` starts with the item's
/// earliest record time), whatever the agents sent in one batch.
pub const MAX_PART_SPAN_MS: u64 = 3_600_000;

/// The zstd level of `records`: fast to write; the lines of small records
/// compress 5-10 times at it.
pub const ZSTD_LEVEL: i32 = 3;

/// The most bytes a part's lines may inflate to when read back: far above
/// what the gateway writes, and a bound against a tampered item.
pub const MAX_LINES_BYTES: usize = 16 << 20;

/// Why a batch cannot be packed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PackError {
    /// Walking the batch's records failed (a checked batch does not).
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// A record's item is over 400 KB even alone and compressed.
    #[error("record {index}: its packed item would be {bytes} bytes, over DynamoDB's 400 KB")]
    TooLarge {
        /// The record's index in the batch.
        index: usize,
        /// The packed item's size.
        bytes: usize,
    },
    /// zstd failed.
    #[error("zstd: {0}")]
    Zstd(String),
    /// A record's line could not be rendered (a bug: the renderer's own
    /// DynamoDB JSON did not read back).
    #[error("rendering a record's line: {0}")]
    Render(String),
}

/// The record kinds, in the order `kinds` lists them (sorted, as DynamoDB
/// returns a string set's members in no order, and readers compare sets).
pub const KINDS: [&str; 6] = ["app_usage", "event", "location", "message", "net_usage", "unknown"];

fn kind_bit(body: &RecordBody<'_>) -> u8 {
    1 << match body {
        RecordBody::AppUsage(_) => 0,
        RecordBody::Event(_) => 1,
        RecordBody::Location(_) => 2,
        RecordBody::Message(_) => 3,
        RecordBody::NetUsage(_) => 4,
        RecordBody::Unknown(_) => 5,
    }
}

/// One packed item, borrowed from the [`Packer`].
#[derive(Debug, Clone, Copy)]
pub struct PackedItem<'a> {
    /// The batch it packs (for the attributes it shares with the record
    /// layout: device, seq, received_at, platform, agent_version, expires_at).
    pub batch: &'a AcceptedBatch,
    /// The sort key.
    pub rk: &'a str,
    /// Records in it.
    pub count: u32,
    /// Earliest record time, unix ms.
    pub t_min: u64,
    /// Latest record time, unix ms.
    pub t_max: u64,
    /// The record kinds in it, as a bit set over [`KINDS`].
    kinds: u8,
    /// zstd of the records' JSON lines.
    pub records: &'a [u8],
}

impl PackedItem<'_> {
    /// The record kinds in it, sorted.
    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        KINDS
            .iter()
            .enumerate()
            .filter(|(i, _)| self.kinds & (1 << i) != 0)
            .map(|(_, k)| *k)
    }

    /// The item as DynamoDB JSON (the SQLite sink's `item` column), into
    /// `out`; `records` is base64, as DynamoDB JSON writes binary.
    pub fn push_json(&self, out: &mut String) {
        let origin = self.batch.origin();
        out.push_str(r#"{"device":{"S":"#);
        push_json_str(out, &origin.device_id);
        out.push_str(r#"},"rk":{"S":""#);
        out.push_str(self.rk);
        out.push_str(r#""},"count":{"N":""#);
        push_u64(out, u64::from(self.count));
        out.push_str(r#""},"t_min":{"N":""#);
        push_u64(out, self.t_min);
        out.push_str(r#""},"t_max":{"N":""#);
        push_u64(out, self.t_max);
        out.push_str(r#""},"kinds":{"SS":["#);
        for (i, kind) in self.kinds().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('"');
            out.push_str(kind);
            out.push('"');
        }
        out.push_str("]},");
        crate::json::push_batch_attributes(out, self.batch);
        out.push_str(r#","records":{"B":""#);
        push_base64(out, self.records);
        out.push_str(r#""}}"#);
    }

    /// Its size as DynamoDB counts it (attribute names and values), to
    /// check against 400 KB and to count write units.
    pub fn size(&self) -> usize {
        let digits = |n: u64| itoa::Buffer::new().format(n).len();
        let origin = self.batch.origin();
        let mut size = "device".len() + origin.device_id.len() + "rk".len() + self.rk.len();
        size += "count".len() + digits(u64::from(self.count));
        size += "t_min".len() + digits(self.t_min) + "t_max".len() + digits(self.t_max);
        size += "kinds".len() + self.kinds().map(str::len).sum::<usize>();
        size += "seq".len() + digits(self.batch.seq());
        size += "received_at".len() + digits(self.batch.received_at_ms());
        size += "platform".len() + origin.platform.as_str().len();
        if !origin.agent_version.is_empty() {
            size += "agent_version".len() + origin.agent_version.len();
        }
        if let Some(e) = self.batch.expires_at() {
            size += "expires_at".len() + digits(e);
        }
        size + "records".len() + self.records.len()
    }
}

/// A part being cut: its records' lines and what its item says of them.
#[derive(Debug, Clone)]
struct Part {
    lines: Range<usize>,
    /// The records' own bytes (see [`PART_CONTENT_BYTES`]).
    content: usize,
    first_record: usize,
    count: u32,
    t_min: u64,
    t_max: u64,
    kinds: u8,
}

/// Packs batches; keep one and reuse it, its buffers and zstd context stay.
pub struct Packer {
    json: JsonItems,
    lines: String,
    /// The batch's shared attributes, as DynamoDB JSON and then plain: to
    /// measure what each line carries of them.
    shared: String,
    shared_plain: String,
    /// The lines in time order, when the batch's were not.
    sorted: String,
    order: Vec<Line>,
    parts: Vec<Part>,
    rk: String,
    compressed: Vec<u8>,
    zstd: zstd::bulk::Compressor<'static>,
}

impl std::fmt::Debug for Packer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packer")
            .field("lines", &self.lines.len())
            .finish_non_exhaustive()
    }
}

impl Packer {
    /// A packer with empty buffers.
    pub fn new() -> Result<Packer, PackError> {
        Ok(Packer {
            json: JsonItems::new(),
            lines: String::new(),
            shared: String::new(),
            shared_plain: String::new(),
            sorted: String::new(),
            order: Vec::new(),
            parts: Vec::new(),
            rk: String::new(),
            compressed: Vec::new(),
            zstd: zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(|e| PackError::Zstd(e.to_string()))?,
        })
    }

    /// Calls `each` with every packed item of `batch` (one, or its parts in
    /// order). Stops at the first error.
    pub fn pack<E: From<PackError>>(
        &mut self,
        batch: &AcceptedBatch,
        mut each: impl FnMut(PackedItem<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.cut(batch)?;
        let split = self.parts.len() > 1;
        for (n, part) in self.parts.iter().enumerate() {
            self.rk.clear();
            push_padded_digits(&mut self.rk, itoa::Buffer::new().format(part.t_min), TIME_DIGITS);
            self.rk.push('#');
            push_padded(&mut self.rk, batch.seq(), SEQ_DIGITS);
            if split {
                self.rk.push_str("#p");
                push_padded(&mut self.rk, n as u64, 3);
            }
            self.compressed.clear();
            let lines = &self.lines.as_bytes()[part.lines.clone()];
            self.compressed.reserve(zstd::zstd_safe::compress_bound(lines.len()));
            self.zstd
                .compress_to_buffer(lines, &mut self.compressed)
                .map_err(|e| PackError::Zstd(e.to_string()))?;
            let item = PackedItem {
                batch,
                rk: &self.rk,
                count: part.count,
                t_min: part.t_min,
                t_max: part.t_max,
                kinds: part.kinds,
                records: &self.compressed,
            };
            let bytes = item.size();
            if bytes > MAX_ITEM_BYTES {
                return Err(PackError::TooLarge {
                    index: part.first_record,
                    bytes,
                }
                .into());
            }
            each(item)?;
        }
        Ok(())
    }

    /// Renders the batch's lines and cuts them into parts: records in time
    /// order (record order among equal times), a new part when the records'
    /// own bytes would pass [`PART_CONTENT_BYTES`] or the part's times would
    /// span more than [`MAX_PART_SPAN_MS`].
    fn cut(&mut self, batch: &AcceptedBatch) -> Result<(), PackError> {
        self.lines.clear();
        self.parts.clear();
        self.order.clear();
        let shared = self.shared_len(batch)?;
        self.json.begin(batch);
        for (index, record) in batch.records().enumerate() {
            let record = record?;
            let start = self.lines.len();
            let json = self.json.render_record_json(&record);
            // The renderer's own output: always DynamoDB JSON.
            to_plain(json, &mut self.lines).map_err(|e| PackError::Render(e.to_string()))?;
            // Every line holds the shared attributes once, as plain JSON.
            let content = (self.lines.len() - start).saturating_sub(shared);
            self.lines.push('\n');
            self.order.push(Line {
                time: record.key.time_ms,
                index,
                kind: kind_bit(&record.record.body),
                content,
                bytes: start..self.lines.len(),
            });
        }
        // Agents send records in time order, mostly; then nothing moves.
        if !self.order.is_sorted_by_key(|l| l.time) {
            self.order.sort_by_key(|l| (l.time, l.index));
            self.sorted.clear();
            for line in &mut self.order {
                let start = self.sorted.len();
                self.sorted.push_str(&self.lines[line.bytes.clone()]);
                line.bytes = start..self.sorted.len();
            }
            std::mem::swap(&mut self.lines, &mut self.sorted);
        }
        for line in &self.order {
            match self.parts.last_mut() {
                Some(part)
                    if part.content + line.content <= PART_CONTENT_BYTES
                        && line.time - part.t_min <= MAX_PART_SPAN_MS =>
                {
                    part.lines.end = line.bytes.end;
                    part.content += line.content;
                    part.count += 1;
                    part.t_max = line.time;
                    part.kinds |= line.kind;
                }
                _ => self.parts.push(Part {
                    lines: line.bytes.clone(),
                    content: line.content,
                    first_record: line.index,
                    count: 1,
                    t_min: line.time,
                    t_max: line.time,
                    kinds: line.kind,
                }),
            }
        }
        Ok(())
    }

    /// The length of the attributes every line of `batch` shares with its
    /// session (`"seq":…` to `expires_at`), as each line holds them in
    /// plain JSON.
    fn shared_len(&mut self, batch: &AcceptedBatch) -> Result<usize, PackError> {
        self.shared.clear();
        self.shared.push('{');
        crate::json::push_batch_attributes(&mut self.shared, batch);
        self.shared.push('}');
        self.shared_plain.clear();
        to_plain(&self.shared, &mut self.shared_plain).map_err(|e| PackError::Render(e.to_string()))?;
        // Less the braces; each line has a comma before them instead.
        Ok(self.shared_plain.len() - 1)
    }
}

/// A record's line in the packer's buffer, and what its part needs of it.
#[derive(Debug, Clone)]
struct Line {
    time: u64,
    index: usize,
    kind: u8,
    /// The record's own bytes in its line (see [`PART_CONTENT_BYTES`]).
    content: usize,
    bytes: Range<usize>,
}

/// A packed item's `records` as its JSON lines (at most
/// [`MAX_LINES_BYTES`]).
pub fn unpack(records: &[u8]) -> Result<String, PackError> {
    let bytes = zstd::bulk::decompress(records, MAX_LINES_BYTES).map_err(|e| PackError::Zstd(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| PackError::Zstd(format!("the lines are not UTF-8: {e}")))
}

/// The records of a stored item (DynamoDB JSON, as read from either store),
/// each as its record-layout item in plain JSON: the item itself in the
/// record layout, the lines of `records` in the packed one. How export and
/// verification read a table whatever its layout.
pub fn stored_records(item: &serde_json::Value) -> Result<Vec<serde_json::Value>, PackError> {
    let Some(records) = item.get("records").and_then(|r| r.get("B")).and_then(|b| b.as_str()) else {
        return Ok(vec![crate::plain::value_to_plain(item)]);
    };
    let bytes = crate::text::decode_base64(records).ok_or_else(|| PackError::Zstd("records is not base64".into()))?;
    unpack(&bytes)?
        .lines()
        .map(|line| serde_json::from_str(line).map_err(|e| PackError::Zstd(format!("a line is not JSON: {e}"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::plain::value_to_plain;
    use crate::tests::accept_vector;

    /// A packed item, read back: rk, count, t_min, t_max, kinds, records, size.
    type ReadBack = (String, u32, u64, u64, Vec<&'static str>, Vec<Value>, usize);

    fn packed(batch: &AcceptedBatch) -> Vec<ReadBack> {
        let mut out = Vec::new();
        Packer::new()
            .unwrap()
            .pack::<PackError>(batch, |item| {
                let lines = unpack(item.records).unwrap();
                let records = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
                out.push((
                    item.rk.to_owned(),
                    item.count,
                    item.t_min,
                    item.t_max,
                    item.kinds().collect(),
                    records,
                    item.size(),
                ));
                Ok(())
            })
            .unwrap();
        out
    }

    #[test]
    fn a_vector_batch_is_one_item_whose_lines_are_its_record_items() {
        for (v, items) in awp_testkit::vectors().with_items() {
            let batch = accept_vector(&v.name);
            let parts = packed(&batch);
            assert_eq!(parts.len(), 1, "{}", v.name);
            let (rk, count, t_min, t_max, kinds, records, size) = &parts[0];
            // In time order, which is the order of the record layout's keys.
            let mut expected: Vec<Value> = items.iter().map(value_to_plain).collect();
            expected.sort_by_key(|i| i["rk"].as_str().unwrap().to_owned());
            let without_received_at: Vec<Value> = records
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.as_object_mut().unwrap().remove("received_at");
                    r
                })
                .collect();
            assert_eq!(without_received_at, expected, "{}", v.name);
            let times: Vec<u64> = expected.iter().map(|i| i["ts"].as_u64().unwrap()).collect();
            assert_eq!(*count as usize, expected.len());
            assert_eq!(
                (*t_min, *t_max),
                (*times.iter().min().unwrap(), *times.iter().max().unwrap())
            );
            assert_eq!(rk, &format!("{:013}#{:020}", t_min, batch.seq()));
            let mut expected_kinds: Vec<&str> = expected.iter().map(|i| i["kind"].as_str().unwrap()).collect();
            expected_kinds.sort();
            expected_kinds.dedup();
            assert_eq!(kinds, &expected_kinds);
            assert!(*size < 2000, "{size}");
        }
    }

    #[test]
    fn a_large_batch_is_split_into_parts_under_the_item_limit_the_same_way_each_time() {
        // 1,000 events with incompressible 2 KB attributes: about 2.8 MB of lines.
        let mut rng = 7u64;
        let mut noise = || {
            (0..2048)
                .map(|_| {
                    rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (rng >> 56) as u8
                })
                .collect::<Vec<u8>>()
        };
        let bodies = (0..1000)
            .map(|_| {
                RecordBody::Event(awp_protocol::Event {
                    name: "blob".into(),
                    attrs: vec![awp_protocol::Attr {
                        key: "b".into(),
                        value: awp_protocol::AttrValue::Bytes(noise().into()),
                    }],
                })
            })
            .collect();
        let batch = crate::tests::accept_records("dev-0001", bodies);
        let first = packed(&batch);
        assert!(first.len() > 10, "{} parts", first.len());
        assert_eq!(first.iter().map(|p| p.1).sum::<u32>(), 1000);
        for (n, (rk, _, _, _, kinds, _, size)) in first.iter().enumerate() {
            assert!(rk.ends_with(&format!("#p{n:03}")), "{rk}");
            assert!(*size <= MAX_ITEM_BYTES, "{size}");
            assert_eq!(kinds, &["event"]);
        }
        let again = packed(&batch);
        assert_eq!(
            first.iter().map(|p| &p.0).collect::<Vec<_>>(),
            again.iter().map(|p| &p.0).collect::<Vec<_>>()
        );
    }

    /// The same (device, seq, records) accepted from two sessions that
    /// differ in everything a session gives the items: platform, agent
    /// version (up to the 64 bytes HELLO allows), arrival time, retention.
    fn resent_by_another_session(bodies: Vec<RecordBody<'static>>) -> [AcceptedBatch; 2] {
        let batch = awp_protocol::Batch {
            seq: 7,
            base_time_ms: 1_764_000_000_000,
            records: bodies
                .into_iter()
                .enumerate()
                .map(|(i, body)| awp_protocol::Record {
                    time_offset_ms: i as i64 * 70,
                    body,
                })
                .collect(),
        };
        let limits = awp_protocol::Limits {
            max_frame_len: 16 << 20,
            max_batch_bytes: 16 << 20,
            ..awp_protocol::Limits::DEFAULT
        };
        let content = awp_protocol::PreparedBatch::new(&batch, &limits).unwrap();
        let first = std::sync::Arc::new(crate::Origin {
            device_id: "phone-1".into(),
            platform: awp_protocol::Platform::Android,
            agent_version: "1".into(),
        });
        let second = std::sync::Arc::new(crate::Origin {
            device_id: "phone-1".into(),
            platform: awp_protocol::Platform::Windows,
            agent_version: "\u{1}".repeat(10) + &"v".repeat(54),
        });
        [
            AcceptedBatch::accept(first, 7, 1_764_000_000_001, None, content.content().clone(), &limits).unwrap(),
            AcceptedBatch::accept(
                second,
                7,
                1_764_999_999_999,
                Some(1_799_999_999),
                content.content().clone(),
                &limits,
            )
            .unwrap(),
        ]
    }

    /// Each part's key and its records' keys.
    fn keys(parts: &[ReadBack]) -> Vec<(String, Vec<String>)> {
        parts
            .iter()
            .map(|p| {
                (
                    p.0.clone(),
                    p.5.iter().map(|r| r["rk"].as_str().unwrap().to_owned()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn where_a_batch_is_cut_depends_on_its_content_not_its_session() {
        // 600 app-usage records with 300-500 character titles: several parts.
        let bodies = (0..600)
            .map(|i| {
                RecordBody::AppUsage(awp_protocol::AppUsage {
                    app: "com.example.app".into(),
                    title: "t".repeat(300 + (i * 37) % 200).into(),
                    foreground_ms: i as u64,
                })
            })
            .collect();
        let [first, second] = resent_by_another_session(bodies);
        let (a, b) = (packed(&first), packed(&second));
        assert!(a.len() > 1, "{} parts", a.len());
        assert_eq!(keys(&a), keys(&b), "the same keys, the same records under each");
        assert_ne!(a[0].5[0]["agent_version"], b[0].5[0]["agent_version"]);
        // The parts' records add up to the batch, once each.
        let mut all: Vec<String> = keys(&a).into_iter().flat_map(|(_, r)| r).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 600);
    }

    #[test]
    fn one_large_record_alone_is_too_large_whichever_session_sends_it() {
        // Random bytes do not compress: the record item fits 400 KB, the packed one does not.
        let mut rng = 11u64;
        let body: Vec<u8> = (0..409_000)
            .map(|_| {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (rng >> 56) as u8
            })
            .collect();
        let body = RecordBody::Unknown(awp_protocol::Unknown {
            kind: 200,
            body: body.into(),
        });
        for batch in resent_by_another_session(vec![body]) {
            let err = Packer::new()
                .unwrap()
                .pack::<PackError>(&batch, |_| Ok(()))
                .unwrap_err();
            assert!(matches!(err, PackError::TooLarge { index: 0, .. }), "{err}");
        }
    }

    #[test]
    fn records_spanning_more_than_an_hour_are_split_by_time_each_part_keyed_by_its_own_start() {
        let location = |offset_ms: i64| awp_protocol::Record {
            time_offset_ms: offset_ms,
            body: RecordBody::Location(awp_protocol::Location {
                lat_e7: 1,
                lon_e7: 2,
                accuracy_m: 3,
            }),
        };
        // An agent back online: two hours of records, out of order.
        let hour = 3_600_000;
        let batch = awp_protocol::Batch {
            seq: 9,
            base_time_ms: 1_764_000_000_000,
            records: vec![
                location(2 * hour),
                location(0),
                location(hour + 1),
                location(10),
                location(hour),
            ],
        };
        let content = awp_protocol::PreparedBatch::new(&batch, &awp_protocol::Limits::DEFAULT).unwrap();
        let batch = AcceptedBatch::accept(
            crate::tests::origin(),
            9,
            1,
            None,
            content.content().clone(),
            &awp_protocol::Limits::DEFAULT,
        )
        .unwrap();
        let parts = packed(&batch);
        let (t0, hour) = (1_764_000_000_000u64, hour as u64);
        let summary: Vec<(String, u32, u64, u64)> = parts.iter().map(|p| (p.0.clone(), p.1, p.2, p.3)).collect();
        assert_eq!(
            summary,
            [
                (format!("{t0:013}#{:020}#p000", 9), 3, t0, t0 + hour),
                (
                    format!("{:013}#{:020}#p001", t0 + hour + 1, 9),
                    2,
                    t0 + hour + 1,
                    t0 + 2 * hour
                ),
            ]
        );
        for (_, _, t_min, t_max, _, records, _) in &parts {
            let times: Vec<u64> = records.iter().map(|r| r["ts"].as_u64().unwrap()).collect();
            assert!(times.is_sorted() && times[0] == *t_min && times[times.len() - 1] == *t_max);
            assert!(t_max - t_min <= MAX_PART_SPAN_MS);
        }
    }

    #[test]
    fn a_tampered_records_attribute_is_an_error_not_a_panic() {
        assert!(unpack(b"not zstd").is_err());
        let bomb = zstd::bulk::compress(&vec![b'a'; MAX_LINES_BYTES + 1], 3).unwrap();
        assert!(unpack(&bomb).is_err(), "bounded");
    }
}
