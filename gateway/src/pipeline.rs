//! From sessions to sinks: one bounded queue and one writer task per tenant.
//!
//! A session hands the items of a validated BATCH to [`Pipeline::submit`],
//! which either queues them (and gives back a receiver for the outcome) or,
//! when the tenant's queue is full, refuses at once — the session answers
//! that batch with ACK RETRY, so backpressure reaches the agent instead of
//! memory growing. Each writer gathers queued batches from many connections
//! until `max_items`, `max_bytes` or `max_delay_ms` is reached, writes them
//! in one sink call (one SQLite transaction, one group commit), and then
//! completes every batch's receiver with the result. A tenant's writer only
//! ever waits on its own sink, so one tenant's trouble does not stall others.
//!
//! Bounds: per tenant, `queue_depth` queued batches of at most
//! `max_batch_records` items each, plus the batch being written.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinSet;

use crate::config::{PipelineConfig, SinkConfig, SinkKind};
use crate::item::Item;
use crate::sink::dynamodb::DynamoSink;
use crate::sink::null::NullSink;
use crate::sink::sqlite::SqliteSink;
use crate::sink::{SinkError, TenantSink};
use crate::tenant::Tenants;

/// The outcome of one submitted batch.
pub type WriteResult = Result<(), SinkError>;

/// Why a batch was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The tenant's queue is full: answer ACK RETRY.
    #[error("the tenant's write queue is full")]
    Full,
    /// No writer for the tenant (shutting down, or not configured).
    #[error("no writer for this tenant")]
    Closed,
}

struct Submission {
    items: Vec<Item>,
    done: oneshot::Sender<WriteResult>,
    queued_at: Instant,
}

/// The per-tenant queues. Cloning shares them.
#[derive(Clone)]
pub struct Pipeline {
    queues: Arc<HashMap<String, mpsc::Sender<Submission>>>,
    /// Per tenant: notified when its writer takes batches off the queue.
    room: Arc<HashMap<String, Arc<Notify>>>,
}

/// The writer tasks; awaited at shutdown after every `Pipeline` clone is dropped.
pub struct Writers {
    tasks: JoinSet<()>,
}

impl Writers {
    /// Waits until every writer has written what was queued (the queues
    /// close when the last `Pipeline` is dropped), or the deadline passes.
    pub async fn drain(mut self, deadline: Duration) -> bool {
        tokio::time::timeout(deadline, async { while self.tasks.join_next().await.is_some() {} })
            .await
            .is_ok()
    }
}

impl Pipeline {
    /// Opens each tenant's sink and starts its writer.
    pub async fn start(
        tenants: &Tenants,
        sink: &SinkConfig,
        config: &PipelineConfig,
    ) -> Result<(Pipeline, Writers), SinkError> {
        let mut queues = HashMap::new();
        let mut room = HashMap::new();
        let mut tasks = JoinSet::new();
        for tenant in tenants.iter() {
            let (tx, rx) = mpsc::channel(config.queue_depth);
            let config = config.clone();
            let id = tenant.id.clone();
            let notify = Arc::new(Notify::new());
            room.insert(tenant.id.clone(), notify.clone());
            let rx = Queue { rx, room: notify };
            match tenant.sink.unwrap_or(sink.kind) {
                SinkKind::Sqlite => {
                    let s = SqliteSink::open(&sink.data_dir, &tenant.id)?;
                    tasks.spawn(write_loop(id, s, rx, config));
                }
                SinkKind::Null => {
                    tasks.spawn(write_loop(id, NullSink::new().0, rx, config));
                }
                SinkKind::Dynamodb => {
                    let Some(dynamo) = &tenant.dynamodb else {
                        return Err(SinkError::Fatal(format!(
                            "tenant {}: no [tenants.dynamodb] table",
                            tenant.id
                        )));
                    };
                    // Give up a little before the pipeline's own timeout, so the
                    // batches get the sink's reason rather than a timeout.
                    let give_up = Duration::from_millis(config.write_timeout_ms * 9 / 10);
                    let s = DynamoSink::connect(&tenant.id, dynamo, give_up).await;
                    tasks.spawn(write_loop(id, s, rx, config));
                }
            }
            queues.insert(tenant.id.clone(), tx);
        }
        Ok((
            Pipeline {
                queues: Arc::new(queues),
                room: Arc::new(room),
            },
            Writers { tasks },
        ))
    }

    /// Whether `tenant`'s queue can take a batch now. Connections of a tenant
    /// whose queue is full stop reading (TCP backpressure) instead of
    /// decoding batches only to answer them ACK RETRY.
    pub fn has_room(&self, tenant: &str) -> bool {
        self.queues.get(tenant).is_none_or(|q| q.capacity() > 0)
    }

