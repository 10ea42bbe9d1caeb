//! The AWP/1 session as a state machine without IO (AWP1.md §1, §4, §6).
//!
//! The connection task reads bytes into the session's buffer and feeds it
//! batch outcomes, granted memory budget, clock ticks and the shutdown
//! signal; it answers with [`Action`]s: frames to send, batches to store,
//! budget to wait for, and when to close. Every protocol rule lives here, so
//! it is tested frame by frame without sockets (see the tests at the
//! bottom).
//!
//! ```text
//!  AwaitPreamble ─\x89AWP─▶ AwaitHello ─HELLO ok─▶ Ready ──GOAWAY (shutdown)──▶ Draining
//!        │                     │                    │  BATCH → Store / ACK REJECTED   │ BATCH → ACK RETRY
//!        │ bad magic           │ other frame,       │  PING → PONG                    │ close when no batch
//!        ▼                     ▼ auth, version      │  BYE ──▶ Closing ─(acks out)─▶ Closed
//!      ERROR + close       ERROR + close            ▼ protocol error / idle: ERROR + close
//! ```
//!
//! # Memory budget
//!
//! A BATCH takes its cost from the tenant's memory budget (`budget.rs`)
//! before it is inflated or decoded. When the budget has no room, the frame
//! is parked as it came (its wire bytes) and the session asks the connection
//! to wait in line for the budget ([`Action::AwaitBudget`]); meanwhile it goes
//! on reading and answering PING, PONG, BYE and errors. Later BATCHes park
//! behind the first, in order, while the parked frames and the one being
//! read fit in `max_frame_len`; beyond that the session stops reading (the
//! agent's writes block) until budget comes. So a connection holds no more
//! wire bytes with parked frames than without. A batch parked longer than
//! `budget_wait` is answered ACK RETRY.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use awp_protocol::{
    Ack, BatchFrame, Compression, CompressionSet, ErrorCode, ErrorFrame, Frame, FrameType, GoAway, HEADER_LEN, Header,
    Hello, Limits, SUPPORTED_VERSIONS, Welcome, check_preamble,
};
use awp_store::{AcceptedBatch, Origin};
use bytes::{Buf, Bytes, BytesMut};
use rustls_pki_types::CertificateDer;

use crate::admission::{Admission, Admitted};
use crate::budget::{BudgetPermit, BudgetRequest, MemoryBudget, TenantBudget};
use crate::mailbox::Mailbox;
use crate::quota::DeviceQuota;
use crate::read_buffer::ReadBuffer;
use crate::telemetry;
use crate::tenant::{LiveTenants, Tenant};

/// The session parameters, from configuration (the same for every connection).
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Limits advertised in WELCOME and enforced on every frame.
    pub limits: Limits,
    /// Unacknowledged BATCHes allowed (WELCOME's `max_inflight`).
    pub max_inflight: u32,
    /// WELCOME's `heartbeat_ms`; three without a byte close the session.
    pub heartbeat: Duration,
    /// Time from connect to a complete HELLO.
    pub hello_timeout: Duration,
    /// `retry_after_ms` for ACK RETRY: the mean; each answer draws within ±50%.
    pub retry_after_ms: u64,
    /// `reconnect_after_ms` for GOAWAY (and ACK RETRY while draining): the
    /// mean; each answer draws within ±50%.
    pub goaway_reconnect_ms: u64,
    /// How long a BATCH may wait for memory budget before it is answered ACK RETRY.
    pub budget_wait: Duration,
    /// The slowest average rate a frame may arrive at, bytes per second,
    /// after a grace of one heartbeat from its first byte.
    pub min_frame_rate: u32,
    /// Sessions older than this, give or take 10%, are told to go away so
    /// that agents spread over nodes added since; none for never.
    pub max_connection_age: Option<Duration>,
}

/// The clock, read once per event by the connection task.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// For deadlines.
    pub mono: Instant,
    /// Unix milliseconds, for `received_at`, `expires_at` and token expiry.
    pub unix_ms: u64,
}

impl Now {
    /// The current time.
    pub fn read() -> Now {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Now {
            mono: Instant::now(),
            unix_ms,
        }
    }
}

/// What the connection task must do.
#[derive(Debug)]
pub enum Action {
    /// Send this frame.
    Send(Frame),
    /// Store this batch durably, then report with [`Session::batch_done`].
    /// The permit is the batch's memory budget: hold it until the write is done.
    Store {
        /// Whose batch.
        tenant: Arc<Tenant>,
        /// The checked batch, its records still as bytes.
        batch: AcceptedBatch,
        /// Its share of the memory budget.
        permit: BudgetPermit,
    },
    /// Wait in line for this budget, then hand it to [`Session::budget_granted`].
    /// A new request replaces the last; stop waiting when
    /// [`Session::awaiting_budget`] turns false.
    AwaitBudget(BudgetRequest),
    /// Flush what was sent, then close the connection.
    Close,
}

/// What a connection runs over, as the session needs it.
#[derive(Debug, Default)]
pub struct Transport {
    /// Whether it is TLS (a tenant may require it).
    pub tls: bool,
    /// The TLS client certificate chain, if the client presented one
    /// (a boxed slice: every connection's task holds the field).
    pub peer_certs: Option<Box<[CertificateDer<'static>]>>,
}

impl Transport {
    /// Plain TCP.
    pub fn plain() -> Transport {
        Transport::default()
    }
}

/// How storing a batch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Every item is durable: ACK OK.
    Stored,
    /// Nothing may be counted as stored: ACK RETRY with this message.
    Retry(String),
    /// The store cannot take the batch and nothing of it is stored: ACK
    /// REJECTED with this message.
    Rejected(String),
}

/// Who is connected, once HELLO is accepted.
#[derive(Debug, Clone)]
struct Peer {
    tenant: Arc<Tenant>,
    /// What every item of this connection's batches carries.
    origin: Arc<Origin>,
    budget: TenantBudget,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitPreamble,
    AwaitHello,
    Ready,
    /// GOAWAY sent: ack what is in flight, RETRY new batches, then close.
    Draining,
    /// BYE received: ack what is in flight, then close.
    Closing,
    Closed,
}

/// An authenticated connection's places among the connections (and its
/// device's one session), and its device's quota bucket.
#[derive(Debug)]
struct Authenticated {
    /// Held for its places, given back when the session ends.
    _admitted: Admitted,
    /// Its device's quota bucket, kept by the tenant across the device's
    /// sessions.
    device_quota: Option<DeviceQuota>,
    /// When the credentials it authenticated with stop being valid (the
    /// token's expiry, the certificate's notAfter): the session ends then.
    credentials_end: Option<Instant>,
}

/// A BATCH frame waiting for memory budget, as it arrived.
#[derive(Debug)]
struct Parked {
    header: Header,
    payload: Bytes,
}

/// One connection's AWP/1 session.
#[derive(Debug)]
pub struct Session {
    settings: Arc<SessionSettings>,
    tenants: Arc<LiveTenants>,
    budget: Arc<MemoryBudget>,
    admission: Arc<Admission>,
    session_id: [u8; 16],
    /// The agent's address (the PROXY header's behind a balancer), for logs.
    agent: IpAddr,
    /// The connection's mailbox, where admission tells the session to go
    /// away (see [`Session::attach`]).
    mailbox: Option<Arc<Mailbox>>,
    peer_certs: Option<Box<[CertificateDer<'static>]>>,
    /// Whether the connection is TLS (a tenant may require it).
    tls: bool,
    state: State,
    /// What an authenticated connection holds beyond its peer (boxed: most
    /// of the time, in every idle connection's task, it is not looked at).
    admitted: Option<Box<Authenticated>>,
    /// Limits for decoding the client's frames: compression only once negotiated.
    decode_limits: Limits,
    peer: Option<Peer>,
    /// What the client sent and the session has not consumed yet.
    input: ReadBuffer,
    /// Batches handed out for storage, with when each arrived (for ack latency).
    inflight: InFlight,
    /// BATCH frames waiting for budget, oldest first, and their wire bytes.
    parked: VecDeque<Parked>,
    parked_bytes: usize,
    /// When the oldest parked frame started waiting.
    parked_since: Option<Instant>,
    /// The next BATCH would not fit beside the parked frames: read nothing
    /// more until budget comes.
    input_blocked: bool,
    opened: Instant,
    last_heard: Instant,
    /// The client shut its sending side; stop reading.
    half_closed: bool,
    /// When the first byte of a frame not yet complete arrived, and how
    /// many of its bytes are in once its header is.
    frame_started: Option<Instant>,
    partial_frame_received: Option<usize>,
    /// Jitter for the delays the session tells the agent.
    rng: fastrand::Rng,
}

impl Session {
    /// A session for a new connection over `transport`.
    pub fn new(
        settings: Arc<SessionSettings>,
        tenants: Arc<LiveTenants>,
        budget: Arc<MemoryBudget>,
        admission: Arc<Admission>,
        session_id: [u8; 16],
        transport: Transport,
        now: Now,
    ) -> Session {
        let Transport { tls, peer_certs } = transport;
        let decode_limits = Limits {
            accepted_compression: CompressionSet::NONE,
            ..settings.limits
        };
        Session {
            settings,
            tenants,
            budget,
            admission,
            session_id,
            agent: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            mailbox: None,
            peer_certs,
            tls,
            state: State::AwaitPreamble,
            admitted: None,
            decode_limits,
            peer: None,
            input: ReadBuffer::new(),
            inflight: InFlight::default(),
            parked: VecDeque::new(),
            parked_bytes: 0,
            parked_since: None,
            input_blocked: false,
            opened: now.mono,
            last_heard: now.mono,
            half_closed: false,
            frame_started: None,
            partial_frame_received: None,
            rng: fastrand::Rng::with_seed(u64::from_le_bytes(session_id[..8].try_into().unwrap_or_default())),
        }
    }

