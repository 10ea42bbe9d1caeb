//! The engine: one thread of its own running a small tokio runtime, which
//! seals and syncs the queue and keeps a connection to a gateway, and the
//! [`Client`] handle the app calls from any thread.
//!
//! ```text
//!  app threads ── push ──► Mutex<queue> ◄── seal, sync ── sealer task ─┐
//!                 flush ◄── Condvar (queue empty)                       │ wake
//!                                   ▲                                   ▼
//!                                   └── next_unsent / done ── connection task ── TCP/TLS ── gateway
//! ```
//!
//! `push` takes the queue's lock for one `write(2)`; the engine never holds
//! it across IO with the gateway or an `fdatasync` (the sync job runs
//! outside it, on tokio's blocking pool).

mod connect;
pub(crate) mod session;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use awp_protocol::{CompressionSet, Frame, Limits};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use self::session::{Answered, End, Session, SessionSettings};
use crate::config::{Auth, ClientConfig, QueuePlace, Token};
use crate::queue::{DiskQueue, MemoryQueue, Queue, QueueError, QueueStats, SealLimits};
use crate::record::{Record, RecordError};

/// How long `close` waits for the batches in flight to be answered.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// What went wrong for the app.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The configuration cannot work (names the key).
    #[error("{0}")]
    Config(String),
    /// The record breaks a rule of AWP/1.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The queue failed (a full disk: [`ClientError::is_disk_full`]).
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The engine stopped for good (AUTH_FAILED, UNSUPPORTED_VERSION) or
    /// was closed.
    #[error("the client stopped: {0}")]
    Stopped(String),
    /// `flush` ran out of time.
    #[error("not everything was acknowledged within the time given")]
    Timeout,
}

impl ClientError {
    /// Whether the disk is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, ClientError::Queue(q) if q.is_disk_full())
    }
}

/// The client's counters ([`Client::stats`]).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ClientStats {
    /// Records pushed since the client was opened.
    pub records_pushed: u64,
    /// Records the gateway stored (ACK OK).
    pub records_acked: u64,
    /// Records the gateway refused (ACK REJECTED), and the last reason.
    pub records_rejected: u64,
    /// The last REJECTED's message.
    pub last_rejection: Option<String>,
    /// BATCH frames sent (resends included).
    pub batches_sent: u64,
    /// ACK RETRY answers.
    pub retries: u64,
    /// Connections that reached WELCOME.
    pub connects: u64,
    /// Connections that failed or ended badly.
    pub connection_failures: u64,
    /// Whether a connection is up now.
    pub connected: bool,
    /// The last connection problem.
    pub last_error: Option<String>,
    /// Why the engine stopped for good, if it did.
    pub stopped: Option<String>,
    /// The queue's counters.
    pub queue: QueueStats,
}

#[derive(Default)]
struct Counters {
    records_pushed: AtomicU64,
    records_acked: AtomicU64,
    records_rejected: AtomicU64,
    batches_sent: AtomicU64,
    retries: AtomicU64,
    connects: AtomicU64,
    connection_failures: AtomicU64,
    connected: AtomicBool,
}

/// What the app's threads and the engine share.
struct Shared {
    queue: Mutex<Box<dyn Queue>>,
    /// Signalled when a batch is answered (for `flush`).
    answered: Condvar,
    /// Wakes the sealer: a push reached a limit, a flush, a close.
    seal_now: Notify,
    /// Wakes the connection: batches are ready, or the client closes.
    send_now: Notify,
    /// Seal everything now, whatever the delay (flush, close).
    flushing: AtomicBool,
    closing: AtomicBool,
    counters: Counters,
    last_error: Mutex<Option<String>>,
    last_rejection: Mutex<Option<String>>,
    stopped: Mutex<Option<String>>,
    /// Whether `stopped` is set: what `push` reads, per record, instead of
    /// taking a lock.
    has_stopped: AtomicBool,
    /// A token the app handed over ([`Client::set_token`]), taken before
    /// the next HELLO.
    next_token: Mutex<Option<Token>>,
    /// Where batches are sealed: the configured limits, the count capped
    /// by the last WELCOME (read at every push: atomics, not a lock).
    seal_records: AtomicU32,
    seal_bytes: usize,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Box<dyn Queue>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn note_error(&self, what: String) {
        *self.last_error.lock().unwrap_or_else(PoisonError::into_inner) = Some(what);
    }

