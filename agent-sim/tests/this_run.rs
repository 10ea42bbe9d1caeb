//! A run proves itself and says when it failed: verify finds this run's
//! records, not an earlier run's (another store, a client certificate's
//! device that every run shares, rows stored before the run started), and
//! `agent-sim` exits non-zero, saying why, when nothing was acked, every
//! agent was refused, or batches were left unacknowledged. `gateway
//! dev-certs` prints agent-sim commands that run as printed.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use awp_agent_sim::agent::AgentResult;
use awp_agent_sim::run;
use awp_agent_sim::scenario::{Scenario, TlsScenario};
use awp_agent_sim::verify::{Store, verify};
use awp_gateway::config::Config;

const SECRET: &str = "this-run-tenant-secret";

/// A gateway storing tenant `sim` in SQLite under `dir`, and `tenant_extra`
/// (TOML) added to its tenant.
async fn gateway(dir: &Path, server_extra: &str, tenant_extra: &str) -> awp_gateway::RunningServer {
    let config = Config::parse(&format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin_listen = \"127.0.0.1:0\"\nmax_inflight = 4\n{server_extra}\n\
         [sink]\ndata_dir = \"{}\"\n[[tenants]]\nid = \"sim\"\nsecrets = [\"{SECRET}\"]\n{tenant_extra}",
        dir.display()
    ))
    .unwrap();
    awp_gateway::start(&config).await.unwrap()
}

fn scenario(addr: std::net::SocketAddr) -> Scenario {
    Scenario {
        gateway: vec![addr],
        tenant: "sim".into(),
        secret: SECRET.into(),
        agents: 4,
        duration_s: 1.0,
        records_per_batch: 10,
        templates: 2,
        ..Scenario::default()
    }
}

fn acked_records(results: &[AgentResult]) -> u64 {
    results.iter().map(|r| r.acked.len() as u64 * 10).sum()
}

/// Two runs, each on its own gateway and store: the second, verified
/// against the first's store, finds none of its records (its devices are
/// its own), where before run ids it found the first run's and passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_against_another_runs_store_fails() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server_a = gateway(a.path(), "", "").await;
    let (first, _) = run::run(scenario(server_a.plain_addrs[0]), false).await.unwrap();
    assert!(server_a.shutdown().await);
    let server_b = gateway(b.path(), "", "").await;
    let s = scenario(server_b.plain_addrs[0]);
    let (second, results) = run::run(s.clone(), false).await.unwrap();
    assert!(server_b.shutdown().await);
    assert_ne!(first.run_id, second.run_id);
    assert!(
        results
            .iter()
            .all(|r| r.plan.device.starts_with(&format!("sim-{}-", second.run_id)))
    );
    let templates = run::templates(&s).unwrap();
    let v = verify(
        &Store::Sqlite(a.path().into()),
        "sim",
        &results,
        &templates,
        second.mark(),
    )
    .await
    .unwrap();
    assert!(!v.ok);
    assert_eq!((v.found_records, v.expected_records), (0, acked_records(&results)));
    assert!(v.extra.is_empty() && v.other_runs_records == 0, "{v:?}");
    let v = verify(
        &Store::Sqlite(b.path().into()),
        "sim",
        &results,
        &templates,
        second.mark(),
    )
    .await
    .unwrap();
    assert!(v.ok && v.seconds > 0.0, "{v:?}");
}

