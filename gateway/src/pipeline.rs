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
//! When a write is refused, the writer writes its batches again one at a
//! time: the others are stored, and the one at fault is answered ACK
//! REJECTED, so one bad batch cannot keep a tenant's good ones out, and a
//! bad batch alone (a quiet tenant's, with no linger) is REJECTED too, not
//! retried forever. Who is at fault:
//!
//! - [`SinkError::Unstorable`]: the gateway found, before sending anything,
//!   that the batch's items cannot be stored (a packed item over 400 KB).
//!   Decided by the batch's content alone: REJECTED, and nothing to remove.
//! - [`SinkError::Refused`]: the store's validation refused the items, in
//!   its words for a value no store keeps (DynamoDB's ValidationException
//!   for an item too large or a number out of range; any other validation
//!   error is the table's, [`SinkError::Fatal`]). The batch's fault if the store takes
//!   well-formed items: another batch of the write was stored meanwhile, or
//!   the store says so when asked ([`TenantSink::probe`]: a conditional
//!   write that never writes). Then whatever part of it was stored is
//!   removed and it is REJECTED. Otherwise the store is at fault (a table
//!   whose keys or indexes do not fit the items): ACK RETRY, the tenant
//!   degraded, as for a missing table or bad credentials.
//!
//! Each refused batch is counted (`awp_batches_refused_total`) and logged
//! with the answer its agent gets.
//!
//! A writer that panics is restarted with backoff, with its sink opened
//! again; the batches it held are answered ACK RETRY (a batch's answer is
//! given when it is dropped unanswered), and so are the batches that arrive
//! while it is down. Its tenant is degraded meanwhile (`health.rs`).
//!
//! A tenant has one writer for as long as it is configured. A reload that
//! changes its store (table, layout, credentials, concurrency) hands the
//! writer a new sink ([`Pipeline::apply`]), which it takes between two
//! writes: from then on nothing goes to the old store, and the two are
//! never written at once. The reload learns when that happened ([`Drain`]),
//! and so does an operator who wants to retire the old table. A removed
//! tenant's writer writes what is queued, then ends, which its [`Drain`]
//! reports too.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use awp_store::AcceptedBatch;
use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::budget::BudgetPermit;
use crate::config::{PipelineConfig, SinkConfig};
use crate::health::{Health, TenantHealth};
use crate::mailbox::Mailbox;
use crate::session::BatchOutcome;
use crate::sink::{self, SinkError, TenantSink};
use crate::telemetry::TenantMetrics;
use crate::tenant::{Tenant, Tenants};

/// How a write went, inside the writer.
type WriteResult = Result<(), SinkError>;

/// A batch's answer, sent to its connection.
#[derive(Debug)]
pub struct Outcome {
    /// The batch's seq.
    pub seq: u64,
    /// How storing it ended.
    pub outcome: BatchOutcome,
}

/// What agents are told of a write: durable, refused (with the reason), or
/// try again. The details of a failure are logged by the writer, not told
/// to agents.
fn outcome_of(result: &WriteResult) -> BatchOutcome {
    match result {
        Ok(()) => BatchOutcome::Stored,
        Err(SinkError::Refused(reason) | SinkError::Unstorable(reason)) => {
            BatchOutcome::Rejected(format!("the store refused this batch: {reason}"))
        }
        Err(_) => BatchOutcome::Retry("storage unavailable".into()),
    }
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
                outcome: BatchOutcome::Retry("storage unavailable".into()),
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
            outcome: outcome_of(result),
        });
    }
}

/// A new sink for a running writer, taken between two writes.
struct Swap<S> {
    tenant: Arc<Tenant>,
    sink: S,
    /// Told once the writer writes to the new sink only.
    done: oneshot::Sender<()>,
}

/// A running writer, as the pipeline reaches it.
struct WriterHandle {
    swaps: mpsc::UnboundedSender<Swap<sink::Sink>>,
    /// Turns true when the writer has ended (its queue closed and drained).
    ended: watch::Receiver<bool>,
}

