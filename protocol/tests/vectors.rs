//! Every vector of `vectors.json` (a copy of `shared/protocol/vectors.json`),
//! checked against the codec.
//!
//! Valid vectors must decode to their `frame` (compared in the JSON shape of
//! the file) and, where `encode_exact` is set, encode back to their bytes.
//! Invalid vectors must get their `expect`: the frame-level ones from the
//! codec alone, the context-dependent ones (UNEXPECTED_FRAME before HELLO,
//! UNSUPPORTED_VERSION, AUTH_FAILED) from what the codec offers a server to
//! decide them with (the header's type, `Hello::choose_version`, the token
//! functions). The gateway's socket tests check the same answers end to end.

use awp_protocol::json::{JsonFrame, frame_from_json, frame_to_json};
use awp_protocol::token::verify_device_token;
use awp_protocol::{
    Decoded, ErrorCode, Frame, FrameType, HEADER_LEN, HelloAuth, Limits, SUPPORTED_VERSIONS, check, decode,
};
use awp_testkit::{InvalidVector, ValidVector};
use bytes::Bytes;

/// The vectors were made with this secret for tenant `acme`.
const ACME_SECRETS: &[&str] = &["acme-secret-1"];
/// A fixed "now" for token expiry: 2026-11-25.
const NOW: u64 = 1_795_000_000;

fn valid() -> &'static [ValidVector] {
    &awp_testkit::vectors().valid
}

fn invalid() -> &'static [InvalidVector] {
    &awp_testkit::vectors().invalid
}

/// What every vector has: a name and bytes.
trait Vector {
    fn name(&self) -> &str;
    fn raw(&self) -> &[u8];
}

impl Vector for ValidVector {
    fn name(&self) -> &str {
        &self.name
    }
    fn raw(&self) -> &[u8] {
        &self.bytes
    }
}

impl Vector for InvalidVector {
    fn name(&self) -> &str {
        &self.name
    }
    fn raw(&self) -> &[u8] {
        &self.bytes
    }
}

fn bytes_of(v: &dyn Vector) -> Bytes {
    Bytes::copy_from_slice(v.raw())
}

fn name(v: &dyn Vector) -> &str {
    v.name()
}

#[test]
fn the_copy_in_the_repo_has_every_vector() {
    assert_eq!(valid().len(), 17);
    assert_eq!(invalid().len(), 56);
}

#[test]
fn valid_vectors_decode_to_their_frame() {
    let limits = Limits::DEFAULT;
    for v in valid() {
        let bytes = bytes_of(v);
        let Decoded::Complete(frame, used) = decode(&bytes, &limits).unwrap_or_else(|e| panic!("{}: {e}", name(v)))
        else {
            panic!("{}: incomplete", name(v));
        };
        assert_eq!(used, bytes.len(), "{}: frame length", name(v));
        let json = frame_to_json(&frame, &limits).unwrap_or_else(|e| panic!("{}: {e}", name(v)));
        assert_eq!(json, v.frame, "{}", name(v));
    }
}

#[test]
fn valid_vectors_encode_to_their_bytes() {
    let limits = Limits::DEFAULT;
    let mut exact = 0;
    for v in valid() {
        let frame = frame_from_json(&v.frame).unwrap_or_else(|e| panic!("{}: {e}", name(v)));
        let encoded = frame.encode(&limits).unwrap_or_else(|e| panic!("{}: {e}", name(v)));
        if v.encode_exact {
            assert_eq!(encoded, v.bytes, "{}", name(v));
            exact += 1;
        } else {
            // Compressed bytes differ between encoders: what must hold is
            // that ours decode to the same frame.
            let Decoded::Complete(again, _) = decode(&encoded.freeze(), &limits).unwrap() else {
                panic!("{}: incomplete", name(v));
            };
            assert_eq!(frame_to_json(&again, &limits).unwrap(), v.frame, "{}", name(v));
        }
    }
    assert_eq!(exact, 15, "every encode_exact vector was compared byte for byte");
}

#[test]
fn decoded_frames_re_encode_canonically() {
    let limits = Limits::DEFAULT;
    for v in valid() {
        let bytes = bytes_of(v);
        let Decoded::Complete(frame, _) = decode(&bytes, &limits).unwrap() else {
            unreachable!()
        };
        let Frame::Batch(batch) = &frame else {
            assert_eq!(frame.to_bytes().unwrap(), bytes, "{}", name(v));
            continue;
        };
        let content = batch.decode(&limits).unwrap();
        let mut plain = bytes::BytesMut::new();
        content
            .encode(awp_protocol::Compression::None, &limits, &mut plain)
            .unwrap();
        let mut again = bytes::BytesMut::new();
        frame.encode(&mut again).unwrap();
        let Decoded::Complete(Frame::Batch(re), _) = decode(&again.freeze(), &limits).unwrap() else {
            panic!("{}: not a batch", name(v));
        };
        assert_eq!(re.decode(&limits).unwrap(), content, "{}", name(v));
        if batch.compression() == awp_protocol::Compression::None {
            assert_eq!(plain.freeze(), bytes, "{}", name(v));
        }
    }
}

