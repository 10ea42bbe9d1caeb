//! Listeners, the connection limit, and shutdown.
//!
//! [`start`] binds every listener (so tests can ask for port 0 and read the
//! addresses back), starts the pipeline and the admin endpoint, and returns a
//! [`RunningServer`]. Each accepted connection first takes a place among the
//! connections waiting to authenticate (`admission::WaitingPool`), which
//! closes the one waiting longest when full, so silent connections cannot
//! crowd out agents; its HELLO then takes a place among the authenticated
//! connections (`admission::Admission`). TLS handshakes run under their own
//! deadline.
//!
//! Shutdown ([`RunningServer::shutdown`]): stop accepting, flag readiness
//! down, tell every session to drain (GOAWAY; in-flight batches are still
//! acknowledged), wait for the connections, then for the sink writers to
//! write what was queued — all within `drain_timeout_ms`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::admit::admission::{Admission, Waiting, WaitingPool};
use crate::admit::budget::MemoryBudget;
use crate::admit::tenant::{LiveTenants, Tenants};
use crate::config::Config;
use crate::config::settings::{report_certificate_expiry, session_settings, tenant_cas};
use crate::net::conn::{ConnContext, serve};
use crate::ops::health::Health;
use crate::ops::reload::{ConfigSource, Parts, ReloadError, ReloadReport, Reloader};
use crate::pipeline::{Pipeline, Writers};
use crate::session::Transport;
use crate::telemetry;

/// A started gateway.
pub struct RunningServer {
    /// Bound plain TCP addresses.
    pub plain_addrs: Vec<SocketAddr>,
    /// Bound TLS addresses.
    pub tls_addrs: Vec<SocketAddr>,
    /// Bound admin address.
    pub admin_addr: Option<SocketAddr>,
    shutdown_tx: watch::Sender<bool>,
    ready: Arc<AtomicBool>,
    accept_tasks: JoinSet<()>,
    connections: Arc<tokio::sync::Mutex<JoinSet<()>>>,
    writers: Writers,
    pipeline: Pipeline,
    reloader: Arc<Reloader>,
    admin: Option<tokio::task::JoinHandle<()>>,
    drain_timeout: Duration,
}

/// Binds the listeners and starts serving.
pub async fn start(config: &Config) -> anyhow::Result<RunningServer> {
    start_with_source(config, None).await
}

