//! A tenant's metrics: its sink, its health, its writer's queue and writes.

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};

use super::*;

/// Which sink a tenant's records go to: `awp_tenant_sink{tenant, kind} 1`,
/// so a dashboard shows a tenant on the null sink.
pub fn tenant_sink(tenant: &str, kind: &'static str) {
    global();
    metrics::gauge!("awp_tenant_sink", "tenant" => tenant.to_owned(), "kind" => kind).set(1.0);
}

/// Whether a tenant is degraded (see `ops/health.rs`).
pub fn tenant_degraded(tenant: &str, degraded: bool) {
    global();
    metrics::gauge!("awp_tenant_degraded", "tenant" => tenant.to_owned()).set(if degraded { 1.0 } else { 0.0 });
}

/// One tenant's pipeline and sink metrics.
#[derive(Debug, Clone)]
pub struct TenantMetrics {
    budget_used: Gauge,
    queue_depth: Gauge,
    queue_expired: Counter,
    batch_durable: Histogram,
    write_seconds: Histogram,
    write_items: Histogram,
    writes_ok: Counter,
    writes_failed: Counter,
    items_written: Counter,
    batches_refused: Counter,
}

impl TenantMetrics {
    /// Handles labelled with `tenant`.
    pub fn new(tenant: &str) -> TenantMetrics {
        global();
        let t = tenant.to_owned();
        TenantMetrics {
            budget_used: metrics::gauge!("awp_budget_used_bytes", "tenant" => t.clone()),
            queue_depth: metrics::gauge!("awp_queue_depth", "tenant" => t.clone()),
            queue_expired: metrics::counter!("awp_queue_expired_total", "tenant" => t.clone()),
            batch_durable: metrics::histogram!("awp_batch_durable_seconds", "tenant" => t.clone()),
            write_seconds: metrics::histogram!("awp_sink_write_seconds", "tenant" => t.clone()),
            write_items: metrics::histogram!("awp_sink_write_items", "tenant" => t.clone()),
            writes_ok: metrics::counter!("awp_sink_writes_total", "tenant" => t.clone(), "outcome" => "ok"),
            writes_failed: metrics::counter!("awp_sink_writes_total", "tenant" => t.clone(), "outcome" => "error"),
            batches_refused: metrics::counter!("awp_batches_refused_total", "tenant" => t.clone()),
            items_written: metrics::counter!("awp_items_written_total", "tenant" => t),
        }
    }

    /// Budget held by the tenant's batches now.
    pub fn budget_used(&self, bytes: usize) {
        self.budget_used.set(bytes as f64);
    }

    /// Batches waiting for the writer now.
    pub fn queue_depth(&self, batches: usize) {
        self.queue_depth.set(batches as f64);
    }

    /// Batches dropped from the queue (ACK RETRY) for waiting too long.
    pub fn queue_expired(&self, batches: usize) {
        self.queue_expired.increment(batches as u64);
    }

    /// A sink write of `items` items ended after `took`.
    pub fn write_done(&self, items: usize, took: Duration, ok: bool) {
        self.write_seconds.record(took);
        self.write_items.record(items as f64);
        if ok {
            self.writes_ok.increment(1);
            self.items_written.increment(items as u64);
        } else {
            self.writes_failed.increment(1);
        }
    }

    /// The store refused a batch (answered ACK REJECTED).
    pub fn batch_refused(&self) {
        self.batches_refused.increment(1);
    }

    /// A batch was answered after `waited` since it was queued.
    pub fn batch_durable(&self, waited: Duration) {
        self.batch_durable.record(waited);
    }
}
