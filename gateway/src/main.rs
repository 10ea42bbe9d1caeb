//! The `gateway` binary: command line, logging, signals.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use awp_gateway::RunningServer;
use awp_gateway::cmd::inspect;
use awp_gateway::config::{Config, EXAMPLE, Layout, SinkKind};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use secrecy::ExposeSecret;

/// The TLS address `dev-certs`' usage suggests (beside the default 7700).
const DEV_CERTS_TLS_LISTEN: &str = "127.0.0.1:7701";

/// AWP/1 ingestion gateway.
///
/// With no arguments it runs the embedded development default: loopback
/// only, SQLite under ./data, one tenant `dev` whose secret it prints.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
struct Cli {
    /// Running without a subcommand (`gateway --listen …`) takes the flags
    /// of `gateway run`.
    #[command(flatten)]
    server: ServerFlags,
    #[command(subcommand)]
    command: Option<Command>,
}

/// What running (and checking) a gateway takes: the configuration and the
/// overrides of its addresses, store and log format.
#[derive(clap::Args, Debug, Clone, Default)]
struct ServerFlags {
    /// Configuration file (TOML). Without one, the development default runs.
    #[arg(long, short, env = "GATEWAY_CONFIG")]
    config: Option<PathBuf>,
    /// Plain TCP listen addresses (replace the config's).
    #[arg(long, env = "GATEWAY_LISTEN", value_delimiter = ',')]
    listen: Vec<std::net::SocketAddr>,
    /// TLS listen addresses (replace the config's).
    #[arg(long, env = "GATEWAY_TLS_LISTEN", value_delimiter = ',')]
    tls_listen: Vec<std::net::SocketAddr>,
    /// Admin HTTP address (replaces the config's).
    #[arg(long, env = "GATEWAY_ADMIN_LISTEN")]
    admin_listen: Option<std::net::SocketAddr>,
    /// Sink: sqlite, dynamodb or null (replaces the config's).
    #[arg(long, env = "GATEWAY_SINK", value_parser = parse_sink)]
    sink: Option<SinkKind>,
    /// Data directory of the SQLite sink (replaces the config's).
    #[arg(long, env = "GATEWAY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Allow the null sink, which acknowledges every batch and stores nothing (benchmarks).
    #[arg(long, env = "GATEWAY_ALLOW_NULL_SINK", value_parser = clap::builder::FalseyValueParser::new())]
    allow_null_sink: bool,
    /// Store every tenant's records in this layout: record or packed (one item per batch).
    #[arg(long, env = "GATEWAY_LAYOUT", value_parser = parse_layout)]
    layout: Option<Layout>,
    /// Log format: text or json [default: text]. Levels come from RUST_LOG (default info).
    #[arg(long, env = "GATEWAY_LOG_FORMAT", value_parser = ["text", "json"])]
    log_format: Option<String>,
}

impl ServerFlags {
    /// These flags (a subcommand's, read from `matches`) merged with
    /// `outer`'s (given before the subcommand, read from `outer_matches`):
    /// a flag on the command line beats the environment wherever it
    /// stands; the subcommand's wins if both are given.
    fn merged(self, matches: &ArgMatches, outer: &ServerFlags, outer_matches: &ArgMatches) -> ServerFlags {
        let outer_wins = |id: &str| !given(matches, id) && given(outer_matches, id);
        let outer = outer.clone();
        ServerFlags {
            config: if outer_wins("config") {
                outer.config
            } else {
                self.config
            },
            listen: if outer_wins("listen") {
                outer.listen
            } else {
                self.listen
            },
            tls_listen: if outer_wins("tls_listen") {
                outer.tls_listen
            } else {
                self.tls_listen
            },
            admin_listen: if outer_wins("admin_listen") {
                outer.admin_listen
            } else {
                self.admin_listen
            },
            sink: if outer_wins("sink") { outer.sink } else { self.sink },
            data_dir: if outer_wins("data_dir") {
                outer.data_dir
            } else {
                self.data_dir
            },
            allow_null_sink: if outer_wins("allow_null_sink") {
                outer.allow_null_sink
            } else {
                self.allow_null_sink
            },
            layout: if outer_wins("layout") {
                outer.layout
            } else {
                self.layout
            },
            log_format: if outer_wins("log_format") {
                outer.log_format
            } else {
                self.log_format
            },
        }
    }
}

