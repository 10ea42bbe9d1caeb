//! A tenant's writer: one task that takes the tenant's queue in group
//! commits (an idle writer writes at once; batches arriving meanwhile go
//! into the next write, up to `max_items`/`max_bytes`), answers each batch
//! from its sink's result, isolates a batch the store refuses for its
//! content, takes a new sink between two writes, and is restarted with
//! backoff when it panics.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use awp_store::AcceptedBatch;
use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};

use crate::admit::budget::BudgetPermit;
use crate::admit::tenant::Tenant;
use crate::config::PipelineConfig;
use crate::ops::health::TenantHealth;
use crate::pipeline::mailbox::Mailbox;
use crate::pipeline::outcome::BatchOutcome;
use crate::sink::{SinkError, TenantSink};
use crate::telemetry::TenantMetrics;

/// A queued batch and what answering it takes.
pub(super) struct Submission {
    pub(super) batch: AcceptedBatch,
    pub(super) waiter: Waiter,
}

/// A submission after its batch went to the sink: what answering it takes.
pub(super) struct Waiter {
    pub(super) seq: u64,
    /// Taken when the answer is given: a batch is answered once.
    pub(super) reply: Option<Arc<Mailbox>>,
    pub(super) queued_at: Instant,
    /// Given back when the waiter is dropped: once the batch's bytes are no
    /// longer held, which for a write that ran late is after it ended, not
    /// when its batches were answered.
    pub(super) _permit: BudgetPermit,
}

impl Drop for Waiter {
    /// A batch dropped unanswered (its writer panicked, the pipeline shut
    /// down) is answered ACK RETRY, so its agent resends instead of waiting.
    fn drop(&mut self) {
        if let Some(reply) = self.reply.take() {
            reply.put(self.seq, BatchOutcome::storage_unavailable());
        }
    }
}

impl Waiter {
    pub(super) fn answer(&mut self, result: &Result<(), SinkError>, metrics: &TenantMetrics) {
        let Some(reply) = self.reply.take() else { return };
        metrics.batch_durable(self.queued_at.elapsed());
        // Put in even if the connection is gone: the answer goes with it.
        reply.put(self.seq, BatchOutcome::of(result));
    }
}

/// A new sink for a running writer, taken between two writes.
pub(super) struct Swap<S> {
    pub(super) tenant: Arc<Tenant>,
    pub(super) sink: S,
    /// Told once the writer writes to the new sink only.
    pub(super) done: oneshot::Sender<()>,
}

/// How long a writer waits before it starts again after a panic: doubling
/// from the first to the last.
pub(super) const RESTART_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(30));

/// How often an idle writer asks its store's health check again after a
/// failure that may pass.
pub(super) const RECHECK_AFTER: Duration = Duration::from_secs(5);

/// How many times a health check may be cut short by a batch to write
/// before the writer leaves the telling to its writes.
const CHECK_ATTEMPTS: u8 = 3;

/// One tenant's writer.
pub(super) struct Writer<S> {
    /// The tenant as its store was last configured (a reopen after a panic
    /// opens this one's).
    pub(super) tenant: Arc<Tenant>,
    pub(super) config: PipelineConfig,
    pub(super) rx: mpsc::UnboundedReceiver<Submission>,
    /// New sinks from reloads; `None` once the pipeline dropped its end.
    pub(super) swaps: Option<mpsc::UnboundedReceiver<Swap<S>>>,
    pub(super) metrics: TenantMetrics,
    pub(super) health: Arc<TenantHealth>,
}

/// What a writer's wait between writes ended with.
pub(super) enum Next<S> {
    Batch(Submission),
    Swap(Swap<S>),
    /// The queue closed: the tenant was removed, or the gateway is stopping.
    Closed,
}

