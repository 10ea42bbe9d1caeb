//! The configuration the C ABI and the Java binding take: one JSON object,
//! read key by key so that a bad value is answered with its key's name.
//!
//! | key | type | default |
//! |---|---|---|
//! | `gateways` | array of `"host:port"` | required |
//! | `tenant`, `device` | string | required |
//! | `token` | 64 hex digits (as `gateway token` prints it) | one of `token`, `client_cert` |
//! | `token_expiry` | unix seconds, 0 never | 0 |
//! | `client_cert`, `client_key` | PEM text | none |
//! | `tls` | bool: TLS with the platform's CAs | false; true when `tls_ca` is given |
//! | `tls_ca` | PEM text of the CAs to trust | the platform's |
//! | `tls_server_name` | string | the gateway's host |
//! | `queue_dir` | path of a directory of the queue's own | required unless `memory_queue` |
//! | `memory_queue` | bool: keep the queue in memory (lost with the process) | false |
//! | `queue_max_bytes` | u64 | 67108864 (64 MiB) |
//! | `queue_max_age_s` | u64 | 604800 (7 days) |
//! | `batch_max_records`, `batch_max_bytes`, `batch_delay_ms` | u64 | 500, 60000, 5000 |
//! | `sync_interval_ms` | u64 | 1000 |
//! | `compression` | `"none"`, `"lz4"`, `"zstd"` | `"lz4"` |
//! | `ack_timeout_ms`, `connect_timeout_ms`, `idle_close_ms` | u64 | 60000, 30000, 60000 |
//! | `backoff_min_ms`, `backoff_max_ms`, `stable_after_ms` | u64 | 1000, 300000, 60000 |
//! | `platform` | `"android"`, `"windows"`, `"macos"`, `"linux"`, `"ios"`, `"unknown"` | this build's |
//! | `agent_version` | string (≤ 64 bytes) | `awp-client/VERSION` |
//!
//! Unknown keys are refused (a misspelt `queue_dir` must not silently give
//! a memory queue).

use std::time::Duration;

use awp_protocol::{Compression, Platform};
use serde_json::{Map, Value};

use crate::config::{Auth, ClientConfig, QueuePlace, Tls, Token};

const KEYS: &[&str] = &[
    "gateways",
    "tenant",
    "device",
    "token",
    "token_expiry",
    "client_cert",
    "client_key",
    "tls",
    "tls_ca",
    "tls_server_name",
    "queue_dir",
    "memory_queue",
    "queue_max_bytes",
    "queue_max_age_s",
    "batch_max_records",
    "batch_max_bytes",
    "batch_delay_ms",
    "sync_interval_ms",
    "compression",
    "ack_timeout_ms",
    "connect_timeout_ms",
    "idle_close_ms",
    "backoff_min_ms",
    "backoff_max_ms",
    "stable_after_ms",
    "platform",
    "agent_version",
];