    fn stopped(&self) -> Option<String> {
        if !self.has_stopped.load(Ordering::Acquire) {
            return None;
        }
        self.stopped.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn seal_limits(&self) -> SealLimits {
        SealLimits {
            max_records: self.seal_records.load(Ordering::Relaxed),
            max_bytes: self.seal_bytes,
        }
    }
}

/// An open client: push records from any thread; the engine delivers them.
pub struct Client {
    shared: Arc<Shared>,
    engine: Option<std::thread::JoinHandle<()>>,
    /// Whether it authenticates with tokens (`set_token` needs them).
    takes_tokens: bool,
}

impl Client {
    /// Opens the queue and starts the engine's thread.
    pub fn open(config: ClientConfig) -> Result<Client, ClientError> {
        check(&config)?;
        let queue: Box<dyn Queue> = match &config.queue {
            QueuePlace::Disk(dir) => Box::new(DiskQueue::open(dir, config.queue_options)?),
            QueuePlace::Memory => Box::new(MemoryQueue::new(config.queue_options)),
        };
        let tls = connect::tls_connector(&config)?;
        let takes_tokens = !matches!(config.auth, Auth::ClientCert { .. });
        let shared = Arc::new(Shared {
            queue: Mutex::new(queue),
            answered: Condvar::new(),
            seal_now: Notify::new(),
            send_now: Notify::new(),
            flushing: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            counters: Counters::default(),
            last_error: Mutex::new(None),
            last_rejection: Mutex::new(None),
            stopped: Mutex::new(None),
            has_stopped: AtomicBool::new(false),
            next_token: Mutex::new(None),
            seal_records: AtomicU32::new(config.seal.max_records),
            seal_bytes: config.seal.max_bytes,
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClientError::Config(format!("cannot start the engine: {e}")))?;
        let engine = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("awp-client".into())
                .spawn(move || {
                    runtime.block_on(run(shared, config, tls));
                    // A name lookup still running (getaddrinfo cannot be
                    // cancelled) must not hold `close`.
                    runtime.shutdown_timeout(Duration::from_secs(1));
                })
                .map_err(|e| ClientError::Config(format!("cannot start the engine's thread: {e}")))?
        };
        Ok(Client {
            shared,
            engine: Some(engine),
            takes_tokens,
        })
    }

    /// Queues a record. Returns once it is written to the OS (a disk queue):
    /// it survives the app being killed from then on.
    pub fn push(&self, record: &Record) -> Result<(), ClientError> {
        if let Some(why) = self.shared.stopped() {
            return Err(ClientError::Stopped(why));
        }
        let unsealed = {
            let mut queue = self.shared.queue();
            queue.push(record)?;
            queue.unsealed()
        };
        self.shared.counters.records_pushed.fetch_add(1, Ordering::Relaxed);
        let limits = self.shared.seal_limits();
        if unsealed.records >= limits.max_records || unsealed.bytes >= limits.max_bytes || unsealed.records == 1 {
            // Full, or the first of a batch (the sealer starts its delay).
            self.shared.seal_now.notify_one();
        }
        Ok(())
    }

    /// Queues a record given as JSON (the test vectors' shape, `time_ms`).
    pub fn push_json(&self, json: &str) -> Result<(), ClientError> {
        self.push(&Record::from_json(json)?)
    }

    /// Seals what is queued and waits until every record was answered
    /// (stored or rejected), or `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<(), ClientError> {
        let deadline = Instant::now() + timeout;
        self.shared.flushing.store(true, Ordering::SeqCst);
        self.shared.seal_now.notify_one();
        let mut queue = self.shared.queue();
        let result = loop {
            if queue.is_empty() {
                break Ok(());
            }
            if let Some(why) = self.shared.stopped() {
                break Err(ClientError::Stopped(why));
            }
            if self.shared.closing.load(Ordering::SeqCst) {
                break Err(ClientError::Stopped("the client is closing".into()));
            }
            let now = Instant::now();
            if now >= deadline {
                break Err(ClientError::Timeout);
            }
            let wait = (deadline - now).min(Duration::from_millis(100));
            queue = self
                .shared
                .answered
                .wait_timeout(queue, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        };
        drop(queue);
        self.shared.flushing.store(false, Ordering::SeqCst);
        result
    }

