//! What a connection is told while it waits: its batches' outcomes (from
//! the writers), that it was evicted while waiting to authenticate (from
//! the waiting pool), and that it must go away (from admission: a newer
//! session of its device, or a reload removed its tenant).
//!
//! One mailbox and one wake-up per connection, rather than a channel and a
//! signal for each sender: with a hundred thousand mostly idle agents,
//! every waiting future and allocation kept per connection counts. It holds
//! at most one outcome per batch in flight (`max_inflight`), and no
//! allocation at all while the connection is idle (a tokio channel would
//! keep a block of 32 slots for every connection).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;

use crate::pipeline::outcome::BatchOutcome;

/// A connection's mailbox; shared (in an `Arc`) with whoever tells it.
#[derive(Debug, Default)]
pub struct Mailbox {
    /// Each batch's seq and answer.
    outcomes: Mutex<Vec<(u64, BatchOutcome)>>,
    evicted: AtomicBool,
    told_to_go: AtomicBool,
    revoked: AtomicBool,
    arrived: Notify,
}

impl Mailbox {
    /// Batch `seq`'s answer.
    pub fn put(&self, seq: u64, outcome: BatchOutcome) {
        self.outcomes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((seq, outcome));
        self.arrived.notify_one();
    }

    /// The connection was evicted from the pool of connections waiting to
    /// authenticate.
    pub fn evict(&self) {
        self.evicted.store(true, Ordering::Release);
        self.arrived.notify_one();
    }

    /// The connection's session must go away (GOAWAY).
    pub fn tell_to_go(&self) {
        self.told_to_go.store(true, Ordering::Release);
        self.arrived.notify_one();
    }

    /// The session's credentials no longer authenticate (a reload revoked
    /// them): it must go away (GOAWAY).
    pub fn revoke(&self) {
        self.revoked.store(true, Ordering::Release);
        self.arrived.notify_one();
    }

    /// Whether the session's credentials were revoked since the last call.
    pub fn take_revoked(&self) -> bool {
        self.revoked.swap(false, Ordering::AcqRel)
    }

    /// Resolves when something may have arrived (something put in while
    /// nobody waited is remembered).
    pub async fn arrived(&self) {
        self.arrived.notified().await;
    }

    /// Every answer put in so far: (seq, answer).
    pub fn take(&self) -> Vec<(u64, BatchOutcome)> {
        std::mem::take(&mut *self.outcomes.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Wakes the next [`Mailbox::arrived`] again: for outcomes that came
    /// with another piece of mail that was handled first.
    pub fn put_back_wake(&self) {
        self.arrived.notify_one();
    }

    /// Whether the connection was evicted.
    pub fn was_evicted(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }

    /// Whether the session was told to go away since the last call.
    pub fn take_told_to_go(&self) -> bool {
        self.told_to_go.swap(false, Ordering::AcqRel)
    }

    /// Resolves once the connection is evicted.
    pub async fn evicted(&self) {
        while !self.was_evicted() {
            self.arrived().await;
        }
    }
}
