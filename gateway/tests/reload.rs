//! Reloading the configuration (`POST /reload`, SIGHUP) with agents
//! connected: tenants added and removed, secrets and certificates rotated,
//! and configurations refused whole.

use awp_testkit::certs;
mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use awp_gateway::config::Config;
use awp_gateway::{RunningServer, start};
use awp_protocol::sample::typical_batch;
use awp_protocol::{AckStatus, Compression, ErrorCode, Frame, Limits};
use rustls_pki_types::ServerName;
use support::Client;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A gateway started from a configuration file that the test rewrites.
struct Reloadable {
    server: RunningServer,
    file: PathBuf,
    /// More of the `[server]` section, kept across rewrites.
    server_extra: String,
    dir: tempfile::TempDir,
}

/// The configuration text: loopback listeners on free ports (`listen`
/// replaces the agent listener), `server` more of the `[server]` section,
/// SQLite under `dir/data`, and `rest` (tenants, TLS).
fn config_text(dir: &Path, listen: &str, server: &str, rest: &str) -> String {
    format!(
        r#"
[server]
listen = ["{listen}"]
{server}
admin_listen = "127.0.0.1:0"
drain_timeout_ms = 5000

[sink]
data_dir = "{}"

{rest}
"#,
        dir.join("data").display()
    )
}

/// A tenant with one secret; the tests name secrets short, the gateway
/// wants them at least 8 characters long.
fn tenant(id: &str, secret: &str) -> String {
    tenant_with(id, &[secret])
}

/// A tenant with several secrets at once (a rotation under way).
fn tenant_with(id: &str, secrets: &[&str]) -> String {
    let secrets: Vec<String> = secrets.iter().map(|s| format!("\"{}\"", long(s))).collect();
    format!("[[tenants]]\nid = \"{id}\"\nsecrets = [{}]\n", secrets.join(", "))
}

fn long(secret: &str) -> String {
    format!("{secret}-0123456789")
}

impl Reloadable {
    async fn start(rest: &str) -> Reloadable {
        Self::start_with("", rest).await
    }

    async fn start_with(server_extra: &str, rest: &str) -> Reloadable {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gateway.toml");
        std::fs::write(&file, config_text(dir.path(), "127.0.0.1:0", server_extra, rest)).unwrap();
        let server = start(&Config::load(&file).unwrap()).await.unwrap();
        let source = file.clone();
        server.set_config_source(Arc::new(move || Ok(Config::load(&source)?)));
        Reloadable {
            server,
            file,
            server_extra: server_extra.to_owned(),
            dir,
        }
    }

    /// Rewrites the file with the same listener and `rest`.
    fn rewrite(&self, rest: &str) {
        self.rewrite_listen("127.0.0.1:0", rest);
    }

    fn rewrite_listen(&self, listen: &str, rest: &str) {
        let text = config_text(self.dir.path(), listen, &self.server_extra, rest);
        std::fs::write(&self.file, text).unwrap();
    }

    /// `POST /reload`: the status code and the body.
    async fn post_reload(&self) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(self.server.admin_addr.unwrap())
            .await
            .unwrap();
        s.write_all(b"POST /reload HTTP/1.1\r\nHost: localhost\r\nX-AWP-Admin: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
        (status, body)
    }

    async fn hello(&self, tenant: &str, secret: &str, device: &str) -> (Client<tokio::net::TcpStream>, Option<Frame>) {
        let mut c = Client::new(
            tokio::net::TcpStream::connect(self.server.plain_addrs[0])
                .await
                .unwrap(),
        );
        c.send_hello_as(tenant, &long(secret), device).await;
        let answer = c.next().await;
        (c, answer)
    }

    async fn welcomed(&self, tenant: &str, secret: &str, device: &str) -> Client<tokio::net::TcpStream> {
        match self.hello(tenant, secret, device).await {
            (c, Some(Frame::Welcome(_))) => c,
            (_, other) => panic!("{tenant}/{device}: expected WELCOME, got {other:?}"),
        }
    }
}

/// Sends a 20-record batch with `seq` and asserts it is acknowledged OK.
async fn stored<S: AsyncRead + AsyncWrite + Unpin>(c: &mut Client<S>, seq: u64) {
    let mut bytes = bytes::BytesMut::new();
    typical_batch(seq, 20, seq)
        .encode(Compression::None, &Limits::DEFAULT, &mut bytes)
        .unwrap();
    c.send(&bytes).await;
    match c.next().await {
        Some(Frame::Ack(a)) if a.seq == seq && a.status == AckStatus::Ok => {}
        other => panic!("expected ACK OK for {seq}, got {other:?}"),
    }
}

async fn auth_fails(gateway: &Reloadable, tenant: &str, secret: &str, device: &str) {
    let (mut c, answer) = gateway.hello(tenant, secret, device).await;
    match answer {
        Some(Frame::Error(e)) => assert_eq!(e.error_code(), Some(ErrorCode::AuthFailed), "{}", e.message),
        other => panic!("{tenant}/{device}: expected AUTH_FAILED, got {other:?}"),
    }
    assert!(c.next().await.is_none());
}

