//! The gateway as an attacker and as an operator answering a leak meet it,
//! against the `gateway` binary on loopback: revoked credentials end live
//! sessions, a device cannot escape its quota by reconnecting, PROXY
//! headers are believed only from trusted balancers, the admin endpoint
//! changes nothing for a browser page or a stranger, secrets never reach
//! output, and log lines cannot be flooded or forged.

use awp_testkit::certs;
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use awp_protocol::{AckStatus, Batch, Compression, ErrorCode, Frame, Limits, Location, MAGIC, Record, RecordBody};
use certs::{ClientCert, TestPki, client_config};
use rustls_pki_types::ServerName;
use support::Client;
use support::binary::{Gateway, http_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const OLD: &str = "old-secret-0123456789abcdefghijklmnopqrstuv";
const NEW: &str = "new-secret-0123456789abcdefghijklmnopqrstuv";

/// Writes `dir/gateway.toml`: loopback listeners, `server` lines, SQLite
/// under `dir/data`, and `tenants` as given.
fn write_config(dir: &Path, server: &str, tenants: &str) -> PathBuf {
    let file = dir.join("gateway.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin_listen = \"127.0.0.1:0\"\n{server}\n[sink]\ndata_dir = \"{}\"\n{tenants}",
            dir.join("data").display()
        ),
    )
    .unwrap();
    file
}

fn acme(secrets: &[&str], more: &str) -> String {
    let secrets: Vec<String> = secrets.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "[[tenants]]\nid = \"acme\"\nsecrets = [{}]\n{more}\n",
        secrets.join(", ")
    )
}

/// A token HELLO for `device` of `acme` under `secret`, valid until `expiry`.
fn hello(device: &str, secret: &str, expiry: u64) -> Vec<u8> {
    let hello = Frame::Hello(awp_protocol::Hello {
        min_version: 1,
        max_version: 1,
        tenant_id: "acme".into(),
        device_id: device.into(),
        platform: awp_protocol::Platform::Linux,
        agent_version: "1".into(),
        compression: awp_protocol::CompressionSet::ALL,
        auth: awp_protocol::HelloAuth::Token {
            expiry,
            token: awp_protocol::token::device_token(secret.as_bytes(), "acme", device, expiry),
        },
    });
    [MAGIC.to_vec(), hello.to_bytes().unwrap().to_vec()].concat()
}

/// A HELLO asking for client-certificate authentication as `device`.
fn cert_hello(device: &str) -> Vec<u8> {
    let hello = Frame::Hello(awp_protocol::Hello {
        min_version: 1,
        max_version: 1,
        tenant_id: "acme".into(),
        device_id: device.into(),
        platform: awp_protocol::Platform::Linux,
        agent_version: "1".into(),
        compression: awp_protocol::CompressionSet::ALL,
        auth: awp_protocol::HelloAuth::ClientCert,
    });
    [MAGIC.to_vec(), hello.to_bytes().unwrap().to_vec()].concat()
}

fn batch(seq: u64, records: usize) -> Vec<u8> {
    let b = Batch {
        seq,
        base_time_ms: 1_764_000_000_000,
        records: (0..records)
            .map(|i| Record {
                time_offset_ms: i as i64,
                body: RecordBody::Location(Location {
                    lat_e7: 1,
                    lon_e7: 2,
                    accuracy_m: 3,
                }),
            })
            .collect(),
    };
    let mut buf = bytes::BytesMut::new();
    b.encode(Compression::None, &Limits::DEFAULT, &mut buf).unwrap();
    buf.to_vec()
}

async fn welcomed<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(c: &mut Client<S>, hello: &[u8]) {
    c.send(hello).await;
    match c.next().await {
        Some(Frame::Welcome(_)) => {}
        other => panic!("expected WELCOME, got {other:?}"),
    }
}

async fn auth_failed<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(c: &mut Client<S>, hello: &[u8]) {
    c.send(hello).await;
    c.expect_error(ErrorCode::AuthFailed).await;
}

async fn ack<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(c: &mut Client<S>, seq: u64) -> AckStatus {
    match c.next().await {
        Some(Frame::Ack(a)) if a.seq == seq => a.status,
        other => panic!("expected the ACK of {seq}, got {other:?}"),
    }
}

