//! One connection's AWP/1 exchange, after WELCOME, without IO: the window
//! of batches in flight, the answers, RETRY's delays, GOAWAY, PING, the ACK
//! deadline. The connection feeds it frames and the clock; it says what to
//! send and what happened. Tested frame by frame (`session_test.rs`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use awp_protocol::{AckStatus, Compression, ErrorCode, Frame, Limits, PreparedBatch, Welcome};
use bytes::BytesMut;

use crate::queue::SealedBatch;

/// What the session was set up with, beside WELCOME.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SessionSettings {
    /// The compression this agent prefers, if WELCOME accepted it.
    pub(crate) compression: Compression,
    /// An ACK later than this after its BATCH ends the connection.
    pub(crate) ack_timeout: Duration,
}

/// A batch on the wire, waiting for its ACK.
#[derive(Debug)]
struct Inflight {
    batch: SealedBatch,
    sent_at: Instant,
}

/// What an answer did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answered {
    /// ACK OK: stored.
    Stored { seq: u64, records: u32, sent_at: Instant },
    /// ACK REJECTED: dropped for good, with the gateway's reason.
    Rejected { seq: u64, records: u32, reason: String },
    /// ACK RETRY: sent again after the delay.
    Retry { seq: u64 },
    /// An ACK for no batch in flight (counted; nothing else to do).
    Unknown { seq: u64 },
    /// Nothing to tell (PONG, a PING answered).
    Nothing,
}

/// Why a connection ends.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// GOAWAY, and every batch in flight answered: reconnect after this long.
    GoAway { reconnect_after_ms: u64 },
    /// The gateway sent ERROR.
    Error { code: u16, message: String },
    /// A batch waited longer than the ACK deadline.
    AckTimeout { seq: u64 },
    /// The gateway broke the protocol (a frame it may not send).
    Protocol(String),
}

impl End {
    /// Whether retrying can never help: the app is told and the engine stops.
    pub(crate) fn is_final(&self) -> bool {
        matches!(self, End::Error { code, .. }
            if *code == ErrorCode::AuthFailed as u16 || *code == ErrorCode::UnsupportedVersion as u16)
    }
}

/// The exchange after WELCOME.
pub(crate) struct Session {
    window: usize,
    limits: Limits,
    compression: Compression,
    heartbeat: Duration,
    ack_timeout: Duration,
    inflight: HashMap<u64, Inflight>,
    /// Batches answered RETRY, and when they may go again.
    retry: Vec<(Instant, SealedBatch)>,
    goaway: Option<u64>,
    last_sent: Instant,
    rng: fastrand::Rng,
}

impl Session {
    /// The exchange WELCOME opened.
    pub(crate) fn new(welcome: &Welcome, settings: SessionSettings, now: Instant) -> Session {
        let compression = if welcome.compression.allows(settings.compression) {
            settings.compression
        } else {
            Compression::None
        };
        Session {
            window: usize::try_from(welcome.max_inflight)
                .unwrap_or(usize::MAX)
                .clamp(1, 1024),
            limits: welcome.limits(),
            compression,
            heartbeat: Duration::from_millis(welcome.heartbeat_ms.max(100)),
            ack_timeout: settings.ack_timeout,
            inflight: HashMap::new(),
            retry: Vec::new(),
            goaway: None,
            last_sent: now,
            rng: fastrand::Rng::new(),
        }
    }

    /// Whether a batch new to this connection may be sent now.
    pub(crate) fn wants_new(&self) -> bool {
        self.goaway.is_none() && self.inflight.len() + self.retry.len() < self.window
    }

    /// A batch answered RETRY whose delay is over, if the window has room.
    pub(crate) fn due_retry(&mut self, now: Instant) -> Option<SealedBatch> {
        if self.goaway.is_some() || self.inflight.len() >= self.window {
            return None;
        }
        let i = self.retry.iter().position(|(at, _)| *at <= now)?;
        Some(self.retry.swap_remove(i).1)
    }

