//! Where items go: one sink per tenant, written to by the gateway with many
//! agents' batches at once (group commit).
//!
//! The contract is all or nothing: [`TenantSink::write`] returns `Ok` only
//! once every item it was given is durable, and ACK OK is sent only then.
//! On an error nothing of the call counts: the gateway answers ACK RETRY and
//! the agents resend, which is safe because an item's key is a pure function
//! of its record (AWP1.md §6), so a rewrite overwrites.

pub mod dynamodb;
pub mod null;
pub mod sqlite;

use std::future::Future;

use crate::item::Item;

/// Why a write failed. Either way the batches are answered with ACK RETRY.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    /// Throttling, a busy or locked store, IO: may succeed later.
    #[error("sink write failed, retryable: {0}")]
    Retryable(String),
    /// A configuration problem (a missing table, no permission, a corrupt
    /// file) that will not fix itself. Still answered with ACK RETRY (the
    /// agents keep their data), but logged loudly.
    #[error("sink write failed, fatal (check the configuration): {0}")]
    Fatal(String),
}

impl SinkError {
    /// Whether this is [`SinkError::Fatal`].
    pub fn is_fatal(&self) -> bool {
        matches!(self, SinkError::Fatal(_))
    }
}

/// One tenant's store.
pub trait TenantSink: Send + 'static {
    /// Stores all `items` durably, or returns an error; nothing partial
    /// counts. Writing an item whose (`device`, `rk`) is already stored
    /// replaces it, so a resent batch is stored once.
    fn write(&mut self, items: Vec<Item>) -> impl Future<Output = Result<(), SinkError>> + Send;
}