/// Whether `id` was given on the command line of `matches`' command (not
/// taken from the environment, and not an argument of another command).
fn given(matches: &ArgMatches, id: &str) -> bool {
    matches.try_get_raw(id).is_ok() && matches.value_source(id) == Some(ValueSource::CommandLine)
}

/// What reading a configuration's stores takes (`tables`, `export`): the
/// configuration and the overrides of the store (the same as `run`'s, so
/// that `export` reads the store the gateway writes).
#[derive(clap::Args, Debug, Clone, Default)]
struct StoreFlags {
    /// Configuration file (TOML). Without one, the development default's.
    #[arg(long, short, global = true, env = "GATEWAY_CONFIG")]
    config: Option<PathBuf>,
    /// Sink: sqlite, dynamodb or null (replaces the config's).
    #[arg(long, global = true, env = "GATEWAY_SINK", value_parser = parse_sink)]
    sink: Option<SinkKind>,
    /// Data directory of the SQLite sink (replaces the config's).
    #[arg(long, global = true, env = "GATEWAY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Allow the null sink (as `run` takes it).
    #[arg(long, global = true, env = "GATEWAY_ALLOW_NULL_SINK", value_parser = clap::builder::FalseyValueParser::new())]
    allow_null_sink: bool,
    /// Every tenant's layout: record or packed (replaces the config's).
    #[arg(long, global = true, env = "GATEWAY_LAYOUT", value_parser = parse_layout)]
    layout: Option<Layout>,
}

impl StoreFlags {
    /// The server flags these stand for, merged with those given before
    /// the subcommand.
    fn server(&self, matches: &ArgMatches, outer: &ServerFlags, outer_matches: &ArgMatches) -> ServerFlags {
        ServerFlags {
            config: self.config.clone(),
            sink: self.sink,
            data_dir: self.data_dir.clone(),
            allow_null_sink: self.allow_null_sink,
            layout: self.layout,
            ..ServerFlags::default()
        }
        .merged(matches, outer, outer_matches)
    }
}

