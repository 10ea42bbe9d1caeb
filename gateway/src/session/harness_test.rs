//! What the session's frame tests share: settings, a session with its
//! tenants and admission ([`Harness`]), and readers of the actions.

use super::*;
use crate::admit::tenant::Tenants;
use awp_protocol::{AckStatus, Frame, Limits, MAGIC};
use std::time::{Duration, Instant};

pub(super) fn vector(name: &str) -> Vec<u8> {
    awp_testkit::vectors().bytes(name).to_vec()
}

pub(super) fn settings() -> Arc<SessionSettings> {
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
pub(super) const PLENTY: usize = 64 << 20;

pub(super) struct Harness {
    pub(super) session: Session,
    pub(super) budget: Arc<MemoryBudget>,
    pub(super) t0: Instant,
    pub(super) unix_ms: u64,
    /// What the session noted for the metrics, taken out of the actions
    /// that [`Harness::feed_at`] returns.
    pub(super) notes: Vec<Note>,
}

/// `out` without its notes, which go to `notes`.
pub(super) fn split_notes(out: Vec<Action>, notes: &mut Vec<Note>) -> Vec<Action> {
    out.into_iter()
        .filter_map(|action| match action {
            Action::Note(note) => {
                notes.push(note);
                None
            }
            other => Some(other),
        })
        .collect()
}

/// `out` without its notes.
pub(super) fn actions(out: Vec<Action>) -> Vec<Action> {
    split_notes(out, &mut Vec::new())
}

impl Harness {
    pub(super) fn new() -> Harness {
        Harness::with_budget(PLENTY)
    }

    /// A session of tenant `acme`, whose share of the budget is `bytes`.
    pub(super) fn with_budget(bytes: usize) -> Harness {
        Harness::with_tenant(Tenant::with_secrets("acme", &["acme-secret-1"]), bytes)
    }

    pub(super) fn with_tenant(tenant: Tenant, bytes: usize) -> Harness {
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
            notes: Vec::new(),
        }
    }

    pub(super) fn at(&self, ms: u64) -> Now {
        Now {
            mono: self.t0 + Duration::from_millis(ms),
            unix_ms: self.unix_ms + ms,
        }
    }

    /// `bytes` arrive at `ms`, as one read.
    pub(super) fn feed_at(&mut self, ms: u64, bytes: &[u8]) -> Vec<Action> {
        let mut buf = self.session.take_input();
        buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        let now = self.at(ms);
        self.session.received(buf, bytes.len(), now, &mut out);
        split_notes(out, &mut self.notes)
    }

    pub(super) fn feed(&mut self, bytes: &[u8]) -> Vec<Action> {
        self.feed_at(0, bytes)
    }

    /// Preamble and the vectors' Android HELLO: expects WELCOME.
    pub(super) fn welcomed() -> Harness {
        Harness::welcomed_with_budget(PLENTY)
    }

    pub(super) fn welcomed_with_budget(bytes: usize) -> Harness {
        let mut h = Harness::with_budget(bytes);
        let mut hello = MAGIC.to_vec();
        hello.extend(vector("hello_token_android"));
        let out = h.feed(&hello);
        assert!(matches!(&out[..], [Action::Send(Frame::Welcome(_))]), "{out:?}");
        h
    }
}

pub(super) fn error_code(actions: &[Action]) -> Option<u16> {
    match actions {
        [.., Action::Send(Frame::Error(e)), Action::Close] => Some(e.code),
        _ => None,
    }
}

pub(super) fn acks(actions: &[Action]) -> Vec<(u64, AckStatus)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(Frame::Ack(ack)) => Some((ack.seq, ack.status)),
            _ => None,
        })
        .collect()
}

pub(super) fn stored(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Store { batch, .. } => Some(batch.seq()),
            _ => None,
        })
        .collect()
}
