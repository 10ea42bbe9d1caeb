//! The report's renderings and numbers.

use super::proc::*;
use super::svg::*;
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
