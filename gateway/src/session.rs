//! The AWP/1 session as a state machine without IO (AWP1.md §1, §4, §6).
//!
//! The connection task feeds it bytes, batch outcomes, clock ticks and the
//! shutdown signal; it answers with [`Action`]s: frames to send, items to
//! store, and when to close. Every protocol rule lives here, so it is
//! tested frame by frame without sockets (see the tests at the bottom).
//!
//! ```text
//!  AwaitPreamble ─\x89AWP─▶ AwaitHello ─HELLO ok─▶ Ready ──GOAWAY (shutdown)──▶ Draining
//!        │                     │                    │  BATCH → Store / ACK REJECTED   │ BATCH → ACK RETRY
//!        │ bad magic           │ other frame,       │  PING → PONG                    │ close when no batch
//!        ▼                     ▼ auth, version      │  BYE ──▶ Closing ─(acks out)─▶ Closed
//!      ERROR + close       ERROR + close            ▼ protocol error / idle: ERROR + close
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use awp_protocol::{
    Ack, CompressionSet, ErrorCode, ErrorFrame, Frame, FrameType, GoAway, HEADER_LEN, Header, Hello, Limits,
    SUPPORTED_VERSIONS, Welcome, check_preamble,
};
use bytes::{Buf, BytesMut};
use rustls_pki_types::CertificateDer;

use crate::item::{Item, ItemContext, batch_items};
use crate::tenant::{Tenant, Tenants};

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
    /// `retry_after_ms` for ACK RETRY.
    pub retry_after_ms: u64,
    /// `reconnect_after_ms` for GOAWAY.
    pub goaway_reconnect_ms: u64,
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
    /// Store these items durably, then report with [`Session::batch_done`].
    Store {
        /// The BATCH's seq.
        seq: u64,
        /// Whose items.
        tenant: Arc<Tenant>,
        /// One item per record.
        items: Vec<Item>,
    },
    /// Flush what was sent, then close the connection.
    Close,
}

/// How storing a batch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Every item is durable: ACK OK.
    Stored,
    /// Nothing may be counted as stored: ACK RETRY with this message.
    Retry(String),
}

/// Who is connected, once HELLO is accepted.
#[derive(Debug, Clone)]
struct Peer {
    tenant: Arc<Tenant>,
    device_id: String,
    platform: awp_protocol::Platform,
    agent_version: String,
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

/// One connection's AWP/1 session.
#[derive(Debug)]
pub struct Session {
    settings: Arc<SessionSettings>,
    tenants: Arc<Tenants>,
    session_id: [u8; 16],
    peer_certs: Option<Vec<CertificateDer<'static>>>,
    state: State,
    /// Limits for decoding the client's frames: compression only once negotiated.
    decode_limits: Limits,
    peer: Option<Peer>,
    /// Batches handed out for storage, with when each arrived (for ack latency).
    inflight: HashMap<u64, Instant>,
    opened: Instant,
    last_heard: Instant,
    /// The client shut its sending side; stop reading.
    half_closed: bool,
    /// When the first byte of a frame not yet complete arrived.
    frame_started: Option<Instant>,
}

impl Session {
    /// A session for a new connection. `peer_certs` is the TLS client
    /// certificate chain, if the client presented one.
    pub fn new(
        settings: Arc<SessionSettings>,
        tenants: Arc<Tenants>,
        session_id: [u8; 16],
        peer_certs: Option<Vec<CertificateDer<'static>>>,
        now: Now,
    ) -> Session {
        let decode_limits = Limits {
            accepted_compression: CompressionSet::NONE,
            ..settings.limits
        };
        Session {
            settings,
            tenants,
            session_id,
            peer_certs,
            state: State::AwaitPreamble,
            decode_limits,
            peer: None,
            inflight: HashMap::new(),
            opened: now.mono,
            last_heard: now.mono,
            half_closed: false,
            frame_started: None,
        }
    }

    /// Whether the connection should keep reading from the client (after
    /// BYE too: PINGs are answered while the last ACKs are pending), until
    /// the session ends or the client shuts its sending side.
    pub fn wants_input(&self) -> bool {
        self.state != State::Closed && !self.half_closed
    }

    /// Whether the session has ended (the connection closes).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Batches handed out for storage and not yet answered.
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// The tenant, once authenticated.
    pub fn tenant(&self) -> Option<&Arc<Tenant>> {
        self.peer.as_ref().map(|p| &p.tenant)
    }