#[derive(Subcommand, Debug, Clone)]
enum Command {
    /// Run the gateway (the default).
    Run(ServerFlags),
    /// Check the configuration and exit: silent and 0 when valid, one line naming the field otherwise.
    CheckConfig(ServerFlags),
    /// Print a commented example configuration.
    ExampleConfig,
    /// Print a fresh random tenant secret (256 bits, hex) for `secrets`.
    Secret,
    /// Decode a captured client byte stream (raw or hex) into JSON lines, one per frame.
    Inspect {
        /// The capture file; `-` for standard input.
        file: PathBuf,
    },
    /// Create or describe the tenants' DynamoDB tables.
    Tables {
        #[command(subcommand)]
        action: TablesAction,
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        store: StoreFlags,
    },
    /// Print a tenant's records as JSON lines (the record layout's items, plain JSON), from either layout.
    Export {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// Only this device's records.
        #[arg(long)]
        device: Option<String>,
        /// Records at or after this time: unix milliseconds or RFC 3339.
        #[arg(long, value_parser = awp_gateway::cmd::export::parse_time)]
        from: Option<u64>,
        /// Records before this time: unix milliseconds or RFC 3339.
        #[arg(long, value_parser = awp_gateway::cmd::export::parse_time)]
        to: Option<u64>,
        #[command(flatten)]
        store: StoreFlags,
    },
    /// Ask a running gateway's admin endpoint whether it is alive (or ready): exit 0 on 2xx, 1 otherwise.
    ///
    /// The address is --admin-listen's, else the configuration's (--config
    /// or GATEWAY_CONFIG), else the development default's (127.0.0.1:9464).
    /// For a container HEALTHCHECK (the image has no curl).
    Probe {
        /// The path: /healthz (alive) or /readyz (send me agents).
        #[arg(long, default_value = "/healthz")]
        path: String,
        /// Give up after this long, in milliseconds, at each step.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
        /// The admin endpoint's address.
        #[arg(long, env = "GATEWAY_ADMIN_LISTEN")]
        admin_listen: Option<std::net::SocketAddr>,
        /// A configuration whose server.admin_listen to ask.
        #[arg(long, short, env = "GATEWAY_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Write a throwaway PKI for trying TLS and mTLS: a CA, a server certificate, device client certificates.
    /// Run again on the same directory to add devices (its CAs are kept).
    DevCerts {
        /// The directory to write into (created; nothing in it is overwritten).
        dir: PathBuf,
        /// Server certificate names: DNS names or IP addresses.
        #[arg(long = "name", default_values = ["localhost", "127.0.0.1"])]
        names: Vec<String>,
        /// A device client certificate, as TENANT/DEVICE; repeat for more.
        #[arg(long = "device")]
        devices: Vec<String>,
    },
    /// Print the device token for a tenant secret (AWP1.md 4.1), for provisioning and support.
    ///
    /// The secret comes from a file (--secret-file) or the environment
    /// (AWP_SECRET); --secret on the command line shows it to anyone who
    /// can list processes.
    #[command(group(clap::ArgGroup::new("tenant_secret").required(true).args(["secret", "secret_file"])))]
    Token {
        /// The tenant secret (prefer --secret-file or AWP_SECRET).
        #[arg(long, env = "AWP_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// A file whose first line is the tenant secret.
        #[arg(long)]
        secret_file: Option<PathBuf>,
        /// The tenant id.
        #[arg(long)]
        tenant: String,
        /// The device id.
        #[arg(long)]
        device: String,
        /// Unix seconds after which the token is void; 0 for never.
        #[arg(long, default_value_t = 0)]
        expiry: u64,
    },
}

#[derive(Subcommand, Debug, Clone)]
enum TablesAction {
    /// Create each tenant's table (keys device/rk, on-demand, TTL on expires_at); idempotent.
    Create,
    /// Show each tenant's table: status, keys, billing, size, TTL.
    Describe,
}

fn parse_layout(s: &str) -> Result<Layout, String> {
    match s {
        "record" => Ok(Layout::Record),
        "packed" => Ok(Layout::Packed),
        _ => Err(format!("unknown layout {s:?}: use record or packed")),
    }
}

fn parse_sink(s: &str) -> Result<SinkKind, String> {
    match s {
        "sqlite" => Ok(SinkKind::Sqlite),
        "null" => Ok(SinkKind::Null),
        "dynamodb" => Ok(SinkKind::Dynamodb),
        _ => Err(format!("unknown sink {s:?}: use sqlite, dynamodb or null")),
    }
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match run(cli, &matches) {
        Ok(code) => code,
        // Output piped into a reader that stopped (`gateway export | head`):
        // it had what it wanted.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the chain of causes, outermost first.
            eprintln!("gateway: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Whether `e` comes from writing to a pipe whose reader went away.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run(cli: Cli, matches: &ArgMatches) -> anyhow::Result<ExitCode> {
    // The subcommand's own arguments (flags given after it).
    let sub = matches.subcommand().map_or(matches, |(_, m)| m);
    match &cli.command {
        Some(Command::ExampleConfig) => {
            print!("{EXAMPLE}");
            return Ok(ExitCode::SUCCESS);
        }
        Some(Command::Inspect { file }) => return inspect_file(file),
        Some(Command::Probe {
            path,
            timeout_ms,
            admin_listen,
            config,
        }) => {
            // A flag given before `probe` beats the environment (the image
            // sets GATEWAY_ADMIN_LISTEN); one given after it beats both.
            let admin_listen = if !given(sub, "admin_listen") && given(matches, "admin_listen") {
                cli.server.admin_listen
            } else {
                admin_listen.or(cli.server.admin_listen)
            };
            let config = if !given(sub, "config") && given(matches, "config") {
                cli.server.config.clone()
            } else {
                config.clone().or_else(|| cli.server.config.clone())
            };
            return Ok(probe(admin_listen, config.as_deref(), path, *timeout_ms));
        }
        Some(Command::DevCerts { dir, names, devices }) => {
            let written = awp_gateway::cmd::dev_certs::write(dir, names, devices)?;
            print!(
                "{}",
                awp_gateway::cmd::dev_certs::usage(dir, devices, &written, DEV_CERTS_TLS_LISTEN)
            );
            return Ok(ExitCode::SUCCESS);
        }
        Some(Command::Secret) => {
            let mut raw = [0u8; 32];
            getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            println!("{}", hex::encode(raw));
            return Ok(ExitCode::SUCCESS);
        }
        Some(Command::Token {
            secret,
            secret_file,
            tenant,
            device,
            expiry,
        }) => {
            let secret = match (secret, secret_file) {
                (_, Some(path)) => std::fs::read_to_string(path)
                    .with_context(|| format!("--secret-file: cannot read {}", path.display()))?
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_owned(),
                (Some(secret), None) => secret.clone(),
                (None, None) => anyhow::bail!("--secret-file or AWP_SECRET: the tenant secret is needed"),
            };
            if secret.is_empty() {
                anyhow::bail!("--secret-file: the file's first line is empty");
            }
            if !awp_protocol::is_valid_tenant_id(tenant) {
                anyhow::bail!("--tenant: {tenant:?} is not a tenant id the protocol takes (1-64 of A-Z a-z 0-9 _ . -)");
            }
            if !awp_protocol::is_valid_device_id(device) {
                anyhow::bail!("--device: {device:?} is not a device id the protocol takes (AWP1.md 4.1)");
            }
            let token = awp_protocol::token::device_token(secret.as_bytes(), tenant, device, *expiry);
            println!("{}", hex::encode(token));
            return Ok(ExitCode::SUCCESS);
        }
        Some(Command::Tables { action, tenant, store }) => {
            let config = load_config(&store.server(sub, &cli.server, matches))?;
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(async {
                match action {
                    TablesAction::Create => {
                        awp_gateway::sink::dynamodb::tables::create(&config, tenant.as_deref()).await
                    }
                    TablesAction::Describe => {
                        awp_gateway::sink::dynamodb::tables::describe(&config, tenant.as_deref()).await
                    }
                }
            })?;
            return Ok(ExitCode::SUCCESS);
        }
        Some(Command::Export {
            tenant,
            device,
            from,
            to,
            store,
        }) => {
            let config = load_config(&store.server(sub, &cli.server, matches))?;
            let selection = awp_gateway::cmd::export::Selection {
                device: device.clone(),
                from_ms: *from,
                to_ms: *to,
            };
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let written = runtime.block_on(awp_gateway::cmd::export::export(
                &config,
                tenant,
                &selection,
                std::io::stdout().lock(),
            ))?;
            eprintln!("exported {written} records");
            return Ok(ExitCode::SUCCESS);
        }
        Some(Command::CheckConfig(flags)) => {
            // Valid: silent, unless something is unsafe (one line each).
            for warning in load_config(&flags.clone().merged(sub, &cli.server, matches))?.warnings() {
                eprintln!("gateway: warning: {warning}");
            }
            return Ok(ExitCode::SUCCESS);
        }
        Some(Command::Run(_)) | None => {}
    }
    let flags = match &cli.command {
        Some(Command::Run(flags)) => flags.clone().merged(sub, &cli.server, matches),
        _ => cli.server.clone(),
    };
    init_logging(flags.log_format.as_deref().unwrap_or("text"))?;
    let config = load_config(&flags)?;
    for warning in config.warnings() {
        tracing::warn!(warning = %warning, "an unsafe setting");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let clean = runtime.block_on(async move {
        // SIGHUP (systemd's ExecReload) and POST /reload read the same file,
        // with the same command-line overrides, again: in force before the
        // admin endpoint takes its first request.
        let source = flags.clone();
        let source: awp_gateway::ConfigSource = std::sync::Arc::new(move || load_config(&source));
        // The handlers first: a SIGTERM that comes as soon as the listeners
        // are up (a supervisor, a test) drains instead of killing.
        let signals = Signals::install()?;
        let running = awp_gateway::start_with_source(&config, Some(source)).await?;
        if flags.config.is_none() {
            print_development_banner(&config, &running);
        }
        // systemd (Type=notify): ready once every listener is bound. A
        // no-op without NOTIFY_SOCKET.
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
            tracing::warn!(error = %e, "cannot tell systemd the gateway is ready");
        }
        signals.wait(&running).await?;
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        tracing::info!("shutting down: GOAWAY to agents, draining");
        anyhow::Ok(running.shutdown().await)
    })?;
    // A sink write stuck in the store must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(if clean { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn load_config(cli: &ServerFlags) -> anyhow::Result<Config> {
    let mut config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => {
            let data_dir = cli.data_dir.clone().unwrap_or_else(|| PathBuf::from("data"));
            let secret = awp_gateway::config::development_secret(&data_dir)
                .with_context(|| format!("cannot keep the development secret in {}", data_dir.display()))?;
            Config::development(data_dir, secret)
        }
    };
    if !cli.listen.is_empty() {
        config.server.listen = cli.listen.clone();
    }
    if !cli.tls_listen.is_empty() {
        config.server.tls_listen = cli.tls_listen.clone();
    }
    if let Some(a) = cli.admin_listen {
        config.server.admin_listen = Some(a);
    }
    if let Some(kind) = cli.sink {
        config.sink.kind = kind;
    }
    if let Some(dir) = &cli.data_dir {
        config.sink.data_dir = dir.clone();
    }
    if cli.allow_null_sink {
        config.sink.allow_null = true;
    }
    if let Some(layout) = cli.layout {
        for tenant in &mut config.tenants {
            tenant.layout = layout;
        }
    }
    config.validate()?;
    Ok(config)
}

fn print_development_banner(config: &Config, running: &RunningServer) {
    let addr = running.plain_addrs.first().map(ToString::to_string).unwrap_or_default();
    let dir = config.sink.data_dir.display();
    let secret_file = format!("{dir}/dev-tenant.secret");
    let loopback = running.plain_addrs.iter().all(|a| a.ip().is_loopback());
    let reach = if loopback {
        "loopback only"
    } else {
        "reachable from the network"
    };
    println!("AWP gateway, development default ({reach}, SQLite under {dir}/)");
    println!("  agents:  {addr}  (plain TCP)");
    if let Some(admin) = running.admin_addr {
        println!("  admin:   http://{admin}/metrics  /healthz  /readyz");
    }
    // The secret goes to a terminal only: a log collector (docker logs,
    // journald) keeps what it is given.
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        let secret = config.tenants[0].secrets[0].expose_secret();
        println!("  tenant:  dev   secret: {secret}   (kept in {secret_file})");
    } else {
        println!("  tenant:  dev   secret in {secret_file} (printed on a terminal only)");
    }
    println!("  a device token:  gateway token --tenant dev --device DEVICE_ID --secret-file {secret_file}");
    println!(
        "  try a modest load:  agent-sim run --gateway {addr} --tenant dev --secret \"$(cat {secret_file})\" --agents 10 --duration 20 --rate 1 --records 20 --verify-sqlite {dir}"
    );
    println!("  stored items:  sqlite3 {dir}/dev.sqlite3 'select device, rk, item from items limit 10'");
    println!("Ctrl-C drains and stops.");
}

/// `server.admin_listen` of the configuration `file`, read alone (the
/// default when the file has none).
fn admin_listen_of(file: &Path) -> anyhow::Result<Option<std::net::SocketAddr>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let table: toml::Table = toml::from_str(&text).with_context(|| format!("{}: not TOML", file.display()))?;
    match table.get("server").and_then(|s| s.get("admin_listen")) {
        None => Ok(awp_gateway::config::ServerConfig::default().admin_listen),
        Some(value) => {
            let addr = value.as_str().and_then(|a| a.parse().ok());
            addr.map(Some)
                .with_context(|| format!("{}: server.admin_listen: not an address", file.display()))
        }
    }
}

