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

use std::sync::OnceLock;
use std::time::Duration;

use awp_protocol::{AckStatus, ErrorCode, FrameType};
use metrics::{Counter, Gauge, Histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// How often the recorder's upkeep runs (drains histogram samples).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// What a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution (Prometheus buckets).
    Histogram,
}

/// One exported metric: name, kind, labels, meaning.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// The Prometheus name.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// Label names.
    #[cfg_attr(not(test), expect(dead_code, reason = "the docs check reads them"))]
    pub labels: &'static [&'static str],
    /// What it counts.
    pub help: &'static str,
}

const fn metric(name: &'static str, kind: Kind, labels: &'static [&'static str], help: &'static str) -> Metric {
    Metric {
        name,
        kind,
        labels,
        help,
    }
}

use Kind::{Counter as C, Gauge as G, Histogram as H};

/// Every metric, in the order of the table in `docs/architecture.md`.
pub const METRICS: &[Metric] = &[
    metric(
        "awp_build_info",
        G,
        &["version"],
        "1, labelled with the gateway's version",
    ),
    metric(
        "process_cpu_seconds_total",
        C,
        &[],
        "CPU time the process used, user and system (read at each scrape)",
    ),
    metric(
        "process_resident_memory_bytes",
        G,
        &[],
        "resident memory (read at each scrape)",
    ),
    metric(
        "process_virtual_memory_bytes",
        G,
        &[],
        "virtual memory (read at each scrape)",
    ),
    metric(
        "process_open_fds",
        G,
        &[],
        "open file descriptors: sockets, databases, listeners (read at each scrape)",
    ),
    metric(
        "process_max_fds",
        G,
        &[],
        "the process's limit of open file descriptors (read at each scrape)",
    ),
    metric(
        "process_start_time_seconds",
        G,
        &[],
        "when the process started, unix seconds",
    ),
    metric("awp_connections", G, &[], "open connections"),
    metric("awp_connections_total", C, &["tls"], "accepted connections"),
    metric(
        "awp_connections_refused_total",
        C,
        &[],
        "authenticated connections refused at the server's or their tenant's connection limit",
    ),
    metric(
        "awp_connections_waiting",
        G,
        &[],
        "connections not yet authenticated (TLS handshake, waiting for HELLO)",
    ),
    metric(
        "awp_connections_evicted_total",
        C,
        &[],
        "unauthenticated connections closed to make room for newer ones",
    ),
    metric(
        "awp_sessions_replaced_total",
        C,
        &[],
        "sessions told to go away because their device connected again",
    ),
    metric(
        "awp_config_reloads_total",
        C,
        &["outcome"],
        "configuration reloads (SIGHUP, `POST /reload`): `ok`, or `refused` (the configuration in force stays)",
    ),
    metric(
        "awp_config_last_reload_successful",
        G,
        &[],
        "1 if the last configuration reload was applied (or none was tried), 0 if it was refused",
    ),
    metric(
        "awp_tls_certificate_expiry_timestamp_seconds",
        G,
        &["certificate"],
        "when the server certificate (`server`) or a tenant's client CA (`client_ca:TENANT`) expires, unix seconds",
    ),
    metric(
        "awp_quota_exceeded_total",
        C,
        &["tenant", "scope"],
        "batches answered ACK RETRY for going over a quota (scope: device, tenant)",
    ),
    metric(
        "awp_sessions_aged_total",
        C,
        &[],
        "sessions told to go away at max_connection_age",
    ),
    metric(
        "awp_sessions_credentials_expired_total",
        C,
        &[],
        "sessions told to go away when their token expired or their certificate's notAfter passed",
    ),
    metric(
        "awp_sessions_revoked_total",
        C,
        &[],
        "sessions told to go away because a reload revoked their credentials (secret, client CA, CRL)",
    ),
    metric(
        "awp_proxy_untrusted_total",
        C,
        &[],
        "connections closed unread because they came from outside server.proxy_protocol_trusted",
    ),
    metric(
        "awp_proxy_header_failures_total",
        C,
        &[],
        "connections closed for a missing or malformed PROXY protocol header",
    ),
    metric(
        "awp_tls_handshake_failures_total",
        C,
        &[],
        "failed or timed-out TLS handshakes",
    ),
    metric("awp_frames_received_total", C, &["type"], "frames received, by type"),
    metric("awp_frames_sent_total", C, &["type"], "frames sent, by type"),
    metric("awp_received_bytes_total", C, &[], "bytes of frames received"),
    metric("awp_sent_bytes_total", C, &[], "bytes sent"),
    metric("awp_records_received_total", C, &[], "records in accepted batches"),
    metric(
        "awp_acks_total",
        C,
        &["status"],
        "ACKs sent, by status (ok, retry, rejected)",
    ),
    metric("awp_errors_total", C, &["code"], "ERROR frames sent, by code"),
    metric(
        "awp_auth_failures_total",
        C,
        &["reason", "tenant"],
        "failed HELLO authentications, by reason (unknown_tenant, bad_token, expired_token, no_client_ca, no_certificate, certificate_rejected, certificate_for_another_device, tls_required) and tenant (a configured one; empty otherwise)",
    ),
    metric("awp_ack_latency_seconds", H, &["tenant"], "BATCH received to ACK sent"),
    metric(
        "awp_budget_bytes",
        G,
        &[],
        "the memory budget for batches held (configured)",
    ),
    metric(
        "awp_budget_used_bytes",
        G,
        &["tenant"],
        "budget held by a tenant's batches (read at each scrape)",
    ),
    metric(
        "awp_budget_waits_total",
        C,
        &["tenant"],
        "batches that waited for memory budget",
    ),
    metric(
        "awp_budget_timeouts_total",
        C,
        &["tenant"],
        "batches answered ACK RETRY after waiting too long for budget",
    ),
    metric(
        "awp_tenant_degraded",
        G,
        &["tenant"],
        "1 while the tenant's writer is down or its sink has failed every write too long (read at each scrape)",
    ),
    metric(
        "awp_tenant_sink",
        G,
        &["tenant", "kind"],
        "1 for the sink each tenant's records go to (sqlite, dynamodb, null)",
    ),
    metric(
        "awp_queue_depth",
        G,
        &["tenant"],
        "batches queued for the tenant's writer",
    ),
    metric(
        "awp_queue_expired_total",
        C,
        &["tenant"],
        "batches answered ACK RETRY after waiting too long in the queue",
    ),
    metric(
        "awp_batches_refused_total",
        C,
        &["tenant"],
        "batches answered ACK REJECTED because the store refused them",
    ),
    metric(
        "awp_batch_durable_seconds",
        H,
        &["tenant"],
        "batch queued to its sink write done",
    ),
    metric("awp_sink_write_seconds", H, &["tenant"], "duration of a sink write"),
    metric("awp_sink_write_items", H, &["tenant"], "items per sink write"),
    metric(
        "awp_sink_writes_total",
        C,
        &["tenant", "outcome"],
        "sink writes, by outcome (ok, error)",
    ),
    metric("awp_items_written_total", C, &["tenant"], "items durably written"),
    metric(
        "awp_dynamodb_requests_total",
        C,
        &["tenant"],
        "BatchWriteItem requests sent",
    ),
    metric(
        "awp_dynamodb_items_written_total",
        C,
        &["tenant"],
        "items written by BatchWriteItem (unprocessed ones excluded)",
    ),
    metric(
        "awp_dynamodb_unprocessed_items_total",
        C,
        &["tenant"],
        "items returned as UnprocessedItems",
    ),
    metric(
        "awp_dynamodb_retries_total",
        C,
        &["tenant"],
        "BatchWriteItem requests resent",
    ),
    metric(
        "awp_dynamodb_throttles_total",
        C,
        &["tenant"],
        "throttled requests and unprocessed-item responses",
    ),
    metric(
        "awp_dynamodb_errors_total",
        C,
        &["tenant", "type"],
        "failed requests, by type (throttled, transient, fatal)",
    ),
    metric(
        "awp_dynamodb_request_seconds",
        H,
        &["tenant"],
        "BatchWriteItem request latency",
    ),
    metric(
        "awp_dynamodb_inflight_requests",
        G,
        &["tenant"],
        "BatchWriteItem requests in flight",
    ),
];

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

/// Handles of the metrics without a tenant label.
#[derive(Debug)]
pub struct Global {
    connections: Gauge,
    connections_plain: Counter,
    connections_tls: Counter,
    connections_refused: Counter,
    connections_waiting: Gauge,
    connections_evicted: Counter,
    sessions_replaced: Counter,
    sessions_aged: Counter,
    sessions_credentials_expired: Counter,
    sessions_revoked: Counter,
    proxy_header_failures: Counter,
    proxy_untrusted: Counter,
    tls_handshake_failures: Counter,
    frames_received: [Counter; 9],
    /// Only the types a server sends (WELCOME, ACK, PONG, GOAWAY, ERROR):
    /// no series for a value that cannot occur.
    frames_sent: [Option<Counter>; 9],
    bytes_received: Counter,
    bytes_sent: Counter,
    records_received: Counter,
    acks: [Counter; 3],
    errors: [Counter; 11],
    budget: Gauge,
}

/// The frame types a server sends.
const SENT_TYPES: [FrameType; 5] = [
    FrameType::Welcome,
    FrameType::Ack,
    FrameType::Pong,
    FrameType::GoAway,
    FrameType::Error,
];

const FRAME_TYPES: [FrameType; 9] = [
    FrameType::Hello,
    FrameType::Welcome,
    FrameType::Batch,
    FrameType::Ack,
    FrameType::Ping,
    FrameType::Pong,
    FrameType::GoAway,
    FrameType::Error,
    FrameType::Bye,
];
const ACK_STATUSES: [AckStatus; 3] = [AckStatus::Ok, AckStatus::Retry, AckStatus::Rejected];

impl Global {
    fn new() -> Global {
        let by_type = |name: &'static str| FRAME_TYPES.map(|t| metrics::counter!(name, "type" => t.name()));
        Global {
            connections: metrics::gauge!("awp_connections"),
            connections_plain: metrics::counter!("awp_connections_total", "tls" => "no"),
            connections_tls: metrics::counter!("awp_connections_total", "tls" => "yes"),
            connections_refused: metrics::counter!("awp_connections_refused_total"),
            connections_waiting: metrics::gauge!("awp_connections_waiting"),
            connections_evicted: metrics::counter!("awp_connections_evicted_total"),
            sessions_replaced: metrics::counter!("awp_sessions_replaced_total"),
            sessions_aged: metrics::counter!("awp_sessions_aged_total"),
            sessions_credentials_expired: metrics::counter!("awp_sessions_credentials_expired_total"),
            sessions_revoked: metrics::counter!("awp_sessions_revoked_total"),
            proxy_header_failures: metrics::counter!("awp_proxy_header_failures_total"),
            proxy_untrusted: metrics::counter!("awp_proxy_untrusted_total"),
            tls_handshake_failures: metrics::counter!("awp_tls_handshake_failures_total"),
            frames_received: by_type("awp_frames_received_total"),
            frames_sent: FRAME_TYPES.map(|t| {
                SENT_TYPES
                    .contains(&t)
                    .then(|| metrics::counter!("awp_frames_sent_total", "type" => t.name()))
            }),
            bytes_received: metrics::counter!("awp_received_bytes_total"),
            bytes_sent: metrics::counter!("awp_sent_bytes_total"),
            records_received: metrics::counter!("awp_records_received_total"),
            acks: ACK_STATUSES.map(|s| metrics::counter!("awp_acks_total", "status" => s.name())),
            errors: ErrorCode::ALL.map(|c| metrics::counter!("awp_errors_total", "code" => c.name())),
            budget: metrics::gauge!("awp_budget_bytes"),
        }
    }

    /// A connection was accepted (before any handshake).
    pub fn connection_opened(&self, tls: bool) {
        self.connections.increment(1.0);
        if tls {
            self.connections_tls.increment(1);
        } else {
            self.connections_plain.increment(1);
        }
    }

    /// A connection ended.
    pub fn connection_closed(&self) {
        self.connections.decrement(1.0);
    }

    /// An authenticated connection was refused at a connection limit.
    pub fn connection_refused(&self) {
        self.connections_refused.increment(1);
    }

    /// Connections waiting to authenticate now.
    pub fn connections_waiting(&self, n: usize) {
        self.connections_waiting.set(n as f64);
    }

    /// An unauthenticated connection was closed to make room.
    pub fn connection_evicted(&self) {
        self.connections_evicted.increment(1);
    }

    /// A session was replaced by a newer one of its device.
    pub fn session_replaced(&self) {
        self.sessions_replaced.increment(1);
    }

    /// The configuration in force loaded (at start): no reload failed yet.
    pub fn config_loaded(&self) {
        metrics::gauge!("awp_config_last_reload_successful").set(1.0);
    }

    /// A configuration reload was applied (`true`) or refused.
    pub fn config_reloaded(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "refused" };
        metrics::counter!("awp_config_reloads_total", "outcome" => outcome).increment(1);
        metrics::gauge!("awp_config_last_reload_successful").set(if ok { 1.0 } else { 0.0 });
    }

    /// When a certificate the gateway serves or trusts expires.
    pub fn certificate_expiry(&self, certificate: String, unix_seconds: i64) {
        metrics::gauge!("awp_tls_certificate_expiry_timestamp_seconds", "certificate" => certificate)
            .set(unix_seconds as f64);
    }

    /// A tenant's ack latency histogram.
    pub fn ack_latency(&self, tenant: &str) -> Histogram {
        metrics::histogram!("awp_ack_latency_seconds", "tenant" => tenant.to_owned())
    }

    /// A tenant's authentication failure counters exist from the start
    /// (at 0), one per reason.
    pub fn auth_failure_counters(&self, tenant: &str) {
        for reason in crate::tenant::AuthFailure::REASONS {
            let _ = metrics::counter!("awp_auth_failures_total", "reason" => reason, "tenant" => tenant.to_owned());
        }
    }

    /// The gateway's version, as `awp_build_info{version} 1`.
    pub fn build_info(&self) {
        metrics::gauge!("awp_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    }

    /// A tenant's counters of batches that waited for memory budget, and of
    /// those answered ACK RETRY after waiting too long.
    pub fn budget_counters(&self, tenant: &str) -> [Counter; 2] {
        [
            metrics::counter!("awp_budget_waits_total", "tenant" => tenant.to_owned()),
            metrics::counter!("awp_budget_timeouts_total", "tenant" => tenant.to_owned()),
        ]
    }

    /// A tenant's counters of batches over a quota, by [`crate::quota::Scope`].
    pub fn quota_counters(&self, tenant: &str) -> [Counter; 2] {
        ["device", "tenant"]
            .map(|scope| metrics::counter!("awp_quota_exceeded_total", "tenant" => tenant.to_owned(), "scope" => scope))
    }

    /// A session was told to go away at its maximum age.
    pub fn session_aged(&self) {
        self.sessions_aged.increment(1);
    }

    /// A session was told to go away when its credentials expired.
    pub fn session_credentials_expired(&self) {
        self.sessions_credentials_expired.increment(1);
    }

    /// A session was told to go away because a reload revoked its credentials.
    pub fn session_revoked(&self) {
        self.sessions_revoked.increment(1);
    }

    /// A connection from outside the trusted balancers was closed unread.
    pub fn proxy_untrusted(&self) {
        self.proxy_untrusted.increment(1);
    }

    /// A connection's PROXY header was missing or malformed.
    pub fn proxy_header_failed(&self) {
        self.proxy_header_failures.increment(1);
    }

    /// A TLS handshake failed or timed out.
    pub fn tls_handshake_failed(&self) {
        self.tls_handshake_failures.increment(1);
    }

    /// A whole frame of `bytes` bytes (header included) arrived.
    pub fn frame_received(&self, frame_type: FrameType, bytes: usize) {
        self.frames_received[frame_type as usize - 1].increment(1);
        self.bytes_received.increment(bytes as u64);
    }

    /// A frame was encoded for sending.
    pub fn frame_sent(&self, frame_type: FrameType) {
        match &self.frames_sent[frame_type as usize - 1] {
            Some(counter) => counter.increment(1),
            // A type servers do not send: counted all the same.
            None => metrics::counter!("awp_frames_sent_total", "type" => frame_type.name()).increment(1),
        }
    }

    /// Bytes written to agents.
    pub fn bytes_sent(&self, bytes: usize) {
        self.bytes_sent.increment(bytes as u64);
    }

    /// A batch of `records` records was accepted for storage.
    pub fn records_received(&self, records: u32) {
        self.records_received.increment(u64::from(records));
    }

    /// An ACK was sent.
    pub fn ack_sent(&self, status: AckStatus) {
        self.acks[status as usize].increment(1);
    }

    /// An ERROR frame was sent.
    pub fn error_sent(&self, code: ErrorCode) {
        self.errors[code as usize - 1].increment(1);
    }

    /// A HELLO failed authentication.
    pub fn auth_failed(&self, reason: &'static str, tenant: Option<&str>) {
        metrics::counter!("awp_auth_failures_total", "reason" => reason, "tenant" => tenant.unwrap_or("").to_owned())
            .increment(1);
    }

    /// The configured memory budget.
    pub fn budget(&self, bytes: usize) {
        self.budget.set(bytes as f64);
    }
}

/// Which sink a tenant's records go to: `awp_tenant_sink{tenant, kind} 1`,
/// so a dashboard shows a tenant on the null sink.
pub fn tenant_sink(tenant: &str, kind: &'static str) {
    global();
    metrics::gauge!("awp_tenant_sink", "tenant" => tenant.to_owned(), "kind" => kind).set(1.0);
}

/// Whether a tenant is degraded (see `health.rs`).
pub fn tenant_degraded(tenant: &str, degraded: bool) {
    global();
    metrics::gauge!("awp_tenant_degraded", "tenant" => tenant.to_owned()).set(if degraded { 1.0 } else { 0.0 });
}

/// One tenant's pipeline and sink metrics.
#[derive(Debug, Clone)]
pub struct TenantMetrics {
    budget_used: Gauge,
    queue_depth: Gauge,
    queue_expired: Counter,
    batch_durable: Histogram,
    write_seconds: Histogram,
    write_items: Histogram,
    writes_ok: Counter,
    writes_failed: Counter,
    items_written: Counter,
    batches_refused: Counter,
}

impl TenantMetrics {
    /// Handles labelled with `tenant`.
    pub fn new(tenant: &str) -> TenantMetrics {
        global();
        let t = tenant.to_owned();
        TenantMetrics {
            budget_used: metrics::gauge!("awp_budget_used_bytes", "tenant" => t.clone()),
            queue_depth: metrics::gauge!("awp_queue_depth", "tenant" => t.clone()),
            queue_expired: metrics::counter!("awp_queue_expired_total", "tenant" => t.clone()),
            batch_durable: metrics::histogram!("awp_batch_durable_seconds", "tenant" => t.clone()),
            write_seconds: metrics::histogram!("awp_sink_write_seconds", "tenant" => t.clone()),
            write_items: metrics::histogram!("awp_sink_write_items", "tenant" => t.clone()),
            writes_ok: metrics::counter!("awp_sink_writes_total", "tenant" => t.clone(), "outcome" => "ok"),
            writes_failed: metrics::counter!("awp_sink_writes_total", "tenant" => t.clone(), "outcome" => "error"),
            batches_refused: metrics::counter!("awp_batches_refused_total", "tenant" => t.clone()),
            items_written: metrics::counter!("awp_items_written_total", "tenant" => t),
        }
    }

    /// Budget held by the tenant's batches now.
    pub fn budget_used(&self, bytes: usize) {
        self.budget_used.set(bytes as f64);
    }

    /// Batches waiting for the writer now.
    pub fn queue_depth(&self, batches: usize) {
        self.queue_depth.set(batches as f64);
    }

    /// Batches dropped from the queue (ACK RETRY) for waiting too long.
    pub fn queue_expired(&self, batches: usize) {
        self.queue_expired.increment(batches as u64);
    }

    /// A sink write of `items` items ended after `took`.
    pub fn write_done(&self, items: usize, took: Duration, ok: bool) {
        self.write_seconds.record(took);
        self.write_items.record(items as f64);
        if ok {
            self.writes_ok.increment(1);
            self.items_written.increment(items as u64);
        } else {
            self.writes_failed.increment(1);
        }
    }

    /// The store refused a batch (answered ACK REJECTED).
    pub fn batch_refused(&self) {
        self.batches_refused.increment(1);
    }

    /// A batch was answered after `waited` since it was queued.
    pub fn batch_durable(&self, waited: Duration) {
        self.batch_durable.record(waited);
    }
}

/// One tenant's DynamoDB request metrics.
#[derive(Debug, Clone)]
pub struct DynamoMetrics {
    requests: Counter,
    items_written: Counter,
    unprocessed: Counter,
    retries: Counter,
    throttles: Counter,
    errors_throttled: Counter,
    errors_transient: Counter,
    errors_fatal: Counter,
    request_seconds: Histogram,
    inflight: Gauge,
}

/// How a DynamoDB request failed, for `awp_dynamodb_errors_total{type}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DynamoErrorKind {
    /// Throttled.
    Throttled,
    /// 5xx, timeout, connection.
    Transient,
    /// Will not succeed by retrying.
    Fatal,
}

impl DynamoMetrics {
    /// Handles labelled with `tenant`.
    pub fn new(tenant: &str) -> DynamoMetrics {
        global();
        let t = tenant.to_owned();
        let error =
            |kind: &'static str| metrics::counter!("awp_dynamodb_errors_total", "tenant" => t.clone(), "type" => kind);
        DynamoMetrics {
            errors_throttled: error("throttled"),
            errors_transient: error("transient"),
            errors_fatal: error("fatal"),
            requests: metrics::counter!("awp_dynamodb_requests_total", "tenant" => t.clone()),
            items_written: metrics::counter!("awp_dynamodb_items_written_total", "tenant" => t.clone()),
            unprocessed: metrics::counter!("awp_dynamodb_unprocessed_items_total", "tenant" => t.clone()),
            retries: metrics::counter!("awp_dynamodb_retries_total", "tenant" => t.clone()),
            throttles: metrics::counter!("awp_dynamodb_throttles_total", "tenant" => t.clone()),
            request_seconds: metrics::histogram!("awp_dynamodb_request_seconds", "tenant" => t.clone()),
            inflight: metrics::gauge!("awp_dynamodb_inflight_requests", "tenant" => t),
        }
    }

    /// A request is being sent.
    pub fn request_started(&self) {
        self.inflight.increment(1.0);
    }

    /// A request came back after `took`, `written` of its items written
    /// and `unprocessed` returned.
    pub fn request_done(&self, took: Duration, written: usize, unprocessed: usize) {
        self.inflight.decrement(1.0);
        self.request_seconds.record(took);
        self.requests.increment(1);
        self.items_written.increment(written as u64);
        self.unprocessed.increment(unprocessed as u64);
    }

    /// A request failed after `took`.
    pub fn request_failed(&self, took: Duration, kind: DynamoErrorKind) {
        self.inflight.decrement(1.0);
        self.request_seconds.record(took);
        self.requests.increment(1);
        match kind {
            DynamoErrorKind::Throttled => self.errors_throttled.increment(1),
            DynamoErrorKind::Transient => self.errors_transient.increment(1),
            DynamoErrorKind::Fatal => self.errors_fatal.increment(1),
        }
    }

    /// A request is being resent.
    pub fn retry(&self) {
        self.retries.increment(1);
    }

    /// DynamoDB throttled (an error or unprocessed items).
    pub fn throttled(&self) {
        self.throttles.increment(1);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

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
        let doc = documented(include_str!("../../docs/architecture.md"));
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
        let rules = include_str!("../../deploy/alerts.yml");
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
        let doc = documented(include_str!("../../docs/dynamodb.md"));
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
}
