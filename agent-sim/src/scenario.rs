//! What a run does: from flags for the quick case, or a TOML file (flags
//! still override) for the full case. `agent-sim example-scenario` prints a
//! commented file; every field is described in `docs/load-testing.md`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use awp_protocol::Compression;
use awp_protocol::sample::Mix;
use serde::Deserialize;

/// A scenario problem, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ScenarioError {
    /// The field, e.g. `agents` or `tls.ca`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn err(field: &str, message: impl Into<String>) -> ScenarioError {
    ScenarioError {
        field: field.into(),
        message: message.into(),
    }
}

/// One load test.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    /// A name for the report (none by default).
    pub name: String,
    /// Gateway addresses; agents are spread over them (loopback only).
    pub gateway: Vec<SocketAddr>,
    /// Tenant of every agent.
    pub tenant: String,
    /// The tenant's secret (device tokens are made from it).
    pub secret: String,
    /// How many agents (one connection each).
    pub agents: usize,
    /// Device ids are `{device_prefix}{run_id}-{n}` (with a client
    /// certificate: the certificate's common name).
    pub device_prefix: String,
    /// Tells this run's devices apart from every earlier run's, so that
    /// verify proves this run stored what it was acked; empty: a random one
    /// is drawn when the run starts. With `first_seq`, it replays an
    /// earlier run: the same devices and batches sent again.
    pub run_id: String,
    /// The first batch `seq` of every agent; 0: the run's start time in
    /// unix µs, so that no two runs share a record key even for the same
    /// device (a client certificate's): an agent sends far fewer than a
    /// million batches a second, so a run's seqs stay below the next run's
    /// first. Set, with `run_id`, to replay a run.
    pub first_seq: u64,
    /// How long agents send, in seconds (then they drain and say BYE).
    pub duration_s: f64,
    /// Agents connected per second while ramping up (0: all at once).
    pub ramp_per_s: f64,
    /// After sending stops, how long agents wait for their last ACKs
    /// (resending after RETRY) before giving up; batches still unacked then
    /// fail the run.
    pub drain_grace_s: f64,
    /// Records per batch.
    pub records_per_batch: usize,
    /// Batches per second per agent in open-loop mode; 0 = closed loop
    /// (each agent sends as fast as its window allows).
    pub batches_per_s: f64,
    /// Unacknowledged batches an agent keeps (also bounded by WELCOME's max_inflight).
    pub window: usize,
    /// Compression of the batches: none, lz4, zstd.
    pub compression: String,
    /// Weights of the platforms (android, windows, macos, linux).
    pub platforms: [u32; 4],
    /// Weights of the record kinds.
    pub kinds: KindMix,
    /// Per agent and second, the chance of dropping the connection and
    /// reconnecting (churn); the unacked batches are resent.
    pub churn_per_s: f64,
    /// Times (seconds from the start) at which every agent drops its
    /// connection at once and reconnects (a reconnect storm).
    pub storms_at_s: Vec<f64>,
    /// Loopback source addresses to spread connections over (past the
    /// ephemeral-port limit of one address): 127.0.0.1 … 127.0.0.N.
    pub source_addresses: usize,
    /// Send a PING after this long without sending (0: use WELCOME's heartbeat).
    pub heartbeat_ms: u64,
    /// TLS, if set.
    pub tls: Option<TlsScenario>,
    /// Distinct pre-encoded batch contents (agents cycle through them).
    pub templates: usize,
}

/// `[kinds]`
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KindMix {
    /// LOCATION weight.
    pub location: u32,
    /// APP_USAGE weight.
    pub app_usage: u32,
    /// NET_USAGE weight.
    pub net_usage: u32,
    /// MESSAGE weight.
    pub message: u32,
    /// EVENT weight.
    pub event: u32,
}

impl Default for KindMix {
    fn default() -> Self {
        let m = Mix::default();
        KindMix {
            location: m.location,
            app_usage: m.app_usage,
            net_usage: m.net_usage,
            message: m.message,
            event: m.event,
        }
    }
}

