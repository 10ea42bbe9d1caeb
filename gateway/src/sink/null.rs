//! A sink that stores nothing: it renders every item and answers `Ok`.
//!
//! For benchmarks: each record is decoded again and rendered into its
//! DynamoDB JSON, in a scratch buffer that is then thrown away, exactly the
//! work the SQLite sink does before it hands the text to SQLite. So a run
//! against it measures everything the gateway does but the store's own
//! work. Never use it where data matters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use awp_store::{AcceptedBatch, JsonItems};

use super::{SinkError, TenantSink};

/// Renders and counts the items written to it, and drops them.
#[derive(Debug, Default)]
pub struct NullSink {
    counter: Arc<AtomicU64>,
    json: JsonItems,
}

impl NullSink {
    /// A sink and a handle on its counter.
    pub fn new() -> (NullSink, Arc<AtomicU64>) {
        let sink = NullSink::default();
        let counter = Arc::clone(&sink.counter);
        (sink, counter)
    }
}

impl TenantSink for NullSink {
    async fn write(&mut self, batches: Vec<AcceptedBatch>) -> Result<(), SinkError> {
        let mut items = 0u64;
        let mut bytes = 0usize;
        for batch in &batches {
            self.json.render::<SinkError>(batch, |item| {
                items += 1;
                bytes += item.json.len();
                Ok(())
            })?;
        }
        // The rendered text must not be optimised away.
        std::hint::black_box(bytes);
        self.counter.fetch_add(items, Ordering::Relaxed);
        Ok(())
    }

    /// Nothing was stored.
    async fn discard(&mut self, _batch: &AcceptedBatch) -> Result<(), SinkError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::tests::mixed_kinds_batch;

    #[tokio::test]
    async fn renders_and_counts_items() {
        let (mut sink, counter) = NullSink::new();
        let batch = mixed_kinds_batch();
        let n = u64::from(batch.record_count());
        sink.write(vec![batch.clone()]).await.unwrap();
        sink.write(Vec::new()).await.unwrap();
        sink.write(vec![batch.clone(), batch]).await.unwrap();
        assert_eq!(counter.load(Ordering::Relaxed), 3 * n);
    }
}
