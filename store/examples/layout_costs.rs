//! What a typical batch costs in each layout: item bytes, write units,
//! storage bytes, and the CPU of rendering it (packing: JSON lines and
//! zstd; the record layout's rendering is the SDK's, measured by the
//! gateway's `dynamo_sink_bench`).
//!
//! ```sh
//! cargo run --release -p awp-store --example layout_costs
//! ```

use std::sync::Arc;
use std::time::Instant;

use awp_protocol::{Limits, Platform, PreparedBatch};
use awp_store::packed::{PackError, Packer};
use awp_store::{AcceptedBatch, Origin};

/// DynamoDB's storage overhead per item, bytes.
const ITEM_OVERHEAD: usize = 100;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "| records per batch | layout | items | item bytes | write units | storage bytes | per record: write units, storage bytes | rendering CPU per record |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for n in [20usize, 50, 100] {
        let origin = Arc::new(Origin {
            device_id: "device-17".into(),
            platform: Platform::Android,
            agent_version: "4.2.0".into(),
        });
        let content = PreparedBatch::new(&awp_protocol::sample::typical_batch(7, n, 7), &Limits::DEFAULT)?;
        // With a retention, as most tenants have: expires_at on every item.
        let batch = AcceptedBatch::accept(
            origin,
            7,
            1_764_000_000_000,
            Some(1_800_000_000),
            content.content().clone(),
            &Limits::DEFAULT,
        )?;

        let (mut bytes, mut units) = (0, 0);
        let mut sizer = batch.item_sizer();
        for record in batch.records() {
            let record = record?;
            let size = sizer.item_size(&record.key, &record.record);
            bytes += size;
            units += size.div_ceil(1024);
        }
        let storage = bytes + n * ITEM_OVERHEAD;
        println!(
            "| {n} | record | {n} | {bytes} | {units} | {storage} | {:.2}, {:.0} | (SDK: see dynamo_sink_bench) |",
            units as f64 / n as f64,
            storage as f64 / n as f64
        );

        let mut packer = Packer::new()?;
        let (mut items, mut bytes, mut units) = (0, 0, 0);
        packer.pack::<PackError>(&batch, |item| {
            items += 1;
            bytes += item.size();
            units += item.size().div_ceil(1024);
            Ok(())
        })?;
        let rounds = 20_000 / n;
        let started = Instant::now();
        for _ in 0..rounds {
            packer.pack::<PackError>(&batch, |item| {
                std::hint::black_box(item.records);
                Ok(())
            })?;
        }
        let per_record = started.elapsed().as_secs_f64() / (rounds * n) as f64 * 1e6;
        let storage = bytes + items * ITEM_OVERHEAD;
        println!(
            "| {n} | packed | {items} | {bytes} | {units} | {storage} | {:.2}, {:.0} | {per_record:.2} µs |",
            units as f64 / n as f64,
            storage as f64 / n as f64
        );
    }
    Ok(())
}
