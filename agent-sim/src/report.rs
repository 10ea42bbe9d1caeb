//! The simulator's final report: the numbers of a run, and three renderings of
//! them — JSON for machines, a compact text summary for the terminal, and one
//! self-contained HTML page with two inline SVG plots (no scripts, no external
//! resources).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde::Serialize;

/// Everything a run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Name of the scenario (may be empty).
    pub scenario: String,
    /// The run's id: part of every device id it used (`sim-{run_id}-N`).
    pub run_id: String,
    /// When the run started, RFC 3339 (UTC).
    pub started_at: String,
    /// When the run started, unix ms.
    pub started_at_unix_ms: u64,
    /// Every agent's first batch `seq`.
    pub first_seq: u64,
    /// Gateway address(es), comma separated.
    pub target: String,
    /// Whether the agents spoke TLS.
    pub tls: bool,
    /// "closed-loop" or "open-loop".
    pub mode: String,
    /// Number of simulated agents (devices).
    pub agents: usize,
    /// What the run was asked to do.
    pub settings: Settings,
    /// Measured wall time of the run, seconds.
    pub duration_s: f64,
    /// Batches the agents made to send: in open loop, what the rate
    /// offered; compare with `acks.ok`, what was delivered.
    pub batches_offered: u64,
    /// BATCH frames written, resends included.
    pub batches_sent: u64,
    /// BATCH frames written again (after RETRY, GOAWAY or a lost connection).
    pub resends: u64,
    /// Batches still not acked OK when the run ended (agents gave up on
    /// them after the drain grace, or stopped), and in open loop the
    /// batches the rate scheduled that an agent without a connection never
    /// made.
    pub batches_unacked_at_end: u64,
    /// Records in batches acked OK.
    pub records_acked: u64,
    /// Bytes written to the gateway(s).
    pub bytes_sent: u64,
    /// ACKs by status: "ok", "retry", "rejected".
    pub acks: BTreeMap<String, u64>,
    /// ERROR codes by name (e.g. "SERVER_BUSY"), plus "connect_failed", "disconnected", "goaway".
    pub errors: BTreeMap<String, u64>,
    /// Agents that stopped before the end, by the ERROR that stopped them
    /// (AUTH_FAILED, UNSUPPORTED_VERSION: retrying cannot help).
    pub agents_stopped: BTreeMap<String, u64>,
    /// Agents that never got a WELCOME (no listener, refused, a TLS
    /// failure): they sent nothing.
    pub agents_never_welcomed: u64,
    /// A verify that could not run (the store unreadable), if it failed.
    pub verify_error: Option<String>,
    /// Completed connects (WELCOME received).
    pub connects: u64,
    /// TCP connect → WELCOME.
    pub connect_latency: LatencySummary,
    /// Batch send → ACK OK.
    pub ack_latency: LatencySummary,
    /// ACK latency by percentile, for the distribution plot.
    pub ack_latency_percentiles: Vec<PercentilePoint>,
    /// One point per second of the run.
    pub timeline: Vec<TimelinePoint>,
    /// CPU and memory the simulator itself used.
    pub simulator_cpu: CpuUsage,
    /// Result of reading every acked record back from the store, if asked for.
    pub verify: Option<VerifyReport>,
    /// Why the run failed ([`Report::judge`]); empty: it did not.
    pub problems: Vec<String>,
}

/// The settings of a run (the scenario, without its secret).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Settings {
    /// Gateway addresses.
    pub gateway: Vec<String>,
    /// Tenant id.
    pub tenant: String,
    /// Agents (devices), one connection each.
    pub agents: usize,
    /// The device ids: `{device_prefix}{run_id}-0 … -{agents-1}`, or a
    /// client certificate's common name.
    pub devices: String,
    /// Records per batch.
    pub records_per_batch: usize,
    /// Batches per second per agent; 0: closed loop.
    pub batches_per_s: f64,
    /// Unacked batches per agent (also capped by WELCOME).
    pub window: usize,
    /// none, lz4 or zstd.
    pub compression: String,
    /// Agents connected per second (0: all at once).
    pub ramp_per_s: f64,
    /// Seconds of sending asked for.
    pub duration_s: f64,
    /// Chance per agent and second of reconnecting.
    pub churn_per_s: f64,
    /// Reconnect storms, seconds from the start.
    pub storms_at_s: Vec<f64>,
    /// Loopback source addresses.
    pub source_addresses: usize,
    /// Platform weights: android, windows, macos, linux.
    pub platforms: [u32; 4],
    /// Record kind weights: location, app_usage, net_usage, message, event.
    pub kinds: [u32; 5],
    /// "none", "server" (TLS, token auth) or "mutual" (client certificate).
    pub tls: String,
    /// The agent_version agents send in HELLO.
    pub agent_version: String,
    /// AWP protocol versions agents offer.
    pub protocol_versions: String,
}

/// What an earlier run left is told from this run's by these.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunMark {
    /// When the run started, unix ms (the gateway's clock is this host's:
    /// agent-sim runs on loopback).
    pub started_at_unix_ms: u64,
    /// The run's first batch `seq`.
    pub first_seq: u64,
}

/// Summary of one latency histogram, milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    /// Mean latency, ms.
    pub mean_ms: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
    /// Largest sample, ms.
    pub max_ms: f64,
}

/// One point of a latency distribution.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PercentilePoint {
    /// Percentile, 0–100.
    pub percentile: f64,
    /// Latency at that percentile, ms.
    pub latency_ms: f64,
}

/// One second of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TimelinePoint {
    /// Seconds since the start of the run.
    pub t_s: f64,
    /// Records acked OK during this second.
    pub records_per_s: f64,
    /// ACKs (any status) received during this second.
    pub acks_per_s: f64,
    /// Agents connected at the sample.
    pub connected_agents: u64,
    /// Errors during this second.
    pub errors: u64,
    /// Errors during this second by code (only codes that occurred).
    pub errors_by_code: BTreeMap<String, u64>,
    /// Median latency of the ACK OKs of this second, ms (none: no ACK OK).
    pub ack_p50_ms: Option<f64>,
    /// 99th percentile latency of the ACK OKs of this second, ms.
    pub ack_p99_ms: Option<f64>,
}

/// Resources the simulator process used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CpuUsage {
    /// User CPU time, seconds.
    pub user_s: f64,
    /// System CPU time, seconds.
    pub system_s: f64,
    /// (user + system) / wall time × 100; 200 means two cores busy.
    pub percent_of_one_core: f64,
    /// Peak resident set size (VmHWM), MiB.
    pub max_rss_mb: f64,
}

/// Result of checking every acked record against the store.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Store that was read ("sqlite …" or "dynamodb …").
    pub store: String,
    /// Devices checked.
    pub devices: usize,
    /// Records the gateway acked OK.
    pub expected_records: u64,
    /// Of those, records found in the store.
    pub found_records: u64,
    /// Acked but not stored.
    pub missing: Vec<Discrepancy>,
    /// Stored but not acked (allowed: delivery is at-least-once).
    pub extra: Vec<Discrepancy>,
    /// Stored with other attributes than the gateway's mapping gives.
    pub mismatched: Vec<Discrepancy>,
    /// Records stored once in each layout (a batch resent across a layout
    /// change): counted once, allowed.
    pub copies_across_layouts: u64,
    /// Records stored twice by the same layout (two packed items holding
    /// one record): stored twice, a failure.
    pub copies_same_layout: u64,
    /// When the run started (unix ms): a record found must have been
    /// received no earlier (give or take a second of clock).
    pub run_started_at_unix_ms: u64,
    /// Acked records found only as stored before the run started: an
    /// earlier run's, not proof of this one (a failure; a replay into the
    /// same store writes its rows again, so they are fresh).
    pub stale: Vec<Discrepancy>,
    /// Rows of this run's devices from other runs (a `seq` below this
    /// run's first): not this run's, reported apart from `extra`.
    pub other_runs_records: u64,
    /// Seconds reading the store back took.
    pub seconds: f64,
    /// No record missing, none stale, none mismatched, none stored twice in
    /// one layout.
    pub ok: bool,
}

