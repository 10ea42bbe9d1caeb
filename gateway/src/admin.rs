//! The admin HTTP endpoint: `/metrics` (Prometheus text), `/healthz`
//! (the process is up) and `/readyz` (accepting agents; 503 while draining).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide metrics recorder (once) and returns its handle.
pub fn metrics_handle() -> PrometheusHandle {
    PROMETHEUS
        .get_or_init(|| {
            let seconds = &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ];
            let items = &[1.0, 10.0, 100.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), seconds)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_items".into()), items));
            match builder.map(|b| b.install_recorder()) {
                Ok(Ok(handle)) => handle,
                // Another recorder is installed (a test harness): render ours standalone.
                _ => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

/// Serves the admin endpoint until shutdown; returns the task and the bound address.
pub async fn start(
    addr: SocketAddr,
    ready: Arc<AtomicBool>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(tokio::task::JoinHandle<()>, SocketAddr)> {
    let handle = metrics_handle();
    let app = Router::new()
        .route("/metrics", get(move || std::future::ready(handle.render())))
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
