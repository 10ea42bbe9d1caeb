//! One connection: a thin IO loop around [`Session`].
//!
//! It reads into a buffer the session consumes, writes the frames the
//! session emits, hands `Store` actions to the pipeline and feeds the
//! outcomes back, and wakes the session at its deadline and at shutdown.
//! Every wait is bounded: reads by the session's idle deadline, writes by
//! `write_timeout`, storage by the pipeline's write timeout.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use crate::pipeline::{Pipeline, SubmitError};
use crate::session::{Action, BatchOutcome, Now, Session, SessionSettings};
use crate::tenant::Tenants;

/// What every connection shares.
pub struct ConnContext {
    /// Session parameters.
    pub settings: Arc<SessionSettings>,
    /// Tenants for authentication.
    pub tenants: Arc<Tenants>,
    /// Where stored batches go.
    pub pipeline: Pipeline,
    /// Bound on one write to the agent.
    pub write_timeout: Duration,
}

type Pending = Pin<Box<dyn Future<Output = (u64, BatchOutcome)> + Send>>;

/// A connection held back by a full queue looks again at least this often
/// (it is normally woken by the writer).
const BACKPRESSURE_RECHECK: Duration = Duration::from_millis(500);

/// Read buffer growth step; the session reserves more only for a frame
/// whose header passed the length check.
const READ_CHUNK: usize = 16 * 1024;

/// Runs one connection to its end.
pub async fn serve<S>(
    stream: S,
    peer_certs: Option<Vec<CertificateDer<'static>>>,
    ctx: Arc<ConnContext>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut session_id = [0u8; 16];
    if getrandom::fill(&mut session_id).is_err() {
        tracing::error!("no randomness for a session id; closing connection");
        return;
    }
    let mut session = Session::new(
        ctx.settings.clone(),
        ctx.tenants.clone(),
        session_id,
        peer_certs,
        Now::read(),
    );
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut wbuf = BytesMut::with_capacity(1024);
    let mut pending: FuturesUnordered<Pending> = FuturesUnordered::new();
    let mut actions = Vec::new();
    let mut closing = false;
    let mut draining = *shutdown.borrow();
    // Stands in for a tenant's notifier before HELLO: never notified.
    let never = std::sync::Arc::new(tokio::sync::Notify::new());
    if draining {
        session.drain(&mut actions);
    }
    loop {
        // Carry out the session's actions; pipeline refusals feed back at once.
        while !actions.is_empty() {
            for action in std::mem::take(&mut actions) {
                match action {
                    Action::Send(frame) => {
                        metrics::counter!("awp_frames_sent_total", "type" => frame.frame_type().name()).increment(1);
                        if let Err(e) = frame.encode(&mut wbuf) {
                            tracing::error!(error = %e, "cannot encode a frame the session produced");
                            closing = true;
                        }
                    }
                    Action::Store { seq, tenant, items } => match ctx.pipeline.submit(&tenant.id, items) {
                        Ok(rx) => pending.push(Box::pin(async move {
                            let outcome = match rx.await {
                                Ok(Ok(())) => BatchOutcome::Stored,
                                // The details are logged by the writer, not told to agents.
                                Ok(Err(_)) => BatchOutcome::Retry("storage unavailable".into()),
                                Err(_) => BatchOutcome::Retry("storage writer stopped".into()),
                            };
                            (seq, outcome)
                        })),
                        Err(SubmitError::Full) => {
                            session.batch_done(seq, BatchOutcome::Retry("gateway busy".into()), &mut actions)
                        }
                        Err(SubmitError::Closed) => {
                            session.batch_done(seq, BatchOutcome::Retry("gateway stopping".into()), &mut actions)
                        }
                    },
                    Action::Close => closing = true,
                }
            }
        }
        if !wbuf.is_empty() {
            // Flush too: a TLS stream may hold records back until flushed.
            let write = async {
                writer.write_all(&wbuf).await?;
                writer.flush().await
            };
            match tokio::time::timeout(ctx.write_timeout, write).await {
                Ok(Ok(())) => {
                    metrics::counter!("awp_bytes_sent_total").increment(wbuf.len() as u64);
                    wbuf.clear();
                }
                Ok(Err(_)) | Err(_) => break,
            }
        }
        if closing || session.is_closed() {
            break;
        }
        if rbuf.capacity() - rbuf.len() < 1024 {
            rbuf.reserve(READ_CHUNK);
        }
        // Backpressure: while the tenant's queue is full, read nothing more
        // (the agent's writes block) until its writer makes room.
        let room_freed = session
            .tenant()
            .and_then(|t| ctx.pipeline.room_freed(&t.id))
            .unwrap_or_else(|| never.clone());
        let room_wait = room_freed.notified();
        tokio::pin!(room_wait);
        // Register interest before looking, so a wake-up in between is not lost.
        room_wait.as_mut().enable();
        let room = session.tenant().is_none_or(|t| ctx.pipeline.has_room(&t.id));
        let deadline = tokio::time::Instant::from_std(session.deadline());
        tokio::select! {
            _ = &mut room_wait, if !room => {
                metrics::counter!("awp_backpressure_waits_total").increment(1);
                session.hold(Now::read());
            }
            _ = tokio::time::sleep(BACKPRESSURE_RECHECK), if !room => session.hold(Now::read()),
            changed = shutdown.changed(), if !draining => {
                // A dropped sender means the server is gone: drain too.
                let _ = changed;
                draining = true;
                session.drain(&mut actions);
            }
            Some((seq, outcome)) = pending.next(), if !pending.is_empty() => {
                session.batch_done(seq, outcome, &mut actions);
            }
            read = reader.read_buf(&mut rbuf), if session.wants_input() && room => match read {
                // Ok(0): the client closed its sending side.
                Ok(0) | Err(_) => session.eof(&mut actions),
                Ok(_) => session.receive(&mut rbuf, Now::read(), &mut actions),
            },
            _ = tokio::time::sleep_until(deadline) => session.tick(Now::read(), &mut actions),
        }
    }
    let _ = tokio::time::timeout(ctx.write_timeout, writer.shutdown()).await;
    if !session.half_closed() {
        linger(&mut reader).await;
    }
}

/// How long a closing connection keeps reading what the client still sends.
const LINGER: Duration = Duration::from_secs(1);

/// Reads and discards until the client closes or [`LINGER`] passes. Closing
/// a socket with unread input makes the kernel send a reset, and a reset can
/// make the client's stack discard the last frames (an ERROR, final ACKs)
/// before the agent reads them.
pub async fn linger<R: AsyncRead + Unpin>(reader: &mut R) {
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        while matches!(reader.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}
