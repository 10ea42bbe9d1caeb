//! The gateway over real TLS: token and client-certificate authentication,
//! ALPN, TLS on the plaintext port, and the handshake deadline.

use awp_testkit::certs;
mod support;

use std::sync::Arc;
use std::time::Duration;

use awp_protocol::{AckStatus, ErrorCode, Frame, MAGIC};
use certs::{TestPki, client_config};
use rustls_pki_types::ServerName;
use support::{Client, TestServer, vector};
use tokio_rustls::TlsConnector;

struct TlsSetup {
    server: TestServer,
    pki: TestPki,
    partner_b: certs::ClientCa,
}

async fn tls_server() -> TlsSetup {
    let pki = TestPki::new();
    let partner_b = pki.tenant_ca("partner_b");
    let (cert, key, ca) = (pki.server_cert.clone(), pki.server_key.clone(), partner_b.path.clone());
    let server = TestServer::start(move |c| {
        c.server.tls_listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.server.tls_handshake_timeout = std::time::Duration::from_millis(300);
        c.tls = Some(awp_gateway::config::TlsConfig { cert, key });
        c.tenants.push(awp_gateway::config::TenantConfig {
            id: "partner_b".into(),
            secrets: vec![],
            client_ca: Some(ca),
            crl: None,
            require_tls: false,
            retention_days: Some(30),
            sink: None,
            dynamodb: None,
            max_connections: None,
            records_per_second: None,
            bytes_per_second: None,
            device_records_per_second: None,
            layout: Default::default(),
        });
    })
    .await;
    TlsSetup { server, pki, partner_b }
}

async fn connect(
    setup: &TlsSetup,
    config: Arc<rustls::ClientConfig>,
) -> Client<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(setup.server.server.tls_addrs[0])
        .await
        .unwrap();
    let tls = TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    Client::new(tls)
}

#[tokio::test]
async fn a_token_agent_stores_a_batch_over_tls_with_or_without_alpn() {
    let setup = tls_server().await;
    for alpn in [true, false] {
        let mut c = connect(&setup, client_config(&setup.pki.ca_pem, None, alpn)).await;
        let negotiated = c.stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        assert_eq!(negotiated, alpn.then(|| b"awp/1".to_vec()));
        c.hello().await;
        c.send(&vector("batch_mixed_kinds")).await;
        assert!(matches!(c.next().await, Some(Frame::Ack(a)) if a.seq == 77 && a.status == AckStatus::Ok));
    }
    setup.server.server.shutdown().await;
}

async fn cert_hello(setup: &TlsSetup, cert: Option<certs::CertAndKey>) -> Option<Frame> {
    let mut c = connect(setup, client_config(&setup.pki.ca_pem, cert, true)).await;
    let mut bytes = MAGIC.to_vec();
    // tenant partner_b, device mac-7, auth_method 2.
    bytes.extend(vector("hello_client_cert"));
    c.send(&bytes).await;
    c.next().await
}

#[tokio::test]
async fn client_certificates_authenticate_the_device_they_name() {
    let setup = tls_server().await;
    let good = setup.partner_b.issue("mac-7").cert_and_key();
    assert!(matches!(cert_hello(&setup, Some(good)).await, Some(Frame::Welcome(_))));

    let other_device = setup.partner_b.issue("mac-8").cert_and_key();
    let other_tenant = setup.pki.tenant_ca("acme").issue("mac-7").cert_and_key();
    let self_signed = certs::self_signed_client("mac-7").cert_and_key();
    // Every refusal is the protocol's AUTH_FAILED at HELLO, never a TLS alert
    // (which would tell a prober which CAs the gateway knows).
    for (what, cert) in [
        ("another CN", Some(other_device)),
        ("another tenant's CA", Some(other_tenant)),
        ("self-signed", Some(self_signed)),
        ("no certificate", None),
    ] {
        match cert_hello(&setup, cert).await {
            Some(Frame::Error(e)) => {
                assert_eq!(e.error_code(), Some(ErrorCode::AuthFailed), "{what}");
                assert_eq!(e.message, "authentication failed", "{what}");
            }
            other => panic!("{what}: expected AUTH_FAILED, got {other:?}"),
        }
    }
    // A token agent that happens to present an unrelated certificate still gets in.
    let stray = certs::self_signed_client("laptop").cert_and_key();
    let mut c = connect(&setup, client_config(&setup.pki.ca_pem, Some(stray), true)).await;
    c.hello().await;
    setup.server.server.shutdown().await;
}

#[tokio::test]
async fn tls_on_the_plain_port_is_told_so() {
    let setup = tls_server().await;
    let tcp = tokio::net::TcpStream::connect(setup.server.addr()).await.unwrap();
    let connector = TlsConnector::from(client_config(&setup.pki.ca_pem, None, true));
    // The handshake fails: the server answers the ClientHello with an AWP ERROR.
    let result = tokio::time::timeout(
        Duration::from_secs(5),
        connector.connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await
    .unwrap();
    assert!(result.is_err());
    // Seen by a plain client: BAD_MAGIC naming TLS.
    let mut c = setup.server.connect().await;
    c.send(&[0x16, 0x03, 0x01, 0x00, 0xc8, 0x01]).await;
    let message = c.expect_error(ErrorCode::BadMagic).await;
    assert!(message.contains("TLS"), "{message}");
    setup.server.server.shutdown().await;
}

#[tokio::test]
async fn a_silent_tls_client_is_dropped_at_the_handshake_deadline() {
    use tokio::io::AsyncReadExt;
    let setup = tls_server().await;
    let mut tcp = tokio::net::TcpStream::connect(setup.server.server.tls_addrs[0])
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut b = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut b))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without a byte");
    assert!(started.elapsed() >= Duration::from_millis(250));
    setup.server.server.shutdown().await;
}