    /// Hands over a new token (the agent's backend issued one): it is said
    /// in the next HELLO. A connection that is up keeps going (the gateway
    /// checks a token only at HELLO).
    pub fn set_token(&self, token: Token) -> Result<(), ClientError> {
        if !self.takes_tokens {
            return Err(ClientError::Config(
                "token: this client authenticates with client_cert, not tokens".into(),
            ));
        }
        *self.shared.next_token.lock().unwrap_or_else(PoisonError::into_inner) = Some(token);
        Ok(())
    }

    /// Starts closing without waiting: the engine stops sending new
    /// batches, and a `flush` under way returns (`Stopped`). `close` still
    /// has to be called; the Java binding calls this first so that its
    /// `close` does not wait out another thread's `flush`.
    pub fn begin_close(&self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        self.shared.seal_now.notify_one();
        self.shared.send_now.notify_one();
        self.shared.answered.notify_all();
    }

    /// The counters.
    pub fn stats(&self) -> ClientStats {
        let c = &self.shared.counters;
        ClientStats {
            records_pushed: c.records_pushed.load(Ordering::Relaxed),
            records_acked: c.records_acked.load(Ordering::Relaxed),
            records_rejected: c.records_rejected.load(Ordering::Relaxed),
            last_rejection: self
                .shared
                .last_rejection
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            batches_sent: c.batches_sent.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            connects: c.connects.load(Ordering::Relaxed),
            connection_failures: c.connection_failures.load(Ordering::Relaxed),
            connected: c.connected.load(Ordering::Relaxed),
            last_error: self
                .shared
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            stopped: self.shared.stopped(),
            queue: self.shared.queue().stats(),
        }
    }

    /// Stops the engine: says BYE if connected, syncs the queue, and joins
    /// the engine's thread (within a few seconds). What was not acknowledged
    /// stays in a disk queue for the next open.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        self.shared.seal_now.notify_one();
        self.shared.send_now.notify_one();
        if let Some(engine) = self.engine.take() {
            let _ = engine.join();
        }
        let _ = self.shared.queue().sync();
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop();
    }
}

fn check(config: &ClientConfig) -> Result<(), ClientError> {
    if config.gateways.is_empty() {
        return Err(ClientError::Config("gateways: none given".into()));
    }
    if !awp_protocol::is_valid_tenant_id(&config.tenant) {
        return Err(ClientError::Config(format!(
            "tenant: {:?} is not 1-64 bytes of [A-Za-z0-9_.-]",
            config.tenant
        )));
    }
    if !awp_protocol::is_valid_device_id(&config.device) {
        return Err(ClientError::Config(format!(
            "device: {:?} is not 1-128 bytes of [A-Za-z0-9_.:@-]",
            config.device
        )));
    }
    if matches!(config.auth, Auth::ClientCert { .. }) && config.tls.is_none() {
        return Err(ClientError::Config(
            "client_cert: needs TLS (tls_ca or tls: true)".into(),
        ));
    }
    if config.compression == awp_protocol::Compression::Zstd && !cfg!(feature = "zstd") {
        return Err(ClientError::Config(
            "compression: zstd is not built into this library (awp-client's feature zstd)".into(),
        ));
    }
    // Durations that would spin the engine or deliver nothing.
    for (key, value, least) in [
        ("sync_interval_ms", config.sync_interval, Duration::from_millis(10)),
        ("ack_timeout_ms", config.ack_timeout, Duration::from_millis(100)),
        ("connect_timeout_ms", config.connect_timeout, Duration::from_millis(100)),
        ("backoff_min_ms", config.backoff.0, Duration::from_millis(1)),
    ] {
        if value < least {
            return Err(ClientError::Config(format!(
                "{key}: {} ms is below the least that works, {} ms",
                value.as_millis(),
                least.as_millis()
            )));
        }
    }
    if config.backoff.0 > config.backoff.1 {
        return Err(ClientError::Config("backoff_min_ms: above backoff_max_ms".into()));
    }
    if config.seal.max_records == 0 || config.seal.max_bytes == 0 {
        return Err(ClientError::Config(
            "batch_max_records and batch_max_bytes must be at least 1".into(),
        ));
    }
    Ok(())
}

