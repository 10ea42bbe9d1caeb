//! Tenants and HELLO authentication (AWP1.md §4.1).
//!
//! Every way a HELLO can fail authentication — unknown tenant, wrong token,
//! expired token, a certificate that does not chain to the tenant's CA, is
//! revoked by its CRLs or names another device, a tenant that requires TLS
//! on a plaintext connection — gives the same `None`, answered with the
//! same `ERROR(AUTH_FAILED)`, so tenants and devices cannot be enumerated.
//! Token checks cost the same whatever the tenant: every check computes as
//! many HMACs as the tenant with the most secrets has, padding with HMACs
//! under a dummy secret whose results are thrown away (an unknown tenant is
//! all padding). A certificate naming a tenant without a CA is checked
//! against a CA of nobody's, as much work as a real one.
//!
//! # Credentials that change under live sessions
//!
//! A successful HELLO returns what the session proved ([`Proof`]: its token,
//! or its certificate chain) and until when it holds (the token's expiry,
//! the certificate's notAfter): the session ends itself then (GOAWAY). The
//! admission registry keeps each session's proof, so that a reload that
//! changes a tenant's secrets, client CA or CRLs checks every live session
//! of that tenant again ([`Tenants::still_valid`]) and tells those that no
//! longer pass to go away: a leaked token or key is out at the reload, not
//! at the agent's next HELLO. [`Tenant::credentials`] tells which tenants'
//! credentials changed.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use arc_swap::ArcSwap;
use awp_protocol::{Hello, HelloAuth, token};
use rustls_pki_types::{CertificateDer, UnixTime};
use secrecy::ExposeSecret;
use sha2::Digest;

pub use crate::admit::auth_failure::AuthFailure;
use crate::admit::quota::{QuotaSettings, Scope, SharedQuota, TenantQuota};
use crate::config::{ConfigError, DynamoConfig, Layout, ServerConfig, SinkKind, TenantConfig};
use crate::net::tls::TenantCa;
use crate::telemetry;

/// One tenant, ready for authentication and item mapping.
#[derive(Debug)]
pub struct Tenant {
    /// The tenant id.
    pub id: String,
    secrets: Vec<TokenKey>,
    client_ca: Option<TenantCa>,
    /// HELLOs on plaintext connections fail.
    require_tls: bool,
    /// A digest of the secrets, the client CA and the CRLs: when a reload
    /// changes it, the tenant's live sessions are checked again.
    credentials: [u8; 32],
    /// Seconds added to `received_at` for `expires_at`, if the tenant has a retention.
    pub retention_secs: Option<u64>,
    /// The tenant's own sink, if not the configured default.
    pub sink: Option<SinkKind>,
    /// The tenant's DynamoDB table, for the `dynamodb` sink.
    pub dynamodb: Option<DynamoConfig>,
    /// How its records become items.
    pub layout: Layout,
    /// The tenant's quotas on this node, shared by its sessions (and, when
    /// a reload keeps the tenant, by its old and new records).
    pub quota: SharedQuota,
    /// Batches over a quota, by scope (device, tenant).
    quota_exceeded: [metrics::Counter; 2],
    /// Batches that waited for memory budget, and that timed out waiting.
    budget_waits: [metrics::Counter; 2],
    /// BATCH received to ACK sent, for this tenant's sessions.
    ack_latency: metrics::Histogram,
}

impl Tenant {
    /// A tenant with token secrets only (tests and fuzzing).
    #[cfg(any(test, feature = "test-support"))]
    pub fn with_secrets(id: &str, secrets: &[&str]) -> Tenant {
        Tenant {
            id: id.to_owned(),
            secrets: secrets.iter().map(|s| TokenKey(s.as_bytes().to_vec())).collect(),
            client_ca: None,
            require_tls: false,
            credentials: [0; 32],
            retention_secs: None,
            sink: None,
            dynamodb: None,
            layout: Layout::Record,
            quota: Arc::new(ArcSwap::from_pointee(TenantQuota::none())),
            quota_exceeded: telemetry::global().quota_counters(id),
            budget_waits: telemetry::global().budget_counters(id),
            ack_latency: telemetry::global().ack_latency(id),
        }
    }

    /// The same tenant with `quota` (tests).
    #[cfg(test)]
    pub fn with_quota(self, quota: TenantQuota) -> Tenant {
        Tenant {
            quota: Arc::new(ArcSwap::from_pointee(quota)),
            ..self
        }
    }

    /// Counts a batch over a quota.
    pub fn quota_exceeded(&self, scope: Scope) {
        self.quota_exceeded[scope as usize].increment(1);
    }