    /// The connection: where the agent connects from (for the session's
    /// log lines), and its mailbox, where admission tells the session to go
    /// away (the connection then calls [`Session::replaced`]).
    pub fn attach(&mut self, agent: IpAddr, mailbox: Arc<Mailbox>) {
        self.agent = agent;
        self.mailbox = Some(mailbox);
    }

    /// `mean` ms, give or take half, drawn uniformly: agents that are told
    /// to come back later (a failing store, a full budget, a shutdown) do
    /// not all come back in the same millisecond.
    fn jittered(&mut self, mean: u64) -> u64 {
        let half = mean / 2;
        half + self.rng.u64(0..=half.saturating_mul(2))
    }

    /// Whether the connection should read from the client: until the
    /// session ends or the client shuts its sending side (after BYE too:
    /// PINGs are answered while the last ACKs are pending), except while
    /// parked batches fill their room.
    pub fn wants_input(&self) -> bool {
        self.state != State::Closed && !self.half_closed && !self.input_blocked
    }

    /// The read buffer, taken out to read into (see [`ReadBuffer::take_for_read`]);
    /// give it back with [`Session::received`] or [`Session::put_back_input`].
    pub fn take_input(&mut self) -> BytesMut {
        self.input.take_for_read()
    }

    /// Gives back the read buffer after a read that brought nothing new.
    pub fn put_back_input(&mut self, buf: BytesMut) {
        self.input.put_back(buf);
    }

    /// Whether the session has ended (the connection closes).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Batches handed out for storage and not yet answered.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// Whether a BATCH waits for budget (the connection keeps its place in line).
    pub fn awaiting_budget(&self) -> bool {
        !self.parked.is_empty() && self.state != State::Closed
    }

    /// When [`Session::tick`] must next run.
    ///
    /// Silence counts from the last byte heard. A frame must also arrive at
    /// an average of at least `min_frame_rate` bytes a second, after a grace
    /// of one heartbeat from its first byte: a slow cellular link delivers a
    /// large batch in time, a peer trickling bytes to hold a buffer does not.
    /// While the session itself stops reading (parked batches full) neither
    /// counts: the wait for budget has its own deadline.
    pub fn deadline(&self) -> Instant {
        let idle = 3 * self.settings.heartbeat;
        let budget = self.parked_since.map(|since| since + self.settings.budget_wait);
        if self.input_blocked {
            return budget.unwrap_or(self.last_heard + idle);
        }
        let mut deadline = match self.state {
            State::AwaitPreamble | State::AwaitHello => self.opened + self.settings.hello_timeout,
            State::Ready => self
                .age_due()
                .map_or(self.last_heard + idle, |due| due.min(self.last_heard + idle)),
            _ => self.last_heard + idle,
        };
        if let Some(due) = self.frame_due() {
            deadline = deadline.min(due);
        }
        budget.map_or(deadline, |b| deadline.min(b))
    }

    /// When the session has reached its maximum age. The jitter comes from
    /// the session id, so it needs no state of its own and sessions opened
    /// together (after a node failed) leave at different times.
    fn age_due(&self) -> Option<Instant> {
        let age = self.settings.max_connection_age.map(|age| {
            let spread = 0.9 + 0.2 * f64::from(self.session_id[8]) / 255.0;
            self.opened + age.mul_f64(spread)
        });
        match (age, self.credentials_due()) {
            (Some(a), Some(c)) => Some(a.min(c)),
            (a, c) => a.or(c),
        }
    }

    /// When the credentials the session authenticated with stop being valid.
    fn credentials_due(&self) -> Option<Instant> {
        self.admitted.as_ref()?.credentials_end
    }

    /// When the frame in progress falls below the minimum average rate,
    /// unless more of it arrives: one heartbeat after its first byte, plus
    /// the time its bytes so far earn at `min_frame_rate`. It moves with
    /// every byte that comes, so a frame declaring a large length earns
    /// nothing by it: a peer trickling into a 1 MiB frame is cut off within
    /// seconds, not after the 17 minutes the whole frame would take.
    fn frame_due(&self) -> Option<Instant> {
        let (started, received) = (self.frame_started?, self.partial_frame_received?);
        let earned = Duration::from_secs_f64(received as f64 / f64::from(self.settings.min_frame_rate.max(1)));
        Some(started + self.settings.heartbeat + earned)
    }

    /// Consumes every complete frame the last read completed, given back
    /// with the bytes it read, and leaves a partial one.
    pub fn received(&mut self, buf: BytesMut, read: usize, now: Now, out: &mut Vec<Action>) {
        self.input.put_back(buf);
        self.input.read_done(read);
        self.last_heard = now.mono;
        self.decode_input(now, out);
    }

    /// Decodes what is in the buffer, then lets it give back memory.
    fn decode_input(&mut self, now: Now, out: &mut Vec<Action>) {
        self.partial_frame_received = None;
        self.decode_frames(now, out);
        // A partial frame left over: its clock starts at the first byte seen.
        if self.input.bytes().is_empty() {
            self.frame_started = None;
        } else if self.frame_started.is_none() {
            self.frame_started = Some(now.mono);
        }
        self.input.settle();
    }

    fn decode_frames(&mut self, now: Now, out: &mut Vec<Action>) {
        while self.wants_input() {
            if self.state == State::AwaitPreamble {
                match check_preamble(self.input.bytes()) {
                    Ok(None) => return,
                    Ok(Some(n)) => {
                        self.input.bytes().advance(n);
                        self.state = State::AwaitHello;
                        continue;
                    }
                    Err(e) => return self.fail(e.code(), &e.to_string(), out),
                }
            }
            let buf = self.input.bytes();
            let Some(header_bytes) = buf.first_chunk::<HEADER_LEN>() else {
                return;
            };
            let header = match Header::parse(header_bytes) {
                Ok(h) => h,
                Err(e) => return self.fail(e.code(), &e.to_string(), out),
            };
            // Frames not allowed in this state are refused from the header
            // alone, before their payload is buffered or its length matters.
            if let Some(message) = self.unexpected(header.frame_type) {
                return self.fail(ErrorCode::UnexpectedFrame, &message, out);
            }
            if let Err(e) = header.check_length(&self.decode_limits) {
                return self.fail(e.code(), &e.to_string(), out);
            }
            let frame_len = header.frame_len();
            if header.frame_type == FrameType::Batch
                && !self.parked.is_empty()
                && self.parked_bytes + frame_len > self.parked_room()
            {
                // Parked frames and this one would hold more than one
                // frame's worth: read no further until budget comes.
                self.input_blocked = true;
                return;
            }
            let buf = self.input.bytes();
            if buf.len() < frame_len {
                // Room for the rest of the frame, but for a large one only a
                // part at a time: the buffer grows as bytes come, so a peer
                // that sends a large header and trickles holds little.
                buf.reserve((frame_len - buf.len()).min(MAX_FRAME_RESERVE));
                self.partial_frame_received = Some(buf.len());
                return;
            }
            if header.frame_type == FrameType::Batch
                && self.inflight.len() + self.parked.len() >= self.settings.max_inflight as usize
            {
                let message = format!(
                    "more than max_inflight={} batches unacknowledged",
                    self.settings.max_inflight
                );
                return self.fail(ErrorCode::WindowExceeded, &message, out);
            }
            let mut frame_bytes = self.input.bytes().split_to(frame_len);
            frame_bytes.advance(HEADER_LEN);
            // Whatever follows is a new frame, whose clock starts now.
            self.frame_started = None;
            telemetry::global().frame_received(header.frame_type, frame_len);
            if header.frame_type == FrameType::Batch {
                self.batch_arrived(header, frame_bytes.freeze(), now, out);
                continue;
            }
            match Frame::parse(&header, frame_bytes.freeze(), &self.decode_limits) {
                Ok(frame) => self.on_frame(frame, now, out),
                Err(e) => return self.fail(e.code(), &e.to_string(), out),
            }
        }
    }

    /// How many wire bytes of BATCH frames may wait for budget, the one
    /// being read included: one frame's worth, so that parking does not
    /// raise what a connection may hold.
    fn parked_room(&self) -> usize {
        self.settings.limits.max_frame_len as usize + HEADER_LEN
    }

    /// Why a frame of this type is not allowed now, if it is not.
    fn unexpected(&self, frame_type: FrameType) -> Option<String> {
        use FrameType::*;
        match (self.state, frame_type) {
            (State::AwaitHello, Hello) => None,
            (State::AwaitHello, other) => Some(format!("expected HELLO, got {other}")),
            // Frames only a server sends, and a second HELLO.
            (_, Hello | Welcome | Ack | GoAway) => Some(format!("{frame_type} not allowed from a client here")),
            // After BYE the client has nothing more to send but liveness.
            (State::Closing, Batch | Bye) => Some(format!("{frame_type} after BYE")),
            _ => None,
        }
    }