async fn goaway<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    c: &mut Client<S>,
    within: Duration,
) -> String {
    match c.next_within(within).await {
        Ok(Some(Frame::GoAway(g))) => g.reason,
        other => panic!("expected GOAWAY, got {other:?}"),
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A secret removed by a reload (the leak's answer) ends the sessions that
/// authenticated with it at once; their agents' next HELLO fails; sessions
/// on the secret kept go on.
#[tokio::test]
async fn a_reload_that_removes_a_secret_sends_its_live_sessions_away() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", &acme(&[OLD, NEW], ""));
    let gateway = Gateway::start(&config, &[]).await;
    let mut leaked = gateway.connect().await;
    welcomed(&mut leaked, &hello("phone-1", OLD, 0)).await;
    let mut kept = gateway.connect().await;
    welcomed(&mut kept, &hello("phone-2", NEW, 0)).await;
    leaked.send(&batch(1, 5)).await;
    assert_eq!(ack(&mut leaked, 1).await, AckStatus::Ok);

    write_config(dir.path(), "", &acme(&[NEW], ""));
    let (status, body) = gateway.reload().await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("1 sessions whose credentials no longer authenticate told to go away"),
        "{body}"
    );
    let reason = goaway(&mut leaked, Duration::from_secs(5)).await;
    assert!(reason.contains("credentials no longer valid"), "{reason}");
    // Nothing in flight: the connection ends, nothing more is taken from it.
    assert!(leaked.next().await.is_none());
    auth_failed(&mut gateway.connect().await, &hello("phone-1", OLD, 0)).await;
    kept.send(&batch(1, 5)).await;
    assert_eq!(ack(&mut kept, 1).await, AckStatus::Ok);
    assert_eq!(gateway.metric("awp_sessions_revoked_total").await, Some(1.0));
    gateway.stop().await;
}

/// A token's expiry ends the session it opened (GOAWAY); the agent must
/// come back with a fresh token.
#[tokio::test]
async fn a_session_ends_when_its_token_expires() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", &acme(&[NEW], ""));
    let gateway = Gateway::start(&config, &[]).await;
    let mut c = gateway.connect().await;
    let expiry = now_secs() + 2;
    welcomed(&mut c, &hello("phone-1", NEW, expiry)).await;
    c.send(&batch(1, 5)).await;
    assert_eq!(ack(&mut c, 1).await, AckStatus::Ok);
    let reason = goaway(&mut c, Duration::from_secs(5)).await;
    assert!(reason.contains("credentials expired"), "{reason}");
    assert!(now_secs() >= expiry, "not before the expiry");
    assert!(c.next().await.is_none(), "the connection ends");
    auth_failed(&mut gateway.connect().await, &hello("phone-1", NEW, expiry)).await;
    assert_eq!(
        gateway.metric("awp_sessions_credentials_expired_total").await,
        Some(1.0)
    );
    gateway.stop().await;
}

/// mTLS: the tenant's CA, a CRL, a TLS listener.
struct Mtls {
    pki: TestPki,
    ca: certs::ClientCa,
}

impl Mtls {
    fn new() -> Mtls {
        let pki = TestPki::new();
        let ca = pki.tenant_ca("acme");
        Mtls { pki, ca }
    }

    /// The configuration, with a CRL revoking `revoked` when given.
    fn write(&self, dir: &Path, revoked: Option<&[&ClientCert]>, more: &str) -> PathBuf {
        let crl = revoked.map(|r| self.ca.crl(dir, r));
        let tenant = format!(
            "[[tenants]]\nid = \"acme\"\nclient_ca = \"{}\"\n{}{more}\n",
            self.ca.path.display(),
            crl.map(|c| format!("crl = \"{}\"\n", c.display())).unwrap_or_default()
        );
        let tls = format!(
            "tls_listen = [\"127.0.0.1:0\"]\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            self.pki.server_cert.display(),
            self.pki.server_key.display()
        );
        write_config(dir, &tls, &tenant)
    }

    async fn connect(
        &self,
        gateway: &Gateway,
        cert: Option<&ClientCert>,
    ) -> Client<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let tcp = tokio::net::TcpStream::connect(gateway.tls_agents.unwrap())
            .await
            .unwrap();
        let config = client_config(&self.pki.ca_pem, cert.map(ClientCert::cert_and_key), true);
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        Client::new(tls)
    }
}