/// One batch whose records disagree with the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Discrepancy {
    /// Device id.
    pub device: String,
    /// Batch sequence number.
    pub seq: u64,
    /// Records of the batch concerned.
    pub records: u64,
    /// What is wrong.
    pub detail: String,
}

/// Microseconds (the histograms' unit) to milliseconds.
fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl LatencySummary {
    /// Summarises a histogram of MICROsecond samples, in ms; empty → all zeros.
    pub fn from_histogram(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: us_to_ms(h.value_at_quantile(0.50)),
            p90_ms: us_to_ms(h.value_at_quantile(0.90)),
            p99_ms: us_to_ms(h.value_at_quantile(0.99)),
            p999_ms: us_to_ms(h.value_at_quantile(0.999)),
            max_ms: us_to_ms(h.max()),
        }
    }
}

/// Percentiles sampled for the distribution plot.
const PERCENTILES: [f64; 30] = [
    0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 75.0, 80.0, 85.0, 90.0, 92.5, 95.0, 96.0, 97.0, 98.0, 99.0, 99.25,
    99.5, 99.75, 99.9, 99.925, 99.95, 99.975, 99.99, 99.995, 99.999, 99.9999, 100.0,
];

/// Latency (ms) at 0 … 100 percentiles of a MICROsecond histogram; empty → no points.
pub fn percentile_points(h: &Histogram<u64>) -> Vec<PercentilePoint> {
    if h.is_empty() {
        return Vec::new();
    }
    PERCENTILES
        .iter()
        .map(|&p| {
            let us = if p >= 100.0 {
                h.max()
            } else {
                h.value_at_quantile(p / 100.0)
            };
            PercentilePoint {
                percentile: p,
                latency_ms: us_to_ms(us),
            }
        })
        .collect()
}

/// Clock ticks per second of /proc/self/stat times (`getconf CLK_TCK`, 100 on Linux).
const CLK_TCK: f64 = 100.0;

/// CPU time and peak RSS of this process so far; `wall_s` is the run's wall
/// time. Reads /proc; anything missing or unparsable yields zeros.
pub fn cpu_usage(wall_s: f64) -> CpuUsage {
    let (user_s, system_s) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| parse_stat_times(&s))
        .unwrap_or((0.0, 0.0));
    let max_rss_mb = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse_vm_hwm_kb(&s))
        .map_or(0.0, |kb| kb as f64 / 1024.0);
    let percent_of_one_core = if wall_s > 0.0 && wall_s.is_finite() {
        (user_s + system_s) / wall_s * 100.0
    } else {
        0.0
    };
    CpuUsage {
        user_s,
        system_s,
        percent_of_one_core,
        max_rss_mb,
    }
}

/// utime and stime (fields 14 and 15) of a /proc/<pid>/stat line, in seconds.
/// The command name (field 2) may hold spaces and parentheses, so the fields
/// are counted from after the last ')', where field 3 starts.
fn parse_stat_times(stat: &str) -> Option<(f64, f64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime as f64 / CLK_TCK, stime as f64 / CLK_TCK))
}

/// The VmHWM line of /proc/<pid>/status, kB.
fn parse_vm_hwm_kb(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line["VmHWM:".len()..].split_whitespace().next()?.parse().ok()
}

/// `n / duration_s`, zero when the duration is not positive.
fn per_s(n: u64, duration_s: f64) -> f64 {
    if duration_s > 0.0 { n as f64 / duration_s } else { 0.0 }
}

/// Bytes in decimal units ("12.3 MB").
fn human_bytes(b: f64) -> String {
    let (mut v, mut unit) = (b, 0);
    while v >= 1000.0 && unit < 4 {
        (v, unit) = (v / 1000.0, unit + 1);
    }
    let (prec, name) = (usize::from(unit > 0), ["B", "kB", "MB", "GB", "TB"][unit]);
    format!("{v:.prec$} {name}")
}

/// "k1 v1  k2 v2", or "none" for an empty map.
fn counts_line(m: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v}")).collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join("  ")
    }
}

/// One-line verify verdict with the counts.
fn verify_line(v: &VerifyReport) -> String {
    let verdict = if v.ok { "OK" } else { "FAILED" };
    let (found, want, devices, store) = (v.found_records, v.expected_records, v.devices, &v.store);
    let (missing, mismatched, extra) = (v.missing.len(), v.mismatched.len(), v.extra.len());
    let mut s = format!("{verdict}: {found} of {want} acked records found ({devices} devices, {store}, read in ");
    s += &format!("{:.1} s); {missing} missing, {mismatched} mismatched", v.seconds);
    let stale: u64 = v.stale.iter().map(|d| d.records).sum();
    if stale > 0 {
        s += &format!(", {stale} stored before this run started (not proof of this run)");
    }
    s += &format!(", {extra} extra (allowed: at-least-once)");
    if v.other_runs_records > 0 {
        s += &format!(
            "; {} rows of these devices from other runs, ignored",
            v.other_runs_records
        );
    }
    if v.copies_same_layout > 0 {
        s += &format!("; {} records stored twice", v.copies_same_layout);
    }
    if v.copies_across_layouts > 0 {
        s += &format!(
            "; {} records held by both layouts, counted once",
            v.copies_across_layouts
        );
    }
    s
}

/// Discrepancies in reading order: missing, stale, mismatched, then extra.
fn discrepancies(v: &VerifyReport) -> impl Iterator<Item = (&'static str, &Discrepancy)> {
    let tag = |t: &'static str| move |d| (t, d);
    (v.missing.iter().map(tag("missing")))
        .chain(v.stale.iter().map(tag("stale")))
        .chain(v.mismatched.iter().map(tag("mismatched")))
        .chain(v.extra.iter().map(tag("extra")))
}

/// The text report lists at most this many discrepancies.
const MAX_TEXT_DISCREPANCIES: usize = 10;
/// The HTML page lists at most this many discrepancies.
const MAX_HTML_DISCREPANCIES: usize = 1000;
/// Header of the latency tables (first column: what was measured).
const LATENCY_HEAD: [&str; 8] = ["", "count", "mean", "p50", "p90", "p99", "p99.9", "max"];

impl LatencySummary {
    /// The values under `LATENCY_HEAD[1..]`, formatted.
    fn cells(&self) -> Vec<String> {
        let (mean, p50, p90, p99) = (self.mean_ms, self.p50_ms, self.p90_ms, self.p99_ms);
        let mut cells = vec![self.count.to_string()];
        cells.extend([mean, p50, p90, p99, self.p999_ms, self.max_ms].map(|v| format!("{v:.3}")));
        cells
    }
}

/// `n` written without a trailing ".0" when whole.
fn number(n: f64) -> String {
    fmt_tick(n)
}

