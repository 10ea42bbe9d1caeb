//! A sink that stores nothing: it counts items and answers `Ok`.
//!
//! For benchmarks: the items were already built (decoded, checked, mapped)
//! by the time they reach a sink, so a run against it measures the gateway's
//! own cost without a store's. Never use it where data matters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{SinkError, TenantSink};
use crate::item::Item;

/// Counts the items written to it and drops them.
#[derive(Clone, Debug, Default)]
pub struct NullSink {
    counter: Arc<AtomicU64>,
}

impl NullSink {
    /// A sink and a handle on its counter (shared by clones of the sink).
    pub fn new() -> (NullSink, Arc<AtomicU64>) {
        let sink = NullSink::default();
        let counter = Arc::clone(&sink.counter);
        (sink, counter)
    }

    /// How many items were written so far.
    pub fn written(&self) -> u64 {
        self.counter.load(Ordering::Relaxed)
    }
}

impl TenantSink for NullSink {
    async fn write(&mut self, items: Vec<Item>) -> Result<(), SinkError> {
        self.counter.fetch_add(items.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::tests::mixed_kinds_items;

    #[tokio::test]
    async fn counts_items() {
        let (mut sink, counter) = NullSink::new();
        let items = mixed_kinds_items();
        let n = items.len() as u64;
        sink.write(items.clone()).await.unwrap();
        sink.write(Vec::new()).await.unwrap();
        sink.clone().write(items).await.unwrap();
        assert_eq!(sink.written(), 2 * n);
        assert_eq!(counter.load(Ordering::Relaxed), 2 * n);
    }
}
