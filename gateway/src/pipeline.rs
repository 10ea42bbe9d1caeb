//! From sessions to sinks: one queue and one writer task per tenant.
//!
//! A session hands a checked batch ([`AcceptedBatch`], its records still as
//! bytes) with its memory-budget permit to [`Pipeline::submit`]. The queue
//! needs no bound of its own: every entry holds its permit, so the tenant's
//! share of the budget bounds it in bytes (and, with the per-batch
//! overhead, in entries).
//!
//! Each writer commits in groups without a timer: an idle writer writes the
//! first batch at once; batches that arrive while a write is in flight are
//! gathered into the next write, up to `max_items` items or `max_bytes`
//! inflated bytes (with an optional `linger_ms` to wait for more). One sink
//! call (one SQLite transaction, one group of BatchWriteItem requests)
//! stores them all; then every batch is answered to its connection
//! ([`crate::mailbox::Mailbox`]) and its budget is given back. A batch that waited in
//! the queue longer than `write_timeout_ms` is answered ACK RETRY without
//! being written, so under overload no agent waits more than about twice
//! that for an answer. A tenant's writer only ever waits on its own sink,
//! so one tenant's trouble does not stall the others.
//!
//! When the store refuses a write's items ([`SinkError::Refused`]: a value
//! DynamoDB will not take), the writer writes its batches again one at a
//! time: the others are stored, and the one at fault is answered ACK
//! REJECTED (after whatever part of it was stored is removed), so one bad
//! batch cannot keep a tenant's good ones out. A refusal counts as the
//! batch's fault only when the store took another batch of the same write
//! meanwhile; otherwise it may be the store's (a table whose keys do not
//! match), and the batches get ACK RETRY. (A batch refused alone is retried
//! until it shares a write with others, which is soon for any active
//! tenant.)
//!
//! A writer that panics is restarted with backoff, with its sink opened
//! again; the batches it held are answered ACK RETRY (a batch's answer is
//! given when it is dropped unanswered), and so are the batches that arrive
//! while it is down. Its tenant is degraded meanwhile (`health.rs`).

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use awp_store::AcceptedBatch;
use futures_util::FutureExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::budget::BudgetPermit;
use crate::config::{PipelineConfig, SinkConfig};
use crate::health::{Health, TenantHealth};
use crate::mailbox::Mailbox;
use crate::sink::{self, SinkError, TenantSink};
use crate::telemetry::TenantMetrics;
use crate::tenant::{Tenant, Tenants};

/// The outcome of one submitted batch.
pub type WriteResult = Result<(), SinkError>;

/// A batch's answer, sent to its connection.
#[derive(Debug)]
pub struct Outcome {
    /// The batch's seq.
    pub seq: u64,
    /// Whether it is durable.
    pub result: WriteResult,
}

/// Why a batch was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// No writer for the tenant (shutting down, or not configured).
    #[error("no writer for this tenant")]
    Closed,
}

/// A queued batch and what answering it takes.
struct Submission {
    batch: AcceptedBatch,
    waiter: Waiter,
}

/// A submission after its batch went to the sink: what answering it takes.
struct Waiter {
    seq: u64,
    /// Taken when the answer is given: a batch is answered once.
    reply: Option<Arc<Mailbox>>,
    queued_at: Instant,
    /// Given back when the waiter is dropped: once the batch's bytes are no
    /// longer held, which for a write that ran late is after it ended, not
    /// when its batches were answered.
    _permit: BudgetPermit,
}

impl Drop for Waiter {
    /// A batch dropped unanswered (its writer panicked, the pipeline shut
    /// down) is answered ACK RETRY, so its agent resends instead of waiting.
    fn drop(&mut self) {
        if let Some(reply) = self.reply.take() {
            reply.put(Outcome {
                seq: self.seq,
                result: Err(SinkError::Retryable("the storage writer stopped".into())),
            });
        }
    }
}

impl Waiter {
    fn answer(&mut self, result: &WriteResult, metrics: &TenantMetrics) {
        let Some(reply) = self.reply.take() else { return };
        metrics.batch_durable(self.queued_at.elapsed());
        // Put in even if the connection is gone: the answer goes with it.
        reply.put(Outcome {
            seq: self.seq,
            result: result.clone(),
        });
    }
}

/// The per-tenant queues. Cloning shares them.
#[derive(Clone)]
pub struct Pipeline {
    /// Each tenant's queue; a reload swaps in a new map, and a writer ends
    /// once its queue is in no map and no `submit` holds it.
    queues: Arc<ArcSwap<HashMap<String, mpsc::UnboundedSender<Submission>>>>,
    writers: Arc<Mutex<JoinSet<()>>>,
    sink_config: SinkConfig,
    config: PipelineConfig,
    health: Arc<Health>,
}

