//! `e2e`: the gateway end to end, against a floor server, in one run.
//!
//! ```sh
//! cargo build --release -p awp-gateway -p awp-agent-sim -p awp-benches
//! target/release/e2e --out e2e-report            # about 9 minutes
//! target/release/e2e --only full,light --seconds 10
//! ```
//!
//! Every server is a child process on loopback; agent-sim (also a child)
//! drives it; CPU and memory are read from `/proc`. The scenarios:
//!
//! - `full`: 16 agents × 32 batches in flight × 100-record batches, closed
//!   loop, against the floor server (`floor.rs`: acks every BATCH unread)
//!   and the gateway with the null sink, plain and TLS: records/s, server
//!   CPU per record, ack p50/p99, gateway ÷ floor.
//! - `light`: 1 agent, window 1, batches of 100 and of 10 records: ack latency.
//! - `idle`: 10,000 connected, nearly idle agents (one 20-record batch every
//!   20 s each): gateway RSS per agent, plain and TLS.
//! - `sqlite`: the SQLite sink at full load, verified afterwards.
//! - `inflate`: 8 connections × 32 zstd batches inflating to 3.9 MB each
//!   (`attack.rs`): peak gateway RSS, and how fast a new agent gets WELCOME.
//! - `long`: 5 minutes of constant load (100k records/s offered) with
//!   nobody scraping `/metrics`: gateway RSS at minute 1 and at the end.
//!
//! The box is noisy: compare figures within one run. `--gateway` and
//! `--agent-sim` pick the binaries, so an older build can be measured the
//! same way. The results are printed as Markdown tables and written to
//! `OUT/results.md` and `OUT/results.json`.

mod attack;
mod floor;
mod pki;
mod procs;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

use crate::procs::{Server, SimResult, agent_sim, free_port, fresh_dir};

const TENANT: &str = "bench";
/// The full load of issue 8: 16 agents × 32 batches in flight × 100 records.
const FULL_LOAD: [&str; 6] = ["--agents", "16", "--window", "32", "--records", "100"];
const SECRET: &str = "bench-secret-0123456789abcdef";

#[derive(Parser, Debug)]
#[command(about = "End-to-end benchmark of the gateway against a floor server")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the floor server (the benchmark starts it itself).
    Floor {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long, requires_all = ["cert", "key"])]
        tls_listen: Option<SocketAddr>,
        #[arg(long)]
        cert: Option<PathBuf>,
        #[arg(long)]
        key: Option<PathBuf>,
    },
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// The gateway binary (default: `gateway` beside this one).
    #[arg(long)]
    gateway: Option<PathBuf>,
    /// The agent-sim binary (default: `agent-sim` beside this one).
    #[arg(long)]
    agent_sim: Option<PathBuf>,
    /// Scenarios to run: full, light, idle, sqlite, inflate, long.
    #[arg(long, value_delimiter = ',', default_value = "full,light,idle,sqlite,inflate,long")]
    only: Vec<String>,
    /// Seconds of each full-load, light-load and SQLite run.
    #[arg(long, default_value_t = 15.0)]
    seconds: f64,
    /// Seconds of the long run.
    #[arg(long, default_value_t = 300.0)]
    long_seconds: f64,
    /// Seconds of the inflate attack.
    #[arg(long, default_value_t = 20.0)]
    attack_seconds: f64,
    /// Agents of the idle run.
    #[arg(long, default_value_t = 10_000)]
    idle_agents: usize,
    /// Extra lines for the gateway's `[pipeline]` table, e.g. `budget_bytes = 67108864`.
    #[arg(long)]
    pipeline: Vec<String>,
    /// A label for this run's tables (e.g. the commit).
    #[arg(long, default_value = "")]
    label: String,
    /// Where logs, agent-sim reports and the results go.
    #[arg(long, default_value = "e2e-report")]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Floor {
            listen,
            tls_listen,
            cert,
            key,
        }) => {
            let tls = match (tls_listen, &cert, &key) {
                (Some(addr), Some(cert), Some(key)) => Some((addr, cert.as_path(), key.as_path())),
                _ => None,
            };
            floor::serve(listen, tls)
        }
        None => Bench::new(cli.run)?.run(),
    }
}

