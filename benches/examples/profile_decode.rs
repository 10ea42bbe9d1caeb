//! A loop of full BATCH decodes, for a profiler:
//! `cargo build --profile bench -p awp-benches --example profile_decode &&
//!  perf record -g target/release/examples/profile_decode none 1000 20000`
//!
//! Arguments: codec (none, lz4, zstd), records per batch, iterations, and
//! `iter` to walk the records with `BatchFrame::records` instead of
//! collecting them with `BatchFrame::decode`.

use std::hint::black_box;

use awp_benches::typical_batch;
use awp_protocol::{Compression, Decoded, Frame, Limits, decode};
use bytes::BytesMut;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let codec = match args.get(1).map(String::as_str) {
        Some("lz4") => Compression::Lz4,
        Some("zstd") => Compression::Zstd,
        _ => Compression::None,
    };
    let records: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let iterations: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let walk = args.get(4).is_some_and(|a| a == "iter");
    let limits = Limits::DEFAULT;
    let mut buf = BytesMut::new();
    typical_batch(1, records, 42)
        .encode(codec, &limits, &mut buf)
        .expect("valid batch");
    let frame = buf.freeze();
    let start = std::time::Instant::now();
    let mut total = 0usize;
    for _ in 0..iterations {
        let Ok(Decoded::Complete(Frame::Batch(batch), _)) = decode(black_box(&frame), &limits) else {
            panic!("decode");
        };
        total += if walk {
            let mut n = 0;
            for record in batch.records(&limits).expect("valid") {
                black_box(record.expect("valid"));
                n += 1;
            }
            n
        } else {
            batch.decode(&limits).expect("valid").records.len()
        };
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{codec}: {} bytes/frame, {total} records in {secs:.3}s: {:.0} MB/s, {:.1} M records/s",
        frame.len(),
        (frame.len() * iterations) as f64 / secs / 1e6,
        total as f64 / secs / 1e6
    );
}
