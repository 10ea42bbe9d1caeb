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

/// After sending stops, how long agents may take to get their last acks.
const DRAIN_GRACE: Duration = Duration::from_secs(30);

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

/// The agents of a scenario.
pub fn plans(s: &Scenario) -> Vec<AgentPlan> {
    (0..s.agents)
        .map(|n| AgentPlan {
            index: n,
            device: format!("{}{n}", s.device_prefix),
            platform: platform(s, n),
            gateway: s.gateway[n % s.gateway.len()],
            source: s.source_address(n),
        })
        .collect()
}

fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Runs the scenario; returns the report and what each agent did.
pub async fn run(s: Scenario, progress: bool) -> anyhow::Result<(Report, Vec<AgentResult>)> {
    s.validate()?;
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
        give_up: stop_sending + DRAIN_GRACE,
        storms,
        scenario: s.clone(),
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
            let mut storms_done = 0;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = &mut sampler_stopped => break timeline,
                }
                let t = started.elapsed().as_secs_f64();
                let r = Stats::get(&stats.records_acked);
                let a = Stats::get(&stats.acks_ok) + Stats::get(&stats.acks_retry) + Stats::get(&stats.acks_rejected);
                let e = Stats::get(&stats.error_count);
                let connected = stats.connected.load(Ordering::Relaxed).max(0) as u64;
                timeline.push(TimelinePoint {
                    t_s: t,
                    records_per_s: (r - records) as f64,
                    acks_per_s: (a - acks) as f64,
                    connected_agents: connected,
                    errors: e - errors,
                });
                bar.set_position(t as u64);
                bar.set_message(format!(
                    "{connected} connected | {:.0} records/s | acks ok {} retry {} | errors {e}",
                    (r - records) as f64,
                    Stats::get(&stats.acks_ok),
                    Stats::get(&stats.acks_retry),
                ));
                (records, acks, errors) = (r, a, e);
                while storms_done < storms_at.len() && t >= storms_at[storms_done] {
                    storms_done += 1;
                    let _ = storm_tx.send(storms_done as u64);
                }
            }
        })
    };

    let mut agents = JoinSet::new();
    let plans = plans(&s);
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
    let _ = stop_sampler.send(());
    let timeline = sampler.await.unwrap_or_default();
    bar.finish_and_clear();
    let wall = started.elapsed().as_secs_f64();

    let ack = stats.ack_histogram();
    let report = Report {
        scenario: s.name.clone(),
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
    };
    Ok((report, results))
}
