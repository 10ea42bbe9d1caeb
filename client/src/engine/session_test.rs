//! The client session, frame by frame.

use awp_protocol::{Ack, CompressionSet, Decoded, ErrorFrame, GoAway, decode};
use bytes::Bytes;

use super::*;

fn welcome(max_inflight: u64) -> Welcome {
    Welcome {
        version: 1,
        session_id: [7; 16],
        max_frame_len: 1 << 20,
        max_batch_records: 1000,
        max_inflight,
        heartbeat_ms: 30_000,
        compression: CompressionSet::ALL,
    }
}

fn settings() -> SessionSettings {
    SessionSettings {
        compression: Compression::Lz4,
        ack_timeout: Duration::from_secs(60),
    }
}

fn batch(seq: u64) -> SealedBatch {
    let record = crate::Record::location(1_700_000_000_000 + seq, 1, 2, seq).unwrap();
    SealedBatch {
        seq,
        records: 1,
        content: crate::queue::batch_content(&[record.parts()]).unwrap(),
    }
}

fn ack(seq: u64, status: AckStatus, retry_after_ms: u64) -> Frame {
    Frame::Ack(Ack {
        seq,
        status,
        retry_after_ms,
        message: if status == AckStatus::Rejected {
            "record 0: bad".into()
        } else {
            String::new()
        },
    })
}

/// The frames in `bytes`.
fn frames(bytes: &BytesMut) -> Vec<Frame> {
    let mut rest = Bytes::copy_from_slice(bytes);
    let mut out = Vec::new();
    while !rest.is_empty() {
        match decode(&rest, &Limits::DEFAULT).unwrap() {
            Decoded::Complete(f, used) => {
                out.push(f);
                rest = rest.slice(used..);
            }
            Decoded::Incomplete(_) => panic!("a partial frame"),
        }
    }
    out
}

#[test]
fn the_window_holds_at_welcomes_max_inflight() {
    let now = Instant::now();
    let mut s = Session::new(&welcome(2), settings(), now);
    let mut out = BytesMut::new();
    assert!(s.wants_new());
    s.send(batch(1), &mut out, now).unwrap();
    s.send(batch(2), &mut out, now).unwrap();
    assert!(!s.wants_new());
    let sent = frames(&out);
    assert_eq!(sent.len(), 2);
    let Frame::Batch(b) = &sent[0] else { panic!() };
    assert_eq!((b.seq(), b.compression()), (1, Compression::Lz4));
    // ACKs in any order free the window.
    let answered = s.on_frame(ack(2, AckStatus::Ok, 0), &mut out, now).unwrap();
    assert!(matches!(answered, Answered::Stored { seq: 2, records: 1, .. }));
    assert!(s.wants_new());
    assert_eq!(
        s.on_frame(ack(9, AckStatus::Ok, 0), &mut out, now),
        Ok(Answered::Unknown { seq: 9 })
    );
}

#[test]
fn retry_sends_the_same_bytes_after_the_delay_and_rejected_is_dropped() {
    let now = Instant::now();
    let mut s = Session::new(&welcome(4), settings(), now);
    let mut out = BytesMut::new();
    s.send(batch(1), &mut out, now).unwrap();
    s.send(batch(2), &mut out, now).unwrap();
    let first = out.split();
    assert_eq!(
        s.on_frame(ack(1, AckStatus::Retry, 1000), &mut out, now),
        Ok(Answered::Retry { seq: 1 })
    );
    assert_eq!(s.due_retry(now), None, "not before its delay");
    assert!(s.next_wake() <= now + Duration::from_millis(1500));
    let later = now + Duration::from_millis(1501);
    let again = s.due_retry(later).expect("due");
    s.send(again, &mut out, later).unwrap();
    let resent = out.split();
    // The same frame, byte for byte (LZ4 of the same content).
    let Frame::Batch(b1) = &frames(&first)[0] else { panic!() };
    let Frame::Batch(b2) = &frames(&resent)[0] else {
        panic!()
    };
    assert_eq!((b1.seq(), b1.content()), (b2.seq(), b2.content()));
    let answered = s.on_frame(ack(2, AckStatus::Rejected, 0), &mut out, now).unwrap();
    assert_eq!(
        answered,
        Answered::Rejected {
            seq: 2,
            records: 1,
            reason: "record 0: bad".into()
        }
    );
}

#[test]
fn goaway_stops_new_batches_and_ends_once_the_window_is_answered() {
    let now = Instant::now();
    let mut s = Session::new(&welcome(4), settings(), now);
    let mut out = BytesMut::new();
    s.send(batch(1), &mut out, now).unwrap();
    let goaway = Frame::GoAway(GoAway {
        reconnect_after_ms: 3000,
        reason: "draining".into(),
    });
    s.on_frame(goaway, &mut out, now).unwrap();
    assert!(!s.wants_new());
    assert_eq!(s.end(now), None, "batch 1 still in flight");
    s.on_frame(ack(1, AckStatus::Ok, 0), &mut out, now).unwrap();
    assert_eq!(
        s.end(now),
        Some(End::GoAway {
            reconnect_after_ms: 3000
        })
    );
}

#[test]
fn an_ack_past_its_deadline_ends_the_connection() {
    let now = Instant::now();
    let mut s = Session::new(&welcome(4), settings(), now);
    let mut out = BytesMut::new();
    s.send(batch(5), &mut out, now).unwrap();
    assert_eq!(s.end(now + Duration::from_secs(59)), None);
    assert_eq!(s.end(now + Duration::from_secs(61)), Some(End::AckTimeout { seq: 5 }));
}

#[test]
fn errors_end_the_connection_and_auth_failed_for_good() {
    let now = Instant::now();
    let mut s = Session::new(&welcome(4), settings(), now);
    let mut out = BytesMut::new();
    let error = |code: ErrorCode| {
        Frame::Error(ErrorFrame {
            code: code as u16,
            message: "no".into(),
        })
    };
    let end = s.on_frame(error(ErrorCode::AuthFailed), &mut out, now).unwrap_err();
    assert!(end.is_final());
    let end = s
        .on_frame(error(ErrorCode::UnsupportedVersion), &mut out, now)
        .unwrap_err();
    assert!(end.is_final());
    let end = s.on_frame(error(ErrorCode::Internal), &mut out, now).unwrap_err();
    assert!(!end.is_final());
    let end = s.on_frame(Frame::Welcome(welcome(1)), &mut out, now).unwrap_err();
    assert!(matches!(end, End::Protocol(_)));
}

#[test]
fn a_ping_is_answered_and_silence_sends_one() {
    let now = Instant::now();
    let mut s = Session::new(&welcome(4), settings(), now);
    let mut out = BytesMut::new();
    s.on_frame(Frame::Ping(42), &mut out, now).unwrap();
    assert_eq!(frames(&out.split()), [Frame::Pong(42)]);
    s.ping_if_idle(&mut out, now + Duration::from_secs(1));
    assert!(out.is_empty());
    s.ping_if_idle(&mut out, now + Duration::from_secs(30));
    assert!(matches!(frames(&out)[..], [Frame::Ping(_)]));
}

#[test]
fn compression_is_what_welcome_accepted() {
    let now = Instant::now();
    let mut w = welcome(1);
    w.compression = CompressionSet::from_bits(2).unwrap();
    let mut s = Session::new(&w, settings(), now);
    let mut out = BytesMut::new();
    s.send(batch(1), &mut out, now).unwrap();
    let Frame::Batch(b) = &frames(&out)[0] else { panic!() };
    assert_eq!(b.compression(), Compression::None, "LZ4 was not accepted");
}
