//! Reloading the configuration without dropping agents (SIGHUP, `POST
//! /reload`).
//!
//! A reload reads the configuration again from its source (the file the
//! gateway was started with), and either applies all of it or none:
//!
//! 1. **Check.** The new configuration must pass `check-config`, change no
//!    setting that needs a restart ([`restart_only_changes`]: listeners,
//!    the sink kind, the pipeline, ...), and every file it names must load:
//!    client CAs, the server certificate and key. The sinks of added
//!    tenants (and of tenants whose table changed) are opened. Any failure
//!    refuses the reload with its reason, and the configuration in force
//!    stays.
//! 2. **Apply**, in an order that never lets a session see a tenant without
//!    its parts: health records, budget shares, connection limits, writers
//!    (new ones started; a tenant whose store changed hands its writer the
//!    new sink; removed tenants' writers write what is queued and end),
//!    session settings, the tenant registry (new secrets, CAs and quotas),
//!    the TLS configuration for new handshakes. Then every session of a
//!    removed tenant is told to go away (GOAWAY).
//! 3. **Drain.** The answer waits until no old store is written any more:
//!    a writer moving to a new store ends the write in flight on the old
//!    one first, and a removed tenant's writer writes what was queued. A
//!    tenant still draining after twice the write timeout is named in the
//!    answer and on `/readyz` until it is done. Only then may an old table
//!    be retired (docs/operations.md).
//!
//! A tenant's writer is never doubled: a changed table, layout, credential
//! or concurrency gives the same writer a new sink, so the old and the new
//! store are never written at once. A tenant may not move to a table that
//! another tenant writes in the configuration in force (two tenants
//! swapping tables take two reloads).
//!
//! What existing connections keep: their TLS session, the limits their
//! WELCOME told them, and their retention. Their authentication is checked
//! again when their tenant's secrets, client CA or CRLs change: a session
//! whose token or certificate no longer authenticates is told to go away
//! (GOAWAY; its batches in flight are still answered), so a revoked device
//! is out at the reload. Quotas are shared: a changed tenant quota applies
//! to existing sessions at once (`quota.rs`).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::task::JoinHandle;

use crate::admit::budget::MemoryBudget;
use crate::admit::tenant::{QuotaChange, Tenants};
use crate::config::diff::ConfigDiff;
use crate::config::{Config, DynamoConfig};
use crate::net::conn::ConnContext;
use crate::ops::health::Health;
use crate::pipeline::Pipeline;
use crate::telemetry;

/// The longest a reload's answer waits for old stores to be written no more.
pub const MAX_DRAIN_WAIT: Duration = Duration::from_secs(60);

/// Where a reload reads the configuration: the file the gateway was started
/// with, with the same command-line overrides.
pub type ConfigSource = Arc<dyn Fn() -> anyhow::Result<Config> + Send + Sync>;

/// Why a reload was refused; the configuration in force stays.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The new configuration does not load or does not pass `check-config`.
    #[error("the new configuration is invalid: {0}")]
    Invalid(String),
    /// The new configuration changes settings that need a restart.
    #[error("these settings cannot change without a restart: {}", .0.join(", "))]
    RestartOnly(Vec<String>),
    /// A tenant's sink cannot be opened.
    #[error("tenant {tenant}: cannot open its sink: {reason}")]
    Sink {
        /// The tenant.
        tenant: String,
        /// Why.
        reason: String,
    },
    /// The gateway was started without a configuration source to read again.
    #[error("this gateway has no configuration file to read again")]
    NoSource,
    /// The gateway is shutting down.
    #[error("the gateway is shutting down")]
    ShuttingDown,
}

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Tenants added.
    pub added: Vec<String>,
    /// Tenants removed; their sessions were told to go away.
    pub removed: Vec<String>,
    /// Tenants whose store (sink or table) changed: they have a new writer.
    pub store_changed: Vec<String>,
    /// Tenants kept (their secrets, CAs, quotas and limits may have changed).
    pub kept: usize,
    /// Sessions told to go away (their tenant removed).
    pub sessions_told: usize,
    /// Sessions told to go away because their credentials no longer
    /// authenticate (a secret removed, a client CA changed, a CRL).
    pub sessions_revoked: usize,
    /// Tenants whose old store (or, removed, whose queue) was written to
    /// the end before the answer.
    pub drained: Vec<String>,
    /// Tenants whose old store was still being written when the answer was
    /// given (named on `/readyz` until done).
    pub draining: Vec<String>,
}

