//! Every metric the gateway exports, in one place: each name is a constant
//! of [`METRICS`] (the table `docs/architecture.md` must match, checked by a
//! test), and each is recorded through a method here, never by a name
//! string elsewhere.
//!
//! Handles are made once: the process-wide ones on first use
//! ([`global`]), a tenant's when its writer starts ([`TenantMetrics`],
//! [`DynamoMetrics`]), so recording on the per-batch path allocates no
//! label strings and looks nothing up. The Prometheus recorder is installed
//! before the first handle is made ([`install`]), and a thread runs its
//! upkeep every few seconds, so histogram samples are folded into buckets
//! whether or not anybody scrapes `/metrics`.

#[cfg(feature = "dynamodb")]
mod dynamodb;
mod global;
pub(crate) mod logs;
pub(crate) mod process;
mod table;
mod tenant;

#[cfg(test)]
mod telemetry_test;

#[cfg(feature = "dynamodb")]
pub use dynamodb::{DynamoErrorKind, DynamoMetrics};
pub use global::Global;
pub use table::{Kind, METRICS};
pub use tenant::{TenantMetrics, tenant_degraded, tenant_sink};

use std::sync::OnceLock;
use std::time::Duration;

use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// How often the recorder's upkeep runs (drains histogram samples).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the process-wide Prometheus recorder (once) and starts its
/// upkeep; returns the handle that renders `/metrics`. If another recorder
/// is already installed (a test harness), a standalone one is returned.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let seconds = &[
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ];
            // Up to past pipeline.max_items' default (20,000) and its
            // likely raises: a write's items land in a bucket, not +Inf.
            let items = &[
                1.0, 10.0, 100.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 20000.0, 50000.0, 100000.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), seconds)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_items".into()), items));
            let handle = match builder.map(|b| b.install_recorder()) {
                Ok(Ok(handle)) => handle,
                _ => PrometheusBuilder::new().build_recorder().handle(),
            };
            // The process_* family is rendered apart (process.rs); the rest
            // through the recorder.
            for m in METRICS.iter().filter(|m| !m.name.starts_with("process_")) {
                let unit = if m.name.ends_with("_seconds") {
                    Some(Unit::Seconds)
                } else if m.name.ends_with("_bytes") {
                    Some(Unit::Bytes)
                } else {
                    None
                };
                use Kind::{Counter as C, Gauge as G, Histogram as H};
                match (m.kind, unit) {
                    (C, _) => metrics::describe_counter!(m.name, m.help),
                    (G, Some(u)) => metrics::describe_gauge!(m.name, u, m.help),
                    (G, None) => metrics::describe_gauge!(m.name, m.help),
                    (H, Some(u)) => metrics::describe_histogram!(m.name, u, m.help),
                    (H, None) => metrics::describe_histogram!(m.name, m.help),
                }
            }
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start the metrics upkeep thread; histograms grow until scraped");
            }
            handle
        })
        .clone()
}

/// The text of a scrape, tidied: families in name order (a stable order,
/// whatever the recorder's maps hold), and the series of tenants no longer
/// configured (a reload removed them) left out: those labelled `tenant` with
/// one not in `tenants`, and the client CA expiry of one.
pub fn tidy(text: &str, tenants: &std::collections::HashSet<String>) -> String {
    let keep = |line: &str| {
        let label = |name: &str| {
            line.split_once(&format!("{name}=\""))
                .and_then(|(_, rest)| rest.split('"').next())
        };
        let removed = |t: &str| !t.is_empty() && !tenants.contains(t);
        !(label("tenant").is_some_and(removed)
            || label("certificate")
                .and_then(|c| c.strip_prefix("client_ca:"))
                .is_some_and(removed))
    };
    // Blocks of a family: its HELP and TYPE lines, then its samples.
    let mut families: Vec<(String, Vec<&str>)> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let name = match line.strip_prefix("# HELP ").or_else(|| line.strip_prefix("# TYPE ")) {
            Some(rest) => rest.split_whitespace().next().unwrap_or(""),
            None => line.split(['{', ' ']).next().unwrap_or(""),
        };
        // A histogram's samples are name_bucket, name_sum, name_count.
        let family = families
            .last()
            .filter(|(f, _)| {
                name == f
                    || (!line.starts_with('#')
                        && ["_bucket", "_sum", "_count"]
                            .iter()
                            .any(|suffix| name.strip_suffix(suffix) == Some(f)))
            })
            .is_some();
        if !family {
            families.push((name.to_owned(), Vec::new()));
        }
        if line.starts_with('#') || keep(line) {
            if let Some((_, lines)) = families.last_mut() {
                lines.push(line);
            }
        }
    }
    families.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::with_capacity(text.len());
    for (_, lines) in families {
        // A family whose every series went is left out whole.
        if lines.iter().all(|l| l.starts_with('#')) {
            continue;
        }
        for line in lines {
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

/// The process-wide metrics (the recorder is installed first).
pub fn global() -> &'static Global {
    static GLOBAL: OnceLock<Global> = OnceLock::new();
    GLOBAL.get_or_init(|| {
        install();
        Global::new()
    })
}
