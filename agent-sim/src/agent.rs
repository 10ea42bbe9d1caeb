//! One simulated agent: a real AWP/1 client on its own connection, doing an
//! agent's duties (AWP1.md §6): a window of unacknowledged batches; the same
//! `seq` and content resent after ACK RETRY, GOAWAY or a lost connection;
//! PING after a heartbeat of silence; BYE at the end.
//!
//! Batches are pre-encoded [`PreparedBatch`] templates: a batch is a
//! template sent under its own `seq` (which is all that must vary: the
//! record keys contain it). Everything the window allows is written with
//! one `write_all`.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use awp_protocol::codec::AwpCodec;
use awp_protocol::{
    AckStatus, Compression, CompressionSet, ErrorCode, Frame, Hello, HelloAuth, Limits, MAGIC, Platform, PreparedBatch,
};
use bytes::BytesMut;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio_util::codec::FramedRead;

use crate::scenario::Scenario;
use crate::stats::Stats;

/// The version agents report in HELLO.
pub const AGENT_VERSION: &str = concat!("agent-sim/", env!("CARGO_PKG_VERSION"));

/// What every agent of a run shares.
pub struct RunContext {
    /// The scenario.
    pub scenario: Scenario,
    /// Pre-encoded batch contents.
    pub templates: Vec<PreparedBatch>,
    /// TLS, if the scenario has it.
    pub tls: Option<(tokio_rustls::TlsConnector, rustls_pki_types::ServerName<'static>)>,
    /// Counters and histograms.
    pub stats: Arc<Stats>,
    /// No new batches after this.
    pub stop_sending: Instant,
    /// Agents give up on unacked batches after this.
    pub give_up: Instant,
    /// Bumped at each reconnect storm.
    pub storms: watch::Receiver<u64>,
    /// Every agent's first batch `seq` (the run's start in unix µs unless
    /// the scenario fixes it): a later run's batches never share an earlier
    /// one's keys, even for the same device.
    pub first_seq: u64,
}

/// Who an agent is.
#[derive(Debug, Clone)]
pub struct AgentPlan {
    /// 0-based agent number.
    pub index: usize,
    /// Device id.
    pub device: String,
    /// Platform in HELLO.
    pub platform: Platform,
    /// Gateway to connect to.
    pub gateway: SocketAddr,
    /// Loopback source address, if spread.
    pub source: Option<IpAddr>,
}

/// What an agent did, for the report and for verification.
#[derive(Debug, Clone)]
pub struct AgentResult {
    /// The agent.
    pub plan: AgentPlan,
    /// Batches acked OK: (seq, template index).
    pub acked: Vec<(u64, usize)>,
    /// Batches never acked OK by the end (given up).
    pub unacked: Vec<(u64, usize)>,
    /// Why the agent stopped before the end, if it did (an ERROR that
    /// retrying cannot fix: AUTH_FAILED, UNSUPPORTED_VERSION).
    pub stopped_by: Option<String>,
    /// Whether a WELCOME ever came (an agent that never got one sent nothing).
    pub welcomed: bool,
    /// Open loop: batches the rate scheduled that were never made, the
    /// agent being without a connection from their time to the end.
    pub never_sent: u64,
    /// The last `seq` the agent made (`first_seq - 1` if none): its batches
    /// are `first_seq ..= last_seq`.
    pub last_seq: u64,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    seq: u64,
    template: usize,
    intended: Instant,
    ready_at: Instant,
    resend: bool,
}

#[derive(Debug, Clone, Copy)]
struct Inflight {
    template: usize,
    intended: Instant,
}

/// How a connection ended.
enum End {
    /// Everything sent and acked; BYE done.
    Finished,
    /// The server sent GOAWAY: reconnect after this long.
    GoAway(u64),
    /// The server sent ERROR.
    Error(String),
    /// The connection broke.
    Dropped,
    /// Churn or a storm: the agent dropped it on purpose.
    Abandoned,
    /// The run's time is up with batches still unacked.
    GaveUp,
}

struct Agent {
    welcomed: bool,
    plan: AgentPlan,
    ctx: Arc<RunContext>,
    next_seq: u64,
    next_due: Instant,
    pending: VecDeque<Pending>,
    inflight: HashMap<u64, Inflight>,
    acked: Vec<(u64, usize)>,
    rng: fastrand::Rng,
}

/// Runs one agent until its batches are sent and acked (or the run gives up).
pub async fn run(plan: AgentPlan, ctx: Arc<RunContext>) -> AgentResult {
    let mut agent = Agent {
        welcomed: false,
        rng: fastrand::Rng::with_seed(plan.index as u64 ^ 0x5eed),
        next_seq: ctx.first_seq,
        next_due: Instant::now(),
        pending: VecDeque::new(),
        inflight: HashMap::new(),
        acked: Vec::new(),
        plan,
        ctx,
    };
    let mut failures = 0u32;
    let mut stopped_by = None;
    loop {
        if agent.finished() || Instant::now() >= agent.ctx.give_up {
            break;
        }
        let end = agent.connection().await;
        // Whatever was in flight goes back to be resent, in seq order.
        let mut back: Vec<(u64, Inflight)> = agent.inflight.drain().collect();
        back.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        let now = Instant::now();
        for (seq, i) in back {
            agent.pending.push_front(Pending {
                seq,
                template: i.template,
                intended: i.intended,
                ready_at: now,
                resend: true,
            });
        }
        let pause = match end {
            End::Finished | End::GaveUp => break,
            End::GoAway(ms) => {
                agent.ctx.stats.error("goaway");
                failures = 0;
                jittered(ms, &mut agent.rng)
            }
            End::Abandoned => Duration::ZERO,
            End::Error(code) => {
                agent.ctx.stats.error(&code);
                // Retrying cannot fix these: a real agent stops and reports.
                if code == ErrorCode::AuthFailed.name() || code == ErrorCode::UnsupportedVersion.name() {
                    stopped_by = Some(code.to_string());
                    break;
                }
                failures += 1;
                backoff(failures, &mut agent.rng)
            }
            End::Dropped => {
                failures += 1;
                backoff(failures, &mut agent.rng)
            }
        };
        tokio::time::sleep(pause).await;
    }
    let mut unacked: Vec<(u64, usize)> = agent.pending.iter().map(|p| (p.seq, p.template)).collect();
    unacked.extend(agent.inflight.iter().map(|(seq, i)| (*seq, i.template)));
    let never_sent = agent.never_made();
    agent.ctx.stats.batches_offered.fetch_add(never_sent, Ordering::Relaxed);
    AgentResult {
        last_seq: agent.next_seq - 1,
        welcomed: agent.welcomed,
        never_sent,
        plan: agent.plan,
        acked: agent.acked,
        unacked,
        stopped_by,
    }
}

/// A delay the gateway asked for (ACK RETRY, GOAWAY), give or take half,
/// drawn uniformly, as an agent in the field should: agents told to come
/// back at the same time do not all come back in the same millisecond.
fn jittered(ms: u64, rng: &mut fastrand::Rng) -> Duration {
    let half = ms / 2;
    Duration::from_millis(half + rng.u64(0..=half.saturating_mul(2)))
}

/// Reconnect backoff with full jitter, 50 ms doubling to 2 s.
fn backoff(failures: u32, rng: &mut fastrand::Rng) -> Duration {
    let cap = Duration::from_millis(50)
        .saturating_mul(1 << failures.min(6))
        .min(Duration::from_secs(2));
    cap.mul_f64(rng.f64())
}

impl Agent {
    fn finished(&self) -> bool {
        Instant::now() >= self.ctx.stop_sending
            && self.pending.is_empty()
            && self.inflight.is_empty()
            && self.never_made() == 0
    }

