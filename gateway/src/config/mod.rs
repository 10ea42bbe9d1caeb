//! Configuration: a TOML file, overridden by CLI flags and environment
//! variables (see `main.rs`), checked as a whole before anything starts.
//!
//! Every problem is reported as one line naming the field, e.g.
//! `tenants[1].secrets: at least one secret is required`. The full reference
//! is `docs/configuration.md`; `gateway example-config` prints a commented
//! example ([`EXAMPLE`]).

pub(crate) mod diff;
mod pipeline;
mod server;
pub(crate) mod settings;
mod tenant;
pub(crate) mod units;
mod validate;

#[cfg(test)]
mod config_test;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use pipeline::{PipelineConfig, SinkConfig, SinkKind};
pub use server::{MAX_BATCH_RECORDS, MIN_ADMIN_TOKEN_LEN, Network, ServerConfig, TlsConfig};
pub use tenant::{DynamoConfig, Layout, MIN_SECRET_LEN, STRONG_SECRET_LEN, TenantConfig, secret_weakness};

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

impl Config {
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

/// A commented example configuration (`gateway example-config`), kept in
/// `example.toml` beside this file.
pub const EXAMPLE: &str = include_str!("example.toml");