/// A certificate a CRL lists fails at HELLO; a live session whose
/// certificate a reload's CRL revokes is sent away; a certificate's
/// notAfter ends its session.
#[tokio::test]
async fn revoked_and_expired_certificates_end_their_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let mtls = Mtls::new();
    let (kept, leaked, listed) = (
        mtls.ca.issue("phone-1"),
        mtls.ca.issue("phone-2"),
        mtls.ca.issue("phone-3"),
    );
    let short = mtls.ca.issue_until(
        "phone-4",
        Some(time::OffsetDateTime::now_utc() + time::Duration::seconds(3)),
    );
    let config = mtls.write(dir.path(), Some(&[&listed]), "");
    let gateway = Gateway::start(&config, &[]).await;
    // Listed in the CRL: refused at HELLO.
    auth_failed(&mut mtls.connect(&gateway, Some(&listed)).await, &cert_hello("phone-3")).await;
    let mut kept_session = mtls.connect(&gateway, Some(&kept)).await;
    welcomed(&mut kept_session, &cert_hello("phone-1")).await;
    let mut leaked_session = mtls.connect(&gateway, Some(&leaked)).await;
    welcomed(&mut leaked_session, &cert_hello("phone-2")).await;
    let mut short_session = mtls.connect(&gateway, Some(&short)).await;
    welcomed(&mut short_session, &cert_hello("phone-4")).await;

    // phone-2's key leaked: a new CRL lists it too, and a reload applies it.
    mtls.write(dir.path(), Some(&[&listed, &leaked]), "");
    let (status, body) = gateway.reload().await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("1 sessions whose credentials no longer authenticate"),
        "{body}"
    );
    let reason = goaway(&mut leaked_session, Duration::from_secs(5)).await;
    assert!(reason.contains("credentials no longer valid"), "{reason}");
    auth_failed(&mut mtls.connect(&gateway, Some(&leaked)).await, &cert_hello("phone-2")).await;
    // phone-4's certificate runs out.
    let reason = goaway(&mut short_session, Duration::from_secs(6)).await;
    assert!(reason.contains("credentials expired"), "{reason}");
    // phone-1 goes on.
    kept_session.send(&batch(1, 5)).await;
    assert_eq!(ack(&mut kept_session, 1).await, AckStatus::Ok);
    gateway.stop().await;
}

/// A tenant with `require_tls` is refused on the plaintext listener, with
/// the same AUTH_FAILED as any failure, and served over TLS.
#[tokio::test]
async fn a_tenant_that_requires_tls_is_refused_on_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let mtls = Mtls::new();
    let config = mtls.write(dir.path(), None, &format!("secrets = [\"{NEW}\"]\nrequire_tls = true"));
    let gateway = Gateway::start(&config, &[]).await;
    auth_failed(&mut gateway.connect().await, &hello("phone-1", NEW, 0)).await;
    let mut tls = mtls.connect(&gateway, None).await;
    welcomed(&mut tls, &hello("phone-1", NEW, 0)).await;
    gateway.stop().await;
}

/// A device over its quota cannot get a full bucket back by reconnecting:
/// the tenant keeps its bucket across its sessions.
#[tokio::test]
async fn a_device_cannot_refill_its_quota_by_reconnecting() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "max_batch_records = 5",
        &acme(&[NEW], "device_records_per_second = 1"),
    );
    let gateway = Gateway::start(&config, &[]).await;
    let mut stored = 0;
    for connection in 0..3 {
        let mut c = gateway.connect().await;
        welcomed(&mut c, &hello("phone-1", NEW, 0)).await;
        for seq in 1..=2 {
            let seq = connection * 10 + seq;
            c.send(&batch(seq, 5)).await;
            if ack(&mut c, seq).await == AckStatus::Ok {
                stored += 5;
            }
        }
    }
    // One full bucket (5 records), and what a second refills (1 a second).
    assert!(stored <= 10, "{stored} records stored in a few ms at 1 a second");
    let metrics = gateway.get("/metrics").await;
    let over: f64 = metrics
        .lines()
        .find(|l| l.starts_with("awp_quota_exceeded_total{") && l.contains("scope=\"device\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(over >= 4.0, "{over} batches over the device quota");
    gateway.stop().await;
}

/// With `proxy_protocol`, a connection from outside the trusted balancers is
/// closed before anything of it is read: its forged header is never
/// believed.
#[tokio::test]
async fn a_proxy_header_from_outside_the_trusted_networks_is_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "proxy_protocol = true\nproxy_protocol_trusted = [\"10.0.0.0/8\"]",
        &acme(&[NEW], ""),
    );
    let gateway = Gateway::start(&config, &[]).await;
    let mut c = gateway.connect().await;
    let header = ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (
            "203.0.113.7:40001".parse::<std::net::SocketAddr>().unwrap(),
            "10.0.0.1:7700".parse::<std::net::SocketAddr>().unwrap(),
        ),
    )
    .build()
    .unwrap();
    // Closed at once: the write may or may not land, the read ends.
    let _ = c.stream.write_all(&[header, hello("phone-1", NEW, 0)].concat()).await;
    assert!(c.next().await.is_none(), "nothing answered");
    assert_eq!(gateway.metric("awp_proxy_untrusted_total").await, Some(1.0));
    gateway.stop().await;
}