    /// Records how long a batch waited from its arrival to its ACK.
    pub fn acked_after(&self, latency: std::time::Duration) {
        self.ack_latency.record(latency);
    }

    /// Counts a batch that waits for memory budget.
    pub fn budget_waited(&self) {
        self.budget_waits[0].increment(1);
    }

    /// Counts batches answered ACK RETRY after waiting too long for budget.
    pub fn budget_timed_out(&self, batches: usize) {
        self.budget_waits[1].increment(batches as u64);
    }

    /// `expires_at` (unix seconds) for a batch received at `received_at_ms`.
    pub fn expires_at(&self, received_at_ms: u64) -> Option<u64> {
        self.retention_secs.map(|r| received_at_ms / 1000 + r)
    }

    /// The client CA, if devices may authenticate with certificates.
    pub fn client_ca(&self) -> Option<&TenantCa> {
        self.client_ca.as_ref()
    }

    /// A digest of what authenticates the tenant's devices (secrets, client
    /// CA, CRLs): equal across a reload that changed none of them.
    pub fn credentials(&self) -> [u8; 32] {
        self.credentials
    }
}

/// A token secret's bytes (an HMAC key); `Debug` never shows them.
#[derive(Clone)]
struct TokenKey(Vec<u8>);

impl AsRef<[u8]> for TokenKey {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey([REDACTED])")
    }
}

/// New quota buckets for a kept tenant, for when its reload is applied.
#[derive(Debug)]
pub struct QuotaChange {
    cell: SharedQuota,
    quota: Arc<TenantQuota>,
}

impl QuotaChange {
    /// Puts the new buckets in force for the tenant's sessions.
    pub fn apply(self) {
        self.cell.store(self.quota);
    }
}

/// The tenants in force: replaced whole by a reload, read at each HELLO.
pub type LiveTenants = ArcSwap<Tenants>;

/// All configured tenants, by id.
#[derive(Debug, Default)]
pub struct Tenants {
    by_id: HashMap<String, Arc<Tenant>>,
    /// The most secrets any tenant has: the HMAC count of every token check.
    max_secrets: usize,
}

/// Secret used for unknown tenants, so that a miss costs one HMAC like a hit.
const DUMMY_SECRET: &[u8] = b"awp-gateway-unknown-tenant-dummy";

impl Tenants {
    /// Builds the registry from configuration, loading client CAs; quota
    /// buckets hold at least the largest batch `server` allows.
    pub fn from_config(configs: &[TenantConfig], server: &ServerConfig) -> Result<Tenants, ConfigError> {
        let mut tenants = Tenants::default();
        for (i, c) in configs.iter().enumerate() {
            let client_ca = match &c.client_ca {
                None => None,
                Some(path) => Some(
                    TenantCa::load(
                        path,
                        &format!("tenants[{i}].client_ca"),
                        c.crl.as_deref(),
                        &format!("tenants[{i}].crl"),
                    )
                    .map_err(|e| {
                        // The message starts with the field it names.
                        let text = e.to_string();
                        let (field, reason) = text.split_once(": ").unwrap_or(("config", &text));
                        ConfigError::new(field, reason)
                    })?,
                ),
            };
            let mut digest = sha2::Sha256::new();
            for secret in &c.secrets {
                digest.update((secret.expose_secret().len() as u64).to_be_bytes());
                digest.update(secret.expose_secret().as_bytes());
            }
            for path in [&c.client_ca, &c.crl].into_iter().flatten() {
                // Loaded above: readable.
                let bytes = std::fs::read(path).unwrap_or_default();
                digest.update((bytes.len() as u64).to_be_bytes());
                digest.update(&bytes);
            }
            digest.update([u8::from(c.require_tls)]);
            tenants.insert(Tenant {
                id: c.id.clone(),
                secrets: c
                    .secrets
                    .iter()
                    .map(|s| TokenKey(s.expose_secret().as_bytes().to_vec()))
                    .collect(),
                client_ca,
                require_tls: c.require_tls,
                credentials: digest.finalize().into(),
                retention_secs: c.retention_days.map(|d| u64::from(d) * 86_400),
                sink: c.sink,
                dynamodb: c.dynamodb.clone(),
                layout: c.layout,
                quota: Arc::new(ArcSwap::from_pointee(TenantQuota::from_settings(QuotaSettings {
                    records_per_second: c.records_per_second.and_then(NonZeroU32::new),
                    bytes_per_second: c.bytes_per_second.and_then(NonZeroU32::new),
                    device_records_per_second: c.device_records_per_second.and_then(NonZeroU32::new),
                    max_batch_records: server.max_batch_records,
                    max_batch_bytes: server.max_batch_bytes,
                }))),
                quota_exceeded: telemetry::global().quota_counters(&c.id),
                budget_waits: telemetry::global().budget_counters(&c.id),
                ack_latency: telemetry::global().ack_latency(&c.id),
            });
            telemetry::global().auth_failure_counters(&c.id);
        }
        Ok(tenants)
    }

