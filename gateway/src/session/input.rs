//! Reading: bytes into frames, each frame to its handler, and the frames a
//! session in its state does not take.

use awp_protocol::{ErrorCode, Frame, FrameType, HEADER_LEN, Header, check_preamble};
use bytes::{Buf, BytesMut};

use super::*;

impl Session {
    /// Consumes every complete frame the last read completed, given back
    /// with the bytes it read, and leaves a partial one.
    pub fn received(&mut self, buf: BytesMut, read: usize, now: Now, out: &mut Vec<Action>) {
        self.input.put_back(buf);
        self.input.read_done(read);
        self.last_heard = now.mono;
        self.decode_input(now, out);
    }

    /// Decodes what is in the buffer, then lets it give back memory.
    pub(super) fn decode_input(&mut self, now: Now, out: &mut Vec<Action>) {
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

    pub(super) fn decode_frames(&mut self, now: Now, out: &mut Vec<Action>) {
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
            out.push(Action::Note(Note::FrameReceived(header.frame_type, frame_len)));
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
    pub(super) fn parked_room(&self) -> usize {
        self.settings.limits.max_frame_len as usize + HEADER_LEN
    }

    /// Why a frame of this type is not allowed now, if it is not.
    pub(super) fn unexpected(&self, frame_type: FrameType) -> Option<String> {
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

    pub(super) fn on_frame(&mut self, frame: Frame, now: Now, out: &mut Vec<Action>) {
        match (self.state, frame) {
            (State::AwaitHello, Frame::Hello(hello)) => self.on_hello(hello, now, out),
            (_, Frame::Ping(nonce)) => out.push(Action::Send(Frame::Pong(nonce))),
            (_, Frame::Pong(_)) => {}
            (State::Ready | State::Draining, Frame::Bye) => {
                self.state = State::Closing;
                self.close_if_done(out);
            }
            (_, Frame::Error(e)) => {
                let message = crate::telemetry::logs::Escaped(&e.message);
                let agent = self.agent;
                let log = || tracing::info!(agent = %agent, code = e.code, message = %message, "client sent ERROR");
                if self.peer.is_some() {
                    log();
                } else {
                    crate::telemetry::logs::pre_auth(log);
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
}
