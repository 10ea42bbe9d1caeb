//! The client over TLS to a real gateway (rustls both sides, ALPN awp/1,
//! TLS 1.3): a token with the tenant's CA given as PEM, a device
//! certificate whose common name is the device, and a gateway whose
//! certificate the client cannot trust (it keeps the records and retries;
//! it does not stop).

mod support;

use std::time::Duration;

use awp_client::{Auth, Client, QueuePlace, Tls};
use awp_gateway::config::Config;
use awp_testkit::certs::{ClientCa, TestPki};
use support::*;

async fn tls_gateway(pki: &TestPki, partner: &ClientCa, data: &std::path::Path) -> awp_gateway::RunningServer {
    let config = Config::parse(&format!(
        "[server]\nlisten = []\ntls_listen = [\"127.0.0.1:0\"]\nadmin_listen = \"127.0.0.1:0\"\n\
         [tls]\ncert = \"{}\"\nkey = \"{}\"\n[sink]\ndata_dir = \"{}\"\n\
         [[tenants]]\nid = \"{TENANT}\"\nsecrets = [\"{SECRET}\"]\nclient_ca = \"{}\"\n",
        pki.server_cert.display(),
        pki.server_key.display(),
        data.display(),
        partner.path.display(),
    ))
    .unwrap();
    awp_gateway::start(&config).await.unwrap()
}

fn tls(pki: &TestPki) -> Tls {
    Tls {
        ca_pem: Some(std::fs::read(&pki.ca_pem).unwrap()),
        server_name: Some("localhost".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_and_a_device_certificate_both_deliver_over_tls() {
    let pki = TestPki::new();
    let partner = pki.tenant_ca(TENANT);
    let data = tempfile::tempdir().unwrap();
    let gateway = tls_gateway(&pki, &partner, data.path()).await;
    let addr = gateway.tls_addrs[0];

    let mut by_token = config(addr, "tls-token", Auth::Token(token("tls-token")), QueuePlace::Memory);
    by_token.tls = Some(tls(&pki));
    let device = partner.issue("tls-cert");
    let mut by_cert = config(
        addr,
        "tls-cert",
        Auth::ClientCert {
            cert_pem: device.cert_pem.clone().into_bytes(),
            key_pem: device.key_pem.clone().into_bytes(),
        },
        QueuePlace::Memory,
    );
    by_cert.tls = Some(tls(&pki));

    tokio::task::spawn_blocking(move || {
        for config in [by_token, by_cert] {
            let client = Client::open(config).unwrap();
            for i in 0..300 {
                client.push(&location(i)).unwrap();
            }
            client.flush(Duration::from_secs(30)).unwrap();
            let stats = client.stats();
            assert_eq!(stats.records_acked, 300);
            assert_eq!(stats.connection_failures, 0, "{:?}", stats.last_error);
            client.close();
        }
    })
    .await
    .unwrap();
    assert_eq!(stored(data.path(), "tls-token"), (0..300).collect::<Vec<u64>>());
    assert_eq!(stored(data.path(), "tls-cert"), (0..300).collect::<Vec<u64>>());
    assert!(gateway.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_the_client_cannot_trust_gets_nothing_and_the_records_wait() {
    let pki = TestPki::new();
    let other = TestPki::new();
    let partner = pki.tenant_ca(TENANT);
    let data = tempfile::tempdir().unwrap();
    let gateway = tls_gateway(&pki, &partner, data.path()).await;
    let mut c = config(
        gateway.tls_addrs[0],
        "untrusting",
        Auth::Token(token("untrusting")),
        QueuePlace::Memory,
    );
    c.tls = Some(tls(&other));
    tokio::task::spawn_blocking(move || {
        let client = Client::open(c).unwrap();
        client.push(&location(1)).unwrap();
        assert!(matches!(
            client.flush(Duration::from_secs(2)),
            Err(awp_client::ClientError::Timeout)
        ));
        let stats = client.stats();
        assert!(stats.connection_failures >= 1);
        assert!(stats.stopped.is_none(), "a TLS failure is retried, not final");
        let why = stats.last_error.unwrap_or_default();
        assert!(why.contains("certificate") || why.contains("Certificate"), "{why}");
        assert_eq!(stats.queue.unsealed_records + stats.queue.pending_batches, 1);
        client.close();
    })
    .await
    .unwrap();
    assert!(stored(data.path(), "untrusting").is_empty());
    assert!(gateway.shutdown().await);
}
