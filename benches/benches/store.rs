//! The gateway's per-record work after the codec, on typical batches of 100
//! and 1,000 records (`awp_benches::typical_batch`):
//!
//! - `accept`: what the session does with a BATCH's content: every record
//!   decoded and checked once (`AcceptedBatch::accept`);
//! - `render_json`: what the SQLite and null sinks do: the records walked
//!   again from the bytes and each item rendered as DynamoDB JSON into one
//!   reused buffer (`JsonItems`);
//! - `render_attributes`: what the DynamoDB sink does before the SDK takes
//!   over: each item as an attribute map (`AttributeItems`).
//!
//! Run: `cargo bench -p awp-benches --bench store`

use std::hint::black_box;
use std::sync::Arc;

use awp_benches::typical_batch;
use awp_protocol::{BatchError, Limits, Platform, PreparedBatch};
use awp_store::dynamodb::AttributeItems;
use awp_store::{AcceptedBatch, JsonItems, Origin};
use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const SIZES: [usize; 2] = [100, 1000];

fn origin() -> Arc<Origin> {
    Arc::new(Origin {
        device_id: "dev-0001".into(),
        platform: Platform::Android,
        agent_version: "4.2.0".into(),
    })
}

fn content(records: usize) -> Bytes {
    PreparedBatch::new(&typical_batch(1, records, 42), &Limits::DEFAULT)
        .expect("typical batches are valid")
        .content()
        .clone()
}

fn accepted(records: usize) -> AcceptedBatch {
    AcceptedBatch::accept(origin(), 1, 1_764_000_000_000, None, content(records), &Limits::DEFAULT)
        .expect("typical batches are valid")
}

fn bench_store(c: &mut Criterion) {
    let limits = Limits::DEFAULT;
    let mut group = c.benchmark_group("accept");
    for records in SIZES {
        let bytes = content(records);
        group.throughput(Throughput::Elements(records as u64));
        group.bench_with_input(BenchmarkId::from_parameter(records), &bytes, |b, bytes| {
            let origin = origin();
            b.iter(|| {
                AcceptedBatch::accept(
                    origin.clone(),
                    1,
                    1_764_000_000_000,
                    None,
                    black_box(bytes).clone(),
                    &limits,
                )
                .expect("valid")
                .record_count()
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("render_json");
    for records in SIZES {
        let batch = accepted(records);
        group.throughput(Throughput::Elements(records as u64));
        let mut json = JsonItems::new();
        group.bench_with_input(BenchmarkId::from_parameter(records), &batch, |b, batch| {
            b.iter(|| {
                let mut bytes = 0usize;
                json.render::<BatchError>(black_box(batch), |item| {
                    bytes += item.json.len();
                    Ok(())
                })
                .expect("valid");
                bytes
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("render_attributes");
    for records in SIZES {
        let batch = accepted(records);
        group.throughput(Throughput::Elements(records as u64));
        group.bench_with_input(BenchmarkId::from_parameter(records), &batch, |b, batch| {
            b.iter(|| AttributeItems::items(black_box(batch)).expect("valid").len())
        });
    }
    group.finish();
}

criterion_group!(benches, bench_store);
criterion_main!(benches);