    /// When [`Session::tick`] must next run.
    ///
    /// Silence counts from the last byte heard; a frame must also complete
    /// within three heartbeats of its first byte, so that a peer trickling
    /// bytes cannot hold a frame-sized buffer forever.
    pub fn deadline(&self) -> Instant {
        let idle = 3 * self.settings.heartbeat;
        let deadline = match self.state {
            State::AwaitPreamble | State::AwaitHello => self.opened + self.settings.hello_timeout,
            _ => self.last_heard + idle,
        };
        match self.frame_started {
            Some(started) => deadline.min(started + idle),
            None => deadline,
        }
    }

    /// Consumes every complete frame at the start of `buf` (bytes just read
    /// from the client) and leaves a partial one. Reserves room in `buf` for
    /// a frame whose header passed the checks, never more.
    pub fn receive(&mut self, buf: &mut BytesMut, now: Now, out: &mut Vec<Action>) {
        self.last_heard = now.mono;
        self.decode_frames(buf, now, out);
        // A partial frame left over: its clock starts at the first byte seen.
        if buf.is_empty() {
            self.frame_started = None;
        } else if self.frame_started.is_none() {
            self.frame_started = Some(now.mono);
        }
    }

    fn decode_frames(&mut self, buf: &mut BytesMut, now: Now, out: &mut Vec<Action>) {
        while self.wants_input() {
            if self.state == State::AwaitPreamble {
                match check_preamble(buf) {
                    Ok(None) => return,
                    Ok(Some(n)) => {
                        buf.advance(n);
                        self.state = State::AwaitHello;
                        continue;
                    }
                    Err(e) => return self.fail(e.code(), &e.to_string(), out),
                }
            }
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
            if buf.len() < frame_len {
                buf.reserve(frame_len - buf.len());
                return;
            }
            let mut frame_bytes = buf.split_to(frame_len);
            frame_bytes.advance(HEADER_LEN);
            // Whatever follows is a new frame, whose clock starts now.
            self.frame_started = None;
            metrics::counter!("awp_frames_received_total", "type" => header.frame_type.name()).increment(1);
            metrics::counter!("awp_bytes_received_total").increment(frame_len as u64);
            match Frame::parse(&header, frame_bytes.freeze(), &self.decode_limits) {
                Ok(frame) => self.on_frame(frame, now, out),
                Err(e) => return self.fail(e.code(), &e.to_string(), out),
            }
        }
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
            (State::Ready | State::Draining, Frame::Batch(batch)) => self.on_batch(batch, now, out),
            (_, Frame::Ping(nonce)) => out.push(Action::Send(Frame::Pong(nonce))),
            (_, Frame::Pong(_)) => {}
            (State::Ready | State::Draining, Frame::Bye) => {
                self.state = State::Closing;
                self.close_if_done(out);
            }
            (_, Frame::Error(e)) => {
                tracing::info!(code = e.code, message = %e.message, "client sent ERROR");
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
        let Some(tenant) = self
            .tenants
            .authenticate(&hello, self.peer_certs.as_deref(), now.unix_ms / 1000)
        else {
            metrics::counter!("awp_auth_failures_total").increment(1);
            return self.fail(ErrorCode::AuthFailed, "authentication failed", out);
        };
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
        tracing::debug!(tenant = %tenant.id, device = %hello.device_id, "session authenticated");
        self.peer = Some(Peer {
            tenant,
            device_id: hello.device_id,
            platform: hello.platform,
            agent_version: hello.agent_version,
        });
        self.state = State::Ready;
    }

    fn on_batch(&mut self, batch: awp_protocol::BatchFrame, now: Now, out: &mut Vec<Action>) {
        let seq = batch.seq();
        if self.inflight.contains_key(&seq) {
            let message = format!("seq {seq} is already in flight on this connection");
            return self.fail(ErrorCode::WindowExceeded, &message, out);
        }
        if self.inflight.len() >= self.settings.max_inflight as usize {
            let message = format!(
                "more than max_inflight={} batches unacknowledged",
                self.settings.max_inflight
            );
            return self.fail(ErrorCode::WindowExceeded, &message, out);
        }
        if self.state == State::Draining {
            return self.ack(
                Ack::retry(seq, self.settings.goaway_reconnect_ms, "server is draining"),
                out,
            );
        }
        let Some(peer) = &self.peer else {
            // Unreachable: Ready implies a peer. Answered, never a panic.
            return self.fail(ErrorCode::Internal, "no session", out);
        };
        let ctx = ItemContext {
            device_id: &peer.device_id,
            platform: peer.platform,
            agent_version: &peer.agent_version,
            seq,
            received_at_ms: now.unix_ms,
            expires_at: peer.tenant.expires_at(now.unix_ms),
        };
        match batch_items(&batch, &ctx, &self.decode_limits) {
            Ok(items) => {
                metrics::counter!("awp_records_received_total").increment(items.len() as u64);
                self.inflight.insert(seq, now.mono);
                out.push(Action::Store {
                    seq,
                    tenant: peer.tenant.clone(),
                    items,
                });
            }
            Err(e) => {
                tracing::info!(tenant = %peer.tenant.id, device = %peer.device_id, seq, error = %e, "batch rejected");
                self.ack(Ack::rejected(seq, &e.to_string()), out);
            }
        }
    }

    /// Reports how storing batch `seq` ended; answers it with an ACK.
    pub fn batch_done(&mut self, seq: u64, outcome: BatchOutcome, out: &mut Vec<Action>) {
        let Some(arrived) = self.inflight.remove(&seq) else {
            return;
        };
        if self.state == State::Closed {
            return;
        }
        metrics::histogram!("awp_ack_latency_seconds").record(arrived.elapsed());
        let ack = match outcome {
            BatchOutcome::Stored => Ack::ok(seq),
            BatchOutcome::Retry(message) => Ack::retry(seq, self.settings.retry_after_ms, &message),
        };
        self.ack(ack, out);
        self.close_if_done(out);
    }

    /// The gateway is not reading (backpressure): time spent so is not the
    /// client's silence, so the idle and frame deadlines move on with it.
    pub fn hold(&mut self, now: Now) {
        self.last_heard = now.mono;
        if self.frame_started.is_some() {
            self.frame_started = Some(now.mono);
        }
    }

    /// Starts draining for shutdown: GOAWAY, then close once in-flight
    /// batches are acknowledged.
    pub fn drain(&mut self, out: &mut Vec<Action>) {
        match self.state {
            State::AwaitPreamble | State::AwaitHello => {
                self.state = State::Closed;
                out.push(Action::Close);
            }
            State::Ready => {
                out.push(Action::Send(Frame::GoAway(GoAway::new(
                    self.settings.goaway_reconnect_ms,
                    "server shutting down",
                ))));
                self.state = State::Draining;
                self.close_if_done(out);
            }
            State::Draining | State::Closing | State::Closed => {}
        }
    }

    /// Checks the deadlines: no HELLO in time, or nothing heard for three
    /// heartbeats, closes with IDLE_TIMEOUT.
    pub fn tick(&mut self, now: Now, out: &mut Vec<Action>) {
        if self.state == State::Closed || now.mono < self.deadline() {
            return;
        }
        let idle_ms = 3 * self.settings.heartbeat.as_millis();
        let message = match self.state {
            State::AwaitPreamble | State::AwaitHello => {
                format!("no HELLO within {} ms", self.settings.hello_timeout.as_millis())
            }
            _ if self
                .frame_started
                .is_some_and(|s| now.mono >= s + 3 * self.settings.heartbeat) =>
            {
                format!("a frame was not completed within {idle_ms} ms")
            }
            _ => format!("nothing heard for {idle_ms} ms"),
        };
        self.fail(ErrorCode::IdleTimeout, &message, out);
    }

    /// The client closed its sending side. Batches in flight are still
    /// answered (the client may be waiting for their ACKs, as after BYE);
    /// with none, the session ends.
    pub fn eof(&mut self, out: &mut Vec<Action>) {
        match self.state {
            State::Ready | State::Draining | State::Closing if !self.inflight.is_empty() => {
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
        metrics::counter!("awp_acks_total", "status" => ack.status.name()).increment(1);
        out.push(Action::Send(Frame::Ack(ack)));
    }

    fn close_if_done(&mut self, out: &mut Vec<Action>) {
        if matches!(self.state, State::Draining | State::Closing) && self.inflight.is_empty() {
            self.state = State::Closed;
            out.push(Action::Close);
        }
    }

    fn fail(&mut self, code: ErrorCode, message: &str, out: &mut Vec<Action>) {
        metrics::counter!("awp_errors_total", "code" => code.name()).increment(1);
        tracing::info!(code = code.name(), message, "session error");
        out.push(Action::Send(Frame::Error(ErrorFrame::new(code, message))));
        out.push(Action::Close);
        self.state = State::Closed;
    }
}

#[cfg(test)]
mod tests {
    //! The session, frame by frame, without sockets.

    use std::time::{Duration, Instant};

    use awp_protocol::{AckStatus, Frame, Limits, MAGIC};
    use bytes::BytesMut;
    use serde_json::Value;

    use super::*;

    fn vector(name: &str) -> Vec<u8> {
        let all: Value = serde_json::from_str(include_str!("../../protocol/tests/vectors.json")).unwrap();
        let v = all["valid"]
            .as_array()
            .unwrap()
            .iter()
            .chain(all["invalid"].as_array().unwrap())
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no vector {name}"));
        hex::decode(v["hex"].as_str().unwrap()).unwrap()
    }

    fn settings() -> Arc<SessionSettings> {
        Arc::new(SessionSettings {
            limits: Limits::DEFAULT,
            max_inflight: 2,
            heartbeat: Duration::from_millis(1000),
            hello_timeout: Duration::from_millis(500),
            retry_after_ms: 250,
            goaway_reconnect_ms: 1500,
        })
    }

    struct Harness {
        session: Session,
        t0: Instant,
        unix_ms: u64,
        /// The connection's read buffer: partial frames stay in it between feeds.
        buf: BytesMut,
    }

    impl Harness {
        fn new() -> Harness {
            let mut tenants = Tenants::default();
            tenants.insert(Tenant::with_secrets("acme", &["acme-secret-1"]));
            let t0 = Instant::now();
            let now = Now {
                mono: t0,
                unix_ms: 1_764_000_000_000,
            };
            Harness {
                session: Session::new(settings(), Arc::new(tenants), [7; 16], None, now),
                t0,
                unix_ms: now.unix_ms,
                buf: BytesMut::new(),
            }
        }

        fn at(&self, ms: u64) -> Now {
            Now {
                mono: self.t0 + Duration::from_millis(ms),
                unix_ms: self.unix_ms + ms,
            }
        }

        fn feed_at(&mut self, ms: u64, bytes: &[u8]) -> Vec<Action> {
            self.buf.extend_from_slice(bytes);
            let mut out = Vec::new();
            let now = self.at(ms);
            self.session.receive(&mut self.buf, now, &mut out);
            out
        }

        fn feed(&mut self, bytes: &[u8]) -> Vec<Action> {
            self.feed_at(0, bytes)
        }

        /// Preamble and the vectors' Android HELLO: expects WELCOME.
        fn welcomed() -> Harness {
            let mut h = Harness::new();
            let mut bytes = MAGIC.to_vec();
            bytes.extend(vector("hello_token_android"));
            let out = h.feed(&bytes);
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
                Action::Store { seq, .. } => Some(*seq),
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
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut bytes = MAGIC.to_vec();
        bytes.extend(vector("hello_token_android"));
        for b in bytes {
            buf.extend_from_slice(&[b]);
            h.session.receive(&mut buf, h.at(0), &mut out);
        }
        assert!(matches!(&out[..], [Action::Send(Frame::Welcome(_))]), "{out:?}");
        assert!(buf.is_empty());
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
        let [Action::Store { seq: 1, tenant, items }] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(tenant.id, "acme");
        assert_eq!(items.len(), 1);
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
        assert_eq!((ack.status, ack.retry_after_ms), (AckStatus::Retry, 250));
        assert_eq!(ack.message, "sink throttled");
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

    #[test]
    fn a_trickled_frame_must_complete_within_three_heartbeats() {
        let mut h = Harness::welcomed();
        let batch = vector("batch_mixed_kinds");
        // One byte every 500 ms: never silent for long, but the frame drags on.
        let mut out = Vec::new();
        for (i, b) in batch[..20].iter().enumerate() {
            let ms = 500 * i as u64;
            h.session.tick(h.at(ms), &mut out);
            if !out.is_empty() {
                break;
            }
            out.extend(h.feed_at(ms, &[*b]));
        }
        let [Action::Send(Frame::Error(e)), Action::Close] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(e.code, ErrorCode::IdleTimeout as u16);
        assert!(e.message.contains("not completed"), "{}", e.message);
    }

    #[test]
    fn drain_sends_goaway_acks_in_flight_and_retries_new_batches() {
        let mut h = Harness::welcomed();
        h.feed(&vector("batch_one_location"));
        let mut out = Vec::new();
        h.session.drain(&mut out);
        let [Action::Send(Frame::GoAway(g))] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(g.reconnect_after_ms, 1500);
        let out = h.feed(&vector("batch_mixed_kinds"));
        assert_eq!(acks(&out), [(77, AckStatus::Retry)]);
        let mut out = Vec::new();
        h.session.batch_done(1, BatchOutcome::Stored, &mut out);
        assert_eq!(acks(&out), [(1, AckStatus::Ok)]);
        assert!(matches!(out.last(), Some(Action::Close)));
        assert!(h.session.is_closed());
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
}
