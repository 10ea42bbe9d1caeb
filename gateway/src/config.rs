//! Configuration: a TOML file, overridden by CLI flags and environment
//! variables (see `main.rs`), checked as a whole before anything starts.
//!
//! Every problem is reported as one line naming the field, e.g.
//! `tenants[1].secrets: at least one secret is required`. The full reference
//! is `docs/configuration.md`; `gateway example-config` prints a commented
//! example ([`EXAMPLE`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The shortest tenant secret accepted. Secrets are HMAC keys chosen by
/// operators; 32 random characters are recommended, 8 is the floor.
pub const MIN_SECRET_LEN: usize = 8;

/// The most records in one BATCH: a record's index in `rk` has five digits.
pub const MAX_BATCH_RECORDS: u32 = 99_999;

/// A configuration problem: the field (as a TOML path) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// The field, e.g. `server.max_inflight` or `tenants[0].id`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listeners and protocol limits.
    #[serde(default)]
    pub server: ServerConfig,
    /// TLS certificate and key, required when `server.tls_listen` is set.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Batching between sessions and sinks.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// Where records are stored.
    #[serde(default)]
    pub sink: SinkConfig,
    /// The tenants allowed to connect.
    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
}

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
    pub max_connection_age_ms: u64,
    /// Advertised in WELCOME; the largest payload accepted (≥ 65,536).
    pub max_frame_len: u32,
    /// Advertised in WELCOME; the most records in one BATCH.
    pub max_batch_records: u32,
    /// The largest decompressed BATCH payload.
    pub max_batch_bytes: u32,
    /// Advertised in WELCOME; unacknowledged BATCHes allowed per connection.
    pub max_inflight: u32,
    /// Advertised in WELCOME; a client silent for three of these is closed.
    pub heartbeat_ms: u64,
    /// A frame must arrive at this average rate (bytes per second) or
    /// faster, after a grace of one heartbeat from its first byte.
    pub min_frame_rate: u32,
    /// Time allowed from connect to a complete HELLO.
    pub hello_timeout_ms: u64,
    /// Time allowed for a TLS handshake.
    pub tls_handshake_timeout_ms: u64,
    /// Time allowed for a write to an agent before the connection is dropped.
    pub write_timeout_ms: u64,
    /// `retry_after_ms` in ACK RETRY when the pipeline is full or a sink fails.
    pub retry_after_ms: u64,
    /// `reconnect_after_ms` in GOAWAY at shutdown.
    pub goaway_reconnect_ms: u64,
    /// How long shutdown waits for acks and sinks before exiting anyway.
    pub drain_timeout_ms: u64,
    /// Codecs accepted in BATCH frames: any of "lz4", "zstd".
    pub compression: Vec<String>,
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
            max_connection_age_ms: 86_400_000,
            max_frame_len: 1 << 20,
            max_batch_records: 1000,
            max_batch_bytes: 4 << 20,
            max_inflight: 32,
            heartbeat_ms: 30_000,
            min_frame_rate: 1024,
            hello_timeout_ms: 5_000,
            tls_handshake_timeout_ms: 5_000,
            write_timeout_ms: 10_000,
            retry_after_ms: 1_000,
            goaway_reconnect_ms: 1_000,
            drain_timeout_ms: 30_000,
            compression: vec!["lz4".into(), "zstd".into()],
        }
    }
}

impl ServerConfig {
    /// Durations as `Duration`s.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
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

/// `[pipeline]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// The most items (records) in one sink write.
    pub max_items: usize,
    /// The most inflated batch bytes in one sink write.
    pub max_bytes: usize,
    /// How long a writer waits for more batches before a write; 0 (the
    /// default) writes at once, and batches that arrive during a write go
    /// into the next (group commit without a timer).
    #[serde(alias = "max_delay_ms")]
    pub linger_ms: u64,
    /// A sink write that takes longer fails (and its batches get ACK RETRY);
    /// a batch that waited longer than this in the queue gets ACK RETRY
    /// without being written.
    pub write_timeout_ms: u64,
    /// The memory budget: inflated bytes (plus a small per-batch overhead)
    /// of all the batches held from decoding until their write completes.
    pub budget_bytes: usize,
    /// The share of `budget_bytes` one tenant's batches may hold, percent.
    pub tenant_budget_percent: u8,
    /// How long a BATCH may wait for budget before it gets ACK RETRY.
    pub budget_wait_ms: u64,
    /// A tenant whose sink has failed every write for this long is
    /// degraded (`/readyz` 503, `awp_tenant_degraded`); 0 turns this off.
    pub unhealthy_after_ms: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            max_items: 20_000,
            max_bytes: 8 << 20,
            linger_ms: 0,
            write_timeout_ms: 10_000,
            budget_bytes: 256 << 20,
            tenant_budget_percent: 50,
            budget_wait_ms: 10_000,
            unhealthy_after_ms: 60_000,
        }
    }
}

impl PipelineConfig {
    /// One tenant's share of the budget, bytes.
    pub fn tenant_budget_bytes(&self) -> usize {
        (self.budget_bytes as u128 * u128::from(self.tenant_budget_percent) / 100) as usize
    }
}

/// `[sink]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// `sqlite` (one database per tenant under `data_dir`), `dynamodb` (each
    /// tenant's `[tenants.dynamodb]` table) or `null` (benchmarks).
    pub kind: SinkKind,
    /// Where the SQLite databases live.
    pub data_dir: PathBuf,
    /// The null sink acknowledges every batch and stores nothing: it is
    /// refused unless this is set (benchmarks).
    pub allow_null: bool,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            kind: SinkKind::Sqlite,
            data_dir: PathBuf::from("data"),
            allow_null: false,
        }
    }
}

/// The sink records go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// One SQLite database per tenant.
    Sqlite,
    /// Render items, store nothing, acknowledge everything (benchmarks;
    /// needs `sink.allow_null`).
    Null,
    /// The tenant's DynamoDB table (`[tenants.dynamodb]`).
    Dynamodb,
}

impl SinkKind {
    /// The name in configuration and metrics.
    pub fn name(self) -> &'static str {
        match self {
            SinkKind::Sqlite => "sqlite",
            SinkKind::Null => "null",
            SinkKind::Dynamodb => "dynamodb",
        }
    }
}

