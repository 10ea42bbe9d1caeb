//! The admin HTTP endpoint: `/metrics` (Prometheus text), `/healthz`
//! (the process is up) and `/readyz` (accepting agents; 503 while draining).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::sync::watch;

use crate::budget::MemoryBudget;
use crate::telemetry::{self, TenantMetrics};

/// Serves the admin endpoint until shutdown; returns the task and the bound address.
pub async fn start(
    addr: SocketAddr,
    ready: Arc<AtomicBool>,
    budget: Arc<MemoryBudget>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(tokio::task::JoinHandle<()>, SocketAddr)> {
    let handle = telemetry::install();
    let tenants: Vec<(String, TenantMetrics)> = budget
        .tenant_ids()
        .map(|t| (t.to_owned(), TenantMetrics::new(t)))
        .collect();
    let render = move || {
        // Gauges that are cheaper to read at a scrape than to keep up to date.
        for (tenant, metrics) in &tenants {
            metrics.budget_used(budget.used(tenant));
        }
        std::future::ready(handle.render())
    };
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.load(Ordering::SeqCst);
                async move {
                    if ready {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
                    }
                }
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
