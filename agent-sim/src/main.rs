//! The `agent-sim` binary: flags, scenario file, report files, exit code.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use awp_agent_sim::scenario::{EXAMPLE, Scenario, TlsScenario};
use awp_agent_sim::verify::{DynamoTable, Store, verify};
use awp_agent_sim::{report, run};
use clap::{Parser, Subcommand};

/// Simulates many AWP/1 agents against a gateway (loopback only), reports
/// throughput and latency, and checks that every acked record was stored.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a load test.
    Run(Box<RunArgs>),
    /// Print a commented example scenario file.
    ExampleScenario,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Scenario file (TOML); the flags below override it.
    #[arg(long, short)]
    scenario: Option<PathBuf>,
    /// Gateway address(es), loopback only.
    #[arg(long, value_delimiter = ',')]
    gateway: Vec<SocketAddr>,
    /// Tenant id.
    #[arg(long)]
    tenant: Option<String>,
    /// Tenant secret.
    #[arg(long, env = "AWP_SECRET")]
    secret: Option<String>,
    /// Number of agents.
    #[arg(long)]
    agents: Option<usize>,
    /// Seconds of sending.
    #[arg(long)]
    duration: Option<f64>,
    /// Agents connected per second (0: all at once).
    #[arg(long)]
    ramp: Option<f64>,
    /// Records per batch.
    #[arg(long)]
    records: Option<usize>,
    /// Open loop: batches per second per agent (0: closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Unacked batches per agent.
    #[arg(long)]
    window: Option<usize>,
    /// none, lz4 or zstd.
    #[arg(long)]
    compression: Option<String>,
    /// Per agent and second, the chance of dropping and reconnecting.
    #[arg(long)]
    churn: Option<f64>,
    /// Spread connections over 127.0.0.1..127.0.0.N.
    #[arg(long)]
    sources: Option<usize>,
    /// Device ids are PREFIX0, PREFIX1, ...: distinct prefixes keep
    /// simultaneous simulators' devices apart (a device has one session).
    #[arg(long)]
    device_prefix: Option<String>,
    /// Use TLS, trusting this CA.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// Name to verify the gateway's certificate against.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// Where to write report.txt, report.json and report.html.
    #[arg(long, default_value = "agent-sim-report")]
    out: PathBuf,
    /// After the run, check every acked record in this SQLite data directory.
    #[arg(long)]
    verify_sqlite: Option<PathBuf>,
    /// After the run, check every acked record in this DynamoDB table.
    #[arg(long)]
    verify_dynamodb: Option<String>,
    /// DynamoDB endpoint for --verify-dynamodb (dynalite).
    #[arg(long)]
    dynamodb_endpoint: Option<String>,
    /// DynamoDB region for --verify-dynamodb.
    #[arg(long, default_value = "us-east-1")]
    dynamodb_region: String,
    /// No live progress bar.
    #[arg(long)]
    quiet: bool,
}

fn scenario(a: &RunArgs) -> anyhow::Result<Scenario> {
    let mut s = match &a.scenario {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            Scenario::parse(&text)?
        }
        None => Scenario::default(),
    };
    if !a.gateway.is_empty() {
        s.gateway = a.gateway.clone();
    }
    macro_rules! set {
        ($($field:ident = $arg:expr),*) => { $(if let Some(v) = $arg.clone() { s.$field = v; })* };
    }
    set!(
        tenant = a.tenant,
        secret = a.secret,
        agents = a.agents,
        duration_s = a.duration,
        ramp_per_s = a.ramp,
        records_per_batch = a.records,
        batches_per_s = a.rate,
        window = a.window,
        compression = a.compression,
        churn_per_s = a.churn,
        source_addresses = a.sources,
        device_prefix = a.device_prefix
    );
    if let Some(ca) = &a.tls_ca {
        s.tls = Some(TlsScenario {
            ca: ca.clone(),
            server_name: a.server_name.clone(),
            client_cert: None,
            client_key: None,
        });
    }
    s.validate()?;
    Ok(s)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::ExampleScenario => {
            print!("{EXAMPLE}");
            ExitCode::SUCCESS
        }
        Command::Run(args) => match run_command(&args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("agent-sim: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}

fn run_command(a: &RunArgs) -> anyhow::Result<ExitCode> {
    let s = scenario(a)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let (mut report, results) = run::run(s.clone(), !a.quiet).await?;
        let store = match (&a.verify_sqlite, &a.verify_dynamodb) {
            (Some(dir), _) => Some(Store::Sqlite(dir.clone())),
            (None, Some(table)) => Some(Store::Dynamodb(DynamoTable {
                table: table.clone(),
                region: a.dynamodb_region.clone(),
                endpoint: a.dynamodb_endpoint.clone(),
            })),
            (None, None) => None,
        };
        if let Some(store) = store {
            let templates = run::templates(&s)?;
            report.verify = Some(verify(&store, &s.tenant, &results, &templates).await?);
        }
        report::write_all(&report, &a.out)?;
        print!("{}", report.to_text());
        println!("report: {}/report.html (and .json, .txt)", a.out.display());
        let failed = report.verify.as_ref().is_some_and(|v| !v.ok);
        Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
    })
}
