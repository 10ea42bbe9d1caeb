//! The session frame by frame: preamble, HELLO, versions, authentication, and
//! the frames a session refuses.

use super::harness_test::*;
use super::*;
use awp_protocol::ErrorCode;
use awp_protocol::{Frame, MAGIC};

#[test]
fn welcome_advertises_the_settings_and_negotiates_compression() {
    let mut h = Harness::new();
    let mut bytes = MAGIC.to_vec();
    bytes.extend(vector("hello_token_android"));
    let out = h.feed(&bytes);
    let [Action::Send(Frame::Welcome(w))] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(w.version, 1);
    assert_eq!(w.session_id, [7; 16]);
    assert_eq!(w.max_frame_len, 1 << 20);
    assert_eq!(w.max_batch_records, 1000);
    assert_eq!(w.max_inflight, 2);
    assert_eq!(w.heartbeat_ms, 1000);
    assert_eq!(w.compression.bits(), 3);
}

#[test]
fn the_preamble_may_arrive_a_byte_at_a_time() {
    let mut h = Harness::new();
    let mut out = Vec::new();
    let mut bytes = MAGIC.to_vec();
    bytes.extend(vector("hello_token_android"));
    for b in bytes {
        out.extend(h.feed(&[b]));
    }
    assert!(matches!(&out[..], [Action::Send(Frame::Welcome(_))]), "{out:?}");
    assert!(h.session.input.bytes().is_empty());
}

#[test]
fn bad_magic_names_tls_and_http() {
    for (bytes, hint) in [(&[0x16u8, 3, 1, 0][..], "TLS"), (b"GET / HTTP/1.1\r\n", "HTTP")] {
        let mut h = Harness::new();
        let out = h.feed(bytes);
        let [Action::Send(Frame::Error(e)), Action::Close] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(e.code, ErrorCode::BadMagic as u16);
        assert!(e.message.contains(hint), "{}", e.message);
        assert!(h.session.is_closed());
    }
}

#[test]
fn anything_but_hello_first_is_unexpected_from_the_header_alone() {
    let mut h = Harness::new();
    let mut bytes = MAGIC.to_vec();
    // A BATCH header claiming 2 GiB: refused as UNEXPECTED_FRAME before its length matters.
    bytes.extend([3, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
    assert_eq!(error_code(&h.feed(&bytes)), Some(ErrorCode::UnexpectedFrame as u16));
}

#[test]
fn auth_failures_are_indistinguishable() {
    let mut messages = Vec::new();
    for name in ["hello_wrong_token", "hello_unknown_tenant", "hello_expired_token"] {
        let mut h = Harness::new();
        let mut bytes = MAGIC.to_vec();
        bytes.extend(vector(name));
        let out = h.feed(&bytes);
        let [Action::Send(Frame::Error(e)), Action::Close] = &out[..] else {
            panic!("{name}: {out:?}")
        };
        assert_eq!(e.code, ErrorCode::AuthFailed as u16, "{name}");
        messages.push(e.message.clone());
    }
    assert!(messages.iter().all(|m| m == "authentication failed"), "{messages:?}");
}

#[test]
fn a_version_outside_ours_is_unsupported_and_a_wider_range_picks_1() {
    let mut h = Harness::new();
    let mut bytes = MAGIC.to_vec();
    bytes.extend(vector("hello_version_2_only"));
    assert_eq!(error_code(&h.feed(&bytes)), Some(ErrorCode::UnsupportedVersion as u16));
}

#[test]
fn frames_only_a_server_sends_are_unexpected() {
    for name in ["welcome", "ack_ok", "goaway", "hello_token_android"] {
        let mut h = Harness::welcomed();
        assert_eq!(
            error_code(&h.feed(&vector(name))),
            Some(ErrorCode::UnexpectedFrame as u16),
            "{name}"
        );
    }
}

#[test]
fn frame_level_errors_close_with_their_code() {
    let cases = [
        ("bad_crc", ErrorCode::ChecksumMismatch),
        ("oversize_header_only", ErrorCode::FrameTooLarge),
        ("batch_seq_zero", ErrorCode::MalformedFrame),
        ("zstd_bomb", ErrorCode::FrameTooLarge),
        ("unknown_type", ErrorCode::MalformedFrame),
    ];
    for (name, code) in cases {
        let mut h = Harness::welcomed();
        assert_eq!(error_code(&h.feed(&vector(name))), Some(code as u16), "{name}");
    }
}

#[test]
fn a_second_hello_is_unexpected_from_its_header_whatever_its_length() {
    let mut h = Harness::welcomed();
    // A HELLO header claiming 5,000 bytes (over HELLO's 4,096 limit) and a wrong CRC.
    let out = h.feed(&[1, 0, 0, 0, 0, 0, 0x13, 0x88, 0, 0, 0, 0]);
    assert_eq!(error_code(&out), Some(ErrorCode::UnexpectedFrame as u16));
}

/// The session counts nothing itself: it notes what the metrics count, and
/// the connection records the notes (ACKs and ERRORs from the frames sent).
#[test]
fn what_the_metrics_count_is_noted_in_the_actions() {
    let mut h = Harness::welcomed();
    // The frame's length, header included (the preamble is no frame).
    let hello_len = vector("hello_token_android").len();
    assert_eq!(h.notes, [Note::FrameReceived(FrameType::Hello, hello_len)]);
    h.feed(&vector("batch_one_location"));
    let batch = vector("batch_one_location");
    assert_eq!(
        h.notes[1..],
        [
            Note::FrameReceived(FrameType::Batch, batch.len()),
            Note::RecordsReceived(1)
        ]
    );
    // A HELLO that does not authenticate: its reason, and no tenant named
    // for one that is not ours.
    let mut stranger = Harness::new();
    let mut hello = MAGIC.to_vec();
    hello.extend(vector("hello_token_android"));
    // The vectors' HELLO is tenant acme's; a tenant of another name is unknown.
    let mut other = Harness::with_tenant(Tenant::with_secrets("not-acme", &["x-secret-123"]), PLENTY);
    other.feed(&hello);
    assert!(
        other.notes.contains(&Note::AuthFailed("unknown_tenant", None)),
        "{:?}",
        other.notes
    );
    stranger.feed(&MAGIC);
    assert!(stranger.notes.is_empty(), "the preamble is no frame");
}