    /// Adds or replaces a tenant.
    pub fn insert(&mut self, tenant: Tenant) {
        self.max_secrets = self.max_secrets.max(tenant.secrets.len()).max(1);
        self.by_id.insert(tenant.id.clone(), Arc::new(tenant));
    }

    /// Carries the quota buckets of tenants kept by a reload over from
    /// `previous`, the registry in force until now, so that every session
    /// of a tenant, old or new, shares one set: unchanged settings keep the
    /// buckets as they are (a reload does not refill them). For changed
    /// ones, the new buckets are returned with the cell they go into, to be
    /// stored there when the reload is applied ([`QuotaChange::apply`]);
    /// until then nothing in force changes. Call it before the registry is
    /// shared.
    pub fn carry_quotas_over(&mut self, previous: &Tenants) -> Vec<QuotaChange> {
        let mut changes = Vec::new();
        for (id, tenant) in &mut self.by_id {
            let Some(old) = previous.by_id.get(id) else { continue };
            let Some(tenant) = Arc::get_mut(tenant) else {
                // Shared already: too late to carry anything over.
                continue;
            };
            let (before, after) = (old.quota.load(), tenant.quota.load());
            if let Some(settings) = after.settings()
                && before.settings() != Some(settings)
            {
                changes.push(QuotaChange {
                    cell: old.quota.clone(),
                    quota: Arc::new(TenantQuota::succeeding(&before, settings)),
                });
            }
            drop((before, after));
            tenant.quota = old.quota.clone();
        }
        changes
    }

    /// Whether `id` is a tenant here.
    pub fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// One tenant.
    pub fn get(&self, id: &str) -> Option<&Arc<Tenant>> {
        self.by_id.get(id)
    }

    /// All tenants.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Tenant>> {
        self.by_id.values()
    }

    /// The tenant a HELLO authenticates as, what it proved and until when,
    /// or why it does not (for the operator: the agent is told one
    /// `AUTH_FAILED` whatever the reason). `tls` says whether the connection
    /// is TLS; `peer_certs` is its client certificate chain, if any.
    pub fn authenticate(
        &self,
        hello: &Hello,
        tls: bool,
        peer_certs: Option<&[CertificateDer<'static>]>,
        now_unix_secs: u64,
    ) -> Result<Authentication, AuthFailure> {
        let tenant = self.by_id.get(&hello.tenant_id);
        let (checked, proof, until) = match &hello.auth {
            HelloAuth::Token { expiry, token } => {
                let proof = Proof::Token {
                    expiry: *expiry,
                    token: *token,
                };
                let checked = self.check_token(tenant, &hello.tenant_id, &hello.device_id, &proof, now_unix_secs);
                (checked, proof, (*expiry != 0).then_some(*expiry))
            }
            HelloAuth::ClientCert => {
                let chain: Arc<[CertificateDer<'static>]> = peer_certs.map_or_else(|| Arc::from([]), Arc::from);
                // A tenant without a CA is checked against nobody's: as much work.
                let ca = tenant.and_then(|t| t.client_ca.as_ref()).unwrap_or(TenantCa::nobodys());
                let checked =
                    crate::net::tls::check_client_cert(&chain, ca, &hello.device_id, unix_time(now_unix_secs))
                        .map_err(AuthFailure::Certificate)
                        .and_then(|()| match tenant {
                            Some(t) if t.client_ca.is_none() => Err(AuthFailure::NoClientCa),
                            _ => Ok(()),
                        });
                // The chain is as good as its first certificate to expire.
                let until = chain.iter().filter_map(crate::net::tls::not_after).min();
                (checked, Proof::Certificate(chain), until)
            }
        };
        let Some(tenant) = tenant else {
            return Err(AuthFailure::UnknownTenant);
        };
        checked?;
        if !tls && tenant.require_tls {
            return Err(AuthFailure::TlsRequired);
        }
        Ok(Authentication {
            tenant: tenant.clone(),
            proof,
            until,
        })
    }

    /// Whether a live session of `tenant_id`'s `device_id` that proved
    /// `proof`, over TLS or not (`tls`), would still authenticate now (a
    /// reload changed the tenant's credentials, or its `require_tls`).
    pub fn still_valid(&self, tenant_id: &str, device_id: &str, proof: &Proof, tls: bool, now_unix_secs: u64) -> bool {
        let Some(tenant) = self.by_id.get(tenant_id) else {
            return false;
        };
        if tenant.require_tls && !tls {
            return false;
        }
        match proof {
            Proof::Token { .. } => self
                .check_token(Some(tenant), tenant_id, device_id, proof, now_unix_secs)
                .is_ok(),
            Proof::Certificate(chain) => tenant
                .client_ca
                .as_ref()
                .is_some_and(|ca| crate::net::tls::verify_client_cert(chain, ca, device_id, unix_time(now_unix_secs))),
        }
    }

    /// Checks a token against the tenant's secrets, padded to the same
    /// number of HMACs for every tenant, known or not. Whether the MAC
    /// matches and whether the expiry passed are both worked out whatever
    /// the other says.
    fn check_token(
        &self,
        tenant: Option<&Arc<Tenant>>,
        tenant_id: &str,
        device_id: &str,
        proof: &Proof,
        now_unix_secs: u64,
    ) -> Result<(), AuthFailure> {
        let Proof::Token { expiry, token } = proof else {
            return Err(AuthFailure::BadToken);
        };
        let own: &[TokenKey] = tenant.map_or(&[], |t| &t.secrets);
        // Checked as if it never expired; the expiry is looked at apart.
        let matches = token::verify_device_token(own, tenant_id, device_id, *expiry, token, 0);
        for _ in own.len()..self.max_secrets {
            std::hint::black_box(token::device_token(DUMMY_SECRET, tenant_id, device_id, *expiry));
        }
        let live = *expiry == 0 || now_unix_secs <= *expiry;
        match (matches, live) {
            (true, true) => Ok(()),
            (true, false) => Err(AuthFailure::ExpiredToken),
            (false, _) => Err(AuthFailure::BadToken),
        }
    }
}

/// `now_unix_secs` as rustls' time.
fn unix_time(now_unix_secs: u64) -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(now_unix_secs))
}

