//! The metric table against the docs and the alert rules; a scrape tidied.

use std::collections::BTreeSet;

use super::*;
use awp_protocol::{AckStatus, ErrorCode, FrameType};

/// (name, label names) of each metric in a doc's metrics table, whose
/// rows start with the name(s) in backquotes and then the labels, e.g.
/// ``| `awp_acks_total` | `status` | ... |``.
fn documented(doc: &str) -> BTreeSet<(String, Vec<String>)> {
    let names = |cell: &str| -> Vec<String> {
        cell.split(',')
            .map(|n| n.trim().trim_matches('`').to_owned())
            .filter(|n| !n.is_empty())
            .collect()
    };
    doc.lines()
        .filter(|l| l.starts_with("| `awp_") || l.starts_with("| `process_"))
        .flat_map(|l| {
            let cells: Vec<&str> = l.split('|').collect();
            // The labels cell: backquoted names, then any explanation in parentheses.
            let labels: Vec<String> = cells[2].split('`').skip(1).step_by(2).map(str::to_owned).collect();
            names(cells[1]).into_iter().map(move |n| (n, labels.clone()))
        })
        .collect()
}

fn exported() -> BTreeSet<(String, Vec<String>)> {
    METRICS
        .iter()
        .map(|m| (m.name.to_owned(), m.labels.iter().map(|l| (*l).to_owned()).collect()))
        .collect()
}

#[test]
fn a_scrape_is_in_name_order_without_removed_tenants() {
    let text = "# HELP b_total b\n# TYPE b_total counter\nb_total{tenant=\"gone\"} 1\nb_total{tenant=\"kept\"} 2\n\n\
                # HELP a_seconds a\n# TYPE a_seconds histogram\na_seconds_bucket{le=\"1\"} 1\na_seconds_sum 1\na_seconds_count 1\n\n\
                # TYPE c gauge\nc{certificate=\"client_ca:gone\"} 5\n\n\
                # TYPE d_total counter\nd_total{reason=\"x\",tenant=\"\"} 0\n";
    let tenants = std::collections::HashSet::from(["kept".to_owned()]);
    let tidied = tidy(text, &tenants);
    assert_eq!(
        tidied,
        "# HELP a_seconds a\n# TYPE a_seconds histogram\na_seconds_bucket{le=\"1\"} 1\na_seconds_sum 1\na_seconds_count 1\n\n\
         # HELP b_total b\n# TYPE b_total counter\nb_total{tenant=\"kept\"} 2\n\n\
         # TYPE d_total counter\nd_total{reason=\"x\",tenant=\"\"} 0\n\n"
    );
}

#[test]
fn the_architecture_doc_lists_every_metric_and_no_other() {
    let doc = documented(include_str!("../../../docs/architecture.md"));
    let code = exported();
    let missing: Vec<_> = code.difference(&doc).collect();
    let extra: Vec<_> = doc.difference(&code).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/architecture.md's metrics table and telemetry::METRICS differ:\n not documented: {missing:?}\n not exported: {extra:?}"
    );
}

#[test]
fn the_alert_rules_name_only_real_metrics() {
    let rules = include_str!("../../../deploy/alerts.yml");
    let names: BTreeSet<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("awp_"))
        .collect();
    assert!(names.len() >= 5, "{names:?}");
    for name in names {
        assert!(
            METRICS.iter().any(|m| m.name == name),
            "deploy/alerts.yml: {name} is not a metric"
        );
    }
}

#[test]
fn the_dynamodb_doc_names_only_real_metrics() {
    let doc = documented(include_str!("../../../docs/dynamodb.md"));
    let code = exported();
    assert!(!doc.is_empty());
    assert!(
        doc.is_subset(&code),
        "not exported: {:?}",
        doc.difference(&code).collect::<Vec<_>>()
    );
}

#[test]
fn names_are_unique_and_follow_the_conventions() {
    let mut seen = BTreeSet::new();
    for m in METRICS {
        assert!(seen.insert(m.name), "{} twice", m.name);
        assert!(
            m.name.starts_with("awp_") || m.name.starts_with("process_"),
            "{}",
            m.name
        );
        if m.kind == Kind::Counter {
            assert!(m.name.ends_with("_total"), "{}", m.name);
        } else {
            assert!(!m.name.ends_with("_total"), "{}", m.name);
        }
        // Units last: a byte or a second named in the middle is a mistake.
        for unit in ["bytes", "seconds"] {
            let middle = format!("_{unit}_");
            assert!(
                !m.name.contains(&middle) || m.name.ends_with(&format!("{middle}total")),
                "{}",
                m.name
            );
        }
    }
}

#[test]
fn recorded_metrics_render() {
    let handle = install();
    let g = global();
    g.frame_received(FrameType::Batch, 100);
    g.ack_sent(AckStatus::Ok);
    g.error_sent(ErrorCode::Internal);
    TenantMetrics::new("telemetry-test").write_done(3, Duration::from_millis(2), true);
    tenant_sink("telemetry-test", "null");
    let text = handle.render();
    for needle in [
        "awp_frames_received_total{type=\"BATCH\"}",
        "awp_acks_total{status=\"ok\"}",
        "awp_errors_total{code=\"INTERNAL\"}",
        "awp_items_written_total{tenant=\"telemetry-test\"}",
        "awp_tenant_sink{tenant=\"telemetry-test\",kind=\"null\"} 1",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}
