//! Shared by the gateway's integration tests: a running server on loopback
//! with a temporary data directory, and a minimal AWP/1 client.
#![allow(dead_code)]

pub mod binary;

use std::path::Path;
use std::time::Duration;

use awp_gateway::config::Config;
use awp_gateway::{RunningServer, start};
use awp_protocol::{Decoded, Frame, Limits, MAGIC, decode};
use awp_testkit::InvalidVector;
use bytes::{Bytes, BytesMut};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A tenant's DynamoDB settings pointing at a local endpoint (dynalite),
/// with the static credentials a local endpoint needs.
pub fn local_dynamo(table: &str, endpoint: &str) -> awp_gateway::config::DynamoConfig {
    awp_gateway::config::DynamoConfig {
        table: table.into(),
        region: "us-east-1".into(),
        endpoint: Some(endpoint.into()),
        profile: None,
        role_arn: None,
        external_id: None,
        access_key_id: Some("local".into()),
        secret_access_key: Some("local".into()),
        max_concurrency: 4,
    }
}

/// How long a test waits for any one answer before failing.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// A vector's bytes, by name, from either section.
pub fn vector(name: &str) -> Vec<u8> {
    awp_testkit::vectors().bytes(name).to_vec()
}

/// The vectors' expected items of the batches the storage tests send
/// (`batch_one_location` and `batch_mixed_kinds`, whose LZ4 and zstd twins
/// map to the same items), in `rk` order.
pub fn expected_vector_items() -> Vec<Value> {
    let mut expected = Vec::new();
    for name in ["batch_one_location", "batch_mixed_kinds"] {
        let v = awp_testkit::vectors().valid(name);
        expected.extend(v.items.iter().flatten().cloned());
    }
    expected.sort_by_key(|i| i["rk"]["S"].as_str().unwrap().to_owned());
    expected
}

/// The configuration the spec's vectors assume: tenant `acme` with secret
/// `acme-secret-1`, loopback listeners on free ports, SQLite under `dir`.
pub fn config(dir: &Path) -> Config {
    Config::parse(&format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
admin_listen = "127.0.0.1:0"
drain_timeout_ms = 5000

[sink]
data_dir = "{}"

[[tenants]]
id = "acme"
secrets = ["acme-secret-1"]
"#,
        dir.display()
    ))
    .unwrap()
}

pub struct TestServer {
    pub server: RunningServer,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        tweak(&mut config);
        let server = start(&config).await.expect("server starts");
        TestServer { server, dir }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.plain_addrs[0]
    }

    pub async fn connect(&self) -> Client<tokio::net::TcpStream> {
        Client::new(tokio::net::TcpStream::connect(self.addr()).await.unwrap())
    }

    /// A client past HELLO/WELCOME with the vectors' Android HELLO.
    pub async fn welcomed(&self) -> Client<tokio::net::TcpStream> {
        let mut c = self.connect().await;
        c.hello().await;
        c
    }

    /// A client past HELLO/WELCOME as `device` of tenant `acme`.
    pub async fn welcomed_as(&self, device: &str) -> Client<tokio::net::TcpStream> {
        let mut c = self.connect().await;
        c.send_hello_as("acme", "acme-secret-1", device).await;
        match c.next().await {
            Some(Frame::Welcome(_)) => {}
            other => panic!("expected WELCOME, got {other:?}"),
        }
        c
    }
}