    fn on_frame(&mut self, frame: Frame, now: Now, out: &mut Vec<Action>) {
        match (self.state, frame) {
            (State::AwaitHello, Frame::Hello(hello)) => self.on_hello(hello, now, out),
            (_, Frame::Ping(nonce)) => out.push(Action::Send(Frame::Pong(nonce))),
            (_, Frame::Pong(_)) => {}
            (State::Ready | State::Draining, Frame::Bye) => {
                self.state = State::Closing;
                self.close_if_done(out);
            }
            (_, Frame::Error(e)) => {
                let message = crate::logs::Escaped(&e.message);
                let agent = self.agent;
                let log = || tracing::info!(agent = %agent, code = e.code, message = %message, "client sent ERROR");
                if self.peer.is_some() {
                    log();
                } else {
                    crate::logs::pre_auth(log);
                }
                self.state = State::Closed;
                out.push(Action::Close);
            }
            (_, other) => {
                let message = format!("{} not allowed here", other.frame_type());
                self.fail(ErrorCode::UnexpectedFrame, &message, out);
            }
        }
    }

    fn on_hello(&mut self, hello: Hello, now: Now, out: &mut Vec<Action>) {
        let Some(version) = hello.choose_version(SUPPORTED_VERSIONS) else {
            let message = format!(
                "no common version: client speaks {}..={}, server speaks 1",
                hello.min_version, hello.max_version
            );
            return self.fail(ErrorCode::UnsupportedVersion, &message, out);
        };
        // Kept past this HELLO only as the session's proof, in the admission
        // registry (to check it again when a reload changes credentials).
        let peer_certs = self.peer_certs.take();
        let tenants = self.tenants.load_full();
        let authentication = match tenants.authenticate(&hello, self.tls, peer_certs.as_deref(), now.unix_ms / 1000) {
            Ok(authentication) => authentication,
            Err(failure) => {
                // The operator learns why (sampled: anybody can cause it);
                // the agent learns nothing that tells causes apart.
                let known = tenants.contains(&hello.tenant_id);
                telemetry::global().auth_failed(failure.reason(), known.then_some(hello.tenant_id.as_str()));
                let agent = self.agent;
                crate::logs::pre_auth(|| {
                    tracing::info!(
                        agent = %agent,
                        tenant = %crate::logs::Escaped(&hello.tenant_id),
                        device = %crate::logs::Escaped(&hello.device_id),
                        reason = failure.reason(),
                        detail = %failure,
                        "HELLO did not authenticate"
                    )
                });
                return self.fail_logged(ErrorCode::AuthFailed, "authentication failed", out);
            }
        };
        // Kept to check again if a reload swaps the registry meanwhile.
        let proof = authentication.proof.clone();
        let tenant = authentication.tenant;
        // Valid through the second `until` (a token's expiry and a
        // certificate's notAfter are both inclusive).
        let credentials_end = authentication.until.map(|until| {
            let left_ms = until.saturating_add(1).saturating_mul(1000).saturating_sub(now.unix_ms);
            now.mono + Duration::from_millis(left_ms)
        });
        let Some(budget) = self.budget.tenant(&tenant.id) else {
            // Every configured tenant has a share; answered, never a panic.
            return self.fail(ErrorCode::Internal, "no memory budget for this tenant", out);
        };
        // A place among the authenticated connections; an older session of
        // this device is told to go away.
        let mailbox = self.mailbox.get_or_insert_with(Arc::default);
        match self.admission.admit(
            &tenant.id,
            &hello.device_id,
            mailbox,
            crate::admission::Session {
                proof: authentication.proof,
                tls: self.tls,
            },
        ) {
            Ok(admitted) => {
                self.admitted = Some(Box::new(Authenticated {
                    _admitted: admitted,
                    device_quota: tenant.quota.load().device(&hello.device_id),
                    credentials_end,
                }));
            }
            Err(refusal) => {
                telemetry::global().connection_refused();
                return self.fail(ErrorCode::ServerBusy, &refusal.to_string(), out);
            }
        }
        // A reload may have swapped the registry since the check above
        // (removed the tenant, a secret, a CA; brought a CRL). It checks the
        // sessions it finds admitted after the swap; one admitted after its
        // check sees the new registry here and is checked against it: no
        // revoked credential slips between the two.
        let current = self.tenants.load();
        if !Arc::ptr_eq(&current, &tenants)
            && !current.still_valid(&tenant.id, &hello.device_id, &proof, self.tls, now.unix_ms / 1000)
        {
            self.admitted = None;
            let reason = if current.contains(&tenant.id) {
                "bad_token"
            } else {
                "unknown_tenant"
            };
            telemetry::global().auth_failed(reason, current.contains(&tenant.id).then_some(tenant.id.as_str()));
            return self.fail(ErrorCode::AuthFailed, "authentication failed", out);
        }
        drop(current);
        drop(tenants);
        let compression = hello.compression.intersect(self.settings.limits.accepted_compression);
        self.decode_limits.accepted_compression = compression;
        let limits = &self.settings.limits;
        out.push(Action::Send(Frame::Welcome(Welcome {
            version,
            session_id: self.session_id,
            max_frame_len: limits.max_frame_len.into(),
            max_batch_records: limits.max_batch_records.into(),
            max_inflight: self.settings.max_inflight.into(),
            heartbeat_ms: self.settings.heartbeat.as_millis() as u64,
            compression,
        })));
        tracing::debug!(agent = %self.agent, tenant = %tenant.id, device = %hello.device_id, "session authenticated");
        self.peer = Some(Peer {
            tenant,
            origin: Arc::new(Origin {
                device_id: hello.device_id,
                platform: hello.platform,
                agent_version: hello.agent_version,
            }),
            budget,
        });
        self.state = State::Ready;
    }

    /// A whole BATCH frame, not yet parsed: after GOAWAY it is answered
    /// RETRY; otherwise it takes its budget and is accepted, or parks.
    fn batch_arrived(&mut self, header: Header, payload: Bytes, now: Now, out: &mut Vec<Action>) {
        if self.state == State::Draining {
            let retry_after = self.jittered(self.settings.goaway_reconnect_ms);
            return self.retry_unaccepted(&header, payload, retry_after, "server is draining", out);
        }
        let Some(peer) = &self.peer else {
            // Unreachable: Ready implies a peer. Answered, never a panic.
            return self.fail(ErrorCode::Internal, "no session", out);
        };
        if self.parked.is_empty() {
            let cost = self.cost(&header, &payload);
            if let Some(permit) = peer.budget.try_take(cost) {
                return self.accept(header, payload, permit, now, out);
            }
            peer.tenant.budget_waited();
            self.parked_since = Some(now.mono);
            out.push(Action::AwaitBudget(peer.budget.request(cost)));
        }
        self.parked_bytes += HEADER_LEN + payload.len();
        self.parked.push_back(Parked { header, payload });
    }

    /// The budget a BATCH frame needs: its inflated size. A compressed one
    /// declares it in its first four bytes; a declaration over the limit is
    /// refused by the parser, so it is charged no more than the limit.
    fn cost(&self, header: &Header, payload: &[u8]) -> u32 {
        let inflated = match (header.compression, payload.first_chunk::<4>()) {
            (Compression::None, _) | (_, None) => payload.len(),
            (_, Some(declared)) => (u32::from_be_bytes(*declared).min(self.decode_limits.max_batch_bytes)) as usize,
        };
        TenantBudget::cost(inflated)
    }

    /// Budget the connection waited for: the oldest parked frame is
    /// accepted, and the next ones while the budget has room.
    pub fn budget_granted(&mut self, permit: BudgetPermit, now: Now, out: &mut Vec<Action>) {
        if self.state == State::Closed {
            return;
        }
        let Some(first) = self.parked.pop_front() else {
            return; // answered meanwhile (drain, timeout): the permit goes back
        };
        self.parked_bytes -= HEADER_LEN + first.payload.len();
        self.parked_since = None;
        self.accept(first.header, first.payload, permit, now, out);
        while self.state != State::Closed
            && let Some(next) = self.parked.front()
            && let Some(peer) = &self.peer
        {
            let cost = self.cost(&next.header, &next.payload);
            let Some(permit) = peer.budget.try_take(cost) else {
                self.parked_since = Some(now.mono);
                out.push(Action::AwaitBudget(peer.budget.request(cost)));
                break;
            };
            let Some(next) = self.parked.pop_front() else { break };
            self.parked_bytes -= HEADER_LEN + next.payload.len();
            self.accept(next.header, next.payload, permit, now, out);
        }
        self.resume_input(now, out);
    }

    /// Decodes the frames held back while the parked frames were full, once
    /// there is room for them again.
    fn resume_input(&mut self, now: Now, out: &mut Vec<Action>) {
        if self.input_blocked && self.state != State::Closed {
            self.input_blocked = false;
            self.decode_input(now, out);
        }
    }

