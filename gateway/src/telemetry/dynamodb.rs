//! A tenant's DynamoDB request metrics.

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};

use super::*;

/// One tenant's DynamoDB request metrics.
#[derive(Debug, Clone)]
pub struct DynamoMetrics {
    requests: Counter,
    items_written: Counter,
    unprocessed: Counter,
    retries: Counter,
    throttles: Counter,
    errors_throttled: Counter,
    errors_transient: Counter,
    errors_fatal: Counter,
    request_seconds: Histogram,
    inflight: Gauge,
}

/// How a DynamoDB request failed, for `awp_dynamodb_errors_total{type}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DynamoErrorKind {
    /// Throttled.
    Throttled,
    /// 5xx, timeout, connection.
    Transient,
    /// Will not succeed by retrying.
    Fatal,
}

impl DynamoMetrics {
    /// Handles labelled with `tenant`.
    pub fn new(tenant: &str) -> DynamoMetrics {
        global();
        let t = tenant.to_owned();
        let error =
            |kind: &'static str| metrics::counter!("awp_dynamodb_errors_total", "tenant" => t.clone(), "type" => kind);
        DynamoMetrics {
            errors_throttled: error("throttled"),
            errors_transient: error("transient"),
            errors_fatal: error("fatal"),
            requests: metrics::counter!("awp_dynamodb_requests_total", "tenant" => t.clone()),
            items_written: metrics::counter!("awp_dynamodb_items_written_total", "tenant" => t.clone()),
            unprocessed: metrics::counter!("awp_dynamodb_unprocessed_items_total", "tenant" => t.clone()),
            retries: metrics::counter!("awp_dynamodb_retries_total", "tenant" => t.clone()),
            throttles: metrics::counter!("awp_dynamodb_throttles_total", "tenant" => t.clone()),
            request_seconds: metrics::histogram!("awp_dynamodb_request_seconds", "tenant" => t.clone()),
            inflight: metrics::gauge!("awp_dynamodb_inflight_requests", "tenant" => t),
        }
    }

    /// A request is being sent.
    pub fn request_started(&self) {
        self.inflight.increment(1.0);
    }

    /// A request came back after `took`, `written` of its items written
    /// and `unprocessed` returned.
    pub fn request_done(&self, took: Duration, written: usize, unprocessed: usize) {
        self.inflight.decrement(1.0);
        self.request_seconds.record(took);
        self.requests.increment(1);
        self.items_written.increment(written as u64);
        self.unprocessed.increment(unprocessed as u64);
    }

    /// A request failed after `took`.
    pub fn request_failed(&self, took: Duration, kind: DynamoErrorKind) {
        self.inflight.decrement(1.0);
        self.request_seconds.record(took);
        self.requests.increment(1);
        match kind {
            DynamoErrorKind::Throttled => self.errors_throttled.increment(1),
            DynamoErrorKind::Transient => self.errors_transient.increment(1),
            DynamoErrorKind::Fatal => self.errors_fatal.increment(1),
        }
    }

    /// A request is being resent.
    pub fn retry(&self) {
        self.retries.increment(1);
    }

    /// DynamoDB throttled (an error or unprocessed items).
    pub fn throttled(&self) {
        self.throttles.increment(1);
    }
}