impl std::fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "configuration reloaded: tenants added [{}], removed [{}] ({} sessions told to go away), store changed [{}], {} kept; \
             {} sessions whose credentials no longer authenticate told to go away; \
             old stores no longer written [{}], still draining [{}]",
            self.added.join(", "),
            self.removed.join(", "),
            self.sessions_told,
            self.store_changed.join(", "),
            self.kept,
            self.sessions_revoked,
            self.drained.join(", "),
            self.draining.join(", "),
        )
    }
}

/// What a reload changes, and the configuration in force.
pub struct Reloader {
    /// The configuration in force; the lock makes reloads one at a time.
    current: tokio::sync::Mutex<Config>,
    source: std::sync::Mutex<Option<ConfigSource>>,
    ctx: Arc<ConnContext>,
    /// The agent listeners' TLS configuration, when TLS listeners run.
    tls: Option<Arc<ArcSwap<rustls::ServerConfig>>>,
    budget: Arc<MemoryBudget>,
    health: Arc<Health>,
    pipeline: Pipeline,
    admin_token: crate::config::settings::AdminToken,
    /// The tables of tenants removed by reloads (while their writers drain).
    removed_tables: std::sync::Mutex<Vec<(String, DynamoConfig)>>,
    stopping: AtomicBool,
}

/// The parts of a running gateway a reload changes.
pub struct Parts {
    /// What every connection shares.
    pub ctx: Arc<ConnContext>,
    /// The agent listeners' TLS configuration.
    pub tls: Option<Arc<ArcSwap<rustls::ServerConfig>>>,
    /// The memory budget.
    pub budget: Arc<MemoryBudget>,
    /// Tenants' health.
    pub health: Arc<Health>,
    /// The writers.
    pub pipeline: Pipeline,
    /// The admin endpoint's token (read again from its file at each reload).
    pub admin_token: crate::config::settings::AdminToken,
}

impl Reloader {
    /// A reloader for a gateway started with `config`.
    pub fn new(config: Config, parts: Parts) -> Reloader {
        Reloader {
            current: tokio::sync::Mutex::new(config),
            source: std::sync::Mutex::new(None),
            ctx: parts.ctx,
            tls: parts.tls,
            budget: parts.budget,
            health: parts.health,
            pipeline: parts.pipeline,
            admin_token: parts.admin_token,
            removed_tables: std::sync::Mutex::default(),
            stopping: AtomicBool::new(false),
        }
    }

    /// Where reloads read the configuration.
    pub fn set_source(&self, source: ConfigSource) {
        *self.source.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(source);
    }