/// The engine: the sealer and the connection, until the client closes.
async fn run(shared: Arc<Shared>, config: ClientConfig, tls: Option<tokio_rustls::TlsConnector>) {
    let sealer = seal_and_sync(shared.clone(), config.batch_delay, config.sync_interval);
    let connection = connect_and_send(shared.clone(), &config, tls.as_ref());
    tokio::select! {
        () = sealer => {}
        () = connection => {}
    }
    // Closing: what was sealed and not answered stays queued.
    let _ = shared.queue().sync();
}

/// Seals batches when full, when their oldest record has waited the delay,
/// or on flush and close; syncs what was written every `sync_interval` and
/// before a batch is first sent.
async fn seal_and_sync(shared: Arc<Shared>, delay: Duration, sync_interval: Duration) {
    // At once: what the last process left unsynced is made durable before
    // anything is sent (the disk queue hands nothing out until then).
    let mut next_sync = tokio::time::Instant::now();
    loop {
        let closing = shared.closing.load(Ordering::SeqCst);
        let flushing = shared.flushing.load(Ordering::SeqCst) || closing;
        let limits = shared.seal_limits();
        let (sealed, wait_for) = {
            let mut queue = shared.queue();
            let _ = queue.expire();
            let mut sealed = 0;
            loop {
                let u = queue.unsealed();
                let due = u.records > 0
                    && (flushing
                        || u.records >= limits.max_records
                        || u.bytes >= limits.max_bytes
                        || u.oldest.is_some_and(|t| t.elapsed() >= delay));
                if !due {
                    break;
                }
                match queue.seal(limits) {
                    Ok(Some(_)) => sealed += 1,
                    Ok(None) => break,
                    Err(e) => {
                        shared.note_error(format!("sealing: {e}"));
                        break;
                    }
                }
            }
            let wait_for = queue.unsealed().oldest.map(|t| delay.saturating_sub(t.elapsed()));
            (sealed, wait_for)
        };
        let now = tokio::time::Instant::now();
        if sealed > 0 || now >= next_sync {
            // New batches, or batches whose seals the sync covered, may go now.
            if sync(&shared).await || sealed > 0 {
                shared.send_now.notify_one();
            }
            next_sync = now + sync_interval;
        }
        if closing {
            return std::future::pending().await;
        }
        let mut wake = next_sync;
        if let Some(w) = wait_for {
            wake = wake.min(now + w);
        }
        tokio::select! {
            () = shared.seal_now.notified() => {}
            () = tokio::time::sleep_until(wake) => {}
        }
    }
}

/// Runs the queue's sync job off the engine's thread and records it.
/// Returns whether it made anything durable.
async fn sync(shared: &Arc<Shared>) -> bool {
    let job = shared.queue().sync_job();
    let failed = match job {
        Ok(None) => return false,
        Ok(Some(job)) => match tokio::task::spawn_blocking(move || job.run()).await {
            Ok(Ok(mark)) => {
                shared.queue().synced(mark);
                return true;
            }
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        },
        Err(e) => e.to_string(),
    };
    shared.note_error(format!("syncing the queue: {failed}"));
    false
}