/// `unix_ms` as RFC 3339 in UTC, to the millisecond.
pub fn rfc3339_utc(unix_ms: u64) -> String {
    let (secs, ms) = (unix_ms / 1000, unix_ms % 1000);
    let (days, day_s) = ((secs / 86_400) as i64, secs % 86_400);
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (day_s / 3600, day_s / 60 % 60, day_s % 60);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
}

impl Report {
    /// What tells this run's rows from earlier runs' (for verify).
    pub fn mark(&self) -> RunMark {
        RunMark {
            started_at_unix_ms: self.started_at_unix_ms,
            first_seq: self.first_seq,
        }
    }

    /// Pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()))
    }

    /// Sets `problems`, the reasons the run failed: nothing acked, agents
    /// that stopped (every one, or some), batches unacked at the end, a
    /// failed verify. A run with problems exits non-zero.
    pub fn judge(&mut self) {
        let mut problems = Vec::new();
        if self.records_acked == 0 {
            let (sent, acks, errors) = (self.batches_sent, counts_line(&self.acks), counts_line(&self.errors));
            problems.push(format!(
                "nothing was acked ({sent} batches sent; acks: {acks}; errors: {errors})"
            ));
        }
        let stopped: u64 = self.agents_stopped.values().sum();
        if stopped > 0 {
            let who = if stopped >= self.agents as u64 {
                "every agent".to_owned()
            } else {
                format!("{stopped} of {} agents", self.agents)
            };
            problems.push(format!(
                "{who} stopped at an error retrying cannot fix: {}",
                counts_line(&self.agents_stopped)
            ));
        }
        if self.agents_never_welcomed > 0 {
            let who = if self.agents_never_welcomed >= self.agents as u64 {
                "no agent".to_owned()
            } else {
                format!("{} of {} agents", self.agents_never_welcomed, self.agents)
            };
            problems.push(format!(
                "{who} ever got a WELCOME (errors: {})",
                counts_line(&self.errors)
            ));
        }
        let rejected = self.acks.get("rejected").copied().unwrap_or(0);
        if rejected > 0 {
            problems.push(format!(
                "{rejected} batches were REJECTED: agent-sim's batches are valid, so the gateway refused good records for good"
            ));
        }
        if self.batches_unacked_at_end > 0 {
            problems.push(format!(
                "{} batches still unacknowledged at the end (of {} offered)",
                self.batches_unacked_at_end, self.batches_offered
            ));
        }
        if let Some(v) = &self.verify
            && !v.ok
        {
            problems.push(format!("verify {}", verify_line(v)));
        }
        if let Some(e) = &self.verify_error {
            problems.push(format!("verify could not read the store: {e}"));
        }
        self.problems = problems;
    }

    /// The run's title: its id, and its scenario's name if it has one.
    fn title(&self) -> String {
        match self.scenario.as_str() {
            "" => format!("agent-sim run {}", self.run_id),
            name => format!("agent-sim run {} ({name})", self.run_id),
        }
    }

    /// The settings as rows of (name, value).
    fn settings_rows(&self) -> Vec<(&'static str, String)> {
        let s = &self.settings;
        let rate = if s.batches_per_s > 0.0 {
            format!("{} batches/s per agent (open loop)", number(s.batches_per_s))
        } else {
            "as fast as the window allows (closed loop)".to_owned()
        };
        let ramp = if s.ramp_per_s > 0.0 {
            format!("{} agents/s", number(s.ramp_per_s))
        } else {
            "all at once".to_owned()
        };
        let storms: Vec<String> = s.storms_at_s.iter().map(|t| format!("{} s", number(*t))).collect();
        let [android, windows, macos, linux] = s.platforms;
        let [location, app, net, message, event] = s.kinds;
        vec![
            (
                "started",
                format!("{} ({} unix ms)", self.started_at, self.started_at_unix_ms),
            ),
            ("run id", self.run_id.clone()),
            ("gateway", s.gateway.join(", ")),
            ("tenant", s.tenant.clone()),
            ("agents", s.agents.to_string()),
            ("devices", s.devices.clone()),
            ("first seq", self.first_seq.to_string()),
            ("records per batch", s.records_per_batch.to_string()),
            ("rate", rate),
            ("window", s.window.to_string()),
            ("compression", s.compression.clone()),
            ("ramp", ramp),
            ("duration", format!("{} s of sending", number(s.duration_s))),
            ("churn", format!("{} per agent and second", number(s.churn_per_s))),
            (
                "storms",
                if storms.is_empty() {
                    "none".into()
                } else {
                    storms.join(", ")
                },
            ),
            ("source addresses", s.source_addresses.to_string()),
            (
                "platforms",
                format!("android {android}, windows {windows}, macos {macos}, linux {linux}"),
            ),
            (
                "record kinds",
                format!("location {location}, app_usage {app}, net_usage {net}, message {message}, event {event}"),
            ),
            ("tls", s.tls.clone()),
            (
                "versions",
                format!("{}; protocol {}", s.agent_version, s.protocol_versions),
            ),
        ]
    }

    /// Headline numbers, shared by the text and HTML renderings.
    fn key_numbers(&self) -> Vec<(&'static str, String)> {
        let c = &self.simulator_cpu;
        let (user, system, pct, rss) = (c.user_s, c.system_s, c.percent_of_one_core, c.max_rss_mb);
        let rps = per_s(self.records_acked, self.duration_s);
        let bps = human_bytes(per_s(self.bytes_sent, self.duration_s));
        let acked = self.acks.get("ok").copied().unwrap_or(0);
        vec![
            ("records acked / s", format!("{rps:.0} records/s")),
            ("bytes sent / s", format!("{bps}/s")),
            ("records acked", self.records_acked.to_string()),
            (
                "batches offered / acked OK",
                format!("{} / {acked}", self.batches_offered),
            ),
            ("batches sent (incl. resends)", self.batches_sent.to_string()),
            ("resends", self.resends.to_string()),
            ("unacked at the end", self.batches_unacked_at_end.to_string()),
            ("bytes sent", human_bytes(self.bytes_sent as f64)),
            ("connects", self.connects.to_string()),
            (
                "simulator cpu",
                format!("{user:.2} s user + {system:.2} s system ({pct:.1}% of one core)"),
            ),
            ("simulator max rss", format!("{rss:.1} MB")),
        ]
    }

    /// Header line: target, tls, mode, agents, duration.
    fn setup_line(&self) -> String {
        let (target, mode, agents, secs) = (&self.target, &self.mode, self.agents, self.duration_s);
        let tls = if self.tls { "tls" } else { "plain tcp" };
        format!("{target} ({tls}) · {mode} · {agents} agents · {secs:.1} s")
    }

    /// "OK", or "FAILED: " and the problems.
    fn verdict(&self) -> String {
        if self.problems.is_empty() {
            "OK".into()
        } else {
            format!("FAILED: {}", self.problems.join("; "))
        }
    }

    /// Compact human summary for the terminal.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}, started {}\n  {}\n",
            self.title(),
            self.started_at,
            self.setup_line()
        );
        let st = &self.settings;
        let rate = if st.batches_per_s > 0.0 {
            format!("{} batches/s per agent", number(st.batches_per_s))
        } else {
            "closed loop".into()
        };
        s += &format!(
            "  settings: {} records/batch, {rate}, window {}, {}, ramp {}/s, devices {}, {}\n",
            st.records_per_batch,
            st.window,
            st.compression,
            number(st.ramp_per_s),
            st.devices,
            st.agent_version
        );
        for (k, v) in self.key_numbers() {
            s += &format!("  {k:<29} {v}\n");
        }
        let (acks, errors) = (counts_line(&self.acks), counts_line(&self.errors));
        s += &format!("  acks by status                {acks}\n  errors by code                {errors}\n");
        if !self.agents_stopped.is_empty() {
            s += &format!(
                "  agents stopped                {}\n",
                counts_line(&self.agents_stopped)
            );
        }
        let head: String = LATENCY_HEAD[1..].iter().map(|c| format!("{c:>12}")).collect();
        s += &format!("  latency (ms)  {head}\n");
        for (name, l) in [("connect", &self.connect_latency), ("ack", &self.ack_latency)] {
            let cells: String = l.cells().iter().map(|c| format!("{c:>12}")).collect();
            s += &format!("    {name:<10}  {cells}\n");
        }
        match &self.verify {
            None => s += "  verify: not run\n",
            Some(v) => {
                s += &format!("  verify: {}\n", verify_line(v));
                for (kind, d) in discrepancies(v).take(MAX_TEXT_DISCREPANCIES) {
                    let (device, seq, n, detail) = (&d.device, d.seq, d.records, &d.detail);
                    s += &format!("    {kind:<10} device {device} seq {seq} ({n} records): {detail}\n");
                }
                let all = v.missing.len() + v.stale.len() + v.mismatched.len() + v.extra.len();
                let more = all.saturating_sub(MAX_TEXT_DISCREPANCIES);
                if more > 0 {
                    s += &format!("    … and {more} more (see report.json)\n");
                }
            }
        }
        s + &format!("  run: {}\n", self.verdict())
    }

    /// One self-contained HTML page: verdict, settings, key numbers, plots
    /// over time (throughput, latency, errors by code), the latency
    /// distribution, acks/errors tables and the verify section.
    pub fn to_html(&self) -> String {
        let (title, setup) = (esc(&self.title()), esc(&self.setup_line()));
        let mut h = String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        h += &format!("<title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>{title}</h1>\n");
        h += &format!("<p>{setup}</p>\n");
        if self.problems.is_empty() {
            h += "<p class=\"ok\">Run OK.</p>\n";
        } else {
            h += "<p class=\"bad\">Run FAILED:</p>\n<ul class=\"bad\">\n";
            h += &self
                .problems
                .iter()
                .map(|p| format!("<li>{}</li>\n", esc(p)))
                .collect::<String>();
            h += "</ul>\n";
        }
        let rows = |pairs: Vec<(&str, String)>| -> Vec<Vec<String>> {
            pairs.into_iter().map(|(k, v)| vec![k.into(), v]).collect()
        };
        h += &format!(
            "<h2>Settings</h2>\n{}",
            table(&["", "value"], &rows(self.settings_rows()))
        );
        h += &format!(
            "<h2>Key numbers</h2>\n{}",
            table(&["", "value"], &rows(self.key_numbers()))
        );
        let lat = [
            ("connect → WELCOME", &self.connect_latency),
            ("batch → ACK OK", &self.ack_latency),
        ];
        let lat: Vec<Vec<String>> = lat
            .iter()
            .map(|(n, l)| [vec![n.to_string()], l.cells()].concat())
            .collect();
        h += &format!("<h2>Latency (ms)</h2>\n{}", table(&LATENCY_HEAD, &lat));
        let end = self.duration_s.max(self.timeline.last().map_or(0.0, |p| p.t_s));
        h += &format!(
            "<h2>Throughput over time</h2>\n{}\n",
            throughput_svg(&self.timeline, end)
        );
        h += &format!(
            "<h2>ACK latency over time</h2>\n{}\n",
            latency_over_time_svg(&self.timeline, end)
        );
        h += "<h2>Errors over time</h2>\n";
        h += &if self.errors.is_empty() {
            "<p>No errors.</p>\n".to_owned()
        } else {
            format!("{}\n", errors_svg(&self.timeline, end))
        };
        h += &format!(
            "<h2>ACK latency distribution</h2>\n{}\n",
            latency_svg(&self.ack_latency_percentiles, self.ack_latency.count)
        );
        let acks: Vec<Vec<String>> = self.acks.iter().map(|(k, v)| vec![k.clone(), v.to_string()]).collect();
        h += &format!(
            "<h2>ACKs</h2>\n{}",
            or_sentence(table(&["status", "count"], &acks), "No ACKs.")
        );
        let errors: Vec<Vec<String>> = self
            .errors
            .iter()
            .map(|(k, v)| vec![k.clone(), v.to_string()])
            .collect();
        h += &format!(
            "<h2>Errors</h2>\n{}",
            or_sentence(table(&["code", "count"], &errors), "No errors.")
        );
        if !self.agents_stopped.is_empty() {
            let stopped: Vec<Vec<String>> = self
                .agents_stopped
                .iter()
                .map(|(k, v)| vec![k.clone(), v.to_string()])
                .collect();
            h += &format!("<h2>Agents stopped</h2>\n{}", table(&["by", "agents"], &stopped));
        }
        h += "<h2>Verify</h2>\n";
        match &self.verify {
            None => h += "<p>Not run (<code>--verify-sqlite</code> or <code>--verify-dynamodb</code>).</p>\n",
            Some(v) => {
                let class = if v.ok { "ok" } else { "bad" };
                h += &format!("<p class=\"{class}\">{}</p>\n", esc(&verify_line(v)));
                let rows: Vec<Vec<String>> = discrepancies(v)
                    .take(MAX_HTML_DISCREPANCIES)
                    .map(|(kind, d)| {
                        let (seq, n) = (d.seq.to_string(), d.records.to_string());
                        vec![kind.into(), d.device.clone(), seq, n, d.detail.clone()]
                    })
                    .collect();
                h += &table(&["kind", "device", "seq", "records", "detail"], &rows);
            }
        }
        h + "</body>\n</html>\n"
    }
}