/// Connections that have not sent their PROXY header yet hold places among
/// those waiting to authenticate: idle ones are evicted like any other.
#[tokio::test]
async fn connections_waiting_for_their_proxy_header_are_in_the_waiting_pool() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "proxy_protocol = true\nproxy_protocol_trusted = [\"127.0.0.1\"]\nmax_unauthenticated = 10\n\
         max_unauthenticated_per_source = 1000\ntls_handshake_timeout_ms = 60000",
        &acme(&[NEW], ""),
    );
    let gateway = Gateway::start(&config, &[]).await;
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(tokio::net::TcpStream::connect(gateway.agents).await.unwrap());
    }
    // Past the grace in which a waiting connection is never evicted.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for _ in 0..5 {
        idle.push(tokio::net::TcpStream::connect(gateway.agents).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let evicted = gateway.metric("awp_connections_evicted_total").await.unwrap_or(0.0);
    let waiting = gateway.metric("awp_connections_waiting").await.unwrap_or(0.0);
    assert!(evicted >= 5.0, "{evicted} evicted");
    assert!(
        waiting <= 40.0,
        "{waiting} waiting: the pool of 10 runs over at most 4 times"
    );
    gateway.stop().await;
}

/// `POST /reload`: from loopback with `X-AWP-Admin: 1`; never from a
/// browser page (Origin, a rebound Host, no custom header); with a token
/// file, only with the token.
#[tokio::test]
async fn the_admin_endpoint_changes_nothing_for_a_browser_page_or_a_stranger() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", &acme(&[NEW], ""));
    let gateway = Gateway::start(&config, &[]).await;
    let admin = gateway.admin;
    let status = |answer: String| answer.split(' ').nth(1).unwrap().parse::<u16>().unwrap();
    let post =
        |headers: &'static [&'static str]| async move { status(http_with(admin, "POST", "/reload", headers).await) };
    assert_eq!(post(&["X-AWP-Admin: 1"]).await, 200);
    // A form posted by a page, a fetch from a page, a rebound name.
    assert_eq!(post(&["Content-Type: text/plain"]).await, 403);
    assert_eq!(post(&["X-AWP-Admin: 1", "Origin: https://evil.example"]).await, 403);
    assert_eq!(post(&["X-AWP-Admin: 1", "Host: evil.example"]).await, 403);
    // Reading is open.
    assert!(gateway.get("/metrics").await.starts_with("HTTP/1.1 200"));

    // With a token file: the token, and nothing else.
    let token = "admin-token-0123456789abcdefghijklmnopqrstuvwxyz";
    std::fs::write(dir.path().join("admin.token"), format!("{token}\n")).unwrap();
    write_config(
        dir.path(),
        &format!("admin_token_file = \"{}\"", dir.path().join("admin.token").display()),
        &acme(&[NEW], ""),
    );
    assert_eq!(post(&["X-AWP-Admin: 1"]).await, 200, "the reload that reads the token");
    assert_eq!(post(&["X-AWP-Admin: 1"]).await, 401);
    let bearer = format!("Authorization: Bearer {token}");
    let answer = http_with(admin, "POST", "/reload", &[&bearer]).await;
    assert_eq!(status(answer.clone()), 200, "{answer}");
    let refused = gateway.metric("awp_config_reloads_total{outcome=\"ok\"}").await;
    assert_eq!(refused, Some(3.0), "only the allowed reloads ran");
    gateway.stop().await;
}

/// The admin endpoint holds few connections, each for a short while: a
/// slow request head is cut off, and past the cap new connections are
/// closed while the endpoint still answers once they go.
#[tokio::test]
async fn the_admin_endpoint_bounds_its_connections() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", &acme(&[NEW], ""));
    let gateway = Gateway::start(&config, &[]).await;
    let mut slow = tokio::net::TcpStream::connect(gateway.admin).await.unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), slow.read_to_end(&mut buf))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "cut off after the header timeout"
    );
    // One address holds at most 8: the 9th is closed at once, and the
    // endpoint is still there for everybody else.
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(tokio::net::TcpStream::connect(gateway.admin).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut over = tokio::net::TcpStream::connect(gateway.admin).await.unwrap();
    let mut one = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(2), over.read(&mut one)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the 9th is closed: {read:?}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(gateway.get("/healthz").await.starts_with("HTTP/1.1 200"));
    gateway.stop().await;
}

