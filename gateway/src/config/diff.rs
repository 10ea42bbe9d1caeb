//! What differs between the configuration in force and the one a reload
//! read: the settings that need a restart (sockets are bound once; the
//! pipeline's writers and budget are sized at start), and each tenant as
//! added, removed, kept, or moved to another store. The reload asks this,
//! and applies nothing when a restart is needed.

use secrecy::ExposeSecret;

use super::{Config, DynamoConfig, TenantConfig};

/// What differs between two configurations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    /// The keys (as the file names them) whose change needs a restart.
    pub restart_only: Vec<String>,
    /// Tenants of the new configuration only.
    pub added: Vec<String>,
    /// Tenants of the old configuration only, in name order.
    pub removed: Vec<String>,
    /// Tenants of both whose store differs (sink, layout, table, the
    /// table's credentials or concurrency): they move to a new writer's
    /// store.
    pub store_changed: Vec<String>,
    /// Tenants of both with the same store (their secrets, CAs, quotas and
    /// limits may differ: those apply in place).
    pub kept: Vec<String>,
}

impl ConfigDiff {
    /// What differs from `old` to `new`.
    pub fn between(old: &Config, new: &Config) -> ConfigDiff {
        let mut diff = ConfigDiff {
            restart_only: restart_only(old, new),
            ..ConfigDiff::default()
        };
        for tenant in &new.tenants {
            match old.tenants.iter().find(|t| t.id == tenant.id) {
                None => diff.added.push(tenant.id.clone()),
                Some(before) if !same_store(before, tenant) => diff.store_changed.push(tenant.id.clone()),
                Some(_) => diff.kept.push(tenant.id.clone()),
            }
        }
        diff.removed = old
            .tenants
            .iter()
            .filter(|t| !new.tenants.iter().any(|n| n.id == t.id))
            .map(|t| t.id.clone())
            .collect();
        diff.removed.sort();
        diff
    }

    /// Whether the new configuration can only take effect by a restart.
    pub fn needs_restart(&self) -> bool {
        !self.restart_only.is_empty()
    }
}

/// Whether a tenant's store is the same in both configurations (its sink
/// kind, layout, and DynamoDB table and credentials); if not, a reload gives
/// it a new writer.
fn same_store(a: &TenantConfig, b: &TenantConfig) -> bool {
    fn same_table(a: &DynamoConfig, b: &DynamoConfig) -> bool {
        a.table == b.table
            && a.region == b.region
            && a.endpoint == b.endpoint
            && a.profile == b.profile
            && a.role_arn == b.role_arn
            && a.external_id == b.external_id
            && a.access_key_id == b.access_key_id
            && a.secret_access_key.as_ref().map(|s| s.expose_secret().to_owned())
                == b.secret_access_key.as_ref().map(|s| s.expose_secret().to_owned())
            && a.max_concurrency == b.max_concurrency
    }
    a.sink == b.sink
        && a.layout == b.layout
        && match (&a.dynamodb, &b.dynamodb) {
            (None, None) => true,
            (Some(a), Some(b)) => same_table(a, b),
            _ => false,
        }
}

/// The settings that differ between `old` and `new` and need a restart:
/// the listeners (sockets are bound once), the admission pool of
/// connections waiting to authenticate, the pipeline (its writers and
/// budget are sized at start), and the sink kind and data directory.
fn restart_only(old: &Config, new: &Config) -> Vec<String> {
    let mut changed = Vec::new();
    macro_rules! compare {
        ($($key:literal => $section:ident . $field:ident),+ $(,)?) => {
            $(
                if old.$section.$field != new.$section.$field {
                    changed.push($key.to_owned());
                }
            )+
        };
    }
    compare!(
        "server.listen" => server.listen,
        "server.tls_listen" => server.tls_listen,
        "server.admin_listen" => server.admin_listen,
        "server.proxy_protocol" => server.proxy_protocol,
        "server.proxy_protocol_trusted" => server.proxy_protocol_trusted,
        "server.listen_backlog" => server.listen_backlog,
        "server.reuse_port" => server.reuse_port,
        "server.max_unauthenticated" => server.max_unauthenticated,
        "server.max_unauthenticated_per_source" => server.max_unauthenticated_per_source,
        "server.tls_handshake_timeout_ms" => server.tls_handshake_timeout,
        "server.write_timeout_ms" => server.write_timeout,
        "server.drain_timeout_ms" => server.drain_timeout,
        "pipeline.max_items" => pipeline.max_items,
        "pipeline.max_bytes" => pipeline.max_bytes,
        "pipeline.linger_ms" => pipeline.linger,
        "pipeline.write_timeout_ms" => pipeline.write_timeout,
        "pipeline.budget_bytes" => pipeline.budget_bytes,
        "pipeline.tenant_budget_percent" => pipeline.tenant_budget_percent,
        "pipeline.budget_wait_ms" => pipeline.budget_wait,
        "pipeline.unhealthy_after_ms" => pipeline.unhealthy_after,
        "sink.kind" => sink.kind,
        "sink.data_dir" => sink.data_dir,
        "sink.allow_null" => sink.allow_null,
    );
    // TLS listeners need a certificate; which one is reloadable.
    if !new.server.tls_listen.is_empty() && old.tls.is_some() != new.tls.is_some() {
        changed.push("tls".to_owned());
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::parse(
            r#"
            [server]
            listen = ["127.0.0.1:7700"]
            [[tenants]]
            id = "a"
            secrets = ["0123456789abcdef"]
            [[tenants]]
            id = "b"
            secrets = ["0123456789abcdef"]
            "#,
        )
        .unwrap()
    }

    #[test]
    fn settings_that_need_a_restart_are_named_by_their_keys() {
        let old = config();
        let mut new = config();
        assert!(!ConfigDiff::between(&old, &new).needs_restart());
        // Reloadable: limits, timings of sessions, tenants.
        new.server.max_inflight = 7;
        new.server.max_connections = 5;
        new.server.heartbeat = std::time::Duration::from_secs(7);
        new.tenants.clear();
        assert!(!ConfigDiff::between(&old, &new).needs_restart());
        new.server.listen = vec!["127.0.0.1:7701".parse().unwrap()];
        new.pipeline.budget_bytes = 1 << 20;
        new.pipeline.linger = std::time::Duration::from_millis(5);
        new.sink.kind = crate::config::SinkKind::Dynamodb;
        assert_eq!(
            ConfigDiff::between(&old, &new).restart_only,
            [
                "server.listen",
                "pipeline.linger_ms",
                "pipeline.budget_bytes",
                "sink.kind"
            ]
        );
    }

    #[test]
    fn tenants_are_added_removed_kept_or_moved_to_another_store() {
        let old = config();
        let mut new = config();
        new.tenants[0].secrets.clear();
        new.tenants[0].records_per_second = Some(10);
        new.tenants[1].sink = Some(crate::config::SinkKind::Null);
        let mut c = new.tenants[0].clone();
        c.id = "c".into();
        new.tenants.push(c);
        new.tenants.remove(0);
        let diff = ConfigDiff::between(&old, &new);
        assert_eq!(
            (diff.added, diff.removed, diff.store_changed, diff.kept),
            (vec!["c".to_owned()], vec!["a".to_owned()], vec!["b".to_owned()], vec![])
        );
        // Secrets and quotas are not the store.
        let mut same = config();
        same.tenants[0].secrets.clear();
        same.tenants[0].records_per_second = Some(10);
        assert_eq!(ConfigDiff::between(&old, &same).kept, ["a", "b"]);
    }
}