/// Connects, sends, reconnects with backoff, until the client closes or a
/// final ERROR stops it.
async fn connect_and_send(shared: Arc<Shared>, config: &ClientConfig, tls: Option<&tokio_rustls::TlsConnector>) {
    let mut failures = 0u32;
    let mut rng = fastrand::Rng::new();
    let mut next_gateway = 0usize;
    let mut token: Option<Token> = match &config.auth {
        Auth::Token(t) => Some(*t),
        _ => None,
    };
    loop {
        if shared.closing.load(Ordering::SeqCst) {
            return;
        }
        // Nothing to send: wait (for a push, a flush, a close) rather than
        // keep a connection up for nothing... unless batches wait.
        let address = config.gateways[next_gateway % config.gateways.len()].clone();
        next_gateway += 1;
        let started = Instant::now();
        let outcome = connection(&shared, config, tls, &address, &mut token).await;
        shared.counters.connected.store(false, Ordering::Relaxed);
        shared.queue().rewind();
        let pause = match outcome {
            Ok(ConnectionEnd::Closed) => return,
            Ok(ConnectionEnd::Idle) => {
                failures = 0;
                continue;
            }
            Ok(ConnectionEnd::GoAway(ms)) => {
                failures = 0;
                session::jittered(ms, &mut rng)
            }
            Err(end) => {
                shared.counters.connection_failures.fetch_add(1, Ordering::Relaxed);
                shared.note_error(end.describe());
                if end.is_final() {
                    *shared.stopped.lock().unwrap_or_else(PoisonError::into_inner) = Some(end.describe());
                    shared.has_stopped.store(true, Ordering::Release);
                    shared.answered.notify_all();
                    return;
                }
                if started.elapsed() >= config.stable_after {
                    failures = 0;
                }
                failures += 1;
                backoff(failures, config.backoff, &mut rng)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = closing(&shared) => return,
        }
    }
}

async fn closing(shared: &Shared) {
    while !shared.closing.load(Ordering::SeqCst) {
        shared.send_now.notified().await;
    }
}

/// Reconnect backoff: full jitter, doubling from the first delay to the cap.
fn backoff(failures: u32, (first, cap): (Duration, Duration), rng: &mut fastrand::Rng) -> Duration {
    let ceiling = first
        .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
        .min(cap);
    ceiling.mul_f64(rng.f64())
}

enum ConnectionEnd {
    Closed,
    /// Idle for `idle_close`: connect again when there is something to send.
    Idle,
    GoAway(u64),
}

/// Why a connection failed.
enum Failure {
    Connect(String),
    Session(End),
    Io(String),
    Token(String),
}

impl Failure {
    fn is_final(&self) -> bool {
        matches!(self, Failure::Session(e) if e.is_final())
    }

    fn describe(&self) -> String {
        match self {
            Failure::Connect(e) | Failure::Io(e) => e.clone(),
            Failure::Token(e) => format!("token source: {e}"),
            Failure::Session(End::Error { code, message }) => {
                let name = awp_protocol::ErrorCode::from_u16(*code).map_or("ERROR", |c| c.name());
                format!("{name}: {message}")
            }
            Failure::Session(End::AckTimeout { seq }) => format!("no ACK for batch {seq} in time"),
            Failure::Session(End::Protocol(e)) => e.clone(),
            Failure::Session(End::GoAway { .. }) => "GOAWAY".into(),
        }
    }
}

/// A token to say in HELLO: the one held, or a fresh one from the source.
fn token_for_hello(config: &ClientConfig, held: &mut Option<Token>) -> Result<Option<Token>, Failure> {
    match &config.auth {
        Auth::ClientCert { .. } => Ok(None),
        Auth::Token(t) => Ok(Some(held.unwrap_or(*t))),
        Auth::Source(source) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let fresh_enough = |t: &Token| t.expiry == 0 || t.expiry > now + config.token_refresh_before.as_secs();
            if let Some(t) = held.filter(fresh_enough) {
                return Ok(Some(t));
            }
            let t = source().map_err(Failure::Token)?;
            *held = Some(t);
            Ok(Some(t))
        }
    }
}