/// A secret typed into the wrong shape never appears in `check-config`'s
/// output, in the answer of `POST /reload`, or in the log.
#[tokio::test]
async fn a_secret_in_the_wrong_shape_is_never_printed() {
    let secret = "TopSecret-never-to-be-printed-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let bad = format!("[[tenants]]\nid = \"acme\"\nsecrets = \"{secret}\"\n");
    let file = write_config(dir.path(), "", &bad);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("--config")
        .arg(&file)
        .arg("check-config")
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        !out.status.success() && err.contains("tenants[0].secrets: invalid type: string"),
        "{err}"
    );
    assert!(!err.contains("TopSecret"), "{err}");

    let config = write_config(dir.path(), "", &acme(&[NEW], ""));
    let mut gateway = Gateway::start(&config, &[]).await;
    write_config(dir.path(), "", &bad);
    let (status, body) = gateway.reload().await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("tenants[0].secrets") && !body.contains("TopSecret"),
        "{body}"
    );
    let line = gateway.log_line("configuration reload refused").await;
    assert!(!line.contains("TopSecret"), "{line}");
    gateway.stop().await;
}

/// `check-config` warns of what is valid but unsafe, naming the field and
/// never the secret: a short secret, tokens on a plaintext listener on the
/// network, an admin endpoint on the network without a token.
#[test]
fn check_config_warns_of_unsafe_settings() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(
        &file,
        "[server]\nlisten = [\"0.0.0.0:7700\"]\nadmin_listen = \"0.0.0.0:9464\"\n[[tenants]]\nid = \"acme\"\n\
         secrets = [\"short-secret-1\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("--config")
        .arg(&file)
        .arg("check-config")
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(lines[0].starts_with("gateway: warning: tenants[0].secrets[0]: weak secret, 14 characters"));
    assert!(lines[1].starts_with("gateway: warning: server.listen: plaintext on 0.0.0.0:7700"));
    assert!(lines[2].starts_with("gateway: warning: server.admin_listen: 0.0.0.0:9464 is not loopback"));
    assert!(!err.contains("short-secret-1"));
}

/// Strangers' connections cannot flood the log (pre-authentication lines
/// are sampled, the metrics count them all), and an agent's ERROR message
/// cannot forge log lines (control characters escaped).
#[tokio::test]
async fn strangers_cannot_flood_or_forge_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", &acme(&[NEW], ""));
    let mut gateway = Gateway::start(&config, &[]).await;
    for _ in 0..200 {
        let mut c = gateway.connect().await;
        auth_failed(&mut c, &hello("phone-1", OLD, 0)).await;
    }
    assert_eq!(
        gateway
            .metric("awp_auth_failures_total{reason=\"bad_token\",tenant=\"acme\"}")
            .await,
        Some(200.0)
    );
    // A later line says how many were left out.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    auth_failed(&mut gateway.connect().await, &hello("phone-1", OLD, 0)).await;
    // Every line since the start, counted, and every summary's count added
    // up: each failure was logged or counted as left out.
    let (mut logged, mut left_out, mut summaries) = (0u64, 0u64, 0);
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_millis(1500), gateway.log.recv()).await {
        logged += u64::from(line.contains("HELLO did not authenticate"));
        if let Some(rest) = line.split("\"left_out\":").nth(1) {
            summaries += 1;
            left_out += rest
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap();
        }
    }
    assert!(
        summaries >= 1 && left_out >= 100,
        "{left_out} left out in {summaries} summaries"
    );
    assert!(
        logged >= 1 && logged <= 3 * awp_gateway_lines_per_second() as u64,
        "{logged} lines"
    );
    assert_eq!(logged + left_out, 201, "each failure logged or counted as left out");

    // An authenticated agent's ERROR with a newline stays one line.
    let mut c = gateway.connect().await;
    welcomed(&mut c, &hello("phone-1", NEW, 0)).await;
    let forged = "bye\n{\"level\":\"INFO\",\"fields\":{\"message\":\"admin logged in\"}}";
    c.send(
        &Frame::Error(awp_protocol::ErrorFrame::new(ErrorCode::Internal, forged))
            .to_bytes()
            .unwrap(),
    )
    .await;
    let line = gateway.log_line("client sent ERROR").await;
    assert!(line.contains("bye\\\\n{"), "escaped, then JSON-escaped: {line}");
    assert!(serde_json::from_str::<serde_json::Value>(&line).is_ok());
    gateway.stop().await;
}

/// The most pre-authentication lines a second (the gateway's constant).
fn awp_gateway_lines_per_second() -> usize {
    20
}
