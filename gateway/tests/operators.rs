//! The gateway as an operator meets it, through the `gateway` binary:
//! probes that do not pull every node for one tenant's store, failures that
//! say why, `check-config` checking what start-up checks, metrics a
//! Prometheus parser takes, and commands that behave in a pipe.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use awp_protocol::{ErrorCode, Frame, MAGIC};
use support::binary::Gateway;

const SECRET: &str = "operator-secret-0123456789abcdefghijkl";

fn gateway() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gateway"));
    c.env("AWS_EC2_METADATA_DISABLED", "true");
    c
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let file = dir.join("gateway.toml");
    std::fs::write(&file, text).unwrap();
    file
}

/// Loopback listeners, SQLite under `dir/data`, and `rest`.
fn config(dir: &Path, server: &str, rest: &str) -> PathBuf {
    write(
        dir,
        &format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin_listen = \"127.0.0.1:0\"\n{server}\n[sink]\ndata_dir = \"{}\"\n{rest}",
            dir.join("data").display()
        ),
    )
}

fn tenant(id: &str) -> String {
    format!("[[tenants]]\nid = \"{id}\"\nsecrets = [\"{SECRET}\"]\n")
}

fn hello(tenant: &str, device: &str, secret: &str, expiry: u64) -> Vec<u8> {
    let hello = Frame::Hello(awp_protocol::Hello {
        min_version: 1,
        max_version: 1,
        tenant_id: tenant.into(),
        device_id: device.into(),
        platform: awp_protocol::Platform::Linux,
        agent_version: "1".into(),
        compression: awp_protocol::CompressionSet::ALL,
        auth: awp_protocol::HelloAuth::Token {
            expiry,
            token: awp_protocol::token::device_token(secret.as_bytes(), tenant, device, expiry),
        },
    });
    [MAGIC.to_vec(), hello.to_bytes().unwrap().to_vec()].concat()
}

