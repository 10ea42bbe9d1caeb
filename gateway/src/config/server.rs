//! `[server]` and `[tls]`: listeners, protocol limits, timings, the admin
//! endpoint, and the networks a PROXY header is taken from.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use awp_protocol::CompressionSet;
use serde::Deserialize;

/// The most records in one BATCH: a record's index in `rk` has five digits.
pub const MAX_BATCH_RECORDS: u32 = 99_999;

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Plain TCP listen addresses.
    pub listen: Vec<SocketAddr>,
    /// TLS listen addresses.
    pub tls_listen: Vec<SocketAddr>,
    /// The admin HTTP address (`/metrics`, `/healthz`, `/readyz`); none to disable.
    pub admin_listen: Option<SocketAddr>,
    /// A file holding the token `POST /reload` must carry
    /// (`Authorization: Bearer …`); without one, reloads are taken only
    /// from loopback with the header `X-AWP-Admin: 1`. Read again at each
    /// reload.
    pub admin_token_file: Option<PathBuf>,
    /// Authenticated connections beyond this are answered `ERROR(SERVER_BUSY)`.
    pub max_connections: usize,
    /// Connections not yet authenticated (TLS handshake, waiting for
    /// HELLO); beyond it the one waiting longest is closed.
    pub max_unauthenticated: usize,
    /// Of those, from any one source address.
    pub max_unauthenticated_per_source: usize,
    /// Every agent connection starts with a PROXY protocol v2 header (the
    /// load balancer's), which gives the agent's address; one without it
    /// is closed.
    pub proxy_protocol: bool,
    /// The networks of the load balancers whose PROXY headers are believed
    /// (required with `proxy_protocol`): a connection from anywhere else is
    /// closed before a byte of it is read.
    pub proxy_protocol_trusted: Vec<Network>,
    /// The listen backlog of the agent listeners; none for the system's
    /// maximum (`net.core.somaxconn`).
    pub listen_backlog: Option<u32>,
    /// Agent listeners set `SO_REUSEPORT`, so that a second gateway (a new
    /// version during an upgrade, or more processes on one host) can listen
    /// on the same port and share its agents. Off, a port in use is an
    /// error at start.
    pub reuse_port: bool,
    /// An authenticated connection older than this, give or take 10%, is
    /// sent GOAWAY so agents spread over nodes added since; 0 for never.
    #[serde(rename = "max_connection_age_ms", deserialize_with = "super::units::millis_or_never")]
    pub max_connection_age: Option<Duration>,
    /// Advertised in WELCOME; the largest payload accepted (≥ 65,536).
    pub max_frame_len: u32,
    /// Advertised in WELCOME; the most records in one BATCH.
    pub max_batch_records: u32,
    /// The largest decompressed BATCH payload.
    pub max_batch_bytes: u32,
    /// Advertised in WELCOME; unacknowledged BATCHes allowed per connection.
    pub max_inflight: u32,
    /// Advertised in WELCOME; a client silent for three of these is closed.
    #[serde(rename = "heartbeat_ms", deserialize_with = "super::units::millis")]
    pub heartbeat: Duration,
    /// A frame must arrive at this average rate (bytes per second) or
    /// faster, after a grace of one heartbeat from its first byte.
    pub min_frame_rate: u32,
    /// Time allowed from connect to a complete HELLO.
    #[serde(rename = "hello_timeout_ms", deserialize_with = "super::units::millis")]
    pub hello_timeout: Duration,
    /// Time allowed for a TLS handshake.
    #[serde(rename = "tls_handshake_timeout_ms", deserialize_with = "super::units::millis")]
    pub tls_handshake_timeout: Duration,
    /// Time allowed for a write to an agent before the connection is dropped.
    #[serde(rename = "write_timeout_ms", deserialize_with = "super::units::millis")]
    pub write_timeout: Duration,
    /// `retry_after_ms` in ACK RETRY when the pipeline is full or a sink fails.
    #[serde(rename = "retry_after_ms", deserialize_with = "super::units::millis")]
    pub retry_after: Duration,
    /// `reconnect_after_ms` in GOAWAY at shutdown.
    #[serde(rename = "goaway_reconnect_ms", deserialize_with = "super::units::millis")]
    pub goaway_reconnect: Duration,
    /// How long shutdown waits for acks and sinks before exiting anyway.
    #[serde(rename = "drain_timeout_ms", deserialize_with = "super::units::millis")]
    pub drain_timeout: Duration,
    /// Codecs accepted in BATCH frames: any of "lz4", "zstd".
    #[serde(deserialize_with = "super::units::codecs")]
    pub compression: CompressionSet,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 7700))],
            tls_listen: Vec::new(),
            admin_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            admin_token_file: None,
            max_connections: 10_000,
            max_unauthenticated: 1024,
            max_unauthenticated_per_source: 64,
            proxy_protocol: false,
            proxy_protocol_trusted: Vec::new(),
            reuse_port: false,
            listen_backlog: None,
            max_connection_age: Some(Duration::from_secs(86_400)),
            max_frame_len: 1 << 20,
            max_batch_records: 1000,
            max_batch_bytes: 4 << 20,
            max_inflight: 32,
            heartbeat: Duration::from_millis(30_000),
            min_frame_rate: 1024,
            hello_timeout: Duration::from_millis(5_000),
            tls_handshake_timeout: Duration::from_millis(5_000),
            write_timeout: Duration::from_millis(10_000),
            retry_after: Duration::from_millis(1_000),
            goaway_reconnect: Duration::from_millis(1_000),
            drain_timeout: Duration::from_millis(30_000),
            compression: CompressionSet::ALL,
        }
    }
}

/// `[tls]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain of the server.
    pub cert: PathBuf,
    /// PEM private key of the server.
    pub key: PathBuf,
}

/// An IP network, `10.0.0.0/8` or `2001:db8::/32`, or one address (`10.0.0.7`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: std::net::IpAddr,
    prefix: u8,
}

impl Network {
    /// Whether `ip` is in the network (an IPv4 address in its IPv6-mapped
    /// form counts as IPv4).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Network {
    type Err = String;

    fn from_str(text: &str) -> Result<Network, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: std::net::IpAddr = addr
            .parse()
            .map_err(|_| "not an IP network (such as 10.0.0.0/8 or 2001:db8::/32)".to_owned())?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("the prefix length must be 0 to {max}"))?,
        };
        Ok(Network { addr, prefix })
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Network, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The fewest characters an admin token may have.
pub const MIN_ADMIN_TOKEN_LEN: usize = 32;