/// [`start`], with where reloads read the configuration (`source`) in force
/// before the admin endpoint takes its first `POST /reload`.
pub async fn start_with_source(config: &Config, source: Option<ConfigSource>) -> anyhow::Result<RunningServer> {
    config.validate()?;
    // Before any metric handle is made, so none is a no-op.
    telemetry::install();
    let s = &config.server;
    let tenants = Tenants::from_config(&config.tenants, &config.server)?;
    let budget = Arc::new(MemoryBudget::new(
        config.pipeline.budget_bytes,
        config.pipeline.tenant_budget_bytes(),
        tenants.iter().map(|t| t.id.clone()),
    ));
    telemetry::global().budget(budget.total());
    for tenant in config.null_sink_tenants() {
        tracing::warn!(
            tenant,
            "the null sink is on: this tenant's batches are acknowledged and NOT stored"
        );
    }
    let health = Arc::new(Health::new(
        tenants.iter().map(|t| t.id.clone()),
        config.pipeline.unhealthy_after,
    ));
    let (pipeline, writers) = Pipeline::start(&tenants, &config.sink, &config.pipeline, &health)
        .await
        .context("sink: cannot open the tenants' stores")?;
    report_certificate_expiry(config);
    telemetry::global().config_loaded();
    let tls = match (&config.tls, s.tls_listen.is_empty()) {
        (Some(t), false) => Some(Arc::new(ArcSwap::new(crate::net::tls::server_config(
            &t.cert,
            &t.key,
            &tenant_cas(&tenants),
        )?))),
        _ => None,
    };
    let ctx = Arc::new(ConnContext {
        settings: ArcSwap::from_pointee(session_settings(config)),
        tenants: Arc::new(LiveTenants::from_pointee(tenants)),
        budget: budget.clone(),
        admission: Admission::new(s.max_connections, crate::config::settings::tenant_limits(config)),
        pipeline: pipeline.clone(),
        write_timeout: s.write_timeout,
    });
    let admin_token: crate::config::settings::AdminToken = Arc::new(ArcSwap::from_pointee(config.admin_token()?));
    let reloader = Arc::new(Reloader::new(
        config.clone(),
        Parts {
            ctx: ctx.clone(),
            tls: tls.clone(),
            budget: budget.clone(),
            health: health.clone(),
            pipeline: pipeline.clone(),
            admin_token: admin_token.clone(),
        },
    ));

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let waiting = WaitingPool::new(s.max_unauthenticated, s.max_unauthenticated_per_source);
    let connections = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
    let mut accept_tasks = JoinSet::new();
    let mut plain_addrs = Vec::new();
    let mut tls_addrs = Vec::new();
    let handshake_timeout = s.tls_handshake_timeout;
    let listeners = s
        .listen
        .iter()
        .map(|a| (a, None))
        .chain(s.tls_listen.iter().map(|a| (a, tls.clone())));
    let backlog = s.listen_backlog.unwrap_or_else(system_backlog);
    for (addr, acceptor) in listeners {
        let listener = listen(*addr, backlog, s.reuse_port).with_context(|| {
            format!("server.listen: cannot listen on {addr} (another gateway there? set server.reuse_port = true to share the port on purpose)")
        })?;
        let bound = listener.local_addr()?;
        if acceptor.is_some() {
            tls_addrs.push(bound);
        } else {
            plain_addrs.push(bound);
        }
        tracing::info!(addr = %bound, tls = acceptor.is_some(), "listening");
        accept_tasks.spawn(accept_loop(AcceptLoop {
            listener,
            tls: acceptor,
            handshake_timeout,
            waiting: waiting.clone(),
            proxy_protocol: s.proxy_protocol,
            proxy_trusted: s.proxy_protocol_trusted.clone().into(),
            ctx: ctx.clone(),
            shutdown: shutdown_rx.clone(),
            connections: connections.clone(),
        }));
    }
    if let Some(source) = source {
        reloader.set_source(source);
    }
    let ready = Arc::new(AtomicBool::new(true));
    let (admin, admin_addr) = match s.admin_listen {
        Some(addr) => {
            let (handle, bound) = crate::ops::admin::start(
                addr,
                ready.clone(),
                budget.clone(),
                health.clone(),
                reloader.clone(),
                admin_token.clone(),
                shutdown_rx.clone(),
            )
            .await?;
            (Some(handle), Some(bound))
        }
        None => (None, None),
    };
    Ok(RunningServer {
        plain_addrs,
        tls_addrs,
        admin_addr,
        shutdown_tx,
        ready,
        accept_tasks,
        connections,
        writers,
        pipeline,
        reloader,
        admin,
        drain_timeout: s.drain_timeout,
    })
}

impl RunningServer {
    /// Where reloads ([`RunningServer::reload`], `POST /reload`) read the
    /// configuration; without one they are refused.
    pub fn set_config_source(&self, source: ConfigSource) {
        self.reloader.set_source(source);
    }

    /// Reads the configuration again and applies it without dropping
    /// agents, or refuses it whole (`ops/reload.rs`).
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        self.reloader.reload().await
    }

    /// Drains and stops: GOAWAY to every agent, acks for what was received,
    /// sinks flushed; returns whether everything finished within the drain
    /// deadline.
    pub async fn shutdown(mut self) -> bool {
        let deadline = tokio::time::Instant::now() + self.drain_timeout;
        self.ready.store(false, Ordering::SeqCst);
        if tokio::time::timeout_at(deadline, self.reloader.stop()).await.is_err() {
            tracing::warn!("a configuration reload was still running at the drain deadline");
        }
        self.accept_tasks.abort_all();
        while self.accept_tasks.join_next().await.is_some() {}
        let _ = self.shutdown_tx.send(true);
        let mut connections = std::mem::take(&mut *self.connections.lock().await);
        let conns_done = tokio::time::timeout_at(deadline, async { while connections.join_next().await.is_some() {} })
            .await
            .is_ok();
        if !conns_done {
            tracing::warn!(left = connections.len(), "drain deadline passed; dropping connections");
            connections.abort_all();
        }
        // The writers end once their queues close.
        self.pipeline.close();
        drop(self.pipeline);
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let writers_done = self.writers.drain(remaining).await;
        if let Some(admin) = self.admin {
            admin.abort();
        }
        tracing::info!(clean = conns_done && writers_done, "gateway stopped");
        conns_done && writers_done
    }
}

