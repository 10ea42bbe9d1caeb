//! The admin HTTP endpoint: `/metrics` (Prometheus text), `/healthz`
//! (the process is up), `/readyz`, `/health/tenants`, and `POST /reload`
//! (read the configuration again, `ops/reload.rs`).
//!
//! `/readyz` means "send me agents": 200 `ready` while the gateway listens
//! and is not draining, 503 `draining` once it is. A tenant whose store
//! fails does not make the node unready: every node shares the tenant's
//! store, so a balancer that pulled nodes for it would pull them all, an
//! outage for every tenant. Such a tenant is named in `/readyz`'s body
//! (`degraded: tenant …`, still 200), in `/health/tenants` (JSON, for
//! dashboards and scripts), and in `awp_tenant_degraded{tenant}` (and its
//! alert). A tenant whose old store is still written after a reload is named
//! too (`draining: tenant …`): retire an old table only once its line is
//! gone.
//!
//! # Who may change state
//!
//! Reading (`GET`) is open to whoever reaches the address: bind it to a
//! private one. `POST /reload` changes state, so it is refused (401/403,
//! one line saying why) unless it comes:
//!
//! - with `Authorization: Bearer TOKEN`, when `server.admin_token_file`
//!   names a file holding the token (compared in constant time; the file
//!   is read again at each reload), or
//! - without a token file: from a loopback address, and with the header
//!   `X-AWP-Admin: 1`, which a page in an operator's browser cannot send to
//!   another site without a CORS preflight this endpoint never grants.
//!
//! Either way a request carrying `Origin` (a browser's) is refused, and so
//! is one whose `Host` is not an address of the endpoint or `localhost` (a
//! DNS name pointed at 127.0.0.1 by an attacker's page, "DNS rebinding"),
//! unless it carries the token.
//!
//! The endpoint serves at most [`MAX_CONNECTIONS`] connections at once, and
//! [`MAX_CONNECTIONS_PER_PEER`] from one address (more are closed at once),
//! one request each (no keep-alive: nothing idles on a slot); each must send
//! its request head within [`HEADER_TIMEOUT`], and none lasts longer than
//! [`CONNECTION_TIMEOUT`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::watch;

use crate::admit::budget::MemoryBudget;
use crate::ops::health::Health;
use crate::ops::reload::{ReloadError, ReloadReport, Reloader};
use crate::telemetry::{self, TenantMetrics};

/// Connections served at once; more are closed as they come.
pub const MAX_CONNECTIONS: usize = 64;

/// Connections served at once from one address: a prober cannot take every
/// slot from a balancer's health checks or Prometheus.
pub const MAX_CONNECTIONS_PER_PEER: usize = 8;

/// How long a connection has to send a request's head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest a connection lasts (a reload answers once old stores are
/// drained: up to twice the write timeout).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(120);

/// The admin token in force (`server.admin_token_file`), if any; a reload
/// replaces it.
use crate::config::settings::AdminToken;

/// The connection's peer, for the checks of `POST /reload`.
#[derive(Debug, Clone, Copy)]
struct Peer(SocketAddr);

/// Serves the admin endpoint until shutdown; returns the task and the bound address.
pub async fn start(
    addr: SocketAddr,
    ready: Arc<AtomicBool>,
    budget: Arc<MemoryBudget>,
    health: Arc<Health>,
    reloader: Arc<Reloader>,
    token: AdminToken,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(tokio::task::JoinHandle<()>, SocketAddr)> {
    let handle = telemetry::install();
    // Every process-wide series exists from the start, at 0.
    telemetry::global().build_info();
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
        let configured: std::collections::HashSet<String> = budget.tenant_ids().into_iter().collect();
        let mut text = handle.render();
        crate::telemetry::process::render(&mut text);
        std::future::ready(telemetry::tidy(&text, &configured))
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("server.admin_listen: cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/reload",
            post(
                move |axum::Extension(Peer(peer)): axum::Extension<Peer>, headers: HeaderMap| {
                    let (reloader, token) = (reloader.clone(), token.clone());
                    async move {
                        if let Err(refused) = authorize(&headers, peer, bound, token.load().as_ref().as_ref()) {
                            tracing::warn!(%peer, reason = refused.1, "admin request refused");
                            return (refused.0, format!("{}\n", refused.1));
                        }
                        // In a task of its own: a client that goes away (or a
                        // connection that times out) does not cut a reload short.
                        match tokio::spawn(async move { reloader.reload().await }).await {
                            Ok(result) => reload_answer(result),
                            Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "the reload failed\n".to_owned()),
                        }
                    }
                },
            ),
        )
        .route("/health/tenants", {
            let health = health.clone();
            get(move || std::future::ready(tenant_health(&health)))
        })
        .route(
            "/readyz",
            get(move || {
                let answer = readiness(ready.load(Ordering::SeqCst), &health);
                std::future::ready(answer)
            }),
        );
    tracing::info!(addr = %bound, "admin endpoint listening");
    let task = tokio::spawn(async move {
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        let per_peer: Arc<Mutex<HashMap<std::net::IpAddr, usize>>> = Arc::default();
        loop {
            // Keep serving /readyz (503) while draining; stop when the server is dropped.
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "admin endpoint: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                changed = shutdown.changed() => match changed {
                    Ok(()) => continue,
                    Err(_) => break,
                },
            };
            // Beyond the caps, closed at once: the endpoint stays answerable.
            let Some(peer_slot) = PeerSlot::take(&per_peer, peer.ip()) else {
                continue;
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                continue;
            };
            let app = app.clone().layer(axum::Extension(Peer(peer)));
            tokio::spawn(async move {
                let _slots = (slot, peer_slot);
                // One request a connection: none lingers idle on a slot.
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .keep_alive(false)
                    .serve_connection(
                        hyper_util::rt::TokioIo::new(stream),
                        hyper_util::service::TowerToHyperService::new(app),
                    );
                let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
            });
        }
    });
    Ok((task, bound))
}