    fn hello(&self) -> Frame {
        let s = &self.ctx.scenario;
        let auth = if s.tls.as_ref().is_some_and(|t| t.client_cert.is_some()) {
            HelloAuth::ClientCert
        } else {
            HelloAuth::Token {
                expiry: 0,
                token: awp_protocol::token::device_token(s.secret.as_bytes(), &s.tenant, &self.plan.device, 0),
            }
        };
        Frame::Hello(Hello {
            min_version: 1,
            max_version: 1,
            tenant_id: s.tenant.clone(),
            device_id: self.plan.device.clone(),
            platform: self.plan.platform,
            agent_version: AGENT_VERSION.into(),
            compression: CompressionSet::ALL,
            auth,
        })
    }

    async fn connection(&mut self) -> End {
        let started = Instant::now();
        let stream = match self.connect().await {
            Ok(s) => s,
            Err(e) => {
                tracing_error(&self.ctx.stats, "connect_failed", &e);
                return End::Dropped;
            }
        };
        match &self.ctx.tls {
            None => self.session(stream, started).await,
            Some((connector, name)) => match connector.connect(name.clone(), stream).await {
                Ok(tls) => self.session(tls, started).await,
                Err(e) => {
                    tracing_error(&self.ctx.stats, "tls_failed", &e);
                    End::Dropped
                }
            },
        }
    }