struct AcceptLoop {
    listener: TcpListener,
    /// TLS for this listener, as the last reload left it.
    tls: Option<Arc<ArcSwap<rustls::ServerConfig>>>,
    handshake_timeout: Duration,
    waiting: Arc<WaitingPool>,
    proxy_protocol: bool,
    /// The balancers whose PROXY headers are believed.
    proxy_trusted: Arc<[crate::config::Network]>,
    ctx: Arc<ConnContext>,
    shutdown: watch::Receiver<bool>,
    connections: Arc<tokio::sync::Mutex<JoinSet<()>>>,
}

async fn accept_loop(a: AcceptLoop) {
    loop {
        let (stream, peer) = match a.listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let open = OpenConnection::new(a.tls.is_some());
        let mut connections = a.connections.lock().await;
        // Reap finished connections so the set stays the size of the live ones.
        while connections.try_join_next().is_some() {}
        // One task per connection, whose future is the session itself:
        // with many mostly idle agents, every byte of it counts.
        let (ctx, shutdown, pool) = (a.ctx.clone(), a.shutdown.clone(), a.waiting.clone());
        // New handshakes use the certificate in force now.
        let acceptor = a.tls.as_ref().map(|tls| TlsAcceptor::from(tls.load_full()));
        let handshake_timeout = a.handshake_timeout;
        if a.proxy_protocol {
            // Only a trusted balancer's header is believed: anybody else
            // could claim any address. Closed before a byte is read.
            if !a.proxy_trusted.iter().any(|net| net.contains(peer.ip())) {
                drop(stream);
                telemetry::global().proxy_untrusted();
                crate::telemetry::logs::pre_auth(
                    || tracing::info!(peer = %peer, "connection from outside proxy_protocol_trusted closed"),
                );
                continue;
            }
            // A place among the connections waiting, counted against no
            // source until the header says the agent's (a balancer's idle
            // connections count as waiting too); then the agent's
            // address comes from the header (in a box of its own, freed
            // once read), and the connection goes on as any other.
            let waiting = pool.enter_unattributed(peer.ip());
            connections.spawn(async move {
                let mut stream = stream;
                let mut stopping = shutdown.clone();
                let header = Box::pin(tokio::time::timeout(
                    handshake_timeout,
                    crate::net::proxy_protocol::read_source(&mut stream, peer),
                ));
                let source = tokio::select! {
                    header = header => match header {
                        Ok(Ok(source)) => source,
                        Ok(Err(e)) => return proxy_header_failed(peer, &e.to_string()),
                        Err(_) => return proxy_header_failed(peer, "no PROXY header in time"),
                    },
                    // Evicted while waiting for the header, or the gateway
                    // stopping: closed without a word (there is no session yet).
                    _ = waiting.evicted() => return,
                    _ = stopping.wait_for(|stop| *stop) => return,
                };
                waiting.move_to(source.ip());
                match acceptor {
                    None => serve(stream, Transport::plain(), ctx, shutdown, waiting, open).await,
                    Some(acceptor) => {
                        tls_connection(stream, acceptor, handshake_timeout, ctx, shutdown, waiting, open).await
                    }
                }
            });
            continue;
        }
        // A place among the connections waiting to authenticate: given, by
        // closing the one waiting longest if need be.
        let waiting = pool.enter(peer.ip());
        match acceptor {
            None => connections.spawn(serve(stream, Transport::plain(), ctx, shutdown, waiting, open)),
            Some(acceptor) => connections.spawn(tls_connection(
                stream,
                acceptor,
                handshake_timeout,
                ctx,
                shutdown,
                waiting,
                open,
            )),
        };
    }
}

fn proxy_header_failed(peer: SocketAddr, reason: &str) {
    telemetry::global().proxy_header_failed();
    crate::telemetry::logs::pre_auth(
        || tracing::info!(%peer, reason, "connection refused: no valid PROXY protocol header"),
    );
}

/// A listening socket on `addr`; with `reuse_port` (`SO_REUSEPORT`), a new
/// gateway process can listen on the same port while the old one drains
/// (an upgrade without refused connections; docs/operations.md), or
/// several processes share one. Without it, a port in use is an error: two
/// gateways started by mistake in two folders do not split agents between
/// them.
fn listen(addr: SocketAddr, backlog: u32, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// The system's largest listen backlog (`net.core.somaxconn`): after a
/// node fails, its agents reconnect to the others at once, and a backlog
/// that overflows drops their SYNs, which costs them a second or more each.
fn system_backlog() -> u32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4096)
}

/// An open connection, counted in the metrics while it lives.
struct OpenConnection;

impl OpenConnection {
    fn new(tls: bool) -> OpenConnection {
        telemetry::global().connection_opened(tls);
        OpenConnection
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        telemetry::global().connection_closed();
    }
}

