//! The session driven by arbitrary input, for the `session` fuzz target
//! (`fuzz/fuzz_targets/session.rs`) and a short run in the unit tests.
//!
//! The input is read as a script of operations: bytes from the client (raw
//! fuzz bytes, the valid HELLO, or one of the vectors' BATCH frames; each cut
//! into arbitrary reads), pipeline outcomes for batches in flight (stored,
//! retry, rejected), granted memory budget, clock ticks, end of input,
//! shutdown, replacement and eviction. After every operation [`run`] checks
//! the session's promises:
//!
//! - no panic;
//! - ACK OK only for a batch whose outcome was Stored;
//! - never more batches in flight than the window;
//! - nothing sent after ERROR or Close;
//! - every BATCH answered, or the connection closed: when the script ends,
//!   outstanding outcomes are given and budget granted, and each vector
//!   BATCH delivered on an intact stream must have had its ACK.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use awp_protocol::{AckStatus, Frame, Limits, MAGIC};
use futures_util::FutureExt;

use crate::admit::admission::Admission;
use crate::admit::budget::{BudgetPermit, MemoryBudget};
use crate::admit::tenant::{Tenant, Tenants};
use crate::pipeline::outcome::BatchOutcome;
use crate::session::{Action, Now, Session, SessionSettings};

/// The window the fuzzed session advertises.
const WINDOW: u32 = 4;

/// Operations per input, and bytes fed per input: keeps each run short.
const MAX_OPS: usize = 512;
const MAX_FED: usize = 1 << 20;

/// The script's source of choices.
struct Script<'a> {
    data: &'a [u8],
}

impl Script<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }
}

/// The frames a script may send whole: the valid HELLO and the vectors'
/// valid BATCHes (plain, LZ4, Zstandard), with their seq.
pub struct Frames {
    hello: Vec<u8>,
    batches: Vec<(u64, Vec<u8>)>,
}

impl Frames {
    /// From the vectors: `(name, frame type, seq, bytes)` of each valid one.
    pub fn new<'a>(valid: impl IntoIterator<Item = (&'a str, &'a str, Option<u64>, &'a [u8])>) -> Frames {
        let mut hello = MAGIC.to_vec();
        let mut batches = Vec::new();
        for (name, frame_type, seq, bytes) in valid {
            match (name, frame_type, seq) {
                ("hello_token_android", _, _) => hello.extend_from_slice(bytes),
                (_, "BATCH", Some(seq)) => batches.push((seq, bytes.to_vec())),
                _ => {}
            }
        }
        Frames { hello, batches }
    }
}

/// The harness around one session: what a connection would do, plus the
/// bookkeeping the checks need.
struct Harness {
    session: Session,
    t0: Instant,
    now_ms: u64,
    /// Client bytes not read yet (the session may stop reading).
    unread: Vec<u8>,
    /// How the next reads are cut.
    read_sizes: Vec<usize>,
    /// Batches handed to the pipeline, oldest first, with their budget.
    inflight: Vec<(u64, BudgetPermit)>,
    /// Outcomes given as Stored and not yet acknowledged, by seq.
    stored: HashMap<u64, u32>,
    /// Vector BATCHes delivered, not yet answered, by seq.
    unanswered: HashMap<u64, u32>,
    /// A wait for budget in progress.
    budget_wait: Option<Pin<Box<dyn Future<Output = BudgetPermit> + Send>>>,
    /// ERROR sent or Close asked for.
    ended: bool,
    error_sent: bool,
    closed: bool,
    /// Raw bytes were sent: the stream's framing is the fuzzer's, so which
    /// vector frames the session saw whole is unknown.
    framing_lost: bool,
    fed: usize,
}

impl Harness {
    fn now(&self) -> Now {
        Now {
            mono: self.t0 + Duration::from_millis(self.now_ms),
            unix_ms: 1_764_000_000_000 + self.now_ms,
        }
    }

    /// Delivers unread bytes while the session reads, in the cuts chosen.
    fn pump(&mut self) {
        while !self.unread.is_empty() && self.session.wants_input() && !self.ended {
            let cut = self.read_sizes.pop().unwrap_or(usize::MAX).clamp(1, self.unread.len());
            let mut buf = self.session.take_input();
            buf.extend_from_slice(&self.unread[..cut]);
            self.unread.drain(..cut);
            let mut out = Vec::new();
            let now = self.now();
            self.session.received(buf, cut, now, &mut out);
            self.check(out);
        }
    }

