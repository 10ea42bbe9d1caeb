//! A session over time: deadlines (idle, trickled frames, maximum age,
//! credentials), draining, being replaced or revoked, and closing with an
//! ERROR.

use std::time::{Duration, Instant};

use awp_protocol::{Ack, ErrorCode, ErrorFrame, Frame, GoAway};

use super::*;

impl Session {
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
    pub(super) fn age_due(&self) -> Option<Instant> {
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
    pub(super) fn credentials_due(&self) -> Option<Instant> {
        self.admitted.as_ref()?.credentials_end
    }

    /// When the frame in progress falls below the minimum average rate,
    /// unless more of it arrives: one heartbeat after its first byte, plus
    /// the time its bytes so far earn at `min_frame_rate`. It moves with
    /// every byte that comes, so a frame declaring a large length earns
    /// nothing by it: a peer trickling into a 1 MiB frame is cut off within
    /// seconds, not after the 17 minutes the whole frame would take.
    pub(super) fn frame_due(&self) -> Option<Instant> {
        let (started, received) = (self.frame_started?, self.partial_frame_received?);
        let earned = Duration::from_secs_f64(received as f64 / f64::from(self.settings.min_frame_rate.max(1)));
        Some(started + self.settings.heartbeat + earned)
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
        out.push(Action::Note(Note::Revoked));
        self.go_away("credentials no longer valid; reconnect with current ones", now, out);
    }

    /// GOAWAY with `reason`, then close once in-flight batches are
    /// acknowledged; parked and later batches are answered ACK RETRY.
    pub(super) fn go_away(&mut self, reason: &str, now: Now, out: &mut Vec<Action>) {
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
            out.push(Action::Note(Note::CredentialsExpired));
            return self.go_away("credentials expired; reconnect with fresh ones", now, out);
        }
        if self.state == State::Ready && self.age_due().is_some_and(|due| now.mono >= due) {
            out.push(Action::Note(Note::Aged));
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

    pub(super) fn ack(&mut self, ack: Ack, out: &mut Vec<Action>) {
        out.push(Action::Send(Frame::Ack(ack)));
    }

    pub(super) fn close_if_done(&mut self, out: &mut Vec<Action>) {
        if matches!(self.state, State::Draining | State::Closing) && self.inflight.is_empty() && self.parked.is_empty()
        {
            self.state = State::Closed;
            out.push(Action::Close);
        }
    }

    pub(super) fn fail(&mut self, code: ErrorCode, message: &str, out: &mut Vec<Action>) {
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
            crate::telemetry::logs::pre_auth(log);
        }
        self.fail_logged(code, message, out);
    }

    /// [`Session::fail`] for a failure logged already.
    pub(super) fn fail_logged(&mut self, code: ErrorCode, message: &str, out: &mut Vec<Action>) {
        out.push(Action::Send(Frame::Error(ErrorFrame::new(code, message))));
        out.push(Action::Close);
        self.state = State::Closed;
        self.parked.clear();
        self.parked_bytes = 0;
        self.parked_since = None;
    }
}