/// A TLS connection: the handshake (in a box of its own, freed once done),
/// then the session.
async fn tls_connection(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    ctx: Arc<ConnContext>,
    shutdown: watch::Receiver<bool>,
    waiting: Waiting,
    open: OpenConnection,
) {
    let handshake = Box::pin(handshake(stream, &acceptor, handshake_timeout, &waiting));
    // Evicted while still shaking hands: closed without a word (there is
    // no channel to send one on yet).
    let tls = tokio::select! {
        tls = handshake => tls,
        _ = waiting.evicted() => None,
    };
    if let Some(tls) = tls {
        let certs = crate::net::tls::peer_certificates(tls.get_ref().1);
        serve(
            tls,
            Transport {
                tls: true,
                peer_certs: certs.map(Vec::into_boxed_slice),
            },
            ctx,
            shutdown,
            waiting,
            open,
        )
        .await;
    }
}

/// The TLS handshake under its deadline; the stream on the heap, so that the
/// session's future holds a pointer to it.
async fn handshake(
    stream: TcpStream,
    acceptor: &TlsAcceptor,
    timeout: Duration,
    waiting: &Waiting,
) -> Option<Box<tokio_rustls::server::TlsStream<TcpStream>>> {
    let failure = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => return Some(Box::new(tls)),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "timed out".to_owned(),
    };
    telemetry::global().tls_handshake_failed();
    let agent = waiting.source().map(|a| a.to_string()).unwrap_or_default();
    crate::telemetry::logs::pre_auth(|| tracing::info!(agent, error = failure, "TLS handshake failed"));
    None
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use awp_protocol::Limits;

    use super::*;
    use crate::config::Config;
    use crate::session::SessionSettings;

    /// Each connection is one task whose future is the session: with tens of
    /// thousands of mostly idle agents its size is the gateway's memory per
    /// agent (docs/performance.md), so it must not grow unnoticed (an
    /// inline TLS stream, a buffer in the future, a large stage kept).
    #[tokio::test]
    async fn a_connections_task_stays_small() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::development(dir.path().to_path_buf(), "0123456789abcdef".into());
        let tenants = Tenants::default();
        let settings = ArcSwap::from_pointee(SessionSettings {
            limits: Limits::DEFAULT,
            max_inflight: 32,
            heartbeat: Duration::from_secs(30),
            hello_timeout: Duration::from_secs(10),
            retry_after_ms: 1000,
            goaway_reconnect_ms: 1000,
            budget_wait: Duration::from_secs(10),
            min_frame_rate: 1024,
            max_connection_age: None,
        });
        let health = Arc::new(Health::default());
        let (pipeline, _writers) = Pipeline::start(&tenants, &config.sink, &config.pipeline, &health)
            .await
            .unwrap();
        let ctx = Arc::new(ConnContext {
            settings,
            tenants: Arc::new(LiveTenants::from_pointee(tenants)),
            budget: Arc::new(MemoryBudget::new(1 << 20, 1 << 20, [])),
            admission: Admission::new(1, []),
            pipeline,
            write_timeout: Duration::from_secs(1),
        });
        let (_tx, shutdown) = watch::channel(false);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let pool = WaitingPool::new(10, 10);
        let source = std::net::IpAddr::from([127, 0, 0, 1]);

        let plain = serve(
            stream,
            Transport::plain(),
            ctx.clone(),
            shutdown.clone(),
            pool.enter(source),
            OpenConnection::new(false),
        );
        // 1,104 bytes: 1,144 with the waiting place and the
        // eviction/replacement signal (issue 9), about 1,000 before; the
        // agent's address for the session's log lines adds 24, and one
        // mailbox for outcomes, eviction and replacement (issue 10) takes
        // 64 off.
        assert!(
            std::mem::size_of_val(&plain) <= 1104,
            "{}",
            std::mem::size_of_val(&plain)
        );
        drop(plain);

        let pki = awp_testkit::certs::TestPki::new();
        let acceptor =
            TlsAcceptor::from(crate::net::tls::server_config(&pki.server_cert, &pki.server_key, &[]).unwrap());
        let _client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let open = OpenConnection::new(true);
        let tls = tls_connection(
            stream,
            acceptor,
            Duration::from_secs(1),
            ctx,
            shutdown,
            pool.enter(source),
            open,
        );
        // The TLS stream itself (about 1.2 KiB) lives in a box of its own;
        // 1,224 bytes.
        assert!(std::mem::size_of_val(&tls) <= 1224, "{}", std::mem::size_of_val(&tls));
    }
}