/// `[tenants.dynamodb]`: where a tenant's items go in DynamoDB.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamoConfig {
    /// The table (key schema: `device` HASH S, `rk` RANGE S).
    pub table: String,
    /// The AWS region of the table.
    pub region: String,
    /// An endpoint override (dynalite, DynamoDB Local, a VPC endpoint).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// A named profile from the shared AWS config files, instead of the
    /// standard credential chain.
    #[serde(default)]
    pub profile: Option<String>,
    /// A role to assume (the partner's account), on top of the base credentials.
    #[serde(default)]
    pub role_arn: Option<String>,
    /// The external id the partner's role trust policy asks for (against
    /// the confused deputy: another customer of ours naming this role).
    #[serde(default)]
    pub external_id: Option<String>,
    /// Static credentials, for local endpoints only (dynalite ignores them).
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// See `access_key_id`. Never printed (`Debug` shows it redacted).
    #[serde(default)]
    pub secret_access_key: Option<SecretString>,
    /// The most BatchWriteItem requests in flight for this table; the
    /// gateway adapts below it when DynamoDB throttles.
    #[serde(default = "default_dynamo_concurrency")]
    pub max_concurrency: usize,
}

fn default_dynamo_concurrency() -> usize {
    8
}

impl DynamoConfig {
    /// The table's name and region: `table` may be a name or a table ARN
    /// (`arn:aws:dynamodb:REGION:ACCOUNT:table/NAME`), which names its
    /// region itself.
    pub fn table_name_and_region(&self) -> (&str, &str) {
        let mut arn = self.table.splitn(6, ':');
        match (arn.next(), arn.nth(1), arn.next(), arn.nth(1)) {
            (Some("arn"), Some("dynamodb"), Some(region), Some(resource)) => match resource.strip_prefix("table/") {
                Some(rest) => (rest.split('/').next().unwrap_or(rest), region),
                None => (&self.table, &self.region),
            },
            _ => (&self.table, &self.region),
        }
    }

    /// Whether `other` names the same table: the same name and region,
    /// whether given as a name or an ARN, at the same endpoint (the
    /// region's own when none is given; hosts compared by the addresses
    /// they resolve to, so `localhost` and `127.0.0.1` are one; ports
    /// default by scheme).
    pub fn same_table(&self, other: &DynamoConfig) -> bool {
        let (name, region) = self.table_name_and_region();
        let (other_name, other_region) = other.table_name_and_region();
        name == other_name && region == other_region && same_endpoint(&self.endpoint_url(), &other.endpoint_url())
    }

    /// The endpoint the SDK calls: the override, or the region's.
    fn endpoint_url(&self) -> String {
        match &self.endpoint {
            Some(e) => e.clone(),
            None => format!("https://dynamodb.{}.amazonaws.com", self.table_name_and_region().1),
        }
    }
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

/// Whether two endpoint URLs reach the same server (see [`DynamoConfig::same_table`]).
fn same_endpoint(a: &str, b: &str) -> bool {
    use std::net::ToSocketAddrs;
    /// (scheme, host, port) of a URL.
    fn parts(url: &str) -> (String, String, u16) {
        let url = url.trim().to_ascii_lowercase();
        let (scheme, rest) = url.split_once("://").unwrap_or(("https", url.as_str()));
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        let default_port = if scheme == "http" { 80 } else { 443 };
        let (host, port) = match authority.strip_prefix('[') {
            // [v6]:port
            Some(v6) => {
                let (host, after) = v6.split_once(']').unwrap_or((v6, ""));
                (host.to_owned(), after.strip_prefix(':').and_then(|p| p.parse().ok()))
            }
            None => match authority.rsplit_once(':') {
                Some((host, port)) if port.parse::<u16>().is_ok() => (host.to_owned(), port.parse().ok()),
                _ => (authority.to_owned(), None),
            },
        };
        (scheme.to_owned(), host, port.unwrap_or(default_port))
    }
    let (a, b) = (parts(a), parts(b));
    if a.2 != b.2 {
        return false;
    }
    if a.1 == b.1 {
        return true;
    }
    // Resolved only when the names differ: `localhost` against `127.0.0.1`.
    let resolve = |host: &str, port: u16| -> Vec<std::net::IpAddr> {
        (host, port)
            .to_socket_addrs()
            .map(|addrs| addrs.map(|a| a.ip()).collect())
            .unwrap_or_default()
    };
    let (a_ips, b_ips) = (resolve(&a.1, a.2), resolve(&b.1, b.2));
    a_ips.iter().any(|ip| b_ips.contains(ip))
}

/// `[[tenants]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The tenant id agents send in HELLO.
    pub id: String,
    /// Token secrets; several at once during rotation. Never printed
    /// (`Debug` shows them redacted).
    #[serde(default)]
    pub secrets: Vec<SecretString>,
    /// PEM CA whose client certificates authenticate this tenant's devices.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// PEM CRLs of `client_ca`: a device certificate they list fails at
    /// HELLO, and its live sessions are told to go at the next reload.
    #[serde(default)]
    pub crl: Option<PathBuf>,
    /// Refuse this tenant's HELLOs on plaintext listeners (AUTH_FAILED):
    /// its tokens never cross the network in the clear.
    #[serde(default)]
    pub require_tls: bool,
    /// How long records are kept (`expires_at`); none keeps them forever.
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// Where this tenant's records go, if not to `[sink] kind`.
    #[serde(default)]
    pub sink: Option<SinkKind>,
    /// The tenant's DynamoDB table, for the `dynamodb` sink.
    #[serde(default)]
    pub dynamodb: Option<DynamoConfig>,
    /// Authenticated connections this tenant may hold at once (within
    /// `server.max_connections`); none for no limit of its own.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Records a second this tenant may store on this node; none for no quota.
    #[serde(default)]
    pub records_per_second: Option<u32>,
    /// Inflated batch bytes a second this tenant may store on this node.
    #[serde(default)]
    pub bytes_per_second: Option<u32>,
    /// Records a second each of this tenant's devices may store.
    #[serde(default)]
    pub device_records_per_second: Option<u32>,
    /// How the tenant's records are stored: `record` (one item per record,
    /// the default) or `packed` (one item per batch; docs/dynamodb.md).
    #[serde(default)]
    pub layout: Layout,
}

/// How a tenant's records become items.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// One item per record (AWP1.md §7).
    #[default]
    Record,
    /// One item per accepted batch, its records zstd-compressed JSON lines
    /// (`awp_store::packed`).
    Packed,
}

/// The fewest characters an admin token may have.
pub const MIN_ADMIN_TOKEN_LEN: usize = 32;

/// The fewest characters a token secret should have (shorter ones, down to
/// [`MIN_SECRET_LEN`], get a warning): a leaked device token lets anyone
/// test guesses of the secret offline, and a guessed secret mints tokens
/// for every device.
pub const STRONG_SECRET_LEN: usize = 32;

