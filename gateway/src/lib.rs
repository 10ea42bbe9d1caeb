//! The AWP/1 ingestion gateway: agents connect over TCP or TLS, their frames
//! are decoded and checked, their records become items, and each BATCH is
//! acknowledged only once its items are durable in the tenant's store.
//!
//! # How data flows
//!
//! ```text
//!  agent ──TCP/TLS──▶ server (accept, connection permit, TLS handshake deadline)
//!                       │
//!                       ▼
//!                     conn (IO loop: read buffer, write buffer, timers)
//!                       │  bytes ▲ frames
//!                       ▼        │
//!                     session (state machine, no IO): preamble, HELLO + auth
//!                       │   (tenant), window, heartbeats, BYE, GOAWAY, ERRORs;
//!                       │   BATCH → item::batch_items (decode + check + map,
//!                       │   one pass) → ACK REJECTED, or Store
//!                       ▼
//!                     pipeline: one bounded queue per tenant ── full → ACK RETRY
//!                       │   writer gathers many agents' batches
//!                       │   (max_items / max_bytes / max_delay)
//!                       ▼
//!                     sink (sqlite: one WAL database per tenant, synced at
//!                       │    commit; null: count only)
//!                       ▼
//!                     outcome → session → ACK OK (durable) / ACK RETRY
//! ```
//!
//! `admin` serves `/metrics`, `/healthz`, `/readyz`; `config` reads and
//! checks the TOML configuration; `inspect` decodes a captured stream.
//! `docs/architecture.md` has the full picture and where each bound lives.
#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod conn;
pub mod inspect;
pub mod item;
pub mod pipeline;
pub mod server;
pub mod session;
pub mod sink;
pub mod tables;
pub mod tenant;
pub mod tls;