/// `gateway probe`: every failure exits 1, never 2 (Docker reserves 2 in
/// a HEALTHCHECK), with one line saying what did not answer.
fn probe(admin_listen: Option<std::net::SocketAddr>, config: Option<&Path>, path: &str, timeout_ms: u64) -> ExitCode {
    let listen = match (admin_listen, config) {
        (Some(addr), _) => Some(addr),
        // Only the address is read: a file edited for the next reload (or
        // a token file rotated) must not make a running node look dead.
        (None, Some(file)) => match admin_listen_of(file) {
            Ok(addr) => addr,
            Err(e) => {
                eprintln!("gateway probe: {e:#}");
                return ExitCode::from(1);
            }
        },
        (None, None) => awp_gateway::config::ServerConfig::default().admin_listen,
    };
    let Some(listen) = listen else {
        eprintln!("gateway probe: the configuration has no server.admin_listen to ask");
        return ExitCode::from(1);
    };
    let addr = awp_gateway::cmd::probe::target(listen);
    match awp_gateway::cmd::probe::probe(addr, path, std::time::Duration::from_millis(timeout_ms.max(1))) {
        Ok(answer) => {
            println!("{answer}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gateway probe: {e}");
            ExitCode::from(1)
        }
    }
}

fn inspect_file(file: &Path) -> anyhow::Result<ExitCode> {
    let raw = if file == Path::new("-") {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
        buf
    } else {
        std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    let capture = inspect::capture_or_hexdump(&raw).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let lines = inspect::inspect(&capture, &awp_protocol::Limits::DEFAULT);
    let mut failed = false;
    let mut out = std::io::stdout().lock();
    for line in &lines {
        failed |= line.get("error").is_some();
        // Not println!, which panics on a closed pipe (`inspect | head`).
        std::io::Write::write_all(&mut out, format!("{line}\n").as_bytes())?;
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn init_logging(format: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // A log line that cannot be written (a log pipe that broke: a shipper
    // or journald restarting) is lost, and nothing else: the subscriber's
    // own report of it would go to the same stderr with eprintln!, which
    // panics, and the panic would end the session that logged.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour_logs(
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
            std::env::var_os("NO_COLOR"),
        ))
        .log_internal_errors(false);
    match format {
        "json" => builder.json().init(),
        "text" => builder.init(),
        other => anyhow::bail!("--log-format: unknown format {other:?}: use text or json"),
    }
    Ok(())
}

/// Whether text logs carry ANSI colour: only on a terminal, and never with
/// `NO_COLOR` set to anything but the empty string (no-color.org). A log
/// written to a file or a pipe (`gateway > gw.log`, journald, a shipper)
/// stays plain text a machine can read.
fn colour_logs(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// The signals the gateway answers, their handlers installed.
struct Signals {
    term: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers (from now on these signals no longer kill).
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for SIGTERM or Ctrl-C, reloading the configuration on each
    /// SIGHUP meanwhile (a refused reload is logged; the gateway goes on).
    async fn wait(mut self, running: &RunningServer) -> anyhow::Result<()> {
        loop {
            tokio::select! {
                _ = self.interrupt.recv() => return Ok(()),
                _ = self.term.recv() => return Ok(()),
                _ = self.hangup.recv() => {
                    // systemd shows the unit reloading until READY=1.
                    let mut reloading = vec![sd_notify::NotifyState::Reloading];
                    reloading.extend(sd_notify::NotifyState::monotonic_usec_now());
                    let _ = sd_notify::notify(&reloading);
                    // The outcome is logged and counted by the reload itself.
                    let _ = running.reload().await;
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
                }
            }
        }
    }
}