/// A connection's place among its address's ([`MAX_CONNECTIONS_PER_PEER`]);
/// given back when dropped.
struct PeerSlot {
    counts: Arc<Mutex<HashMap<std::net::IpAddr, usize>>>,
    peer: std::net::IpAddr,
}

impl PeerSlot {
    fn take(counts: &Arc<Mutex<HashMap<std::net::IpAddr, usize>>>, peer: std::net::IpAddr) -> Option<PeerSlot> {
        let mut map = counts.lock().unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(peer).or_default();
        if *n >= MAX_CONNECTIONS_PER_PEER {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            counts: counts.clone(),
            peer,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.peer);
            }
        }
    }
}

/// Whether a state-changing request may go ahead (module doc), or the
/// status and the one line that say why not.
fn authorize(
    headers: &HeaderMap,
    peer: SocketAddr,
    endpoint: SocketAddr,
    token: Option<&SecretString>,
) -> Result<(), (StatusCode, &'static str)> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if headers.contains_key("origin") {
        return Err((
            StatusCode::FORBIDDEN,
            "a request from a browser page (it has an Origin header) cannot change the gateway",
        ));
    }
    if let Some(token) = token {
        let offered = header("authorization").and_then(|v| v.strip_prefix("Bearer "));
        let matches = offered.is_some_and(|offered| {
            use subtle::ConstantTimeEq;
            let (a, b) = (offered.trim().as_bytes(), token.expose_secret().as_bytes());
            a.len() == b.len() && bool::from(a.ct_eq(b))
        });
        return if matches {
            Ok(())
        } else {
            Err((
                StatusCode::UNAUTHORIZED,
                "Authorization: Bearer with the token of server.admin_token_file is required",
            ))
        };
    }
    if !peer.ip().to_canonical().is_loopback() {
        return Err((
            StatusCode::FORBIDDEN,
            "without server.admin_token_file, only a request from this host (loopback) may reload",
        ));
    }
    if !header("host").is_some_and(|host| host_is_the_endpoint(host, endpoint)) {
        return Err((
            StatusCode::FORBIDDEN,
            "the Host header must be this endpoint's address or localhost",
        ));
    }
    if header("x-awp-admin") != Some("1") {
        return Err((
            StatusCode::FORBIDDEN,
            "send the header X-AWP-Admin: 1 (a browser page cannot send it to another site)",
        ));
    }
    Ok(())
}

/// Whether `host` (a Host header) names the endpoint: its address and port,
/// `localhost` with its port, or, bound to every interface, any IP address
/// with its port. Never another DNS name.
fn host_is_the_endpoint(host: &str, endpoint: SocketAddr) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(':') || name.starts_with('[') => (name, port.parse::<u16>().ok()),
        _ => (host, None),
    };
    if port.is_some_and(|p| p != endpoint.port()) {
        return false;
    }
    let name = name.trim_start_matches('[').trim_end_matches(']');
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match name.parse::<std::net::IpAddr>() {
        Ok(ip) => endpoint.ip().is_unspecified() || ip.to_canonical() == endpoint.ip().to_canonical(),
        Err(_) => false,
    }
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

/// `/readyz`'s answer: 200 while the gateway takes agents (with a line per
/// degraded tenant and per old store still written), 503 while draining.
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
    (StatusCode::OK, format!("ready\n{degraded}{draining}"))
}

