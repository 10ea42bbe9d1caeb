//! Test PKI for TLS tests: a server CA and server certificate, per-tenant
//! client CAs and client certificates, all generated with rcgen into a
//! temporary directory, and rustls client configurations to connect with.
//!
//! The one certificate generator of the tests and benchmarks (the
//! gateway's `dev-certs` command is the product's own, for operators).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use tempfile::TempDir;

/// A certificate chain and its private key, as rustls wants them for
/// `with_client_auth_cert` / [`client_config`].
pub type CertAndKey = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// A directory holding the server's PKI: `ca.pem` (the CA clients trust),
/// `server.pem` (server certificate for `localhost` and `127.0.0.1`) and
/// `server.key`. Tenant client CAs are written next to them.
pub struct TestPki {
    /// The temporary directory it owns, deleted when this value is
    /// dropped; none for [`TestPki::in_dir`].
    _temp: Option<TempDir>,
    /// Where the files are.
    root: PathBuf,
    /// `ca.pem`: the server CA certificate.
    pub ca_pem: PathBuf,
    /// `server.pem`: the server certificate.
    pub server_cert: PathBuf,
    /// `server.key`: the server certificate's private key (PKCS#8).
    pub server_key: PathBuf,
}

impl TestPki {
    /// Generates a server CA and a server certificate into a new temporary directory.
    pub fn new() -> TestPki {
        let dir = tempfile::tempdir().expect("create tempdir");
        let mut pki = TestPki::in_dir(dir.path());
        pki._temp = Some(dir);
        pki
    }

