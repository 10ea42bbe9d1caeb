//! The processes of a benchmark run: servers started as children (killed
//! when dropped), agent-sim runs, and what `/proc` says about a process.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on Linux).
const CLK_TCK: f64 = 100.0;

/// A free loopback port (bound, read, released: the child binds it next).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A server process, killed (SIGKILL) when dropped.
pub struct Server {
    child: Child,
}

impl Server {
    /// Starts `program` with `args`, its output to `log`, and waits until
    /// `ready` accepts a TCP connection.
    pub fn start(name: &str, program: &Path, args: &[String], log: &Path, ready: SocketAddr) -> anyhow::Result<Server> {
        let out = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let child = Command::new(program)
            .args(args)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            // The benchmark's gateways use the null sink, which must be allowed.
            .env("GATEWAY_ALLOW_NULL_SINK", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let mut server = Server { child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&ready, Duration::from_millis(200)).is_err() {
            if let Some(status) = server.child.try_wait()? {
                bail!("{name} exited with {status} before listening; see {}", log.display());
            }
            if Instant::now() > deadline {
                bail!("{name} is not listening on {ready} after 20 s; see {}", log.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Let the start-up allocations settle before any baseline is read.
        std::thread::sleep(Duration::from_millis(500));
        Ok(server)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User plus system CPU seconds so far.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        let rest = &stat[stat.rfind(')').context("bad stat")? + 1..];
        // Fields 14 and 15 (utime, stime); `rest` starts at field 3.
        let mut fields = rest.split_whitespace().skip(14 - 3);
        let utime: f64 = fields.next().context("no utime")?.parse()?;
        let stime: f64 = fields.next().context("no stime")?.parse()?;
        Ok((utime + stime) / CLK_TCK)
    }

    /// Resident memory now, KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        self.status_kib("VmRSS:")
    }

    /// Peak resident memory, KiB.
    pub fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, field: &str) -> anyhow::Result<u64> {
        status_kib(self.pid(), field)
    }

    /// Open file descriptors (sockets included).
    pub fn open_files(&self) -> usize {
        open_files(self.pid())
    }

    /// Stops it with SIGTERM (the gateway drains), then SIGKILL after 10 s.
    pub fn stop(mut self) {
        let _ = Command::new("kill").arg(self.pid().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `/proc/<pid>/status` field in KiB, e.g. `VmRSS:`.
pub fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with(field)).context("no such field")?;
    Ok(line.split_whitespace().nth(1).context("no value")?.parse()?)
}

/// Open file descriptors of `pid` (sockets included).
pub fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// What one agent-sim run measured (its `report.json`).
#[derive(Debug, Clone, Default)]
pub struct SimResult {
    /// Records in batches acked OK.
    pub records_acked: u64,
    /// Wall time of the run, seconds.
    pub duration_s: f64,
    /// Batch send → ACK OK, ms.
    pub ack_p50_ms: f64,
    /// Batch send → ACK OK, ms.
    pub ack_p99_ms: f64,
    /// ACK RETRY received.
    pub retries: u64,
    /// Errors by name, as agent-sim counted them.
    pub errors: String,
    /// Completed connects.
    pub connects: u64,
    /// `Some(ok)` when the run verified the store.
    pub verify: Option<(bool, u64, u64)>,
}

impl SimResult {
    /// Records acked per second of the run.
    pub fn records_per_s(&self) -> f64 {
        self.records_acked as f64 / self.duration_s.max(1e-9)
    }
}

/// Runs agent-sim with `args` (plus `--quiet --out`), waits for it and reads its report.
pub fn agent_sim(program: &Path, args: &[String], out: &Path) -> anyhow::Result<SimResult> {
    let status = Command::new(program)
        .arg("run")
        .args(args)
        .arg("--quiet")
        .arg("--out")
        .arg(out)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("cannot start {}", program.display()))?;
    let report = out.join("report.json");
    let text = std::fs::read_to_string(&report)
        .with_context(|| format!("agent-sim ({status}) wrote no {}", report.display()))?;
    let v: Value = serde_json::from_str(&text)?;
    let f = |p: &str| v.pointer(p).and_then(Value::as_f64).unwrap_or(0.0);
    let u = |p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let verify = v.get("verify").filter(|v| !v.is_null()).map(|v| {
        (
            v["ok"].as_bool().unwrap_or(false),
            v["found_records"].as_u64().unwrap_or(0),
            v["expected_records"].as_u64().unwrap_or(0),
        )
    });
    Ok(SimResult {
        records_acked: u("/records_acked"),
        duration_s: f("/duration_s"),
        ack_p50_ms: f("/ack_latency/p50_ms"),
        ack_p99_ms: f("/ack_latency/p99_ms"),
        retries: u("/acks/retry"),
        errors: v["errors"].to_string(),
        connects: u("/connects"),
        verify,
    })
}

/// `dir/name`, created empty.
pub fn fresh_dir(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    if path.exists() {
        std::fs::remove_dir_all(&path)?;
    }
    std::fs::create_dir_all(&path)?;
    Ok(path)
}
