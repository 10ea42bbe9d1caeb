//! The `gateway` binary as tests run it: started on a configuration file,
//! its addresses read from its JSON log, its admin endpoint asked, its
//! export read, stopped with SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use awp_protocol::{Frame, Platform};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use super::Client;

/// The log's lines from now on (JSON), as the gateway writes them.
pub type Log = tokio::sync::mpsc::UnboundedReceiver<String>;

/// A running `gateway` process.
pub struct Gateway {
    pub child: tokio::process::Child,
    pub agents: SocketAddr,
    /// The TLS listener, if the configuration has one.
    pub tls_agents: Option<SocketAddr>,
    pub admin: SocketAddr,
    pub log: Log,
    pub config: PathBuf,
}

impl Gateway {
    /// Starts the binary on `config` (`--log-format json`, then `args`).
    pub async fn start(config: &Path, args: &[&str]) -> Gateway {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .args(["--log-format", "json"])
            .args(args)
            .arg("--config")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let (mut agents, mut admin, mut tls_agents) = (None, None, None);
        let found = async {
            while agents.is_none() || admin.is_none() {
                let line = lines
                    .next_line()
                    .await
                    .unwrap()
                    .expect("the gateway logs its addresses");
                let addr = || -> SocketAddr {
                    line.split("\"addr\":\"")
                        .nth(1)
                        .unwrap()
                        .split('"')
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap()
                };
                if line.contains("admin endpoint listening") {
                    admin = Some(addr());
                } else if line.contains("\"listening\"") && line.contains("\"tls\":true") {
                    tls_agents = Some(addr());
                } else if line.contains("\"listening\"") {
                    agents = Some(addr());
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), found)
            .await
            .expect("the gateway starts");
        // Keep reading so the gateway never blocks on a full pipe; the
        // lines go to the test until it drops `log`.
        let (tx, log) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Gateway {
            child,
            agents: agents.unwrap(),
            tls_agents,
            admin: admin.unwrap(),
            log,
            config: config.to_owned(),
        }
    }

    /// A connection to the agent listener.
    pub async fn connect(&self) -> Client<tokio::net::TcpStream> {
        Client::new(tokio::net::TcpStream::connect(self.agents).await.unwrap())
    }

    /// A client past HELLO/WELCOME as `device` of `tenant`, reporting
    /// `platform` and `agent_version`.
    pub async fn agent(
        &self,
        tenant: &str,
        secret: &str,
        device: &str,
        platform: Platform,
        agent_version: &str,
    ) -> Client<tokio::net::TcpStream> {
        let mut c = self.connect().await;
        c.send_hello_with(tenant, secret, device, platform, agent_version).await;
        match c.next().await {
            Some(Frame::Welcome(_)) => {}
            other => panic!("expected WELCOME, got {other:?}"),
        }
        c
    }

    /// `POST /reload`: the status code and the body.
    pub async fn reload(&self) -> (u16, String) {
        let answer = http(self.admin, "POST", "/reload").await;
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"));
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
        (status, body)
    }

    /// A `GET` on the admin endpoint, whole answer.
    pub async fn get(&self, path: &str) -> String {
        http(self.admin, "GET", path).await
    }

    /// The value of the sample `name` (with its labels) in `/metrics`.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = self.get("/metrics").await;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ').map(str::to_owned))
            .map(|v| v.trim().parse::<f64>().unwrap())
    }

    /// The next log line containing `text`, within 10 s.
    pub async fn log_line(&mut self, text: &str) -> String {
        next_line(&mut self.log, text).await
    }

    /// SIGTERM; asserts a clean exit.
    pub async fn stop(mut self) {
        let pid = self.child.id().unwrap().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "{status:?}");
    }

    /// `gateway export --tenant TENANT` on this gateway's configuration:
    /// the lines printed.
    pub fn export(&self, tenant: &str) -> Vec<String> {
        export(&self.config, tenant)
    }
}

/// The next line of `log` containing `text`, within 10 s.
pub async fn next_line(log: &mut Log, text: &str) -> String {
    let find = async {
        loop {
            let line = log.recv().await.expect("the gateway is still logging");
            if line.contains(text) {
                return line;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), find)
        .await
        .unwrap_or_else(|_| panic!("no log line with {text}"))
}

/// `gateway export --tenant TENANT --config CONFIG`: the lines printed.
pub fn export(config: &Path, tenant: &str) -> Vec<String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(["export", "--tenant", tenant, "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// One HTTP/1.1 request to `addr` as an operator on this host sends it
/// (`curl -H 'X-AWP-Admin: 1'`); the whole answer.
pub async fn http(addr: SocketAddr, method: &str, path: &str) -> String {
    http_with(addr, method, path, &["X-AWP-Admin: 1"]).await
}

/// One HTTP/1.1 request to `addr` with `headers` (and `Host: localhost`
/// unless they name one); the whole answer.
pub async fn http_with(addr: SocketAddr, method: &str, path: &str, headers: &[&str]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let host = if headers.iter().any(|h| h.to_ascii_lowercase().starts_with("host:")) {
        String::new()
    } else {
        "Host: localhost\r\n".to_owned()
    };
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    let request = format!("{method} {path} HTTP/1.1\r\n{host}{extra}Content-Length: 0\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_string(&mut out))
        .await
        .expect("the admin endpoint answers")
        .unwrap();
    out
}
