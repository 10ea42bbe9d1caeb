//! TLS for AWP/1 listeners (AWP1.md §1 and §4.1).
//!
//! A TLS listener speaks exactly the same protocol as a plaintext one; this
//! module only builds the rustls [`ServerConfig`] and checks client
//! certificates:
//!
//! - **TLS 1.3 and 1.2 only**, with rustls' ring provider. Older versions are
//!   not offered: the spec allows 1.2 or 1.3, and field agents are modern
//!   stacks.
//! - **ALPN `awp/1` is offered but not required.** A client that sends no
//!   ALPN extension still connects (the spec says a listener MUST NOT require
//!   it). A client that offers only *other* protocols is refused by rustls
//!   with a `no_application_protocol` alert, as RFC 7301 wants.
//! - **Client certificates are optional and per tenant, and checked at
//!   HELLO, not in the handshake.** When any tenant has a client CA, the
//!   server asks every client for a certificate but accepts any chain (and
//!   none) in the handshake itself, checking only that the client holds the
//!   certificate's key (the handshake signature). A TLS handshake knows
//!   nothing of tenants, device-token clients (HELLO `auth_method` 1) may
//!   send no certificate or a stale one, and a certificate that is expired
//!   or from an unknown CA must get the protocol's `ERROR(AUTH_FAILED)`, not
//!   a TLS alert that tells a prober which CAs are configured. The real
//!   check is [`verify_client_cert`] at HELLO with `auth_method` 2: the chain
//!   against *that* tenant's CA only, valid now, and the subject common name
//!   equal to the HELLO `device_id`. A certificate from tenant A's CA
//!   therefore never authenticates a device of tenant B. A tenant may give
//!   CRLs (`tenants[].crl`): a revoked end-entity certificate fails the
//!   same way. Each tenant's verifier is built once, when its configuration
//!   is loaded ([`TenantCa::load`]); a HELLO naming a tenant without one
//!   (unknown, or token-only) is checked against a CA of nobody's, so that
//!   its answer takes as long as a known tenant's.
//! - The certificate request carries **no CA names** (no root hint subjects):
//!   listing every tenant's CA to every client that connects would tell
//!   strangers which tenants exist (the spec works hard to prevent tenant
//!   enumeration), and would grow with the number of tenants. Clients with a
//!   single certificate send it regardless.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// The ALPN protocol id a TLS listener offers (AWP1.md §1).
pub const ALPN_AWP1: &[u8] = b"awp/1";

/// Config field name of the server certificate chain, used in error messages.
const CERT_FIELD: &str = "tls.cert";
/// Config field name of the server private key, used in error messages.
const KEY_FIELD: &str = "tls.key";