/// Style sheet of the HTML page.
const CSS: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:960px}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 10px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.ok{color:#1a7f37}.bad{color:#c62828}
svg{border:1px solid #ddd}svg text{font-size:12px;fill:#333}";

/// A table row of `tag` ("td" or "th") cells, each escaped.
fn tr<S: AsRef<str>>(tag: &str, cells: &[S]) -> String {
    let cells: String = cells
        .iter()
        .map(|c| format!("<{tag}>{}</{tag}>", esc(c.as_ref())))
        .collect();
    format!("<tr>{cells}</tr>\n")
}

/// A table with header `head` and `rows`; nothing when there are no rows.
fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let body: String = rows.iter().map(|r| tr("td", r)).collect();
    format!("<table>\n{}{body}</table>\n", tr("th", head))
}

/// `html`, or a paragraph saying `sentence` when it is empty.
fn or_sentence(html: String, sentence: &str) -> String {
    if html.is_empty() {
        format!("<p>{}</p>\n", esc(sentence))
    } else {
        html
    }
}

/// Writes `report.json`, `report.html` and `report.txt` into `dir`, creating it.
pub fn write_all(report: &Report, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (json, html, text) = (report.to_json(), report.to_html(), report.to_text());
    for (name, body) in [("report.json", json), ("report.html", html), ("report.txt", text)] {
        let path = dir.join(name);
        std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o += "&amp;",
            '<' => o += "&lt;",
            '>' => o += "&gt;",
            '"' => o += "&quot;",
            '\'' => o += "&#39;",
            _ => o.push(ch),
        }
    }
    o
}

