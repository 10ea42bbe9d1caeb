//! One connection: a thin IO loop around [`Session`].
//!
//! It reads into the session's buffer, writes the frames the session emits,
//! hands `Store` actions to the pipeline and feeds the outcomes back, waits
//! in line for memory budget when the session asks, and wakes the session at
//! its deadline and at shutdown. Every wait is bounded: reads by the
//! session's idle deadline, budget by the session's budget deadline, writes
//! by `write_timeout`, storage by the pipeline's write timeout.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use awp_protocol::Frame;
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use crate::admit::admission::{Admission, Waiting};
use crate::admit::budget::{BudgetPermit, MemoryBudget};
use crate::admit::tenant::LiveTenants;
use crate::pipeline::outcome::BatchOutcome;
use crate::pipeline::{Pipeline, SubmitError};
use crate::session::{Action, Note, Now, Session, SessionSettings, Transport};
use crate::telemetry;

/// What every connection shares.
pub struct ConnContext {
    /// Session parameters for new connections (a reload replaces them;
    /// a session keeps the ones it started with, told in its WELCOME).
    pub settings: ArcSwap<SessionSettings>,
    /// Tenants for authentication, as the last reload left them.
    pub tenants: Arc<LiveTenants>,
    /// The memory budget batches are held under.
    pub budget: Arc<MemoryBudget>,
    /// Places for authenticated connections, and each device's session.
    pub admission: Arc<Admission>,
    /// Where stored batches go.
    pub pipeline: Pipeline,
    /// Bound on one write to the agent.
    pub write_timeout: Duration,
}

/// A wait in line for memory budget; kept across loop turns so the place
/// in line is kept.
type BudgetWait = Pin<Box<dyn Future<Output = BudgetPermit> + Send>>;

/// What woke the connection.
enum Event {
    Budget(BudgetPermit),
    Shutdown,
    /// Something is in the mailbox: outcomes, or an eviction or replacement.
    Mail,
    Read(std::io::Result<usize>),
    Deadline,
    /// Closed to make room while waiting to authenticate.
    Evicted,
    /// A newer session of the same device was admitted.
    Replaced,
    /// A reload revoked the session's credentials.
    Revoked,
}