/// Why TLS could not be set up. Every message starts with the config field
/// concerned (such as `tls.cert` or `tenants[acme].client_ca`) and names the
/// file, so an operator can fix the configuration from the message alone.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("{field}: cannot read {}: {source}", path.display())]
    Read {
        /// The config field naming the file.
        field: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid PEM.
    #[error("{field}: {} is not valid PEM: {source}", path.display())]
    Pem {
        /// The config field naming the file.
        field: String,
        /// The file.
        path: PathBuf,
        /// The PEM parser's error.
        #[source]
        source: pem::Error,
    },
    /// A file holds no `CERTIFICATE` PEM section.
    #[error("{field}: no certificate in file {}", path.display())]
    NoCertificate {
        /// The config field naming the file.
        field: String,
        /// The file.
        path: PathBuf,
    },
    /// A file holds no private key (PKCS#8, PKCS#1 or SEC1 PEM section).
    #[error("{field}: no private key in file {}", path.display())]
    NoPrivateKey {
        /// The config field naming the file.
        field: String,
        /// The file.
        path: PathBuf,
    },
    /// A certificate in a CA file cannot be used as a trust anchor.
    #[error("{field}: certificate #{index} in {} is not a usable CA certificate: {source}", path.display())]
    BadCaCertificate {
        /// The config field naming the file.
        field: String,
        /// The file.
        path: PathBuf,
        /// 1-based position of the certificate in the file.
        index: usize,
        /// Why rustls/webpki refused it.
        #[source]
        source: rustls::Error,
    },
    /// The server certificate chain and private key were refused (for
    /// example, the key does not belong to the certificate).
    #[error("tls.cert/tls.key: {} and {} are not a usable certificate and key: {source}", cert.display(), key.display())]
    CertificateKey {
        /// The certificate chain file.
        cert: PathBuf,
        /// The private key file.
        key: PathBuf,
        /// rustls' error.
        #[source]
        source: rustls::Error,
    },
    /// A file holds no `X509 CRL` PEM section.
    #[error("{field}: no CRL in file {}", path.display())]
    NoCrl {
        /// The config field naming the file.
        field: String,
        /// The file.
        path: PathBuf,
    },
    /// A tenant's CA and CRLs do not make a verifier (a CRL that does not
    /// parse).
    #[error("{field}: {source}")]
    Verifier {
        /// The config field naming the file at fault.
        field: String,
        /// rustls' error.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    /// rustls refused the protocol version / crypto provider combination
    /// (only possible with a broken build of rustls).
    #[error("tls: cannot configure TLS 1.2/1.3 with the ring provider: {source}")]
    Protocol {
        /// rustls' error.
        #[source]
        source: rustls::Error,
    },
}

/// A tenant's client CA, for tenants that allow HELLO `auth_method` 2: its
/// certificates, its CRLs, and the verifier made of them.
#[derive(Clone, Debug)]
pub struct TenantCa {
    /// The tenant's client CA certificates (see [`load_ca`]).
    pub roots: Arc<RootCertStore>,
    /// Checks a chain against `roots` and the CRLs.
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
}

impl TenantCa {
    /// Loads a tenant's CA file and its CRL file, if any (`ca_field` and
    /// `crl_field` name them in errors), and builds its verifier: end-entity
    /// certificates a CRL lists are refused; certificates no CRL speaks of
    /// (an intermediate's, or a CA with no CRL given) are not.
    pub fn load(ca: &Path, ca_field: &str, crl: Option<&Path>, crl_field: &str) -> Result<TenantCa, TlsError> {
        let roots = Arc::new(load_ca(ca, ca_field)?);
        let crls = match crl {
            Some(path) => load_crls(path, crl_field)?,
            None => Vec::new(),
        };
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .with_crls(crls)
            .only_check_end_entity_revocation()
            .allow_unknown_revocation_status()
            .build()
            .map_err(|source| TlsError::Verifier {
                field: crl.map_or(ca_field, |_| crl_field).to_owned(),
                source,
            })?;
        Ok(TenantCa { roots, verifier })
    }

    /// A CA of nobody's, to check the chains of HELLOs that name a tenant
    /// without one: as much work, always refused.
    pub fn nobodys() -> &'static TenantCa {
        static NOBODY: std::sync::OnceLock<TenantCa> = std::sync::OnceLock::new();
        NOBODY.get_or_init(|| {
            let mut roots = RootCertStore::empty();
            let built = (|| {
                let key = rcgen::KeyPair::generate().ok()?;
                let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).ok()?;
                params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
                params
                    .distinguished_name
                    .push(rcgen::DnType::CommonName, "awp-gateway: no tenant's CA");
                let cert = params.self_signed(&key).ok()?;
                roots.add(cert.der().clone()).ok()
            })();
            let roots = Arc::new(roots);
            let verifier: Arc<dyn rustls::server::danger::ClientCertVerifier> = match built.and_then(|()| {
                WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                    .build()
                    .ok()
            }) {
                Some(verifier) => verifier,
                // Cannot happen (ring makes keys); then nothing verifies.
                None => Arc::new(DeferredClientAuth {
                    algorithms: provider().signature_verification_algorithms,
                }),
            };
            TenantCa { roots, verifier }
        })
    }
}

/// Reads every CRL of a PEM file (`X509 CRL` sections); at least one.
fn load_crls(path: &Path, field: &str) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    load_all(path, field, |field, path| TlsError::NoCrl { field, path })
}

/// Reads every section of type `T` of a PEM file, in order; at least one
/// (`none` says what is missing).
fn load_all<T: PemObject>(path: &Path, field: &str, none: fn(String, PathBuf) -> TlsError) -> Result<Vec<T>, TlsError> {
    let pem_bytes = read_file(path, field)?;
    let items = T::pem_slice_iter(&pem_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            field: field.to_string(),
            path: path.to_path_buf(),
            source,
        })?;
    if items.is_empty() {
        return Err(none(field.to_string(), path.to_path_buf()));
    }
    Ok(items)
}

