//! The table of every metric: name, kind, labels and meaning. `docs/architecture.md`
//! keeps the same table, checked by a test.

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
