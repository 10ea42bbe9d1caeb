//! agent-sim: the load simulator that proves a gateway's capacity and that
//! no acknowledged record is lost.
//!
//! # How a run flows
//!
//! ```text
//!  scenario (flags / TOML) ──▶ templates: PreparedBatch × N (encoded once)
//!        │
//!        ▼
//!  run: agents spawned at ramp_per_s, each on its own connection ──▶ gateway
//!        │   agent: preamble + HELLO (token or client cert) → WELCOME
//!        │          window of batches (template + seq), one write per window
//!        │          ACK OK → acked; RETRY → resend after retry_after_ms;
//!        │          GOAWAY / drop / churn / storm → reconnect, resend unacked
//!        │          PING after a heartbeat of silence; BYE at the end
//!        │   sampler: one timeline point a second, live progress bar, storms
//!        ▼
//!  Report (counts, HDR latency percentiles, timeline, CPU/RSS)
//!        │                       ──▶ report.txt / report.json / report.html
//!        ▼
//!  verify (optional): every acked record read back from SQLite or DynamoDB
//!                     and compared with the items the storage mapping
//!                     (awp-store, which the gateway's sinks use) renders
//! ```
#![forbid(unsafe_code)]

pub mod agent;
pub mod report;
pub mod run;
pub mod scenario;
pub mod stats;
pub mod tls;
pub mod verify;
