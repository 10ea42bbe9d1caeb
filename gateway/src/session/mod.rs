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
//! A BATCH takes its cost from the tenant's memory budget (`admit/budget.rs`)
//! before it is inflated or decoded. When the budget has no room, the frame
//! is parked as it came (its wire bytes) and the session asks the connection
//! to wait in line for the budget ([`Action::AwaitBudget`]); meanwhile it goes
//! on reading and answering PING, PONG, BYE and errors. Later BATCHes park
//! behind the first, in order, while the parked frames and the one being
//! read fit in `max_frame_len`; beyond that the session stops reading (the
//! agent's writes block) until budget comes. So a connection holds no more
//! wire bytes with parked frames than without. A batch parked longer than
//! `budget_wait` is answered ACK RETRY.

mod batch;
mod hello;
mod input;
mod lifecycle;

#[cfg(test)]
mod batch_test;
#[cfg(test)]
mod budget_test;
#[cfg(test)]
mod handshake_test;
#[cfg(test)]
mod harness_test;
#[cfg(test)]
mod lifecycle_test;

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use awp_protocol::{BatchFrame, Compression, CompressionSet, Frame, FrameType, Header, Limits};
use awp_store::{AcceptedBatch, Origin};
use bytes::{Bytes, BytesMut};
use rustls_pki_types::CertificateDer;

use crate::admit::admission::{Admission, Admitted};
use crate::admit::budget::{BudgetPermit, BudgetRequest, MemoryBudget, TenantBudget};
use crate::admit::quota::DeviceQuota;
use crate::admit::tenant::{LiveTenants, Tenant};
use crate::net::read_buffer::ReadBuffer;
use crate::pipeline::mailbox::Mailbox;

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
    /// Something to count (the connection records it: the session calls
    /// no metrics recorder). ACKs and ERRORs sent are counted from their
    /// [`Action::Send`].
    Note(Note),
}

/// What a session reports for the metrics, beside the frames it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// A frame of this type and length (header included) was read.
    FrameReceived(FrameType, usize),
    /// A batch of this many records passed its checks.
    RecordsReceived(u32),
    /// A HELLO did not authenticate, for this reason; the tenant it
    /// claimed, if it is one of ours.
    AuthFailed(&'static str, Option<String>),
    /// A HELLO was refused for a connection limit.
    ConnectionRefused,
    /// The session's credentials were revoked by a reload.
    Revoked,
    /// The session's token or certificate expired.
    CredentialsExpired,
    /// The session reached its maximum age.
    Aged,
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
    #[cfg(any(test, feature = "test-support"))]
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// Whether a BATCH waits for budget (the connection keeps its place in line).
    pub fn awaiting_budget(&self) -> bool {
        !self.parked.is_empty() && self.state != State::Closed
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
