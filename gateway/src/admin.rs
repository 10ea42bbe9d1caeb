//! The admin HTTP endpoint: `/metrics` (Prometheus text), `/healthz`
//! (the process is up), `POST /reload` (read the configuration again,
//! `reload.rs`; bind the endpoint to a private address, as it has no
//! authentication of its own) and `/readyz`: 200 `ready` when the gateway accepts
//! agents and stores every tenant's records; 503 while draining, or while a
//! tenant is degraded (its writer restarting, or its sink failing every
//! write for `pipeline.unhealthy_after_ms`), with a line per tenant saying
//! what is wrong. A tenant whose old store is still written after a reload
//! is named (`draining: tenant …`) while the gateway stays ready: retire an
//! old table only once its line is gone.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use tokio::sync::watch;

use crate::budget::MemoryBudget;
use crate::health::Health;
use crate::reload::{ReloadError, ReloadReport, Reloader};
use crate::telemetry::{self, TenantMetrics};

/// Serves the admin endpoint until shutdown; returns the task and the bound address.
pub async fn start(
    addr: SocketAddr,
    ready: Arc<AtomicBool>,
    budget: Arc<MemoryBudget>,
    health: Arc<Health>,
    reloader: Arc<Reloader>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(tokio::task::JoinHandle<()>, SocketAddr)> {
    let handle = telemetry::install();
    // Each tenant's handles, made at the first scrape that sees the tenant
    // (a reload adds tenants).
    let tenants: Arc<Mutex<HashMap<String, TenantMetrics>>> = Arc::default();
    let scraped = health.clone();
    let render = move || {
        // Gauges that are cheaper to read at a scrape than to keep up to date.
        let mut tenants = tenants.lock().unwrap_or_else(PoisonError::into_inner);
        for tenant in budget.tenant_ids() {
            let used = budget.used(&tenant);
            tenants
                .entry(tenant)
                .or_insert_with_key(|t| TenantMetrics::new(t))
                .budget_used(used);
        }
        for (tenant, problem) in scraped.report() {
            telemetry::tenant_degraded(&tenant, problem.is_some());
        }
        std::future::ready(handle.render())
    };
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/reload",
            post(move || {
                let reloader = reloader.clone();
                async move { reload_answer(reloader.reload().await) }
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let answer = readiness(ready.load(Ordering::SeqCst), &health);
                std::future::ready(answer)
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("server.admin_listen: cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "admin endpoint listening");
    let task = tokio::spawn(async move {
        let stop = async move {
            // Keep serving /readyz (503) while draining; stop when the server is dropped.
            while shutdown.changed().await.is_ok() {}
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
            tracing::warn!(error = %e, "admin endpoint stopped");
        }
    });
    Ok((task, bound))
}

/// `POST /reload`'s answer: 200 and what changed, or why the reload was
/// refused (the configuration in force stays): 400 for an invalid
/// configuration, 409 for one that needs a restart or no source, 503 while
/// shutting down.
fn reload_answer(result: Result<ReloadReport, ReloadError>) -> (StatusCode, String) {
    match result {
        Ok(report) => (StatusCode::OK, format!("{report}\n")),
        Err(e) => {
            let status = match e {
                ReloadError::Invalid(_) | ReloadError::Sink { .. } => StatusCode::BAD_REQUEST,
                ReloadError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::CONFLICT,
            };
            (status, format!("reload refused: {e}\n"))
        }
    }
}

/// `/readyz`'s answer.
fn readiness(accepting: bool, health: &Health) -> (StatusCode, String) {
    if !accepting {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n".to_owned());
    }
    let degraded: String = health
        .report()
        .into_iter()
        .filter_map(|(tenant, problem)| problem.map(|p| format!("degraded: tenant {tenant}: {p}\n")))
        .collect();
    let draining: String = health
        .drains()
        .into_iter()
        .map(|(tenant, what)| format!("draining: tenant {tenant}: {what}\n"))
        .collect();
    if degraded.is_empty() {
        (StatusCode::OK, format!("ready\n{draining}"))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, degraded + &draining)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn readiness_names_the_degraded_tenants() {
        let health = Health::new(["a".to_owned(), "b".to_owned()], Duration::from_secs(60));
        assert_eq!(readiness(true, &health), (StatusCode::OK, "ready\n".to_owned()));
        assert_eq!(readiness(false, &health).0, StatusCode::SERVICE_UNAVAILABLE);
        health.tenant("b").down("the writer panicked: boom".into());
        let (status, body) = readiness(true, &health);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "degraded: tenant b: writer down: the writer panicked: boom\n");
    }

    #[test]
    fn readiness_names_the_old_stores_still_written_while_ready() {
        let health = Health::new(["a".to_owned()], Duration::from_secs(60));
        let note = health.draining("a", "its writer is still writing to its old store");
        assert_eq!(
            readiness(true, &health),
            (
                StatusCode::OK,
                "ready\ndraining: tenant a: its writer is still writing to its old store\n".to_owned()
            )
        );
        health.drained(note);
        assert_eq!(readiness(true, &health), (StatusCode::OK, "ready\n".to_owned()));
    }
}