/// What a server answers to a client's frame, as far as the codec decides it.
fn answer(bytes: &Bytes, after_welcome: bool) -> String {
    let limits = Limits::DEFAULT;
    let (header, len) = match check(bytes, &limits) {
        Err(e) => return e.code().name().to_owned(),
        Ok(Decoded::Incomplete(n)) => return format!("INCOMPLETE({n})"),
        Ok(Decoded::Complete(header, len)) => (header, len),
    };
    assert_eq!(len, bytes.len(), "one frame per vector");
    if !after_welcome && header.frame_type != FrameType::Hello {
        return ErrorCode::UnexpectedFrame.name().to_owned();
    }
    let frame = match Frame::parse(&header, bytes.slice(HEADER_LEN..), &limits) {
        Err(e) => return e.code().name().to_owned(),
        Ok(frame) => frame,
    };
    match frame {
        Frame::Hello(hello) => {
            if hello.choose_version(SUPPORTED_VERSIONS).is_none() {
                return ErrorCode::UnsupportedVersion.name().to_owned();
            }
            let secrets: &[&str] = if hello.tenant_id == "acme" { ACME_SECRETS } else { &[] };
            let HelloAuth::Token { expiry, token } = hello.auth else {
                return "CLIENT_CERT".to_owned();
            };
            if verify_device_token(secrets, &hello.tenant_id, &hello.device_id, expiry, &token, NOW) {
                "WELCOME".to_owned()
            } else {
                ErrorCode::AuthFailed.name().to_owned()
            }
        }
        Frame::Batch(batch) => match batch.decode(&limits) {
            Ok(_) => "OK".to_owned(),
            Err(_) => "REJECTED".to_owned(),
        },
        other => format!("{:?}", other.frame_type()),
    }
}