/// The writer tasks; awaited at shutdown once the queues are closed.
pub struct Writers {
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl Writers {
    /// Waits until every writer has written what was queued (the queues
    /// close when [`Pipeline::close`] is called and the last `Pipeline` is
    /// dropped), or the deadline passes.
    pub async fn drain(self, deadline: Duration) -> bool {
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        tokio::time::timeout(deadline, async { while tasks.join_next().await.is_some() {} })
            .await
            .is_ok()
    }
}

/// A tenant's sink, opened and ready for a writer ([`Pipeline::open`]).
pub struct OpenedSink {
    tenant: Arc<Tenant>,
    sink: sink::Sink,
}

impl Pipeline {
    /// Opens each tenant's sink (failing at once if one cannot be) and
    /// starts its writer, which reports to `health`.
    pub async fn start(
        tenants: &Tenants,
        sink_config: &SinkConfig,
        config: &PipelineConfig,
        health: &Arc<Health>,
    ) -> Result<(Pipeline, Writers), SinkError> {
        let writers = Arc::new(Mutex::new(JoinSet::new()));
        let pipeline = Pipeline {
            queues: Arc::default(),
            writers: writers.clone(),
            sink_config: sink_config.clone(),
            config: config.clone(),
            health: health.clone(),
        };
        let mut opened = Vec::new();
        for tenant in tenants.iter() {
            opened.push(pipeline.open(tenant).await?);
        }
        pipeline.install(opened, &[]);
        Ok((pipeline, Writers { tasks: writers }))
    }

    /// Opens `tenant`'s sink, for [`Pipeline::install`]: a reload opens the
    /// sinks of added tenants before it changes anything, so that one that
    /// cannot be opened refuses the reload.
    pub async fn open(&self, tenant: &Arc<Tenant>) -> Result<OpenedSink, SinkError> {
        Ok(OpenedSink {
            tenant: tenant.clone(),
            sink: sink::open(tenant, &self.sink_config, &self.config).await?,
        })
    }

    /// Starts a writer for each opened sink, in place of the tenant's
    /// current writer if it has one, and stops taking batches for the
    /// `removed` tenants. A replaced or removed writer writes what is
    /// queued for it, then ends.
    pub fn install(&self, opened: Vec<OpenedSink>, removed: &[String]) {
        let mut queues = HashMap::clone(&self.queues.load());
        for id in removed {
            queues.remove(id);
        }
        let mut writers = self.writers.lock().unwrap_or_else(PoisonError::into_inner);
        for OpenedSink { tenant, sink } in opened {
            crate::telemetry::tenant_sink(&tenant.id, sink.kind().name());
            let (tx, rx) = mpsc::unbounded_channel();
            let writer = Writer {
                metrics: TenantMetrics::new(&tenant.id),
                tenant: tenant.id.clone(),
                config: self.config.clone(),
                rx,
                health: self.health.tenant(&tenant.id),
            };
            queues.insert(tenant.id.clone(), tx);
            let (sinks, pipeline) = (self.sink_config.clone(), self.config.clone());
            let reopen = move || {
                let (owner, sinks, pipeline) = (tenant.clone(), sinks.clone(), pipeline.clone());
                async move { sink::open(&owner, &sinks, &pipeline).await }
            };
            // Reap the writers that ended (replaced or removed ones).
            while writers.try_join_next().is_some() {}
            writers.spawn(writer.supervise(sink, reopen));
        }
        self.queues.store(Arc::new(queues));
    }

    /// Takes no more batches: each writer writes what is queued, then ends
    /// (at shutdown, once the connections are done).
    pub fn close(&self) {
        self.queues.store(Arc::default());
    }

    /// Queues a batch for `tenant`; its outcome goes to `reply`, and its
    /// budget `permit` is given back once it is answered.
    pub fn submit(
        &self,
        tenant: &str,
        batch: AcceptedBatch,
        permit: BudgetPermit,
        reply: &Arc<Mailbox>,
    ) -> Result<(), SubmitError> {
        let queues = self.queues.load();
        let queue = queues.get(tenant).ok_or(SubmitError::Closed)?;
        let submission = Submission {
            waiter: Waiter {
                seq: batch.seq(),
                reply: Some(reply.clone()),
                queued_at: Instant::now(),
                _permit: permit,
            },
            batch,
        };
        // Refused only at shutdown; the submission is then dropped without
        // an answer, which the caller gives itself.
        queue.send(submission).map_err(|e| {
            let mut unsent = e.0;
            unsent.waiter.reply = None;
            SubmitError::Closed
        })
    }
}

/// How long a writer waits before it starts again after a panic: doubling
/// from the first to the last.
const RESTART_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(30));

