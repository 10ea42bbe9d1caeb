//! Frame decoding on arbitrary streams, with the round-trip assertion:
//! every frame that decodes re-encodes to the same bytes (a compressed
//! BATCH, whose compressed bytes may differ, to the same `seq` and content),
//! and every BATCH content that decodes re-encodes to the same bytes.
//!
//! Input: one mode byte, then a byte stream of frames. With an odd mode
//! byte each frame's CRC is set right before decoding, so the fuzzer spends
//! its time in the payload decoders rather than on checksums.
#![no_main]

use awp_protocol::{Compression, Decoded, Frame, HEADER_LEN, Limits, crc, decode};
use bytes::{BufMut, Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, stream)) = data.split_first() else { return };
    let limits = Limits::DEFAULT;
    let mut rest = BytesMut::from(stream);
    loop {
        if mode & 1 == 1 {
            fix_crc(&mut rest);
        }
        let buf = rest.clone().freeze();
        match decode(&buf, &limits) {
            Err(e) => {
                let _ = (e.code(), e.to_string());
                return;
            }
            Ok(Decoded::Incomplete(needed)) => {
                assert!(needed > 0);
                return;
            }
            Ok(Decoded::Complete(frame, used)) => {
                round_trip(&frame, &buf.slice(..used), &limits);
                let _ = rest.split_to(used);
            }
        }
    }
});

fn fix_crc(buf: &mut BytesMut) {
    if buf.len() < HEADER_LEN {
        return;
    }
    let len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    if let Some(payload) = buf.get(HEADER_LEN..HEADER_LEN + len) {
        let sum = crc(payload);
        buf[8..12].copy_from_slice(&sum.to_be_bytes());
    }
}

fn round_trip(frame: &Frame, original: &Bytes, limits: &Limits) {
    let again = frame.to_bytes().expect("a decoded frame re-encodes");
    let Frame::Batch(batch) = frame else {
        assert_eq!(&again, original, "re-encoding is canonical");
        return;
    };
    if batch.compression() == Compression::None {
        assert_eq!(&again, original, "re-encoding is canonical");
    } else {
        let Ok(Decoded::Complete(Frame::Batch(re), _)) = decode(&again, limits) else {
            panic!("a re-encoded compressed batch decodes");
        };
        assert_eq!((re.seq(), re.content()), (batch.seq(), batch.content()));
    }
    if let Ok(content) = batch.decode(limits) {
        let mut plain = BytesMut::new();
        content.encode(Compression::None, limits, &mut plain).expect("valid content encodes");
        let mut expected = BytesMut::new();
        let mut seq = batch.seq();
        while seq >= 0x80 {
            expected.put_u8(seq as u8 | 0x80);
            seq >>= 7;
        }
        expected.put_u8(seq as u8);
        expected.put_slice(batch.content());
        assert_eq!(&plain[HEADER_LEN..], &expected[..], "content re-encodes to the same bytes");
    }
}