    /// Generates a server CA and a server certificate into `dir`, which is
    /// left as it is when this value is dropped (a benchmark's report).
    pub fn in_dir(dir: &Path) -> TestPki {
        let ca = new_ca("AWP test server CA");
        let ca_pem = write(dir, "ca.pem", &ca.cert_pem);

        let key = KeyPair::generate().expect("generate server key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("server params");
        params.distinguished_name = common_name("localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &ca.issuer).expect("sign server cert");
        // The chain file holds the leaf only; the CA is the trust anchor.
        let server_cert = write(dir, "server.pem", &cert.pem());
        let server_key = write(dir, "server.key", &key.serialize_pem());

        TestPki {
            _temp: None,
            root: dir.to_owned(),
            ca_pem,
            server_cert,
            server_key,
        }
    }

    /// The directory path.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Generates a client CA for `tenant` and writes it to `<tenant>-ca.pem`
    /// in this directory.
    pub fn tenant_ca(&self, tenant: &str) -> ClientCa {
        ClientCa::generate(&self.root, tenant)
    }
}

impl Default for TestPki {
    fn default() -> Self {
        TestPki::new()
    }
}

/// A CA certificate with the key that signs with it.
struct Ca {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

fn new_ca(name: &str) -> Ca {
    let key = KeyPair::generate().expect("generate CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.distinguished_name = common_name(name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).expect("self-sign CA");
    Ca {
        cert_pem: cert.pem(),
        cert_der: cert.der().clone(),
        issuer: Issuer::new(params, key),
    }
}

fn common_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// A tenant's client CA: its certificate file (`<tenant>-ca.pem`) and the key
/// to issue device certificates with.
pub struct ClientCa {
    /// The tenant id the CA was made for.
    pub tenant: String,
    /// Path of `<tenant>-ca.pem`.
    pub path: PathBuf,
    /// The CA certificate, PEM.
    pub cert_pem: String,
    /// The CA certificate, DER.
    pub cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl ClientCa {
    /// Generates a client CA for `tenant` and writes `<tenant>-ca.pem` into `dir`.
    pub fn generate(dir: &Path, tenant: &str) -> ClientCa {
        let ca = new_ca(&format!("AWP test client CA {tenant}"));
        let path = write(dir, &format!("{tenant}-ca.pem"), &ca.cert_pem);
        ClientCa {
            tenant: tenant.to_string(),
            path,
            cert_pem: ca.cert_pem,
            cert_der: ca.cert_der,
            issuer: ca.issuer,
        }
    }

    /// The CA as a root store (what the gateway builds from `<tenant>-ca.pem`).
    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert_der.clone()).expect("add client CA to root store");
        roots
    }

    /// Issues a client certificate with subject common name `cn`, signed by this CA.
    pub fn issue(&self, cn: &str) -> ClientCert {
        self.issue_until(cn, None)
    }

    /// Issues a client certificate for `cn` that is valid until `not_after`
    /// (rcgen's default, far in the future, for `None`).
    pub fn issue_until(&self, cn: &str, not_after: Option<time::OffsetDateTime>) -> ClientCert {
        let key = KeyPair::generate().expect("generate client key");
        let mut params = client_params(cn);
        if let Some(not_after) = not_after {
            params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
            params.not_after = not_after;
        }
        let serial = params.serial_number.clone().expect("a serial");
        let cert = params.signed_by(&key, &self.issuer).expect("sign client cert");
        let mut client = ClientCert::new(cert.pem(), cert.der().clone(), &key);
        client.serial = serial;
        client
    }

    /// Writes `<tenant>-crl.pem` in `dir`: this CA's CRL revoking `revoked`.
    pub fn crl(&self, dir: &Path, revoked: &[&ClientCert]) -> PathBuf {
        let now = time::OffsetDateTime::now_utc();
        let params = rcgen::CertificateRevocationListParams {
            this_update: now - time::Duration::minutes(1),
            next_update: now + time::Duration::days(1),
            crl_number: rcgen::SerialNumber::from(fastrand::u64(1..u64::MAX)),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|c| rcgen::RevokedCertParams {
                    serial_number: c.serial.clone(),
                    revocation_time: now - time::Duration::minutes(1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer).expect("sign the CRL");
        write(dir, &format!("{}-crl.pem", self.tenant), &crl.pem().expect("CRL PEM"))
    }
}

fn client_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
    params.distinguished_name = common_name(cn);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // A serial of our own, for CRLs to name.
    params.serial_number = Some(rcgen::SerialNumber::from(fastrand::u64(1..u64::MAX)));
    params
}

/// A self-signed client certificate with common name `cn` (chains to no CA).
pub fn self_signed_client(cn: &str) -> ClientCert {
    let key = KeyPair::generate().expect("generate client key");
    let cert = client_params(cn).self_signed(&key).expect("self-sign client cert");
    ClientCert::new(cert.pem(), cert.der().clone(), &key)
}

/// A client certificate (leaf only) and its private key.
pub struct ClientCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (PKCS#8).
    pub key_pem: String,
    /// The certificate, DER.
    pub cert_der: CertificateDer<'static>,
    /// The private key, PKCS#8 DER.
    pub key_der: Vec<u8>,
    /// Its serial number.
    pub serial: rcgen::SerialNumber,
}

impl ClientCert {
    fn new(cert_pem: String, cert_der: CertificateDer<'static>, key: &KeyPair) -> ClientCert {
        ClientCert {
            cert_pem,
            key_pem: key.serialize_pem(),
            cert_der,
            key_der: key.serialize_der(),
            serial: rcgen::SerialNumber::from(0u64),
        }
    }

    /// The chain as presented in the TLS handshake (the leaf only).
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert_der.clone()]
    }

    /// The private key as rustls wants it.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("parse client key PEM")
    }

    /// Chain and key, for [`client_config`].
    pub fn cert_and_key(&self) -> CertAndKey {
        (self.chain(), self.key())
    }
}

/// A rustls client configuration (ring provider, TLS 1.3 and 1.2) that
/// trusts the CA in `ca_pem_path`, optionally presents `client_cert`, and
/// offers ALPN `awp/1` when `alpn` is true. For `tokio_rustls::TlsConnector`.
pub fn client_config(ca_pem_path: &Path, client_cert: Option<CertAndKey>, alpn: bool) -> Arc<ClientConfig> {
    client_config_with_versions(
        ca_pem_path,
        client_cert,
        alpn,
        &[&rustls::version::TLS13, &rustls::version::TLS12],
    )
}

/// [`client_config`] restricted to the given protocol versions, e.g.
/// `&[&rustls::version::TLS12]` for a TLS 1.2-only client.
pub fn client_config_with_versions(
    ca_pem_path: &Path,
    client_cert: Option<CertAndKey>,
    alpn: bool,
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem_path).expect("open CA PEM") {
        roots.add(cert.expect("parse CA PEM")).expect("add CA to root store");
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .with_root_certificates(roots);
    let mut config = match client_cert {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).expect("client cert and key"),
        None => builder.with_no_client_auth(),
    };
    if alpn {
        config.alpn_protocols = vec![b"awp/1".to_vec()];
    }
    Arc::new(config)
}