/// SVG width and height, px.
const W: f64 = 860.0;
const H: f64 = 320.0;
/// Plot area: left, right, top, bottom edges, px.
const X0: f64 = 70.0;
const X1: f64 = W - 70.0;
const Y0: f64 = 20.0;
const Y1: f64 = H - 50.0;

/// A round step (1, 2 or 5 × 10^k) giving about five ticks up to `max`, and the axis top.
fn nice_axis(max: f64) -> (f64, f64) {
    let raw = if max.is_finite() && max > 0.0 { max / 5.0 } else { 0.2 };
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    (step, (raw * 5.0 / step).ceil() * step)
}

/// Tick values 0, step, … top of a [`nice_axis`].
fn ticks((step, top): (f64, f64)) -> impl Iterator<Item = f64> {
    (0..=(top / step).round() as usize).map(move |i| i as f64 * step)
}

/// Tick label: up to three decimals, trailing zeros dropped.
fn fmt_tick(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Plot-area fractions (0–1, clamped; NaN → 0) to px: x from the left edge, y from the bottom.
fn px(fx: f64, fy: f64) -> (f64, f64) {
    let f = |v: f64| if v.is_finite() { v.clamp(0.0, 1.0) } else { 0.0 };
    (X0 + f(fx) * (X1 - X0), Y1 - f(fy) * (Y1 - Y0))
}

/// An SVG plot being drawn; positions are given as plot-area fractions.
struct Plot(String);

impl Plot {
    /// Opens the SVG and draws the frame and the axis labels.
    fn new(label: &str, x_label: &str, y_label: &str) -> Plot {
        let (label, x_label, y_label) = (esc(label), esc(x_label), esc(y_label));
        let (pw, ph, xm, ym, yl) = (X1 - X0, Y1 - Y0, (X0 + X1) / 2.0, (Y0 + Y1) / 2.0, H - 10.0);
        let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" ");
        s += &format!("viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{label}\">\n");
        s += &format!("<rect x=\"{X0}\" y=\"{Y0}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#999\"/>\n");
        s += &format!("<text x=\"{xm}\" y=\"{yl}\" text-anchor=\"middle\">{x_label}</text>\n");
        s += &format!("<text transform=\"translate(16 {ym}) rotate(-90)\" text-anchor=\"middle\">{y_label}</text>\n");
        Plot(s)
    }

    /// A labelled x tick with a vertical grid line.
    fn x_tick(&mut self, fx: f64, label: &str) {
        let ((x, _), (ty, label)) = (px(fx, 0.0), (Y1 + 18.0, esc(label)));
        self.0 += &format!("<line x1=\"{x:.1}\" y1=\"{Y0}\" x2=\"{x:.1}\" y2=\"{Y1}\" stroke=\"#eee\"/>");
        self.0 += &format!("<text x=\"{x:.1}\" y=\"{ty}\" text-anchor=\"middle\">{label}</text>\n");
    }

    /// A labelled y tick: on the left with a grid line, or on the right in the given colour.
    fn y_tick(&mut self, fy: f64, label: &str, right: Option<&str>) {
        let ((_, y), label) = (px(0.0, fy), esc(label));
        let (xl, xr, ly) = (X0 - 6.0, X1 + 6.0, y + 4.0);
        self.0 += &match right {
            None => {
                format!("<line x1=\"{X0}\" y1=\"{y:.1}\" x2=\"{X1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>")
                    + &format!("<text x=\"{xl}\" y=\"{ly:.1}\" text-anchor=\"end\">{label}</text>\n")
            }
            Some(c) => {
                format!("<line x1=\"{X1}\" y1=\"{y:.1}\" x2=\"{xr}\" y2=\"{y:.1}\" stroke=\"{c}\"/>")
                    + &format!("<text x=\"{xr}\" y=\"{ly:.1}\" style=\"fill:{c}\">{label}</text>\n")
            }
        };
    }

    /// A polyline through the points; `style` holds extra SVG attributes.
    fn line(&mut self, points: impl Iterator<Item = (f64, f64)>, style: &str) {
        let pts: Vec<String> = points
            .map(|(fx, fy)| px(fx, fy))
            .map(|(x, y)| format!("{x:.1},{y:.1}"))
            .collect();
        self.0 += &format!("<polyline points=\"{}\" fill=\"none\" {style}/>\n", pts.join(" "));
    }

    /// A dot with a hover title.
    fn dot(&mut self, (fx, fy): (f64, f64), color: &str, title: &str) {
        let ((x, y), title) = (px(fx, fy), esc(title));
        self.0 +=
            &format!("<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{color}\"><title>{title}</title></circle>\n");
    }

    /// Closes the SVG.
    fn finish(self) -> String {
        self.0 + "</svg>"
    }
}

/// A plot that only says "no data".
fn empty_svg(label: &str) -> String {
    let mut p = Plot::new(label, "", "");
    let (x, y) = (W / 2.0, H / 2.0);
    p.0 += &format!("<text x=\"{x}\" y=\"{y}\" text-anchor=\"middle\">no data</text>\n");
    p.finish()
}

/// Colours of the plotted series (and of error codes, in turn).
const BLUE: &str = "#1f77b4";
const ORANGE: &str = "#e67e22";
const RED: &str = "#c62828";
const PALETTE: [&str; 6] = ["#c62828", "#6a1b9a", "#2e7d32", "#ef6c00", "#00838f", "#5d4037"];
/// Polyline styles: records/latency (solid blue), connected agents (dashed orange).
const BLUE_LINE: &str = "stroke=\"#1f77b4\" stroke-width=\"2\"";
const ORANGE_LINE: &str = "stroke=\"#e67e22\" stroke-width=\"1.5\" stroke-dasharray=\"6 3\"";

/// Draws the x axis of a plot over the run's time: 0 to `end` seconds (the
/// run's end, not past it), ticks at round steps.
fn time_axis(p: &mut Plot, end: f64) {
    let (step, _) = nice_axis(end);
    let mut t = 0.0;
    while t <= end * 1.000_001 {
        p.x_tick(t / end, &fmt_tick(t));
        t += step;
    }
}

/// The x fraction of second `t` on a [`time_axis`] ending at `end`.
fn at(t: f64, end: f64) -> f64 {
    if end > 0.0 { t / end } else { 0.0 }
}

/// A legend in the bottom margin: (colour, dashed, label) entries.
fn legend(p: &mut Plot, entries: &[(&str, bool, &str)]) {
    let (lx, ly) = (X0, H - 14.0);
    p.0 += &format!("<g transform=\"translate({lx} {ly})\">");
    let mut x = 0.0;
    for (color, dashed, label) in entries {
        let dash = if *dashed { " stroke-dasharray=\"6 3\"" } else { "" };
        let (x2, tx) = (x + 20.0, x + 25.0);
        p.0 += &format!("<line x1=\"{x}\" x2=\"{x2}\" stroke=\"{color}\" stroke-width=\"2\"{dash}/>");
        p.0 += &format!("<text x=\"{tx}\" y=\"4\">{}</text>", esc(label));
        x += 40.0 + 7.0 * label.chars().count() as f64;
    }
    p.0 += "</g>\n";
}