async fn connection(
    shared: &Arc<Shared>,
    config: &ClientConfig,
    tls: Option<&tokio_rustls::TlsConnector>,
    address: &str,
    token: &mut Option<Token>,
) -> Result<ConnectionEnd, Failure> {
    // Wait for something to send before connecting: an idle agent holds no
    // connection (and no battery).
    loop {
        if shared.closing.load(Ordering::SeqCst) {
            return Ok(ConnectionEnd::Closed);
        }
        if !shared.queue().is_empty() {
            break;
        }
        shared.send_now.notified().await;
    }
    // A token the app handed over since is said now, not a stale one.
    if let Some(given) = shared.next_token.lock().unwrap_or_else(PoisonError::into_inner).take() {
        *token = Some(given);
    }
    let hello_token = token_for_hello(config, token)?;
    let mut rbuf = BytesMut::with_capacity(8 * 1024);
    let handshake = async {
        let mut stream = connect::open(address, config, tls, config.connect_timeout)
            .await
            .map_err(Failure::Connect)?;
        // Offer what this build can make (WELCOME picks from it).
        let compression = if cfg!(feature = "zstd") {
            CompressionSet::ALL
        } else {
            CompressionSet::NONE.with(awp_protocol::Compression::Lz4)
        };
        let hello = connect::hello(config, hello_token, compression);
        stream
            .write_all(&hello)
            .await
            .map_err(|e| Failure::Io(format!("{address}: {e}")))?;
        let first = tokio::time::timeout(
            config.connect_timeout,
            read_frame(&mut stream, &mut rbuf, &Limits::DEFAULT),
        )
        .await
        .map_err(|_| Failure::Connect(format!("{address}: no WELCOME in time")))??;
        Ok::<_, Failure>((stream, first))
    };
    // Closing does not wait for a connect or a WELCOME.
    let (stream, first) = tokio::select! {
        done = handshake => done?,
        () = closing(shared) => return Ok(ConnectionEnd::Closed),
    };
    let welcome = match first {
        Frame::Welcome(w) => w,
        Frame::Error(e) => {
            return Err(Failure::Session(End::Error {
                code: e.code,
                message: e.message,
            }));
        }
        other => {
            return Err(Failure::Session(End::Protocol(format!(
                "the gateway answered HELLO with {:?}",
                other.frame_type()
            ))));
        }
    };
    shared.counters.connects.fetch_add(1, Ordering::Relaxed);
    shared.counters.connected.store(true, Ordering::Relaxed);
    {
        // Batches sealed from now on fit this gateway's count (batches
        // sealed before keep theirs: a sealed batch never changes).
        let welcome_max = u32::try_from(welcome.max_batch_records).unwrap_or(u32::MAX);
        let max_records = config.seal.max_records.min(welcome_max).max(1);
        shared.seal_records.store(max_records, Ordering::Relaxed);
        shared.queue().set_seal_limits(shared.seal_limits());
    }
    let mut session = Session::new(
        &welcome,
        SessionSettings {
            compression: config.compression,
            ack_timeout: config.ack_timeout,
        },
        Instant::now(),
    );
    let read_limits = welcome.limits();
    let mut wbuf = BytesMut::with_capacity(64 * 1024);
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut closing_since: Option<Instant> = None;
    let mut idle_since: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let closing = shared.closing.load(Ordering::SeqCst);
        if closing && closing_since.is_none() {
            closing_since = Some(now);
        }
        // Nothing in flight and nothing queued: the connection is closed
        // after a while (an idle agent holds no socket, and no radio), and
        // opened again by the next push.
        if session.idle() && shared.queue().is_empty() {
            idle_since.get_or_insert(now);
        } else {
            idle_since = None;
        }
        let idle_over = idle_since.is_some_and(|t| now.duration_since(t) >= config.idle_close);
        // Fill the window: RETRY's batches first, then the queue's (not
        // once closing: what is in flight is answered, the rest stays queued).
        if !closing {
            fill_window(&mut session, &mut wbuf, now, shared);
        }
        // Closing: BYE once in-flight batches are answered, or after a
        // few seconds whatever they are (they stay queued).
        let bye = idle_over
            || closing && (session.idle() || closing_since.is_some_and(|t| now.duration_since(t) >= CLOSE_WAIT));
        if bye {
            let _ = Frame::Bye.encode(&mut wbuf);
        }
        session.ping_if_idle(&mut wbuf, now);
        if !wbuf.is_empty() {
            // A gateway that stops reading must not hold the engine (nor
            // `close`) forever: the ACK deadline bounds a write too.
            // Closing, a BYE the gateway does not take waits CLOSE_WAIT at most.
            let deadline = if closing { CLOSE_WAIT } else { config.ack_timeout };
            let write = tokio::time::timeout(deadline, writer.write_all(&wbuf));
            let written = if closing {
                write.await
            } else {
                tokio::select! {
                    w = write => w,
                    // `close` does not wait out a write the gateway is not
                    // taking (what is unanswered stays queued).
                    () = self::closing(shared) => return Ok(ConnectionEnd::Closed),
                }
            };
            match written {
                Ok(Ok(())) => wbuf.clear(),
                Ok(Err(e)) => return Err(Failure::Io(format!("{address}: {e}"))),
                Err(_) => {
                    return Err(Failure::Io(format!(
                        "{address}: the gateway took nothing for {} s",
                        deadline.as_secs()
                    )));
                }
            }
        }
        if bye {
            return Ok(if closing {
                ConnectionEnd::Closed
            } else {
                ConnectionEnd::Idle
            });
        }
        if let Some(end) = session.end(now) {
            return match end {
                End::GoAway { reconnect_after_ms } => Ok(ConnectionEnd::GoAway(reconnect_after_ms)),
                other => Err(Failure::Session(other)),
            };
        }
        let mut wake = session.next_wake();
        if let Some(t) = closing_since {
            wake = wake.min(t + CLOSE_WAIT);
        }
        if let Some(t) = idle_since {
            wake = wake.min(t + config.idle_close);
        }
        tokio::select! {
            frame = read_frame(&mut reader, &mut rbuf, &read_limits) => {
                let frame = frame?;
                let answered = session.on_frame(frame, &mut wbuf, Instant::now()).map_err(Failure::Session)?;
                answer(shared, answered);
            }
            () = shared.send_now.notified() => {}
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
        }
    }
}