/// One benchmark run: its binaries, its directory, its results.
struct Bench {
    args: RunArgs,
    gateway: PathBuf,
    agent_sim: PathBuf,
    pki: pki::Pki,
    results: serde_json::Map<String, Value>,
    markdown: String,
}

/// A gateway's listeners.
struct Addrs {
    plain: SocketAddr,
    tls: SocketAddr,
}

fn addrs() -> anyhow::Result<Addrs> {
    Ok(Addrs {
        plain: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
        tls: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
    })
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.with_file_name(name))
}

impl Bench {
    fn new(args: RunArgs) -> anyhow::Result<Bench> {
        let gateway = match &args.gateway {
            Some(p) => p.clone(),
            None => sibling("gateway")?,
        };
        let agent_sim = match &args.agent_sim {
            Some(p) => p.clone(),
            None => sibling("agent-sim")?,
        };
        for bin in [&gateway, &agent_sim] {
            anyhow::ensure!(
                bin.exists(),
                "{} not found: build it with cargo build --release",
                bin.display()
            );
        }
        std::fs::create_dir_all(&args.out)?;
        let pki = pki::generate(&fresh_dir(&args.out, "pki")?)?;
        Ok(Bench {
            args,
            gateway,
            agent_sim,
            pki,
            results: serde_json::Map::new(),
            markdown: String::new(),
        })
    }

    fn wants(&self, scenario: &str) -> bool {
        self.args.only.iter().any(|s| s == scenario)
    }

    fn run(mut self) -> anyhow::Result<()> {
        let _ = writeln!(
            self.markdown,
            "# e2e {}\n\ngateway `{}`, agent-sim `{}`\n",
            self.args.label,
            self.gateway.display(),
            self.agent_sim.display()
        );
        if self.wants("full") {
            self.full_and_light(true)?;
        } else if self.wants("light") {
            self.full_and_light(false)?;
        }
        if self.wants("idle") {
            self.idle()?;
        }
        if self.wants("sqlite") {
            self.sqlite()?;
        }
        if self.wants("inflate") {
            self.inflate()?;
        }
        if self.wants("long") {
            self.long()?;
        }
        std::fs::write(self.args.out.join("results.md"), &self.markdown)?;
        std::fs::write(
            self.args.out.join("results.json"),
            serde_json::to_string_pretty(&Value::Object(self.results.clone()))?,
        )?;
        println!("\nresults: {}/results.md and results.json", self.args.out.display());
        Ok(())
    }

    fn say(&mut self, text: &str) {
        println!("{text}");
        self.markdown.push_str(text);
        self.markdown.push('\n');
    }

    /// Starts a gateway with `sink`, its listeners and `[pipeline]` extras.
    fn start_gateway(&self, name: &str, sink: &str, addrs: &Addrs) -> anyhow::Result<(Server, PathBuf)> {
        let data = fresh_dir(&self.args.out, &format!("data-{name}"))?;
        let admin = free_port()?;
        let config = format!(
            "[server]\nlisten = [\"{}\"]\ntls_listen = [\"{}\"]\nadmin_listen = \"127.0.0.1:{admin}\"\n\
             max_connections = 12000\n\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n\n[pipeline]\n{}\n\n\
             [sink]\nkind = \"{sink}\"\n{}data_dir = \"{}\"\n\n[[tenants]]\nid = \"{TENANT}\"\nsecrets = [\"{SECRET}\"]\n",
            addrs.plain,
            addrs.tls,
            self.pki.cert.display(),
            self.pki.key.display(),
            self.args.pipeline.join("\n"),
            // The null sink must be opted into (gateways since issue 9).
            if sink == "null" { "allow_null = true\n" } else { "" },
            data.display(),
        );
        let path = self.args.out.join(format!("gateway-{name}.toml"));
        std::fs::write(&path, config)?;
        let args = vec!["--config".to_owned(), path.display().to_string()];
        let log = self.args.out.join(format!("gateway-{name}.log"));
        let server = Server::start(&format!("gateway ({name})"), &self.gateway, &args, &log, addrs.plain)?;
        Ok((server, data))
    }