#[test]
fn invalid_vectors_get_their_answer() {
    let mut failures = Vec::new();
    let invalid = invalid();
    for v in invalid {
        let got = answer(&bytes_of(v), v.after_welcome);
        let expect = v.expect.as_str();
        if got != expect {
            failures.push(format!("{}: expected {expect}, got {got}", name(v)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {}:\n{}",
        failures.len(),
        invalid.len(),
        failures.join("\n")
    );
}

#[test]
fn the_valid_hellos_are_accepted_or_need_a_certificate() {
    let answers: Vec<String> = valid()
        .iter()
        .filter(|v| v.frame["type"] == "HELLO")
        .map(|v| answer(&bytes_of(v), false))
        .collect();
    assert_eq!(answers, ["WELCOME", "WELCOME", "CLIENT_CERT"]);
}

#[test]
fn an_oversized_header_is_refused_before_its_payload() {
    let v = awp_testkit::vectors().invalid("oversize_header_only");
    let bytes = bytes_of(v);
    assert_eq!(bytes.len(), HEADER_LEN, "the vector is the header alone");
    assert_eq!(
        check(&bytes, &Limits::DEFAULT).unwrap_err().code(),
        ErrorCode::FrameTooLarge
    );
}

#[test]
fn rejections_name_the_record_and_the_rule() {
    let limits = Limits::DEFAULT;
    let expected = [
        (
            "lat_out_of_range",
            "record 0: lat_e7 out of range (900000001, allowed -900000000..=900000000)",
        ),
        (
            "lon_out_of_range",
            "record 0: lon_e7 out of range (-1800000001, allowed -1800000000..=1800000000)",
        ),
        ("count_zero", "batch: count out of range (0, allowed 1..=1000)"),
        ("count_more_than_records", "record 1: kind truncated"),
        ("trailing_after_records", "batch: records has trailing bytes"),
        ("kind_zero", "record 0: kind 0 is not a record kind"),
        ("body_trailing", "record 0: body has trailing bytes"),
        ("body_short", "record 0: accuracy_m truncated"),
        ("body_len_past_frame", "record 0: body truncated"),
        ("event_duplicate_key", "record 0: key duplicate key"),
        ("event_tag_6", "record 0: tag unknown value 6"),
        ("event_65_attrs", "record 0: n out of range (65, allowed 0..=64)"),
        ("record_invalid_utf8", "record 0: app not valid UTF-8"),
        (
            "body_overlong_varint",
            "record 0: accuracy_m varint not minimally encoded",
        ),
        ("app_empty", "record 0: app length 0 out of range 1..=256"),
        ("network_5", "record 0: network unknown value 5"),
    ];
    for (vector, message) in expected {
        let v = awp_testkit::vectors().invalid(vector);
        let bytes = bytes_of(v);
        let Decoded::Complete(Frame::Batch(batch), _) = decode(&bytes, &limits).unwrap() else {
            panic!("{vector}: not a batch");
        };
        assert_eq!(batch.decode(&limits).unwrap_err().to_string(), message, "{vector}");
    }
}

#[test]
fn bad_preambles_are_explained() {
    use awp_protocol::check_preamble;
    assert_eq!(check_preamble(&[0x89, 0x41]).unwrap(), None);
    assert_eq!(check_preamble(&[0x89, 0x41, 0x57, 0x50, 1]).unwrap(), Some(4));
    let tls = check_preamble(&[0x16, 0x03, 0x01, 0x02]).unwrap_err();
    assert_eq!(tls.code(), ErrorCode::BadMagic);
    assert!(tls.to_string().contains("TLS ClientHello"), "{tls}");
    let http = check_preamble(b"GET / HTTP/1.1").unwrap_err();
    assert!(http.to_string().contains("HTTP"), "{http}");
}

#[test]
fn json_round_trip_of_every_valid_frame() {
    for v in valid() {
        let parsed = frame_from_json(&v.frame).unwrap();
        let limits = Limits::DEFAULT;
        let json = match &parsed {
            JsonFrame::Frame(f) => frame_to_json(f, &limits).unwrap(),
            JsonFrame::Batch(b, c) => awp_protocol::json::batch_to_json(b, *c),
        };
        assert_eq!(json, v.frame, "{}", name(v));
    }
}

/// Walking the records one at a time gives what collecting them gives,
/// for every batch vector, valid or rejected.
#[test]
fn walking_records_agrees_with_collecting_them() {
    let limits = Limits::DEFAULT;
    let mut walked = 0;
    let all = valid()
        .iter()
        .map(|v| v as &dyn Vector)
        .chain(invalid().iter().map(|v| v as &dyn Vector));
    for v in all {
        let bytes = bytes_of(v);
        let Ok(Decoded::Complete(Frame::Batch(batch), _)) = decode(&bytes, &limits) else {
            continue;
        };
        let collected = batch.decode(&limits);
        let walk: Result<Vec<_>, _> = match batch.records(&limits) {
            Ok(records) => records.collect(),
            Err(e) => Err(e),
        };
        match (collected, walk) {
            (Ok(batch), Ok(records)) => assert_eq!(batch.records, records, "{}", name(v)),
            // Compared as text: a NaN in the error is not equal to itself.
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{}", name(v)),
            (a, b) => panic!("{}: collect {a:?} but walk {b:?}", name(v)),
        }
        walked += 1;
    }
    assert!(walked > 25, "the batch vectors were walked ({walked})");
}

/// A prepared batch sent under another seq decodes to the same records with that seq.
#[test]
fn prepared_batches_encode_under_any_seq() {
    let limits = Limits::DEFAULT;
    let v = awp_testkit::vectors().valid("batch_mixed_kinds");
    let bytes = bytes_of(v);
    let Decoded::Complete(Frame::Batch(frame), _) = decode(&bytes, &limits).unwrap() else {
        unreachable!()
    };
    let batch = frame.decode(&limits).unwrap();
    let prepared = awp_protocol::PreparedBatch::new(&batch, &limits).unwrap();
    assert_eq!(prepared.records(), 8);
    for (seq, codec) in [
        (77, awp_protocol::Compression::None),
        (5, awp_protocol::Compression::Lz4),
        (u64::MAX, awp_protocol::Compression::Zstd),
    ] {
        let mut out = bytes::BytesMut::new();
        prepared.encode(seq, codec, &limits, &mut out).unwrap();
        if seq == 77 {
            assert_eq!(out.clone().freeze(), bytes, "same bytes as the vector");
        }
        let Decoded::Complete(Frame::Batch(again), _) = decode(&out.freeze(), &limits).unwrap() else {
            unreachable!()
        };
        let decoded = again.decode(&limits).unwrap();
        assert_eq!(decoded.seq, seq);
        assert_eq!(decoded.records, batch.records);
    }
    let mut out = bytes::BytesMut::new();
    assert!(
        prepared
            .encode(0, awp_protocol::Compression::None, &limits, &mut out)
            .is_err()
    );
}
