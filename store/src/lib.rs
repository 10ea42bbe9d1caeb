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

#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
#[cfg(test)]
pub(crate) use test_support as tests;