/// Runs one connection to its end. `waiting` is its place among the
/// connections waiting to authenticate, left once HELLO is accepted;
/// `guard` is dropped when the connection ends (taken here rather than in
/// a wrapping future, which would store the arguments twice).
pub async fn serve<S, G>(
    mut stream: S,
    transport: Transport,
    ctx: Arc<ConnContext>,
    mut shutdown: watch::Receiver<bool>,
    waiting: Waiting,
    guard: G,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut session_id = [0u8; 16];
    if getrandom::fill(&mut session_id).is_err() {
        tracing::error!("no randomness for a session id; closing connection");
        return;
    }
    let mut session = Session::new(
        ctx.settings.load_full(),
        ctx.tenants.clone(),
        ctx.budget.clone(),
        ctx.admission.clone(),
        session_id,
        transport,
        Now::read(),
    );
    // One mailbox for everything the connection is told: its batches'
    // outcomes, its eviction from the waiting pool, and (once admitted)
    // that its session must go away. One wait instead of three keeps the
    // task small.
    let mailbox = waiting.mailbox();
    let agent = waiting.source().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
    session.attach(agent, mailbox.clone());
    // Reads and writes never overlap (the loop writes, then waits), so the
    // stream is not split.
    let mut wbuf = BytesMut::new();
    let mut budget_wait: Option<BudgetWait> = None;
    let mut actions = Vec::new();
    let mut closing = false;
    let mut waiting = Some(waiting);
    let mut evicted = false;
    let mut draining = *shutdown.borrow();
    if draining {
        session.drain(Now::read(), &mut actions);
    }
    loop {
        // Carry out the session's actions; pipeline refusals feed back at once.
        while !actions.is_empty() {
            for action in std::mem::take(&mut actions) {
                match action {
                    Action::Send(frame) => {
                        sent(&frame);
                        if let Err(e) = frame.encode(&mut wbuf) {
                            tracing::error!(error = %e, "cannot encode a frame the session produced");
                            closing = true;
                        }
                    }
                    Action::Store { tenant, batch, permit } => {
                        let seq = batch.seq();
                        if let Err(SubmitError::Closed) = ctx.pipeline.submit(&tenant.id, batch, permit, &mailbox) {
                            session.batch_done(seq, BatchOutcome::Retry("gateway stopping".into()), &mut actions);
                        }
                    }
                    Action::AwaitBudget(request) => budget_wait = Some(Box::pin(request.granted())),
                    Action::Close => closing = true,
                    Action::Note(note) => noted(note),
                }
            }
        }
        if !wbuf.is_empty() {
            // Flush too: a TLS stream may hold records back until flushed.
            let write = async {
                stream.write_all(&wbuf).await?;
                stream.flush().await
            };
            match tokio::time::timeout(ctx.write_timeout, write).await {
                Ok(Ok(())) => {
                    telemetry::global().bytes_sent(wbuf.len());
                    // Freed, not kept: most connections are idle most of the time.
                    wbuf = BytesMut::new();
                }
                Ok(Err(_)) | Err(_) => break,
            }
        }
        if closing || session.is_closed() {
            break;
        }
        if waiting.is_some() && session.is_admitted() {
            // Counted among the authenticated connections from now on.
            waiting = None;
        }
        if !session.awaiting_budget() {
            // Answered otherwise (drain, timeout): leave the line.
            budget_wait = None;
        }
        let reading = session.wants_input();
        let mut input = if reading { session.take_input() } else { BytesMut::new() };
        let deadline = tokio::time::Instant::from_std(session.deadline());
        let event = tokio::select! {
            permit = async {
                match budget_wait.as_mut() {
                    Some(wait) => wait.await,
                    None => std::future::pending().await,
                }
            } => Event::Budget(permit),
            _ = shutdown.changed(), if !draining => Event::Shutdown,
            _ = mailbox.arrived() => Event::Mail,
            read = stream.read_buf(&mut input), if reading => Event::Read(read),
            _ = tokio::time::sleep_until(deadline) => Event::Deadline,
        };
        // What the mail says: an eviction counts while waiting to
        // authenticate, a replacement once admitted (an eviction that raced
        // the HELLO is moot), and neither once draining.
        let event = match event {
            Event::Mail if !draining && waiting.is_some() && mailbox.was_evicted() => Event::Evicted,
            Event::Mail if !draining && waiting.is_none() && mailbox.take_told_to_go() => {
                // Outcomes that came with it are handled on the next wake-up.
                mailbox.put_back_wake();
                Event::Replaced
            }
            Event::Mail if !draining && waiting.is_none() && mailbox.take_revoked() => {
                mailbox.put_back_wake();
                Event::Revoked
            }
            other => other,
        };
        let now = Now::read();
        match event {
            Event::Read(Ok(n)) if n > 0 => session.received(input, n, now, &mut actions),
            other => {
                if reading {
                    session.put_back_input(input);
                }
                match other {
                    // Ok(0): the client closed its sending side.
                    Event::Read(_) => session.eof(&mut actions),
                    Event::Budget(permit) => {
                        budget_wait = None;
                        session.budget_granted(permit, now, &mut actions);
                    }
                    // A dropped sender means the server is gone: drain too.
                    Event::Shutdown => {
                        draining = true;
                        session.drain(now, &mut actions);
                    }
                    // Every answer that is ready, with one write.
                    Event::Mail => {
                        for (seq, outcome) in mailbox.take() {
                            session.batch_done(seq, outcome, &mut actions);
                        }
                    }
                    Event::Deadline => session.tick(now, &mut actions),
                    Event::Evicted => {
                        evicted = true;
                        session.evicted(&mut actions);
                    }
                    Event::Replaced => {
                        draining = true;
                        session.replaced(now, &mut actions);
                    }
                    Event::Revoked => {
                        draining = true;
                        session.revoked(now, &mut actions);
                    }
                }
            }
        }
    }
    let _ = tokio::time::timeout(ctx.write_timeout, stream.shutdown()).await;
    // An evicted connection does not linger: evictions come in floods, and
    // lingering would hold their sockets for a second each. One that never
    // authenticated keeps its place in the waiting pool while it lingers,
    // and stops lingering if evicted from it, so floods of connections that
    // fail their HELLO hold no more sockets than the pool has places.
    if !session.half_closed() && !evicted {
        match &waiting {
            Some(_) => {
                tokio::select! {
                    _ = linger(&mut stream) => {}
                    _ = mailbox.evicted() => {}
                }
            }
            None => linger(&mut stream).await,
        }
    }
    drop(guard);
}

/// Counts a frame the session sends.
fn sent(frame: &Frame) {
    let metrics = telemetry::global();
    metrics.frame_sent(frame.frame_type());
    match frame {
        Frame::Ack(ack) => metrics.ack_sent(ack.status),
        Frame::Error(error) => {
            if let Some(code) = awp_protocol::ErrorCode::from_u16(error.code) {
                metrics.error_sent(code);
            }
        }
        _ => {}
    }
}

/// Records what the session noted.
fn noted(note: Note) {
    let metrics = telemetry::global();
    match note {
        Note::FrameReceived(frame_type, bytes) => metrics.frame_received(frame_type, bytes),
        Note::RecordsReceived(records) => metrics.records_received(records),
        Note::AuthFailed(reason, tenant) => metrics.auth_failed(reason, tenant.as_deref()),
        Note::ConnectionRefused => metrics.connection_refused(),
        Note::Revoked => metrics.session_revoked(),
        Note::CredentialsExpired => metrics.session_credentials_expired(),
        Note::Aged => metrics.session_aged(),
    }
}

/// How long a closing connection keeps reading what the client still sends.
const LINGER: Duration = Duration::from_secs(1);

/// Reads and discards until the client closes or [`LINGER`] passes. Closing
/// a socket with unread input makes the kernel send a reset, and a reset can
/// make the client's stack discard the last frames (an ERROR, final ACKs)
/// before the agent reads them.
pub async fn linger<R: AsyncRead + Unpin>(reader: &mut R) {
    // On the heap: an array here would make every connection's task larger.
    let mut sink = vec![0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        while matches!(reader.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}