#[tokio::test]
async fn a_reload_adds_and_removes_tenants_and_rotates_secrets_while_agents_keep_sending() {
    let gateway = Reloadable::start(&[tenant("acme", "acme-old"), tenant("beta", "beta-1")].concat()).await;
    let mut acme = gateway.welcomed("acme", "acme-old", "phone-1").await;
    stored(&mut acme, 1).await;
    let mut beta = gateway.welcomed("beta", "beta-1", "phone-2").await;
    stored(&mut beta, 1).await;

    // acme's secret rotated (the new one beside the old, while agents move
    // to it), beta removed, gamma added.
    gateway.rewrite(
        &[
            tenant_with("acme", &["acme-new", "acme-old"]),
            tenant("gamma", "gamma-1"),
        ]
        .concat(),
    );
    let (status, body) = gateway.post_reload().await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("added [gamma]")
            && body.contains("removed [beta] (1 sessions told")
            && body.contains("0 sessions whose credentials no longer authenticate"),
        "{body}"
    );

    // beta's agent is told to go away, and the connection ends.
    match beta.next().await {
        Some(Frame::GoAway(g)) => assert!(g.reason.contains("no longer served"), "{}", g.reason),
        other => panic!("expected GOAWAY, got {other:?}"),
    }
    assert!(beta.next().await.is_none());
    // acme's agent, connected before, keeps sending across the reload.
    for seq in 2..=5 {
        stored(&mut acme, seq).await;
    }
    // gamma is served, with a writer of its own.
    let mut gamma = gateway.welcomed("gamma", "gamma-1", "laptop-1").await;
    stored(&mut gamma, 1).await;
    // New HELLOs see the new secrets and tenants.
    let mut again = gateway.welcomed("acme", "acme-new", "phone-3").await;
    stored(&mut again, 1).await;
    auth_fails(&gateway, "beta", "beta-1", "phone-2").await;

    // The rotation ends: the old secret goes, and with it the session that
    // authenticated with it (its batches in flight still answered); the
    // session on the new secret goes on.
    gateway.rewrite(&[tenant("acme", "acme-new"), tenant("gamma", "gamma-1")].concat());
    let (status, body) = gateway.post_reload().await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("1 sessions whose credentials no longer authenticate"),
        "{body}"
    );
    match acme.next().await {
        Some(Frame::GoAway(g)) => assert!(g.reason.contains("credentials no longer valid"), "{}", g.reason),
        other => panic!("expected GOAWAY, got {other:?}"),
    }
    assert!(acme.next().await.is_none());
    stored(&mut again, 2).await;
    auth_fails(&gateway, "acme", "acme-old", "phone-1").await;

    gateway.server.shutdown().await;
    // Everything acknowledged is stored, in each tenant's own database.
    let count = |tenant: &str| -> i64 {
        let db = rusqlite::Connection::open(gateway.dir.path().join(format!("data/{tenant}.sqlite3"))).unwrap();
        db.query_row("SELECT count(*) FROM items", [], |r| r.get(0)).unwrap()
    };
    assert_eq!((count("acme"), count("beta"), count("gamma")), (7 * 20, 20, 20));
}

#[tokio::test]
async fn a_configuration_that_fails_its_check_or_needs_a_restart_is_refused_whole() {
    let gateway = Reloadable::start(&tenant("acme", "acme-1")).await;
    let mut acme = gateway.welcomed("acme", "acme-1", "phone-1").await;

    // Invalid: the answer names the field; nothing changes.
    gateway.rewrite(
        &[
            tenant("acme", "acme-1"),
            "[[tenants]]\nid = \"bad id!\"\nsecrets = [\"x\"]\n".into(),
        ]
        .concat(),
    );
    let (status, body) = gateway.post_reload().await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.starts_with("reload refused: the new configuration is invalid: tenants[1].id"),
        "{body}"
    );

    // A new tenant together with a new listen address: the listener needs a
    // restart, which is named, and the tenant is not added either.
    gateway.rewrite_listen(
        "127.0.0.1:1",
        &[tenant("acme", "acme-1"), tenant("gamma", "gamma-1")].concat(),
    );
    let (status, body) = gateway.post_reload().await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body.trim(),
        "reload refused: these settings cannot change without a restart: server.listen"
    );
    auth_fails(&gateway, "gamma", "gamma-1", "laptop-1").await;

    // The configuration in force stays: its agents go on and new ones come in.
    stored(&mut acme, 1).await;
    let mut other = gateway.welcomed("acme", "acme-1", "phone-2").await;
    stored(&mut other, 1).await;

    // Fixed, it applies.
    gateway.rewrite(&[tenant("acme", "acme-1"), tenant("gamma", "gamma-1")].concat());
    assert_eq!(gateway.post_reload().await.0, 200);
    gateway.welcomed("gamma", "gamma-1", "laptop-1").await;
    gateway.server.shutdown().await;
}