    async fn connect(&self) -> std::io::Result<tokio::net::TcpStream> {
        let socket = if self.plan.gateway.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        if let Some(ip) = self.plan.source {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let stream = tokio::time::timeout(Duration::from_secs(10), socket.connect(self.plan.gateway))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Open loop: the batches the rate scheduled before the end that were
    /// never made (the agent had no connection from their time on).
    fn never_made(&self) -> u64 {
        let s = &self.ctx.scenario;
        if s.batches_per_s <= 0.0 || self.next_due >= self.ctx.stop_sending {
            return 0;
        }
        let left = self.ctx.stop_sending - self.next_due;
        (left.as_secs_f64() * s.batches_per_s).ceil() as u64
    }

    /// Adds the batches that are due: open loop by the clock (every batch
    /// scheduled before the end, even when the agent comes back after it),
    /// closed loop up to the window until the end.
    fn generate(&mut self, window: usize, now: Instant) {
        let s = &self.ctx.scenario;
        if now >= self.ctx.stop_sending && s.batches_per_s <= 0.0 {
            return;
        }
        let add = |agent: &mut Agent, intended: Instant| {
            agent.ctx.stats.batches_offered.fetch_add(1, Ordering::Relaxed);
            let seq = agent.next_seq;
            agent.next_seq += 1;
            let template = (agent.plan.index + seq as usize) % agent.ctx.templates.len();
            agent.pending.push_back(Pending {
                seq,
                template,
                intended,
                ready_at: intended,
                resend: false,
            });
        };
        if s.batches_per_s > 0.0 {
            let interval = Duration::from_secs_f64(1.0 / s.batches_per_s);
            while self.next_due <= now && self.next_due < self.ctx.stop_sending {
                let due = self.next_due;
                add(self, due);
                self.next_due += interval;
            }
        } else {
            while self.pending.len() + self.inflight.len() < window {
                add(self, now);
            }
        }
    }

    async fn session<S: AsyncRead + AsyncWrite + Unpin>(&mut self, stream: S, started: Instant) -> End {
        let stats = self.ctx.stats.clone();
        let (reader, mut writer) = tokio::io::split(stream);
        let mut frames = FramedRead::new(reader, AwpCodec::client(Limits::DEFAULT));
        let mut wbuf = BytesMut::with_capacity(64 * 1024);
        wbuf.extend_from_slice(&MAGIC);
        if self.hello().encode(&mut wbuf).is_err() || writer.write_all(&wbuf).await.is_err() {
            return End::Dropped;
        }
        stats.bytes_sent.fetch_add(wbuf.len() as u64, Ordering::Relaxed);
        wbuf.clear();
        let welcome = match tokio::time::timeout(Duration::from_secs(10), frames.next()).await {
            Ok(Some(Ok(Frame::Welcome(w)))) => w,
            Ok(Some(Ok(Frame::Error(e)))) => return End::Error(error_name(e.code)),
            _ => return End::Dropped,
        };
        stats.connect_latency(started.elapsed());
        stats.connects.fetch_add(1, Ordering::Relaxed);
        self.welcomed = true;
        stats.connected.fetch_add(1, Ordering::Relaxed);
        let end = self.exchange(&mut frames, &mut writer, &mut wbuf, &welcome).await;
        stats.connected.fetch_sub(1, Ordering::Relaxed);
        end
    }

    async fn exchange<R, W>(
        &mut self,
        frames: &mut FramedRead<R, AwpCodec>,
        writer: &mut W,
        wbuf: &mut BytesMut,
        welcome: &awp_protocol::Welcome,
    ) -> End
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let ctx = self.ctx.clone();
        let s = &ctx.scenario;
        let stats = ctx.stats.clone();
        let window = s.window.min(welcome.max_inflight.max(1) as usize);
        let compression = match s.compression() {
            c if welcome.compression.allows(c) => c,
            _ => Compression::None,
        };
        let limits = welcome.limits();
        let heartbeat = Duration::from_millis(if s.heartbeat_ms > 0 {
            s.heartbeat_ms
        } else {
            welcome.heartbeat_ms.max(1)
        });
        let mut last_sent = Instant::now();
        let mut goaway: Option<u64> = None;
        let mut storms = ctx.storms.clone();
        storms.mark_unchanged();
        let mut next_churn_check = Instant::now() + Duration::from_secs(1);
        loop {
            let now = Instant::now();
            if now >= ctx.give_up {
                return End::GaveUp;
            }
            if goaway.is_none() {
                self.generate(window, now);
                // Fill the window: every ready batch, written with one syscall.
                while self.inflight.len() < window
                    && let Some(p) = self.pending.front().copied()
                    && p.ready_at <= now
                {
                    self.pending.pop_front();
                    let template = &self.ctx.templates[p.template];
                    if let Err(e) = template.encode(p.seq, compression, &limits, wbuf) {
                        tracing_error(&stats, "encode_failed", &e);
                        continue;
                    }
                    stats.batches_sent.fetch_add(1, Ordering::Relaxed);
                    if p.resend {
                        stats.resends.fetch_add(1, Ordering::Relaxed);
                    }
                    self.inflight.insert(
                        p.seq,
                        Inflight {
                            template: p.template,
                            intended: p.intended,
                        },
                    );
                }
            }
            if goaway.is_none() && now.duration_since(last_sent) >= heartbeat && wbuf.is_empty() {
                let _ = Frame::Ping(self.rng.u64(..)).encode(wbuf);
            }
            let all_done = self.finished();
            if all_done && goaway.is_none() {
                let _ = Frame::Bye.encode(wbuf);
            }
            if !wbuf.is_empty() {
                if writer.write_all(wbuf).await.is_err() {
                    return End::Dropped;
                }
                stats.bytes_sent.fetch_add(wbuf.len() as u64, Ordering::Relaxed);
                wbuf.clear();
                last_sent = Instant::now();
            }
            if all_done {
                // BYE sent: the server acks what it has and closes.
                let _ = tokio::time::timeout(Duration::from_secs(5), async {
                    while let Some(Ok(_)) = frames.next().await {}
                })
                .await;
                return End::Finished;
            }
            if let Some(ms) = goaway
                && self.inflight.is_empty()
            {
                return End::GoAway(ms);
            }
            // Wake for: the next due batch, a resend, a heartbeat, the end of sending, churn.
            let mut wake = last_sent + heartbeat;
            if let Some(p) = self.pending.front()
                && self.inflight.len() < window
            {
                wake = wake.min(p.ready_at);
            }
            if s.batches_per_s > 0.0 {
                wake = wake.min(self.next_due);
            }
            if now < self.ctx.stop_sending {
                wake = wake.min(self.ctx.stop_sending);
            }
            if s.churn_per_s > 0.0 {
                wake = wake.min(next_churn_check);
            }
            let wake = wake.min(ctx.give_up).max(now + Duration::from_micros(100));
            tokio::select! {
                frame = frames.next() => match frame {
                    Some(Ok(Frame::Ack(ack))) => self.on_ack(ack),
                    Some(Ok(Frame::GoAway(g))) => goaway = Some(g.reconnect_after_ms),
                    Some(Ok(Frame::Error(e))) => return End::Error(error_name(e.code)),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        if goaway.is_none() {
                            stats.error("disconnected");
                        }
                        return match goaway {
                            Some(ms) => End::GoAway(ms),
                            None => End::Dropped,
                        };
                    }
                },
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                    if s.churn_per_s > 0.0 && Instant::now() >= next_churn_check {
                        next_churn_check += Duration::from_secs(1);
                        if self.rng.f64() < s.churn_per_s {
                            stats.error("churn");
                            return End::Abandoned;
                        }
                    }
                }
                changed = storms.changed() => {
                    if changed.is_ok() {
                        stats.error("storm");
                        return End::Abandoned;
                    }
                }
            }
        }
    }

