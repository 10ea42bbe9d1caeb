//! The simulator's final report: the numbers of a run, and three renderings of
//! them — JSON for machines, a compact text summary for the terminal, and one
//! self-contained HTML page with two inline SVG plots (no scripts, no external
//! resources).

mod html;
mod proc;
mod svg;
mod text;

#[cfg(test)]
mod report_test;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde::Serialize;

pub use proc::cpu_usage;
use svg::fmt_tick;

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
pub(super) fn us_to_ms(us: u64) -> f64 {
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
pub(super) const PERCENTILES: [f64; 30] = [
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

/// `n / duration_s`, zero when the duration is not positive.
pub(super) fn per_s(n: u64, duration_s: f64) -> f64 {
    if duration_s > 0.0 { n as f64 / duration_s } else { 0.0 }
}

/// Bytes in decimal units ("12.3 MB").
pub(super) fn human_bytes(b: f64) -> String {
    let (mut v, mut unit) = (b, 0);
    while v >= 1000.0 && unit < 4 {
        (v, unit) = (v / 1000.0, unit + 1);
    }
    let (prec, name) = (usize::from(unit > 0), ["B", "kB", "MB", "GB", "TB"][unit]);
    format!("{v:.prec$} {name}")
}

/// "k1 v1  k2 v2", or "none" for an empty map.
pub(super) fn counts_line(m: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v}")).collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join("  ")
    }
}

/// One-line verify verdict with the counts.
pub(super) fn verify_line(v: &VerifyReport) -> String {
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
pub(super) fn discrepancies(v: &VerifyReport) -> impl Iterator<Item = (&'static str, &Discrepancy)> {
    let tag = |t: &'static str| move |d| (t, d);
    (v.missing.iter().map(tag("missing")))
        .chain(v.stale.iter().map(tag("stale")))
        .chain(v.mismatched.iter().map(tag("mismatched")))
        .chain(v.extra.iter().map(tag("extra")))
}

/// The text report lists at most this many discrepancies.
pub(super) const MAX_TEXT_DISCREPANCIES: usize = 10;
/// The HTML page lists at most this many discrepancies.
pub(super) const MAX_HTML_DISCREPANCIES: usize = 1000;
/// Header of the latency tables (first column: what was measured).
pub(super) const LATENCY_HEAD: [&str; 8] = ["", "count", "mean", "p50", "p90", "p99", "p99.9", "max"];

impl LatencySummary {
    /// The values under `LATENCY_HEAD[1..]`, formatted.
    pub(super) fn cells(&self) -> Vec<String> {
        let (mean, p50, p90, p99) = (self.mean_ms, self.p50_ms, self.p90_ms, self.p99_ms);
        let mut cells = vec![self.count.to_string()];
        cells.extend([mean, p50, p90, p99, self.p999_ms, self.max_ms].map(|v| format!("{v:.3}")));
        cells
    }
}

/// `n` written without a trailing ".0" when whole.
pub(super) fn number(n: f64) -> String {
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
    pub(super) fn title(&self) -> String {
        match self.scenario.as_str() {
            "" => format!("agent-sim run {}", self.run_id),
            name => format!("agent-sim run {} ({name})", self.run_id),
        }
    }

    /// The settings as rows of (name, value).
    pub(super) fn settings_rows(&self) -> Vec<(&'static str, String)> {
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
    pub(super) fn key_numbers(&self) -> Vec<(&'static str, String)> {
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
    pub(super) fn setup_line(&self) -> String {
        let (target, mode, agents, secs) = (&self.target, &self.mode, self.agents, self.duration_s);
        let tls = if self.tls { "tls" } else { "plain tcp" };
        format!("{target} ({tls}) · {mode} · {agents} agents · {secs:.1} s")
    }

    /// "OK", or "FAILED: " and the problems.
    pub(super) fn verdict(&self) -> String {
        if self.problems.is_empty() {
            "OK".into()
        } else {
            format!("FAILED: {}", self.problems.join("; "))
        }
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
pub(super) fn esc(s: &str) -> String {
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