impl<S: TenantSink> Writer<S> {
    /// Runs the writer until its queue closes; after a panic, opens the sink
    /// again (`reopen`, with the tenant's latest configuration) and goes on,
    /// with backoff, answering the batches that arrive meanwhile ACK RETRY.
    pub(super) async fn supervise<Reopen, Opening>(mut self, mut sink: S, mut reopen: Reopen)
    where
        Reopen: FnMut(&Arc<Tenant>) -> Opening,
        Opening: Future<Output = Result<S, SinkError>>,
    {
        let mut backoff = RESTART_BACKOFF.0;
        loop {
            match AssertUnwindSafe(self.run(&mut sink)).catch_unwind().await {
                // The queue closed: the gateway is shutting down.
                Ok(()) => return,
                Err(panic) => {
                    let why = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".to_owned());
                    tracing::error!(tenant = %self.tenant.id, panic = %why, "the sink writer failed; restarting it");
                    self.health.down(format!("the writer panicked: {why}"));
                }
            }
            sink = loop {
                match self.wait_down(backoff).await {
                    Down::Closed => return,
                    Down::Swapped(swap) => {
                        // A reload's new sink is as good as a reopened one.
                        self.tenant = swap.tenant;
                        let _ = swap.done.send(());
                        break swap.sink;
                    }
                    Down::Elapsed => {}
                }
                backoff = (backoff * 2).min(RESTART_BACKOFF.1);
                match reopen(&self.tenant).await {
                    Ok(sink) => break sink,
                    Err(e) => {
                        tracing::error!(tenant = %self.tenant.id, error = %e.report(), "cannot open the sink again");
                        self.health.down(format!("cannot open the sink: {}", e.report()));
                    }
                }
            };
            self.health.up();
        }
    }

    /// Waits `pause` while the writer is down, answering whatever arrives
    /// ACK RETRY.
    pub(super) async fn wait_down(&mut self, pause: Duration) -> Down<S> {
        let until = tokio::time::Instant::now() + pause;
        let down = Err(SinkError::retryable("the storage writer is restarting"));
        loop {
            let next = tokio::time::timeout_at(until, self.next()).await;
            match next {
                Ok(Next::Batch(s)) => self.answer(&mut [waiter(s)], &down),
                Ok(Next::Swap(swap)) => return Down::Swapped(swap),
                Ok(Next::Closed) => return Down::Closed,
                Err(_) => return Down::Elapsed,
            }
        }
    }

    /// The next batch, or a new sink (which goes first: batches queued
    /// before a reload are written to the tenant's store as it is now).
    pub(super) async fn next(&mut self) -> Next<S> {
        loop {
            let Some(swaps) = &mut self.swaps else {
                return self.rx.recv().await.map_or(Next::Closed, Next::Batch);
            };
            tokio::select! {
                biased;
                swap = swaps.recv() => match swap {
                    Some(swap) => return Next::Swap(swap),
                    None => self.swaps = None,
                },
                batch = self.rx.recv() => return batch.map_or(Next::Closed, Next::Batch),
            }
        }
    }

    /// Takes a reload's new sink: the old one is dropped, and written no more.
    pub(super) fn take_swap(&mut self, sink: &mut S, swap: Swap<S>) {
        *sink = swap.sink;
        self.tenant = swap.tenant;
        tracing::info!(tenant = %self.tenant.id, "the writer moved to the tenant's new store");
        let _ = swap.done.send(());
    }

    /// Takes the answer of a sink's health check (`TenantSink::health_check`,
    /// asked of a sink just opened), so that a store that cannot work (a
    /// missing table, keys that do not fit, an endpoint that does not
    /// answer) shows in the tenant's health from start-up or the reload on,
    /// not from the first failed write. Returns when to ask again: after a
    /// failure that may pass (throttling, no answer), so that a tenant
    /// without traffic is not left degraded by one bad moment.
    fn checked(&mut self, answer: Result<(), SinkError>) -> Option<tokio::time::Instant> {
        match answer {
            Ok(()) => {
                self.health.write_ok();
                None
            }
            Err(e @ SinkError::Fatal { .. }) => {
                tracing::error!(tenant = %self.tenant.id, error = %e.report(), "the tenant's store failed its health check: its batches will get ACK RETRY until it works");
                self.health.write_failed(&e.report());
                None
            }
            Err(e) => {
                tracing::warn!(tenant = %self.tenant.id, error = %e.report(), "the tenant's store failed its health check; asking again");
                self.health.write_failed(&e.report());
                Some(tokio::time::Instant::now() + RECHECK_AFTER)
            }
        }
    }

