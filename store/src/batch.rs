//! A BATCH accepted for storage: its records still as the agent's bytes,
//! with what every item of it shares.
//!
//! [`AcceptedBatch::accept`] decodes and checks every record once (the
//! session calls it, so a bad record is answered ACK REJECTED there),
//! including the two rules of storage: a record time `rk` can hold, and an
//! item within DynamoDB's 400 KB; after
//! that the batch travels to the sink as one `Bytes` and one `Arc`, and each
//! sink walks the bytes again ([`AcceptedBatch::records`]) to render the
//! items in its own form. Nothing per record is allocated in between.

use std::sync::Arc;

use awp_protocol::{BatchError, FieldError, Limits, Problem, Record, RecordBody, Records};
use bytes::Bytes;

use crate::key::{MAX_TIME_MS, RangeKey};
pub use crate::origin::Origin;
use crate::size::{ItemSizer, MAX_ITEM_BYTES};

/// A checked BATCH, ready to be stored.
#[derive(Clone, Debug)]
pub struct AcceptedBatch {
    origin: Arc<Origin>,
    seq: u64,
    received_at_ms: u64,
    expires_at: Option<u64>,
    content: Bytes,
    record_count: u32,
}

/// A record of an accepted batch, with what its item needs besides the batch.
#[derive(Clone, Debug)]
pub struct StoredRecord<'a> {
    /// Its key's sort part: time, seq, index.
    pub key: RangeKey,
    /// The decoded record (strings borrowed from the batch's bytes).
    pub record: Record<'a>,
}

/// Limits for walking content that was already checked against the
/// session's: only the record count is looked at again, and it passed.
const RECHECK: Limits = Limits {
    max_batch_records: u32::MAX,
    ..Limits::DEFAULT
};

impl AcceptedBatch {
    /// A sizer for this batch's items (their attributes in DynamoDB's
    /// size terms).
    pub fn item_sizer(&self) -> ItemSizer {
        ItemSizer::new(self.origin(), self.seq(), self.received_at_ms(), self.expires_at())
    }

    /// Decodes and checks `content` (a BATCH's inflated bytes after `seq`)
    /// record by record: the rules of AWP1.md §5, and that no record makes
    /// an item over DynamoDB's 400 KB limit. Any failure names the first bad
    /// record; the batch is then not accepted (ACK REJECTED).
    ///
    /// `received_at_ms` is the gateway's clock when the batch arrived;
    /// `expires_at` (unix seconds) is set when the tenant has a retention.
    pub fn accept(
        origin: Arc<Origin>,
        seq: u64,
        received_at_ms: u64,
        expires_at: Option<u64>,
        content: Bytes,
        limits: &Limits,
    ) -> Result<AcceptedBatch, BatchError> {
        let mut batch = AcceptedBatch {
            origin,
            seq,
            received_at_ms,
            expires_at,
            content,
            record_count: 0,
        };
        // Made for the first record of an unknown kind only: most batches have none.
        let mut sizer: Option<ItemSizer> = None;
        let mut records = Records::new(&batch.content, limits)?;
        let mut index = 0u32;
        while let Some(record) = records.next() {
            let record = record?;
            if records.record_time_ms(&record) > MAX_TIME_MS {
                return Err(BatchError {
                    index: Some(index),
                    error: FieldError {
                        field: "time_offset_ms",
                        problem: Problem::Rule(
                            "makes the record time later than 9999999999999 ms (the year 2286), which rk cannot hold",
                        ),
                    },
                });
            }
            // Of the kinds AWP/1 defines, the largest item (an EVENT of 64
            // attributes of 4 KiB) is about 270 KB; only a record of an
            // unknown kind, kept whole, can reach the limit.
            if let RecordBody::Unknown(_) = record.body {
                let key = RangeKey {
                    time_ms: records.record_time_ms(&record),
                    seq,
                    index,
                };
                let sizer = sizer.get_or_insert_with(|| batch.item_sizer());
                if sizer.item_size(&key, &record) > MAX_ITEM_BYTES {
                    return Err(BatchError {
                        index: Some(index),
                        error: FieldError {
                            field: "body",
                            problem: Problem::Rule("makes an item over DynamoDB's 400 KB item limit"),
                        },
                    });
                }
            }
            index += 1;
        }
        batch.record_count = index;
        Ok(batch)
    }

    /// Who sent it.
    pub fn origin(&self) -> &Arc<Origin> {
        &self.origin
    }

    /// The device id (every item's partition key).
    pub fn device_id(&self) -> &str {
        &self.origin.device_id
    }

    /// The batch's seq.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// When it arrived, unix ms.
    pub fn received_at_ms(&self) -> u64 {
        self.received_at_ms
    }

    /// When its items expire (unix seconds), if the tenant has a retention.
    pub fn expires_at(&self) -> Option<u64> {
        self.expires_at
    }

    /// The number of records (and items).
    pub fn record_count(&self) -> u32 {
        self.record_count
    }

    /// The inflated content's length in bytes: what the batch costs to hold.
    pub fn content_len(&self) -> usize {
        self.content.len()
    }

