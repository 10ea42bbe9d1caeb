//! The storage mapping of AWP/1 (AWP1.md §7), in one place: how an accepted
//! BATCH's records become DynamoDB items, for the gateway's sinks and for
//! whoever reads the items back (agent-sim's verification, tests).
//!
//! # How records flow through it
//!
//! ```text
//!  session: a BATCH's inflated bytes after seq
//!     │ AcceptedBatch::accept: every record decoded and checked once,
//!     │   and no item over 400 KB ─────────────── BatchError → ACK REJECTED
//!     ▼
//!  AcceptedBatch { Arc<Origin>, seq, received_at, expires_at, content: Bytes }
//!     │ travels through the pipeline as bytes: nothing per record
//!     ▼
//!  a sink walks the bytes again (AcceptedBatch::records) and renders:
//!     ├─ json::JsonItems           DynamoDB JSON text, one reused buffer
//!     │                            (SQLite's item column; the null sink)
//!     ├─ dynamodb::AttributeItems  the SDK's attribute maps (BatchWriteItem)
//!     ├─ size::ItemSizer           DynamoDB's size of each item
//!     └─ packed::Packer            the packed layout: one item per batch
//!                                  (or part), its records as zstd'd lines
//!                                  of plain JSON (plain::to_plain)
//! ```
//!
//! Beside it: [`key`] formats and parses `rk`, [`sqlite`] is the SQLite
//! layout (schema, upsert, reading a device back), [`compare`] compares
//! items by value, [`dedupe`] gives a table's records once each when both
//! layouts hold some of them, and [`dynamodb::attributes_to_json`] turns items read
//! from DynamoDB back into DynamoDB JSON.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod batch;
pub mod compare;
pub mod dedupe;
#[cfg(feature = "dynamodb")]
pub mod dynamodb;
pub mod json;
pub mod key;
mod origin;
pub mod packed;
pub mod plain;
pub mod size;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod text;

pub use batch::{AcceptedBatch, Origin, StoredRecord};
pub use json::{JsonItem, JsonItems};
pub use key::RangeKey;
pub use size::{ItemSizer, MAX_ITEM_BYTES};

#[cfg(test)]
pub(crate) mod tests {
    //! Batches of the test vectors, accepted as the session accepts them.
    use std::sync::Arc;

    use awp_protocol::{Decoded, Frame, Limits, Platform, RecordBody, decode};
    use bytes::Bytes;

    use super::*;

    /// The vectors' HELLO sends device `dev-0001`, android, agent 4.2.0.
    pub(crate) fn origin() -> Arc<Origin> {
        Arc::new(Origin {
            device_id: "dev-0001".into(),
            platform: Platform::Android,
            agent_version: "4.2.0".into(),
        })
    }

    /// A valid BATCH vector, accepted with received_at 1764000009999 and no retention.
    pub(crate) fn accept_vector(name: &str) -> AcceptedBatch {
        accept_vector_with(name, "4.2.0", None)
    }

    /// A valid BATCH vector, accepted with the given agent version and expiry.
    pub(crate) fn accept_vector_with(name: &str, agent_version: &str, expires_at: Option<u64>) -> AcceptedBatch {
        let bytes = Bytes::copy_from_slice(&awp_testkit::vectors().valid(name).bytes);
        let Ok(Decoded::Complete(Frame::Batch(frame), _)) = decode(&bytes, &Limits::DEFAULT) else {
            panic!("{name} is not a whole BATCH");
        };
        let origin = Arc::new(Origin {
            agent_version: agent_version.into(),
            ..(*origin()).clone()
        });
        AcceptedBatch::accept(
            origin,
            frame.seq(),
            1_764_000_009_999,
            expires_at,
            frame.content().clone(),
            &Limits::DEFAULT,
        )
        .unwrap()
    }

    /// A batch of `bodies` at time 1764000000000, seq 5, from `device`.
    pub(crate) fn accept_records(device: &str, bodies: Vec<RecordBody<'static>>) -> AcceptedBatch {
        let batch = awp_protocol::Batch {
            seq: 5,
            base_time_ms: 1_764_000_000_000,
            records: bodies
                .into_iter()
                .map(|body| awp_protocol::Record {
                    time_offset_ms: 0,
                    body,
                })
                .collect(),
        };
        let prepared = awp_protocol::PreparedBatch::new(&batch, &Limits::DEFAULT).unwrap();
        let origin = Arc::new(Origin {
            device_id: device.into(),
            ..(*origin()).clone()
        });
        AcceptedBatch::accept(
            origin,
            5,
            1_764_000_009_999,
            None,
            prepared.content().clone(),
            &Limits::DEFAULT,
        )
        .unwrap()
    }
}
