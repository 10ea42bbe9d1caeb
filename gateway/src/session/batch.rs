//! BATCH: its cost from the memory budget (parking it when there is no
//! room), inflating and checking it once, and its answer from the store.

use awp_protocol::{Ack, ErrorCode, Frame, HEADER_LEN, Header};
use awp_store::AcceptedBatch;
use bytes::Bytes;

use crate::admit::budget::{BudgetPermit, TenantBudget};
use crate::pipeline::outcome::BatchOutcome;

use super::*;

impl Session {
    /// A whole BATCH frame, not yet parsed: after GOAWAY it is answered
    /// RETRY; otherwise it takes its budget and is accepted, or parks.
    pub(super) fn batch_arrived(&mut self, header: Header, payload: Bytes, now: Now, out: &mut Vec<Action>) {
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
    pub(super) fn cost(&self, header: &Header, payload: &[u8]) -> u32 {
        // What it declares, no more than a batch may inflate to (a larger
        // declaration is refused when inflated); a payload too short to
        // declare one costs what it is.
        let max = self.decode_limits.max_batch_bytes as usize;
        let inflated = awp_protocol::inflated_len(header.compression, payload).map_or(payload.len(), |n| n.min(max));
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
    pub(super) fn resume_input(&mut self, now: Now, out: &mut Vec<Action>) {
        if self.input_blocked && self.state != State::Closed {
            self.input_blocked = false;
            self.decode_input(now, out);
        }
    }

    /// Answers every parked frame ACK RETRY (parsing each alone, to learn
    /// its seq, and dropping it at once).
    pub(super) fn retry_parked(&mut self, retry_after_ms: u64, message: &str, out: &mut Vec<Action>) -> usize {
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
    pub(super) fn retry_unaccepted(
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
    pub(super) fn accept(
        &mut self,
        header: Header,
        payload: Bytes,
        permit: BudgetPermit,
        now: Now,
        out: &mut Vec<Action>,
    ) {
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
                out.push(Action::Note(Note::RecordsReceived(accepted.record_count())));
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
}