    /// Appends `batch` as a BATCH frame to `dst` and waits for its ACK. A
    /// batch the gateway's limits cannot take is returned as an error: it
    /// could never be stored by this gateway.
    pub(crate) fn send(&mut self, batch: SealedBatch, dst: &mut BytesMut, now: Instant) -> Result<(), String> {
        let prepared = PreparedBatch::from_content(batch.content.clone(), &self.limits).map_err(|e| e.to_string())?;
        prepared
            .encode(batch.seq, self.compression, &self.limits, dst)
            .map_err(|e| e.to_string())?;
        self.last_sent = now;
        self.inflight.insert(batch.seq, Inflight { batch, sent_at: now });
        Ok(())
    }

    /// A PING if nothing was sent for a heartbeat.
    pub(crate) fn ping_if_idle(&mut self, dst: &mut BytesMut, now: Instant) {
        if now.duration_since(self.last_sent) >= self.heartbeat {
            let _ = Frame::Ping(self.rng.u64(..)).encode(dst);
            self.last_sent = now;
        }
    }

    /// Takes one frame from the gateway.
    pub(crate) fn on_frame(&mut self, frame: Frame, dst: &mut BytesMut, now: Instant) -> Result<Answered, End> {
        match frame {
            Frame::Ack(ack) => {
                let Some(sent) = self.inflight.remove(&ack.seq) else {
                    return Ok(Answered::Unknown { seq: ack.seq });
                };
                Ok(match ack.status {
                    AckStatus::Ok => Answered::Stored {
                        seq: ack.seq,
                        records: sent.batch.records,
                        sent_at: sent.sent_at,
                    },
                    AckStatus::Rejected => Answered::Rejected {
                        seq: ack.seq,
                        records: sent.batch.records,
                        reason: ack.message,
                    },
                    AckStatus::Retry => {
                        let at = now + jittered(ack.retry_after_ms, &mut self.rng);
                        self.retry.push((at, sent.batch));
                        Answered::Retry { seq: ack.seq }
                    }
                })
            }
            Frame::Ping(nonce) => {
                let _ = Frame::Pong(nonce).encode(dst);
                Ok(Answered::Nothing)
            }
            Frame::Pong(_) => Ok(Answered::Nothing),
            Frame::GoAway(g) => {
                self.goaway = Some(g.reconnect_after_ms);
                Ok(Answered::Nothing)
            }
            Frame::Error(e) => Err(End::Error {
                code: e.code,
                message: e.message,
            }),
            other => Err(End::Protocol(format!(
                "the gateway sent {:?}, which it may not",
                other.frame_type()
            ))),
        }
    }

    /// Whether the connection is over: GOAWAY with nothing left in flight,
    /// or an ACK past its deadline.
    pub(crate) fn end(&self, now: Instant) -> Option<End> {
        if let Some(ms) = self.goaway
            && self.inflight.is_empty()
        {
            return Some(End::GoAway { reconnect_after_ms: ms });
        }
        self.inflight
            .iter()
            .find(|(_, i)| now.duration_since(i.sent_at) > self.ack_timeout)
            .map(|(seq, _)| End::AckTimeout { seq: *seq })
    }

    /// When something is due: a heartbeat, a RETRY's delay, an ACK deadline.
    pub(crate) fn next_wake(&self) -> Instant {
        let mut wake = self.last_sent + self.heartbeat;
        for (at, _) in &self.retry {
            wake = wake.min(*at);
        }
        for i in self.inflight.values() {
            wake = wake.min(i.sent_at + self.ack_timeout + Duration::from_millis(1));
        }
        wake
    }

    /// Whether nothing is in flight or waiting to be retried.
    pub(crate) fn idle(&self) -> bool {
        self.inflight.is_empty() && self.retry.is_empty()
    }
}

/// The longest delay a gateway's RETRY or GOAWAY is taken at: AWP/1 does
/// not bound them, and a wrong or hostile one must not park the agent for
/// ever (or overflow a clock).
pub(crate) const MAX_GATEWAY_DELAY_MS: u64 = 3_600_000;

/// A delay the gateway asked for, and up to half as long again (never
/// sooner: AWP/1 says to send again *after* `retry_after_ms`; agents told to
/// come back at the same moment spread over the next half), at most
/// [`MAX_GATEWAY_DELAY_MS`] and a half.
pub(crate) fn jittered(ms: u64, rng: &mut fastrand::Rng) -> Duration {
    let ms = ms.min(MAX_GATEWAY_DELAY_MS);
    Duration::from_millis(ms + rng.u64(0..=ms / 2))
}

#[cfg(test)]
#[path = "session_test.rs"]
mod tests;
