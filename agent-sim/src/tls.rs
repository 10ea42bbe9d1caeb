//! TLS for simulated agents: trust the given CA, optionally present a client
//! certificate (then HELLO uses auth_method 2).

use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use crate::scenario::TlsScenario;

/// A connector and the server name to verify.
pub fn connector(t: &TlsScenario) -> anyhow::Result<(tokio_rustls::TlsConnector, ServerName<'static>)> {
    let mut roots = RootCertStore::empty();
    let pem = std::fs::read(&t.ca).with_context(|| format!("tls.ca: cannot read {}", t.ca.display()))?;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots
            .add(cert.with_context(|| format!("tls.ca: bad PEM in {}", t.ca.display()))?)
            .with_context(|| format!("tls.ca: unusable CA certificate in {}", t.ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots);
    let mut config = match (&t.client_cert, &t.client_key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .with_context(|| format!("tls.client_cert: cannot read {}", cert.display()))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("tls.client_cert: bad PEM in {}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("tls.client_key: no private key in {}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .context("tls.client_cert: certificate and key do not match")?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"awp/1".to_vec()];
    let name = ServerName::try_from(t.server_name.clone()).context("tls.server_name: not a DNS name or IP")?;
    Ok((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
}

/// The device a client certificate is for: its subject's common name (the
/// gateway takes the HELLO only if its device id is that name).
pub fn certificate_device(cert: &std::path::Path) -> anyhow::Result<String> {
    let pem = std::fs::read(cert).with_context(|| format!("tls.client_cert: cannot read {}", cert.display()))?;
    let der = CertificateDer::pem_slice_iter(&pem)
        .next()
        .with_context(|| format!("tls.client_cert: no certificate in {}", cert.display()))?
        .with_context(|| format!("tls.client_cert: bad PEM in {}", cert.display()))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| anyhow::anyhow!("tls.client_cert: {}: not an X.509 certificate: {e}", cert.display()))?;
    let cn = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .with_context(|| format!("tls.client_cert: {} names no device (no common name)", cert.display()))?;
    Ok(cn.to_owned())
}