/// One tenant's DynamoDB table down, another's fine: the node stays ready
/// (every node shares the table, so a balancer pulling nodes for it would
/// pull them all), and the tenant report names the one whose records are
/// not being stored.
#[tokio::test]
async fn a_tenant_whose_store_is_down_does_not_make_the_node_unready() {
    let db = awp_testkit::dynalite::Dynalite::start();
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: the first tenant's DynamoDB is down.
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let table = |id: &str, endpoint: &str| {
        format!(
            "[tenants.dynamodb]\ntable = \"awp-{id}\"\nregion = \"us-east-1\"\nendpoint = \"{endpoint}\"\n\
             access_key_id = \"local\"\nsecret_access_key = \"local\"\n"
        )
    };
    let file = config(
        dir.path(),
        "",
        &format!(
            "[pipeline]\nwrite_timeout_ms = 1000\nunhealthy_after_ms = 100\n{}{}{}{}",
            tenant("broken"),
            table("broken", &format!("http://{down}")),
            tenant("fine"),
            table("fine", &db.endpoint)
        ),
    );
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("[sink]\n", "[sink]\nkind = \"dynamodb\"\n");
    std::fs::write(&file, text).unwrap();
    let out = gateway()
        .arg("--config")
        .arg(&file)
        .args(["tables", "--tenant", "fine", "create"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let gateway = Gateway::start(&file, &[]).await;
    // Before any batch: the writer's health check of the store it opened
    // fails, and the tenant is named degraded from start-up on.
    let before_any_batch = async {
        loop {
            let report = gateway.get("/health/tenants").await;
            if report.contains("\"degraded\":[\"broken\"]") {
                return report;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let report = tokio::time::timeout(Duration::from_secs(10), before_any_batch)
        .await
        .expect("a store that fails its health check is reported before any batch");
    assert!(report.contains("its store has failed"), "{report}");
    let mut agent = gateway.connect().await;
    agent.send(&hello("broken", "phone-1", SECRET, 0)).await;
    assert!(matches!(agent.next().await, Some(Frame::Welcome(_))));
    // Batches fail, and the tenant stays degraded.
    let report = async {
        let mut seq = 0;
        loop {
            seq += 1;
            agent.send(&location_batch(seq)).await;
            let _ = agent.next().await;
            let report = gateway.get("/health/tenants").await;
            if report.contains("\"degraded\":[\"broken\"]") {
                return report;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let report = tokio::time::timeout(Duration::from_secs(30), report)
        .await
        .expect("broken is reported");
    assert!(
        report.contains("\"tenant\":\"fine\",\"ok\":true") || report.contains("\"ok\":true"),
        "{report}"
    );
    let ready = gateway.get("/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(ready.contains("degraded: tenant broken"), "{ready}");
    let metrics = gateway.get("/metrics").await;
    assert!(
        metrics.contains("awp_tenant_degraded{tenant=\"broken\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("awp_tenant_degraded{tenant=\"fine\"} 0"), "{metrics}");
    drop(agent);
    gateway.stop().await;
}

/// A BATCH of one location, with `seq`.
fn location_batch(seq: u64) -> Vec<u8> {
    let batch = awp_protocol::Batch {
        seq,
        base_time_ms: 1_764_000_000_000,
        records: vec![awp_protocol::Record {
            time_offset_ms: 0,
            body: awp_protocol::RecordBody::Location(awp_protocol::Location {
                lat_e7: 1,
                lon_e7: 2,
                accuracy_m: 3,
            }),
        }],
    };
    let mut out = bytes::BytesMut::new();
    batch
        .encode(
            awp_protocol::Compression::None,
            &awp_protocol::Limits::DEFAULT,
            &mut out,
        )
        .unwrap();
    out.to_vec()
}

/// `promtool` (Prometheus' own checker), installed from Debian's packages
/// when missing.
fn promtool() -> Command {
    let present = Command::new("sh").args(["-c", "command -v promtool"]).output().unwrap();
    if !present.status.success() {
        let installed = Command::new("sh")
            .args([
                "-c",
                "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null",
            ])
            .status()
            .unwrap();
        assert!(
            installed.success(),
            "cannot install promtool (Debian package prometheus)"
        );
    }
    Command::new("promtool")
}

/// `/metrics` passes `promtool check metrics`, lists its families in name
/// order, has its counters from the start (at 0), only the frame types a
/// server sends, the process_* metrics and the build info, and loses a
/// tenant's series when a reload removes it.
#[tokio::test]
async fn metrics_follow_the_prometheus_conventions() {
    let dir = tempfile::tempdir().unwrap();
    let file = config(dir.path(), "", &[tenant("acme"), tenant("gone")].concat());
    let gateway = Gateway::start(&file, &[]).await;
    let mut c = gateway.connect().await;
    c.send(&hello("acme", "phone-1", SECRET, 0)).await;
    assert!(matches!(c.next().await, Some(Frame::Welcome(_))));
    let scrape = gateway.get("/metrics").await;
    let body = scrape.split_once("\r\n\r\n").unwrap().1.to_owned();
    let mut check = promtool()
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(check.stdin.as_mut().unwrap(), body.as_bytes()).unwrap();
    let checked = check.wait_with_output().unwrap();
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let families: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    let mut sorted = families.clone();
    sorted.sort_unstable();
    assert_eq!(families, sorted, "families in name order");
    for series in [
        "awp_auth_failures_total{reason=\"expired_token\",tenant=\"acme\"} 0",
        "awp_batches_refused_total{tenant=\"acme\"} 0",
        "awp_sessions_revoked_total 0",
        "awp_frames_sent_total{type=\"WELCOME\"} 1",
        "process_open_fds ",
        "process_cpu_seconds_total ",
        "awp_build_info{version=\"",
        "awp_ack_latency_seconds_count{tenant=\"acme\"} 0",
    ] {
        assert!(body.contains(series), "{series} in\n{body}");
    }
    assert!(
        !body.contains("awp_frames_sent_total{type=\"HELLO\"}"),
        "a server sends no HELLO"
    );
    let buckets: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("awp_sink_write_items_bucket"))
        .collect();
    assert!(buckets.iter().any(|l| l.contains("le=\"50000\"")), "{buckets:?}");
    // tenant gone removed: its series go.
    assert!(body.contains("tenant=\"gone\""));
    std::fs::write(
        &file,
        std::fs::read_to_string(&file).unwrap().replace(&tenant("gone"), ""),
    )
    .unwrap();
    let (status, answer) = gateway.reload().await;
    assert_eq!(status, 200, "{answer}");
    let after = gateway.get("/metrics").await;
    assert!(!after.contains("tenant=\"gone\""), "{after}");
    drop(c);
    gateway.stop().await;
}

/// Agents all get `AUTH_FAILED`; the operator gets why, in the log (the
/// tenant and device the HELLO claimed) and by reason in the metric.
#[tokio::test]
async fn the_operator_learns_why_authentication_failed() {
    let dir = tempfile::tempdir().unwrap();
    let file = config(dir.path(), "", &tenant("acme"));
    let mut gateway = Gateway::start(&file, &[]).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (hello, reason) in [
        (hello("nobody", "phone-1", SECRET, 0), "unknown_tenant"),
        (
            hello("acme", "phone-1", "not-the-secret-0123456789abcdef", 0),
            "bad_token",
        ),
        (hello("acme", "phone-1", SECRET, now - 60), "expired_token"),
    ] {
        let mut c = gateway.connect().await;
        c.send(&hello).await;
        c.expect_error(ErrorCode::AuthFailed).await;
        let line = gateway.log_line("HELLO did not authenticate").await;
        assert!(line.contains(&format!("\"reason\":\"{reason}\"")), "{line}");
        assert!(line.contains("\"device\":\"phone-1\""), "{line}");
    }
    let metrics = gateway.get("/metrics").await;
    for series in [
        "awp_auth_failures_total{reason=\"unknown_tenant\",tenant=\"\"} 1",
        "awp_auth_failures_total{reason=\"bad_token\",tenant=\"acme\"} 1",
        "awp_auth_failures_total{reason=\"expired_token\",tenant=\"acme\"} 1",
    ] {
        assert!(metrics.contains(series), "{series}");
    }
    gateway.stop().await;
}

/// `check-config` refuses what start-up would: missing TLS files (once, by
/// field), a DynamoDB tenant without a table, a log format that does not
/// exist, an admin endpoint on an agent port; relative paths are the
/// file's folder's.
#[test]
fn check_config_checks_what_start_up_checks() {
    let dir = tempfile::tempdir().unwrap();
    let check = |text: &str, args: &[&str]| {
        let file = write(dir.path(), text);
        let out = gateway()
            .arg("--config")
            .arg(&file)
            .args(args)
            .arg("check-config")
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8(out.stderr).unwrap())
    };
    let t = tenant("acme");
    let (code, err) = check(
        &format!(
            "[server]\ntls_listen = [\"127.0.0.1:7701\"]\n[tls]\ncert = \"missing.pem\"\nkey = \"missing.key\"\n{t}"
        ),
        &[],
    );
    assert_eq!(code, Some(2));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("gateway: tls.cert: cannot read"), "{err}");
    assert_eq!(err.matches("tls.cert").count(), 1, "{err}");
    // Relative to the file's folder, not the working directory.
    assert!(
        err.contains(&dir.path().join("missing.pem").display().to_string()),
        "{err}"
    );
    let (code, err) = check(&format!("[sink]\nkind = \"dynamodb\"\n{t}"), &[]);
    assert_eq!(code, Some(2));
    assert!(
        err.starts_with("gateway: tenants[0].dynamodb: the dynamodb sink needs the tenant's table"),
        "{err}"
    );
    let (code, err) = check(
        &format!("[server]\nlisten = [\"127.0.0.1:7700\"]\nadmin_listen = \"127.0.0.1:7700\"\n{t}"),
        &[],
    );
    assert_eq!(code, Some(2));
    assert!(
        err.contains("server.admin_listen: 127.0.0.1:7700 is already server.listen[0]'s address"),
        "{err}"
    );
    let (code, err) = check(&format!("[server]\nheartbeat_ms = 1\n{t}"), &[]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("server.heartbeat_ms: must be 100 to 3600000 (ms)"),
        "{err}"
    );
    let (code, err) = check(&format!("[tls]\ncert = \"c.pem\"\n{t}"), &[]);
    assert_eq!(code, Some(2));
    assert!(err.starts_with("gateway: tls.key: missing field `key`"), "{err}");
    let (code, err) = check(&t, &["--log-format", "yaml"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("yaml") && err.contains("text") && err.contains("json"),
        "{err}"
    );
}

/// The development default refuses a port another gateway holds, instead of
/// sharing it (two gateways in two folders, two random secrets, agents split
/// between them); a configuration shares one only with `reuse_port`.
#[tokio::test]
async fn a_port_in_use_is_refused_unless_reuse_port_asks_for_sharing() {
    let first_dir = tempfile::tempdir().unwrap();
    let first = Gateway::start(&config(first_dir.path(), "", &tenant("acme")), &[]).await;
    let taken = first.agents.to_string();
    let second_dir = tempfile::tempdir().unwrap();
    let out = gateway()
        .args(["--listen", &taken, "--admin-listen", "127.0.0.1:0", "--data-dir"])
        .arg(second_dir.path())
        .env_remove("GATEWAY_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&format!("cannot listen on {taken}")) && err.contains("reuse_port"),
        "{err}"
    );
    first.stop().await;
    // With reuse_port on both, the second shares it (an upgrade).
    let a = tempfile::tempdir().unwrap();
    let one = Gateway::start(&config(a.path(), "reuse_port = true", &tenant("acme")), &[]).await;
    let b = tempfile::tempdir().unwrap();
    let file = config(b.path(), "reuse_port = true", &tenant("acme"));
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("listen = [\"127.0.0.1:0\"]", &format!("listen = [\"{}\"]", one.agents));
    std::fs::write(&file, text).unwrap();
    let two = Gateway::start(&file, &[]).await;
    assert_eq!(two.agents, one.agents);
    two.stop().await;
    one.stop().await;
}

/// Commands in a pipe: `export | head` ends quietly; `token` refuses a
/// device id the protocol would; `inspect` says a hex dump with offsets is
/// not plain hex.
#[test]
fn commands_behave_in_a_pipe_and_refuse_what_the_protocol_refuses() {
    let dir = tempfile::tempdir().unwrap();
    // A table of 3,000 records, exported into `head -n 1`.
    let file = config(dir.path(), "", &tenant("acme"));
    {
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let db = rusqlite::Connection::open(data.join("acme.sqlite3")).unwrap();
        db.execute_batch(awp_store::sqlite::CREATE_TABLE).unwrap();
        for i in 0..3000 {
            let item = format!(
                "{{\"device\":{{\"S\":\"d\"}},\"rk\":{{\"S\":\"{:013}#00000000000000000001#{:05}\"}},\"kind\":{{\"S\":\"event\"}},\"ts\":{{\"N\":\"{}\"}}}}",
                1_764_000_000_000u64 + i,
                i,
                1_764_000_000_000u64 + i
            );
            db.execute(
                awp_store::sqlite::UPSERT,
                rusqlite::params![
                    "d",
                    format!("{:013}#00000000000000000001#{:05}", 1_764_000_000_000u64 + i, i),
                    item
                ],
            )
            .unwrap();
        }
    }
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' export --tenant acme --config '{}' | head -n 1",
            env!("CARGO_BIN_EXE_gateway"),
            file.display()
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1);
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = gateway()
        .args(["token", "--tenant", "acme", "--device", "bad device!", "--secret-file"])
        .arg(dir.path().join("gateway.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--device"));
    let dump = dir.path().join("capture.xxd");
    std::fs::write(
        &dump,
        "00000000: 4157 5031 0100 0000 0000 0000 0000 0000  AWP1............\n",
    )
    .unwrap();
    let out = gateway().arg("inspect").arg(&dump).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("not plain hex") && err.contains("xxd -p"), "{err}");
}

/// `gateway probe`, the image's HEALTHCHECK: 0 with a live gateway's
/// /healthz, found by --admin-listen or by the configuration; 1 (never 2,
/// which Docker reserves) when nothing answers or the answer is not 2xx.
#[tokio::test]
async fn the_health_probe_answers_with_its_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let file = config(dir.path(), "", &tenant("acme"));
    let gateway_process = Gateway::start(&file, &[]).await;
    let admin = gateway_process.admin.to_string();
    let probe = |args: &[&str]| {
        let out = gateway().arg("probe").args(args).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    let (code, text) = probe(&["--admin-listen", &admin]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = probe(&["--admin-listen", &admin, "--path", "/readyz"]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = probe(&["--admin-listen", &admin, "--path", "/no-such-page"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("404"), "{text}");
    // From the configuration: its admin_listen, here a port of its own.
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("admin_listen = \"127.0.0.1:0\"", &format!("admin_listen = \"{admin}\""));
    let named = dir.path().join("named.toml");
    std::fs::write(&named, text).unwrap();
    let out = gateway().arg("--config").arg(&named).arg("probe").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // As the image runs it: no flags, the address from GATEWAY_ADMIN_LISTEN.
    let out = gateway()
        .arg("probe")
        .env("GATEWAY_ADMIN_LISTEN", &admin)
        .env_remove("GATEWAY_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // A configuration edited for the next reload, not valid yet: only its
    // admin address is read, and the running node still looks alive.
    let edited = dir.path().join("edited.toml");
    std::fs::write(
        &edited,
        format!("[server]\nadmin_listen = \"{admin}\"\nheartbeat_ms = 1\n[[tenants]]\nid = \"half written\"\n"),
    )
    .unwrap();
    let out = gateway().arg("probe").env("GATEWAY_CONFIG", &edited).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    gateway_process.stop().await;
    let (code, text) = probe(&["--admin-listen", &admin, "--timeout-ms", "500"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("no answer") && text.lines().count() == 1, "{text}");
    // The image asks this very command.
    let dockerfile = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Dockerfile")).unwrap();
    assert!(dockerfile.contains("CMD [\"/usr/local/bin/gateway\", \"probe\", \"--path\", \"/healthz\"]"));
}

/// A SIGTERM that comes the moment the listeners are up (a supervisor's
/// stop right after start) drains and exits 0: the handlers are installed
/// before anything binds, never after.
#[tokio::test]
async fn a_sigterm_right_after_start_drains_and_exits_cleanly() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let gateway = Gateway::start(&config(dir.path(), "", &tenant("acme")), &[]).await;
        // `stop` asserts a clean exit (status 0, not killed by the signal).
        gateway.stop().await;
    }
}
