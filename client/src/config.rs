//! What a client is opened with.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use awp_protocol::{Compression, Platform};

use crate::queue::{QueueOptions, SealLimits};

/// A device token and when it expires (unix seconds; 0 never), as the
/// agent's own backend hands them out (`gateway token` prints one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    /// HMAC-SHA256 of the tenant secret (AWP1.md §4.1).
    pub token: [u8; 32],
    /// Unix seconds; 0 for a token that never expires.
    pub expiry: u64,
}

/// Fetches a fresh token: called before a HELLO when the one held expires
/// within [`ClientConfig::token_refresh_before`], or is refused.
pub type TokenSource = Arc<dyn Fn() -> Result<Token, String> + Send + Sync>;

/// How the agent proves who it is.
#[derive(Clone)]
pub enum Auth {
    /// One token.
    Token(Token),
    /// Tokens from the agent's backend, on demand.
    Source(TokenSource),
    /// A TLS client certificate whose common name is the device id.
    ClientCert {
        /// The certificate chain, PEM.
        cert_pem: Vec<u8>,
        /// Its private key, PEM.
        key_pem: Vec<u8>,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Token(t) => write!(f, "Token(expiry {})", t.expiry),
            Auth::Source(_) => write!(f, "Source"),
            Auth::ClientCert { .. } => write!(f, "ClientCert"),
        }
    }
}

/// TLS to the gateway.
#[derive(Clone, Debug, Default)]
pub struct Tls {
    /// CA certificates (PEM) to trust; without them, the platform's.
    pub ca_pem: Option<Vec<u8>>,
    /// The name to verify (default: the host of the gateway address).
    pub server_name: Option<String>,
}

/// Where the queue lives.
#[derive(Clone, Debug)]
pub enum QueuePlace {
    /// A directory of its own on the device (survives the app's death).
    Disk(PathBuf),
    /// Memory (gone with the process): the simulator, tests.
    Memory,
}

/// Everything a client needs.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Gateway addresses (`host:port`), tried in turn and resolved again at
    /// each connect.
    pub gateways: Vec<String>,
    /// The tenant (partner) id.
    pub tenant: String,
    /// This device's id.
    pub device: String,
    /// The platform told in HELLO.
    pub platform: Platform,
    /// The app's version told in HELLO (≤ 64 bytes).
    pub agent_version: String,
    /// Token or certificate.
    pub auth: Auth,
    /// TLS, or plain TCP.
    pub tls: Option<Tls>,
    /// The queue's place.
    pub queue: QueuePlace,
    /// The queue's caps.
    pub queue_options: QueueOptions,
    /// A batch is sealed at these limits (WELCOME's `max_batch_records` caps
    /// the count) ...
    pub seal: SealLimits,
    /// ... or once its oldest record has waited this long.
    pub batch_delay: Duration,
    /// Compression to send with, where WELCOME accepts it.
    pub compression: Compression,
    /// An ACK not come this long after its BATCH ends the connection.
    pub ack_timeout: Duration,
    /// Reconnect backoff: full jitter from the first to the cap.
    pub backoff: (Duration, Duration),
    /// A connection up this long resets the backoff.
    pub stable_after: Duration,
    /// Records written since the last sync are synced this often (what a
    /// power cut can lose).
    pub sync_interval: Duration,
    /// A token expiring within this is refreshed before a HELLO.
    pub token_refresh_before: Duration,
    /// Connecting (TCP, TLS, HELLO to WELCOME) gives up after this.
    pub connect_timeout: Duration,
    /// A connection with nothing to send for this long is closed (BYE); the
    /// next push opens one again.
    pub idle_close: Duration,
}

impl ClientConfig {
    /// A configuration with the defaults: TLS off, a disk queue in
    /// `queue_dir`, batches of up to 500 records or 60 kB sealed after 5 s,
    /// LZ4, ACKs due within 60 s, backoff 1 s to 5 min, an idle connection
    /// closed after 60 s.
    pub fn new(gateways: Vec<String>, tenant: &str, device: &str, auth: Auth, queue: QueuePlace) -> ClientConfig {
        ClientConfig {
            gateways,
            tenant: tenant.into(),
            device: device.into(),
            platform: default_platform(),
            agent_version: concat!("awp-client/", env!("CARGO_PKG_VERSION")).into(),
            auth,
            tls: None,
            queue,
            queue_options: QueueOptions::default(),
            seal: SealLimits::default(),
            batch_delay: Duration::from_secs(5),
            compression: Compression::Lz4,
            ack_timeout: Duration::from_secs(60),
            backoff: (Duration::from_secs(1), Duration::from_secs(300)),
            stable_after: Duration::from_secs(60),
            sync_interval: Duration::from_secs(1),
            token_refresh_before: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(30),
            idle_close: Duration::from_secs(60),
        }
    }
}

fn default_platform() -> Platform {
    if cfg!(target_os = "android") {
        Platform::Android
    } else if cfg!(target_os = "windows") {
        Platform::Windows
    } else if cfg!(target_os = "macos") {
        Platform::MacOs
    } else if cfg!(target_os = "linux") {
        Platform::Linux
    } else if cfg!(target_os = "ios") {
        Platform::Ios
    } else {
        Platform::Unknown
    }
}
