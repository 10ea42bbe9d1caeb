//! The AWP/1 ingestion gateway: agents connect over TCP or TLS, their frames
//! are decoded and checked, their batches are stored in the tenant's store,
//! and each BATCH is acknowledged only once its items are durable.
//!
//! # How data flows
//!
//! ```text
//!  agent ──TCP/TLS──▶ net::server (accept: a place among the connections
//!                       │  waiting to authenticate, PROXY header, TLS
//!                       │  handshake, each within its deadline)
//!                       ▼
//!                     net::conn (IO loop: reads, writes, timers, the wait
//!                       │  for budget, the mailbox; records the notes)
//!                       │  bytes ▲ frames, Store, notes
//!                       ▼        │
//!                     session (state machine, no IO, no metrics recorder):
//!                       │   preamble, HELLO → admit::tenant (authentication)
//!                       │   → admit::admission (connection limits, one
//!                       │   session per device); window, heartbeats, BYE,
//!                       │   GOAWAY, ERRORs; BATCH → admit::budget (bytes,
//!                       │   before inflating; parks when short) → inflate →
//!                       │   awp_store::AcceptedBatch::accept (decode + check,
//!                       │   once) → admit::quota → ACK REJECTED, or Store
//!                       ▼
//!                     pipeline: one queue + writer per tenant
//!                       │   (pipeline::writer: group commit, the health check
//!                       │   of a sink just opened, a refused batch isolated,
//!                       │   a reload's new sink taken between two writes)
//!                       ▼
//!                     sink (sink::open): sqlite/ (JSON text, one WAL
//!                       │   database per tenant), dynamodb/ (BatchWriteItem,
//!                       │   retries, adaptive concurrency), null; a packed
//!                       │   tenant's batch is one item (awp_store::packed)
//!                       ▼
//!                     pipeline::outcome (BatchOutcome, from the sink's
//!                     result) → pipeline::mailbox → conn → session → ACK OK
//!                     (durable) / RETRY / REJECTED; the budget given back
//! ```
//!
//! # Layout
//!
//! A folder per stage; each folder's `mod.rs` says what enters and leaves.
//!
//! - `net/`: listeners and connections (`server`, `conn`, `tls`,
//!   `proxy_protocol`, `read_buffer`); [`start`] is here.
//! - `session/`: the protocol as a state machine (`input`, `hello`,
//!   `batch`, `lifecycle`), its frame tests beside it (`*_test.rs`).
//! - `admit/`: who may connect and hold memory (`tenant`, `auth_failure`,
//!   `admission`, `quota`, `budget`).
//! - `pipeline/`: the writers (`writer`), the answer to a write
//!   (`outcome`) and how it reaches its connection (`mailbox`).
//! - `sink/`: one folder per store (`sqlite/`, `dynamodb/`), `null.rs`.
//! - `ops/`: the admin endpoint, tenant health, reload.
//! - `config/`: the TOML configuration by section, its checks
//!   (`validate`), what it means for the running parts (`settings`), what
//!   differs between two (`diff`), `example.toml`.
//! - `telemetry/`: the metric table and each stage's metrics, log
//!   sampling, process metrics.
//! - `cmd/`: the binary's other commands (`inspect`, `export`,
//!   `dev_certs`, `probe`).
//!
//! No import circle among these modules (a use of an ancestor aside), and
//! no file over 700 lines of code before its tests: `testkit/tests/layout.rs`
//! checks both. `docs/architecture.md` has the full picture.
//!
//! The crate's surface is what other crates use: the `gateway` binary
//! ([`config`], [`cmd`], [`start_with_source`], [`ConfigSource`]), the
//! tests and the sink benchmark ([`start`], [`RunningServer`], [`sink`]'s
//! DynamoDB client and sink), and, behind the `test-support` feature, the
//! fuzz targets (`fuzzing`). Everything else is private. The storage
//! mapping (records to items, the SQLite layout, `rk`) is the `awp-store`
//! crate.
#![forbid(unsafe_code)]
// Built without a store (the session fuzz target), the parts that only the
// stores use are unused; that build is not the product.
#![cfg_attr(
    not(all(feature = "dynamodb", feature = "sqlite")),
    allow(dead_code, unused_variables)
)]

mod admit;
pub mod cmd;
pub mod config;
mod files;
#[cfg(any(test, feature = "test-support"))]
#[doc(hidden)]
pub mod fuzzing;
mod net;
mod ops;
mod pipeline;
mod session;
pub mod sink;
mod telemetry;

pub use net::server::{RunningServer, start, start_with_source};
pub use ops::reload::ConfigSource;
