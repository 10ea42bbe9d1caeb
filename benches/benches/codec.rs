//! Decoding and encoding typical BATCH frames: 100 and 1,000 records of mixed
//! kinds, uncompressed, LZ4 and Zstandard.
//!
//! `decode` is what the gateway does per frame: header and length checks,
//! CRC-32C, inflation, `seq`, then every record decoded and checked.
//! Throughput is per wire byte (compressed bytes for LZ4 and zstd) and per
//! record. `decode` collects the records into a `Batch`; `decode_walk`
//! iterates them without collecting, as the gateway does.
//!
//! Run: `cargo bench -p awp-benches --bench codec`

use std::hint::black_box;

use awp_benches::typical_batch;
use awp_protocol::{Compression, Decoded, Frame, Limits, decode};
use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const SIZES: [usize; 2] = [100, 1000];
const CODECS: [Compression; 3] = [Compression::None, Compression::Lz4, Compression::Zstd];

fn encoded(records: usize, compression: Compression) -> Bytes {
    let mut buf = BytesMut::new();
    typical_batch(1, records, 42)
        .encode(compression, &Limits::DEFAULT, &mut buf)
        .expect("typical batches are valid");
    buf.freeze()
}

fn frame_of(bytes: &Bytes, limits: &Limits) -> awp_protocol::BatchFrame {
    match decode(bytes, limits) {
        Ok(Decoded::Complete(Frame::Batch(batch), _)) => batch,
        other => panic!("benchmark frame must decode: {other:?}"),
    }
}

/// Frame and content, records collected into a `Batch`.
fn decode_collect(frame: &Bytes, limits: &Limits) -> usize {
    frame_of(frame, limits)
        .decode(limits)
        .expect("valid content")
        .records
        .len()
}

/// Frame and content, records walked one at a time (the gateway's path).
fn decode_walk(frame: &Bytes, limits: &Limits) -> usize {
    let batch = frame_of(frame, limits);
    let mut n = 0;
    for record in batch.records(limits).expect("valid content") {
        black_box(record.expect("valid record"));
        n += 1;
    }
    n
}

fn bench_decode(c: &mut Criterion) {
    let limits = Limits::DEFAULT;
    type Decoder = fn(&Bytes, &Limits) -> usize;
    for (group_name, run) in [
        ("decode", decode_collect as Decoder),
        ("decode_walk", decode_walk as Decoder),
    ] {
        let mut group = c.benchmark_group(group_name);
        for records in SIZES {
            for codec in CODECS {
                let frame = encoded(records, codec);
                group.throughput(Throughput::ElementsAndBytes {
                    elements: records as u64,
                    bytes: frame.len() as u64,
                });
                group.bench_with_input(BenchmarkId::new(codec.name(), records), &frame, |b, frame| {
                    b.iter(|| run(black_box(frame), &limits))
                });
            }
        }
        group.finish();
    }
}

fn bench_encode(c: &mut Criterion) {
    let limits = Limits::DEFAULT;
    let mut group = c.benchmark_group("encode");
    for records in SIZES {
        let batch = typical_batch(1, records, 42);
        for codec in CODECS {
            let len = encoded(records, codec).len();
            group.throughput(Throughput::ElementsAndBytes {
                elements: records as u64,
                bytes: len as u64,
            });
            let mut buf = BytesMut::with_capacity(len * 2);
            group.bench_with_input(BenchmarkId::new(codec.name(), records), &batch, |b, batch| {
                b.iter(|| {
                    buf.clear();
                    batch.encode(codec, &limits, &mut buf).unwrap();
                    buf.len()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_decode, bench_encode);
criterion_main!(benches);
