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
    /// Scenario file (TOML, see `agent-sim example-scenario`); the flags
    /// below override it. Defaults are the scenario's.
    #[arg(long, short)]
    scenario: Option<PathBuf>,
    /// Gateway address(es), loopback only [default: 127.0.0.1:7700].
    #[arg(long, value_delimiter = ',')]
    gateway: Vec<SocketAddr>,
    /// Tenant id [default: dev].
    #[arg(long)]
    tenant: Option<String>,
    /// Tenant secret (device tokens are made from it; not needed with
    /// --client-cert).
    #[arg(long, env = "AWP_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Number of agents, one connection and device each [default: 100].
    #[arg(long)]
    agents: Option<usize>,
    /// Seconds of sending, after the ramp [default: 10].
    #[arg(long)]
    duration: Option<f64>,
    /// Agents connected per second (0: all at once) [default: 0].
    #[arg(long)]
    ramp: Option<f64>,
    /// Records per batch [default: 100].
    #[arg(long)]
    records: Option<usize>,
    /// Open loop: batches per second per agent (0: closed loop, as fast as
    /// the window allows) [default: 0].
    #[arg(long)]
    rate: Option<f64>,
    /// Unacked batches per agent (also capped by WELCOME) [default: 4].
    #[arg(long)]
    window: Option<usize>,
    /// none, lz4 or zstd [default: none].
    #[arg(long)]
    compression: Option<String>,
    /// Per agent and second, the chance of dropping and reconnecting [default: 0].
    #[arg(long)]
    churn: Option<f64>,
    /// Spread connections over 127.0.0.1..127.0.0.N [default: 1].
    #[arg(long)]
    sources: Option<usize>,
    /// Device ids are {PREFIX}{RUN_ID}-0, -1, ... [default: sim-].
    #[arg(long)]
    device_prefix: Option<String>,
    /// The run's id, part of every device id [default: 6 random hex digits].
    /// With --first-seq, replays an earlier run (the same batches again).
    #[arg(long)]
    run_id: Option<String>,
    /// Every agent's first batch seq [default: the run's start in unix µs].
    #[arg(long)]
    first_seq: Option<u64>,
    /// Use TLS, trusting this CA (PEM).
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// Name to verify the gateway's certificate against [default: localhost].
    #[arg(long)]
    server_name: Option<String>,
    /// Authenticate with this client certificate (PEM; needs --tls-ca and
    /// --client-key): one agent, whose device id is the certificate's
    /// common name.
    #[arg(long, requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, requires = "client_cert")]
    client_key: Option<PathBuf>,
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
        device_prefix = a.device_prefix,
        run_id = a.run_id,
        first_seq = a.first_seq
    );
    // The TLS flags change what they name of the scenario's [tls], if any.
    if let Some(ca) = &a.tls_ca {
        let tls = s.tls.get_or_insert_with(|| TlsScenario {
            ca: ca.clone(),
            server_name: "localhost".into(),
            client_cert: None,
            client_key: None,
        });
        tls.ca = ca.clone();
    }
    if s.tls.is_none() && (a.client_cert.is_some() || a.server_name.is_some()) {
        anyhow::bail!("--client-cert, --server-name: TLS needs --tls-ca (or [tls] in the scenario)");
    }
    if let Some(tls) = &mut s.tls {
        if let Some(name) = &a.server_name {
            tls.server_name = name.clone();
        }
        if let (Some(cert), Some(key)) = (&a.client_cert, &a.client_key) {
            (tls.client_cert, tls.client_key) = (Some(cert.clone()), Some(key.clone()));
            if a.agents.is_none() {
                // One certificate is one device.
                s.agents = 1;
            }
        }
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

/// Exit status of a run that failed: nothing acked, agents stopped,
/// batches unacked at the end, or verify failed (2: it could not run).
const RUN_FAILED: u8 = 1;

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
            // A store that cannot be read fails the run, and the report of
            // what the run did is still written.
            match verify(&store, &s.tenant, &results, &templates, report.mark()).await {
                Ok(v) => report.verify = Some(v),
                Err(e) => report.verify_error = Some(format!("{e:#}")),
            }
            report.judge();
        }
        report::write_all(&report, &a.out)?;
        print!("{}", report.to_text());
        println!("report: {}/report.html (and .json, .txt)", a.out.display());
        if report.problems.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
        for problem in &report.problems {
            eprintln!("agent-sim: run failed: {problem}");
        }
        Ok(ExitCode::from(RUN_FAILED))
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// `--help` states the defaults the scenario gives (flags left out
    /// keep the scenario's values, so clap cannot show them itself).
    #[test]
    fn help_shows_the_scenario_defaults() {
        let mut cli = Cli::command();
        let help = cli
            .find_subcommand_mut("run")
            .expect("run subcommand")
            .render_long_help()
            .to_string();
        let d = Scenario::default();
        let gateway = d.gateway[0].to_string();
        let wanted = [
            ("gateway", gateway),
            ("tenant", d.tenant.clone()),
            ("agents", d.agents.to_string()),
            ("duration", d.duration_s.to_string()),
            ("ramp", d.ramp_per_s.to_string()),
            ("records", d.records_per_batch.to_string()),
            ("rate", d.batches_per_s.to_string()),
            ("window", d.window.to_string()),
            ("compression", d.compression.clone()),
            ("churn", d.churn_per_s.to_string()),
            ("sources", d.source_addresses.to_string()),
            ("device-prefix", d.device_prefix.clone()),
        ];
        for (flag, value) in wanted {
            let at = help
                .find(&format!("--{flag} <"))
                .unwrap_or_else(|| panic!("--{flag} in\n{help}"));
            let next = help[at + 2..].find("\n  -").map_or(help.len(), |n| at + 2 + n);
            let text = &help[at..next];
            assert!(
                text.contains(&format!("[default: {value}]")),
                "--{flag} should say [default: {value}]:\n{text}"
            );
        }
    }

    #[test]
    fn a_client_certificate_makes_one_agent_of_its_device() {
        let cli = Cli::try_parse_from([
            "agent-sim",
            "run",
            "--tls-ca",
            "ca.pem",
            "--client-cert",
            "d.pem",
            "--client-key",
            "d.key",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else { panic!() };
        let s = scenario(&args).unwrap();
        let tls = s.tls.unwrap();
        assert_eq!(
            (s.agents, tls.client_cert.unwrap(), tls.client_key.unwrap()),
            (1, "d.pem".into(), "d.key".into())
        );
        assert!(Cli::try_parse_from(["agent-sim", "run", "--client-cert", "d.pem"]).is_err());
    }
}