    /// Checks and carries out the session's actions.
    fn check(&mut self, out: Vec<Action>) {
        for action in out {
            // Notes (for the metrics) may come at any point.
            if matches!(action, Action::Note(_)) {
                continue;
            }
            // After ERROR only the Close that goes with it; after Close nothing.
            let allowed = !self.ended || (self.error_sent && !self.closed && matches!(action, Action::Close));
            assert!(allowed, "an action after ERROR or Close: {action:?}");
            match action {
                Action::Send(Frame::Ack(ack)) => {
                    if ack.status == AckStatus::Ok {
                        let n = self.stored.get_mut(&ack.seq);
                        assert!(
                            n.as_ref().is_some_and(|n| **n > 0),
                            "ACK OK for seq {} whose outcome was not Stored",
                            ack.seq
                        );
                        if let Some(n) = n {
                            *n -= 1;
                        }
                    }
                    if let Some(n) = self.unanswered.get_mut(&ack.seq) {
                        *n = n.saturating_sub(1);
                    }
                }
                Action::Send(Frame::Error(_)) => {
                    self.ended = true;
                    self.error_sent = true;
                }
                Action::Close => {
                    self.ended = true;
                    self.closed = true;
                }
                Action::Send(_) => {}
                Action::Store { batch, permit, .. } => {
                    self.inflight.push((batch.seq(), permit));
                    assert!(
                        self.inflight.len() <= WINDOW as usize,
                        "{} batches in flight, window {WINDOW}",
                        self.inflight.len()
                    );
                }
                Action::AwaitBudget(request) => self.budget_wait = Some(Box::pin(request.granted())),
                Action::Note(_) => {}
            }
        }
        assert!(self.session.inflight() <= WINDOW as usize);
    }

    /// Gives batch `index` (of those in flight) its outcome.
    fn outcome(&mut self, index: usize, kind: u8) {
        if self.inflight.is_empty() {
            return;
        }
        let (seq, permit) = self.inflight.remove(index % self.inflight.len());
        drop(permit);
        let outcome = match kind % 3 {
            0 => {
                *self.stored.entry(seq).or_default() += 1;
                BatchOutcome::Stored
            }
            1 => BatchOutcome::Retry("storage unavailable".into()),
            _ => BatchOutcome::Rejected("refused".into()),
        };
        let mut out = Vec::new();
        self.session.batch_done(seq, outcome, &mut out);
        self.check(out);
    }

    /// Hands over budget if the wait for it is over.
    fn grant(&mut self) {
        if !self.session.awaiting_budget() {
            self.budget_wait = None;
        }
        let Some(wait) = self.budget_wait.as_mut() else {
            return;
        };
        if let Some(permit) = wait.now_or_never() {
            self.budget_wait = None;
            let mut out = Vec::new();
            let now = self.now();
            self.session.budget_granted(permit, now, &mut out);
            self.check(out);
        }
    }

    fn tick(&mut self, ms: u64) {
        self.now_ms += ms;
        let mut out = Vec::new();
        let now = self.now();
        self.session.tick(now, &mut out);
        self.check(out);
    }
}