/// The crypto provider every config uses (the crate is built without aws-lc-rs).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a whole file, naming `field` and the path on failure.
fn read_file(path: &Path, field: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        field: field.to_string(),
        path: path.to_path_buf(),
        source,
    })
}

/// Reads every `CERTIFICATE` section of a PEM file, in order; at least one.
fn load_certs(path: &Path, field: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    load_all(path, field, |field, path| TlsError::NoCertificate { field, path })
}

/// Reads the first private key of a PEM file.
fn load_key(path: &Path, field: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem_bytes = read_file(path, field)?;
    PrivateKeyDer::from_pem_slice(&pem_bytes).map_err(|err| match err {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            field: field.to_string(),
            path: path.to_path_buf(),
        },
        source => TlsError::Pem {
            field: field.to_string(),
            path: path.to_path_buf(),
            source,
        },
    })
}

/// Loads a CA file (one or more PEM certificates) into a root store.
///
/// `field` is the config field naming the file (such as
/// `tenants[acme].client_ca`); every error message starts with it. A file
/// without certificates, or with a certificate that cannot be a trust
/// anchor, is an error rather than being skipped.
pub fn load_ca(path: &Path, field: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for (i, cert) in load_certs(path, field)?.into_iter().enumerate() {
        roots.add(cert).map_err(|source| TlsError::BadCaCertificate {
            field: field.to_string(),
            path: path.to_path_buf(),
            index: i + 1,
            source,
        })?;
    }
    Ok(roots)
}

/// When the first certificate of a PEM file to expire does (its notAfter,
/// unix seconds): for `awp_tls_certificate_expiry_timestamp_seconds`, so an
/// alert fires before agents start failing their handshakes.
pub fn earliest_expiry(path: &Path, field: &str) -> Result<Option<i64>, TlsError> {
    Ok(load_certs(path, field)?
        .iter()
        .filter_map(|cert| x509_parser::parse_x509_certificate(cert.as_ref()).ok())
        .map(|(_, parsed)| parsed.validity().not_after.timestamp())
        .min())
}

/// Builds the listener's TLS configuration.
///
/// `cert_path` is the server certificate chain (leaf first) and `key_path`
/// its private key, both PEM (config fields `tls.cert` and `tls.key`). The
/// config speaks TLS 1.3 and 1.2 and offers ALPN `awp/1` without requiring
/// it. When any tenant in `tenant_cas` has CA certificates, clients are
/// asked for a certificate, which must chain to one of those CAs if sent;
/// clients that send none are accepted (see the module docs). Otherwise no
/// certificate is requested.
pub fn server_config(
    cert_path: &Path,
    key_path: &Path,
    tenant_cas: &[TenantCa],
) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = load_certs(cert_path, CERT_FIELD)?;
    let key = load_key(key_path, KEY_FIELD)?;

    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|source| TlsError::Protocol { source })?;

    let builder = if tenant_cas.iter().all(|t| t.roots.is_empty()) {
        builder.with_no_client_auth()
    } else {
        builder.with_client_cert_verifier(Arc::new(DeferredClientAuth {
            algorithms: provider().signature_verification_algorithms,
        }))
    };

    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::CertificateKey {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
            source,
        })?;
    config.alpn_protocols = vec![ALPN_AWP1.to_vec()];
    Ok(Arc::new(config))
}

