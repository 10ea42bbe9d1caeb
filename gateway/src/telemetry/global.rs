//! The process-wide metrics: connections, sessions, frames, authentication,
//! the memory budget, reloads and certificates.

use awp_protocol::{AckStatus, ErrorCode, FrameType};
use metrics::{Counter, Gauge, Histogram};

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
    pub(super) fn new() -> Global {
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
        for reason in crate::admit::auth_failure::AuthFailure::REASONS {
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

    /// A tenant's counters of batches over a quota, by [`crate::admit::quota::Scope`].
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