    pub(super) async fn run(&mut self, sink: &mut S) {
        let write_timeout = self.config.write_timeout;
        let mut gathered = Vec::new();
        // A sink just opened (or swapped in) is checked while nothing is
        // waiting to be written: a batch that arrives first is written first,
        // and the check is asked again the next time the writer is idle, a
        // few times at most (a busy writer's writes tell the same).
        let mut check_at = Some(tokio::time::Instant::now());
        let mut interrupted = 0u8;
        loop {
            let next = match check_at {
                Some(at) if interrupted < CHECK_ATTEMPTS => {
                    tokio::select! {
                        biased;
                        next = self.next() => {
                            if tokio::time::Instant::now() >= at {
                                interrupted += 1;
                            }
                            next
                        }
                        answer = async {
                            tokio::time::sleep_until(at).await;
                            health_check(sink, write_timeout).await
                        } => {
                            interrupted = 0;
                            check_at = self.checked(answer);
                            continue;
                        }
                    }
                }
                _ => self.next().await,
            };
            let first = match next {
                Next::Batch(first) => first,
                Next::Swap(swap) => {
                    self.take_swap(sink, swap);
                    check_at = Some(tokio::time::Instant::now());
                    interrupted = 0;
                    continue;
                }
                Next::Closed => return,
            };
            self.gather(first, &mut gathered).await;
            if gathered.is_empty() {
                continue;
            }
            let items: usize = gathered.iter().map(|s| s.batch.record_count() as usize).sum();
            let (batches, mut waiters): (Vec<AcceptedBatch>, Vec<Waiter>) = gathered.drain(..).map(split).unzip();
            // Kept (cheap clones) to write one at a time if the store refuses them.
            let copies = batches.clone();
            let started = Instant::now();
            // In a block: the write borrows the sink until it is dropped.
            let result = {
                let mut write = std::pin::pin!(sink.write(batches));
                match tokio::time::timeout(write_timeout, &mut write).await {
                    Ok(r) => r,
                    Err(_) => {
                        // Answer now (the agents resend), but let the write finish
                        // before the next one starts: an abandoned write would keep
                        // running beside it, and a stuck store would pile them up.
                        // Batches queued meanwhile are answered RETRY at once.
                        let late = Err(SinkError::retryable(format!(
                            "sink write took over {} ms",
                            write_timeout.as_millis()
                        )));
                        self.answer(&mut waiters, &late);
                        let busy = Err(SinkError::retryable("sink busy with a late write"));
                        loop {
                            tokio::select! {
                                finished = &mut write => {
                                    tracing::warn!(tenant = %self.tenant.id, ok = finished.is_ok(), "a timed-out sink write finished");
                                    break;
                                }
                                next = self.rx.recv() => match next {
                                    Some(s) => self.answer(&mut [waiter(s)], &busy),
                                    None => {
                                        let _ = (&mut write).await;
                                        break;
                                    }
                                },
                            }
                        }
                        late
                    }
                }
            };
            self.metrics.write_done(items, started.elapsed(), result.is_ok());
            match &result {
                Ok(()) => {
                    // The store works: no check needed to say so.
                    check_at = None;
                    self.health.write_ok();
                }
                Err(e @ (SinkError::Refused { .. } | SinkError::Unstorable(_))) => {
                    tracing::warn!(tenant = %self.tenant.id, batches = copies.len(), error = %e.report(), "a write was refused; writing its batches one at a time");
                    self.isolate(sink, copies, &mut waiters).await;
                }
                Err(e) => {
                    self.health.write_failed(&e.report());
                    tracing::warn!(tenant = %self.tenant.id, items, error = %e.report(), "sink write failed; batches get ACK RETRY");
                }
            }
            // Batches answered already (a late write, a refused one) keep that answer.
            self.answer(&mut waiters, &result);
        }
    }

    /// Writes the batches of a refused write one at a time and answers
    /// each: stored (OK), refused for its own content (REJECTED, once its
    /// stored part is removed), or anything else (RETRY); see the module
    /// doc for who is at fault. Bounded by one write timeout for the
    /// writes, and one for asking the store: batches not tried by then get
    /// ACK RETRY.
    pub(super) async fn isolate(&mut self, sink: &mut S, batches: Vec<AcceptedBatch>, waiters: &mut [Waiter]) {
        let write_timeout = self.config.write_timeout;
        let deadline = tokio::time::Instant::now() + write_timeout;
        let mut results = Vec::with_capacity(batches.len());
        for batch in &batches {
            let result = match tokio::time::timeout_at(deadline, sink.write(vec![batch.clone()])).await {
                Ok(result) => result,
                Err(_) => Err(SinkError::retryable(format!(
                    "writing a refused write's batches one at a time took over {} ms",
                    write_timeout.as_millis()
                ))),
            };
            results.push(result);
        }
        // Whether the store takes well-formed items: known if it took one
        // of these, else asked once, when a batch it refused needs it.
        let mut store_takes_items: Option<Result<(), SinkError>> = results.iter().any(Result::is_ok).then_some(Ok(()));
        if store_takes_items.is_some() {
            self.health.write_ok();
        }
        for ((batch, waiter), result) in batches.iter().zip(waiters.iter_mut()).zip(results) {
            let result = match result {
                // Nothing of it was sent: nothing to remove.
                Err(SinkError::Unstorable(reason)) => {
                    self.refused(batch, &reason);
                    Err(SinkError::Unstorable(reason))
                }
                Err(SinkError::Refused { what: reason, cause }) => {
                    let sound = match &store_takes_items {
                        Some(known) => known.clone(),
                        None => {
                            let asked = match tokio::time::timeout(write_timeout, sink.probe()).await {
                                Ok(answer) => answer,
                                Err(_) => Err(SinkError::retryable("the store did not answer a probe in time")),
                            };
                            match &asked {
                                Err(e @ SinkError::Fatal { .. }) => {
                                    tracing::error!(tenant = %self.tenant.id, error = %e.report(), refused = %reason, "the store did not take a well-formed item: the refused batch gets ACK RETRY");
                                    self.health.write_failed(&e.report());
                                }
                                // Throttled, a timeout: no answer either way; RETRY.
                                Err(e) => {
                                    tracing::warn!(tenant = %self.tenant.id, error = %e.report(), refused = %reason, "the store did not answer a probe: the refused batch gets ACK RETRY")
                                }
                                Ok(()) => {}
                            }
                            store_takes_items = Some(asked.clone());
                            asked
                        }
                    };
                    match sound {
                        Ok(()) => match sink.discard(batch).await {
                            Ok(()) => {
                                self.refused(batch, &reason);
                                Err(SinkError::Refused { what: reason, cause })
                            }
                            // Part of it may still be stored: the agent must resend.
                            Err(e) => Err(e),
                        },
                        Err(e) => Err(e),
                    }
                }
                other => other,
            };
            waiter.answer(&result, &self.metrics);
        }
    }

