//! A throwaway PKI for the TLS runs: a CA, and a server certificate for
//! `localhost` and `127.0.0.1` signed by it (`awp_testkit::certs`, the
//! tests' generator), and the floor server's acceptor.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Where the PEM files are.
pub struct Pki {
    /// The CA agents trust.
    pub ca: PathBuf,
    /// The server's certificate.
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
}

/// Writes `ca.pem`, `server.pem` and `server.key` into `dir` (the tests'
/// generator, `awp_testkit::certs`).
pub fn generate(dir: &Path) -> anyhow::Result<Pki> {
    let pki = awp_testkit::certs::TestPki::in_dir(dir);
    Ok(Pki {
        ca: pki.ca_pem.clone(),
        cert: pki.server_cert.clone(),
        key: pki.server_key.clone(),
    })
}

/// A TLS acceptor for the floor server, like the gateway's: TLS 1.2 and 1.3,
/// ALPN `awp/1` offered.
pub fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("cannot read {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"awp/1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
