//! Property tests: what the encoder writes decodes back to itself, and
//! whatever bytes arrive, decoding never panics and anything that decodes
//! re-encodes to the same bytes.

mod common;

use awp_protocol::{
    Batch, Compression, Decoded, Frame, FrameType, HEADER_LEN, Limits, PreparedBatch, RecordParts, content_from_parts,
    decode,
};
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

fn decode_one(bytes: Bytes, limits: &Limits) -> Frame {
    match decode(&bytes, limits) {
        Ok(Decoded::Complete(frame, used)) => {
            assert_eq!(used, bytes.len());
            frame
        }
        other => panic!("expected one whole frame, got {other:?}"),
    }
}

/// Decodes whatever `bytes` hold; for every frame that decodes, checks the
/// round trip. Never panics on any input (the property under test).
fn decode_and_round_trip(bytes: &Bytes, limits: &Limits) {
    let mut rest = bytes.clone();
    loop {
        match decode(&rest, limits) {
            Err(e) => {
                let _ = (e.code(), e.to_string());
                return;
            }
            Ok(Decoded::Incomplete(n)) => {
                assert!(n > 0);
                return;
            }
            Ok(Decoded::Complete(frame, used)) => {
                let original = rest.slice(..used);
                let again = frame.to_bytes().expect("a decoded frame re-encodes");
                match &frame {
                    Frame::Batch(b) if b.compression() != Compression::None => {
                        let Frame::Batch(b2) = decode_one(again, limits) else {
                            panic!("not a batch")
                        };
                        assert_eq!(b2.seq(), b.seq());
                        assert_eq!(b2.content(), b.content());
                    }
                    _ => assert_eq!(again, original, "re-encoding is canonical"),
                }
                if let Frame::Batch(b) = &frame
                    && let Ok(content) = b.decode(limits)
                {
                    let mut plain = BytesMut::new();
                    content
                        .encode(Compression::None, limits, &mut plain)
                        .expect("valid content encodes");
                    assert_eq!(
                        &plain[HEADER_LEN..],
                        &[&varint(b.seq())[..], &b.content()[..]].concat()[..]
                    );
                }
                rest = rest.slice(used..);
            }
        }
    }
}

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_encodable_frame_decodes_to_itself(frame in common::frame()) {
        let limits = Limits::DEFAULT;
        let bytes = frame.to_bytes().unwrap();
        let decoded = decode_one(bytes.clone(), &limits);
        prop_assert_eq!(&decoded, &frame);
        prop_assert_eq!(decoded.to_bytes().unwrap(), bytes);
    }

    /// What an agent's queue does: keep each record as (time, kind, body),
    /// then write a batch from them. The content decodes to the same records
    /// at the same times, and the same parts always give the same bytes.
    #[test]
    fn records_kept_apart_make_the_batch_they_came_from(batch in common::batch(40)) {
        let limits = Limits::DEFAULT;
        let kept: Vec<(u64, u64, Vec<u8>)> = batch
            .records
            .iter()
            .map(|r| {
                let mut body = BytesMut::new();
                r.write_body(&mut body);
                (batch.record_time_ms(r), r.kind(), body.to_vec())
            })
            .collect();
        let parts: Vec<RecordParts<'_>> =
            kept.iter().map(|(time_ms, kind, body)| RecordParts { time_ms: *time_ms, kind: *kind, body }).collect();
        let mut content = BytesMut::new();
        content_from_parts(&parts, &mut content);
        let mut again = BytesMut::new();
        content_from_parts(&parts, &mut again);
        prop_assert_eq!(&content, &again);
        let prepared = PreparedBatch::from_content(content.freeze(), &limits).unwrap();
        prop_assert_eq!(prepared.records() as usize, batch.records.len());
        let decoded = Batch::decode_content(batch.seq, prepared.content(), &limits).unwrap();
        for (record, original) in decoded.records.iter().zip(&batch.records) {
            prop_assert_eq!(decoded.record_time_ms(record), batch.record_time_ms(original));
            prop_assert_eq!(&record.body, &original.body);
        }
    }

    #[test]
    fn every_encodable_batch_decodes_to_itself(batch in common::batch(40), compression in common::compression()) {
        let limits = Limits::DEFAULT;
        let mut buf = BytesMut::new();
        batch.encode(compression, &limits, &mut buf).unwrap();
        let bytes = buf.freeze();
        let Frame::Batch(frame) = decode_one(bytes.clone(), &limits) else { panic!("not a batch") };
        prop_assert_eq!(frame.seq(), batch.seq);
        prop_assert_eq!(frame.compression(), compression);
        let decoded: Batch<'_> = frame.decode(&limits).unwrap();
        prop_assert_eq!(&decoded, &batch);
        if compression == Compression::None {
            prop_assert_eq!(Frame::Batch(frame.clone()).to_bytes().unwrap(), bytes);
        }
    }

    #[test]
    fn arbitrary_streams_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        decode_and_round_trip(&Bytes::from(bytes), &Limits::DEFAULT);
    }

    #[test]
    fn arbitrary_payloads_with_valid_crc_never_panic(
        frame_type in 1..=9u8,
        flags in prop::sample::select(vec![0u8, 0, 0, 1, 2]),
        payload in prop::collection::vec(any::<u8>(), 0..1024),
    ) {
        let frame_type = if flags != 0 { FrameType::Batch as u8 } else { frame_type };
        decode_and_round_trip(&common::framed(frame_type, flags, &payload), &Limits::DEFAULT);
    }

    #[test]
    fn mutated_batches_never_panic(
        batch in common::batch(8),
        compression in common::compression(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let limits = Limits::DEFAULT;
        let mut buf = BytesMut::new();
        batch.encode(compression, &limits, &mut buf).unwrap();
        let mut payload = buf.split_off(HEADER_LEN).to_vec();
        for (at, byte) in edits {
            let i = at.index(payload.len());
            payload[i] = byte;
        }
        decode_and_round_trip(&common::framed(FrameType::Batch as u8, compression.flags(), &payload), &limits);
    }
}