#[tokio::test]
async fn every_invalid_vector_gets_its_answer_over_tls() {
    let setup = tls_server().await;
    for v in &awp_testkit::vectors().invalid {
        let c = connect(&setup, client_config(&setup.pki.ca_pem, None, true)).await;
        support::check_invalid_vector(c, v).await;
    }
    setup.server.server.shutdown().await;
}

#[tokio::test]
async fn dev_certs_give_a_working_tls_and_mtls_setup() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("dev-certs")
        .arg(&pki)
        .args(["--device", "partner_b/mac-7", "--device", "partner_b/mac-8"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let usage = String::from_utf8(out.stdout).unwrap();
    assert!(usage.contains("client_ca = ") && usage.contains("--tls-ca"), "{usage}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(pki.join("partner_b-mac-7.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "keys are private");
    // Run again into the same directory: nothing to add is refused, a
    // device there already is refused, nothing is overwritten.
    let ca_before = std::fs::read(pki.join("partner_b-ca.pem")).unwrap();
    let dev_certs = |devices: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"));
        c.arg("dev-certs").arg(&pki);
        for d in devices {
            c.args(["--device", d]);
        }
        c.output().unwrap()
    };
    let again = dev_certs(&[]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("name the devices to add"));
    let again = dev_certs(&["partner_b/mac-8"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("partner_b-mac-8.pem: already exists"));
    // A device added later: signed by the tenant's CA already configured.
    let added = dev_certs(&["partner_b/mac-9"]);
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    assert!(String::from_utf8_lossy(&added.stdout).contains("Devices added"));
    assert_eq!(std::fs::read(pki.join("partner_b-ca.pem")).unwrap(), ca_before);

    // The gateway with those files; the device with its certificate.
    let (cert, key, ca) = (
        pki.join("server.pem"),
        pki.join("server.key"),
        pki.join("partner_b-ca.pem"),
    );
    let server = TestServer::start(move |c| {
        c.server.tls_listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.tls = Some(awp_gateway::config::TlsConfig { cert, key });
        c.tenants.push(awp_gateway::config::TenantConfig {
            id: "partner_b".into(),
            secrets: vec![],
            client_ca: Some(ca),
            crl: None,
            require_tls: false,
            retention_days: None,
            sink: None,
            dynamodb: None,
            max_connections: None,
            records_per_second: None,
            bytes_per_second: None,
            device_records_per_second: None,
            layout: Default::default(),
        });
    })
    .await;
    use rustls_pki_types::pem::PemObject;
    let chain: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(pki.join("partner_b-mac-7.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let device_key = rustls_pki_types::PrivateKeyDer::from_pem_file(pki.join("partner_b-mac-7.key")).unwrap();
    let config = client_config(&pki.join("ca.pem"), Some((chain, device_key)), true);
    let tcp = tokio::net::TcpStream::connect(server.server.tls_addrs[0])
        .await
        .unwrap();
    let tls = TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("the server certificate verifies against ca.pem");
    let mut c = Client::new(tls);
    let mut bytes = MAGIC.to_vec();
    // tenant partner_b, device mac-7, auth_method 2 (client certificate).
    bytes.extend(vector("hello_client_cert"));
    c.send(&bytes).await;
    assert!(matches!(c.next().await, Some(Frame::Welcome(_))));
    // The device added to the folder later is taken too.
    let chain: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(pki.join("partner_b-mac-9.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let device_key = rustls_pki_types::PrivateKeyDer::from_pem_file(pki.join("partner_b-mac-9.key")).unwrap();
    let config = client_config(&pki.join("ca.pem"), Some((chain, device_key)), true);
    let tcp = tokio::net::TcpStream::connect(server.server.tls_addrs[0])
        .await
        .unwrap();
    let tls = TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut added = Client::new(tls);
    let hello = Frame::Hello(awp_protocol::Hello {
        min_version: 1,
        max_version: 1,
        tenant_id: "partner_b".into(),
        device_id: "mac-9".into(),
        platform: awp_protocol::Platform::MacOs,
        agent_version: "1".into(),
        compression: awp_protocol::CompressionSet::ALL,
        auth: awp_protocol::HelloAuth::ClientCert,
    });
    added
        .send(&[MAGIC.to_vec(), hello.to_bytes().unwrap().to_vec()].concat())
        .await;
    assert!(matches!(added.next().await, Some(Frame::Welcome(_))));
    // Both certificates' expiry is in /metrics, for an alert.
    let metrics = support::http_get(server.server.admin_addr.unwrap(), "/metrics").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for certificate in ["server", "client_ca:partner_b"] {
        let prefix = format!("awp_tls_certificate_expiry_timestamp_seconds{{certificate=\"{certificate}\"}} ");
        let value: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("{prefix} missing from /metrics"))
            .parse()
            .unwrap();
        assert!(value > now, "{certificate} expires at {value}");
    }
    server.server.shutdown().await;
}
