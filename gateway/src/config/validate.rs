//! The checks of a whole configuration that its types do not make: one
//! line naming the field for each problem, and the warnings of settings
//! that are allowed but unsafe.

use std::net::SocketAddr;

use secrecy::{ExposeSecret, SecretString};

use std::time::Duration;

use super::*;

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
            ("server.heartbeat_ms", s.heartbeat, 100..=3_600_000),
            ("server.hello_timeout_ms", s.hello_timeout, 100..=600_000),
            (
                "server.tls_handshake_timeout_ms",
                s.tls_handshake_timeout,
                100..=600_000,
            ),
            ("server.write_timeout_ms", s.write_timeout, 100..=600_000),
            ("server.retry_after_ms", s.retry_after, 10..=3_600_000),
            ("server.goaway_reconnect_ms", s.goaway_reconnect, 10..=3_600_000),
            ("server.drain_timeout_ms", s.drain_timeout, 100..=3_600_000),
            ("pipeline.write_timeout_ms", self.pipeline.write_timeout, 100..=600_000),
            ("pipeline.budget_wait_ms", self.pipeline.budget_wait, 10..=600_000),
            ("pipeline.linger_ms", self.pipeline.linger, 0..=10_000),
        ] {
            if !range.contains(&units::ms(value)) {
                return Err(ConfigError::new(
                    field,
                    format!("must be {} to {} (ms)", range.start(), range.end()),
                ));
            }
        }
        if s.max_connection_age.is_some_and(|age| age < Duration::from_millis(100)) {
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
        let largest = s.max_batch_bytes.max(s.max_frame_len) as usize + crate::admit::budget::PER_BATCH_OVERHEAD;
        if p.tenant_budget_bytes() < largest {
            return Err(ConfigError::new(
                "pipeline.budget_bytes",
                format!(
                    "a tenant's share ({}% of {}) must hold the largest batch, server.max_batch_bytes + {} = {largest} bytes",
                    p.tenant_budget_percent,
                    p.budget_bytes,
                    crate::admit::budget::PER_BATCH_OVERHEAD
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
        let config_error = |e: crate::net::tls::TlsError| {
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
                    crate::net::tls::TenantCa::load(ca, &ca_field, t.crl.as_deref(), &crl_field)
                        .map_err(config_error)?,
                );
            }
        }
        if let Some(tls) = &self.tls {
            crate::net::tls::server_config(&tls.cert, &tls.key, &cas).map_err(config_error)?;
        }
        Ok(())
    }
}