/// One tenant's writer.
struct Writer {
    tenant: String,
    config: PipelineConfig,
    rx: mpsc::UnboundedReceiver<Submission>,
    metrics: TenantMetrics,
    health: Arc<TenantHealth>,
}

impl Writer {
    /// Runs the writer until its queue closes; after a panic, opens the sink
    /// again (`reopen`) and goes on, with backoff, answering the batches that
    /// arrive meanwhile ACK RETRY.
    async fn supervise<S, Reopen, Opening>(mut self, mut sink: S, mut reopen: Reopen)
    where
        S: TenantSink,
        Reopen: FnMut() -> Opening,
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
                    tracing::error!(tenant = %self.tenant, panic = %why, "the sink writer failed; restarting it");
                    self.health.down(format!("the writer panicked: {why}"));
                }
            }
            sink = loop {
                if !self.wait_down(backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(RESTART_BACKOFF.1);
                match reopen().await {
                    Ok(sink) => break sink,
                    Err(e) => {
                        tracing::error!(tenant = %self.tenant, error = %e, "cannot open the sink again");
                        self.health.down(format!("cannot open the sink: {e}"));
                    }
                }
            };
            self.health.up();
        }
    }

    /// Waits `pause` while the writer is down, answering whatever arrives
    /// ACK RETRY; `false` if the queue closed meanwhile.
    async fn wait_down(&mut self, pause: Duration) -> bool {
        let until = tokio::time::Instant::now() + pause;
        let down = Err(SinkError::Retryable("the storage writer is restarting".into()));
        loop {
            match tokio::time::timeout_at(until, self.rx.recv()).await {
                Ok(Some(s)) => self.answer(&mut [waiter(s)], &down),
                Ok(None) => return false,
                Err(_) => return true,
            }
        }
    }

    async fn run<S: TenantSink>(&mut self, sink: &mut S) {
        let write_timeout = Duration::from_millis(self.config.write_timeout_ms);
        let mut gathered = Vec::new();
        while let Some(first) = self.rx.recv().await {
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
                        let late = Err(SinkError::Retryable(format!(
                            "sink write took over {} ms",
                            write_timeout.as_millis()
                        )));
                        self.answer(&mut waiters, &late);
                        let busy = Err(SinkError::Retryable("sink busy with a late write".into()));
                        loop {
                            tokio::select! {
                                finished = &mut write => {
                                    tracing::warn!(tenant = %self.tenant, ok = finished.is_ok(), "a timed-out sink write finished");
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
                Ok(()) => self.health.write_ok(),
                Err(SinkError::Refused(reason)) => {
                    tracing::warn!(tenant = %self.tenant, batches = copies.len(), error = %reason, "the store refused a write; writing its batches one at a time");
                    self.isolate(sink, copies, &mut waiters).await;
                }
                Err(e) => {
                    self.health.write_failed(&e.to_string());
                    tracing::warn!(tenant = %self.tenant, items, error = %e, "sink write failed; batches get ACK RETRY");
                }
            }
            // Batches answered already (a late write, a refused one) keep that answer.
            self.answer(&mut waiters, &result);
        }
    }

    /// Writes the batches of a refused write one at a time and answers each:
    /// stored (OK), refused while the store took others of them (REJECTED,
    /// once its stored part is removed), or anything else (RETRY). Bounded
    /// by one write timeout in all: batches not tried by then get ACK RETRY.
    async fn isolate<S: TenantSink>(&mut self, sink: &mut S, batches: Vec<AcceptedBatch>, waiters: &mut [Waiter]) {
        let write_timeout = Duration::from_millis(self.config.write_timeout_ms);
        let deadline = tokio::time::Instant::now() + write_timeout;
        let mut results = Vec::with_capacity(batches.len());
        for batch in &batches {
            let result = match tokio::time::timeout_at(deadline, sink.write(vec![batch.clone()])).await {
                Ok(result) => result,
                Err(_) => Err(SinkError::Retryable(format!(
                    "writing a refused write's batches one at a time took over {} ms",
                    write_timeout.as_millis()
                ))),
            };
            results.push(result);
        }
        let store_works = results.iter().any(Result::is_ok);
        if store_works {
            self.health.write_ok();
        }
        for ((batch, waiter), result) in batches.iter().zip(waiters.iter_mut()).zip(results) {
            let result = match result {
                Err(SinkError::Refused(reason)) if store_works => match sink.discard(batch).await {
                    Ok(()) => {
                        self.metrics.batch_refused();
                        tracing::warn!(tenant = %self.tenant, device = %batch.device_id(), seq = batch.seq(), error = %reason, "the store refused a batch: ACK REJECTED");
                        Err(SinkError::Refused(reason))
                    }
                    // Part of it may still be stored: the agent must resend.
                    Err(e) => Err(e),
                },
                // Nothing was taken: the refusal may be the store's (its keys, its settings).
                Err(SinkError::Refused(reason)) => Err(SinkError::Fatal(reason)),
                other => other,
            };
            waiter.answer(&result, &self.metrics);
        }
    }

    /// Gathers `first` and whatever else is queued, up to the write limits;
    /// with a linger, waits that long for more first. Batches that waited
    /// in the queue past the write timeout are answered ACK RETRY instead.
    async fn gather(&mut self, first: Submission, gathered: &mut Vec<Submission>) {
        let max_wait = Duration::from_millis(self.config.write_timeout_ms);
        let linger_until = (self.config.linger_ms > 0)
            .then(|| tokio::time::Instant::now() + Duration::from_millis(self.config.linger_ms));
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
            self.answer(&mut expired, &Err(SinkError::Retryable(message)));
        }
    }

    fn answer(&self, waiters: &mut [Waiter], result: &WriteResult) {
        for w in waiters {
            w.answer(result, &self.metrics);
        }
    }
}