/// A HELLO that authenticated: the tenant, what the device proved, and
/// the last second the proof holds (unix seconds; `None` for ever).
#[derive(Debug)]
pub struct Authentication {
    /// The tenant.
    pub tenant: Arc<Tenant>,
    /// What the device proved.
    pub proof: Proof,
    /// The token's expiry or the certificate's notAfter (both inclusive).
    pub until: Option<u64>,
}

/// What a session authenticated with, kept to check it again when a reload
/// changes its tenant's credentials.
#[derive(Debug, Clone)]
pub enum Proof {
    /// A device token and its expiry.
    Token {
        /// Unix seconds; 0 for never.
        expiry: u64,
        /// The token.
        token: [u8; 32],
    },
    /// The TLS client certificate chain.
    Certificate(Arc<[CertificateDer<'static>]>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn registry(quota: &str) -> Tenants {
        let config = Config::parse(&format!(
            "[server]\nmax_batch_records = 10\n[[tenants]]\nid = \"a\"\nsecrets = [\"0123456789\"]\n{quota}"
        ))
        .unwrap();
        Tenants::from_config(&config.tenants, &config.server).unwrap()
    }

    fn admits(tenants: &Tenants) -> bool {
        tenants.get("a").unwrap().quota.load().admit(None, 10, 10).is_ok()
    }

    #[test]
    fn a_reload_keeps_unchanged_buckets_and_moves_sessions_to_changed_ones() {
        let old = registry("records_per_second = 10");
        assert!(admits(&old) && !admits(&old), "the bucket holds one batch");
        // Unchanged: the same, still empty, bucket (a reload does not refill it).
        let mut same = registry("records_per_second = 10");
        assert!(same.carry_quotas_over(&old).is_empty());
        assert!(!admits(&same));
        assert!(Arc::ptr_eq(&same.get("a").unwrap().quota, &old.get("a").unwrap().quota));
        // Changed: new buckets, which sessions holding the old tenant see too.
        let mut changed = registry("records_per_second = 1000");
        let changes = changed.carry_quotas_over(&same);
        assert!(!admits(&old), "nothing changes before the reload is applied");
        changes.into_iter().for_each(QuotaChange::apply);
        assert!(admits(&old), "an existing session moved to the new bucket");
        assert!(admits(&changed));
    }
}