/// Runs one script against a fresh session; panics if a promise is broken.
pub fn run(frames: &Frames, data: &[u8]) {
    let mut tenants = Tenants::default();
    tenants.insert(Tenant::with_secrets("acme", &["acme-secret-1"]));
    let settings = Arc::new(SessionSettings {
        limits: Limits {
            max_frame_len: 65_536,
            max_batch_bytes: 256 * 1024,
            ..Limits::DEFAULT
        },
        max_inflight: WINDOW,
        heartbeat: Duration::from_millis(1000),
        hello_timeout: Duration::from_millis(500),
        retry_after_ms: 100,
        goaway_reconnect_ms: 100,
        budget_wait: Duration::from_millis(2000),
        min_frame_rate: 1000,
        max_connection_age: Some(Duration::from_secs(5)),
    });
    // Room for a few batches: waits for budget happen.
    let budget = Arc::new(MemoryBudget::new(96 * 1024, 96 * 1024, ["acme".to_owned()]));
    let t0 = Instant::now();
    let mut h = Harness {
        session: Session::new(
            settings,
            Arc::new(crate::admit::tenant::LiveTenants::from_pointee(tenants)),
            budget,
            Admission::new(10, []),
            [7; 16],
            crate::session::Transport::plain(),
            Now {
                mono: t0,
                unix_ms: 1_764_000_000_000,
            },
        ),
        t0,
        now_ms: 0,
        unread: Vec::new(),
        read_sizes: Vec::new(),
        inflight: Vec::new(),
        stored: HashMap::new(),
        unanswered: HashMap::new(),
        budget_wait: None,
        ended: false,
        error_sent: false,
        closed: false,
        framing_lost: false,
        fed: 0,
    };
    let mut script = Script { data };
    for _ in 0..MAX_OPS {
        let Some(op) = script.byte() else { break };
        let arg = script.byte().unwrap_or(0);
        match op % 12 {
            0 | 1 => {
                let raw = script.take(usize::from(arg) + 1).to_vec();
                h.framing_lost = true;
                h.fed += raw.len();
                h.unread.extend(raw);
            }
            2 => {
                h.fed += frames.hello.len();
                h.unread.extend_from_slice(&frames.hello);
            }
            3 | 4 if !frames.batches.is_empty() => {
                let (seq, bytes) = &frames.batches[usize::from(arg) % frames.batches.len()];
                h.fed += bytes.len();
                h.unread.extend_from_slice(bytes);
                *h.unanswered.entry(*seq).or_default() += 1;
            }
            5 => h.read_sizes.push(usize::from(arg) * 7 + 1),
            6 | 7 => {
                let kind = script.byte().unwrap_or(0);
                h.outcome(usize::from(arg), kind);
            }
            8 => h.tick(u64::from(arg) * 20),
            9 => {
                let mut out = Vec::new();
                let now = h.now();
                match arg % 4 {
                    0 => h.session.eof(&mut out),
                    1 => h.session.drain(now, &mut out),
                    2 => h.session.replaced(now, &mut out),
                    _ => h.session.evicted(&mut out),
                }
                h.check(out);
            }
            _ => h.grant(),
        }
        if h.fed > MAX_FED {
            break;
        }
        h.grant();
        h.pump();
    }
    // The end: every outcome given and every wait for budget granted, until
    // nothing is left to do.
    for _ in 0..64 {
        while !h.inflight.is_empty() {
            h.outcome(0, 0);
        }
        h.grant();
        h.pump();
        if h.inflight.is_empty() && h.budget_wait.is_none() {
            break;
        }
    }
    if !h.ended && !h.framing_lost && h.unread.is_empty() {
        let waiting: Vec<_> = h.unanswered.iter().filter(|(_, n)| **n > 0).collect();
        assert!(
            waiting.is_empty(),
            "BATCHes never answered on an open connection: {waiting:?}"
        );
    }
    // However it went, time ends the session: a session that never closes
    // would hold its connection forever.
    h.tick(3_600_000);
    assert!(h.session.is_closed(), "the session outlived its deadlines");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames() -> Frames {
        let vectors = awp_testkit::vectors();
        Frames::new(vectors.valid.iter().map(|v| {
            (
                v.name.as_str(),
                v.frame["type"].as_str().unwrap_or(""),
                v.frame["seq"].as_u64(),
                &v.bytes[..],
            )
        }))
    }

    #[test]
    fn scripts_through_the_main_paths_keep_the_promises() {
        let frames = frames();
        assert!(frames.batches.len() >= 4 && frames.hello.len() > 4);
        // HELLO, batches, outcomes of each kind, a tick, a drain.
        let scripts: [&[u8]; 4] = [
            &[2, 0, 3, 0, 3, 1, 6, 0, 0, 6, 0, 1, 3, 2, 6, 0, 2],
            &[2, 0, 5, 3, 3, 0, 3, 1, 3, 2, 3, 3, 3, 4, 8, 50, 6, 0, 0, 9, 1, 6, 0, 0],
            &[2, 0, 3, 0, 9, 0, 6, 0, 0],
            &[2, 0, 3, 0, 3, 0, 6, 1, 0],
        ];
        for script in scripts {
            run(&frames, script);
        }
    }

    #[test]
    fn random_scripts_keep_the_promises() {
        let frames = frames();
        let mut rng = fastrand::Rng::with_seed(9);
        for _ in 0..3000 {
            let len = rng.usize(0..400);
            let script: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            run(&frames, &script);
        }
    }
}