/// A submission's batch, for the sink, and what answering it takes.
fn split(s: Submission) -> (AcceptedBatch, Waiter) {
    (s.batch, s.waiter)
}

fn waiter(s: Submission) -> Waiter {
    split(s).1
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use super::*;
    use crate::budget::MemoryBudget;
    use crate::sink::tests::vector_batch;

    /// A sink whose first write panics (as a bug in a sink would), shared
    /// with the copies opened after it.
    struct PanicsOnce {
        panicked: Arc<AtomicBool>,
        written: Arc<AtomicU64>,
    }

    impl TenantSink for PanicsOnce {
        async fn write(&mut self, batches: Vec<AcceptedBatch>) -> Result<(), SinkError> {
            if !self.panicked.swap(true, Ordering::SeqCst) {
                panic!("injected sink bug");
            }
            self.written.fetch_add(batches.len() as u64, Ordering::SeqCst);
            Ok(())
        }

        async fn discard(&mut self, _batch: &AcceptedBatch) -> Result<(), SinkError> {
            Ok(())
        }
    }

    async fn next_answer(answers: &Mailbox) -> Outcome {
        loop {
            if let Some(outcome) = answers.take().pop() {
                return outcome;
            }
            tokio::time::timeout(Duration::from_secs(5), answers.arrived())
                .await
                .expect("an answer in time");
        }
    }

    #[tokio::test]
    async fn a_writer_that_panics_answers_retry_restarts_and_goes_on() {
        let health = Arc::new(TenantHealth::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = Writer {
            tenant: "t".into(),
            config: PipelineConfig::default(),
            rx,
            metrics: TenantMetrics::new("t"),
            health: health.clone(),
        };
        let (panicked, written) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let sink = PanicsOnce {
            panicked: panicked.clone(),
            written: written.clone(),
        };
        let reopened = Arc::new(AtomicU64::new(0));
        let reopen = {
            let (panicked, written, reopened) = (panicked.clone(), written.clone(), reopened.clone());
            move || {
                reopened.fetch_add(1, Ordering::SeqCst);
                let sink = PanicsOnce {
                    panicked: panicked.clone(),
                    written: written.clone(),
                };
                async move { Ok(sink) }
            }
        };
        let task = tokio::spawn(writer.supervise(sink, reopen));
        let budget = MemoryBudget::new(1 << 20, 1 << 20, ["t".to_owned()]);
        let answers = Arc::new(Mailbox::default());
        let submit = |seq: u64| {
            let batch = vector_batch("batch_one_location", 1);
            Submission {
                waiter: Waiter {
                    seq,
                    reply: Some(answers.clone()),
                    queued_at: Instant::now(),
                    _permit: budget.tenant("t").unwrap().try_take(1000).unwrap(),
                },
                batch,
            }
        };
        // The first write panics: its batch is answered RETRY, the tenant is degraded.
        tx.send(submit(1)).ok().unwrap();
        let outcome = next_answer(&answers).await;
        assert_eq!(outcome.seq, 1);
        assert!(
            matches!(outcome.result, Err(SinkError::Retryable(_))),
            "{:?}",
            outcome.result
        );
        assert!(
            health.problem(Duration::ZERO).unwrap().contains("injected sink bug"),
            "{:?}",
            health.problem(Duration::ZERO)
        );
        // After the backoff the sink is opened again and the next batch is stored.
        tokio::time::sleep(RESTART_BACKOFF.0 * 3).await;
        assert_eq!(reopened.load(Ordering::SeqCst), 1);
        assert_eq!(health.problem(Duration::ZERO), None);
        tx.send(submit(2)).ok().unwrap();
        let outcome = next_answer(&answers).await;
        assert_eq!((outcome.seq, outcome.result.is_ok()), (2, true));
        assert_eq!(written.load(Ordering::SeqCst), 1);
        drop(tx);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }
}
