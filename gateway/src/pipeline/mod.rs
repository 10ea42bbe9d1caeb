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
//! ([`crate::pipeline::mailbox::Mailbox`]) and its budget is given back. A batch that waited in
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
//! while it is down. Its tenant is degraded meanwhile (`ops/health.rs`).
//!
//! A tenant has one writer for as long as it is configured. A reload that
//! changes its store (table, layout, credentials, concurrency) hands the
//! writer a new sink ([`Pipeline::apply`]), which it takes between two
//! writes: from then on nothing goes to the old store, and the two are
//! never written at once. The reload learns when that happened ([`Drain`]),
//! and so does an operator who wants to retire the old table. A removed
//! tenant's writer writes what is queued, then ends, which its [`Drain`]
//! reports too.

pub(crate) mod mailbox;
pub(crate) mod outcome;
mod writer;

#[cfg(test)]
mod writer_test;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use awp_store::AcceptedBatch;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::admit::budget::BudgetPermit;
use crate::admit::tenant::{Tenant, Tenants};
use crate::config::{PipelineConfig, SinkConfig};
use crate::ops::health::Health;
use crate::pipeline::mailbox::Mailbox;
use crate::sink::{self, SinkError};
use crate::telemetry::TenantMetrics;
use writer::{Submission, Swap, Waiter, Writer};

/// Why a batch was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// No writer for the tenant (shutting down, or not configured).
    #[error("no writer for this tenant")]
    Closed,
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