impl From<KindMix> for Mix {
    fn from(k: KindMix) -> Mix {
        Mix {
            location: k.location,
            app_usage: k.app_usage,
            net_usage: k.net_usage,
            message: k.message,
            event: k.event,
        }
    }
}

/// `[tls]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsScenario {
    /// PEM CA that signed the gateway's certificate.
    pub ca: PathBuf,
    /// The name to verify the gateway's certificate against.
    #[serde(default = "default_server_name")]
    pub server_name: String,
    /// PEM client certificate and key (then HELLO uses auth_method 2 and the
    /// certificate's CN must be the device id: use one agent per certificate).
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's key.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
}

fn default_server_name() -> String {
    "localhost".into()
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            name: String::new(),
            gateway: vec![SocketAddr::from(([127, 0, 0, 1], 7700))],
            tenant: "dev".into(),
            secret: String::new(),
            agents: 100,
            device_prefix: "sim-".into(),
            run_id: String::new(),
            first_seq: 0,
            duration_s: 10.0,
            ramp_per_s: 0.0,
            drain_grace_s: 30.0,
            records_per_batch: 100,
            batches_per_s: 0.0,
            window: 4,
            compression: "none".into(),
            platforms: [40, 40, 10, 10],
            kinds: KindMix::default(),
            churn_per_s: 0.0,
            storms_at_s: Vec::new(),
            source_addresses: 1,
            heartbeat_ms: 0,
            tls: None,
            templates: 16,
        }
    }
}

impl Scenario {
    /// Reads a TOML scenario.
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        toml::from_str(text).map_err(|e| err("scenario", e.message().replace('\n', " ")))
    }

    /// The batches' compression.
    pub fn compression(&self) -> Compression {
        match self.compression.as_str() {
            "lz4" => Compression::Lz4,
            "zstd" => Compression::Zstd,
            _ => Compression::None,
        }
    }

    /// Checks the rules the types do not.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        if self.gateway.is_empty() {
            return Err(err("gateway", "at least one address"));
        }
        // Load goes to this machine only.
        if let Some(a) = self.gateway.iter().find(|a| !a.ip().is_loopback()) {
            return Err(err(
                "gateway",
                format!("{a} is not a loopback address; agent-sim only targets 127.0.0.0/8 or ::1"),
            ));
        }
        if self.agents == 0 {
            return Err(err("agents", "at least 1"));
        }
        if self.secret.is_empty() && self.tls.as_ref().is_none_or(|t| t.client_cert.is_none()) {
            return Err(err(
                "secret",
                "the tenant secret is required (or a TLS client certificate)",
            ));
        }
        if !awp_protocol::is_valid_tenant_id(&self.tenant) {
            return Err(err("tenant", "1-64 characters of A-Z a-z 0-9 _ . -"));
        }
        if !self.run_id.is_empty() && !awp_protocol::is_valid_device_id(&self.run_id) {
            return Err(err(
                "run_id",
                "characters of A-Z a-z 0-9 _ . : @ - (it is part of the device ids)",
            ));
        }
        if !awp_protocol::is_valid_device_id(&format!("{}{}-{}", self.device_prefix, self.run_id, self.agents)) {
            return Err(err(
                "device_prefix",
                "device ids must be 1-128 characters of A-Z a-z 0-9 _ . : @ -",
            ));
        }
        if !(self.duration_s > 0.0 && self.duration_s <= 24.0 * 3600.0) {
            return Err(err("duration_s", "between 0 and 86400 seconds"));
        }
        // 0 would give up on whatever is in flight when sending stops.
        if !(self.drain_grace_s > 0.0 && self.drain_grace_s <= 3600.0) {
            return Err(err("drain_grace_s", "above 0 and at most 3600 seconds"));
        }
        // Room to count up from: a seq never wraps.
        if self.first_seq > 1 << 62 {
            return Err(err("first_seq", "at most 2^62 (0: the run's start in unix µs)"));
        }
        if self.records_per_batch == 0 || self.records_per_batch > 100_000 {
            return Err(err("records_per_batch", "between 1 and 100000"));
        }
        if self.window == 0 {
            return Err(err("window", "at least 1"));
        }
        if !matches!(self.compression.as_str(), "none" | "lz4" | "zstd") {
            return Err(err("compression", "none, lz4 or zstd"));
        }
        if self.platforms.iter().sum::<u32>() == 0 {
            return Err(err("platforms", "at least one weight above 0"));
        }
        let k = self.kinds;
        if k.location + k.app_usage + k.net_usage + k.message + k.event == 0 {
            return Err(err("kinds", "at least one weight above 0"));
        }
        if !(0.0..=1.0).contains(&self.churn_per_s) {
            return Err(err("churn_per_s", "a probability per second, 0 to 1"));
        }
        if self.source_addresses == 0 || self.source_addresses > 250 {
            return Err(err("source_addresses", "between 1 and 250 (127.0.0.1 ...)"));
        }
        if self.templates == 0 {
            return Err(err("templates", "at least 1"));
        }
        if let Some(tls) = &self.tls
            && tls.client_cert.is_some() != tls.client_key.is_some()
        {
            return Err(err("tls.client_cert", "client_cert and client_key go together"));
        }
        if self.tls.as_ref().is_some_and(|t| t.client_cert.is_some()) && self.agents != 1 {
            return Err(err(
                "agents",
                "1 with a client certificate: the certificate is one device's (its common name)",
            ));
        }
        Ok(())
    }

    /// The loopback source address of agent `n`.
    pub fn source_address(&self, n: usize) -> Option<IpAddr> {
        (self.source_addresses > 1).then(|| IpAddr::from([127, 0, 0, 1 + (n % self.source_addresses) as u8]))
    }
}