/// The admin endpoint's answer to `GET path`, status line and all.
pub async fn http_get(admin: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// A bare AWP/1 client: bytes out, decoded frames in.
pub struct Client<S> {
    pub stream: S,
    buf: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    pub fn new(stream: S) -> Self {
        Client {
            stream,
            buf: BytesMut::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    pub async fn send_frame(&mut self, frame: &Frame) {
        self.send(&frame.to_bytes().unwrap()).await;
    }

    /// Preamble and the Android HELLO; asserts WELCOME.
    pub async fn hello(&mut self) {
        let mut bytes = MAGIC.to_vec();
        bytes.extend(vector("hello_token_android"));
        self.send(&bytes).await;
        match self.next().await {
            Some(Frame::Welcome(_)) => {}
            other => panic!("expected WELCOME, got {other:?}"),
        }
    }

    /// Preamble and a token HELLO as `device` of `tenant`.
    pub async fn send_hello_as(&mut self, tenant: &str, secret: &str, device: &str) {
        self.send_hello_with(tenant, secret, device, awp_protocol::Platform::Linux, "test")
            .await;
    }

    /// Preamble and a token HELLO as `device` of `tenant`, from `platform`
    /// and `agent_version`.
    pub async fn send_hello_with(
        &mut self,
        tenant: &str,
        secret: &str,
        device: &str,
        platform: awp_protocol::Platform,
        agent_version: &str,
    ) {
        let hello = Frame::Hello(awp_protocol::Hello {
            min_version: 1,
            max_version: 1,
            tenant_id: tenant.to_owned(),
            device_id: device.to_owned(),
            platform,
            agent_version: agent_version.to_owned(),
            compression: awp_protocol::CompressionSet::ALL,
            auth: awp_protocol::HelloAuth::Token {
                expiry: 0,
                token: awp_protocol::token::device_token(secret.as_bytes(), tenant, device, 0),
            },
        });
        let mut bytes = MAGIC.to_vec();
        bytes.extend(hello.to_bytes().unwrap());
        self.send(&bytes).await;
    }

    /// The next frame, or `None` when the server closed the connection.
    pub async fn next(&mut self) -> Option<Frame> {
        tokio::time::timeout(ANSWER_TIMEOUT, self.next_untimed())
            .await
            .expect("the server answers in time")
    }

    /// The next frame, `None` when the server closed the connection, or an
    /// error if nothing came within `within`. Cancel-safe.
    pub async fn next_within(&mut self, within: Duration) -> Result<Option<Frame>, tokio::time::error::Elapsed> {
        tokio::time::timeout(within, self.next_untimed()).await
    }

    async fn next_untimed(&mut self) -> Option<Frame> {
        loop {
            let bytes = Bytes::copy_from_slice(&self.buf);
            match decode(&bytes, &Limits::DEFAULT).expect("the server sends valid frames") {
                Decoded::Complete(frame, used) => {
                    let _ = self.buf.split_to(used);
                    return Some(frame);
                }
                Decoded::Incomplete(_) => {
                    let n = self.stream.read_buf(&mut self.buf).await.unwrap_or(0);
                    if n == 0 {
                        return None;
                    }
                }
            }
        }
    }

    /// Asserts the server sends ERROR with `code` and then closes.
    pub async fn expect_error(&mut self, code: awp_protocol::ErrorCode) -> String {
        match self.next().await {
            Some(Frame::Error(e)) => {
                assert_eq!(e.error_code(), Some(code), "{}", e.message);
                assert!(self.next().await.is_none(), "the server closes after ERROR");
                e.message
            }
            other => panic!("expected ERROR {code}, got {other:?}"),
        }
    }
}

/// Sends one invalid vector on a fresh connection (welcomed first if the
/// vector says so) and checks the spec's answer: an ERROR with the expected
/// code and a close, or ACK REJECTED with the connection kept open.
pub async fn check_invalid_vector<S: AsyncRead + AsyncWrite + Unpin>(mut c: Client<S>, v: &InvalidVector) {
    let name = &v.name;
    if v.after_welcome {
        c.hello().await;
    } else {
        c.send(&MAGIC).await;
    }
    c.send(&v.bytes).await;
    match v.expect.as_str() {
        "REJECTED" => {
            match c.next().await {
                Some(Frame::Ack(a)) => {
                    assert_eq!(a.status, awp_protocol::AckStatus::Rejected, "{name}");
                    assert!(
                        a.message.starts_with("record ") || a.message.starts_with("batch: "),
                        "{name}"
                    );
                }
                other => panic!("{name}: expected ACK REJECTED, got {other:?}"),
            }
            // The connection stays open.
            c.send(&vector("ping")).await;
            assert!(
                matches!(c.next().await, Some(Frame::Pong(_))),
                "{name}: open after REJECTED"
            );
        }
        expect => {
            let code = awp_protocol::ErrorCode::ALL
                .iter()
                .find(|c| c.name() == expect)
                .copied()
                .unwrap();
            match c.next().await {
                Some(Frame::Error(e)) => assert_eq!(e.error_code(), Some(code), "{name}: {}", e.message),
                other => panic!("{name}: expected ERROR {expect}, got {other:?}"),
            }
            assert!(c.next().await.is_none(), "{name}: closed after ERROR");
        }
    }
}