/// Why a token secret is weak, if it is: shorter than [`STRONG_SECRET_LEN`],
/// or too few distinct characters, or under 128 bits by the characters it
/// draws from (lower case, upper case, digits, others).
pub fn secret_weakness(secret: &str) -> Option<String> {
    let len = secret.chars().count();
    if len < STRONG_SECRET_LEN {
        return Some(format!("{len} characters; use at least {STRONG_SECRET_LEN}"));
    }
    let distinct = secret.chars().collect::<std::collections::HashSet<_>>().len();
    let mut alphabet = 0usize;
    for (present, size) in [
        (secret.chars().any(|c| c.is_ascii_lowercase()), 26),
        (secret.chars().any(|c| c.is_ascii_uppercase()), 26),
        (secret.chars().any(|c| c.is_ascii_digit()), 10),
        (secret.chars().any(|c| !c.is_ascii_alphanumeric()), 33),
    ] {
        if present {
            alphabet += size;
        }
    }
    let bits = len as f64 * (alphabet.min(distinct.max(2)) as f64).log2();
    if distinct < 8 || bits < 128.0 {
        return Some(format!(
            "low entropy ({distinct} distinct characters, about {bits:.0} bits); use random characters"
        ));
    }
    None
}

impl Config {
    /// The admin token of `server.admin_token_file`, if one is named: the
    /// file's first line, which must hold at least [`MIN_ADMIN_TOKEN_LEN`]
    /// characters.
    pub fn admin_token(&self) -> Result<Option<SecretString>, ConfigError> {
        let Some(path) = &self.server.admin_token_file else {
            return Ok(None);
        };
        let field = "server.admin_token_file";
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(field, format!("cannot read {}: {e}", path.display())))?;
        let token = text.lines().next().unwrap_or("").trim();
        if token.len() < MIN_ADMIN_TOKEN_LEN {
            return Err(ConfigError::new(
                field,
                format!(
                    "{} holds a token of {} characters; use at least {MIN_ADMIN_TOKEN_LEN} (`gateway secret` makes one)",
                    path.display(),
                    token.len()
                ),
            ));
        }
        Ok(Some(SecretString::from(token.to_owned())))
    }

    /// What is valid but unsafe, one line each, naming the field: weak token
    /// secrets, a plaintext listener on a network address for tenants that
    /// authenticate with tokens, an admin endpoint on a network address
    /// without a token. `check-config` prints them; start-up logs them.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for (i, t) in self.tenants.iter().enumerate() {
            for (j, secret) in t.secrets.iter().enumerate() {
                if let Some(weakness) = secret_weakness(secret.expose_secret()) {
                    warnings.push(format!(
                        "tenants[{i}].secrets[{j}]: weak secret, {weakness}: a leaked device token lets anyone \
                         test guesses offline and a guessed secret mints tokens for every device \
                         (`gateway secret` prints a fresh 256-bit one)"
                    ));
                }
            }
        }
        let exposed: Vec<String> = self
            .server
            .listen
            .iter()
            .filter(|a| !a.ip().is_loopback())
            .map(ToString::to_string)
            .collect();
        let token_tenants: Vec<&str> = self
            .tenants
            .iter()
            .filter(|t| !t.secrets.is_empty() && !t.require_tls)
            .map(|t| t.id.as_str())
            .collect();
        if !exposed.is_empty() && !token_tenants.is_empty() {
            warnings.push(format!(
                "server.listen: plaintext on {} while tenants [{}] authenticate with tokens: tokens and records cross \
                 the network in the clear; serve agents on tls_listen, or set require_tls = true for those tenants",
                exposed.join(", "),
                token_tenants.join(", ")
            ));
        }
        if let Some(admin) = self.server.admin_listen
            && !admin.ip().is_loopback()
            && self.server.admin_token_file.is_none()
        {
            warnings.push(format!(
                "server.admin_listen: {admin} is not loopback and there is no admin_token_file: whoever reaches it \
                 reads /metrics (tenant names and volumes); POST /reload is taken from loopback only"
            ));
        }
        warnings
    }

    /// Reads and checks a TOML file.
    /// Relative paths in it (`tls.cert`, `tls.key`, `server.admin_token_file`,
    /// `sink.data_dir`, `tenants[].client_ca`, `tenants[].crl`) are taken
    /// from the file's folder, wherever the gateway is started from.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("config", format!("cannot read {}: {e}", path.display())))?;
        let mut config = Config::parse_unchecked(&text)?;
        let folder = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        config.resolve_paths(folder);
        config.validate()?;
        Ok(config)
    }

    /// Makes the configuration's relative paths relative to `folder`.
    pub fn resolve_paths(&mut self, folder: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = folder.join(&*p);
            }
        };
        if let Some(tls) = &mut self.tls {
            resolve(&mut tls.cert);
            resolve(&mut tls.key);
        }
        if let Some(token) = &mut self.server.admin_token_file {
            resolve(token);
        }
        resolve(&mut self.sink.data_dir);
        for t in &mut self.tenants {
            for p in [&mut t.client_ca, &mut t.crl].into_iter().flatten() {
                resolve(p);
            }
        }
    }

    /// Parses and checks TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config = Config::parse_unchecked(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text without the checks of [`Config::validate`].
    fn parse_unchecked(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let message = e.message().replace('\n', " ");
            let mut field = e
                .span()
                .map(|s| field_at(text, s.start))
                .unwrap_or_else(|| "config".into());
            // A table missing a key: the key is the field.
            if let Some(key) = message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next())
            {
                field = if field == "config" {
                    key.to_owned()
                } else {
                    format!("{field}.{key}")
                };
            }
            ConfigError::new(field, without_values(&message))
        })
    }

    /// Checks every rule that the types do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        self.admin_token()?;
        if s.listen.is_empty() && s.tls_listen.is_empty() {
            return Err(ConfigError::new(
                "server.listen",
                "no listener: set listen or tls_listen",
            ));
        }
        if !s.tls_listen.is_empty() && self.tls.is_none() {
            return Err(ConfigError::new(
                "tls",
                "tls_listen is set but [tls] cert and key are missing",
            ));
        }
        if s.max_connections == 0 {
            return Err(ConfigError::new("server.max_connections", "must be at least 1"));
        }
        if s.listen_backlog == Some(0) {
            return Err(ConfigError::new(
                "server.listen_backlog",
                "must be at least 1 (or left out for the system's maximum)",
            ));
        }
        if s.max_unauthenticated == 0 {
            return Err(ConfigError::new("server.max_unauthenticated", "must be at least 1"));
        }
        if s.max_unauthenticated_per_source == 0 {
            return Err(ConfigError::new(
                "server.max_unauthenticated_per_source",
                "must be at least 1",
            ));
        }
        if s.proxy_protocol && s.proxy_protocol_trusted.is_empty() {
            return Err(ConfigError::new(
                "server.proxy_protocol_trusted",
                "required with proxy_protocol: the networks of the load balancers whose PROXY headers to believe \
                 (such as [\"10.0.0.0/24\"]); anybody else could claim any address",
            ));
        }
        if s.max_frame_len < 65_536 {
            return Err(ConfigError::new(
                "server.max_frame_len",
                "must be at least 65536 (AWP/1 §4.2)",
            ));
        }
        if s.max_batch_records == 0 || s.max_batch_records > MAX_BATCH_RECORDS {
            return Err(ConfigError::new(
                "server.max_batch_records",
                format!("must be 1 to {MAX_BATCH_RECORDS} (a record's index in rk has five digits)"),
            ));
        }
        if s.max_batch_bytes < s.max_frame_len {
            return Err(ConfigError::new(
                "server.max_batch_bytes",
                "must be at least max_frame_len",
            ));
        }
        if s.max_inflight == 0 || s.max_inflight > 1024 {
            return Err(ConfigError::new("server.max_inflight", "must be 1 to 1024"));
        }
        // Times an agent (or the gateway) can live with: a heartbeat of a
        // millisecond would have every agent PING without pause, a minute's
        // hello timeout would hold sockets for strangers.
        for (field, value, range) in [
            ("server.heartbeat_ms", s.heartbeat_ms, 100..=3_600_000),
            ("server.hello_timeout_ms", s.hello_timeout_ms, 100..=600_000),
            (
                "server.tls_handshake_timeout_ms",
                s.tls_handshake_timeout_ms,
                100..=600_000,
            ),
            ("server.write_timeout_ms", s.write_timeout_ms, 100..=600_000),
            ("server.retry_after_ms", s.retry_after_ms, 10..=3_600_000),
            ("server.goaway_reconnect_ms", s.goaway_reconnect_ms, 10..=3_600_000),
            ("server.drain_timeout_ms", s.drain_timeout_ms, 100..=3_600_000),
            (
                "pipeline.write_timeout_ms",
                self.pipeline.write_timeout_ms,
                100..=600_000,
            ),
            ("pipeline.budget_wait_ms", self.pipeline.budget_wait_ms, 10..=600_000),
            ("pipeline.linger_ms", self.pipeline.linger_ms, 0..=10_000),
        ] {
            if !range.contains(&value) {
                return Err(ConfigError::new(
                    field,
                    format!("must be {} to {} (ms)", range.start(), range.end()),
                ));
            }
        }
        if s.max_connection_age_ms != 0 && s.max_connection_age_ms < 100 {
            return Err(ConfigError::new(
                "server.max_connection_age_ms",
                "must be 0 (never) or at least 100",
            ));
        }
        if s.min_frame_rate < 64 {
            return Err(ConfigError::new(
                "server.min_frame_rate",
                "must be at least 64 bytes a second",
            ));
        }
        // Each address once: a listener on another's address would fail to
        // bind (or, with reuse_port, share it with the wrong protocol).
        let mut addresses: Vec<(String, SocketAddr)> = Vec::new();
        let listeners = (s
            .listen
            .iter()
            .enumerate()
            .map(|(i, a)| (format!("server.listen[{i}]"), *a)))
        .chain(
            s.tls_listen
                .iter()
                .enumerate()
                .map(|(i, a)| (format!("server.tls_listen[{i}]"), *a)),
        )
        .chain(s.admin_listen.map(|a| ("server.admin_listen".to_owned(), a)));
        for (field, addr) in listeners {
            let clash = addresses.iter().find(|(_, other)| {
                addr.port() != 0
                    && other.port() == addr.port()
                    && (other.ip() == addr.ip() || other.ip().is_unspecified() || addr.ip().is_unspecified())
            });
            if let Some((other, _)) = clash {
                return Err(ConfigError::new(field, format!("{addr} is already {other}'s address")));
            }
            addresses.push((field, addr));
        }
        for (i, c) in s.compression.iter().enumerate() {
            if c != "lz4" && c != "zstd" {
                return Err(ConfigError::new(
                    format!("server.compression[{i}]"),
                    format!("unknown codec {c:?}: use \"lz4\" or \"zstd\""),
                ));
            }
        }
        let p = &self.pipeline;
        if p.max_items == 0 {
            return Err(ConfigError::new("pipeline.max_items", "must be at least 1"));
        }
        if p.max_bytes == 0 {
            return Err(ConfigError::new("pipeline.max_bytes", "must be at least 1"));
        }

        if p.tenant_budget_percent == 0 || p.tenant_budget_percent > 100 {
            return Err(ConfigError::new("pipeline.tenant_budget_percent", "must be 1 to 100"));
        }
        // The largest batch must fit a tenant's share, or it could never be taken.
        let largest = s.max_batch_bytes.max(s.max_frame_len) as usize + crate::budget::PER_BATCH_OVERHEAD;
        if p.tenant_budget_bytes() < largest {
            return Err(ConfigError::new(
                "pipeline.budget_bytes",
                format!(
                    "a tenant's share ({}% of {}) must hold the largest batch, server.max_batch_bytes + {} = {largest} bytes",
                    p.tenant_budget_percent,
                    p.budget_bytes,
                    crate::budget::PER_BATCH_OVERHEAD
                ),
            ));
        }
        if self.tenants.is_empty() {
            return Err(ConfigError::new(
                "tenants",
                "no tenant configured: add a [[tenants]] table",
            ));
        }
        // Each tenant's guarantee (half the budget in equal parts) must hold
        // its largest batch, or a tenant's batch could wait behind stalled
        // neighbours after all (budget.rs).
        let guarantee = p.budget_bytes / (2 * self.tenants.len());
        if guarantee < largest {
            return Err(ConfigError::new(
                "pipeline.budget_bytes",
                format!(
                    "each of the {} tenants is guaranteed budget_bytes / (2 × tenants) = {guarantee} bytes, less than \
                     the largest batch ({largest} bytes): raise budget_bytes to at least {} or lower server.max_batch_bytes",
                    self.tenants.len(),
                    2 * self.tenants.len() * largest
                ),
            ));
        }
        for (i, t) in self.tenants.iter().enumerate() {
            let field = |name: &str| format!("tenants[{i}].{name}");
            if !awp_protocol::is_valid_tenant_id(&t.id) {
                return Err(ConfigError::new(
                    field("id"),
                    "must be 1-64 characters of A-Z a-z 0-9 _ . -",
                ));
            }
            if self.tenants[..i].iter().any(|o| o.id == t.id) {
                return Err(ConfigError::new(
                    field("id"),
                    format!("tenant {:?} is configured twice", t.id),
                ));
            }
            if t.crl.is_some() && t.client_ca.is_none() {
                return Err(ConfigError::new(
                    field("crl"),
                    "needs a client_ca (the CA that signed it)",
                ));
            }
            if t.secrets.is_empty() && t.client_ca.is_none() {
                return Err(ConfigError::new(
                    field("secrets"),
                    "at least one secret (or a client_ca) is required",
                ));
            }
            if let Some(j) = t.secrets.iter().position(|s| s.expose_secret().len() < MIN_SECRET_LEN) {
                return Err(ConfigError::new(
                    format!("tenants[{i}].secrets[{j}]"),
                    format!("must be at least {MIN_SECRET_LEN} characters (32 random ones recommended)"),
                ));
            }
            if t.client_ca.is_some() && s.tls_listen.is_empty() {
                return Err(ConfigError::new(
                    field("client_ca"),
                    "client certificates need a TLS listener",
                ));
            }
            for (name, value) in [
                ("records_per_second", t.records_per_second),
                ("bytes_per_second", t.bytes_per_second),
                ("device_records_per_second", t.device_records_per_second),
            ] {
                if value == Some(0) {
                    return Err(ConfigError::new(
                        field(name),
                        "must be at least 1 (or left out for no quota)",
                    ));
                }
            }
            if t.max_connections == Some(0) {
                return Err(ConfigError::new(
                    field("max_connections"),
                    "must be at least 1 (or left out for no limit of its own)",
                ));
            }
            if t.retention_days == Some(0) {
                return Err(ConfigError::new(
                    field("retention_days"),
                    "must be at least 1 (or left out)",
                ));
            }
            if t.sink.unwrap_or(self.sink.kind) == SinkKind::Dynamodb && t.dynamodb.is_none() {
                return Err(ConfigError::new(
                    field("dynamodb"),
                    "the dynamodb sink needs the tenant's table: add [tenants.dynamodb] with table and region",
                ));
            }
            if let Some(d) = &t.dynamodb {
                if d.max_concurrency == 0 {
                    return Err(ConfigError::new(
                        field("dynamodb.max_concurrency"),
                        "must be at least 1",
                    ));
                }
                let same_table = |o: &TenantConfig| o.dynamodb.as_ref().is_some_and(|e| e.same_table(d));
                if let Some(other) = self.tenants[..i].iter().find(|o| same_table(o)) {
                    return Err(ConfigError::new(
                        field("dynamodb.table"),
                        format!(
                            "tenant {:?} writes to the same table as tenant {:?} (same table, region and endpoint); \
                             device ids are not prefixed by tenant, so their items would overwrite each other",
                            t.id, other.id
                        ),
                    ));
                }
            }
            if t.sink.unwrap_or(self.sink.kind) == SinkKind::Null && !self.sink.allow_null {
                let field = if t.sink.is_some() {
                    field("sink")
                } else {
                    "sink.kind".to_owned()
                };
                return Err(ConfigError::new(
                    field,
                    format!(
                        "the null sink acknowledges every batch and stores nothing (tenant {:?}); \
                         set sink.allow_null = true (or --allow-null-sink) to use it for benchmarks",
                        t.id
                    ),
                ));
            }
        }
        self.check_files()
    }

    /// Loads every file the configuration names, as start-up does: the
    /// server certificate and key, each tenant's client CA and CRLs (the
    /// admin token is read by [`Config::admin_token`]). Errors name the
    /// field and the file.
    fn check_files(&self) -> Result<(), ConfigError> {
        // A TLS error's message starts with its field.
        let config_error = |e: crate::tls::TlsError| {
            let text = e.to_string();
            let (field, reason) = text.split_once(": ").unwrap_or(("tls", &text));
            ConfigError::new(field, reason)
        };
        let mut cas = Vec::new();
        for (i, t) in self.tenants.iter().enumerate() {
            if let Some(ca) = &t.client_ca {
                let ca_field = format!("tenants[{i}].client_ca");
                let crl_field = format!("tenants[{i}].crl");
                cas.push(
                    crate::tls::TenantCa::load(ca, &ca_field, t.crl.as_deref(), &crl_field).map_err(config_error)?,
                );
            }
        }
        if let Some(tls) = &self.tls {
            crate::tls::server_config(&tls.cert, &tls.key, &cas).map_err(config_error)?;
        }
        Ok(())
    }

    /// The tenants whose records go nowhere (the null sink), for a warning at start.
    pub fn null_sink_tenants(&self) -> impl Iterator<Item = &str> {
        self.tenants
            .iter()
            .filter(|t| t.sink.unwrap_or(self.sink.kind) == SinkKind::Null)
            .map(|t| t.id.as_str())
    }

    /// The embedded default: loopback only, SQLite under `data_dir`, one
    /// development tenant `dev` with the given secret.
    pub fn development(data_dir: PathBuf, secret: String) -> Config {
        Config {
            server: ServerConfig::default(),
            tls: None,
            pipeline: PipelineConfig::default(),
            sink: SinkConfig {
                kind: SinkKind::Sqlite,
                data_dir,
                allow_null: false,
            },
            tenants: vec![TenantConfig {
                id: "dev".into(),
                secrets: vec![secret.into()],
                client_ca: None,
                crl: None,
                require_tls: false,
                retention_days: None,
                sink: None,
                dynamodb: None,
                max_connections: None,
                records_per_second: None,
                bytes_per_second: None,
                device_records_per_second: None,
                layout: Layout::Record,
            }],
        }
    }
}