    /// Refuses reloads from now on (shutdown), and waits for one in
    /// progress to finish, so that it cannot start writers after the
    /// pipeline closed.
    pub async fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        drop(self.current.lock().await);
    }

    /// Reads the configuration again and applies it, or refuses it whole;
    /// logged and counted either way.
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let result = self.try_reload().await;
        match &result {
            Ok(report) => tracing::info!(
                added = ?report.added,
                removed = ?report.removed,
                store_changed = ?report.store_changed,
                kept = report.kept,
                sessions_told = report.sessions_told,
                sessions_revoked = report.sessions_revoked,
                drained = ?report.drained,
                draining = ?report.draining,
                "configuration reloaded"
            ),
            Err(e) => tracing::warn!(error = %e, "configuration reload refused; the configuration in force stays"),
        }
        telemetry::global().config_reloaded(result.is_ok());
        result
    }

    async fn try_reload(&self) -> Result<ReloadReport, ReloadError> {
        let (mut report, drains, write_timeout) = self.apply().await?;
        tracing::info!(
            added = ?report.added,
            removed = ?report.removed,
            store_changed = ?report.store_changed,
            sessions_revoked = report.sessions_revoked,
            "configuration applied; waiting for old stores to be written no more"
        );
        // Outside the reload lock: a drain is bounded, but shutdown need not
        // wait for it; nor does the answer wait past a minute (the rest is on
        // /readyz).
        let wait = (2 * write_timeout + Duration::from_secs(1)).min(MAX_DRAIN_WAIT);
        let deadline = tokio::time::Instant::now() + wait;
        for (tenant, drain) in drains {
            match tokio::time::timeout_at(deadline, drain).await {
                Ok(_) => report.drained.push(tenant),
                Err(_) => report.draining.push(tenant),
            }
        }
        Ok(report)
    }

    /// Checks and applies the configuration; returns the report and the
    /// drains to wait for (tasks that also clear the tenant's draining note
    /// on `/readyz`).
    async fn apply(&self) -> Result<(ReloadReport, Vec<(String, JoinHandle<()>)>, Duration), ReloadError> {
        let mut current = self.current.lock().await;
        if self.stopping.load(Ordering::SeqCst) {
            return Err(ReloadError::ShuttingDown);
        }
        let source = self
            .source
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or(ReloadError::NoSource)?;
        let next = source().map_err(|e| ReloadError::Invalid(format!("{e:#}")))?;
        next.validate().map_err(|e| ReloadError::Invalid(e.to_string()))?;
        let admin_token = next.admin_token().map_err(|e| ReloadError::Invalid(e.to_string()))?;
        let diff = ConfigDiff::between(&current, &next);
        if diff.needs_restart() {
            return Err(ReloadError::RestartOnly(diff.restart_only));
        }

        // Everything that can fail, before anything changes.
        let mut tenants =
            Tenants::from_config(&next.tenants, &next.server).map_err(|e| ReloadError::Invalid(e.to_string()))?;
        // Before the registry's tenants are shared (with the writers opened below).
        let quota_changes = tenants.carry_quotas_over(&self.ctx.tenants.load());
        let tls = match (&self.tls, &next.tls) {
            (Some(_), Some(t)) => Some(
                crate::net::tls::server_config(&t.cert, &t.key, &crate::config::settings::tenant_cas(&tenants))
                    .map_err(|e| ReloadError::Invalid(e.to_string()))?,
            ),
            _ => None,
        };
        moved_onto_anothers_table(&current, &next)?;
        self.onto_a_draining_table(&next)?;
        let mut report = ReloadReport {
            added: diff.added.clone(),
            store_changed: diff.store_changed.clone(),
            removed: diff.removed.clone(),
            kept: diff.kept.len(),
            ..ReloadReport::default()
        };
        // Each store that changes is opened before anything changes: one
        // that cannot be opened refuses the reload.
        let mut opened = Vec::new();
        for id in diff.added.iter().chain(&diff.store_changed) {
            let Some(tenant) = tenants.get(id) else {
                continue;
            };
            let sink = self.pipeline.open(tenant).await.map_err(|e| ReloadError::Sink {
                tenant: id.clone(),
                reason: e.report(),
            })?;
            opened.push(sink);
        }

        // Apply.
        let ids = || next.tenants.iter().map(|t| t.id.as_str());
        self.health.set_tenants(ids());
        self.budget.set_tenants(ids());
        self.ctx.admission.set_limits(
            next.server.max_connections,
            crate::config::settings::tenant_limits(&next),
        );
        {
            let mut tables = self
                .removed_tables
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let draining = self.pipeline.still_draining();
            tables.retain(|(id, _)| draining.contains(id));
            for t in current.tenants.iter().filter(|t| report.removed.contains(&t.id)) {
                if let Some(table) = &t.dynamodb {
                    tables.push((t.id.clone(), table.clone()));
                }
            }
        }
        let drains = self.pipeline.apply(opened, &report.removed);
        self.ctx
            .settings
            .store(Arc::new(crate::config::settings::session_settings(&next)));
        quota_changes.into_iter().for_each(QuotaChange::apply);
        // Kept tenants whose secrets, client CA or CRLs changed: their live
        // sessions are checked again once the new credentials are in force.
        let credentials_changed: HashSet<String> = {
            let old = self.ctx.tenants.load();
            tenants
                .iter()
                .filter(|t| old.get(&t.id).is_some_and(|o| o.credentials() != t.credentials()))
                .map(|t| t.id.clone())
                .collect()
        };
        let tenants = Arc::new(tenants);
        self.ctx.tenants.store(tenants.clone());
        if let (Some(live), Some(tls)) = (&self.tls, tls) {
            live.store(tls);
        }
        self.admin_token.store(Arc::new(admin_token));
        for tenant in &report.removed {
            report.sessions_told += self.ctx.admission.tell_tenant_to_go(tenant);
            telemetry::tenant_degraded(tenant, false);
        }
        let now_secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        report.sessions_revoked = self
            .ctx
            .admission
            .recheck(&credentials_changed, |tenant, device, session| {
                tenants.still_valid(tenant, device, &session.proof, session.tls, now_secs)
            });
        crate::config::settings::report_certificate_expiry(&next);
        for tenant in next.null_sink_tenants() {
            if report.added.iter().chain(&report.store_changed).any(|t| t == tenant) {
                tracing::warn!(
                    tenant,
                    "the null sink is on: this tenant's batches are acknowledged and NOT stored"
                );
            }
        }
        let write_timeout = next.pipeline.write_timeout;
        *current = next;
        let drains = drains
            .into_iter()
            .map(|drain| {
                let health = self.health.clone();
                let note = health.draining(&drain.tenant, drain.what.describe());
                let task = tokio::spawn(async move {
                    drain.done.await;
                    health.drained(note);
                });
                (drain.tenant, task)
            })
            .collect();
        Ok((report, drains, write_timeout))
    }
}