    /// Answers every parked frame ACK RETRY (parsing each alone, to learn
    /// its seq, and dropping it at once).
    fn retry_parked(&mut self, retry_after_ms: u64, message: &str, out: &mut Vec<Action>) -> usize {
        let parked = std::mem::take(&mut self.parked);
        let count = parked.len();
        self.parked_bytes = 0;
        self.parked_since = None;
        for p in parked {
            if self.state == State::Closed {
                break;
            }
            let retry_after_ms = self.jittered(retry_after_ms);
            self.retry_unaccepted(&p.header, p.payload, retry_after_ms, message, out);
        }
        count
    }

    /// Parses a BATCH frame only to answer it ACK RETRY.
    fn retry_unaccepted(
        &mut self,
        header: &Header,
        payload: Bytes,
        retry_after_ms: u64,
        message: &str,
        out: &mut Vec<Action>,
    ) {
        match Frame::parse(header, payload, &self.decode_limits) {
            Ok(Frame::Batch(batch)) => {
                let seq = batch.seq();
                if self.inflight.contains(seq) {
                    let message = format!("seq {seq} is already in flight on this connection");
                    return self.fail(ErrorCode::WindowExceeded, &message, out);
                }
                self.ack(Ack::retry(seq, retry_after_ms, message), out);
            }
            Ok(other) => self.fail(
                ErrorCode::Internal,
                &format!("{} parsed as a BATCH", other.frame_type()),
                out,
            ),
            Err(e) => self.fail(e.code(), &e.to_string(), out),
        }
    }

    /// Parses, decodes and checks a BATCH that has its budget: Store, or ACK REJECTED.
    fn accept(&mut self, header: Header, payload: Bytes, permit: BudgetPermit, now: Now, out: &mut Vec<Action>) {
        let batch = match Frame::parse(&header, payload, &self.decode_limits) {
            Ok(Frame::Batch(batch)) => batch,
            Ok(other) => {
                return self.fail(
                    ErrorCode::Internal,
                    &format!("{} parsed as a BATCH", other.frame_type()),
                    out,
                );
            }
            Err(e) => return self.fail(e.code(), &e.to_string(), out),
        };
        let seq = batch.seq();
        if self.inflight.contains(seq) {
            let message = format!("seq {seq} is already in flight on this connection");
            return self.fail(ErrorCode::WindowExceeded, &message, out);
        }
        let Some(peer) = &self.peer else {
            return self.fail(ErrorCode::Internal, "no session", out);
        };
        let expires_at = peer.tenant.expires_at(now.unix_ms);
        match AcceptedBatch::accept(
            peer.origin.clone(),
            seq,
            now.unix_ms,
            expires_at,
            own_content(&batch),
            &self.decode_limits,
        ) {
            Ok(accepted) => {
                telemetry::global().records_received(accepted.record_count());
                let bytes = u32::try_from(accepted.content_len()).unwrap_or(u32::MAX);
                let device_quota = self.admitted.as_ref().and_then(|a| a.device_quota.as_ref());
                if let Err(over) = peer
                    .tenant
                    .quota
                    .load()
                    .admit(device_quota, accepted.record_count(), bytes)
                {
                    peer.tenant.quota_exceeded(over.scope);
                    // The bucket's wait, but no less than the usual retry
                    // delay, and up to half again as jitter. The bucket's
                    // wait alone is the time this one batch would need if
                    // nobody else came: a few ms, and an agent fleet over
                    // its quota would come back hundreds of times a second
                    // (measured: 3.3 M RETRYs in 25 s, docs/performance.md).
                    let wait = u64::try_from(over.wait.as_millis())
                        .unwrap_or(u64::MAX)
                        .max(self.settings.retry_after_ms)
                        .max(1);
                    let retry_after = wait.saturating_add(self.rng.u64(0..=wait / 2));
                    let message = format!("over the {} quota; retry later", over.scope.name());
                    return self.ack(Ack::retry(seq, retry_after, &message), out);
                }
                self.inflight.insert(seq, now.mono);
                out.push(Action::Store {
                    tenant: peer.tenant.clone(),
                    batch: accepted,
                    permit,
                });
            }
            Err(e) => {
                tracing::info!(agent = %self.agent, tenant = %peer.tenant.id, device = %peer.origin.device_id, seq, error = %e, "batch rejected");
                self.ack(Ack::rejected(seq, &e.to_string()), out);
            }
        }
    }

    /// Reports how storing batch `seq` ended; answers it with an ACK.
    pub fn batch_done(&mut self, seq: u64, outcome: BatchOutcome, out: &mut Vec<Action>) {
        let Some(arrived) = self.inflight.remove(seq) else {
            return;
        };
        if self.state == State::Closed {
            return;
        }
        if let Some(peer) = &self.peer {
            peer.tenant.acked_after(arrived.elapsed());
        }
        let ack = match outcome {
            BatchOutcome::Stored => Ack::ok(seq),
            BatchOutcome::Retry(message) => Ack::retry(seq, self.jittered(self.settings.retry_after_ms), &message),
            BatchOutcome::Rejected(message) => Ack::rejected(seq, &message),
        };
        self.ack(ack, out);
        self.close_if_done(out);
    }

    /// Starts draining for shutdown: GOAWAY, then close once in-flight
    /// batches are acknowledged. Parked batches are answered ACK RETRY.
    pub fn drain(&mut self, now: Now, out: &mut Vec<Action>) {
        self.go_away("server shutting down", now, out);
    }

    /// The connection was closed to make room while it waited to
    /// authenticate: ERROR(SERVER_BUSY), so an agent that was merely slow
    /// knows to come back.
    pub fn evicted(&mut self, out: &mut Vec<Action>) {
        if self.state != State::Closed {
            // Not logged one by one (they come in floods): counted in
            // awp_connections_evicted_total and awp_errors_total.
            let code = ErrorCode::ServerBusy;
            telemetry::global().error_sent(code);
            let message = "too many connections waiting to authenticate; retry later";
            out.push(Action::Send(Frame::Error(ErrorFrame::new(code, message))));
            out.push(Action::Close);
            self.state = State::Closed;
        }
    }

    /// Whether HELLO was accepted and the connection holds a place among
    /// the authenticated ones.
    pub fn is_admitted(&self) -> bool {
        self.admitted.is_some()
    }

    /// A newer session of this device was admitted: this one goes away as
    /// at shutdown (in-flight batches are still acknowledged).
    /// The same signal tells the sessions of a tenant a reload removed.
    pub fn replaced(&mut self, now: Now, out: &mut Vec<Action>) {
        let removed = self
            .peer
            .as_ref()
            .is_some_and(|p| !self.tenants.load().contains(&p.tenant.id));
        let reason = if removed {
            "tenant no longer served by this gateway"
        } else {
            "replaced by a newer session of this device"
        };
        self.go_away(reason, now, out);
    }

    /// A reload revoked the credentials the session authenticated with
    /// (a secret, a client CA, a CRL): it goes away as at shutdown
    /// (in-flight batches are still acknowledged); its agent's next HELLO
    /// needs credentials that are valid now.
    pub fn revoked(&mut self, now: Now, out: &mut Vec<Action>) {
        telemetry::global().session_revoked();
        self.go_away("credentials no longer valid; reconnect with current ones", now, out);
    }

    /// GOAWAY with `reason`, then close once in-flight batches are
    /// acknowledged; parked and later batches are answered ACK RETRY.
    fn go_away(&mut self, reason: &str, now: Now, out: &mut Vec<Action>) {
        match self.state {
            State::AwaitPreamble | State::AwaitHello => {
                self.state = State::Closed;
                out.push(Action::Close);
            }
            State::Ready => {
                let reconnect_after = self.jittered(self.settings.goaway_reconnect_ms);
                out.push(Action::Send(Frame::GoAway(GoAway::new(reconnect_after, reason))));
                self.state = State::Draining;
                self.retry_parked(self.settings.goaway_reconnect_ms, "server is draining", out);
                self.resume_input(now, out);
                self.close_if_done(out);
            }
            State::Draining | State::Closing | State::Closed => {}
        }
    }

    /// Checks the deadlines: a batch that waited too long for budget gets
    /// ACK RETRY; no HELLO in time, or nothing heard for three heartbeats,
    /// closes with IDLE_TIMEOUT.
    pub fn tick(&mut self, now: Now, out: &mut Vec<Action>) {
        if self.state == State::Closed || now.mono < self.deadline() {
            return;
        }
        if self
            .parked_since
            .is_some_and(|since| now.mono >= since + self.settings.budget_wait)
        {
            let message = format!(
                "gateway busy: no memory for this batch within {} ms",
                self.settings.budget_wait.as_millis()
            );
            let answered = self.retry_parked(self.settings.retry_after_ms, &message, out);
            if let Some(peer) = &self.peer {
                peer.tenant.budget_timed_out(answered);
            }
            self.resume_input(now, out);
            self.close_if_done(out);
            return;
        }
        if self.state == State::Ready && self.credentials_due().is_some_and(|due| now.mono >= due) {
            telemetry::global().session_credentials_expired();
            return self.go_away("credentials expired; reconnect with fresh ones", now, out);
        }
        if self.state == State::Ready && self.age_due().is_some_and(|due| now.mono >= due) {
            telemetry::global().session_aged();
            return self.go_away("connection reached its maximum age; reconnect", now, out);
        }
        let idle_ms = 3 * self.settings.heartbeat.as_millis();
        let message = match self.state {
            State::AwaitPreamble | State::AwaitHello => {
                format!("no HELLO within {} ms", self.settings.hello_timeout.as_millis())
            }
            _ if self.frame_due().is_some_and(|due| now.mono >= due) => format!(
                "a frame arrived slower than {} bytes/s on average",
                self.settings.min_frame_rate
            ),
            _ => format!("nothing heard for {idle_ms} ms"),
        };
        self.fail(ErrorCode::IdleTimeout, &message, out);
    }