/// A client's configuration from its JSON text; the error names the key.
pub(crate) fn config_from_json(text: &str) -> Result<ClientConfig, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("config: not JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err("config: must be a JSON object".into());
    };
    if let Some(unknown) = map.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!("{unknown}: not a configuration key"));
    }
    let keys = Keys(&map);
    let gateways = match map.get("gateways") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|g| {
                g.as_str()
                    .map(str::to_owned)
                    .ok_or("gateways: each must be a \"host:port\" string")
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(Value::String(one)) => vec![one.clone()],
        Some(_) => return Err("gateways: must be a non-empty array of \"host:port\" strings".into()),
        None => return Err("gateways: missing".into()),
    };
    let tenant = keys.string("tenant")?.ok_or("tenant: missing")?;
    let device = keys.string("device")?.ok_or("device: missing")?;
    let auth = match (keys.string("token")?, keys.string("client_cert")?) {
        (Some(_), None) if map.contains_key("client_key") => {
            return Err("client_key: given without a client_cert (this client uses a token)".into());
        }
        (Some(hex), None) => Auth::Token(Token {
            token: token_from_hex(&hex)?,
            expiry: keys.u64("token_expiry")?.unwrap_or(0),
        }),
        (None, Some(cert)) => {
            if map.contains_key("token_expiry") {
                return Err("token_expiry: given without a token (this client uses client_cert)".into());
            }
            let key = keys
                .string("client_key")?
                .ok_or("client_key: missing (client_cert needs it)")?;
            Auth::ClientCert {
                cert_pem: cert.into_bytes(),
                key_pem: key.into_bytes(),
            }
        }
        (Some(_), Some(_)) => return Err("token: give a token or a client_cert, not both".into()),
        (None, None) => return Err("token: missing (or client_cert)".into()),
    };
    let memory = keys.bool("memory_queue")?.unwrap_or(false);
    let queue = match (keys.string("queue_dir")?, memory) {
        (Some(dir), false) => QueuePlace::Disk(dir.into()),
        (None, true) => QueuePlace::Memory,
        (Some(_), true) => return Err("queue_dir: give queue_dir or memory_queue, not both".into()),
        (None, false) => return Err("queue_dir: missing (a directory of the queue's own)".into()),
    };
    let mut config = ClientConfig::new(gateways, &tenant, &device, auth, queue);
    let ca = keys.string("tls_ca")?;
    if keys.bool("tls")?.unwrap_or(ca.is_some()) {
        config.tls = Some(Tls {
            ca_pem: ca.map(String::into_bytes),
            server_name: keys.string("tls_server_name")?,
        });
    } else if ca.is_some() {
        return Err("tls: false, yet tls_ca is given".into());
    } else if map.contains_key("tls_server_name") {
        return Err("tls_server_name: given without TLS (set tls: true or tls_ca)".into());
    }
    if let Some(v) = keys.u64("queue_max_bytes")? {
        config.queue_options.max_bytes = v;
    }
    if let Some(v) = keys.u64("queue_max_age_s")? {
        config.queue_options.max_age = Duration::from_secs(v);
    }
    if let Some(v) = keys.u64("batch_max_records")? {
        config.seal.max_records = u32::try_from(v).map_err(|_| "batch_max_records: too large")?;
    }
    if let Some(v) = keys.u64("batch_max_bytes")? {
        config.seal.max_bytes = usize::try_from(v).map_err(|_| "batch_max_bytes: too large")?;
    }
    config.queue_options.seal = config.seal;
    let millis = |key: &str, into: &mut Duration| -> Result<(), String> {
        if let Some(v) = keys.u64(key)? {
            *into = Duration::from_millis(v);
        }
        Ok(())
    };
    millis("batch_delay_ms", &mut config.batch_delay)?;
    millis("sync_interval_ms", &mut config.sync_interval)?;
    millis("ack_timeout_ms", &mut config.ack_timeout)?;
    millis("connect_timeout_ms", &mut config.connect_timeout)?;
    millis("idle_close_ms", &mut config.idle_close)?;
    millis("backoff_min_ms", &mut config.backoff.0)?;
    millis("backoff_max_ms", &mut config.backoff.1)?;
    millis("stable_after_ms", &mut config.stable_after)?;
    if config.backoff.0.is_zero() || config.backoff.0 > config.backoff.1 {
        return Err("backoff_min_ms: must be at least 1 and at most backoff_max_ms".into());
    }
    if let Some(name) = keys.string("compression")? {
        config.compression = match name.as_str() {
            "none" => Compression::None,
            "lz4" => Compression::Lz4,
            "zstd" => Compression::Zstd,
            _ => return Err(format!("compression: {name:?} is not none, lz4 or zstd")),
        };
    }
    if let Some(name) = keys.string("platform")? {
        config.platform = Platform::ALL
            .into_iter()
            .find(|p| p.as_str() == name)
            .ok_or_else(|| format!("platform: {name:?} is not android, windows, macos, linux, ios or unknown"))?;
    }
    if let Some(version) = keys.string("agent_version")? {
        if version.len() > 64 {
            return Err("agent_version: longer than 64 bytes".into());
        }
        config.agent_version = version;
    }
    Ok(config)
}

/// 64 hex digits to a token's 32 bytes.
pub(crate) fn token_from_hex(hex: &str) -> Result<[u8; 32], String> {
    let digits = hex.as_bytes();
    if digits.len() != 64 {
        return Err(format!("token: must be 64 hex digits, not {}", digits.len()));
    }
    let mut token = [0u8; 32];
    for (byte, pair) in token.iter_mut().zip(digits.chunks_exact(2)) {
        let text = std::str::from_utf8(pair).map_err(|_| "token: not hex")?;
        *byte = u8::from_str_radix(text, 16).map_err(|_| "token: not hex")?;
    }
    Ok(token)
}

struct Keys<'a>(&'a Map<String, Value>);

impl Keys<'_> {
    fn string(&self, key: &str) -> Result<Option<String>, String> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("{key}: must be a string")),
        }
    }

    fn u64(&self, key: &str) -> Result<Option<u64>, String> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| format!("{key}: must be a whole number ≥ 0")),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, String> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(format!("{key}: must be true or false")),
        }
    }
}