/// What a reload waits for before an old store is no longer written.
pub struct Drain {
    /// The tenant.
    pub tenant: String,
    /// What is being drained, for `/readyz` and the reload's answer.
    pub what: DrainKind,
    /// Ready when the old store is no longer written.
    pub done: Pin<Box<dyn Future<Output = ()> + Send>>,
}

/// What a [`Drain`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainKind {
    /// The writer moving to the tenant's new store: it ends the write in
    /// flight on the old one first.
    OldStore,
    /// A removed tenant's writer writing what was queued.
    Removed,
}

impl DrainKind {
    /// Says what is still being written.
    pub fn describe(self) -> &'static str {
        match self {
            DrainKind::OldStore => "its writer is still writing to its old store",
            DrainKind::Removed => "removed; its writer is still writing what was queued",
        }
    }
}

/// The per-tenant queues. Cloning shares them.
#[derive(Clone)]
pub struct Pipeline {
    /// Each tenant's queue; a reload swaps in a new map, and a writer ends
    /// once its queue is in no map and no `submit` holds it.
    queues: Arc<ArcSwap<HashMap<String, mpsc::UnboundedSender<Submission>>>>,
    /// Each tenant's writer, for reloads.
    handles: Arc<Mutex<HashMap<String, WriterHandle>>>,
    /// The writers of removed tenants, until they end: a tenant added back
    /// meanwhile gets a writer that starts once the old one has ended.
    draining: Arc<Mutex<HashMap<String, watch::Receiver<bool>>>>,
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

/// Says "ended" when dropped: however a writer's task ends.
struct EndedGuard(watch::Sender<bool>);

impl Drop for EndedGuard {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
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
            handles: Arc::default(),
            draining: Arc::default(),
            writers: writers.clone(),
            sink_config: sink_config.clone(),
            config: config.clone(),
            health: health.clone(),
        };
        let mut opened = Vec::new();
        for tenant in tenants.iter() {
            opened.push(pipeline.open(tenant).await?);
        }
        pipeline.apply(opened, &[]);
        Ok((pipeline, Writers { tasks: writers }))
    }

    /// Opens `tenant`'s sink, for [`Pipeline::apply`]: a reload opens the
    /// sinks of added tenants and of tenants whose store changed before it
    /// changes anything, so that one that cannot be opened refuses the
    /// reload.
    pub async fn open(&self, tenant: &Arc<Tenant>) -> Result<OpenedSink, SinkError> {
        Ok(OpenedSink {
            tenant: tenant.clone(),
            sink: sink::open(tenant, &self.sink_config, &self.config).await?,
        })
    }

    /// Puts each opened sink to work: a tenant that has a writer gets it as
    /// its new store (taken between two writes), any other a new writer.
    /// The `removed` tenants' queues take no more batches: their writers
    /// write what is queued, then end. Returns what to wait for before the
    /// old stores are no longer written.
    pub fn apply(&self, opened: Vec<OpenedSink>, removed: &[String]) -> Vec<Drain> {
        let mut drains = Vec::new();
        let mut queues = HashMap::clone(&self.queues.load());
        let mut handles = self.handles.lock().unwrap_or_else(PoisonError::into_inner);
        let mut draining = self.draining.lock().unwrap_or_else(PoisonError::into_inner);
        draining.retain(|_, ended| !*ended.borrow());
        for id in removed {
            queues.remove(id);
            if let Some(handle) = handles.remove(id) {
                draining.insert(id.clone(), handle.ended.clone());
                let mut ended = handle.ended;
                drains.push(Drain {
                    tenant: id.clone(),
                    what: DrainKind::Removed,
                    done: Box::pin(async move {
                        // An error means the writer is gone: ended too.
                        let _ = ended.wait_for(|ended| *ended).await;
                    }),
                });
            }
        }
        let mut writers = self.writers.lock().unwrap_or_else(PoisonError::into_inner);
        // Reap the writers that ended (removed ones).
        while writers.try_join_next().is_some() {}
        for OpenedSink { tenant, sink } in opened {
            crate::telemetry::tenant_sink(&tenant.id, sink.kind().name());
            let id = tenant.id.clone();
            let (tenant, sink) = match handles.get(&id) {
                Some(handle) => {
                    let (done, told) = oneshot::channel();
                    match handle.swaps.send(Swap { tenant, sink, done }) {
                        Ok(()) => {
                            drains.push(Drain {
                                tenant: id,
                                what: DrainKind::OldStore,
                                done: Box::pin(async move {
                                    // An error means the writer is gone: nothing writes the old store.
                                    let _ = told.await;
                                }),
                            });
                            continue;
                        }
                        // The writer is gone (it cannot be while its tenant
                        // is configured): a new one takes the sink.
                        Err(mpsc::error::SendError(swap)) => (swap.tenant, swap.sink),
                    }
                }
                None => (tenant, sink),
            };
            let (tx, rx) = mpsc::unbounded_channel();
            let (swaps, swap_rx) = mpsc::unbounded_channel();
            let (ended_tx, ended) = watch::channel(false);
            let writer = Writer {
                metrics: TenantMetrics::new(&tenant.id),
                tenant: tenant.clone(),
                config: self.config.clone(),
                rx,
                swaps: Some(swap_rx),
                health: self.health.tenant(&tenant.id),
            };
            queues.insert(tenant.id.clone(), tx);
            handles.insert(tenant.id.clone(), WriterHandle { swaps, ended });
            let (sinks, pipeline) = (self.sink_config.clone(), self.config.clone());
            let reopen = move |owner: &Arc<Tenant>| {
                let (owner, sinks, pipeline) = (owner.clone(), sinks.clone(), pipeline.clone());
                async move { sink::open(&owner, &sinks, &pipeline).await }
            };
            // A tenant added back while its old writer still writes: one
            // writer at a time.
            let before = draining.remove(&tenant.id);
            writers.spawn(async move {
                let _ended = EndedGuard(ended_tx);
                if let Some(mut before) = before {
                    // An error: the old writer is gone, ended too.
                    let _ = before.wait_for(|ended| *ended).await;
                }
                writer.supervise(sink, reopen).await;
            });
        }
        self.queues.store(Arc::new(queues));
        drains
    }

    /// The removed tenants whose writers still write what was queued.
    pub fn still_draining(&self) -> Vec<String> {
        let draining = self.draining.lock().unwrap_or_else(PoisonError::into_inner);
        draining
            .iter()
            .filter(|(_, ended)| !*ended.borrow())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Takes no more batches: each writer writes what is queued, then ends
    /// (at shutdown, once the connections are done).
    pub fn close(&self) {
        self.queues.store(Arc::default());
        self.handles.lock().unwrap_or_else(PoisonError::into_inner).clear();
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
struct Writer<S> {
    /// The tenant as its store was last configured (a reopen after a panic
    /// opens this one's).
    tenant: Arc<Tenant>,
    config: PipelineConfig,
    rx: mpsc::UnboundedReceiver<Submission>,
    /// New sinks from reloads; `None` once the pipeline dropped its end.
    swaps: Option<mpsc::UnboundedReceiver<Swap<S>>>,
    metrics: TenantMetrics,
    health: Arc<TenantHealth>,
}

/// What a writer's wait between writes ended with.
enum Next<S> {
    Batch(Submission),
    Swap(Swap<S>),
    /// The queue closed: the tenant was removed, or the gateway is stopping.
    Closed,
}

impl<S: TenantSink> Writer<S> {
    /// Runs the writer until its queue closes; after a panic, opens the sink
    /// again (`reopen`, with the tenant's latest configuration) and goes on,
    /// with backoff, answering the batches that arrive meanwhile ACK RETRY.
    async fn supervise<Reopen, Opening>(mut self, mut sink: S, mut reopen: Reopen)
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
                        tracing::error!(tenant = %self.tenant.id, error = %e, "cannot open the sink again");
                        self.health.down(format!("cannot open the sink: {e}"));
                    }
                }
            };
            self.health.up();
        }
    }

    /// Waits `pause` while the writer is down, answering whatever arrives
    /// ACK RETRY.
    async fn wait_down(&mut self, pause: Duration) -> Down<S> {
        let until = tokio::time::Instant::now() + pause;
        let down = Err(SinkError::Retryable("the storage writer is restarting".into()));
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
    async fn next(&mut self) -> Next<S> {
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
    fn take_swap(&mut self, sink: &mut S, swap: Swap<S>) {
        *sink = swap.sink;
        self.tenant = swap.tenant;
        tracing::info!(tenant = %self.tenant.id, "the writer moved to the tenant's new store");
        let _ = swap.done.send(());
    }

    async fn run(&mut self, sink: &mut S) {
        let write_timeout = Duration::from_millis(self.config.write_timeout_ms);
        let mut gathered = Vec::new();
        loop {
            let first = match self.next().await {
                Next::Batch(first) => first,
                Next::Swap(swap) => {
                    self.take_swap(sink, swap);
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
                        let late = Err(SinkError::Retryable(format!(
                            "sink write took over {} ms",
                            write_timeout.as_millis()
                        )));
                        self.answer(&mut waiters, &late);
                        let busy = Err(SinkError::Retryable("sink busy with a late write".into()));
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
                Ok(()) => self.health.write_ok(),
                Err(e @ (SinkError::Refused(_) | SinkError::Unstorable(_))) => {
                    tracing::warn!(tenant = %self.tenant.id, batches = copies.len(), error = %e, "a write was refused; writing its batches one at a time");
                    self.isolate(sink, copies, &mut waiters).await;
                }
                Err(e) => {
                    self.health.write_failed(&e.to_string());
                    tracing::warn!(tenant = %self.tenant.id, items, error = %e, "sink write failed; batches get ACK RETRY");
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
    async fn isolate(&mut self, sink: &mut S, batches: Vec<AcceptedBatch>, waiters: &mut [Waiter]) {
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
        // Whether the store takes well-formed items: known if it took one
        // of these, else asked once, when a batch it refused needs it.
        let mut store_takes_items: Option<WriteResult> = results.iter().any(Result::is_ok).then_some(Ok(()));
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
                Err(SinkError::Refused(reason)) => {
                    let sound = match &store_takes_items {
                        Some(known) => known.clone(),
                        None => {
                            let asked = match tokio::time::timeout(write_timeout, sink.probe()).await {
                                Ok(answer) => answer,
                                Err(_) => Err(SinkError::Retryable("the store did not answer a probe in time".into())),
                            };
                            match &asked {
                                Err(e @ SinkError::Fatal(_)) => {
                                    tracing::error!(tenant = %self.tenant.id, error = %e, refused = %reason, "the store did not take a well-formed item: the refused batch gets ACK RETRY");
                                    self.health.write_failed(&e.to_string());
                                }
                                // Throttled, a timeout: no answer either way; RETRY.
                                Err(e) => {
                                    tracing::warn!(tenant = %self.tenant.id, error = %e, refused = %reason, "the store did not answer a probe: the refused batch gets ACK RETRY")
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
                                Err(SinkError::Refused(reason))
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
    fn refused(&self, batch: &AcceptedBatch, reason: &str) {
        self.metrics.batch_refused();
        let BatchOutcome::Rejected(answer) = outcome_of(&Err(SinkError::Refused(reason.to_owned()))) else {
            return;
        };
        tracing::warn!(tenant = %self.tenant.id, device = %batch.device_id(), seq = batch.seq(), answer = %answer, "a batch the store cannot take: ACK REJECTED");
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

/// How a writer's wait while down ended.
enum Down<S> {
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

    /// A writer for tenant `t` and what feeds it.
    struct Fixture<S> {
        queue: mpsc::UnboundedSender<Submission>,
        swaps: mpsc::UnboundedSender<Swap<S>>,
        health: Arc<TenantHealth>,
        budget: MemoryBudget,
        answers: Arc<Mailbox>,
    }

    fn writer<S>() -> (Writer<S>, Fixture<S>) {
        let health = Arc::new(TenantHealth::default());
        let (queue, rx) = mpsc::unbounded_channel();
        let (swaps, swap_rx) = mpsc::unbounded_channel();
        let writer = Writer {
            tenant: Arc::new(Tenant::with_secrets("t", &[])),
            config: PipelineConfig::default(),
            rx,
            swaps: Some(swap_rx),
            metrics: TenantMetrics::new("t"),
            health: health.clone(),
        };
        let fixture = Fixture {
            queue,
            swaps,
            health,
            budget: MemoryBudget::new(1 << 20, 1 << 20, ["t".to_owned()]),
            answers: Arc::new(Mailbox::default()),
        };
        (writer, fixture)
    }

    impl<S> Fixture<S> {
        fn submit(&self, batch: AcceptedBatch) {
            let submission = Submission {
                waiter: Waiter {
                    seq: batch.seq(),
                    reply: Some(self.answers.clone()),
                    queued_at: Instant::now(),
                    _permit: self.budget.tenant("t").unwrap().try_take(1000).unwrap(),
                },
                batch,
            };
            assert!(self.queue.send(submission).is_ok());
        }
    }

    #[tokio::test]
    async fn a_writer_that_panics_answers_retry_restarts_and_goes_on() {
        let (writer, f) = writer();
        let (panicked, written) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let sink = PanicsOnce {
            panicked: panicked.clone(),
            written: written.clone(),
        };
        let reopened = Arc::new(AtomicU64::new(0));
        let reopen = {
            let (panicked, written, reopened) = (panicked.clone(), written.clone(), reopened.clone());
            move |_: &Arc<Tenant>| {
                reopened.fetch_add(1, Ordering::SeqCst);
                let sink = PanicsOnce {
                    panicked: panicked.clone(),
                    written: written.clone(),
                };
                async move { Ok(sink) }
            }
        };
        let task = tokio::spawn(writer.supervise(sink, reopen));
        // The first write panics: its batch is answered RETRY, the tenant is degraded.
        f.submit(vector_batch("batch_one_location", 1));
        let outcome = next_answer(&f.answers).await;
        assert_eq!(outcome.seq, 1);
        assert!(
            matches!(outcome.outcome, BatchOutcome::Retry(_)),
            "{:?}",
            outcome.outcome
        );
        assert!(
            f.health.problem(Duration::ZERO).unwrap().contains("injected sink bug"),
            "{:?}",
            f.health.problem(Duration::ZERO)
        );
        // After the backoff the sink is opened again and the next batch is stored.
        tokio::time::sleep(RESTART_BACKOFF.0 * 3).await;
        assert_eq!(reopened.load(Ordering::SeqCst), 1);
        assert_eq!(f.health.problem(Duration::ZERO), None);
        f.submit(vector_batch("batch_one_location", 2));
        let outcome = next_answer(&f.answers).await;
        assert_eq!(outcome.outcome, BatchOutcome::Stored);
        assert_eq!(written.load(Ordering::SeqCst), 1);
        drop(f);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }

    /// A sink that refuses the batches whose seq is in `bad` (as DynamoDB's
    /// validation, or the gateway's own packing, would), and answers probes
    /// as `sound` says; it logs what it was asked.
    struct Picky {
        name: &'static str,
        bad: Vec<u64>,
        /// Refused by the gateway before sending (Unstorable), else by the store.
        before_sending: bool,
        sound: bool,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl Picky {
        fn note(&self, what: String) {
            self.log.lock().unwrap().push(format!("{} {what}", self.name));
        }
    }

    impl TenantSink for Picky {
        async fn write(&mut self, batches: Vec<AcceptedBatch>) -> Result<(), SinkError> {
            let seqs: Vec<u64> = batches.iter().map(AcceptedBatch::seq).collect();
            self.note(format!("write {seqs:?}"));
            if seqs.iter().any(|s| self.bad.contains(s)) {
                return Err(if self.before_sending {
                    SinkError::Unstorable("record 0: too large".into())
                } else {
                    SinkError::Refused("ValidationException: bad value".into())
                });
            }
            Ok(())
        }

        async fn discard(&mut self, batch: &AcceptedBatch) -> Result<(), SinkError> {
            self.note(format!("discard {}", batch.seq()));
            Ok(())
        }

        async fn probe(&mut self) -> Result<(), SinkError> {
            self.note("probe".into());
            if self.sound {
                Ok(())
            } else {
                Err(SinkError::Fatal("the table refuses well-formed items".into()))
            }
        }
    }

    /// The answer a lone batch of seq 1 gets from `sink`, and its log.
    async fn alone(before_sending: bool, sound: bool) -> (BatchOutcome, Vec<String>) {
        let (writer, f) = writer();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Picky {
            name: "a",
            bad: vec![1],
            before_sending,
            sound,
            log: log.clone(),
        };
        let task = tokio::spawn(writer.supervise(sink, |_: &Arc<Tenant>| async { unreachable!() }));
        f.submit(vector_batch("batch_one_location", 1));
        let outcome = next_answer(&f.answers).await.outcome;
        drop(f);
        task.await.unwrap();
        let log = log.lock().unwrap().clone();
        (outcome, log)
    }

    #[tokio::test]
    async fn a_batch_refused_for_its_content_alone_is_rejected_not_retried() {
        // Refused by the gateway before sending: REJECTED, nothing to remove,
        // the store not asked.
        let (outcome, log) = alone(true, false).await;
        assert!(
            matches!(&outcome, BatchOutcome::Rejected(m) if m == "the store refused this batch: record 0: too large"),
            "{outcome:?}"
        );
        assert_eq!(log, ["a write [1]", "a write [1]"]);
        // Refused by the store, which takes well-formed items: REJECTED,
        // after removing whatever part of it was stored.
        let (outcome, log) = alone(false, true).await;
        assert!(matches!(outcome, BatchOutcome::Rejected(_)), "{outcome:?}");
        assert_eq!(log, ["a write [1]", "a write [1]", "a probe", "a discard 1"]);
        // Refused by a store that refuses well-formed items too: the
        // store's fault, ACK RETRY, nothing removed.
        let (outcome, log) = alone(false, false).await;
        assert!(matches!(outcome, BatchOutcome::Retry(_)), "{outcome:?}");
        assert_eq!(log, ["a write [1]", "a write [1]", "a probe"]);
    }

    #[tokio::test]
    async fn a_new_sink_is_taken_between_writes_and_the_old_one_is_written_no_more() {
        let (writer, f) = writer();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = |name| Picky {
            name,
            bad: Vec::new(),
            before_sending: false,
            sound: true,
            log: log.clone(),
        };
        let task = tokio::spawn(writer.supervise(sink("old"), |_: &Arc<Tenant>| async { unreachable!() }));
        f.submit(vector_batch("batch_one_location", 1));
        assert_eq!(next_answer(&f.answers).await.outcome, BatchOutcome::Stored);
        let (done, told) = oneshot::channel();
        assert!(
            f.swaps
                .send(Swap {
                    tenant: Arc::new(Tenant::with_secrets("t", &[])),
                    sink: sink("new"),
                    done,
                })
                .is_ok()
        );
        tokio::time::timeout(Duration::from_secs(5), told)
            .await
            .unwrap()
            .unwrap();
        f.submit(vector_batch("batch_mixed_kinds", 2));
        assert_eq!(next_answer(&f.answers).await.outcome, BatchOutcome::Stored);
        drop(f);
        task.await.unwrap();
        assert_eq!(*log.lock().unwrap(), ["old write [1]", "new write [77]"]);
    }
}
