//! `[pipeline]` and `[sink]`: batching, the memory budget, the writers'
//! timings, and where records are stored.

use std::path::PathBuf;

use std::time::Duration;

use serde::Deserialize;

/// `[pipeline]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// The most items (records) in one sink write.
    pub max_items: usize,
    /// The most inflated batch bytes in one sink write.
    pub max_bytes: usize,
    /// How long a writer waits for more batches before a write; 0 (the
    /// default) writes at once, and batches that arrive during a write go
    /// into the next (group commit without a timer).
    #[serde(
        rename = "linger_ms",
        alias = "max_delay_ms",
        deserialize_with = "super::units::millis"
    )]
    pub linger: Duration,
    /// A sink write that takes longer fails (and its batches get ACK RETRY);
    /// a batch that waited longer than this in the queue gets ACK RETRY
    /// without being written.
    #[serde(rename = "write_timeout_ms", deserialize_with = "super::units::millis")]
    pub write_timeout: Duration,
    /// The memory budget: inflated bytes (plus a small per-batch overhead)
    /// of all the batches held from decoding until their write completes.
    pub budget_bytes: usize,
    /// The share of `budget_bytes` one tenant's batches may hold, percent.
    pub tenant_budget_percent: u8,
    /// How long a BATCH may wait for budget before it gets ACK RETRY.
    #[serde(rename = "budget_wait_ms", deserialize_with = "super::units::millis")]
    pub budget_wait: Duration,
    /// A tenant whose sink has failed every write for this long is
    /// degraded (`/readyz` 503, `awp_tenant_degraded`); 0 turns this off.
    #[serde(rename = "unhealthy_after_ms", deserialize_with = "super::units::millis")]
    pub unhealthy_after: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            max_items: 20_000,
            max_bytes: 8 << 20,
            linger: Duration::from_millis(0),
            write_timeout: Duration::from_millis(10_000),
            budget_bytes: 256 << 20,
            tenant_budget_percent: 50,
            budget_wait: Duration::from_millis(10_000),
            unhealthy_after: Duration::from_millis(60_000),
        }
    }
}

impl PipelineConfig {
    /// One tenant's share of the budget, bytes.
    pub fn tenant_budget_bytes(&self) -> usize {
        (self.budget_bytes as u128 * u128::from(self.tenant_budget_percent) / 100) as usize
    }
}

/// `[sink]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// `sqlite` (one database per tenant under `data_dir`), `dynamodb` (each
    /// tenant's `[tenants.dynamodb]` table) or `null` (benchmarks).
    pub kind: SinkKind,
    /// Where the SQLite databases live.
    pub data_dir: PathBuf,
    /// The null sink acknowledges every batch and stores nothing: it is
    /// refused unless this is set (benchmarks).
    pub allow_null: bool,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            kind: SinkKind::Sqlite,
            data_dir: PathBuf::from("data"),
            allow_null: false,
        }
    }
}

/// The sink records go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// One SQLite database per tenant.
    Sqlite,
    /// Render items, store nothing, acknowledge everything (benchmarks;
    /// needs `sink.allow_null`).
    Null,
    /// The tenant's DynamoDB table (`[tenants.dynamodb]`).
    Dynamodb,
}

impl SinkKind {
    /// The name in configuration and metrics.
    pub fn name(self) -> &'static str {
        match self {
            SinkKind::Sqlite => "sqlite",
            SinkKind::Null => "null",
            SinkKind::Dynamodb => "dynamodb",
        }
    }
}
