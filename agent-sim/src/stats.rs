//! Counters and histograms every agent updates while a run goes on.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

/// Shared by all agents of a run.
#[derive(Debug)]
pub struct Stats {
    /// Batches the agents made to send (open loop: the rate's; closed
    /// loop: as the window allowed).
    pub batches_offered: AtomicU64,
    /// BATCH frames written (resends included).
    pub batches_sent: AtomicU64,
    /// BATCH frames written again after RETRY, GOAWAY or a lost connection.
    pub resends: AtomicU64,
    /// Records in batches acked OK.
    pub records_acked: AtomicU64,
    /// Bytes written (preambles and every frame).
    pub bytes_sent: AtomicU64,
    /// ACK OK.
    pub acks_ok: AtomicU64,
    /// ACK RETRY.
    pub acks_retry: AtomicU64,
    /// ACK REJECTED.
    pub acks_rejected: AtomicU64,
    /// Completed connects (WELCOME received).
    pub connects: AtomicU64,
    /// Agents connected now.
    pub connected: AtomicI64,
    /// Errors by name (ERROR codes, connect_failed, disconnected, goaway).
    errors: Mutex<BTreeMap<String, u64>>,
    /// Errors so far, for the live view.
    pub error_count: AtomicU64,
    /// Intended send → ACK OK, microseconds: the whole run's, and the
    /// current second's (taken by the timeline's sampler).
    ack_latency: Mutex<(Histogram<u64>, Histogram<u64>)>,
    /// TCP connect → WELCOME, microseconds.
    connect_latency: Mutex<Histogram<u64>>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 10 minutes, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            batches_offered: AtomicU64::new(0),
            batches_sent: AtomicU64::new(0),
            resends: AtomicU64::new(0),
            records_acked: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            acks_ok: AtomicU64::new(0),
            acks_retry: AtomicU64::new(0),
            acks_rejected: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            connected: AtomicI64::new(0),
            errors: Mutex::new(BTreeMap::new()),
            error_count: AtomicU64::new(0),
            ack_latency: Mutex::new((histogram(), histogram())),
            connect_latency: Mutex::new(histogram()),
        }
    }
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, 600_000_000)
}

impl Stats {
    /// Counts one error by name.
    pub fn error(&self, name: &str) {
        *self
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_owned())
            .or_default() += 1;
        self.error_count.fetch_add(1, Ordering::Relaxed);
    }

    /// Records an ACK OK's latency.
    pub fn ack_latency(&self, d: Duration) {
        let mut both = self.ack_latency.lock().unwrap_or_else(|e| e.into_inner());
        let _ = both.0.record(micros(d));
        let _ = both.1.record(micros(d));
    }

    /// The ack latencies recorded since the last call (µs), for one point
    /// of the timeline.
    pub fn take_interval_ack_histogram(&self) -> Histogram<u64> {
        let mut both = self.ack_latency.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut both.1, histogram())
    }

    /// Records a connect's latency.
    pub fn connect_latency(&self, d: Duration) {
        let _ = self
            .connect_latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(micros(d));
    }

    /// Errors by name.
    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The ack latency histogram (µs).
    pub fn ack_histogram(&self) -> Histogram<u64> {
        self.ack_latency.lock().unwrap_or_else(|e| e.into_inner()).0.clone()
    }

    /// The connect latency histogram (µs).
    pub fn connect_histogram(&self) -> Histogram<u64> {
        self.connect_latency.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A counter's value.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