/// The handshake's client-certificate policy: ask, accept any chain or none,
/// verify the handshake signature (the client holds the key). Which tenant's
/// CA the chain must lead to is known only at HELLO ([`verify_client_cert`]).
#[derive(Debug)]
struct DeferredClientAuth {
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::server::danger::ClientCertVerifier for DeferredClientAuth {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        // No CA names: they would tell strangers which tenants exist.
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Why a client certificate does not authenticate a device: for the
/// operator's log and metrics only (the agent gets one `AUTH_FAILED`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateFailure {
    /// The connection presented no certificate.
    None,
    /// The chain does not lead to the tenant's CA, or the certificate is
    /// expired, not yet valid, revoked, or not for client authentication:
    /// webpki's reason.
    Rejected(String),
    /// The certificate is good but names another device (its common name).
    OtherDevice,
}

/// Checks a TLS client certificate for HELLO `auth_method` 2 (AWP1.md §4.1).
///
/// `chain` is the peer's chain from the TLS session (end entity first, see
/// [`peer_certificates`]). `Ok` only when the end-entity certificate chains
/// to `ca` (this tenant's client CA, not any tenant's), is valid now (at
/// `now`), not revoked by the tenant's CRLs, usable for client
/// authentication, and its subject has exactly one common name, equal to
/// `device_id` byte for byte. The caller answers every failure with the same
/// `AUTH_FAILED`; the reason is the operator's.
pub fn check_client_cert(
    chain: &[CertificateDer<'static>],
    ca: &TenantCa,
    device_id: &str,
    now: UnixTime,
) -> Result<(), CertificateFailure> {
    let Some((end_entity, intermediates)) = chain.split_first() else {
        return Err(CertificateFailure::None);
    };
    if let Err(err) = ca.verifier.verify_client_cert(end_entity, intermediates, now) {
        return Err(CertificateFailure::Rejected(err.to_string()));
    }
    if subject_common_name(end_entity).is_some_and(|cn| cn == device_id) {
        Ok(())
    } else {
        Err(CertificateFailure::OtherDevice)
    }
}

/// Whether [`check_client_cert`] passes.
pub fn verify_client_cert(chain: &[CertificateDer<'static>], ca: &TenantCa, device_id: &str, now: UnixTime) -> bool {
    check_client_cert(chain, ca, device_id, now).is_ok()
}

/// When a certificate stops being valid (its notAfter), unix seconds.
pub fn not_after(cert: &CertificateDer<'_>) -> Option<u64> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    u64::try_from(parsed.validity().not_after.timestamp()).ok()
}

/// The subject's common name, when there is exactly one and it is a string.
fn subject_common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let mut names = parsed.subject().iter_common_name();
    let first = names.next()?.as_str().ok()?.to_string();
    if names.next().is_some() {
        return None;
    }
    Some(first)
}

/// The client's certificate chain from a TLS session (end entity first), or
/// `None` when the client sent none.
pub fn peer_certificates(conn: &rustls::ServerConnection) -> Option<Vec<CertificateDer<'static>>> {
    conn.peer_certificates()
        .filter(|certs| !certs.is_empty())
        .map(<[_]>::to_vec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use awp_testkit::certs::{TestPki, client_config, client_config_with_versions, self_signed_client};

    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    fn tenant_ca(pki: &TestPki, tenant: &str) -> (awp_testkit::certs::ClientCa, TenantCa) {
        let ca = pki.tenant_ca(tenant);
        let tenant_ca = TenantCa::load(&ca.path, "tenants[0].client_ca", None, "tenants[0].crl").unwrap();
        (ca, tenant_ca)
    }

    fn verifies(chain: &[CertificateDer<'static>], ca: &TenantCa, device: &str) -> bool {
        verify_client_cert(chain, ca, device, UnixTime::now())
    }

    #[test]
    fn a_certificate_a_crl_revokes_is_refused_and_an_expired_one_too() {
        let pki = TestPki::new();
        let ca = pki.tenant_ca("acme");
        let (kept, revoked) = (ca.issue("dev-1"), ca.issue("dev-2"));
        let crl = ca.crl(pki.path(), &[&revoked]);
        let with_crl = TenantCa::load(&ca.path, "tenants[0].client_ca", Some(&crl), "tenants[0].crl").unwrap();
        assert!(verifies(&kept.chain(), &with_crl, "dev-1"));
        assert!(!verifies(&revoked.chain(), &with_crl, "dev-2"), "revoked");
        let without = TenantCa::load(&ca.path, "tenants[0].client_ca", None, "").unwrap();
        assert!(verifies(&revoked.chain(), &without, "dev-2"), "no CRL, no revocation");
        // Its notAfter passed: refused, and the time is read from the certificate.
        let soon = time::OffsetDateTime::now_utc() + time::Duration::seconds(30);
        let short = ca.issue_until("dev-3", Some(soon));
        assert!(verifies(&short.chain(), &without, "dev-3"));
        let later = UnixTime::since_unix_epoch(std::time::Duration::from_secs(soon.unix_timestamp() as u64 + 60));
        assert!(!verify_client_cert(&short.chain(), &without, "dev-3", later));
        assert_eq!(not_after(&short.cert_der), Some(soon.unix_timestamp() as u64));
        // A file that is no CRL is refused, naming the field.
        let err = TenantCa::load(&ca.path, "tenants[0].client_ca", Some(&ca.path), "tenants[0].crl").unwrap_err();
        assert!(err.to_string().starts_with("tenants[0].crl: no CRL in file"), "{err}");
    }

    #[test]
    fn client_cert_verifies_only_for_its_tenant_and_device() {
        let pki = TestPki::new();
        let (ca_a, a) = tenant_ca(&pki, "acme");
        let (_ca_b, b) = tenant_ca(&pki, "globex");
        let chain = ca_a.issue("dev-1").chain();

        assert!(verifies(&chain, &a, "dev-1"));
        assert!(!verifies(&chain, &b, "dev-1"), "other tenant's CA");
        assert!(!verifies(&chain, &a, "dev-2"), "CN mismatch");
        assert!(!verifies(&chain, &a, "dev-"), "CN prefix");
        assert!(!verifies(&chain, &a, "DEV-1"), "CN case");
        assert!(!verifies(&[], &a, "dev-1"), "empty chain");
        assert!(!verifies(&chain, TenantCa::nobodys(), "dev-1"), "nobody's CA");

        let self_signed = self_signed_client("dev-1").chain();
        assert!(!verifies(&self_signed, &a, "dev-1"), "self-signed");

        let garbage = vec![CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00])];
        assert!(!verifies(&garbage, &a, "dev-1"), "garbage DER");
    }

    #[test]
    fn server_config_loads_pem_and_offers_alpn() {
        let pki = TestPki::new();
        let config = server_config(&pki.server_cert, &pki.server_key, &[]).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"awp/1".to_vec()]);