impl Reloader {
    /// Refuses a tenant put onto the table of a removed tenant whose writer
    /// still writes what was queued (device ids are not prefixed by
    /// tenant): it may go there once that tenant is no longer draining.
    fn onto_a_draining_table(&self, next: &Config) -> Result<(), ReloadError> {
        let draining = self.pipeline.still_draining();
        let tables = self
            .removed_tables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for t in &next.tenants {
            let Some(table) = &t.dynamodb else { continue };
            let busy = tables
                .iter()
                .find(|(id, old)| *id != t.id && draining.contains(id) && old.same_table(table));
            if let Some((other, _)) = busy {
                return Err(ReloadError::Invalid(format!(
                    "tenant {:?}: its table {} is removed tenant {other:?}'s, whose writer is still writing to it; \
                     reload again once /readyz no longer names {other:?}",
                    t.id, table.table
                )));
            }
        }
        Ok(())
    }
}

/// Refuses a tenant moved onto a table another tenant writes now: that
/// tenant's writer may still be writing it, and device ids are not
/// prefixed by tenant.
fn moved_onto_anothers_table(current: &Config, next: &Config) -> Result<(), ReloadError> {
    for t in &next.tenants {
        let Some(table) = &t.dynamodb else { continue };
        let taken = current
            .tenants
            .iter()
            .find(|o| o.id != t.id && o.dynamodb.as_ref().is_some_and(|d| d.same_table(table)));
        if let Some(other) = taken {
            return Err(ReloadError::Invalid(format!(
                "tenant {:?}: its new table {} is tenant {:?}'s table in the configuration in force; \
                 move {:?} off it in one reload, then {:?} onto it in the next",
                t.id, table.table, other.id, other.id, t.id
            )));
        }
    }
    Ok(())
}