/// Records/s per second (left axis) and connected agents (right axis) over time; red dots mark
/// seconds with errors; the legend sits in the bottom margin, left of the x label.
fn throughput_svg(tl: &[TimelinePoint], end: f64) -> String {
    if tl.is_empty() || end <= 0.0 {
        return empty_svg("throughput over time");
    }
    let fin = |v: f64| if v.is_finite() { v } else { 0.0 };
    let r_axis = nice_axis(tl.iter().map(|p| fin(p.records_per_s)).fold(0.0, f64::max));
    let a_axis = nice_axis(tl.iter().map(|p| p.connected_agents as f64).fold(0.0, f64::max));
    let mut p = Plot::new("throughput over time", "time (s)", "records acked / s");
    let (xr, ym) = (W - 16.0, (Y0 + Y1) / 2.0);
    p.0 += &format!("<text transform=\"translate({xr} {ym}) rotate(90)\" text-anchor=\"middle\" ");
    p.0 += &format!("style=\"fill:{ORANGE}\">connected agents</text>\n");
    time_axis(&mut p, end);
    ticks(r_axis).for_each(|v| p.y_tick(v / r_axis.1, &fmt_tick(v), None));
    ticks(a_axis).for_each(|v| p.y_tick(v / a_axis.1, &fmt_tick(v), Some(ORANGE)));
    p.line(
        tl.iter().map(|q| (at(q.t_s, end), q.records_per_s / r_axis.1)),
        BLUE_LINE,
    );
    p.line(
        tl.iter()
            .map(|q| (at(q.t_s, end), q.connected_agents as f64 / a_axis.1)),
        ORANGE_LINE,
    );
    for q in tl.iter().filter(|q| q.errors > 0) {
        let (n, t) = (q.errors, fmt_tick(q.t_s));
        p.dot((at(q.t_s, end), 0.0), RED, &format!("{n} errors at {t} s"));
    }
    legend(
        &mut p,
        &[(BLUE, false, "records/s"), (ORANGE, true, "connected agents")],
    );
    p.finish()
}

/// The ACK OK latency of each second, p50 and p99 (ms), over time: to read
/// beside the throughput plot (a latency rise where throughput drops).
fn latency_over_time_svg(tl: &[TimelinePoint], end: f64) -> String {
    let max = tl
        .iter()
        .filter_map(|q| q.ack_p99_ms)
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    if max <= 0.0 || end <= 0.0 {
        return empty_svg("ack latency over time");
    }
    let axis = nice_axis(max);
    let mut p = Plot::new("ack latency over time", "time (s)", "ack latency (ms)");
    time_axis(&mut p, end);
    ticks(axis).for_each(|v| p.y_tick(v / axis.1, &fmt_tick(v), None));
    let series = |pick: fn(&TimelinePoint) -> Option<f64>| {
        tl.iter()
            .filter_map(move |q| pick(q).filter(|v| v.is_finite()).map(|v| (at(q.t_s, end), v / axis.1)))
    };
    p.line(series(|q| q.ack_p50_ms), BLUE_LINE);
    p.line(series(|q| q.ack_p99_ms), ORANGE_LINE);
    legend(&mut p, &[(BLUE, false, "p50"), (ORANGE, true, "p99")]);
    p.finish()
}

/// Errors of each second by code over time, one line per code (the six
/// most frequent; the rest summed as "other").
fn errors_svg(tl: &[TimelinePoint], end: f64) -> String {
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for q in tl {
        for (code, n) in &q.errors_by_code {
            *totals.entry(code).or_default() += n;
        }
    }
    if totals.is_empty() || end <= 0.0 {
        return empty_svg("errors over time");
    }
    let mut codes: Vec<(&str, u64)> = totals.into_iter().collect();
    codes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let shown: Vec<&str> = codes.iter().take(PALETTE.len() - 1).map(|c| c.0).collect();
    let other = codes.len() > shown.len();
    let count = |q: &TimelinePoint, code: Option<&str>| -> u64 {
        match code {
            Some(c) => q.errors_by_code.get(c).copied().unwrap_or(0),
            None => q
                .errors_by_code
                .iter()
                .filter(|(c, _)| !shown.contains(&c.as_str()))
                .map(|(_, n)| n)
                .sum(),
        }
    };
    let series: Vec<Option<&str>> = shown.iter().map(|c| Some(*c)).chain(other.then_some(None)).collect();
    let max = tl
        .iter()
        .flat_map(|q| series.iter().map(move |c| count(q, *c)))
        .max()
        .unwrap_or(0);
    let axis = nice_axis(max as f64);
    let mut p = Plot::new("errors over time", "time (s)", "errors / s");
    time_axis(&mut p, end);
    ticks(axis).for_each(|v| p.y_tick(v / axis.1, &fmt_tick(v), None));
    let mut entries = Vec::new();
    for (i, code) in series.iter().enumerate() {
        let color = PALETTE[i];
        let style = format!("stroke=\"{color}\" stroke-width=\"1.5\"");
        p.line(
            tl.iter().map(|q| (at(q.t_s, end), count(q, *code) as f64 / axis.1)),
            &style,
        );
        entries.push((color, false, code.unwrap_or("other")));
    }
    legend(&mut p, &entries);
    p.finish()
}

/// The percentile axis ends at the highest percentile `samples` can tell
/// apart from the maximum: log10(samples) nines, rounded down (1,000
/// samples: 99.9%; 20,000: 99.99%), between 1 and 6, so that high
/// percentiles are not squeezed together.
fn nines_axis(samples: u64) -> f64 {
    (samples.max(1) as f64).log10().floor().clamp(1.0, 6.0)
}

/// Position of percentile `p` (0–100) on the "number of nines" axis, capped at `top`.
fn nines(p: f64, top: f64) -> f64 {
    let q = 1.0 - (p / 100.0).clamp(0.0, 1.0);
    if q <= 0.0 {
        top
    } else {
        (1.0 / q).log10().clamp(0.0, top)
    }
}

/// Label of the tick `i` nines along: 0%, 90%, 99%, 99.9%, …
fn nines_label(i: usize) -> String {
    match i {
        0 => "0%".into(),
        1 => "90%".into(),
        _ => format!("99.{}%", "9".repeat(i - 2)).replace("99.%", "99%"),
    }
}

