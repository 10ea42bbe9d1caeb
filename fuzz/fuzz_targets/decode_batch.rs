//! BATCH content decoding (everything after `seq`), straight at the record
//! decoders: whatever decodes re-encodes to the same bytes, and walking the
//! records one at a time agrees with collecting them.
#![no_main]

use awp_protocol::{Batch, BatchError, Compression, HEADER_LEN, Limits, Records};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|content: &[u8]| {
    let limits = Limits::DEFAULT;
    let collected = Batch::decode_content(1, content, &limits);
    match &collected {
        Ok(batch) => {
            let mut out = BytesMut::new();
            batch.encode(Compression::None, &limits, &mut out).expect("valid content encodes");
            // seq 1 is the single byte 0x01.
            assert_eq!(&out[HEADER_LEN + 1..], content, "content re-encodes to the same bytes");
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.starts_with("record ") || message.starts_with("batch: "));
        }
    }
    let walked: Result<Vec<_>, BatchError> = Records::new(content, &limits).and_then(|records| records.collect());
    match (&collected, &walked) {
        (Ok(batch), Ok(records)) => assert_eq!(&batch.records, records),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        _ => panic!("collect and walk disagree: {collected:?} / {walked:?}"),
    }
});