    /// The records again, in order, each with its key. The content was
    /// checked by [`AcceptedBatch::accept`] and cannot change, so an error
    /// here means a bug, reported rather than skipped.
    pub fn records(&self) -> StoredRecords<'_> {
        let (walker, error) = match Records::new(&self.content, &RECHECK) {
            Ok(walker) => (Some(walker), None),
            Err(e) => (None, Some(e)),
        };
        StoredRecords {
            walker,
            error,
            seq: self.seq,
            index: 0,
        }
    }
}

/// The records of an [`AcceptedBatch`], walked from its bytes.
#[derive(Debug)]
pub struct StoredRecords<'a> {
    walker: Option<Records<'a>>,
    /// An error reading the content's head, reported once.
    error: Option<BatchError>,
    seq: u64,
    index: u32,
}

impl<'a> Iterator for StoredRecords<'a> {
    type Item = Result<StoredRecord<'a>, BatchError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.error.take() {
            return Some(Err(e));
        }
        let walker = self.walker.as_mut()?;
        let record = match walker.next()? {
            Ok(record) => record,
            Err(e) => return Some(Err(e)),
        };
        let key = RangeKey {
            time_ms: walker.record_time_ms(&record),
            seq: self.seq,
            index: self.index,
        };
        self.index += 1;
        Some(Ok(StoredRecord { key, record }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{accept_vector, origin};

    #[test]
    fn accepting_counts_the_records_and_walking_gives_their_keys() {
        let batch = accept_vector("batch_mixed_kinds");
        assert_eq!(batch.seq(), 77);
        assert_eq!(batch.record_count(), 8);
        let keys: Vec<RangeKey> = batch.records().map(|r| r.unwrap().key).collect();
        assert_eq!(keys.len(), 8);
        assert!(keys.iter().enumerate().all(|(i, k)| k.index == i as u32 && k.seq == 77));
    }

    #[test]
    fn a_bad_record_is_refused_with_its_index() {
        let v = awp_testkit::vectors();
        let limits = Limits::DEFAULT;
        let mut checked = 0;
        for bad in v.invalid.iter().filter(|v| v.expect == "REJECTED") {
            let bytes = Bytes::copy_from_slice(&bad.bytes);
            let Ok(awp_protocol::Decoded::Complete(awp_protocol::Frame::Batch(frame), _)) =
                awp_protocol::decode(&bytes, &limits)
            else {
                panic!("{}: not a BATCH", bad.name);
            };
            let err =
                AcceptedBatch::accept(origin(), frame.seq(), 0, None, frame.content().clone(), &limits).unwrap_err();
            // The same answer as decoding it whole (compared as text: a NaN
            // in the error is not equal to itself).
            let want = frame.decode(&limits).unwrap_err();
            assert_eq!(format!("{err:?}"), format!("{want:?}"), "{}", bad.name);
            checked += 1;
        }
        assert!(checked > 10);
    }

    #[test]
    fn a_record_time_beyond_the_key_is_refused() {
        let body = |offset| Record {
            time_offset_ms: offset,
            body: RecordBody::Location(awp_protocol::Location {
                lat_e7: 0,
                lon_e7: 0,
                accuracy_m: 1,
            }),
        };
        let batch = awp_protocol::Batch {
            seq: 1,
            base_time_ms: MAX_TIME_MS - 5,
            records: vec![body(5), body(6)],
        };
        let content = awp_protocol::PreparedBatch::new(&batch, &Limits::DEFAULT).unwrap();
        let err = AcceptedBatch::accept(origin(), 1, 0, None, content.content().clone(), &Limits::DEFAULT).unwrap_err();
        assert_eq!(
            err.index,
            Some(1),
            "the record at 9999999999999 ms is fine, the next is not"
        );
        assert!(
            err.to_string()
                .starts_with("record 1: time_offset_ms makes the record time later"),
            "{err}"
        );
    }

    #[test]
    fn a_record_too_large_for_an_item_is_refused() {
        use std::borrow::Cow;
        let body = vec![0u8; 400 * 1024];
        let batch = awp_protocol::Batch {
            seq: 3,
            base_time_ms: 1_764_000_000_000,
            records: vec![
                Record {
                    time_offset_ms: 0,
                    body: RecordBody::Unknown(awp_protocol::Unknown {
                        kind: 9,
                        body: Cow::Borrowed(&body[..399 * 1024]),
                    }),
                },
                Record {
                    time_offset_ms: 0,
                    body: RecordBody::Unknown(awp_protocol::Unknown {
                        kind: 9,
                        body: Cow::Borrowed(&body),
                    }),
                },
            ],
        };
        let limits = Limits {
            max_frame_len: 1 << 20,
            ..Limits::DEFAULT
        };
        let prepared = awp_protocol::PreparedBatch::new(&batch, &limits).unwrap();
        let err = AcceptedBatch::accept(origin(), 3, 0, None, prepared.content().clone(), &limits).unwrap_err();
        assert_eq!(err.index, Some(1));
        assert!(err.to_string().contains("400 KB"), "{err}");
    }
}