    fn start_floor(&self, addrs: &Addrs) -> anyhow::Result<Server> {
        let args = [
            "floor".to_owned(),
            "--listen".to_owned(),
            addrs.plain.to_string(),
            "--tls-listen".to_owned(),
            addrs.tls.to_string(),
            "--cert".to_owned(),
            self.pki.cert.display().to_string(),
            "--key".to_owned(),
            self.pki.key.display().to_string(),
        ];
        let log = self.args.out.join("floor.log");
        Server::start("floor", &std::env::current_exe()?, &args, &log, addrs.plain)
    }

    /// agent-sim against `target`, with the common flags and `extra`.
    fn sim(&self, name: &str, target: SocketAddr, tls: bool, extra: &[&str]) -> anyhow::Result<SimResult> {
        let mut args: Vec<String> = ["--gateway", &target.to_string(), "--tenant", TENANT, "--secret", SECRET]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        if tls {
            args.extend(["--tls-ca".to_owned(), self.pki.ca.display().to_string()]);
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        if !extra.contains(&"--ramp") {
            args.extend(["--ramp".to_owned(), "0".to_owned()]);
        }
        let out = fresh_dir(&self.args.out, &format!("sim-{name}"))?;
        agent_sim(&self.agent_sim, &args, &out)
    }

    /// One measured agent-sim run against `server`: its report and the server's CPU seconds.
    fn measured(
        &self,
        name: &str,
        server: &Server,
        target: SocketAddr,
        tls: bool,
        extra: &[&str],
    ) -> anyhow::Result<(SimResult, f64)> {
        let cpu0 = server.cpu_seconds()?;
        let r = self.sim(name, target, tls, extra)?;
        let cpu = server.cpu_seconds()? - cpu0;
        Ok((r, cpu))
    }

    fn full_and_light(&mut self, full: bool) -> anyhow::Result<()> {
        let floor_addrs = addrs()?;
        let gw_addrs = addrs()?;
        let floor = self.start_floor(&floor_addrs)?;
        let (gateway, _) = self.start_gateway("null", "null", &gw_addrs)?;
        let seconds = self.args.seconds.to_string();
        if full {
            self.say("\n## Full load: 16 agents × 32 in flight × 100-record batches, closed loop, null sink\n");
            self.say("| transport | server | records/s | server CPU | CPU µs/record | ack p50 | ack p99 | retries | gateway ÷ floor |");
            self.say("|---|---|---:|---:|---:|---:|---:|---:|---:|");
            let mut load = FULL_LOAD.to_vec();
            load.extend(["--duration", &seconds]);
            for tls in [false, true] {
                let transport = if tls { "TLS" } else { "plain" };
                let pick = |a: &Addrs| if tls { a.tls } else { a.plain };
                let (f, fcpu) = self.measured(
                    &format!("full-floor-{transport}"),
                    &floor,
                    pick(&floor_addrs),
                    tls,
                    &load,
                )?;
                let (g, gcpu) = self.measured(
                    &format!("full-gateway-{transport}"),
                    &gateway,
                    pick(&gw_addrs),
                    tls,
                    &load,
                )?;
                let ratio = g.records_per_s() / f.records_per_s().max(1e-9);
                for (who, r, cpu, ratio) in [("floor", &f, fcpu, None), ("gateway", &g, gcpu, Some(ratio))] {
                    let row = format!(
                        "| {transport} | {who} | {:.0} | {:.2} cores | {:.3} | {:.2} ms | {:.2} ms | {} | {} |",
                        r.records_per_s(),
                        cpu / r.duration_s.max(1e-9),
                        cpu * 1e6 / (r.records_acked.max(1) as f64),
                        r.ack_p50_ms,
                        r.ack_p99_ms,
                        r.retries,
                        ratio.map_or(String::new(), |x| format!("{x:.2}")),
                    );
                    self.say(&row);
                    self.record(&format!("full_{who}_{transport}"), r, Some(cpu));
                }
            }
        }
        if self.wants("light") {
            self.say("\n## Light load: 1 agent, window 1, null sink, plain\n");
            self.say("| records per batch | server | records/s | ack p50 | ack p99 |");
            self.say("|---:|---|---:|---:|---:|");
            for records in [100, 10] {
                let records_s = records.to_string();
                let load = [
                    "--agents",
                    "1",
                    "--window",
                    "1",
                    "--records",
                    &records_s,
                    "--duration",
                    &seconds,
                ];
                for (who, server, addr) in [
                    ("floor", &floor, floor_addrs.plain),
                    ("gateway", &gateway, gw_addrs.plain),
                ] {
                    let (r, cpu) = self.measured(&format!("light-{who}-{records}"), server, addr, false, &load)?;
                    let row = format!(
                        "| {records} | {who} | {:.0} | {:.1} µs | {:.1} µs |",
                        r.records_per_s(),
                        r.ack_p50_ms * 1000.0,
                        r.ack_p99_ms * 1000.0
                    );
                    self.say(&row);
                    self.record(&format!("light_{who}_{records}"), &r, Some(cpu));
                }
            }
        }
        drop(floor);
        gateway.stop();
        Ok(())
    }

    fn record(&mut self, key: &str, r: &SimResult, server_cpu_s: Option<f64>) {
        self.results.insert(
            key.to_owned(),
            json!({
                "records_acked": r.records_acked,
                "duration_s": r.duration_s,
                "records_per_s": r.records_per_s(),
                "ack_p50_ms": r.ack_p50_ms,
                "ack_p99_ms": r.ack_p99_ms,
                "retries": r.retries,
                "errors": r.errors,
                "server_cpu_s": server_cpu_s,
                "verify": r.verify.map(|(ok, found, expected)| json!({"ok": ok, "found": found, "expected": expected})),
            }),
        );
    }

    fn idle(&mut self) -> anyhow::Result<()> {
        let agents = self.args.idle_agents;
        self.say(&format!(
            "\n## Idle agents: {agents} connected, one 20-record batch every 20 s each\n"
        ));
        self.say("| transport | RSS before | RSS with the agents | per agent | connects | ack p99 |");
        self.say("|---|---:|---:|---:|---:|---:|");
        for tls in [false, true] {
            let transport = if tls { "TLS" } else { "plain" };
            let a = addrs()?;
            let (gateway, _) = self.start_gateway(&format!("idle-{transport}"), "null", &a)?;
            let before = gateway.rss_kib()?;
            let fds_before = gateway.open_files();
            let target = if tls { a.tls } else { a.plain };
            let agents_s = agents.to_string();
            let ramp = if tls { "1000" } else { "2500" };
            let sending = (agents as f64 / ramp.parse::<f64>()? + 25.0).to_string();
            let args = [
                "--agents",
                &agents_s,
                "--sources",
                "4",
                "--rate",
                "0.05",
                "--records",
                "20",
                "--window",
                "4",
                "--duration",
                &sending,
            ];
            let mut extra: Vec<&str> = args.to_vec();
            extra.extend(["--ramp", ramp]);
            let sampler = {
                let pid = gateway.pid();
                std::thread::spawn(move || sample_when_connected(pid, fds_before + agents))
            };
            let r = self.sim(&format!("idle-{transport}"), target, tls, &extra)?;
            let with_agents = sampler.join().map_err(|_| anyhow::anyhow!("sampler panicked"))??;
            let per_agent = (with_agents.saturating_sub(before)) as f64 * 1024.0 / agents as f64;
            let row = format!(
                "| {transport} | {:.1} MiB | {:.1} MiB | {:.2} kB | {} | {:.1} ms |",
                before as f64 / 1024.0,
                with_agents as f64 / 1024.0,
                per_agent / 1000.0,
                r.connects,
                r.ack_p99_ms
            );
            self.say(&row);
            self.results.insert(
                format!("idle_{transport}"),
                json!({"rss_before_kib": before, "rss_with_agents_kib": with_agents, "bytes_per_agent": per_agent,
                       "connects": r.connects, "errors": r.errors}),
            );
            gateway.stop();
        }
        Ok(())
    }

    fn sqlite(&mut self) -> anyhow::Result<()> {
        self.say("\n## SQLite sink: 16 agents × 32 in flight × 100-record batches, closed loop, verified\n");
        self.say("| records/s | gateway CPU | ack p50 | ack p99 | retries | verify |");
        self.say("|---:|---:|---:|---:|---:|---|");
        let a = addrs()?;
        let (gateway, data) = self.start_gateway("sqlite", "sqlite", &a)?;
        let seconds = self.args.seconds.to_string();
        let data_s = data.display().to_string();
        let mut load = FULL_LOAD.to_vec();
        load.extend(["--duration", &seconds, "--verify-sqlite", &data_s]);
        let (r, cpu) = self.measured("sqlite", &gateway, a.plain, false, &load)?;
        let verify = match r.verify {
            Some((ok, found, expected)) => format!("{} {found} of {expected}", if ok { "OK" } else { "FAILED" }),
            None => "not run".to_owned(),
        };
        let row = format!(
            "| {:.0} | {:.2} cores | {:.1} ms | {:.1} ms | {} | {verify} |",
            r.records_per_s(),
            cpu / r.duration_s.max(1e-9),
            r.ack_p50_ms,
            r.ack_p99_ms,
            r.retries
        );
        self.say(&row);
        self.record("sqlite", &r, Some(cpu));
        gateway.stop();
        Ok(())
    }

    fn inflate(&mut self) -> anyhow::Result<()> {
        let (frames, wire) = attack::frames()?;
        self.say(&format!(
            "\n## Inflate attack: 8 connections × {} zstd batches in flight, {wire} wire bytes each, inflating to {} × {} KiB unknown-kind records; null sink\n",
            attack::WINDOW,
            attack::RECORDS,
            attack::BODY / 1024
        ));
        self.say("| RSS before | peak RSS | RSS at the end | new agent: WELCOME | its batch: ACK | attack acks ok / retry / failed |");
        self.say("|---:|---:|---:|---:|---:|---|");
        let a = addrs()?;
        let (gateway, _) = self.start_gateway("inflate", "null", &a)?;
        let before = gateway.rss_kib()?;
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let stats = Arc::new(attack::AttackStats::default());
        let until = Instant::now() + Duration::from_secs_f64(self.args.attack_seconds);
        let frames = Arc::new(frames);
        let (probe, end_rss) = runtime.block_on(async {
            for i in 0..8 {
                tokio::spawn(attack::attacker(
                    a.plain,
                    TENANT.to_owned(),
                    SECRET.to_owned(),
                    format!("attacker-{i}"),
                    frames.clone(),
                    until,
                    stats.clone(),
                ));
            }
            tokio::time::sleep(Duration::from_secs_f64(self.args.attack_seconds / 2.0)).await;
            let probe = attack::probe(a.plain, TENANT, SECRET).await;
            tokio::time::sleep_until(until.into()).await;
            (probe, gateway.rss_kib())
        });
        runtime.shutdown_timeout(Duration::from_secs(1));
        let peak = gateway.peak_rss_kib()?;
        let (welcome, ack) = match &probe {
            Ok((w, a, status)) => (
                format!("{:.1} ms", w.as_secs_f64() * 1e3),
                format!("{:.0} ms ({})", a.as_secs_f64() * 1e3, status.name()),
            ),
            Err(e) => (format!("failed: {e:#}"), String::new()),
        };
        let row = format!(
            "| {:.0} MiB | {:.0} MiB | {:.0} MiB | {welcome} | {ack} | {} / {} / {} |",
            before as f64 / 1024.0,
            peak as f64 / 1024.0,
            end_rss.unwrap_or(0) as f64 / 1024.0,
            stats.ok.load(Ordering::Relaxed),
            stats.retry.load(Ordering::Relaxed),
            stats.failed.load(Ordering::Relaxed),
        );
        self.say(&row);
        self.results.insert(
            "inflate".into(),
            json!({"rss_before_kib": before, "peak_rss_kib": peak, "welcome": welcome, "ack": ack,
                   "ok": stats.ok.load(Ordering::Relaxed), "retry": stats.retry.load(Ordering::Relaxed),
                   "failed": stats.failed.load(Ordering::Relaxed)}),
        );
        gateway.stop();
        Ok(())
    }

    fn long(&mut self) -> anyhow::Result<()> {
        let secs = self.args.long_seconds;
        self.say(&format!(
            "\n## Long run: {secs:.0} s at 100k records/s offered (50 agents × 20 batches/s × 100 records), null sink, /metrics never scraped\n"
        ));
        let a = addrs()?;
        let (gateway, _) = self.start_gateway("long", "null", &a)?;
        let pid = gateway.pid();
        let step = Duration::from_secs(10);
        let sampler = std::thread::spawn(move || {
            let started = Instant::now();
            let mut samples = Vec::new();
            let mut next = started + step;
            while Instant::now() < started + Duration::from_secs_f64(secs + 5.0) {
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
                next += step;
                match procs::status_kib(pid, "VmRSS:") {
                    Ok(kib) => samples.push((started.elapsed().as_secs_f64(), kib)),
                    Err(_) => break,
                }
            }
            samples
        });
        let secs_s = secs.to_string();
        let load = [
            "--agents",
            "50",
            "--rate",
            "20",
            "--records",
            "100",
            "--window",
            "8",
            "--duration",
            &secs_s,
        ];
        let (r, cpu) = self.measured("long", &gateway, a.plain, false, &load)?;
        let samples = sampler.join().map_err(|_| anyhow::anyhow!("sampler panicked"))?;
        let at = |t: f64| {
            samples
                .iter()
                .find(|(s, _)| *s >= t)
                .or(samples.last())
                .map_or(0, |(_, k)| *k)
        };
        let minute1 = at(60.0);
        let end = at(secs);
        let change = (end as f64 - minute1 as f64) / (minute1.max(1) as f64) * 100.0;
        self.say("| records/s | gateway CPU | RSS at 1 min | RSS at the end | change | ack p99 |");
        self.say("|---:|---:|---:|---:|---:|---:|");
        let row = format!(
            "| {:.0} | {:.2} cores | {:.1} MiB | {:.1} MiB | {change:+.1}% | {:.1} ms |",
            r.records_per_s(),
            cpu / r.duration_s.max(1e-9),
            minute1 as f64 / 1024.0,
            end as f64 / 1024.0,
            r.ack_p99_ms
        );
        self.say(&row);
        let series: Vec<String> = samples
            .iter()
            .map(|(t, k)| format!("{t:.0}s {:.1}", *k as f64 / 1024.0))
            .collect();
        self.say(&format!("\nRSS (MiB) every 10 s: {}", series.join(", ")));
        self.results.insert(
            "long".into(),
            json!({"records_per_s": r.records_per_s(), "rss_minute1_kib": minute1, "rss_end_kib": end,
                   "change_percent": change, "samples": samples}),
        );
        gateway.stop();
        Ok(())
    }
}

/// Waits until `pid` has `fds` open files (its agents are connected), lets
/// them settle, then returns the largest RSS seen over the next 5 s (KiB).
fn sample_when_connected(pid: u32, fds: usize) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while procs::open_files(pid) < fds {
        let open = procs::open_files(pid);
        anyhow::ensure!(Instant::now() < deadline, "only {open} of {fds} files open after 120 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    let mut peak = 0;
    for _ in 0..25 {
        peak = peak.max(procs::status_kib(pid, "VmRSS:").context("gateway gone")?);
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(peak)
}