/// One device (a client certificate's) in every run: its runs' batches
/// have their own seqs, so a run verified against a store holding only an
/// earlier run's rows fails, and those rows are reported as other runs',
/// not as this run's extra.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_device_shared_by_runs_is_told_apart_by_its_seqs() {
    let pki = tempfile::tempdir().unwrap();
    awp_gateway::cmd::dev_certs::write(pki.path(), &["localhost".into()], &["sim/phone-1".into()]).unwrap();
    let p = |f: &str| pki.path().join(f).display().to_string();
    let tls_server = format!(
        "tls_listen = [\"127.0.0.1:0\"]\n[tls]\ncert = \"{}\"\nkey = \"{}\"",
        p("server.pem"),
        p("server.key")
    );
    let client_ca = format!("client_ca = \"{}\"\n", p("sim-ca.pem"));
    let mtls = |addr| Scenario {
        agents: 1,
        secret: String::new(),
        tls: Some(TlsScenario {
            ca: pki.path().join("ca.pem"),
            server_name: "localhost".into(),
            client_cert: Some(pki.path().join("sim-phone-1.pem")),
            client_key: Some(pki.path().join("sim-phone-1.key")),
        }),
        ..scenario(addr)
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server_a = gateway(a.path(), &tls_server, &client_ca).await;
    let (first, first_results) = run::run(mtls(server_a.tls_addrs[0]), false).await.unwrap();
    assert_eq!(first_results[0].plan.device, "phone-1", "the certificate's common name");
    assert_eq!(first.settings.devices, "phone-1");
    assert!(first.problems.is_empty(), "{:?}", first.problems);
    let server_b = gateway(b.path(), &tls_server, &client_ca).await;
    let s = mtls(server_b.tls_addrs[0]);
    let (second, results) = run::run(s.clone(), false).await.unwrap();
    assert!(server_b.shutdown().await);
    assert!(second.first_seq > first.first_seq);
    let templates = run::templates(&s).unwrap();
    let store_a = Store::Sqlite(a.path().into());
    let v = verify(&store_a, "sim", &results, &templates, second.mark())
        .await
        .unwrap();
    assert!(!v.ok);
    assert_eq!(v.found_records, 0);
    assert_eq!(v.other_runs_records, acked_records(&first_results), "{v:?}");
    assert!(v.extra.is_empty(), "the first run's rows are not this run's extra");
    // A third run on the first store: proven, the first run's rows set apart.
    let s = mtls(server_a.tls_addrs[0]);
    let (third, results) = run::run(s.clone(), false).await.unwrap();
    assert!(server_a.shutdown().await);
    let v = verify(&store_a, "sim", &results, &templates, third.mark())
        .await
        .unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!(v.other_runs_records, acked_records(&first_results));
}

/// A replay (the same run id and first seq: the same devices and batches)
/// on another gateway acks batches an earlier run stored: verified against
/// the earlier store they are there, but received before the replay
/// started: stale, a failure. Replayed into the earlier store itself, the
/// rows are written again, fresh, and verify passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_stored_before_the_run_started_are_not_proof_of_it() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Open loop: about the same batches each run.
    let replay = |addr| Scenario {
        run_id: "again".into(),
        first_seq: 100,
        batches_per_s: 10.0,
        ..scenario(addr)
    };
    let server_a = gateway(a.path(), "", "").await;
    let (_, first) = run::run(replay(server_a.plain_addrs[0]), false).await.unwrap();
    // Past the second of clock slack verify allows.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let server_b = gateway(b.path(), "", "").await;
    let s = replay(server_b.plain_addrs[0]);
    let (second, mut results) = run::run(s.clone(), false).await.unwrap();
    assert!(server_b.shutdown().await);
    // The batches both runs acked (results come in agent order).
    for (r, earlier) in results.iter_mut().zip(&first) {
        assert_eq!(r.plan.device, earlier.plan.device);
        r.acked.retain(|b| earlier.acked.contains(b));
    }
    let expected = acked_records(&results);
    assert!(expected > 0);
    let (templates, store_a) = (run::templates(&s).unwrap(), Store::Sqlite(a.path().into()));
    let v = verify(&store_a, "sim", &results, &templates, second.mark())
        .await
        .unwrap();
    assert!(!v.ok);
    let stale: u64 = v.stale.iter().map(|d| d.records).sum();
    assert_eq!((v.found_records, stale), (expected, expected), "{v:?}");
    assert!(v.stale[0].detail.contains("before this run started"));
    // The replay into the first store: its rows written again.
    let (third, results) = run::run(replay(server_a.plain_addrs[0]), false).await.unwrap();
    assert!(server_a.shutdown().await);
    let v = verify(&store_a, "sim", &results, &templates, third.mark())
        .await
        .unwrap();
    assert!(v.ok && v.stale.is_empty(), "{v:?}");
}

fn agent_sim(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agent-sim"))
        .args(args)
        .current_dir(dir)
        .env_remove("AWP_SECRET")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap()
}

/// `agent-sim run` in a blocking task (the gateway runs on this runtime).
async fn agent_sim_run(args: Vec<String>, dir: &Path) -> Output {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        agent_sim(&args, &dir)
    })
    .await
    .unwrap()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// Nothing listening, a wrong secret, a store down so that every batch