#[tokio::test]
async fn limits_change_for_new_sessions_and_quotas_at_once() {
    // Buckets hold at least the largest batch: 20 records here.
    let gateway = Reloadable::start_with("max_batch_records = 20", &tenant("acme", "acme-1")).await;
    let mut first = gateway.welcomed("acme", "acme-1", "phone-1").await;
    // A tenant connection limit of 1, already reached; a records quota
    // smaller than the next batch.
    gateway.rewrite(&format!(
        "{}max_connections = 1\nrecords_per_second = 1\n",
        tenant("acme", "acme-1")
    ));
    assert_eq!(gateway.post_reload().await.0, 200);
    let (mut c, answer) = gateway.hello("acme", "acme-1", "phone-2").await;
    match answer {
        Some(Frame::Error(e)) => assert_eq!(e.error_code(), Some(ErrorCode::ServerBusy)),
        other => panic!("expected SERVER_BUSY, got {other:?}"),
    }
    assert!(c.next().await.is_none());
    // The connected agent was not dropped, and its tenant's new quota holds
    // for it: the bucket takes one batch, the next gets ACK RETRY.
    stored(&mut first, 1).await;
    let mut bytes = bytes::BytesMut::new();
    typical_batch(2, 20, 2)
        .encode(Compression::None, &Limits::DEFAULT, &mut bytes)
        .unwrap();
    first.send(&bytes).await;
    match first.next().await {
        Some(Frame::Ack(a)) => assert_eq!(a.status, AckStatus::Retry, "{a:?}"),
        other => panic!("expected ACK RETRY, got {other:?}"),
    }
    gateway.server.shutdown().await;
}

#[tokio::test]
async fn new_handshakes_use_a_rotated_certificate_and_existing_tls_sessions_go_on() {
    let old_pki = certs::TestPki::new();
    let new_pki = certs::TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    std::fs::copy(&old_pki.server_cert, &cert).unwrap();
    std::fs::copy(&old_pki.server_key, &key).unwrap();
    let tls = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n{}",
        cert.display(),
        key.display(),
        tenant("acme", "acme-1")
    );
    let gateway = Reloadable::start_with("tls_listen = [\"127.0.0.1:0\"]", &tls).await;
    let connect = |ca: PathBuf| {
        let addr = gateway.server.tls_addrs[0];
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            tokio_rustls::TlsConnector::from(certs::client_config(&ca, None, true))
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
        }
    };
    let mut before = Client::new(connect(old_pki.ca_pem.clone()).await.expect("old certificate"));
    before.send_hello_as("acme", &long("acme-1"), "phone-1").await;
    assert!(matches!(before.next().await, Some(Frame::Welcome(_))));

    // The files are replaced in place (as certbot or a secret mount does).
    std::fs::copy(&new_pki.server_cert, &cert).unwrap();
    std::fs::copy(&new_pki.server_key, &key).unwrap();
    let (status, body) = gateway.post_reload().await;
    assert_eq!(status, 200, "{body}");

    assert!(
        connect(old_pki.ca_pem.clone()).await.is_err(),
        "a client trusting only the old CA no longer verifies the server"
    );
    let mut after = Client::new(connect(new_pki.ca_pem.clone()).await.expect("new certificate"));
    after.send_hello_as("acme", &long("acme-1"), "phone-2").await;
    assert!(matches!(after.next().await, Some(Frame::Welcome(_))));
    stored(&mut after, 1).await;
    // The session that started before the reload goes on.
    stored(&mut before, 1).await;
    stored(&mut before, 2).await;
    gateway.server.shutdown().await;
}

#[tokio::test]
async fn a_tenant_added_with_a_client_ca_authenticates_its_devices_by_certificate() {
    let pki = certs::TestPki::new();
    let partner = pki.tenant_ca("partner_b");
    let tls = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n{}",
        pki.server_cert.display(),
        pki.server_key.display(),
        tenant("acme", "acme-1")
    );
    let gateway = Reloadable::start_with("tls_listen = [\"127.0.0.1:0\"]", &tls).await;
    let device = partner.issue("mac-7");
    // tenant partner_b, device mac-7, authenticated by its certificate.
    let cert_hello = || {
        let (addr, config) = (
            gateway.server.tls_addrs[0],
            certs::client_config(&pki.ca_pem, Some(device.cert_and_key()), true),
        );
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .expect("TLS handshake");
            let mut c = Client::new(tls);
            let mut bytes = awp_protocol::MAGIC.to_vec();
            bytes.extend(support::vector("hello_client_cert"));
            c.send(&bytes).await;
            (c.next().await, c)
        }
    };
    assert!(
        matches!(cert_hello().await.0, Some(Frame::Error(e)) if e.error_code() == Some(ErrorCode::AuthFailed)),
        "partner_b is not a tenant yet"
    );
    gateway.rewrite(&format!(
        "{tls}[[tenants]]\nid = \"partner_b\"\nclient_ca = \"{}\"\n",
        partner.path.display()
    ));
    let (status, body) = gateway.post_reload().await;
    assert_eq!(status, 200, "{body}");
    let (welcome, mut c) = cert_hello().await;
    assert!(matches!(welcome, Some(Frame::Welcome(_))), "{welcome:?}");
    stored(&mut c, 1).await;
    gateway.server.shutdown().await;
}
