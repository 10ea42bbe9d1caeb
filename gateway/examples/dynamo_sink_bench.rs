//! The DynamoDB sink against dynalite: items/s, items per request, write
//! latency, and the CPU the sink uses next to the CPU dynalite uses.
//!
//! ```sh
//! scripts/dynalite.sh install
//! cargo run --release -p awp-gateway --example dynamo_sink_bench -- [ITEMS] [ITEMS_PER_WRITE] [CONCURRENCY] [RECORDS_PER_BATCH] [packed]
//! ```
//!
//! With `packed`, the table is written in the packed layout (one item per
//! batch); ITEMS and ITEMS_PER_WRITE still count records.
//!
//! It starts its own dynalite (in memory), creates a table, accepts typical
//! 100-record batches (`awp_protocol::sample::typical_batch`) exactly as the gateway
//! does, and writes them with `DynamoSink` the way the pipeline does: one
//! write call at a time of ITEMS_PER_WRITE items (default 2,000, rounded to
//! whole batches), each rendered and split into BatchWriteItem requests of
//! 25 sent CONCURRENCY at a time (default 8).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use awp_gateway::config::{DynamoConfig, Layout};
use awp_gateway::sink::TenantSink;
use awp_gateway::sink::dynamodb::{DynamoSink, client};
use awp_protocol::{Limits, Platform, PreparedBatch};
use awp_store::{AcceptedBatch, Origin};

/// CPU seconds (user + system) of a process, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .map_or(0.0, |f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum());
    ticks / 100.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let total = args.first().copied().unwrap_or(100_000);
    let per_write = args.get(1).copied().unwrap_or(2_000);
    let concurrency = args.get(2).copied().unwrap_or(8);
    let per_batch = args.get(3).copied().unwrap_or(100).clamp(1, 1000);
    let layout = if std::env::args().any(|a| a == "packed") {
        Layout::Packed
    } else {
        Layout::Record
    };

    let serve = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/dynalite/serve.js");
    let mut dynalite = Command::new("node")
        .arg(serve)
        .arg("0")
        .env("EXIT_WITH_STDIN", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(dynalite.stdout.take().unwrap()).read_line(&mut line)?;
    let endpoint = format!("http://127.0.0.1:{}", line.trim().trim_start_matches("DYNALITE_PORT="));

    let config = DynamoConfig {
        table: "bench".into(),
        region: "us-east-1".into(),
        endpoint: Some(endpoint),
        profile: None,
        role_arn: None,
        external_id: None,
        access_key_id: Some("local".into()),
        secret_access_key: Some("local".into()),
        max_concurrency: concurrency,
    };
    awp_gateway::sink::dynamodb::tables::create_table(&client(&config).await, "bench").await?;
    let mut sink = DynamoSink::connect("bench", &config, Duration::from_secs(60), layout).await;

    // Batches as the gateway accepts them: typical batches from 50 devices.
    let origins: Vec<Arc<Origin>> = (0..50)
        .map(|d| {
            Arc::new(Origin {
                device_id: format!("device-{d}"),
                platform: Platform::Android,
                agent_version: "bench".into(),
            })
        })
        .collect();
    let mut batches = Vec::with_capacity(total / per_batch + 1);
    for seq in 1..=total.div_ceil(per_batch) as u64 {
        let content = PreparedBatch::new(
            &awp_protocol::sample::typical_batch(seq, per_batch, seq),
            &Limits::DEFAULT,
        )?;
        let origin = origins[seq as usize % origins.len()].clone();
        batches.push(AcceptedBatch::accept(
            origin,
            seq,
            1_764_000_000_000,
            None,
            content.content().clone(),
            &Limits::DEFAULT,
        )?);
    }
    let total = batches.len() * per_batch;
    // Packed: one item per batch (a typical batch is far under a part).
    let items = if layout == Layout::Packed { batches.len() } else { total };

    let (me, db) = (std::process::id(), dynalite.id());
    let (me0, db0) = (cpu_seconds(me), cpu_seconds(db));
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut chunks = batches.into_iter().peekable();
    while chunks.peek().is_some() {
        let chunk: Vec<_> = chunks.by_ref().take(per_write.div_ceil(per_batch)).collect();
        let t = Instant::now();
        sink.write(chunk).await?;
        latencies.push(t.elapsed());
    }
    let secs = started.elapsed().as_secs_f64();
    let (me1, db1) = (cpu_seconds(me), cpu_seconds(db));
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1000.0;
    println!(
        "{total} records in {secs:.2} s: {:.0} records/s; {per_write} records per write; {items} items in {} BatchWriteItem requests of <= 25, concurrency <= {concurrency}",
        total as f64 / secs,
        items.div_ceil(25),
    );
    println!(
        "write latency ({per_write} records): p50 {:.0} ms, p90 {:.0} ms, max {:.0} ms",
        pct(0.5),
        pct(0.9),
        pct(1.0)
    );
    println!(
        "CPU: sink process {:.0}% of one core, dynalite {:.0}% of one core; sink process {:.2} µs per record ({layout:?} layout)",
        (me1 - me0) / secs * 100.0,
        (db1 - db0) / secs * 100.0,
        (me1 - me0) / total as f64 * 1e6,
    );
    let _ = dynalite.kill();
    Ok(())
}