/// gets RETRY: each run exits 1 and says why on stderr and in the report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_failed_exits_non_zero_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let common = ["--agents", "2", "--duration", "1", "--quiet"];
    let mut args = strings(&["run", "--gateway", &closed, "--secret", SECRET]);
    args.extend(strings(&common));
    let out = agent_sim_run(args, dir.path()).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("run failed: nothing was acked"), "{stderr}");
    assert!(stderr.contains("connect_failed"), "the errors say why: {stderr}");
    assert!(stderr.contains("no agent ever got a WELCOME"), "{stderr}");

    let server = gateway(dir.path(), "", "").await;
    let addr = server.plain_addrs[0].to_string();
    let mut args = strings(&[
        "run",
        "--gateway",
        &addr,
        "--tenant",
        "sim",
        "--secret",
        "not-the-secret-at-all",
    ]);
    args.extend(strings(&common));
    let out = agent_sim_run(args, dir.path()).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("every agent stopped at an error retrying cannot fix: AUTH_FAILED 2"),
        "{stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("agent-sim-report/report.json")).unwrap())
            .unwrap();
    assert_eq!(report["agents_stopped"]["AUTH_FAILED"], 2);
    assert!(!report["problems"].as_array().unwrap().is_empty());
    assert!(server.shutdown().await);

    // DynamoDB down: every batch RETRY, never acked; given up after the grace.
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = Config::parse(&format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin_listen = \"127.0.0.1:0\"\n[sink]\nkind = \"dynamodb\"\n\
         [pipeline]\nwrite_timeout_ms = 500\n[[tenants]]\nid = \"sim\"\nsecrets = [\"{SECRET}\"]\n\
         [tenants.dynamodb]\ntable = \"awp-sim\"\nregion = \"us-east-1\"\nendpoint = \"http://{down}\"\n\
         access_key_id = \"local\"\nsecret_access_key = \"local\"\n"
    ))
    .unwrap();
    config.sink.data_dir = dir.path().into();
    let server = awp_gateway::start(&config).await.unwrap();
    let scenario_file = dir.path().join("short-grace.toml");
    std::fs::write(&scenario_file, "drain_grace_s = 1\n").unwrap();
    let addr = server.plain_addrs[0].to_string();
    let file = scenario_file.display().to_string();
    let mut args = strings(&[
        "run",
        "-s",
        &file,
        "--gateway",
        &addr,
        "--tenant",
        "sim",
        "--secret",
        SECRET,
    ]);
    args.extend(strings(&common));
    let out = agent_sim_run(args, dir.path()).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("nothing was acked"), "{stderr}");
    assert!(stderr.contains("batches still unacknowledged at the end"), "{stderr}");
    server.shutdown().await;
}

/// A run that went well exits 0; its report names the run, its settings,
/// its latency each second, and how long verify took.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_run_exits_zero_with_a_report_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = gateway(&data, "", "").await;
    let addr = server.plain_addrs[0].to_string();
    let data_arg = data.display().to_string();
    let args = strings(&[
        "run",
        "--gateway",
        &addr,
        "--tenant",
        "sim",
        "--secret",
        SECRET,
        "--agents",
        "3",
        "--duration",
        "2",
        "--rate",
        "5",
        "--records",
        "20",
        "--quiet",
        "--verify-sqlite",
        &data_arg,
    ]);
    let out = agent_sim_run(args, dir.path()).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("run: OK") && stdout.contains("verify: OK"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("agent-sim-report/report.json")).unwrap())
            .unwrap();
    let run_id = report["run_id"].as_str().unwrap();
    assert_eq!(run_id.len(), 6);
    assert!(report["started_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(report["settings"]["records_per_batch"], 20);
    assert_eq!(report["settings"]["batches_per_s"], 5.0);
    assert!(report["settings"].get("secret").is_none());
    assert_eq!(
        report["settings"]["devices"],
        format!("sim-{run_id}-0 … sim-{run_id}-2")
    );
    assert!(report["batches_offered"].as_u64().unwrap() >= 3 * 9);
    assert_eq!(report["batches_unacked_at_end"], 0);
    let timeline = report["timeline"].as_array().unwrap();
    assert!(
        timeline
            .iter()
            .any(|p| p["ack_p99_ms"].as_f64().is_some_and(|v| v > 0.0))
    );
    assert!(report["verify"]["seconds"].as_f64().unwrap() > 0.0);
    assert!(report["problems"].as_array().unwrap().is_empty());
    let html = std::fs::read_to_string(dir.path().join("agent-sim-report/report.html")).unwrap();
    assert!(html.contains(&format!("<title>agent-sim run {run_id}</title>")) && html.contains("ACK latency over time"));
    // A store verify cannot read: the run fails, its report is written.
    std::fs::remove_dir_all(dir.path().join("agent-sim-report")).unwrap();
    let nowhere = dir.path().join("no-such-store").display().to_string();
    let args = strings(&[
        "run",
        "--gateway",
        &addr,
        "--tenant",
        "sim",
        "--secret",
        SECRET,
        "--agents",
        "1",
        "--duration",
        "1",
        "--quiet",
        "--verify-sqlite",
        &nowhere,
    ]);
    let out = agent_sim_run(args, dir.path()).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("verify could not read the store"), "{stderr}");
    let report = std::fs::read_to_string(dir.path().join("agent-sim-report/report.json")).unwrap();
    assert!(report.contains("\"verify_error\": \"cannot open"), "{report}");
    assert!(server.shutdown().await);
}