    /// The client closed its sending side. Batches in flight or parked are
    /// still answered (the client may be waiting for their ACKs, as after
    /// BYE); with none, the session ends.
    pub fn eof(&mut self, out: &mut Vec<Action>) {
        let pending = !self.inflight.is_empty() || !self.parked.is_empty();
        match self.state {
            State::Ready | State::Draining | State::Closing if pending => {
                self.state = State::Closing;
                self.half_closed = true;
            }
            State::Closed => {}
            _ => {
                self.state = State::Closed;
                out.push(Action::Close);
            }
        }
    }

    /// Whether the client closed its sending side (nothing more to read).
    pub fn half_closed(&self) -> bool {
        self.half_closed
    }

    fn ack(&mut self, ack: Ack, out: &mut Vec<Action>) {
        telemetry::global().ack_sent(ack.status);
        out.push(Action::Send(Frame::Ack(ack)));
    }

    fn close_if_done(&mut self, out: &mut Vec<Action>) {
        if matches!(self.state, State::Draining | State::Closing) && self.inflight.is_empty() && self.parked.is_empty()
        {
            self.state = State::Closed;
            out.push(Action::Close);
        }
    }

    fn fail(&mut self, code: ErrorCode, message: &str, out: &mut Vec<Action>) {
        let (tenant, device) = match &self.peer {
            Some(p) => (p.tenant.id.as_str(), p.origin.device_id.as_str()),
            None => ("", ""),
        };
        let agent = self.agent;
        let log = || tracing::info!(agent = %agent, tenant, device, code = code.name(), message, "session error");
        if self.peer.is_some() {
            log();
        } else {
            // Anybody can cause these: sampled (the metrics count them all).
            crate::logs::pre_auth(log);
        }
        self.fail_logged(code, message, out);
    }

    /// [`Session::fail`] for a failure logged already.
    fn fail_logged(&mut self, code: ErrorCode, message: &str, out: &mut Vec<Action>) {
        telemetry::global().error_sent(code);
        out.push(Action::Send(Frame::Error(ErrorFrame::new(code, message))));
        out.push(Action::Close);
        self.state = State::Closed;
        self.parked.clear();
        self.parked_bytes = 0;
        self.parked_since = None;
    }
}

/// The most room reserved at once for a frame still arriving.
const MAX_FRAME_RESERVE: usize = 64 * 1024;

/// The batches of a connection handed out for storage, with when each
/// arrived. At most `max_inflight` (32 by default), so a list searched in
/// order does; it gives its memory back whenever it empties, since most
/// connections spend most of their time with nothing in flight.
#[derive(Debug, Default)]
struct InFlight(Vec<(u64, Instant)>);

impl InFlight {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn contains(&self, seq: u64) -> bool {
        self.0.iter().any(|(s, _)| *s == seq)
    }

    fn insert(&mut self, seq: u64, arrived: Instant) {
        self.0.push((seq, arrived));
    }

    /// Removes `seq`; returns when it arrived.
    fn remove(&mut self, seq: u64) -> Option<Instant> {
        let at = self.0.iter().position(|(s, _)| *s == seq)?;
        let (_, arrived) = self.0.swap_remove(at);
        if self.0.is_empty() {
            self.0 = Vec::new();
        }
        Some(arrived)
    }
}

/// The batch's inflated content, in an allocation of its own: a compressed
/// batch was inflated into one, an uncompressed one is copied out of the
/// read buffer, so a held batch never keeps a (larger) read buffer alive
/// and the budget counts what is really held.
fn own_content(batch: &BatchFrame) -> Bytes {
    match batch.compression() {
        Compression::None => Bytes::copy_from_slice(batch.content()),
        _ => batch.content().clone(),
    }
}

#[cfg(test)]
mod tests {
    //! The session, frame by frame, without sockets.

    use std::time::{Duration, Instant};

    use awp_protocol::{AckStatus, Frame, Limits, MAGIC};
    use futures_util::FutureExt;

    use super::*;
    use crate::tenant::Tenants;

    fn vector(name: &str) -> Vec<u8> {
        awp_testkit::vectors().bytes(name).to_vec()
    }

    fn settings() -> Arc<SessionSettings> {
        Arc::new(SessionSettings {
            limits: Limits::DEFAULT,
            max_inflight: 2,
            heartbeat: Duration::from_millis(1000),
            hello_timeout: Duration::from_millis(500),
            retry_after_ms: 250,
            goaway_reconnect_ms: 1500,
            budget_wait: Duration::from_millis(2000),
            min_frame_rate: 1000,
            max_connection_age: None,
        })
    }

    /// Enough budget for anything the tests send.
    const PLENTY: usize = 64 << 20;

    struct Harness {
        session: Session,
        budget: Arc<MemoryBudget>,
        t0: Instant,
        unix_ms: u64,
    }

    impl Harness {
        fn new() -> Harness {
            Harness::with_budget(PLENTY)
        }

        /// A session of tenant `acme`, whose share of the budget is `bytes`.
        fn with_budget(bytes: usize) -> Harness {
            Harness::with_tenant(Tenant::with_secrets("acme", &["acme-secret-1"]), bytes)
        }

        fn with_tenant(tenant: Tenant, bytes: usize) -> Harness {
            let mut tenants = Tenants::default();
            tenants.insert(tenant);
            let budget = Arc::new(MemoryBudget::new(bytes, bytes, ["acme".to_owned()]));
            let t0 = Instant::now();
            let now = Now {
                mono: t0,
                unix_ms: 1_764_000_000_000,
            };
            Harness {
                session: Session::new(
                    settings(),
                    Arc::new(LiveTenants::from_pointee(tenants)),
                    budget.clone(),
                    Admission::new(100, []),
                    [7; 16],
                    Transport::plain(),
                    now,
                ),
                budget,
                t0,
                unix_ms: now.unix_ms,
            }
        }

        fn at(&self, ms: u64) -> Now {
            Now {
                mono: self.t0 + Duration::from_millis(ms),
                unix_ms: self.unix_ms + ms,
            }
        }

        /// `bytes` arrive at `ms`, as one read.
        fn feed_at(&mut self, ms: u64, bytes: &[u8]) -> Vec<Action> {
            let mut buf = self.session.take_input();
            buf.extend_from_slice(bytes);
            let mut out = Vec::new();
            let now = self.at(ms);
            self.session.received(buf, bytes.len(), now, &mut out);
            out
        }

        fn feed(&mut self, bytes: &[u8]) -> Vec<Action> {
            self.feed_at(0, bytes)
        }

        /// Preamble and the vectors' Android HELLO: expects WELCOME.
        fn welcomed() -> Harness {
            Harness::welcomed_with_budget(PLENTY)
        }

        fn welcomed_with_budget(bytes: usize) -> Harness {
            let mut h = Harness::with_budget(bytes);
            let mut hello = MAGIC.to_vec();
            hello.extend(vector("hello_token_android"));
            let out = h.feed(&hello);
            assert!(matches!(&out[..], [Action::Send(Frame::Welcome(_))]), "{out:?}");
            h
        }
    }

    fn error_code(actions: &[Action]) -> Option<u16> {
        match actions {
            [.., Action::Send(Frame::Error(e)), Action::Close] => Some(e.code),
            _ => None,
        }
    }