/// The development tenant's secret, kept in `data_dir/dev-tenant.secret`
/// so agents keep working across restarts; made at random the first time,
/// in a file only the gateway's user can read (in a directory only it can
/// enter, if the directory is new).
pub fn development_secret(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join("dev-tenant.secret");
    if let Ok(secret) = std::fs::read_to_string(&path) {
        let secret = secret.trim().to_owned();
        if secret.len() >= 16 {
            return Ok(secret);
        }
        // Too short to be ours: replaced.
        std::fs::remove_file(&path)?;
    }
    let mut raw = [0u8; 24];
    getrandom::fill(&mut raw).map_err(|e| std::io::Error::other(format!("no randomness for the dev secret: {e}")))?;
    let secret = hex::encode(raw);
    crate::files::create_private_dir(data_dir)?;
    crate::files::write_private_file(&path, format!("{secret}\n").as_bytes())?;
    Ok(secret)
}

/// A parser's message with the offending value taken out, its kind kept:
/// `invalid type: string "TopSecret…", expected a sequence` becomes
/// `invalid type: string, expected a sequence`. The value may be a secret
/// typed into the wrong shape, and the message goes to `check-config`'s
/// output, the answer of `POST /reload` and the log.
fn without_values(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            // The last ", expected": the value before it may hold the words too.
            let (found, expected) = rest.rsplit_once(", expected").unwrap_or((rest, ""));
            // The kind is what comes before the value's quotes or backticks.
            let kind = found.split(['"', '`', '\'']).next().unwrap_or("").trim_end();
            let expected = if expected.is_empty() {
                String::new()
            } else {
                format!(", expected{expected}")
            };
            return format!("{prefix}{kind}{expected}").replace(": ,", ":");
        }
    }
    if let Some(rest) = message.strip_prefix("unknown variant `")
        && let Some((_, expected)) = rest.rsplit_once("`, expected")
    {
        return format!("unknown variant, expected{expected}");
    }
    message.to_owned()
}

