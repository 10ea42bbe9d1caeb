//! A whole run: templates, TLS, agents ramped up, the live view, the
//! per-second timeline, reconnect storms, and the report at the end.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use awp_protocol::sample::{self, Mix};
use awp_protocol::{Limits, Platform, PreparedBatch};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::agent::{self, AgentPlan, AgentResult, RunContext};
use crate::report::{self, Report, TimelinePoint};
use crate::scenario::Scenario;
use crate::stats::Stats;

/// The pre-encoded batch contents of a scenario (the same every run).
pub fn templates(s: &Scenario) -> anyhow::Result<Vec<PreparedBatch>> {
    let mix: Mix = s.kinds.into();
    (0..s.templates)
        .map(|t| {
            let batch = sample::batch(1, s.records_per_batch, t as u64 + 1, &mix);
            PreparedBatch::new(&batch, &Limits::DEFAULT)
                .context("records_per_batch: a batch this large does not fit a frame")
        })
        .collect()
}

/// The platform of agent `n`, by the scenario's weights.
pub fn platform(s: &Scenario, n: usize) -> Platform {
    let total: u32 = s.platforms.iter().sum();
    let mut r = (n as u32).wrapping_mul(2_654_435_761) % total.max(1);
    for (weight, p) in s
        .platforms
        .iter()
        .zip([Platform::Android, Platform::Windows, Platform::MacOs, Platform::Linux])
    {
        if r < *weight {
            return p;
        }
        r -= weight;
    }
    Platform::Linux
}

/// A fresh run id: six hex digits, drawn at random.
pub fn new_run_id() -> String {
    format!("{:06x}", fastrand::u32(..0x100_0000))
}

/// The device of agent `n`: `{prefix}{run_id}-{n}`, or the client
/// certificate's common name (the one agent that has it).
fn device(s: &Scenario, n: usize, certificate_device: Option<&str>) -> String {
    match certificate_device {
        Some(cn) => cn.to_owned(),
        None => format!("{}{}-{n}", s.device_prefix, s.run_id),
    }
}

/// The agents of a scenario.
pub fn plans(s: &Scenario) -> anyhow::Result<Vec<AgentPlan>> {
    let certificate_device = match s.tls.as_ref().and_then(|t| t.client_cert.as_ref()) {
        Some(cert) => Some(crate::tls::certificate_device(cert)?),
        None => None,
    };
    Ok((0..s.agents)
        .map(|n| AgentPlan {
            index: n,
            device: device(s, n, certificate_device.as_deref()),
            platform: platform(s, n),
            gateway: s.gateway[n % s.gateway.len()],
            source: s.source_address(n),
        })
        .collect())
}

fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Runs the scenario; returns the report and what each agent did, in agent
/// order (a run id is drawn if the scenario has none: the report names it).
pub async fn run(mut s: Scenario, progress: bool) -> anyhow::Result<(Report, Vec<AgentResult>)> {
    if s.run_id.is_empty() {
        s.run_id = new_run_id();
    }
    s.validate()?;
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let started_at_ms = since_epoch.as_millis() as u64;
    let first_seq = if s.first_seq > 0 {
        s.first_seq
    } else {
        (since_epoch.as_micros() as u64).max(1)
    };
    if let Some(limit) = open_files_limit()
        && (s.agents as u64) + 64 > limit
    {
        anyhow::bail!(
            "agents: {} connections need more open files than this process may have ({limit}); split the agents over several agent-sim processes",
            s.agents
        );
    }
    let tls = match &s.tls {
        Some(t) => Some(crate::tls::connector(t)?),
        None => None,
    };
    let stats = Arc::new(Stats::default());
    let started = Instant::now();
    let ramp = if s.ramp_per_s > 0.0 {
        Duration::from_secs_f64(s.agents as f64 / s.ramp_per_s)
    } else {
        Duration::ZERO
    };
    let stop_sending = started + ramp + Duration::from_secs_f64(s.duration_s);
    let (storm_tx, storms) = watch::channel(0u64);
    let ctx = Arc::new(RunContext {
        templates: templates(&s)?,
        tls,
        stats: stats.clone(),
        stop_sending,
        give_up: stop_sending + Duration::from_secs_f64(s.drain_grace_s),
        storms,
        scenario: s.clone(),
        first_seq,
    });

    let bar = if progress && std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(
            Some((ramp + Duration::from_secs_f64(s.duration_s)).as_secs()),
            ProgressDrawTarget::stderr_with_hz(4),
        );
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len}s {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };

    // The timeline: one point a second, also driving the live view and storms.
    let (stop_sampler, mut sampler_stopped) = tokio::sync::oneshot::channel::<()>();
    let sampler = {
        let stats = stats.clone();
        let bar = bar.clone();
        let storms_at = s.storms_at_s.clone();
        tokio::spawn(async move {
            let mut timeline = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let (mut records, mut acks, mut errors) = (0u64, 0u64, 0u64);
            let mut errors_before = std::collections::BTreeMap::new();
            let mut storms_done = 0;
            let mut last_t = 0.0;
            loop {
                // The last point covers the part of a second the run ended in.
                let last = tokio::select! {
                    _ = tick.tick() => false,
                    _ = &mut sampler_stopped => true,
                };
                let t = started.elapsed().as_secs_f64();
                // Rates per second of the time this point covers.
                let span = (t - last_t).max(1e-3);
                last_t = t;
                let r = Stats::get(&stats.records_acked);
                let a = Stats::get(&stats.acks_ok) + Stats::get(&stats.acks_retry) + Stats::get(&stats.acks_rejected);
                let e = Stats::get(&stats.error_count);
                let connected = stats.connected.load(Ordering::Relaxed).max(0) as u64;
                let errors_now = stats.errors();
                let errors_by_code = errors_now
                    .iter()
                    .filter_map(|(code, n)| {
                        let new = n - errors_before.get(code).copied().unwrap_or(0);
                        (new > 0).then(|| (code.clone(), new))
                    })
                    .collect();
                errors_before = errors_now;
                let second = stats.take_interval_ack_histogram();
                let quantile_ms = |q: f64| (!second.is_empty()).then(|| second.value_at_quantile(q) as f64 / 1000.0);
                timeline.push(TimelinePoint {
                    t_s: t,
                    records_per_s: (r - records) as f64 / span,
                    acks_per_s: (a - acks) as f64 / span,
                    connected_agents: connected,
                    errors: e - errors,
                    errors_by_code,
                    ack_p50_ms: quantile_ms(0.5),
                    ack_p99_ms: quantile_ms(0.99),
                });
                bar.set_position(t as u64);
                bar.set_message(format!(
                    "{connected} connected | {:.0} records/s | acks ok {} retry {} | errors {e}",
                    (r - records) as f64 / span,
                    Stats::get(&stats.acks_ok),
                    Stats::get(&stats.acks_retry),
                ));
                (records, acks, errors) = (r, a, e);
                if last {
                    break timeline;
                }
                while storms_done < storms_at.len() && t >= storms_at[storms_done] {
                    storms_done += 1;
                    let _ = storm_tx.send(storms_done as u64);
                }
            }
        })
    };

    let mut agents = JoinSet::new();
    let plans = plans(&s)?;
    let plans_devices = match (plans.first(), plans.last()) {
        (Some(first), Some(last)) if plans.len() > 1 => format!("{} … {}", first.device, last.device),
        (Some(only), _) => only.device.clone(),
        _ => String::new(),
    };
    let gap = if s.ramp_per_s > 0.0 {
        Duration::from_secs_f64(1.0 / s.ramp_per_s)
    } else {
        Duration::ZERO
    };
    for (i, plan) in plans.into_iter().enumerate() {
        if !gap.is_zero() {
            tokio::time::sleep_until(tokio::time::Instant::from_std(started + gap.mul_f64(i as f64))).await;
        }
        agents.spawn(agent::run(plan, ctx.clone()));
    }
    let mut results = Vec::with_capacity(s.agents);
    while let Some(r) = agents.join_next().await {
        results.push(r.context("an agent task failed")?);
    }
    // In agent order, not the order they finished: runs compare agent by agent.
    results.sort_by_key(|r| r.plan.index);
    let _ = stop_sampler.send(());
    let timeline = sampler.await.unwrap_or_default();
    bar.finish_and_clear();
    let wall = started.elapsed().as_secs_f64();

    let ack = stats.ack_histogram();
    let mut agents_stopped = std::collections::BTreeMap::new();
    for r in &results {
        if let Some(code) = &r.stopped_by {
            *agents_stopped.entry(code.clone()).or_default() += 1;
        }
    }
    let mut report = Report {
        scenario: s.name.clone(),
        run_id: s.run_id.clone(),
        started_at: report::rfc3339_utc(started_at_ms),
        started_at_unix_ms: started_at_ms,
        first_seq,
        settings: settings(&s, &plans_devices),
        batches_offered: Stats::get(&stats.batches_offered),
        batches_unacked_at_end: results.iter().map(|r| r.unacked.len() as u64 + r.never_sent).sum(),
        agents_never_welcomed: results.iter().filter(|r| !r.welcomed).count() as u64,
        verify_error: None,
        agents_stopped,
        target: s.gateway.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
        tls: s.tls.is_some(),
        mode: if s.batches_per_s > 0.0 {
            "open-loop"
        } else {
            "closed-loop"
        }
        .into(),
        agents: s.agents,
        duration_s: wall,
        batches_sent: Stats::get(&stats.batches_sent),
        resends: Stats::get(&stats.resends),
        records_acked: Stats::get(&stats.records_acked),
        bytes_sent: Stats::get(&stats.bytes_sent),
        acks: [
            ("ok".to_owned(), Stats::get(&stats.acks_ok)),
            ("retry".to_owned(), Stats::get(&stats.acks_retry)),
            ("rejected".to_owned(), Stats::get(&stats.acks_rejected)),
        ]
        .into_iter()
        .collect(),
        errors: stats.errors(),
        connects: Stats::get(&stats.connects),
        connect_latency: report::LatencySummary::from_histogram(&stats.connect_histogram()),
        ack_latency: report::LatencySummary::from_histogram(&ack),
        ack_latency_percentiles: report::percentile_points(&ack),
        timeline,
        simulator_cpu: report::cpu_usage(wall),
        verify: None,
        problems: Vec::new(),
    };
    report.judge();
    Ok((report, results))
}

/// The scenario's settings for the report (its secret left out).
fn settings(s: &Scenario, devices: &str) -> report::Settings {
    let k = s.kinds;
    report::Settings {
        gateway: s.gateway.iter().map(ToString::to_string).collect(),
        tenant: s.tenant.clone(),
        agents: s.agents,
        devices: devices.to_owned(),
        records_per_batch: s.records_per_batch,
        batches_per_s: s.batches_per_s,
        window: s.window,
        compression: s.compression.clone(),
        ramp_per_s: s.ramp_per_s,
        duration_s: s.duration_s,
        churn_per_s: s.churn_per_s,
        storms_at_s: s.storms_at_s.clone(),
        source_addresses: s.source_addresses,
        platforms: s.platforms,
        kinds: [k.location, k.app_usage, k.net_usage, k.message, k.event],
        tls: match &s.tls {
            None => "none",
            Some(t) if t.client_cert.is_some() => "mutual (client certificate)",
            Some(_) => "server (token auth)",
        }
        .into(),
        agent_version: agent::AGENT_VERSION.into(),
        protocol_versions: "AWP/1".into(),
    }
}