    /// Counts and logs a batch answered ACK REJECTED, with its answer.
    pub(super) fn refused(&self, batch: &AcceptedBatch, reason: &str) {
        self.metrics.batch_refused();
        let BatchOutcome::Rejected(answer) = BatchOutcome::of(&Err(SinkError::refused(reason))) else {
            return;
        };
        tracing::warn!(tenant = %self.tenant.id, device = %batch.device_id(), seq = batch.seq(), answer = %answer, "a batch the store cannot take: ACK REJECTED");
    }

    /// Gathers `first` and whatever else is queued, up to the write limits;
    /// with a linger, waits that long for more first. Batches that waited
    /// in the queue past the write timeout are answered ACK RETRY instead.
    pub(super) async fn gather(&mut self, first: Submission, gathered: &mut Vec<Submission>) {
        let max_wait = self.config.write_timeout;
        let linger_until = (!self.config.linger.is_zero()).then(|| tokio::time::Instant::now() + self.config.linger);
        let (mut items, mut bytes) = (0usize, 0usize);
        let mut expired = Vec::new();
        let mut next = Some(first);
        loop {
            if let Some(s) = next.take() {
                if s.waiter.queued_at.elapsed() > max_wait {
                    expired.push(waiter(s));
                } else {
                    items += s.batch.record_count() as usize;
                    bytes += s.batch.content_len();
                    gathered.push(s);
                }
            }
            if items >= self.config.max_items || bytes >= self.config.max_bytes {
                break;
            }
            match self.rx.try_recv() {
                Ok(s) => next = Some(s),
                Err(_) => match linger_until {
                    Some(until) => match tokio::time::timeout_at(until, self.rx.recv()).await {
                        Ok(Some(s)) => next = Some(s),
                        _ => break,
                    },
                    None => break,
                },
            }
        }
        self.metrics.queue_depth(self.rx.len());
        if !expired.is_empty() {
            self.metrics.queue_expired(expired.len());
            let message = format!("waited over {} ms for the store", max_wait.as_millis());
            self.answer(&mut expired, &Err(SinkError::retryable(message)));
        }
    }

    pub(super) fn answer(&self, waiters: &mut [Waiter], result: &Result<(), SinkError>) {
        for w in waiters {
            w.answer(result, &self.metrics);
        }
    }
}

/// How a writer's wait while down ended.
pub(super) enum Down<S> {
    Elapsed,
    Swapped(Swap<S>),
    Closed,
}

/// A submission's batch, for the sink, and what answering it takes.
fn split(s: Submission) -> (AcceptedBatch, Waiter) {
    (s.batch, s.waiter)
}

fn waiter(s: Submission) -> Waiter {
    split(s).1
}

/// A sink's health check, within `within`.
async fn health_check<S: TenantSink>(sink: &mut S, within: Duration) -> Result<(), SinkError> {
    match tokio::time::timeout(within, sink.health_check()).await {
        Ok(answer) => answer,
        Err(_) => Err(SinkError::retryable(
            "the store did not answer its health check in time",
        )),
    }
}