/// `/health/tenants`: each tenant, whether its records are being stored
/// (and if not why), and whether an old store of it is still written.
fn tenant_health(health: &Health) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    let drains = health.drains();
    let tenants: Vec<serde_json::Value> = health
        .report()
        .into_iter()
        .map(|(tenant, problem)| {
            let draining: Vec<&str> = drains.iter().filter(|(t, _)| *t == tenant).map(|(_, w)| *w).collect();
            serde_json::json!({
                "tenant": tenant,
                "ok": problem.is_none(),
                "problem": problem,
                "draining": draining,
            })
        })
        .collect();
    let degraded: Vec<&str> = tenants
        .iter()
        .filter(|t| t["ok"] == false)
        .filter_map(|t| t["tenant"].as_str())
        .collect();
    let body = serde_json::json!({ "degraded": degraded, "tenants": tenants });
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn readiness_is_about_taking_agents_and_names_the_degraded_tenants() {
        let health = Health::new(["a".to_owned(), "b".to_owned()], Duration::from_secs(60));
        assert_eq!(readiness(true, &health), (StatusCode::OK, "ready\n".to_owned()));
        assert_eq!(readiness(false, &health).0, StatusCode::SERVICE_UNAVAILABLE);
        health.tenant("b").down("the writer panicked: boom".into());
        // Still ready: every node shares b's store.
        let (status, body) = readiness(true, &health);
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            "ready\ndegraded: tenant b: writer down: the writer panicked: boom\n"
        );
        let (_, json) = tenant_health(&health);
        let json: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(json["degraded"], serde_json::json!(["b"]));
        assert_eq!(json["tenants"][0]["ok"], true);
        assert_eq!(json["tenants"][1]["problem"], "writer down: the writer panicked: boom");
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, value.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_reload_needs_the_token_or_loopback_and_the_admin_header() {
        let endpoint: SocketAddr = "127.0.0.1:9464".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let remote: SocketAddr = "198.51.100.9:50000".parse().unwrap();
        let ok = [("host", "127.0.0.1:9464"), ("x-awp-admin", "1")];
        assert_eq!(authorize(&headers(&ok), local, endpoint, None), Ok(()));
        let localhost = [("host", "localhost:9464"), ("x-awp-admin", "1")];
        assert_eq!(authorize(&headers(&localhost), local, endpoint, None), Ok(()));
        // A browser: cross-site pages cannot send the header, and send Origin.
        let status = |h: &[(&'static str, &str)], peer, token: Option<&SecretString>| {
            authorize(&headers(h), peer, endpoint, token).map_err(|e| e.0)
        };
        assert_eq!(
            status(&[("host", "127.0.0.1:9464")], local, None),
            Err(StatusCode::FORBIDDEN)
        );
        let with_origin = [
            ("host", "127.0.0.1:9464"),
            ("x-awp-admin", "1"),
            ("origin", "https://evil.example"),
        ];
        assert_eq!(status(&with_origin, local, None), Err(StatusCode::FORBIDDEN));
        // DNS rebinding: an attacker's name for 127.0.0.1.
        let rebound = [("host", "evil.example:9464"), ("x-awp-admin", "1")];
        assert_eq!(status(&rebound, local, None), Err(StatusCode::FORBIDDEN));
        assert_eq!(
            status(&[("host", "127.0.0.1:9465"), ("x-awp-admin", "1")], local, None),
            Err(StatusCode::FORBIDDEN)
        );
        // Without a token, never from another host.
        assert_eq!(status(&ok, remote, None), Err(StatusCode::FORBIDDEN));
        // With a token: the token, from anywhere; nothing else will do.
        let token = SecretString::from("a-long-admin-token-0123456789abcdef");
        assert_eq!(status(&ok, local, Some(&token)), Err(StatusCode::UNAUTHORIZED));
        let bearer = [
            ("host", "gw-7.internal:9464"),
            ("authorization", "Bearer a-long-admin-token-0123456789abcdef"),
        ];
        assert_eq!(status(&bearer, remote, Some(&token)), Ok(()));
        let wrong = [("authorization", "Bearer a-long-admin-token-0123456789abcdeF")];
        assert_eq!(status(&wrong, remote, Some(&token)), Err(StatusCode::UNAUTHORIZED));
    }

    #[test]
    fn the_host_must_name_the_endpoint() {
        let v4: SocketAddr = "10.0.0.5:9464".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:9464".parse().unwrap();
        let v6: SocketAddr = "[::1]:9464".parse().unwrap();
        assert!(host_is_the_endpoint("10.0.0.5:9464", v4));
        assert!(host_is_the_endpoint("10.0.0.5", v4));
        assert!(!host_is_the_endpoint("10.0.0.6:9464", v4));
        assert!(host_is_the_endpoint("192.0.2.1:9464", any));
        assert!(!host_is_the_endpoint("gateway.example:9464", any));
        assert!(host_is_the_endpoint("[::1]:9464", v6));
        assert!(host_is_the_endpoint("localhost:9464", v6));
        assert!(!host_is_the_endpoint("[::1]:80", v6));
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