/// `gateway dev-certs` run twice on one folder (the second time to add a
/// device): the gateway configured as printed takes both devices, and the
/// agent-sim commands printed run as printed and exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_certs_print_agent_sim_commands_that_work_as_printed() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let names = ["localhost".to_owned(), "127.0.0.1".to_owned()];
    let first = awp_gateway::cmd::dev_certs::write(&pki, &names, &["sim/phone-1".into()]).unwrap();
    assert!(first.kept.is_empty());
    let ca = std::fs::read(pki.join("sim-ca.pem")).unwrap();
    let devices = ["sim/phone-2".to_owned()];
    let second = awp_gateway::cmd::dev_certs::write(&pki, &names, &devices).unwrap();
    assert_eq!(second.kept.len(), 3, "CA, server certificate and the tenant's CA kept");
    assert_eq!(std::fs::read(pki.join("sim-ca.pem")).unwrap(), ca);
    // What `gateway dev-certs` prints each time: the folder's first use,
    // then the device added.
    let first_usage = awp_gateway::cmd::dev_certs::usage(&pki, &["sim/phone-1".into()], &first, "127.0.0.1:7701");
    let usage = awp_gateway::cmd::dev_certs::usage(&pki, &devices, &second, "127.0.0.1:7701");
    assert!(
        usage.contains("Devices added") && usage.contains("--server-name localhost"),
        "{usage}"
    );

    // The configuration printed, on ports of its own and SQLite beside it.
    let toml: String = first_usage
        .lines()
        .skip_while(|l| !l.ends_with("gateway.toml:"))
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .map(|l| format!("{}\n", l.trim_start()))
        .collect();
    let toml = toml.replace("127.0.0.1:7701", "127.0.0.1:0").replace(
        "[server]\n",
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin_listen = \"127.0.0.1:0\"\n",
    );
    let mut config = Config::parse(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    config.sink.data_dir = dir.path().join("data");
    let server = awp_gateway::start(&config).await.unwrap();
    let port = server.tls_addrs[0].to_string();
    let commands: Vec<Vec<String>> = [first_usage.as_str(), usage.as_str()]
        .iter()
        .flat_map(|u| u.lines())
        .filter_map(|l| l.trim_start().strip_prefix("agent-sim "))
        .map(|c| {
            c.replace("127.0.0.1:7701", &port)
                .split_whitespace()
                .map(String::from)
                .collect()
        })
        .collect();
    assert_eq!(commands.len(), 2, "{usage}");
    let runs = commands.into_iter().enumerate().map(|(i, args)| {
        let out = dir.path().join(format!("run-{i}"));
        std::fs::create_dir_all(&out).unwrap();
        tokio::spawn(async move { (agent_sim_run(args, &out).await, out) })
    });
    for run in runs.collect::<Vec<_>>() {
        let (out, folder) = run.await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report = std::fs::read_to_string(folder.join("agent-sim-report/report.json")).unwrap();
        assert!(report.contains("\"tls\": \"mutual (client certificate)\""), "{report}");
    }
    assert!(server.shutdown().await);
}