    fn on_ack(&mut self, ack: awp_protocol::Ack) {
        let stats = &self.ctx.stats;
        let Some(sent) = self.inflight.remove(&ack.seq) else {
            stats.error("ack_for_unknown_seq");
            return;
        };
        match ack.status {
            AckStatus::Ok => {
                stats.acks_ok.fetch_add(1, Ordering::Relaxed);
                stats.ack_latency(sent.intended.elapsed());
                let records = self.ctx.templates[sent.template].records();
                stats.records_acked.fetch_add(u64::from(records), Ordering::Relaxed);
                self.acked.push((ack.seq, sent.template));
            }
            AckStatus::Retry => {
                stats.acks_retry.fetch_add(1, Ordering::Relaxed);
                self.pending.push_front(Pending {
                    seq: ack.seq,
                    template: sent.template,
                    intended: sent.intended,
                    ready_at: Instant::now() + jittered(ack.retry_after_ms, &mut self.rng),
                    resend: true,
                });
            }
            AckStatus::Rejected => {
                stats.acks_rejected.fetch_add(1, Ordering::Relaxed);
                stats.error("rejected");
            }
        }
    }
}

fn error_name(code: u16) -> String {
    ErrorCode::from_u16(code).map_or_else(|| format!("ERROR_{code}"), |c| c.name().to_owned())
}

/// Counts an error by name; the first few of each kind are also printed in
/// full, since a count alone does not say why.
fn tracing_error(stats: &Stats, name: &str, error: &dyn std::fmt::Display) {
    if stats.errors().get(name).copied().unwrap_or(0) < 3 {
        eprintln!("agent-sim: {name}: {error}");
    }
    stats.error(name);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_asked_for_are_spread_by_half() {
        let mut rng = fastrand::Rng::with_seed(7);
        let waits: Vec<Duration> = (0..1000).map(|_| jittered(1000, &mut rng)).collect();
        assert!(waits.iter().all(|w| (500..=1500).contains(&w.as_millis())));
        let distinct: std::collections::BTreeSet<_> = waits.iter().collect();
        assert!(distinct.len() > 500, "{} distinct waits", distinct.len());
        assert_eq!(jittered(0, &mut rng), Duration::ZERO);
    }
}