/// Sends what the window takes: RETRY's batches whose delay is over first,
/// then the queue's.
fn fill_window(session: &mut Session, wbuf: &mut BytesMut, now: Instant, shared: &Shared) {
    loop {
        if let Some(batch) = session.due_retry(now) {
            send(session, batch, wbuf, now, shared);
            continue;
        }
        if !session.wants_new() {
            return;
        }
        let next = shared.queue().next_unsent();
        match next {
            Ok(Some(batch)) => send(session, batch, wbuf, now, shared),
            Ok(None) => return,
            Err(e) => {
                shared.note_error(format!("reading the queue: {e}"));
                return;
            }
        }
    }
}

fn send(session: &mut Session, batch: crate::queue::SealedBatch, wbuf: &mut BytesMut, now: Instant, shared: &Shared) {
    let seq = batch.seq;
    let records = batch.records;
    match session.send(batch, wbuf, now) {
        Ok(()) => {
            shared.counters.batches_sent.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            // This gateway's limits cannot take it, nor can any like it: it
            // is dropped as REJECTED would drop it, and said so.
            let reason = format!("batch {seq} ({records} records) cannot be sent: {e}");
            shared
                .counters
                .records_rejected
                .fetch_add(u64::from(records), Ordering::Relaxed);
            *shared.last_rejection.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason);
            let _ = shared.queue().done(seq);
            shared.answered.notify_all();
        }
    }
}

fn answer(shared: &Shared, answered: Answered) {
    let c = &shared.counters;
    match answered {
        Answered::Stored { seq, records, .. } => {
            c.records_acked.fetch_add(u64::from(records), Ordering::Relaxed);
            if let Err(e) = shared.queue().done(seq) {
                shared.note_error(format!("recording an ACK: {e}"));
            }
            shared.answered.notify_all();
        }
        Answered::Rejected { seq, records, reason } => {
            c.records_rejected.fetch_add(u64::from(records), Ordering::Relaxed);
            *shared.last_rejection.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason);
            if let Err(e) = shared.queue().done(seq) {
                shared.note_error(format!("recording an ACK: {e}"));
            }
            shared.answered.notify_all();
        }
        Answered::Retry { .. } => {
            c.retries.fetch_add(1, Ordering::Relaxed);
        }
        Answered::Unknown { seq } => shared.note_error(format!("an ACK for batch {seq}, which is not in flight")),
        Answered::Nothing => {}
    }
}

/// Reads one whole frame (the gateway's are small; a BATCH never comes).
async fn read_frame<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Frame, Failure> {
    loop {
        // The gateway's frames are small (ACKs, PONGs): a copy to decode from.
        let view = bytes::Bytes::copy_from_slice(buf);
        match awp_protocol::decode(&view, limits) {
            Ok(awp_protocol::Decoded::Complete(frame, used)) => {
                let _ = buf.split_to(used);
                return Ok(frame);
            }
            Ok(awp_protocol::Decoded::Incomplete(more)) => {
                buf.reserve(more);
                let n = reader
                    .read_buf(buf)
                    .await
                    .map_err(|e| Failure::Io(format!("reading from the gateway: {e}")))?;
                if n == 0 {
                    return Err(Failure::Io("the gateway closed the connection".into()));
                }
            }
            Err(e) => {
                return Err(Failure::Session(End::Protocol(format!(
                    "a bad frame from the gateway: {e}"
                ))));
            }
        }
    }
}
