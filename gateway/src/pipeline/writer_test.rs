//! A writer under faults: a panic, a batch refused for its content, a sink
//! swapped between writes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::writer::*;
use super::*;
use crate::admit::budget::MemoryBudget;
use crate::ops::health::TenantHealth;
use crate::pipeline::outcome::BatchOutcome;
use crate::sink::TenantSink;
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

async fn next_answer(answers: &Mailbox) -> (u64, BatchOutcome) {
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
    let (seq, outcome) = next_answer(&f.answers).await;
    assert_eq!(seq, 1);
    assert!(matches!(outcome, BatchOutcome::Retry(_)), "{outcome:?}");
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
    let (_, outcome) = next_answer(&f.answers).await;
    assert_eq!(outcome, BatchOutcome::Stored);
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
                SinkError::refused("ValidationException: bad value")
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
            Err(SinkError::fatal("the table refuses well-formed items"))
        }
    }

    /// Not logged: it runs whenever the writer is idle, so where it falls
    /// among the writes is the scheduler's choice (its own test is below).
    async fn health_check(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// A sink whose health check answers as told, and whose writes succeed.
struct Checked {
    answer: fn() -> Result<(), SinkError>,
    hangs: bool,
    checks: Arc<AtomicU64>,
}

impl TenantSink for Checked {
    async fn write(&mut self, _batches: Vec<AcceptedBatch>) -> Result<(), SinkError> {
        Ok(())
    }

    async fn discard(&mut self, _batch: &AcceptedBatch) -> Result<(), SinkError> {
        Ok(())
    }

    async fn health_check(&mut self) -> Result<(), SinkError> {
        self.checks.fetch_add(1, Ordering::SeqCst);
        if self.hangs {
            std::future::pending::<()>().await;
        }
        (self.answer)()
    }
}

/// The tenant's health once `sink`'s check has been asked, and how many
/// checks were asked.
async fn health_after_check(answer: fn() -> Result<(), SinkError>) -> (Option<String>, u64) {
    let (writer, f) = writer();
    let checks = Arc::new(AtomicU64::new(0));
    let sink = Checked {
        answer,
        hangs: false,
        checks: checks.clone(),
    };
    let task = tokio::spawn(writer.supervise(sink, |_: &Arc<Tenant>| async { unreachable!() }));
    let deadline = Instant::now() + Duration::from_secs(5);
    while checks.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "no health check");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let problem = f.health.problem(Duration::from_nanos(1));
    drop(f);
    task.await.unwrap();
    (problem, checks.load(Ordering::SeqCst))
}

#[tokio::test]
async fn a_failed_health_check_degrades_the_tenant_until_one_passes() {
    let (problem, checks) = health_after_check(|| Err(SinkError::fatal("no such table"))).await;
    assert!(problem.is_some_and(|p| p.contains("no such table")));
    assert_eq!(checks, 1);
    // Throttled or not answering: failing, and asked again later (so a
    // tenant without traffic is not left degraded by one bad moment).
    let (problem, _) = health_after_check(|| Err(SinkError::retryable("ThrottlingException"))).await;
    assert!(problem.is_some_and(|p| p.contains("ThrottlingException")));
    let (problem, _) = health_after_check(|| Ok(())).await;
    assert_eq!(problem, None);
}

#[tokio::test]
async fn a_batch_is_written_while_the_health_check_has_no_answer() {
    let (writer, f) = writer();
    let checks = Arc::new(AtomicU64::new(0));
    let sink = Checked {
        answer: || Ok(()),
        hangs: true,
        checks: checks.clone(),
    };
    let task = tokio::spawn(writer.supervise(sink, |_: &Arc<Tenant>| async { unreachable!() }));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(checks.load(Ordering::SeqCst), 1, "asked while idle");
    // The check hangs (up to write_timeout); the batch does not wait for it.
    let started = Instant::now();
    f.submit(vector_batch("batch_one_location", 1));
    assert_eq!(next_answer(&f.answers).await.1, BatchOutcome::Stored);
    assert!(started.elapsed() < PipelineConfig::default().write_timeout);
    assert_eq!(f.health.problem(Duration::from_nanos(1)), None);
    drop(f);
    task.await.unwrap();
    // The write answered what the check asked: not asked again.
    assert_eq!(checks.load(Ordering::SeqCst), 1);
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
    let outcome = next_answer(&f.answers).await.1;
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
    assert_eq!(next_answer(&f.answers).await.1, BatchOutcome::Stored);
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
    assert_eq!(next_answer(&f.answers).await.1, BatchOutcome::Stored);
    drop(f);
    task.await.unwrap();
    assert_eq!(*log.lock().unwrap(), ["old write [1]", "new write [77]"]);
}

#[tokio::test(start_paused = true)]
async fn a_health_check_that_failed_for_a_moment_is_asked_again_and_clears() {
    static FAILS_LEFT: AtomicU64 = AtomicU64::new(1);
    let (writer, f) = writer();
    let checks = Arc::new(AtomicU64::new(0));
    let sink = Checked {
        answer: || {
            if FAILS_LEFT.fetch_sub(1, Ordering::SeqCst) > 0 {
                Err(SinkError::retryable("ThrottlingException"))
            } else {
                Ok(())
            }
        },
        hangs: false,
        checks: checks.clone(),
    };
    let task = tokio::spawn(writer.supervise(sink, |_: &Arc<Tenant>| async { unreachable!() }));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(checks.load(Ordering::SeqCst), 1);
    assert!(f.health.problem(Duration::from_nanos(1)).is_some());
    tokio::time::sleep(RECHECK_AFTER).await;
    assert_eq!(checks.load(Ordering::SeqCst), 2);
    assert_eq!(f.health.problem(Duration::from_nanos(1)), None);
    // Passed: not asked again.
    tokio::time::sleep(RECHECK_AFTER * 3).await;
    assert_eq!(checks.load(Ordering::SeqCst), 2);
    drop(f);
    task.await.unwrap();
}