        let (_ca, a) = tenant_ca(&pki, "acme");
        let config = server_config(&pki.server_cert, &pki.server_key, &[a]).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"awp/1".to_vec()]);
    }

    /// A client certificate resolver that has no certificate but records the
    /// CA-name hints of every certificate request it sees.
    #[derive(Debug, Default)]
    struct RecordingResolver {
        hint_counts: std::sync::Mutex<Vec<usize>>,
    }

    impl rustls::client::ResolvesClientCert for RecordingResolver {
        fn resolve(
            &self,
            root_hint_subjects: &[&[u8]],
            _sigschemes: &[rustls::SignatureScheme],
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            self.hint_counts.lock().unwrap().push(root_hint_subjects.len());
            None
        }

        fn has_certs(&self) -> bool {
            true
        }
    }

    #[tokio::test]
    async fn certificate_request_only_with_tenant_cas_and_without_ca_names() {
        let pki = TestPki::new();
        let (_ca, a) = tenant_ca(&pki, "acme");
        let ca_roots = load_ca(&pki.ca_pem, "test").unwrap();
        for (tenants, expect_request) in [(vec![], false), (vec![a], true)] {
            let server = server_config(&pki.server_cert, &pki.server_key, &tenants).unwrap();
            let resolver = Arc::new(RecordingResolver::default());
            let client = rustls::ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_root_certificates(ca_roots.clone())
                .with_client_cert_resolver(resolver.clone());
            let seen = handshake(server, Arc::new(client)).await;
            assert!(seen.server_peer_certs.is_none());
            let hint_counts = resolver.hint_counts.lock().unwrap().clone();
            if expect_request {
                assert_eq!(hint_counts, vec![0], "one certificate request, no CA names");
            } else {
                assert!(hint_counts.is_empty(), "no certificate request: {hint_counts:?}");
            }
        }
    }

    #[test]
    fn errors_name_the_field_and_file() {
        let pki = TestPki::new();
        let missing = pki.path().join("missing.pem");

        let err = server_config(&missing, &pki.server_key, &[]).unwrap_err();
        assert!(matches!(err, TlsError::Read { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.starts_with("tls.cert: cannot read "), "{msg}");
        assert!(msg.contains("missing.pem"), "{msg}");

        // A certificate file where the key should be.
        let err = server_config(&pki.server_cert, &pki.server_cert, &[]).unwrap_err();
        assert!(matches!(err, TlsError::NoPrivateKey { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.starts_with("tls.key: no private key in file "), "{msg}");
        assert!(msg.contains("server.pem"), "{msg}");

        // A key file where a certificate should be.
        let err = load_ca(&pki.server_key, "tenants[acme].client_ca").unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("tenants[acme].client_ca: no certificate in file "),
            "{err}"
        );

        let err = load_ca(&missing, "tenants[acme].client_ca").unwrap_err();
        assert!(
            err.to_string().starts_with("tenants[acme].client_ca: cannot read "),
            "{err}"
        );

        // Broken PEM.
        let broken = pki.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = load_ca(&broken, "tenants[acme].client_ca").unwrap_err();
        assert!(matches!(err, TlsError::Pem { .. }), "{err:?}");
        assert!(err.to_string().starts_with("tenants[acme].client_ca: "), "{err}");

        // A key that does not belong to the certificate.
        let other = self_signed_client("x");
        let other_key = pki.path().join("other.key");
        std::fs::write(&other_key, &other.key_pem).unwrap();
        let err = server_config(&pki.server_cert, &other_key, &[]).unwrap_err();
        assert!(matches!(err, TlsError::CertificateKey { .. }), "{err:?}");
        assert!(err.to_string().starts_with("tls.cert/tls.key: "), "{err}");
    }

    /// What each side saw after one handshake.
    struct Seen {
        client_alpn: Option<Vec<u8>>,
        server_alpn: Option<Vec<u8>>,
        version: Option<rustls::ProtocolVersion>,
        server_peer_certs: Option<Vec<CertificateDer<'static>>>,
    }

    async fn handshake(server: Arc<ServerConfig>, client: Arc<rustls::ClientConfig>) -> Seen {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = TlsAcceptor::from(server);
        let server_task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.unwrap();
            let mut preamble = [0u8; 4];
            tls.read_exact(&mut preamble).await.unwrap();
            assert_eq!(&preamble, b"\x89AWP");
            let conn = tls.get_ref().1;
            (conn.alpn_protocol().map(<[u8]>::to_vec), peer_certificates(conn))
        });

        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = TlsConnector::from(client).connect(name, tcp).await.unwrap();
        tls.write_all(b"\x89AWP").await.unwrap();
        tls.flush().await.unwrap();
        let conn = tls.get_ref().1;
        let client_alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
        let version = conn.protocol_version();
        let (server_alpn, server_peer_certs) = server_task.await.unwrap();
        Seen {
            client_alpn,
            server_alpn,
            version,
            server_peer_certs,
        }
    }

    #[tokio::test]
    async fn real_handshakes_tls12_and_tls13() {
        let pki = TestPki::new();
        let (ca_a, a) = tenant_ca(&pki, "acme");
        let device = ca_a.issue("dev-1");
        let server = server_config(&pki.server_cert, &pki.server_key, std::slice::from_ref(&a)).unwrap();

        let versions: [(&'static rustls::SupportedProtocolVersion, rustls::ProtocolVersion); 2] = [
            (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
            (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
        ];
        for (version, expected) in versions {
            // ALPN offered: awp/1 negotiated; no certificate: still accepted.
            let client = client_config_with_versions(&pki.ca_pem, None, true, &[version]);
            let seen = handshake(server.clone(), client).await;
            assert_eq!(seen.version, Some(expected));
            assert_eq!(seen.client_alpn.as_deref(), Some(ALPN_AWP1));
            assert_eq!(seen.server_alpn.as_deref(), Some(ALPN_AWP1));
            assert!(seen.server_peer_certs.is_none());

            // No ALPN at all: connects, nothing negotiated.
            let client = client_config_with_versions(&pki.ca_pem, None, false, &[version]);
            let seen = handshake(server.clone(), client).await;
            assert_eq!(seen.version, Some(expected));
            assert_eq!(seen.client_alpn, None);
            assert_eq!(seen.server_alpn, None);

            // Client certificate from tenant A's CA: the server sees it, and it
            // passes the HELLO check for tenant A / dev-1.
            let client = client_config_with_versions(&pki.ca_pem, Some(device.cert_and_key()), true, &[version]);
            let seen = handshake(server.clone(), client).await;
            assert_eq!(seen.version, Some(expected));
            let certs = seen.server_peer_certs.expect("server sees the client certificate");
            assert_eq!(certs, device.chain());
            assert!(verifies(&certs, &a, "dev-1"));
        }

        // The default helper negotiates TLS 1.3.
        let seen = handshake(server.clone(), client_config(&pki.ca_pem, None, true)).await;
        assert_eq!(seen.version, Some(rustls::ProtocolVersion::TLSv1_3));
    }
}