    /// Resolves when `tenant`'s writer next takes batches off its queue.
    /// Create it before checking [`Pipeline::has_room`], so that a wake-up
    /// between the check and the wait is not missed.
    pub fn room_freed(&self, tenant: &str) -> Option<Arc<Notify>> {
        self.room.get(tenant).cloned()
    }

    /// Queues a batch's items for `tenant`; the receiver gets the outcome.
    pub fn submit(&self, tenant: &str, items: Vec<Item>) -> Result<oneshot::Receiver<WriteResult>, SubmitError> {
        let queue = self.queues.get(tenant).ok_or(SubmitError::Closed)?;
        let (done, rx) = oneshot::channel();
        let submission = Submission {
            items,
            done,
            queued_at: Instant::now(),
        };
        match queue.try_send(submission) {
            Ok(()) => {
                metrics::gauge!("awp_queue_depth", "tenant" => tenant.to_owned())
                    .set((queue.max_capacity() - queue.capacity()) as f64);
                Ok(rx)
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!("awp_queue_full_total", "tenant" => tenant.to_owned()).increment(1);
                Err(SubmitError::Full)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SubmitError::Closed),
        }
    }
}

/// A tenant's queue, as its writer sees it: receiving frees room, and the
/// connections held back for lack of it are told.
struct Queue {
    rx: mpsc::Receiver<Submission>,
    room: Arc<Notify>,
}

impl Queue {
    async fn recv(&mut self) -> Option<Submission> {
        let next = self.rx.recv().await;
        self.room.notify_waiters();
        next
    }

    fn max_capacity(&self) -> usize {
        self.rx.max_capacity()
    }

    fn capacity(&self) -> usize {
        self.rx.capacity()
    }
}

async fn write_loop<S: TenantSink>(tenant: String, mut sink: S, mut rx: Queue, config: PipelineConfig) {
    let max_delay = Duration::from_millis(config.max_delay_ms);
    let write_timeout = Duration::from_millis(config.write_timeout_ms);
    let mut pending: Vec<Submission> = Vec::new();
    while let Some(first) = rx.recv().await {
        let flush_at = tokio::time::Instant::now() + max_delay;
        let mut items = first.items.len();
        let mut bytes: usize = first.items.iter().map(Item::size_bytes).sum();
        pending.push(first);
        while items < config.max_items && bytes < config.max_bytes {
            let next = tokio::select! {
                next = rx.recv() => next,
                _ = tokio::time::sleep_until(flush_at) => None,
            };
            let Some(next) = next else { break };
            items += next.items.len();
            bytes += next.items.iter().map(Item::size_bytes).sum::<usize>();
            pending.push(next);
        }
        metrics::gauge!("awp_queue_depth", "tenant" => tenant.clone()).set((rx.max_capacity() - rx.capacity()) as f64);
        let mut all = Vec::with_capacity(items);
        let mut waiters = Vec::with_capacity(pending.len());
        for s in pending.drain(..) {
            all.extend(s.items);
            waiters.push((s.done, s.queued_at));
        }
        let started = Instant::now();
        let mut write = std::pin::pin!(sink.write(all));
        let result = match tokio::time::timeout(write_timeout, &mut write).await {
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
                answer(&tenant, std::mem::take(&mut waiters), &late);
                let busy = Err(SinkError::Retryable("sink busy with a late write".into()));
                loop {
                    tokio::select! {
                        finished = &mut write => {
                            tracing::warn!(tenant = %tenant, ok = finished.is_ok(), "a timed-out sink write finished");
                            break;
                        }
                        next = rx.recv() => match next {
                            Some(s) => answer(&tenant, vec![(s.done, s.queued_at)], &busy),
                            None => {
                                let _ = (&mut write).await;
                                break;
                            }
                        },
                    }
                }
                late
            }
        };
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::histogram!("awp_sink_write_seconds", "tenant" => tenant.clone()).record(started.elapsed());
        metrics::histogram!("awp_sink_write_items", "tenant" => tenant.clone()).record(items as f64);
        metrics::counter!("awp_sink_writes_total", "tenant" => tenant.clone(), "outcome" => outcome).increment(1);
        match &result {
            Ok(()) => metrics::counter!("awp_items_written_total", "tenant" => tenant.clone()).increment(items as u64),
            Err(e) => tracing::warn!(tenant = %tenant, items, error = %e, "sink write failed; batches get ACK RETRY"),
        }
        answer(&tenant, waiters, &result);
    }
}

fn answer(tenant: &str, waiters: Vec<(oneshot::Sender<WriteResult>, Instant)>, result: &WriteResult) {
    for (done, queued_at) in waiters {
        metrics::histogram!("awp_batch_durable_seconds", "tenant" => tenant.to_owned()).record(queued_at.elapsed());
        // A closed receiver means the connection is gone; the agent resends.
        let _ = done.send(result.clone());
    }
}
