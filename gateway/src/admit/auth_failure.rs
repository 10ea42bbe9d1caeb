//! Why a HELLO did not authenticate, for the operator (the agent is told
//! `AUTH_FAILED` whatever it was): a log line's reason and the label of
//! `awp_auth_failures_total`. Apart from `tenant.rs` so that `telemetry`
//! can make every label's series without knowing the tenants.

/// Why a HELLO did not authenticate: for the operator's log and
/// `awp_auth_failures_total{reason}`. The agent is told `AUTH_FAILED`,
/// whatever it is (no tenant or device enumeration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// No such tenant here.
    UnknownTenant,
    /// The token is not the tenant's secrets' for this device.
    BadToken,
    /// The token was the tenant's, and its expiry passed.
    ExpiredToken,
    /// A certificate HELLO for a tenant without a client CA.
    NoClientCa,
    /// The client certificate did not pass.
    Certificate(crate::net::tls::CertificateFailure),
    /// The tenant takes HELLOs over TLS only.
    TlsRequired,
}

impl AuthFailure {
    /// The metric label.
    pub fn reason(&self) -> &'static str {
        use crate::net::tls::CertificateFailure;
        match self {
            AuthFailure::UnknownTenant => "unknown_tenant",
            AuthFailure::BadToken => "bad_token",
            AuthFailure::ExpiredToken => "expired_token",
            AuthFailure::NoClientCa => "no_client_ca",
            AuthFailure::Certificate(CertificateFailure::None) => "no_certificate",
            AuthFailure::Certificate(CertificateFailure::Rejected(_)) => "certificate_rejected",
            AuthFailure::Certificate(CertificateFailure::OtherDevice) => "certificate_for_another_device",
            AuthFailure::TlsRequired => "tls_required",
        }
    }

    /// All the labels, for the metric's series from start.
    pub const REASONS: [&'static str; 8] = [
        "unknown_tenant",
        "bad_token",
        "expired_token",
        "no_client_ca",
        "no_certificate",
        "certificate_rejected",
        "certificate_for_another_device",
        "tls_required",
    ];
}

impl std::fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::net::tls::CertificateFailure;
        match self {
            AuthFailure::UnknownTenant => f.write_str("no such tenant"),
            AuthFailure::BadToken => f.write_str("the token is not this tenant's for this device (a rotated secret?)"),
            AuthFailure::ExpiredToken => f.write_str("the token expired"),
            AuthFailure::NoClientCa => f.write_str("a certificate HELLO, and the tenant has no client_ca"),
            AuthFailure::Certificate(CertificateFailure::None) => {
                f.write_str("a certificate HELLO without a certificate")
            }
            AuthFailure::Certificate(CertificateFailure::Rejected(why)) => {
                write!(f, "the certificate is not good for the tenant's CA: {why}")
            }
            AuthFailure::Certificate(CertificateFailure::OtherDevice) => {
                f.write_str("the certificate names another device")
            }
            AuthFailure::TlsRequired => f.write_str("the tenant requires TLS and this connection is plain"),
        }
    }
}
