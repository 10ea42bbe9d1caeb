//! The session frame by frame: a batch's memory budget, parked frames and
//! their waits.

use super::harness_test::*;
use super::*;
use crate::pipeline::outcome::BatchOutcome;
use awp_protocol::{AckStatus, Frame, Limits, MAGIC};
use awp_protocol::{ErrorCode, HEADER_LEN};

/// The budget a plain vector BATCH costs.
fn cost_of(name: &str) -> usize {
    vector(name).len() - HEADER_LEN + crate::admit::budget::PER_BATCH_OVERHEAD
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
        awp_protocol::sample::typical_batch(seq, 1000, 3)
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
        Some(declared + crate::admit::budget::PER_BATCH_OVERHEAD as u32)
    );
}
