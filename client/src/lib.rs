//! `awp-client`: the agent side of AWP/1 (docs/AWP1.md), so that nothing
//! is lost before the gateway either. docs/client.md is the guide.
//!
//! # How a record flows
//!
//! ```text
//!  app ── push(Record) ──▶ queue (disk: a segmented log, written to the OS
//!   │       (Rust, C ABI,        before push returns; or memory)
//!   │        JNI)                    │ sealer: batches sealed at a count,
//!   │                                │ a size or a delay; synced (fdatasync)
//!   │                                ▼
//!   │                        engine (its own thread): connect, HELLO/WELCOME,
//!   │                        the window of BATCHes, ACK OK → done,
//!   │                        RETRY → the same bytes later, REJECTED → counted,
//!   │                        GOAWAY / lost connection → reconnect, resend
//!   └── flush / stats / close ◀──┘
//! ```
//!
//! # Layout
//!
//! - `record.rs`: typed constructors for the five kinds, unknown kinds, JSON.
//! - `config.rs`: what a client is opened with.
//! - `queue/`: the [`Queue`] trait, [`MemoryQueue`], and `disk/` the
//!   [`DiskQueue`] (its format in `disk/mod.rs` and `disk/segment.rs`).
//! - `engine/`: [`Client`] and the engine's tasks (`mod.rs`), the no-IO
//!   session state machine (`session.rs`), TCP/TLS and HELLO (`connect.rs`).
//! - `ffi/`: the C ABI (`c.rs`), the JNI binding (`java.rs`), and the JSON
//!   configuration both take (`options.rs`).
//! - `fuzzing.rs`: the fuzz target's harness (feature `fuzzing`).

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
