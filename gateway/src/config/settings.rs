//! What a configuration means for the running parts, derived in one place
//! for start-up and reload alike: the session settings new connections
//! get, the client CAs the TLS listeners ask for, the connection limits of
//! admission, the admin token, and the certificate expiries reported as
//! metrics.

use std::sync::Arc;

use arc_swap::ArcSwap;
use awp_protocol::Limits;
use secrecy::SecretString;

use crate::admit::tenant::Tenants;
use crate::config::{Config, units};
use crate::net::tls::TenantCa;
use crate::session::SessionSettings;
use crate::telemetry;

/// The admin endpoint's token (`server.admin_token_file`), swapped on reload.
pub type AdminToken = Arc<ArcSwap<Option<SecretString>>>;

/// The session parameters `config` gives new connections.
pub fn session_settings(config: &Config) -> SessionSettings {
    let s = &config.server;
    SessionSettings {
        limits: Limits {
            max_frame_len: s.max_frame_len,
            max_batch_records: s.max_batch_records,
            max_batch_bytes: s.max_batch_bytes,
            accepted_compression: s.compression,
        },
        max_inflight: s.max_inflight,
        heartbeat: s.heartbeat,
        hello_timeout: s.hello_timeout,
        retry_after_ms: units::ms(s.retry_after),
        goaway_reconnect_ms: units::ms(s.goaway_reconnect),
        budget_wait: config.pipeline.budget_wait,
        min_frame_rate: s.min_frame_rate,
        max_connection_age: s.max_connection_age,
    }
}

/// The tenants' client CAs, which the TLS listeners ask clients for.
pub fn tenant_cas(tenants: &Tenants) -> Vec<TenantCa> {
    tenants.iter().filter_map(|t| t.client_ca().cloned()).collect()
}

/// Sets `awp_tls_certificate_expiry_timestamp_seconds` for the server
/// certificate and every tenant's client CA.
pub fn report_certificate_expiry(config: &Config) {
    let server = config
        .tls
        .as_ref()
        .map(|t| ("server".to_owned(), &t.cert, "tls.cert".to_owned()));
    let cas = config.tenants.iter().enumerate().filter_map(|(i, t)| {
        let path = t.client_ca.as_ref()?;
        Some((format!("client_ca:{}", t.id), path, format!("tenants[{i}].client_ca")))
    });
    for (certificate, path, field) in server.into_iter().chain(cas) {
        match crate::net::tls::earliest_expiry(path, &field) {
            Ok(Some(expiry)) => telemetry::global().certificate_expiry(certificate, expiry),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read a certificate's expiry"),
        }
    }
}

/// Each tenant's own `max_connections`, for admission.
pub fn tenant_limits(config: &Config) -> impl Iterator<Item = (String, usize)> + '_ {
    config
        .tenants
        .iter()
        .filter_map(|t| Some((t.id.clone(), t.max_connections?)))
}
