//! The session frame by frame over time: trickled frames, idle timeouts,
//! drain, replacement by a newer session, maximum age.

use super::harness_test::*;
use super::*;
use crate::pipeline::outcome::BatchOutcome;
use awp_protocol::ErrorCode;
use awp_protocol::{AckStatus, Frame, Limits, MAGIC};
use futures_util::FutureExt;
use std::time::Duration;

/// A frame of `records` typical records, under seq 1.
fn big_frame(records: usize) -> Vec<u8> {
    let mut buf = bytes::BytesMut::new();
    awp_protocol::sample::typical_batch(1, records, 9)
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
    actions(out)
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
    // Counted (the connection records the note), and told.
    let [Action::Note(Note::Aged), Action::Send(Frame::GoAway(g))] = &out[..] else {
        panic!("{out:?}")
    };
    assert!(g.reason.contains("maximum age"), "{}", g.reason);
    let mut out = Vec::new();
    h.session.batch_done(1, BatchOutcome::Stored, &mut out);
    assert_eq!(acks(&out), [(1, AckStatus::Ok)], "in flight: still acknowledged");
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
