//! The session frame by frame: batches stored, retried, rejected; the window;
//! BYE and half-closed clients; device quotas.

use super::harness_test::*;
use super::*;
use crate::pipeline::outcome::BatchOutcome;
use awp_protocol::ErrorCode;
use awp_protocol::{AckStatus, Frame, MAGIC};

#[test]
fn a_batch_is_stored_then_acked_ok() {
    let mut h = Harness::welcomed();
    let out = h.feed(&vector("batch_one_location"));
    let [Action::Store { tenant, batch, .. }] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(tenant.id, "acme");
    assert_eq!((batch.seq(), batch.record_count()), (1, 1));
    assert_eq!(batch.device_id(), "dev-0001");
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
    assert_eq!(ack.status, AckStatus::Retry);
    assert!((125..=375).contains(&ack.retry_after_ms), "{}", ack.retry_after_ms);
    assert_eq!(ack.message, "sink throttled");
}

#[test]
fn delays_told_to_agents_are_spread_around_the_configured_ones() {
    let mut seen = std::collections::BTreeSet::new();
    for id in 0..64u8 {
        let mut h = Harness::welcomed();
        h.session = Session::new(
            settings(),
            h.session.tenants.clone(),
            h.budget.clone(),
            h.session.admission.clone(),
            [id; 16],
            Transport::plain(),
            h.at(0),
        );
        let mut hello = MAGIC.to_vec();
        hello.extend(vector("hello_token_android"));
        h.feed(&hello);
        h.feed(&vector("batch_one_location"));
        let mut out = Vec::new();
        h.session.batch_done(1, BatchOutcome::Retry("busy".into()), &mut out);
        let [Action::Send(Frame::Ack(ack))] = &out[..] else {
            panic!("{out:?}")
        };
        assert!((125..=375).contains(&ack.retry_after_ms), "{}", ack.retry_after_ms);
        seen.insert(ack.retry_after_ms);
        let mut out = Vec::new();
        h.session.drain(h.at(1), &mut out);
        let Some(Action::Send(Frame::GoAway(g))) = out.first() else {
            panic!("{out:?}")
        };
        assert!((750..=2250).contains(&g.reconnect_after_ms), "{}", g.reconnect_after_ms);
        seen.insert(g.reconnect_after_ms);
    }
    assert!(seen.len() > 100, "64 sessions drew {} different delays", seen.len());
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
fn a_batch_over_its_devices_quota_is_retried_after_the_buckets_wait() {
    // One record a second per device; the bucket holds one record.
    let quota = crate::admit::quota::TenantQuota::new(None, None, std::num::NonZeroU32::new(1), 1, 1 << 20);
    let tenant = Tenant::with_secrets("acme", &["acme-secret-1"]).with_quota(quota);
    let mut h = Harness::with_tenant(tenant, PLENTY);
    let mut hello = MAGIC.to_vec();
    hello.extend(vector("hello_token_android"));
    h.feed(&hello);
    assert_eq!(stored(&h.feed(&vector("batch_one_location"))), [1]);
    let mut out = Vec::new();
    h.session.batch_done(1, BatchOutcome::Stored, &mut out);
    let out = h.feed(&vector("batch_one_location"));
    let [Action::Send(Frame::Ack(ack))] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!((ack.seq, ack.status), (1, AckStatus::Retry));
    assert!(ack.message.contains("device quota"), "{}", ack.message);
    // About a second to wait (more than retry_after_ms, 250), and up to half again.
    assert!((900..=1500).contains(&ack.retry_after_ms), "{}", ack.retry_after_ms);
    assert_eq!(h.session.inflight(), 0, "nothing of it is stored");
}