/// ACK latency (y, ms; log scale if max/min > 100) against percentile on
/// the log10(1/(1−p)) scale, up to what `samples` can tell ([`nines_axis`]);
/// the maximum is drawn at the axis' end.
fn latency_svg(points: &[PercentilePoint], samples: u64) -> String {
    let top = nines_axis(samples);
    let points: Vec<&PercentilePoint> = points
        .iter()
        .filter(|p| p.latency_ms.is_finite())
        // (Rounding puts 99.999 at 4.99999…: it is at 5 nines.)
        .filter(|p| p.percentile >= 100.0 || nines(p.percentile, f64::INFINITY) < top - 1e-6)
        .collect();
    let max = points.iter().map(|p| p.latency_ms).fold(0.0, f64::max);
    if max <= 0.0 {
        return empty_svg("ack latency distribution");
    }
    let min_pos = points
        .iter()
        .map(|p| p.latency_ms)
        .filter(|v| *v > 0.0)
        .fold(max, f64::min);
    let log = max / min_pos > 100.0;
    let y_label = if log { "latency (ms, log scale)" } else { "latency (ms)" };
    let mut p = Plot::new("ack latency distribution", "percentile (right end: max)", y_label);
    let (lo, hi) = (min_pos.log10().floor(), max.log10().ceil());
    let linear = nice_axis(max);
    let fy = |v: f64| {
        if log {
            (v.max(10f64.powf(lo)).log10() - lo) / (hi - lo)
        } else {
            v / linear.1
        }
    };
    let y_ticks: Vec<f64> = if log {
        (lo as i32..=hi as i32).map(|e| 10f64.powi(e)).collect()
    } else {
        ticks(linear).collect()
    };
    y_ticks.iter().for_each(|&v| p.y_tick(fy(v), &fmt_tick(v), None));
    for i in 0..=top as usize {
        p.x_tick(i as f64 / top, &nines_label(i));
    }
    let xy = |q: &PercentilePoint| (nines(q.percentile, top) / top, fy(q.latency_ms));
    p.line(points.iter().map(|q| xy(q)), BLUE_LINE);
    for q in &points {
        let (pct, ms) = (q.percentile, q.latency_ms);
        p.dot(xy(q), BLUE, &format!("p{pct}: {ms:.3} ms"));
    }
    p.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram() -> Histogram<u64> {
        Histogram::new_with_bounds(1, 60_000_000, 3).unwrap()
    }

    fn sample() -> Report {
        let (mut ack, mut conn) = (histogram(), histogram());
        // ACKs: a 0.2–4.2 ms body and a long tail up to ~2 s; connects: 1–4.7 ms.
        (1..=20_000u64).for_each(|i| {
            ack.record(200 + (i * 7919) % 4000 + u64::from(i % 500 == 0) * i * 100)
                .unwrap()
        });
        (1..=100u64).for_each(|i| conn.record(1000 + i * 37).unwrap());
        let point = |t: u64| TimelinePoint {
            t_s: t as f64,
            records_per_s: 50_000.0 + (t % 7) as f64 * 1000.0,
            acks_per_s: 500.0,
            connected_agents: (t * 10).min(100),
            errors: u64::from(t % 20 == 0),
            errors_by_code: if t % 20 == 0 {
                [("SERVER_BUSY".to_owned(), 1)].into_iter().collect()
            } else {
                BTreeMap::new()
            },
            ack_p50_ms: Some(2.0 + (t % 5) as f64),
            ack_p99_ms: Some(20.0 + (t % 3) as f64),
        };
        let d = |n: u64| Discrepancy {
            device: format!("dev-{n}"),
            seq: n,
            records: 100,
            detail: "acked, not stored".into(),
        };
        let counts = |kv: &[(&str, u64)]| kv.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let mut report = Report {
            scenario: "steady <script>alert(1)</script> & co".into(),
            run_id: "3fa2b1".into(),
            started_at: rfc3339_utc(1_796_659_200_123),
            started_at_unix_ms: 1_796_659_200_123,
            first_seq: 1_796_659_200_123,
            target: "127.0.0.1:7000".into(),
            tls: true,
            mode: "closed-loop".into(),
            agents: 100,
            settings: Settings {
                gateway: vec!["127.0.0.1:7000".into()],
                tenant: "dev".into(),
                agents: 100,
                devices: "sim-3fa2b1-0 … sim-3fa2b1-99".into(),
                records_per_batch: 100,
                window: 4,
                compression: "lz4".into(),
                duration_s: 60.0,
                source_addresses: 1,
                platforms: [40, 40, 10, 10],
                kinds: [30, 25, 15, 15, 15],
                tls: "server (token auth)".into(),
                agent_version: "agent-sim/0.1.0".into(),
                protocol_versions: "AWP/1".into(),
                ..Settings::default()
            },
            duration_s: 60.0,
            batches_offered: 30_000,
            batches_unacked_at_end: 0,
            agents_stopped: BTreeMap::new(),
            agents_never_welcomed: 0,
            verify_error: None,
            batches_sent: 30_100,
            resends: 100,
            records_acked: 3_000_000,
            bytes_sent: 600_000_000,
            acks: counts(&[("ok", 30_000), ("retry", 100), ("rejected", 0)]),
            errors: counts(&[("SERVER_BUSY", 3), ("disconnected", 2)]),
            connects: 105,
            connect_latency: LatencySummary::from_histogram(&conn),
            ack_latency: LatencySummary::from_histogram(&ack),
            ack_latency_percentiles: percentile_points(&ack),
            timeline: (1..=60).map(point).collect(),
            simulator_cpu: CpuUsage {
                user_s: 12.5,
                system_s: 3.25,
                percent_of_one_core: 26.25,
                max_rss_mb: 48.5,
            },
            verify: Some(VerifyReport {
                store: "sqlite /tmp/x".into(),
                devices: 100,
                expected_records: 3_000_000,
                found_records: 2_998_800,
                missing: (0..12).map(d).collect(),
                extra: vec![d(99)],
                mismatched: vec![],
                copies_across_layouts: 0,
                copies_same_layout: 0,
                run_started_at_unix_ms: 1_796_659_200_123,
                stale: vec![],
                other_runs_records: 0,
                seconds: 2.5,
                ok: false,
            }),
            problems: vec![],
        };
        report.judge();
        report
    }

    #[test]
    fn json_round_trips() {
        let v: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        assert_eq!(
            (v["records_acked"].as_u64(), v["acks"]["ok"].as_u64()),
            (Some(3_000_000), Some(30_000))
        );
        assert_eq!(
            (
                v["errors"]["SERVER_BUSY"].as_u64(),
                v["simulator_cpu"]["max_rss_mb"].as_f64()
            ),
            (Some(3), Some(48.5))
        );
        assert_eq!(v["timeline"].as_array().unwrap().len(), 60);
        assert_eq!(
            v["ack_latency_percentiles"].as_array().unwrap().len(),
            PERCENTILES.len()
        );
        assert!(v["ack_latency"]["p99_ms"].as_f64().unwrap() > 0.0);
        assert_eq!(v["verify"]["missing"].as_array().unwrap().len(), 12);
    }

    #[test]
    fn text_has_key_numbers() {
        let r = sample();
        let t = r.to_text();
        let p99 = format!("{:.3}", r.ack_latency.p99_ms);
        let needles = [
            "50000 records/s",
            "10.0 MB/s",
            "ok 30000",
            "retry 100",
            "SERVER_BUSY 3",
            "disconnected 2",
        ];
        for needle in needles
            .iter()
            .chain(&[p99.as_str(), "48.5 MB", "FAILED", "device dev-0 seq 0", "and 3 more"])
        {
            assert!(t.contains(needle), "missing {needle:?} in\n{t}");
        }
        assert!(
            t.contains("26.2% of one core") || t.contains("26.3% of one core"),
            "{t}"
        );
        assert_eq!(t.matches(" seq ").count(), MAX_TEXT_DISCREPANCIES);
    }

    #[test]
    fn html_is_one_self_contained_page() {
        let h = sample().to_html();
        assert!(h.starts_with("<!DOCTYPE html>") && h.trim_end().ends_with("</html>"));
        assert_eq!(
            (
                h.matches("<html").count(),
                h.matches("<svg ").count(),
                h.matches("</svg>").count()
            ),
            (1, 4, 4)
        );
        let stripped = h.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        assert!(!stripped.contains("http://") && !stripped.contains("https://"));
        assert!(!h.contains("<script"), "scenario name not escaped");
        assert!(h.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; co"));
        for needle in [
            ">0%<",
            ">90%<",
            ">99.99%<",
            "connected agents",
            "dev-11",
            "SERVER_BUSY",
            "log scale",
        ] {
            assert!(h.contains(needle), "missing {needle}");
        }
        assert!(!h.contains("NaN") && !h.contains("inf"));
    }

    #[test]
    fn empty_report_renders() {
        let (empty, dir) = (histogram(), tempfile::tempdir().unwrap());
        let r = Report {
            ack_latency: LatencySummary::from_histogram(&empty),
            ack_latency_percentiles: percentile_points(&empty),
            ..Report::default()
        };
        assert!(r.ack_latency == LatencySummary::default() && r.ack_latency_percentiles.is_empty());
        let h = r.to_html();
        // Throughput, latency over time and distribution: no data; no errors.
        assert_eq!((h.matches("<svg ").count(), h.matches("no data").count()), (3, 3));
        assert!(h.contains("No errors.") && !h.contains("<p>none</p>"), "{h}");
        assert!(!h.contains("NaN") && r.to_text().contains("not run"));
        serde_json::from_str::<serde_json::Value>(&r.to_json()).unwrap();
        write_all(&r, &dir.path().join("out")).unwrap();
        for f in ["report.json", "report.html", "report.txt"] {
            assert!(dir.path().join("out").join(f).is_file());
        }
    }

    #[test]
    fn summary_matches_known_values() {
        let mut h = histogram();
        (1..=1000u64).for_each(|ms| h.record(ms * 1000).unwrap());
        let s = LatencySummary::from_histogram(&h);
        let near = |got: f64, want: f64| (got - want).abs() <= want * 0.002;
        let pairs = [
            (s.mean_ms, 500.5),
            (s.p50_ms, 500.0),
            (s.p90_ms, 900.0),
            (s.p99_ms, 990.0),
            (s.p999_ms, 999.0),
        ];
        assert!(
            s.count == 1000 && pairs.iter().all(|&(got, want)| near(got, want)) && near(s.max_ms, 1000.0),
            "{s:?}"
        );
        let pts = percentile_points(&h);
        assert!(near(pts[0].latency_ms, 1.0) && near(pts.last().unwrap().latency_ms, 1000.0));
        assert!(pts.windows(2).all(|w| w[0].latency_ms <= w[1].latency_ms));
        assert_eq!(
            (nines(0.0, 4.0), nines(100.0, 4.0), nines(99.9999, 4.0)),
            (0.0, 4.0, 4.0)
        );
        assert!((nines(99.0, 4.0) - 2.0).abs() < 1e-9);
    }

    #[test]
    fn times_are_rfc3339_in_utc() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_utc(1_796_659_200_123), "2026-12-07T16:00:00.123Z");
        // A leap day.
        assert_eq!(rfc3339_utc(951_782_400_000 + 86_399_999), "2000-02-29T23:59:59.999Z");
    }

    /// The x axis of the plots over time ends where the run ended, not at
    /// the next round number past it.
    #[test]
    fn plots_over_time_end_at_the_run_end() {
        let mut r = sample();
        r.duration_s = 12.3;
        r.timeline.truncate(12);
        let h = r.to_html();
        let last_tick = h
            .split("text-anchor=\"middle\">")
            .filter_map(|t| t.split('<').next()?.parse::<f64>().ok())
            .fold(0.0, f64::max);
        assert_eq!(last_tick, 10.0, "round ticks up to the run's end");
        let x_tick = |label: &str| format!("y=\"{}\" text-anchor=\"middle\">{label}</text>", Y1 + 18.0);
        assert!(
            h.contains(&x_tick("10")) && !h.contains(&x_tick("15")),
            "no tick past the run's end"
        );
        // Three plots over time: throughput, latency, errors by code.
        assert!(h.contains("ACK latency over time") && h.contains("Errors over time"));
        assert!(h.contains(">p99<") && h.contains(">SERVER_BUSY<"), "legends");
    }

    /// The percentile axis goes as far as the samples tell: 20,000 samples
    /// reach 99.99% (and the max at the end), 100 samples stop at 99%.
    #[test]
    fn the_percentile_axis_fits_the_sample_count() {
        assert_eq!(
            (
                nines_axis(0),
                nines_axis(100),
                nines_axis(1_001),
                nines_axis(20_000),
                nines_axis(u64::MAX)
            ),
            (1.0, 2.0, 3.0, 4.0, 6.0)
        );
        let labels: Vec<String> = (0..=4).map(nines_label).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%"]);
        let r = sample();
        let svg = latency_svg(&r.ack_latency_percentiles, 100);
        assert!(svg.contains(">99%<") && !svg.contains(">99.9%<"), "{svg}");
        // Points past 99% would sit on top of each other: only the max is drawn there.
        assert!(!svg.contains("p99.9:") && svg.contains("p100:"), "{svg}");
        let svg = latency_svg(&r.ack_latency_percentiles, 20_000);
        assert!(svg.contains(">99.99%<") && !svg.contains(">99.999%<"), "{svg}");
        assert!(svg.contains("p99.975:") && !svg.contains("p99.99:") && svg.contains("p100:"));
    }

    #[test]
    fn a_run_fails_for_what_it_could_not_do() {
        let mut r = sample();
        r.verify = None;
        r.judge();
        assert!(
            r.problems.is_empty() && r.to_text().contains("run: OK"),
            "{:?}",
            r.problems
        );
        assert!(r.to_html().contains("Run OK."));
        r.records_acked = 0;
        r.agents_stopped = [("AUTH_FAILED".to_owned(), 100)].into_iter().collect();
        r.batches_unacked_at_end = 7;
        r.judge();
        let text = r.problems.join("\n");
        for needle in [
            "nothing was acked",
            "every agent stopped",
            "AUTH_FAILED 100",
            "7 batches still unacknowledged",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
        r.agents_stopped = [("AUTH_FAILED".to_owned(), 3)].into_iter().collect();
        r.judge();
        assert!(r.problems.iter().any(|p| p.starts_with("3 of 100 agents stopped")));
        assert!(r.to_text().contains("run: FAILED: nothing was acked"));
        assert!(r.to_html().contains("Run FAILED"));
    }

    #[test]
    fn the_settings_and_the_run_are_named() {
        let r = sample();
        let (h, t) = (r.to_html(), r.to_text());
        assert!(h.contains("<title>agent-sim run 3fa2b1 (steady") && !h.contains("agent-sim: agent-sim"));
        for needle in [
            "2026-12-07T16:00:00.123Z",
            "sim-3fa2b1-0 … sim-3fa2b1-99",
            "agent-sim/0.1.0",
            "lz4",
            "read in 2.5 s",
        ] {
            assert!(h.contains(&esc(needle)), "{needle} in the page");
            assert!(t.contains(needle), "{needle} in the text");
        }
        let mut unnamed = sample();
        unnamed.scenario.clear();
        assert!(unnamed.to_html().contains("<title>agent-sim run 3fa2b1</title>"));
    }

    #[test]
    fn cpu_usage_is_non_negative() {
        let c = cpu_usage(1.0);
        assert!(c.user_s >= 0.0 && c.system_s >= 0.0 && c.percent_of_one_core >= 0.0 && c.max_rss_mb >= 0.0);
        assert!(!cfg!(target_os = "linux") || c.max_rss_mb > 0.0);
        assert_eq!(cpu_usage(0.0).percent_of_one_core, 0.0);
        assert_eq!(
            parse_stat_times("1 (a) b) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0"),
            Some((2.5, 0.5))
        );
        assert_eq!(
            (parse_stat_times("garbage"), parse_vm_hwm_kb("VmHWM:\t   2048 kB\n")),
            (None, Some(2048))
        );
    }
}
