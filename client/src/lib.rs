//! `awp-client`: the agent side of AWP/1 (docs/AWP1.md), so that nothing
//! is lost before the gateway either.
//!
//! This first step holds the records: typed constructors for the five
//! kinds and unknown kinds, checked against AWP1.md §5 when made, and the
//! JSON shape of the test vectors' records with an absolute `time_ms`.
//! The queue, the engine and the bindings follow (issue 20).

mod config;
mod engine;
pub mod ffi;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod queue;
mod record;

pub use awp_protocol::{AttrValue, Channel, Compression, Direction, Network, Platform};
pub use config::{Auth, ClientConfig, QueuePlace, Tls, Token, TokenSource};
pub use engine::{Client, ClientError, ClientStats};
pub use queue::{
    DiskQueue, MemoryQueue, Queue, QueueError, QueueOptions, QueueStats, SealLimits, SealedBatch, SyncJob, SyncMark,
    Unsealed,
};
pub use record::{Record, RecordError};
