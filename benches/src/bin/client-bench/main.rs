//! `client-bench`: the agents' library (`awp-client`) measured against a
//! `gateway` process on the null sink, on this machine (figures in
//! docs/performance.md):
//!
//! - `push` latency on the disk queue (every push timed; p50, p99, p99.9),
//!   and records/s pushed and delivered by one client (until `flush`
//!   returns), on the disk queue and on the memory queue;
//! - opening a client whose disk queue is full at 64 MiB (warm, and with
//!   the page cache dropped when run as root);
//! - the resident memory an idle, connected client adds.
//!
//! `target/release/client-bench [--gateway target/release/gateway] [--records 1000000] [--dir DIR]`

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use awp_client::{Auth, Client, ClientConfig, QueuePlace, Record, Token};
use clap::Parser;

const TENANT: &str = "bench";
const SECRET: &str = "client-bench-secret-0123456789";

#[derive(Parser)]
#[command(about = "Measures awp-client against a null-sink gateway")]
struct Args {
    /// The gateway binary (default: `gateway` beside this one).
    #[arg(long)]
    gateway: Option<PathBuf>,
    /// Records pushed in the throughput runs.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Where queues go (a real disk; default: a temporary directory in the
    /// system's).
    #[arg(long)]
    dir: Option<PathBuf>,
}

struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn start_gateway(program: &Path, dir: &Path) -> anyhow::Result<(Gateway, SocketAddr)> {
    let addr = free_addr()?;
    let admin = free_addr()?;
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = [\"{addr}\"]\nadmin_listen = \"{admin}\"\n\
             [sink]\nkind = \"null\"\nallow_null = true\n\
             [[tenants]]\nid = \"{TENANT}\"\nsecrets = [\"{SECRET}\"]\n"
        ),
    )?;
    let child = Command::new(program)
        .arg("--config")
        .arg(&config)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("gateway.log"))?)
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))?;
    let gateway = Gateway(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            bail!(
                "the gateway is not listening on {addr}; see {}",
                dir.join("gateway.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((gateway, addr))
}

fn config(addr: SocketAddr, device: &str, queue: QueuePlace) -> ClientConfig {
    let token = Token {
        token: awp_protocol::token::device_token(SECRET.as_bytes(), TENANT, device, 0),
        expiry: 0,
    };
    // The defaults an agent ships with (500 records or 60 kB a batch,
    // sealed within 5 s, synced every second, LZ4).
    ClientConfig::new(vec![addr.to_string()], TENANT, device, Auth::Token(token), queue)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn record(n: u64) -> Record {
    Record::location(
        1_700_000_000_000 + n,
        515_000_000 + (n % 1000) as i32,
        -1_000_000,
        n % 5000,
    )
    .expect("a record")
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e6
}

/// Pushes `n` records as fast as one thread can, timing each, then flushes.
fn push_and_deliver(client: &Client, n: u64) -> anyhow::Result<(Vec<Duration>, f64)> {
    let mut latencies = Vec::with_capacity(n as usize);
    let started = Instant::now();
    for i in 0..n {
        let r = record(i);
        let t = Instant::now();
        client.push(&r)?;
        latencies.push(t.elapsed());
    }
    client.flush(Duration::from_secs(600))?;
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    Ok((latencies, n as f64 / seconds))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let gateway_bin = match args.gateway {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("gateway"),
    };
    let temp = tempfile::tempdir()?;
    let dir = args.dir.unwrap_or_else(|| temp.path().to_owned());
    std::fs::create_dir_all(&dir)?;
    let (_gateway, addr) = start_gateway(&gateway_bin, &dir)?;
    println!(
        "client-bench: gateway {} (null sink) on {addr}, queues in {}",
        gateway_bin.display(),
        dir.display()
    );

    // 1. An idle, connected client's resident memory (first, in a process
    // that has done nothing else).
    let before = rss_kib();
    let idle = Client::open(config(addr, "idle", QueuePlace::Disk(dir.join("q-idle"))))?;
    idle.push(&record(0))?;
    idle.flush(Duration::from_secs(30))?;
    std::thread::sleep(Duration::from_secs(2));
    let after = rss_kib();
    let connected = idle.stats().connected;
    idle.close();
    println!(
        "\n| idle client | RSS before | RSS idle, connected={connected} | added |\n|---|---|---|---|\n| disk queue | {before} KiB | {after} KiB | {} KiB |",
        after.saturating_sub(before)
    );

    // 2. push latency and delivery rate.
    println!(
        "\n| queue | records | push p50 | p99 | p99.9 | max | delivered/s (push to flush) |\n|---|---|---|---|---|---|---|"
    );
    for (name, place) in [
        ("disk", QueuePlace::Disk(dir.join("q-push"))),
        ("memory", QueuePlace::Memory),
    ] {
        let client = Client::open(config(addr, &format!("push-{name}"), place))?;
        let (lat, rate) = push_and_deliver(&client, args.records)?;
        let stats = client.stats();
        client.close();
        anyhow::ensure!(
            stats.records_acked == args.records,
            "acked {} of {}",
            stats.records_acked,
            args.records
        );
        println!(
            "| {name} | {} | {:.2} µs | {:.2} µs | {:.2} µs | {:.0} µs | {:.0} |",
            args.records,
            percentile(&lat, 0.50),
            percentile(&lat, 0.99),
            percentile(&lat, 0.999),
            lat.last().map_or(0.0, |d| d.as_secs_f64() * 1e6),
            rate
        );
    }

    // 3. Opening a full 64 MiB queue: filled with the gateway out of reach.
    let full = dir.join("q-full");
    let unreachable = free_addr()?;
    {
        let client = Client::open(config(unreachable, "full", QueuePlace::Disk(full.clone())))?;
        let mut i = 0u64;
        while client.stats().queue.dropped_records == 0 {
            for _ in 0..10_000 {
                client.push(&record(i))?;
                i += 1;
            }
        }
        client.close();
    }
    let bytes: u64 = std::fs::read_dir(&full)?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    let mut opens = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let client = Client::open(config(unreachable, "full", QueuePlace::Disk(full.clone())))?;
        opens.push(t.elapsed());
        client.close();
    }
    opens.sort_unstable();
    let cold = if std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok() {
        let t = Instant::now();
        let client = Client::open(config(unreachable, "full", QueuePlace::Disk(full.clone())))?;
        let cold = t.elapsed();
        client.close();
        format!("{:.1} ms", cold.as_secs_f64() * 1e3)
    } else {
        "not measured (not root)".into()
    };
    println!(
        "\n| full queue | bytes on disk | open, warm (min / median / max of 5) | open, page cache dropped |\n|---|---|---|---|\n| 64 MiB cap | {bytes} | {:.1} / {:.1} / {:.1} ms | {cold} |",
        opens[0].as_secs_f64() * 1e3,
        opens[2].as_secs_f64() * 1e3,
        opens[4].as_secs_f64() * 1e3,
    );
    Ok(())
}