/// The dotted path of the TOML key whose value starts at `offset` (best effort,
/// for error messages: the table header above it and the key on its line).
fn field_at(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    // At a table's header (a table missing a key): that table.
    if line.starts_with('[') && line.ends_with(']') {
        let header_end = line_start + line.len();
        let table = table_at(&text[..header_end.min(text.len())]);
        return if table.is_empty() { "config".into() } else { table };
    }
    let key = line.split('=').next().unwrap_or("").trim();
    let table = table_at(&before[..line_start]);
    match (table.is_empty(), key.is_empty() || key.starts_with('[')) {
        (true, true) => "config".into(),
        (true, false) => key.to_owned(),
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}

/// The dotted path of the table the last header of `text` opens:
/// `server`, `tenants[2]`, `tenants[2].dynamodb`; empty before any.
fn table_at(text: &str) -> String {
    let mut table = String::new();
    let mut tenant_index: Option<usize> = None;
    for l in text.lines() {
        let l = l.trim();
        if l == "[[tenants]]" {
            tenant_index = Some(tenant_index.map_or(0, |i| i + 1));
            table = format!("tenants[{}]", tenant_index.unwrap_or(0));
        } else if l.starts_with('[') && l.ends_with(']') {
            let name = l.trim_matches(|c| c == '[' || c == ']').trim();
            // A sub-table of the last [[tenants]]: named by its index.
            table = match (name.strip_prefix("tenants."), tenant_index) {
                (Some(sub), Some(i)) => format!("tenants[{i}].{sub}"),
                _ => name.to_owned(),
            };
        }
    }
    table
}

/// A commented example configuration (`gateway example-config`).
pub const EXAMPLE: &str = r#"# AWP gateway configuration. Every key is optional except [[tenants]];
# the values shown are the defaults. Reference: docs/configuration.md

[server]
listen = ["127.0.0.1:7700"]          # plain TCP; use "0.0.0.0:7700" to accept from other hosts
tls_listen = []                      # e.g. ["0.0.0.0:7701"]; needs [tls]
admin_listen = "127.0.0.1:9464"      # /metrics, /healthz, /readyz, POST /reload
# admin_token_file = "/etc/awp/admin.token"  # POST /reload then needs "Authorization: Bearer <token>";
#                                            # without it: loopback only, with the header "X-AWP-Admin: 1"
max_connections = 10000              # authenticated; beyond: ERROR(SERVER_BUSY)
max_unauthenticated = 1024           # before HELLO; beyond: the one waiting longest is closed
max_unauthenticated_per_source = 64  # of those, from one address (behind a proxy that hides sources: = max_unauthenticated)
proxy_protocol = false               # agent connections start with a PROXY v2 header (HAProxy send-proxy-v2, AWS NLB)
proxy_protocol_trusted = []          # with proxy_protocol: the balancers' networks, e.g. ["10.0.0.0/24"]; others are closed
reuse_port = false                   # true: a second gateway may listen on the same ports (upgrades, several processes)
# listen_backlog = 4096              # default: the system's maximum (net.core.somaxconn)
max_connection_age_ms = 86400000     # GOAWAY sessions older than this (+-10%): they rebalance and authenticate again; 0: never
max_frame_len = 1048576              # advertised in WELCOME
max_batch_records = 1000             # advertised in WELCOME; at most 99999
max_batch_bytes = 4194304            # largest decompressed BATCH
max_inflight = 32                    # advertised in WELCOME
heartbeat_ms = 30000                 # advertised; silence for 3x closes with IDLE_TIMEOUT
min_frame_rate = 1024                # bytes/s a frame must average after one heartbeat (90 kbit/s cellular is 11250)
hello_timeout_ms = 5000
tls_handshake_timeout_ms = 5000
write_timeout_ms = 10000
retry_after_ms = 1000                # in ACK RETRY when the pipeline is full or a sink fails
goaway_reconnect_ms = 1000           # in GOAWAY at shutdown
drain_timeout_ms = 30000             # shutdown waits this long for acks and sinks
compression = ["lz4", "zstd"]

# [tls]
# cert = "/etc/awp/server.pem"
# key = "/etc/awp/server.key"

[pipeline]
max_items = 20000                    # the most records in one sink write
max_bytes = 8388608                  # the most inflated batch bytes in one sink write
linger_ms = 0                        # wait for more batches before a write (0: write at once)
write_timeout_ms = 10000             # a write (or a wait in the queue) longer than this: ACK RETRY
budget_bytes = 268435456             # memory for batches held from decode until written, all tenants
tenant_budget_percent = 50           # the share of it one tenant may hold
budget_wait_ms = 10000               # a batch waiting longer for budget: ACK RETRY
unhealthy_after_ms = 60000           # a sink failing every write this long degrades its tenant (0: never)

[sink]
kind = "sqlite"                      # or "dynamodb" (each tenant's table), "null" (benchmarks)
data_dir = "data"                    # one <tenant>.sqlite3 per tenant
allow_null = false                   # "null" stores nothing and acks everything: refused unless true

[[tenants]]
id = "acme"
secrets = ["change-me-to-a-long-random-secret"]   # several during rotation
# client_ca = "/etc/awp/acme-ca.pem"  # devices may authenticate with client certificates
# retention_days = 90                 # sets expires_at on every item
# max_connections = 5000              # this tenant's share of server.max_connections
# records_per_second = 50000          # quotas, per node: over them a batch gets ACK RETRY
# bytes_per_second = 10485760
# device_records_per_second = 500
# layout = "packed"                   # one item per batch, not per record: ~20x fewer write units (docs/dynamodb.md)
# sink = "dynamodb"                   # this tenant's store, if not [sink] kind
# [tenants.dynamodb]                  # for the dynamodb sink: the tenant's own table
# table = "awp-acme"
# region = "eu-west-1"
# endpoint = "http://127.0.0.1:8000"  # dynalite / DynamoDB Local / VPC endpoint
# profile = "acme"                    # a named profile instead of the standard chain
# role_arn = "arn:aws:iam::111122223333:role/awp-gateway-writer"  # the partner's account
# max_concurrency = 8                 # BatchWriteItem requests in flight, adaptive below
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_parses() {
        let config = Config::parse(EXAMPLE).unwrap();
        assert_eq!(config.tenants[0].id, "acme");
        assert_eq!(config.server.max_inflight, 32);
    }

    fn error_of(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn a_value_of_the_wrong_shape_is_named_by_its_kind_never_quoted() {
        let secret = "TopSecret-do-not-print-0123456789";
        for (text, field) in [
            (
                format!("[[tenants]]\nid = \"a\"\nsecrets = \"{secret}\"\n"),
                "tenants[0].secrets",
            ),
            (
                format!("[server]\nmax_inflight = \"{secret}\"\n"),
                "server.max_inflight",
            ),
            (
                format!("[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\nlayout = \"{secret}\"\n"),
                "tenants[0].layout",
            ),
            (
                format!(
                    "[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n[tenants.dynamodb]\ntable = \"t\"\nregion = \"r\"\nsecret_access_key = [\"{secret}\"]\n"
                ),
                "tenants[0].dynamodb.secret_access_key",
            ),
        ] {
            let error = error_of(&text);
            assert!(error.starts_with(field), "{error}");
            assert!(!error.contains("TopSecret"), "{error}");
            assert!(
                error.contains("invalid type") || error.contains("unknown variant"),
                "{error}"
            );
        }
        assert_eq!(
            without_values("invalid type: string \"x\", expected a sequence"),
            "invalid type: string, expected a sequence"
        );
        assert_eq!(
            without_values("invalid type: integer `5`, expected a string"),
            "invalid type: integer, expected a string"
        );
        assert_eq!(
            without_values("unknown variant `packd`, expected `record` or `packed`"),
            "unknown variant, expected `record` or `packed`"
        );
        // A value holding the words the message is cut at.
        assert_eq!(
            without_values("invalid type: string \"x, expected y\", expected a sequence"),
            "invalid type: string, expected a sequence"
        );
        assert_eq!(
            without_values("unknown variant `a`b, expected c`, expected `record` or `packed`"),
            "unknown variant, expected `record` or `packed`"
        );
    }

    #[test]
    fn the_same_table_in_another_region_or_endpoint_is_another_table() {
        let two = |second: &str| {
            format!(
                "[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n[tenants.dynamodb]\ntable = \"t\"\n\
                 region = \"eu-west-1\"\n[[tenants]]\nid = \"b\"\nsecrets = [\"0123456789abcdef\"]\n\
                 [tenants.dynamodb]\ntable = \"t\"\n{second}\n"
            )
        };
        assert!(Config::parse(&two("region = \"us-east-1\"")).is_ok());
        assert!(Config::parse(&two("region = \"eu-west-1\"\nendpoint = \"http://127.0.0.1:8000\"")).is_ok());
        assert!(Config::parse(&two("region = \"eu-west-1\"")).is_err());
    }

    const TENANT: &str = "[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n";

    #[test]
    fn check_config_checks_what_start_up_checks() {
        // A dynamodb tenant without its table.
        assert!(
            error_of(&format!("[sink]\nkind = \"dynamodb\"\n{TENANT}"))
                .starts_with("tenants[0].dynamodb: the dynamodb sink needs the tenant's table")
        );
        // Two listeners on one address; the admin endpoint on an agent port.
        assert_eq!(
            error_of(&format!(
                "[server]\nlisten = [\"127.0.0.1:7700\"]\nadmin_listen = \"127.0.0.1:7700\"\n{TENANT}"
            )),
            "server.admin_listen: 127.0.0.1:7700 is already server.listen[0]'s address"
        );
        assert!(
            error_of(&format!(
                "[server]\nlisten = [\"0.0.0.0:7700\", \"127.0.0.1:7700\"]\n{TENANT}"
            ))
            .starts_with("server.listen[1]: 127.0.0.1:7700 is already server.listen[0]'s address")
        );
        // Forty tenants on the default budget: no room guaranteed for a 4 MiB batch each.
        let forty: String = (0..40)
            .map(|i| format!("[[tenants]]\nid = \"t{i}\"\nsecrets = [\"0123456789abcdef\"]\n"))
            .collect();
        assert!(error_of(&forty).starts_with("pipeline.budget_bytes: each of the 40 tenants is guaranteed"));
        // Times no agent can live with.
        assert_eq!(
            error_of(&format!("[server]\nheartbeat_ms = 1\n{TENANT}")),
            "server.heartbeat_ms: must be 100 to 3600000 (ms)"
        );
        assert!(
            error_of(&format!("[server]\nmax_connection_age_ms = 5\n{TENANT}"))
                .starts_with("server.max_connection_age_ms")
        );
        // Files that do not load, each error once, by its field.
        let missing = error_of(&format!(
            "[server]\ntls_listen = [\"127.0.0.1:0\"]\n[tls]\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"\n{TENANT}"
        ));
        assert!(
            missing.starts_with("tls.cert: cannot read /nonexistent/c.pem"),
            "{missing}"
        );
        assert_eq!(missing.matches("tls.cert").count(), 1, "{missing}");
        assert_eq!(
            error_of(&format!(
                "[server]\ntls_listen = [\"127.0.0.1:0\"]\n[tls]\ncert = \"c.pem\"\n{TENANT}"
            )),
            "tls.key: missing field `key`"
        );
    }

    #[test]
    fn relative_paths_are_taken_from_the_files_folder() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("etc");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("admin.token"), "x".repeat(40)).unwrap();
        std::fs::write(
            sub.join("gateway.toml"),
            format!("[server]\nadmin_token_file = \"admin.token\"\n[sink]\ndata_dir = \"data\"\n{TENANT}"),
        )
        .unwrap();
        let config = Config::load(&sub.join("gateway.toml")).unwrap();
        assert_eq!(config.sink.data_dir, sub.join("data"));
        assert_eq!(config.server.admin_token_file, Some(sub.join("admin.token")));
    }

    #[test]
    fn networks_parse_and_contain_their_addresses() {
        let net: Network = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.1".parse().unwrap()), "IPv4-mapped");
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        let one: Network = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()) && !one.contains("127.0.0.2".parse().unwrap()));
        let v6: Network = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()) && !v6.contains("2001:db9::1".parse().unwrap()));
        let all: Network = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.7".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Network>().is_err());
        assert!("ten".parse::<Network>().is_err());
        assert!(
            error_of("[server]\nproxy_protocol = true\n[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n")
                .starts_with("server.proxy_protocol_trusted: required with proxy_protocol")
        );
    }

    #[test]
    fn a_table_named_two_ways_is_one_table() {
        let two = |first: &str, second: &str| {
            format!(
                "[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n[tenants.dynamodb]\n{first}\n\
                 [[tenants]]\nid = \"b\"\nsecrets = [\"0123456789abcdef\"]\n[tenants.dynamodb]\n{second}\n"
            )
        };
        let same = |first: &str, second: &str| {
            let error = Config::parse(&two(first, second)).err().map(|e| e.to_string());
            error.is_some_and(|e| e.contains("writes to the same table"))
        };
        // A name and its ARN.
        assert!(same(
            "table = \"t\"\nregion = \"eu-west-1\"",
            "table = \"arn:aws:dynamodb:eu-west-1:123456789012:table/t\"\nregion = \"eu-west-1\""
        ));
        assert!(!same(
            "table = \"t\"\nregion = \"eu-west-1\"",
            "table = \"arn:aws:dynamodb:us-east-1:123456789012:table/t\"\nregion = \"us-east-1\""
        ));
        // The region's endpoint named or not; localhost and 127.0.0.1; a default port.
        assert!(same(
            "table = \"t\"\nregion = \"eu-west-1\"",
            "table = \"t\"\nregion = \"eu-west-1\"\nendpoint = \"https://DynamoDB.eu-west-1.amazonaws.com:443/\""
        ));
        assert!(same(
            "table = \"t\"\nregion = \"r\"\nendpoint = \"http://localhost:8000\"",
            "table = \"t\"\nregion = \"r\"\nendpoint = \"http://127.0.0.1:8000\""
        ));
        assert!(same(
            "table = \"t\"\nregion = \"r\"\nendpoint = \"http://127.0.0.1\"",
            "table = \"t\"\nregion = \"r\"\nendpoint = \"http://127.0.0.1:80\""
        ));
        assert!(!same(
            "table = \"t\"\nregion = \"r\"\nendpoint = \"http://localhost:8000\"",
            "table = \"t\"\nregion = \"r\"\nendpoint = \"http://127.0.0.1:8001\""
        ));
    }

    #[test]
    fn the_null_sink_is_taken_only_when_allowed() {
        let config = Config::parse(
            "[sink]\nkind = \"null\"\nallow_null = true\n[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n",
        )
        .unwrap();
        assert_eq!(config.null_sink_tenants().collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let config = Config::parse(
            "[[tenants]]\nid = \"a\"\nsecrets = [\"tenant-secret-one\", \"tenant-secret-two\"]\n\
             [tenants.dynamodb]\ntable = \"t\"\nregion = \"eu-west-1\"\naccess_key_id = \"AKIDEXAMPLE\"\n\
             secret_access_key = \"aws-secret-key-value\"\n",
        )
        .unwrap();
        let printed = format!(
            "{config:?} {:?}",
            crate::tenant::Tenants::from_config(&config.tenants, &config.server).unwrap()
        );
        for secret in ["tenant-secret-one", "tenant-secret-two", "aws-secret-key-value"] {
            assert!(!printed.contains(secret), "{secret} printed in {printed}");
        }
        // A secret's bytes are not printed either.
        assert!(!printed.contains(&format!("{:?}", b"tenant-secret-one")), "{printed}");
        assert!(
            printed.contains("REDACTED") || printed.contains("redacted"),
            "{printed}"
        );
        assert!(printed.contains("AKIDEXAMPLE"), "the key id is not a secret");
    }

    #[test]
    fn errors_name_the_field_on_one_line() {
        let cases = [
            (
                "[server]\nmax_inflight = 0\n[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n",
                "server.max_inflight: must be 1 to 1024",
            ),
            ("[server]\nmax_inflight = -3\n", "server.max_inflight: "),
            ("[server]\nlisten = [\"nowhere\"]\n", "server.listen: "),
            ("[server]\nbogus = 1\n", "server.bogus: "),
            ("", "tenants: no tenant configured"),
            (
                "[[tenants]]\nid = \"a b\"\nsecrets = [\"0123456789abcdef\"]\n",
                "tenants[0].id: must be 1-64 characters",
            ),
            (
                "[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n[[tenants]]\nid = \"b\"\nsecrets = [\"short\"]\n",
                "tenants[1].secrets[0]: must be at least 8 characters",
            ),
            (
                "[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n",
                "tenants[1].id: tenant \"a\" is configured twice",
            ),
            (
                "[sink]\nkind = \"dynamo\"\n[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n",
                "sink.kind: ",
            ),
            (
                "[server]\nmax_unauthenticated = 0\n[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n",
                "server.max_unauthenticated: must be at least 1",
            ),
            (
                "[server]\nmax_unauthenticated_per_source = 0\n[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n",
                "server.max_unauthenticated_per_source: must be at least 1",
            ),
            (
                "[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\nmax_connections = 0\n",
                "tenants[0].max_connections: must be at least 1",
            ),
            (
                "[server]\nmax_batch_records = 100000\n[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n",
                "server.max_batch_records: must be 1 to 99999",
            ),
            (
                "[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n[tenants.dynamodb]\ntable = \"t\"\n\
                 region = \"eu-west-1\"\nmax_concurrency = 0\n",
                "tenants[0].dynamodb.max_concurrency: must be at least 1",
            ),
            (
                "[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n[tenants.dynamodb]\ntable = \"t\"\nregion = \"eu-west-1\"\n\
                 [[tenants]]\nid = \"b\"\nsecrets = [\"0123456789abcdef\"]\n[tenants.dynamodb]\ntable = \"t\"\nregion = \"eu-west-1\"\n",
                "tenants[1].dynamodb.table: tenant \"b\" writes to the same table as tenant \"a\"",
            ),
            (
                "[sink]\nkind = \"null\"\n[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\n",
                "sink.kind: the null sink acknowledges every batch and stores nothing",
            ),
            (
                "[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789abcdef\"]\nsink = \"null\"\n",
                "tenants[0].sink: the null sink acknowledges every batch and stores nothing",
            ),
        ];
        for (text, expected) in cases {
            let message = error_of(text);
            assert!(message.starts_with(expected), "{text:?}: got {message:?}");
            assert!(!message.contains('\n'), "one line: {message:?}");
        }
    }
}
