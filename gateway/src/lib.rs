//! The AWP/1 ingestion gateway: agents connect over TCP or TLS, their frames
//! are decoded and checked, their batches are stored in the tenant's store,
//! and each BATCH is acknowledged only once its items are durable.
//!
//! # How data flows
//!
//! ```text
//!  agent ──TCP/TLS──▶ server (accept: a place among the connections waiting
//!                       │  to authenticate, TLS handshake deadline)
//!                       │
//!                       ▼
//!                     conn (IO loop: writes, timers, the wait for budget)
//!                       │  bytes ▲ frames
//!                       ▼        │
//!                     session (state machine, no IO; owns the read buffer):
//!                       │   preamble, HELLO + auth (tenant) + admission
//!                       │   (connection limits, one session per device), window,
//!                       │   heartbeats, BYE, GOAWAY, ERRORs;
//!                       │   BATCH → budget (bytes, before inflating; parks
//!                       │   and waits in line when short) → inflate →
//!                       │   awp_store::AcceptedBatch::accept (decode + check,
//!                       │   once) → ACK REJECTED, or Store { batch as bytes }
//!                       ▼
//!                     pipeline: one queue + writer per tenant; group commit:
//!                       │   an idle writer writes at once, batches arriving
//!                       │   meanwhile go into the next write (max_items /
//!                       │   max_bytes)
//!                       ▼
//!                     sink (factory: sink::open) renders each record from
//!                       │   the bytes: sqlite (JSON text, one WAL database
//!                       │   per tenant, synced at commit), dynamodb
//!                       │   (BatchWriteItem), null (renders, stores nothing);
//!                       │   a packed tenant's batch is one item instead
//!                       │   (awp_store::packed: zstd'd JSON lines)
//!                       ▼
//!                     outcome → conn → session → ACK OK (durable) / ACK RETRY;
//!                     the batch's budget is given back
//! ```
//!
//! `telemetry` names every metric; `admin` serves `/metrics`, `/healthz`,
//! `/readyz`, `POST /reload`; `reload` applies a configuration read again
//! (SIGHUP) without dropping agents, or refuses it whole; `config` reads and checks the TOML configuration; `inspect`
//! decodes a captured stream; `tables` creates DynamoDB tables; `export`
//! prints a tenant's records from either store and layout.
//! `docs/architecture.md` has the full picture and where each bound lives.
//!
//! The crate's surface is what the `gateway` binary and the tests need:
//! [`config`], [`start`] and [`RunningServer`], [`inspect`], [`tables`], and
//! the DynamoDB client and sink (for the sink benchmark). The storage mapping
//! (records to items, the SQLite layout, `rk`) is the `awp-store` crate.
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
#[cfg(any(test, feature = "fuzzing"))]
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