/// A commented example scenario (`agent-sim example-scenario`).
pub const EXAMPLE: &str = r#"# agent-sim scenario; every key is optional but secret. Values shown are defaults
# unless marked. Reference: docs/load-testing.md
name = "steady-1k"
gateway = ["127.0.0.1:7700"]       # loopback only; several addresses spread agents
tenant = "dev"
secret = "the tenant secret"       # required (example value)
agents = 1000                      # example value (default 100)
device_prefix = "sim-"              # device ids: {device_prefix}{run_id}-{n}
run_id = ""                        # "" = a random one each run (verify then proves this run alone)
first_seq = 0                      # 0 = the run's start in unix µs; set it and run_id to replay a run
duration_s = 60                    # example value (default 10)
ramp_per_s = 200                   # agents connected per second; 0 = all at once
drain_grace_s = 30                 # after sending, how long to wait for the last ACKs
records_per_batch = 100
batches_per_s = 1                  # open loop, per agent (example); 0 = closed loop, as fast as the window allows
window = 4                         # unacked batches per agent (also capped by WELCOME)
compression = "lz4"                # none, lz4, zstd (example; default none)
platforms = [40, 40, 10, 10]       # android, windows, macos, linux
churn_per_s = 0.001                # per agent: chance per second of dropping and reconnecting (example)
storms_at_s = [30]                 # every agent reconnects at once at these times (example)
source_addresses = 4               # 127.0.0.1..127.0.0.4 as source addresses (example; default 1)
heartbeat_ms = 0                   # 0: PING after WELCOME's heartbeat_ms of silence
templates = 16                     # distinct pre-encoded batch contents

[kinds]                            # record-kind weights
location = 30
app_usage = 25
net_usage = 15
message = 15
event = 15

# [tls]
# ca = "ca.pem"
# server_name = "localhost"
# client_cert = "device.pem"       # then auth_method 2
# client_key = "device.key"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_parses_and_validates() {
        let s = Scenario::parse(EXAMPLE).unwrap();
        s.validate().unwrap();
        assert_eq!(s.agents, 1000);
        assert_eq!(s.compression(), Compression::Lz4);
        assert_eq!(s.source_address(5), Some(IpAddr::from([127, 0, 0, 2])));
    }

    #[test]
    fn only_loopback_targets() {
        let s = Scenario {
            gateway: vec!["10.0.0.1:7700".parse().unwrap()],
            secret: "x".repeat(16),
            ..Scenario::default()
        };
        assert_eq!(s.validate().unwrap_err().field, "gateway");
    }
}