    fn acks(actions: &[Action]) -> Vec<(u64, AckStatus)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(Frame::Ack(ack)) => Some((ack.seq, ack.status)),
                _ => None,
            })
            .collect()
    }

    fn stored(actions: &[Action]) -> Vec<u64> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Store { batch, .. } => Some(batch.seq()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn welcome_advertises_the_settings_and_negotiates_compression() {
        let mut h = Harness::new();
        let mut bytes = MAGIC.to_vec();
        bytes.extend(vector("hello_token_android"));
        let out = h.feed(&bytes);
        let [Action::Send(Frame::Welcome(w))] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(w.version, 1);
        assert_eq!(w.session_id, [7; 16]);
        assert_eq!(w.max_frame_len, 1 << 20);
        assert_eq!(w.max_batch_records, 1000);
        assert_eq!(w.max_inflight, 2);
        assert_eq!(w.heartbeat_ms, 1000);
        assert_eq!(w.compression.bits(), 3);
    }

    #[test]
    fn the_preamble_may_arrive_a_byte_at_a_time() {
        let mut h = Harness::new();
        let mut out = Vec::new();
        let mut bytes = MAGIC.to_vec();
        bytes.extend(vector("hello_token_android"));
        for b in bytes {
            out.extend(h.feed(&[b]));
        }
        assert!(matches!(&out[..], [Action::Send(Frame::Welcome(_))]), "{out:?}");
        assert!(h.session.input.bytes().is_empty());
    }

    #[test]
    fn bad_magic_names_tls_and_http() {
        for (bytes, hint) in [(&[0x16u8, 3, 1, 0][..], "TLS"), (b"GET / HTTP/1.1\r\n", "HTTP")] {
            let mut h = Harness::new();
            let out = h.feed(bytes);
            let [Action::Send(Frame::Error(e)), Action::Close] = &out[..] else {
                panic!("{out:?}")
            };
            assert_eq!(e.code, ErrorCode::BadMagic as u16);
            assert!(e.message.contains(hint), "{}", e.message);
            assert!(h.session.is_closed());
        }
    }

    #[test]
    fn anything_but_hello_first_is_unexpected_from_the_header_alone() {
        let mut h = Harness::new();
        let mut bytes = MAGIC.to_vec();
        // A BATCH header claiming 2 GiB: refused as UNEXPECTED_FRAME before its length matters.
        bytes.extend([3, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        assert_eq!(error_code(&h.feed(&bytes)), Some(ErrorCode::UnexpectedFrame as u16));
    }

    #[test]
    fn auth_failures_are_indistinguishable() {
        let mut messages = Vec::new();
        for name in ["hello_wrong_token", "hello_unknown_tenant", "hello_expired_token"] {
            let mut h = Harness::new();
            let mut bytes = MAGIC.to_vec();
            bytes.extend(vector(name));
            let out = h.feed(&bytes);
            let [Action::Send(Frame::Error(e)), Action::Close] = &out[..] else {
                panic!("{name}: {out:?}")
            };
            assert_eq!(e.code, ErrorCode::AuthFailed as u16, "{name}");
            messages.push(e.message.clone());
        }
        assert!(messages.iter().all(|m| m == "authentication failed"), "{messages:?}");
    }

    #[test]
    fn a_version_outside_ours_is_unsupported_and_a_wider_range_picks_1() {
        let mut h = Harness::new();
        let mut bytes = MAGIC.to_vec();
        bytes.extend(vector("hello_version_2_only"));
        assert_eq!(error_code(&h.feed(&bytes)), Some(ErrorCode::UnsupportedVersion as u16));
    }

    #[test]
    fn a_batch_is_stored_then_acked_ok() {
        let mut h = Harness::welcomed();
        let out = h.feed(&vector("batch_one_location"));
        let [Action::Store { tenant, batch, .. }] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(tenant.id, "acme");
        assert_eq!((batch.seq(), batch.record_count()), (1, 1));
        assert_eq!(batch.device_id(), "dev-0001");
        assert_eq!(h.session.inflight(), 1);
        let mut out = Vec::new();
        h.session.batch_done(1, BatchOutcome::Stored, &mut out);
        assert_eq!(acks(&out), [(1, AckStatus::Ok)]);
        assert_eq!(h.session.inflight(), 0);
    }

    #[test]
    fn a_failed_store_is_acked_retry_with_retry_after() {
        let mut h = Harness::welcomed();
        h.feed(&vector("batch_one_location"));
        let mut out = Vec::new();
        h.session
            .batch_done(1, BatchOutcome::Retry("sink throttled".into()), &mut out);
        let [Action::Send(Frame::Ack(ack))] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(ack.status, AckStatus::Retry);
        assert!((125..=375).contains(&ack.retry_after_ms), "{}", ack.retry_after_ms);
        assert_eq!(ack.message, "sink throttled");
    }

    #[test]
    fn delays_told_to_agents_are_spread_around_the_configured_ones() {
        let mut seen = std::collections::BTreeSet::new();
        for id in 0..64u8 {
            let mut h = Harness::welcomed();
            h.session = Session::new(
                settings(),
                h.session.tenants.clone(),
                h.budget.clone(),
                h.session.admission.clone(),
                [id; 16],
                Transport::plain(),
                h.at(0),
            );
            let mut hello = MAGIC.to_vec();
            hello.extend(vector("hello_token_android"));
            h.feed(&hello);
            h.feed(&vector("batch_one_location"));
            let mut out = Vec::new();
            h.session.batch_done(1, BatchOutcome::Retry("busy".into()), &mut out);
            let [Action::Send(Frame::Ack(ack))] = &out[..] else {
                panic!("{out:?}")
            };
            assert!((125..=375).contains(&ack.retry_after_ms), "{}", ack.retry_after_ms);
            seen.insert(ack.retry_after_ms);
            let mut out = Vec::new();
            h.session.drain(h.at(1), &mut out);
            let Some(Action::Send(Frame::GoAway(g))) = out.first() else {
                panic!("{out:?}")
            };
            assert!((750..=2250).contains(&g.reconnect_after_ms), "{}", g.reconnect_after_ms);
            seen.insert(g.reconnect_after_ms);
        }
        assert!(seen.len() > 100, "64 sessions drew {} different delays", seen.len());
    }

    #[test]
    fn invalid_content_is_rejected_and_the_session_goes_on() {
        let mut h = Harness::welcomed();
        let out = h.feed(&vector("lat_out_of_range"));
        let [Action::Send(Frame::Ack(ack))] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(ack.status, AckStatus::Rejected);
        assert!(
            ack.message.starts_with("record 0: lat_e7 out of range"),
            "{}",
            ack.message
        );
        assert_eq!(stored(&h.feed(&vector("batch_one_location"))), [1]);
    }

    #[test]
    fn the_window_and_duplicate_seqs_are_enforced() {
        let mut h = Harness::welcomed();
        assert_eq!(stored(&h.feed(&vector("batch_one_location"))), [1]);
        // Same seq while in flight.
        let out = h.feed(&vector("batch_one_location"));
        assert_eq!(error_code(&out), Some(ErrorCode::WindowExceeded as u16));

        let mut h = Harness::welcomed();
        assert_eq!(stored(&h.feed(&vector("batch_one_location"))), [1]);
        assert_eq!(stored(&h.feed(&vector("batch_mixed_kinds"))), [77]);
        // max_inflight is 2: a third is over the window.
        let out = h.feed(&vector("batch_max_seq"));
        assert_eq!(error_code(&out), Some(ErrorCode::WindowExceeded as u16));
    }

    #[test]
    fn the_same_seq_may_be_resent_once_answered() {
        let mut h = Harness::welcomed();
        h.feed(&vector("batch_one_location"));
        let mut out = Vec::new();
        h.session.batch_done(1, BatchOutcome::Retry("busy".into()), &mut out);
        assert_eq!(stored(&h.feed(&vector("batch_one_location"))), [1]);
    }

    #[test]
    fn ping_is_answered_while_batches_are_in_flight() {
        let mut h = Harness::welcomed();
        h.feed(&vector("batch_one_location"));
        let out = h.feed(&vector("ping"));
        assert!(
            matches!(&out[..], [Action::Send(Frame::Pong(72623859790382856))]),
            "{out:?}"
        );
        assert_eq!(h.session.inflight(), 1);
    }

    #[test]
    fn frames_only_a_server_sends_are_unexpected() {
        for name in ["welcome", "ack_ok", "goaway", "hello_token_android"] {
            let mut h = Harness::welcomed();
            assert_eq!(
                error_code(&h.feed(&vector(name))),
                Some(ErrorCode::UnexpectedFrame as u16),
                "{name}"
            );
        }
    }

    #[test]
    fn frame_level_errors_close_with_their_code() {
        let cases = [
            ("bad_crc", ErrorCode::ChecksumMismatch),
            ("oversize_header_only", ErrorCode::FrameTooLarge),
            ("batch_seq_zero", ErrorCode::MalformedFrame),
            ("zstd_bomb", ErrorCode::FrameTooLarge),
            ("unknown_type", ErrorCode::MalformedFrame),
        ];
        for (name, code) in cases {
            let mut h = Harness::welcomed();
            assert_eq!(error_code(&h.feed(&vector(name))), Some(code as u16), "{name}");
        }
    }

    #[test]
    fn compression_the_client_did_not_offer_is_malformed() {
        let mut h = Harness::new();
        let mut bytes = MAGIC.to_vec();
        // The Windows HELLO offers no compression.
        bytes.extend(vector("hello_token_windows_expiry"));
        let out = h.feed(&bytes);
        let [Action::Send(Frame::Welcome(w))] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(w.compression.bits(), 0);
        assert_eq!(
            error_code(&h.feed(&vector("batch_mixed_lz4"))),
            Some(ErrorCode::MalformedFrame as u16)
        );
    }

    #[test]
    fn bye_acks_what_is_in_flight_then_closes() {
        let mut h = Harness::welcomed();
        h.feed(&vector("batch_one_location"));
        let out = h.feed(&vector("bye"));
        assert!(out.is_empty(), "{out:?}");
        // PINGs are still answered while the last ACKs are pending.
        let out = h.feed(&vector("ping"));
        assert!(matches!(&out[..], [Action::Send(Frame::Pong(_))]), "{out:?}");
        let mut out = Vec::new();
        h.session.batch_done(1, BatchOutcome::Stored, &mut out);
        assert_eq!(acks(&out), [(1, AckStatus::Ok)]);
        assert!(matches!(out.last(), Some(Action::Close)));
    }

    #[test]
    fn a_batch_after_bye_is_unexpected() {
        let mut h = Harness::welcomed();
        h.feed(&vector("batch_one_location"));
        h.feed(&vector("bye"));
        assert_eq!(
            error_code(&h.feed(&vector("batch_mixed_kinds"))),
            Some(ErrorCode::UnexpectedFrame as u16)
        );
    }

    #[test]
    fn a_half_closed_client_still_gets_its_acks() {
        let mut h = Harness::welcomed();
        h.feed(&vector("batch_one_location"));
        let mut out = Vec::new();
        h.session.eof(&mut out);
        assert!(out.is_empty(), "{out:?}");
        assert!(!h.session.wants_input(), "nothing more to read");
        h.session.batch_done(1, BatchOutcome::Stored, &mut out);
        assert_eq!(acks(&out), [(1, AckStatus::Ok)]);
        assert!(matches!(out.last(), Some(Action::Close)));

        let mut h = Harness::welcomed();
        let mut out = Vec::new();
        h.session.eof(&mut out);
        assert!(matches!(&out[..], [Action::Close]), "nothing in flight: close at once");
    }

    #[test]
    fn a_second_hello_is_unexpected_from_its_header_whatever_its_length() {
        let mut h = Harness::welcomed();
        // A HELLO header claiming 5,000 bytes (over HELLO's 4,096 limit) and a wrong CRC.
        let out = h.feed(&[1, 0, 0, 0, 0, 0, 0x13, 0x88, 0, 0, 0, 0]);
        assert_eq!(error_code(&out), Some(ErrorCode::UnexpectedFrame as u16));
    }

    /// A frame of `records` typical records, under seq 1.
    fn big_frame(records: usize) -> Vec<u8> {
        let mut buf = bytes::BytesMut::new();
        awp_benches::typical_batch(1, records, 9)
            .encode(Compression::None, &Limits::DEFAULT, &mut buf)
            .unwrap();
        buf.to_vec()
    }

    #[test]
    fn a_trickled_frame_is_cut_off_at_the_minimum_rate() {
        let mut h = Harness::welcomed();
        let frame = big_frame(100);
        // 100 bytes a second, under the 1,000 allowed, never silent for a heartbeat.
        let mut out = Vec::new();
        for (i, chunk) in frame.chunks(50).enumerate() {
            let ms = 500 * i as u64;
            h.session.tick(h.at(ms), &mut out);
            if !out.is_empty() {
                break;
            }
            out.extend(h.feed_at(ms, chunk));
        }
        let [Action::Send(Frame::Error(e)), Action::Close] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(e.code, ErrorCode::IdleTimeout as u16);
        assert!(e.message.contains("slower than 1000 bytes/s"), "{}", e.message);
    }

    #[test]
    fn a_trickle_into_a_large_frame_is_cut_off_within_seconds() {
        let mut h = Harness::welcomed();
        // A BATCH header declaring 1 MiB, then 500 bytes a second.
        let mut out = h.feed_at(0, &[3, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0]);
        let mut ms = 0;
        while out.is_empty() && ms < 60_000 {
            ms += 100;
            h.session.tick(h.at(ms), &mut out);
            if out.is_empty() {
                out.extend(h.feed_at(ms, &[0; 50]));
            }
        }
        assert_eq!(error_code(&out), Some(ErrorCode::IdleTimeout as u16), "{out:?}");
        // One heartbeat of grace (1 s), then 500 bytes/s falls behind 1,000.
        assert!((1_000..=2_500).contains(&ms), "cut off after {ms} ms");
    }

    #[test]
    fn a_large_frame_on_a_slow_link_arrives() {
        let mut h = Harness::welcomed();
        let frame = big_frame(1000);
        // A poor cellular link: 90 kbit/s (11,250 bytes a second), in 100 ms steps.
        let mut out = Vec::new();
        for (i, chunk) in frame.chunks(1125).enumerate() {
            let ms = 100 * i as u64;
            h.session.tick(h.at(ms), &mut out);
            out.extend(h.feed_at(ms, chunk));
        }
        assert_eq!(stored(&out), [1], "{out:?}");
        assert!(h.session.input.capacity() <= 2 * MAX_FRAME_RESERVE + 64 * 1024);
    }

    #[test]
    fn a_large_header_reserves_a_part_of_its_frame() {
        let mut h = Harness::welcomed();
        // A BATCH header claiming 1 MiB, then nothing more.
        let header = [3, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0];
        assert!(h.feed(&header).is_empty());
        assert!(
            h.session.input.capacity() <= MAX_FRAME_RESERVE + 1024,
            "{}",
            h.session.input.capacity()
        );
    }

    #[test]
    fn drain_sends_goaway_acks_in_flight_and_retries_new_batches() {
        let mut h = Harness::welcomed();
        h.feed(&vector("batch_one_location"));
        let mut out = Vec::new();
        h.session.drain(h.at(0), &mut out);
        let [Action::Send(Frame::GoAway(g))] = &out[..] else {
            panic!("{out:?}")
        };
        assert!((750..=2250).contains(&g.reconnect_after_ms), "{}", g.reconnect_after_ms);
        let out = h.feed(&vector("batch_mixed_kinds"));
        assert_eq!(acks(&out), [(77, AckStatus::Retry)]);
        let mut out = Vec::new();
        h.session.batch_done(1, BatchOutcome::Stored, &mut out);
        assert_eq!(acks(&out), [(1, AckStatus::Ok)]);
        assert!(matches!(out.last(), Some(Action::Close)));
        assert!(h.session.is_closed());
    }

    /// A second session of the same device, sharing the first's admission.
    fn same_device_again(h: &Harness, admission: Arc<Admission>) -> Vec<Action> {
        let mut second = Session::new(
            settings(),
            h.session.tenants.clone(),
            h.budget.clone(),
            admission,
            [8; 16],
            Transport::plain(),
            h.at(0),
        );
        let mut input = second.take_input();
        input.extend_from_slice(&MAGIC);
        input.extend_from_slice(&vector("hello_token_android"));
        let n = input.len();
        let mut out = Vec::new();
        second.received(input, n, h.at(0), &mut out);
        out
    }

    #[test]
    fn a_device_connecting_again_replaces_its_older_session() {
        let mut h = Harness::welcomed();
        let mailbox = h.session.mailbox.clone().expect("admitted");
        h.feed(&vector("batch_one_location"));
        let out = same_device_again(&h, h.session.admission.clone());
        assert!(matches!(&out[..], [Action::Send(Frame::Welcome(_))]), "{out:?}");
        // The connection is woken, and the older session goes away as at shutdown.
        assert!(mailbox.arrived().now_or_never().is_some());
        assert!(mailbox.take_told_to_go());
        let mut out = Vec::new();
        h.session.replaced(h.at(1), &mut out);
        let [Action::Send(Frame::GoAway(g))] = &out[..] else {
            panic!("{out:?}")
        };
        assert!(g.reason.contains("replaced"), "{}", g.reason);
        assert_eq!(acks(&h.feed(&vector("batch_mixed_kinds"))), [(77, AckStatus::Retry)]);
        let mut out = Vec::new();
        h.session.batch_done(1, BatchOutcome::Stored, &mut out);
        assert_eq!(acks(&out), [(1, AckStatus::Ok)], "in flight: still acknowledged");
        assert!(h.session.is_closed());
    }

    #[test]
    fn a_hello_beyond_the_connection_limit_gets_server_busy() {
        let h = Harness::welcomed();
        let out = same_device_again(&h, Admission::new(0, []));
        assert_eq!(error_code(&out), Some(ErrorCode::ServerBusy as u16));
    }

    #[test]
    fn a_session_past_its_maximum_age_is_told_to_go_away() {
        let mut h = Harness::new();
        h.session.settings = Arc::new(SessionSettings {
            max_connection_age: Some(Duration::from_millis(10_000)),
            heartbeat: Duration::from_secs(3600),
            ..(*settings()).clone()
        });
        let mut hello = MAGIC.to_vec();
        hello.extend(vector("hello_token_android"));
        assert!(matches!(&h.feed(&hello)[..], [Action::Send(Frame::Welcome(_))]));
        h.feed(&vector("batch_one_location"));
        // The session id's byte 8 is 7: 10 s × (0.9 + 0.2 × 7/255) ≈ 9,055 ms.
        let due = h.session.deadline();
        assert_eq!((due - h.t0).as_millis(), 9_054);
        let mut out = Vec::new();
        h.session.tick(h.at(9_000), &mut out);
        assert!(out.is_empty(), "{out:?}");
        h.session.tick(h.at(9_055), &mut out);
        let [Action::Send(Frame::GoAway(g))] = &out[..] else {
            panic!("{out:?}")
        };
        assert!(g.reason.contains("maximum age"), "{}", g.reason);
        let mut out = Vec::new();
        h.session.batch_done(1, BatchOutcome::Stored, &mut out);
        assert_eq!(acks(&out), [(1, AckStatus::Ok)], "in flight: still acknowledged");
        assert!(h.session.is_closed());
    }

    #[test]
    fn a_batch_over_its_devices_quota_is_retried_after_the_buckets_wait() {
        // One record a second per device; the bucket holds one record.
        let quota = crate::quota::TenantQuota::new(None, None, std::num::NonZeroU32::new(1), 1, 1 << 20);
        let tenant = Tenant::with_secrets("acme", &["acme-secret-1"]).with_quota(quota);
        let mut h = Harness::with_tenant(tenant, PLENTY);
        let mut hello = MAGIC.to_vec();
        hello.extend(vector("hello_token_android"));
        h.feed(&hello);
        assert_eq!(stored(&h.feed(&vector("batch_one_location"))), [1]);
        let mut out = Vec::new();
        h.session.batch_done(1, BatchOutcome::Stored, &mut out);
        let out = h.feed(&vector("batch_one_location"));
        let [Action::Send(Frame::Ack(ack))] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!((ack.seq, ack.status), (1, AckStatus::Retry));
        assert!(ack.message.contains("device quota"), "{}", ack.message);
        // About a second to wait (more than retry_after_ms, 250), and up to half again.
        assert!((900..=1500).contains(&ack.retry_after_ms), "{}", ack.retry_after_ms);
        assert_eq!(h.session.inflight(), 0, "nothing of it is stored");
    }

    #[test]
    fn silence_for_three_heartbeats_is_an_idle_timeout() {
        let mut h = Harness::welcomed();
        let mut out = Vec::new();
        h.session.tick(h.at(2999), &mut out);
        assert!(out.is_empty());
        h.feed_at(2000, &vector("ping"));
        h.session.tick(h.at(4999), &mut out);
        assert!(out.is_empty(), "a frame at 2000 ms pushes the deadline to 5000 ms");
        h.session.tick(h.at(5000), &mut out);
        assert_eq!(error_code(&out), Some(ErrorCode::IdleTimeout as u16));
    }

    #[test]
    fn no_hello_in_time_is_an_idle_timeout() {
        let mut h = Harness::new();
        h.feed(&MAGIC);
        let mut out = Vec::new();
        h.session.tick(h.at(500), &mut out);
        let [Action::Send(Frame::Error(e)), Action::Close] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(e.code, ErrorCode::IdleTimeout as u16);
        assert!(e.message.contains("HELLO"));
    }

    /// The budget a plain vector BATCH costs.
    fn cost_of(name: &str) -> usize {
        vector(name).len() - HEADER_LEN + crate::budget::PER_BATCH_OVERHEAD
    }

    fn awaits_budget(actions: &[Action]) -> Option<u32> {
        actions.iter().find_map(|a| match a {
            Action::AwaitBudget(r) => Some(r.bytes()),
            _ => None,
        })
    }

    /// A permit from a budget of its own: the test's stand-in for budget
    /// that the connection waited for.
    fn spare_permit() -> BudgetPermit {
        let budget = MemoryBudget::new(PLENTY, PLENTY, ["acme".to_owned()]);
        budget.tenant("acme").unwrap().try_take(10).unwrap()
    }

    #[test]
    fn a_batch_without_budget_parks_and_ping_is_still_answered() {
        // Room for one batch_one_location, not two.
        let mut h = Harness::welcomed_with_budget(cost_of("batch_one_location") + 10);
        let mut out = h.feed(&vector("batch_one_location"));
        let Some(Action::Store { permit, .. }) = out.pop() else {
            panic!("{out:?}")
        };
        // The second batch finds no budget: it parks, and the connection must wait in line.
        let out = h.feed(&vector("batch_mixed_kinds"));
        assert_eq!(
            awaits_budget(&out),
            Some(cost_of("batch_mixed_kinds") as u32),
            "{out:?}"
        );
        assert!(stored(&out).is_empty());
        assert!(h.session.awaiting_budget());
        assert!(h.session.wants_input(), "one parked frame leaves room to read on");
        // PING behind it is answered at once.
        let out = h.feed(&vector("ping"));
        assert!(matches!(&out[..], [Action::Send(Frame::Pong(_))]), "{out:?}");
        // The first write completes: its budget comes back and the parked batch goes on.
        let mut out = Vec::new();
        h.session.batch_done(1, BatchOutcome::Stored, &mut out);
        drop(permit);
        h.session.budget_granted(spare_permit(), h.at(5), &mut out);
        assert_eq!(acks(&out), [(1, AckStatus::Ok)]);
        assert_eq!(stored(&out), [77]);
        assert!(!h.session.awaiting_budget());
    }

    #[test]
    fn bye_behind_a_parked_batch_waits_for_it() {
        let mut h = Harness::welcomed_with_budget(100);
        let out = h.feed(&vector("batch_one_location"));
        assert!(awaits_budget(&out).is_some());
        let out = h.feed(&vector("bye"));
        assert!(out.is_empty(), "{out:?}");
        assert!(!h.session.is_closed(), "the parked batch was received before BYE");
        let mut out = Vec::new();
        h.session.budget_granted(spare_permit(), h.at(1), &mut out);
        assert_eq!(stored(&out), [1]);
        let mut out = Vec::new();
        h.session.batch_done(1, BatchOutcome::Stored, &mut out);
        assert_eq!(acks(&out), [(1, AckStatus::Ok)]);
        assert!(matches!(out.last(), Some(Action::Close)));
    }

    #[test]
    fn a_batch_that_waits_too_long_for_budget_is_retried() {
        let mut h = Harness::welcomed_with_budget(100);
        let out = h.feed_at(0, &vector("batch_one_location"));
        assert!(awaits_budget(&out).is_some());
        let mut out = Vec::new();
        h.session.tick(h.at(1999), &mut out);
        assert!(out.is_empty());
        h.session.tick(h.at(2000), &mut out);
        let [Action::Send(Frame::Ack(ack))] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!((ack.seq, ack.status), (1, AckStatus::Retry));
        assert!((125..=375).contains(&ack.retry_after_ms), "{}", ack.retry_after_ms);
        assert!(ack.message.contains("no memory"), "{}", ack.message);
        assert!(!h.session.awaiting_budget());
        assert!(!h.session.is_closed(), "the session goes on");
        // A late grant finds nothing parked and is simply dropped.
        let mut out = Vec::new();
        h.session.budget_granted(spare_permit(), h.at(2001), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn parked_batches_count_in_the_window() {
        let mut h = Harness::welcomed_with_budget(100);
        assert!(awaits_budget(&h.feed(&vector("batch_one_location"))).is_some());
        assert!(
            h.feed(&vector("batch_mixed_kinds")).is_empty(),
            "parks behind the first"
        );
        // max_inflight is 2: a third is over the window even though none is in flight.
        let out = h.feed(&vector("batch_max_seq"));
        assert_eq!(error_code(&out), Some(ErrorCode::WindowExceeded as u16));
    }

    #[test]
    fn parked_frames_beyond_their_room_stop_the_reading_until_budget_comes() {
        let settings = Arc::new(SessionSettings {
            max_inflight: 8,
            limits: Limits {
                max_frame_len: 65_536,
                ..Limits::DEFAULT
            },
            ..(*settings()).clone()
        });
        let mut h = Harness::with_budget(100);
        h.session = Session::new(
            settings,
            h.session.tenants.clone(),
            h.budget.clone(),
            h.session.admission.clone(),
            [7; 16],
            Transport::plain(),
            h.at(0),
        );
        let mut input = MAGIC.to_vec();
        input.extend(vector("hello_token_android"));
        h.feed(&input);
        // Three batches of about 28 KB: two fit the parked frames' 64 KiB of room, the third waits.
        let mut input = bytes::BytesMut::new();
        for seq in 1..=3 {
            awp_benches::typical_batch(seq, 1000, 3)
                .encode(Compression::None, &Limits::DEFAULT, &mut input)
                .unwrap();
        }
        assert!(input.len() > 3 * 25_000 && input.len() < 3 * 32_000, "{}", input.len());
        input.extend_from_slice(&vector("ping"));
        let out = h.feed(&input);
        assert!(awaits_budget(&out).is_some());
        assert!(!h.session.wants_input(), "the third batch waits in the buffer");
        assert!(
            !out.iter().any(|a| matches!(a, Action::Send(Frame::Pong(_)))),
            "{out:?}"
        );
        // Budget for the first: the third is read and parks, and the PING behind it is answered.
        let mut out = Vec::new();
        h.session.budget_granted(spare_permit(), h.at(1), &mut out);
        assert_eq!(stored(&out), [1]);
        assert!(awaits_budget(&out).is_some(), "{out:?}");
        assert!(out.iter().any(|a| matches!(a, Action::Send(Frame::Pong(_)))), "{out:?}");
        assert!(h.session.wants_input());
    }

    #[test]
    fn drain_retries_parked_batches() {
        let mut h = Harness::welcomed_with_budget(100);
        assert!(awaits_budget(&h.feed(&vector("batch_one_location"))).is_some());
        let mut out = Vec::new();
        h.session.drain(h.at(0), &mut out);
        assert!(matches!(&out[0], Action::Send(Frame::GoAway(_))), "{out:?}");
        assert_eq!(acks(&out), [(1, AckStatus::Retry)]);
        assert!(matches!(out.last(), Some(Action::Close)));
    }

    #[test]
    fn a_compressed_batch_costs_its_declared_size() {
        let mut h = Harness::welcomed_with_budget(100);
        let out = h.feed(&vector("batch_mixed_zstd"));
        let declared = {
            let v = vector("batch_mixed_zstd");
            u32::from_be_bytes(v[HEADER_LEN..HEADER_LEN + 4].try_into().unwrap())
        };
        assert_eq!(
            awaits_budget(&out),
            Some(declared + crate::budget::PER_BATCH_OVERHEAD as u32)
        );
    }
}
