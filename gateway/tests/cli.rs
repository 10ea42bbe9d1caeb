//! The `gateway` binary: the development default end to end (start, take a
//! batch, SIGTERM, drain), SIGHUP reloads, `check-config`, `example-config`,
//! `inspect`, `token`.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use awp_protocol::{AckStatus, Frame, MAGIC};
use support::binary::Gateway;
use support::{Client, vector};

fn gateway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gateway"))
}

#[test]
fn check_config_names_the_field_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[server]\nmax_inflight = 0\n[[tenants]]\nid = \"acme\"\nsecrets = [\"acme-secret-1\"]\n",
    )
    .unwrap();
    let out = gateway()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("server.max_inflight: must be 1 to 1024"), "{stderr}");

    let missing = gateway()
        .args(["check-config", "--config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8(missing.stderr).unwrap().contains("/nonexistent.toml"));
}

#[test]
fn the_null_sink_needs_an_explicit_opt_in() {
    let dir = tempfile::tempdir().unwrap();
    let refused = gateway()
        .args(["check-config", "--data-dir"])
        .arg(dir.path())
        .env("GATEWAY_SINK", "null")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8(refused.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("sink.kind: the null sink acknowledges every batch and stores nothing")
            && stderr.contains("--allow-null-sink"),
        "{stderr}"
    );
    for opt_in in [&["--allow-null-sink"][..], &[]] {
        let mut cmd = gateway();
        cmd.args(["check-config", "--data-dir"]).arg(dir.path()).args(opt_in);
        if opt_in.is_empty() {
            cmd.env("GATEWAY_ALLOW_NULL_SINK", "1");
        }
        let ok = cmd.env("GATEWAY_SINK", "null").output().unwrap();
        assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    }
}

#[test]
fn the_development_secret_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("new").join("data");
    let out = gateway()
        .args(["check-config", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("dev-tenant.secret")), 0o600);
}

/// Two tenants on one table named two ways (a name and its ARN; localhost
/// and 127.0.0.1) are refused, naming the field.
#[test]
fn check_config_sees_one_table_named_two_ways() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two.toml");
    let tenant = |id: &str, table: &str, endpoint: &str| {
        format!(
            "[[tenants]]\nid = \"{id}\"\nsecrets = [\"0123456789abcdef0123456789abcdef\"]\n[tenants.dynamodb]\n\
             table = \"{table}\"\nregion = \"eu-west-1\"\nendpoint = \"{endpoint}\"\n"
        )
    };
    for (first, second) in [
        (
            tenant("a", "events", "http://localhost:8000"),
            tenant("b", "events", "http://127.0.0.1:8000"),
        ),
        (
            tenant("a", "events", "http://127.0.0.1:8000"),
            tenant(
                "b",
                "arn:aws:dynamodb:eu-west-1:123456789012:table/events",
                "http://127.0.0.1:8000/",
            ),
        ),
    ] {
        std::fs::write(&path, format!("[sink]\nkind = \"dynamodb\"\n{first}{second}")).unwrap();
        let out = gateway()
            .arg("--config")
            .arg(&path)
            .arg("check-config")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.contains("tenants[1].dynamodb.table") && err.contains("same table"),
            "{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

/// Text logs are coloured only on a terminal, and not even there with
/// `NO_COLOR`: a log written to a file or a pipe stays plain text.
#[test]
fn text_logs_carry_colour_codes_only_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let file = acme_config(dir.path(), "");
    // To a pipe: the log of a start and a SIGTERM.
    let mut child = gateway()
        .args(["--log-format", "text", "--config"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let mut log = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(log.contains("listening"), "{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in a piped log: {log:?}");
    // On a terminal (script(1) gives it one): coloured, unless NO_COLOR.
    let on_terminal = |no_color: bool| {
        let command = format!(
            "timeout -s TERM 1.5 {} --log-format text --config {}",
            env!("CARGO_BIN_EXE_gateway"),
            file.display()
        );
        let mut script = Command::new("script");
        script.args(["-qfec", &command, "/dev/null"]);
        if no_color {
            script.env("NO_COLOR", "1");
        } else {
            script.env_remove("NO_COLOR");
        }
        let out = script.output().expect("script(1) from util-linux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let coloured = on_terminal(false);
    assert!(
        coloured.contains("listening") && coloured.contains('\u{1b}'),
        "{coloured:?}"
    );
    let plain = on_terminal(true);
    assert!(plain.contains("listening") && !plain.contains('\u{1b}'), "{plain:?}");
}

#[test]
fn the_example_config_checks_clean() {
    let dir = tempfile::tempdir().unwrap();
    let example = gateway().arg("example-config").output().unwrap();
    assert!(example.status.success());
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, &example.stdout).unwrap();
    let out = gateway()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty());
    // Valid, but its placeholder secret is weak: said, on one line.
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("gateway: warning: tenants[0].secrets[0]: weak secret"),
        "{err}"
    );
    assert!(!err.contains("change-me"), "the secret itself is never printed: {err}");
}

#[test]
fn inspect_prints_one_json_line_per_frame() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.hex");
    let capture = format!(
        "{}\n{}\n{}\n{}\n",
        hex::encode(MAGIC),
        hex::encode(vector("hello_token_android")),
        hex::encode(vector("batch_mixed_lz4")),
        hex::encode(vector("bad_crc"))
    );
    std::fs::write(&path, capture).unwrap();
    let out = gateway().arg("inspect").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "a capture with an error exits 1");
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[1]["type"], "HELLO");
    assert_eq!(lines[2]["type"], "BATCH");
    assert_eq!(lines[2]["compression"], "lz4");
    assert_eq!(lines[2]["records"].as_array().unwrap().len(), 8);
    assert_eq!(lines[3]["code"], "CHECKSUM_MISMATCH");
    assert_eq!(lines[3]["offset"], 4 + 78 + 232);
}

/// `gateway token` takes the secret from a file or the environment as from
/// the command line; `gateway secret` makes a strong one.
#[test]
fn token_takes_the_secret_from_a_file_or_the_environment_and_secret_makes_one() {
    let vector_token = "f4151fbd02cb529c42e96aaa66d33cbea66f646d4c2283e1f46b9def3622a315";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.secret");
    std::fs::write(&file, "acme-secret-1\n").unwrap();
    let from_file = gateway()
        .args(["token", "--tenant", "acme", "--device", "dev-0001", "--secret-file"])
        .arg(&file)
        .env_remove("AWP_SECRET")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(from_file.stdout).unwrap().trim(), vector_token);
    let from_env = gateway()
        .args(["token", "--tenant", "acme", "--device", "dev-0001"])
        .env("AWP_SECRET", "acme-secret-1")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(from_env.stdout).unwrap().trim(), vector_token);
    // Neither: a one-line error, no token.
    let neither = gateway()
        .args(["token", "--tenant", "acme", "--device", "dev-0001"])
        .env_remove("AWP_SECRET")
        .output()
        .unwrap();
    assert!(!neither.status.success() && neither.stdout.is_empty());
    // The help shows the forms that keep the secret off the command line.
    let help = gateway().args(["token", "--help"]).output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("--secret-file") && help.contains("AWP_SECRET"), "{help}");
    let secret = gateway().arg("secret").output().unwrap();
    let secret = String::from_utf8(secret.stdout).unwrap();
    let secret = secret.trim();
    assert!(
        secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit()),
        "{secret}"
    );
    assert!(awp_gateway::config::secret_weakness(secret).is_none());
}

#[test]
fn token_prints_the_vectors_token() {
    let out = gateway()
        .args([
            "token",
            "--secret",
            "acme-secret-1",
            "--tenant",
            "acme",
            "--device",
            "dev-0001",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        "f4151fbd02cb529c42e96aaa66d33cbea66f646d4c2283e1f46b9def3622a315"
    );
}

#[tokio::test]
async fn the_development_default_takes_a_batch_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Read the banner: the agent address and the dev tenant's secret.
    let stdout = child.stdout.take().unwrap();
    let banner = async move {
        use tokio::io::AsyncBufReadExt;
        let mut reader = tokio::io::BufReader::new(stdout).lines();
        let mut lines = Vec::new();
        while let Some(line) = reader.next_line().await.unwrap() {
            let done = line.starts_with("Ctrl-C");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    };
    let banner = tokio::time::timeout(Duration::from_secs(20), banner).await.unwrap();
    let field = |prefix: &str| {
        banner
            .iter()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .unwrap_or_else(|| panic!("{prefix} in {banner:?}"))
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };
    let addr = field("agents:");
    assert!(addr.starts_with("127.0.0.1:"), "loopback only: {addr}");
    assert!(banner[0].contains("loopback only"), "{banner:?}");
    // The load it suggests is modest (a newcomer's disk, not a closed loop
    // that writes hundreds of MB in seconds) and verified.
    let load = banner.iter().find(|l| l.contains("agent-sim run")).unwrap();
    for flag in ["--rate 1 ", "--records 20 ", "--agents 10 ", "--verify-sqlite "] {
        assert!(load.contains(flag), "{flag} in {load}");
    }
    // Not a terminal: the banner names the file and never prints the secret.
    let secret = std::fs::read_to_string(dir.path().join("dev-tenant.secret"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(banner.iter().all(|l| !l.contains(&secret)), "{banner:?}");
    assert!(
        banner
            .iter()
            .any(|l| l.contains("secret in") && l.contains("dev-tenant.secret")),
        "{banner:?}"
    );
    // The token line of the banner works as printed.
    let token_line = banner
        .iter()
        .find_map(|l| l.trim().strip_prefix("a device token:"))
        .unwrap();
    let args: Vec<String> = token_line
        .split_whitespace()
        .skip(1)
        .map(|a| {
            if a == "DEVICE_ID" {
                "phone-1".to_owned()
            } else {
                a.to_owned()
            }
        })
        .collect();
    let out = gateway().args(&args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let expected = hex::encode(awp_protocol::token::device_token(
        secret.as_bytes(),
        "dev",
        "phone-1",
        0,
    ));
    assert_eq!(printed, expected);

    // An agent of tenant dev.
    let hello = awp_protocol::Hello {
        min_version: 1,
        max_version: 1,
        tenant_id: "dev".into(),
        device_id: "phone-1".into(),
        platform: awp_protocol::Platform::Android,
        agent_version: "1.0".into(),
        compression: awp_protocol::CompressionSet::ALL,
        auth: awp_protocol::HelloAuth::Token {
            expiry: 0,
            token: awp_protocol::token::device_token(secret.as_bytes(), "dev", "phone-1", 0),
        },
    };
    let mut c = Client::new(tokio::net::TcpStream::connect(&addr).await.unwrap());
    c.send(&MAGIC).await;
    c.send_frame(&Frame::Hello(hello)).await;
    assert!(matches!(c.next().await, Some(Frame::Welcome(_))));
    c.send(&vector("batch_one_location")).await;
    assert!(matches!(c.next().await, Some(Frame::Ack(a)) if a.status == AckStatus::Ok));

    let pid = child.id().unwrap().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert!(matches!(c.next().await, Some(Frame::GoAway(_))), "GOAWAY on SIGTERM");
    assert!(c.next().await.is_none());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "clean exit after draining: {status:?}");

    let db = rusqlite::Connection::open(dir.path().join("dev.sqlite3")).unwrap();
    let (device, rk): (String, String) = db
        .query_row("SELECT device, rk FROM items", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!(
        (device.as_str(), rk.as_str()),
        ("phone-1", "1764000000000#00000000000000000001#00000")
    );

    // And read back with export: one JSON line per record.
    let out = gateway()
        .args([
            "export",
            "--tenant",
            "dev",
            "--from",
            "2025-11-24T16:00:00Z",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(lines[0]["device"], "phone-1");
    assert_eq!(lines[0]["kind"], "location");
    assert_eq!(lines[0]["ts"], 1_764_000_000_000u64);
    let out = gateway()
        .args(["export", "--tenant", "nobody", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tenant"));
}

#[tokio::test]
async fn the_gateway_tells_systemd_it_is_ready_reloading_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("READY=1 from the gateway");
    assert_eq!(std::str::from_utf8(&buf[..n]).unwrap().trim(), "READY=1");
    let pid = child.id().unwrap().to_string();
    // A reload (systemctl reload: SIGHUP) is reported as one.
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let n = socket.recv(&mut buf).expect("RELOADING=1 from the gateway");
    let reloading = std::str::from_utf8(&buf[..n]).unwrap();
    assert!(reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{reloading}");
    let n = socket.recv(&mut buf).expect("READY=1 after the reload");
    assert_eq!(std::str::from_utf8(&buf[..n]).unwrap().trim(), "READY=1");
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let n = socket.recv(&mut buf).expect("STOPPING=1 from the gateway");
    assert_eq!(std::str::from_utf8(&buf[..n]).unwrap().trim(), "STOPPING=1");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}

/// The files in deploy/ cannot all be run here (no container runtime), but
/// what they run can: the compose file's configuration passes check-config,
/// and the systemd unit's commands are this binary's.
#[test]
fn the_deploy_files_use_a_valid_configuration_and_real_commands() {
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let out = gateway()
        .arg("--config")
        .arg(deploy.join("gateway.toml"))
        .arg("check-config")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let unit = std::fs::read_to_string(deploy.join("systemd/awp-gateway.service")).unwrap();
    for line in unit.lines().filter(|l| l.starts_with("ExecStart")) {
        let args: Vec<&str> = line.split_once('=').unwrap().1.split_whitespace().skip(1).collect();
        // The same flags and subcommand, checked by clap (--help does not start anything).
        let mut args: Vec<&str> = args.into_iter().filter(|a| !a.starts_with("/etc/")).collect();
        if let Some(i) = args.iter().position(|a| *a == "--config") {
            args.remove(i);
        }
        args.push("--help");
        let out = gateway().args(&args).output().unwrap();
        assert!(out.status.success(), "{line}: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(unit.contains("Type=notify") && unit.contains("LimitNOFILE="));
    assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    // Documentation= names pages the install steps above it install.
    for doc in unit.lines().filter_map(|l| l.strip_prefix("Documentation=")) {
        let page = doc
            .strip_prefix("file:///usr/share/doc/awp-gateway/")
            .unwrap_or_else(|| panic!("{doc}: an installed page"));
        assert!(
            unit.lines()
                .any(|l| l.contains("/usr/share/doc/awp-gateway") && l.contains(&format!("docs/{page}"))),
            "{page} is installed by the unit's install steps"
        );
        assert!(deploy.join("../docs").join(page).is_file(), "docs/{page}");
    }
    for hardening in [
        "UMask=0077",
        "SystemCallFilter=@system-service",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "ProtectKernelLogs=yes",
        "RestrictSUIDSGID=yes",
        "RestrictRealtime=yes",
        "ProtectProc=invisible",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.lines().any(|l| l == hardening), "{hardening} in the unit");
    }
    // The image: admin on loopback, pinned bases; compose: pinned images,
    // a read-only root, no capabilities.
    let dockerfile = std::fs::read_to_string(deploy.join("../Dockerfile")).unwrap();
    // The admin address is one variable, read by the gateway and the
    // HEALTHCHECK's probe alike.
    assert!(
        dockerfile
            .lines()
            .any(|l| l == "ENV GATEWAY_ADMIN_LISTEN=127.0.0.1:9464")
    );
    let cmd = dockerfile.lines().find(|l| l.starts_with("CMD ")).unwrap();
    assert!(!cmd.contains("--admin-listen"), "{cmd}");
    for from in dockerfile.lines().filter(|l| l.starts_with("FROM ")) {
        let image = from.split_whitespace().nth(1).unwrap();
        assert!(
            image
                .split(':')
                .nth(1)
                .is_some_and(|tag| tag.starts_with(|c: char| c.is_ascii_digit())),
            "{from}"
        );
    }
    let compose = std::fs::read_to_string(deploy.join("compose.yaml")).unwrap();
    assert!(!compose.contains(":latest"), "pinned images");
    for line in ["read_only: true", "cap_drop: [ALL]", "no-new-privileges:true"] {
        assert!(compose.contains(line), "{line} in compose.yaml");
    }
}

/// Writes `dir/gateway.toml`: loopback listeners on free ports, SQLite
/// under `dir/data`, tenant `acme` (secret `acme-secret-1`), and `server`
/// more of the `[server]` section.
fn acme_config(dir: &std::path::Path, server: &str) -> std::path::PathBuf {
    let file = dir.join("gateway.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin_listen = \"127.0.0.1:0\"\n{server}[sink]\ndata_dir = \"{}\"\n[[tenants]]\nid = \"acme\"\nsecrets = [\"acme-secret-1\"]\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    file
}

#[tokio::test]
async fn behind_a_proxy_log_lines_name_the_agents_address() {
    let dir = tempfile::tempdir().unwrap();
    let file = acme_config(
        dir.path(),
        "proxy_protocol = true\nproxy_protocol_trusted = [\"127.0.0.1\"]\n",
    );
    let Gateway {
        mut child,
        agents,
        mut log,
        ..
    } = Gateway::start(&file, &[]).await;
    let mut c = Client::new(tokio::net::TcpStream::connect(&agents).await.unwrap());
    let source: std::net::SocketAddr = "203.0.113.7:40001".parse().unwrap();
    let destination: std::net::SocketAddr = "10.0.0.1:7700".parse().unwrap();
    let header = ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (source, destination),
    )
    .build()
    .unwrap();
    c.send(&header).await;
    c.send_hello_as("acme", "not-the-secret", "phone-1").await;
    c.expect_error(awp_protocol::ErrorCode::AuthFailed).await;
    let line = support::binary::next_line(&mut log, "HELLO did not authenticate").await;
    assert!(line.contains("\"agent\":\"203.0.113.7\""), "{line}");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn sighup_reloads_the_configuration_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    let text = |tenants: &str| {
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin_listen = \"127.0.0.1:0\"\n[sink]\ndata_dir = \"{}\"\n{tenants}",
            dir.path().join("data").display()
        )
    };
    let tenant = |id: &str| format!("[[tenants]]\nid = \"{id}\"\nsecrets = [\"{id}-secret-1\"]\n");
    std::fs::write(&file, text(&tenant("acme"))).unwrap();
    let Gateway {
        mut child,
        agents,
        admin,
        ..
    } = Gateway::start(&file, &[]).await;
    let hello = |tenant: &'static str| async move {
        let mut c = Client::new(tokio::net::TcpStream::connect(&agents).await.unwrap());
        c.send_hello_as(tenant, &format!("{tenant}-secret-1"), "phone-1").await;
        c.next().await
    };
    let metric = |name: &'static str| async move {
        let text = support::http_get(admin, "/metrics").await;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ').map(str::to_owned))
            .map(|v| v.trim().parse::<f64>().unwrap())
    };
    let pid = child.id().unwrap().to_string();
    let hangup = || assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    assert!(matches!(hello("gamma").await, Some(Frame::Error(_))));
    assert_eq!(metric("awp_config_last_reload_successful").await, Some(1.0));

    // A tenant added to the file is served after SIGHUP.
    std::fs::write(&file, text(&[tenant("acme"), tenant("gamma")].concat())).unwrap();
    hangup();
    // The signal is handled asynchronously: wait for the reload's count.
    let counted = |name: &'static str| async move {
        for _ in 0..100 {
            if let Some(n) = metric(name).await {
                return Some(n);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    };
    assert_eq!(
        counted("awp_config_reloads_total{outcome=\"ok\"}").await,
        Some(1.0),
        "the reload is counted"
    );
    assert!(matches!(hello("gamma").await, Some(Frame::Welcome(_))));

    // A broken file is refused; the gateway goes on with what it had.
    std::fs::write(&file, "[server\n").unwrap();
    hangup();
    assert_eq!(
        counted("awp_config_reloads_total{outcome=\"refused\"}").await,
        Some(1.0)
    );
    assert_eq!(metric("awp_config_last_reload_successful").await, Some(0.0));
    assert!(matches!(hello("gamma").await, Some(Frame::Welcome(_))));
    assert!(matches!(hello("acme").await, Some(Frame::Welcome(_))));

    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}

/// `--layout packed` (as `gateway --layout packed` tries the development
/// default packed): a batch becomes one row, and export reads it back as
/// the record layout's items.
#[tokio::test]
async fn the_layout_flag_stores_batches_packed_and_export_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "packed-dev-secret-0123456789";
    std::fs::write(
        dir.path().join("gateway.toml"),
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin_listen = \"127.0.0.1:0\"\n[sink]\ndata_dir = \"{}\"\n[[tenants]]\nid = \"dev\"\nsecrets = [\"{secret}\"]\n",
            dir.path().display()
        ),
    )
    .unwrap();
    // The flag applies to a file's tenants as to the default's.
    let Gateway { mut child, agents, .. } =
        Gateway::start(&dir.path().join("gateway.toml"), &["--layout", "packed"]).await;
    let mut c = Client::new(tokio::net::TcpStream::connect(&agents).await.unwrap());
    c.send_hello_as("dev", secret, "phone-1").await;
    assert!(matches!(c.next().await, Some(Frame::Welcome(_))));
    c.send(&vector("batch_mixed_kinds")).await;
    match c.next().await {
        Some(Frame::Ack(a)) if a.status == AckStatus::Ok => {}
        other => panic!("expected ACK OK, got {other:?}"),
    }
    drop(c);
    let pid = child.id().unwrap().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");

    let db = rusqlite::Connection::open(dir.path().join("dev.sqlite3")).unwrap();
    let rows: i64 = db.query_row("SELECT count(*) FROM items", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, 1, "one row for the batch");
    let out = gateway()
        .args(["export", "--tenant", "dev", "--config"])
        .arg(dir.path().join("gateway.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected = awp_testkit::vectors().valid("batch_mixed_kinds").items.clone().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), expected.len());
}

/// A log pipe that breaks (its reader gone: a log shipper or journald
/// restarting) costs log lines, never sessions: agents are still answered,
/// and the gateway still stops cleanly.
#[tokio::test]
async fn a_broken_log_pipe_does_not_break_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let file = acme_config(dir.path(), "");
    let Gateway {
        mut child, agents, log, ..
    } = Gateway::start(&file, &[]).await;
    // The reader goes away at the next line: every later one meets a
    // broken pipe.
    drop(log);
    for _ in 0..3 {
        // A bad HELLO is logged ("session error") and still answered.
        let mut c = Client::new(tokio::net::TcpStream::connect(&agents).await.unwrap());
        c.send_hello_as("acme", "not-the-secret", "phone-1").await;
        c.expect_error(awp_protocol::ErrorCode::AuthFailed).await;
        let mut c = Client::new(tokio::net::TcpStream::connect(&agents).await.unwrap());
        c.send_hello_as("acme", "acme-secret-1", "phone-1").await;
        assert!(matches!(c.next().await, Some(Frame::Welcome(_))));
        c.send(&vector("batch_one_location")).await;
        assert!(matches!(c.next().await, Some(Frame::Ack(a)) if a.status == AckStatus::Ok));
    }
    let pid = child.id().unwrap().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

/// Each subcommand's `--help` lists what it takes, not the server's flags.
#[test]
fn each_command_lists_only_its_own_flags() {
    let help = |args: &[&str]| {
        let out = gateway().args(args).arg("--help").output().unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let server_only = [
        "--listen",
        "--tls-listen",
        "--sink",
        "--layout",
        "--allow-null-sink",
        "--log-format",
    ];
    for command in [
        &["token"][..],
        &["inspect"],
        &["dev-certs"],
        &["secret"],
        &["example-config"],
        &["probe"],
    ] {
        let text = help(command);
        for flag in server_only {
            assert!(!text.contains(flag), "{command:?} --help lists {flag}:\n{text}");
        }
    }
    // The store's readers take the store's overrides, not the listeners'.
    for command in [&["export"][..], &["tables"], &["tables", "create"]] {
        let text = help(command);
        for flag in ["--config", "--sink", "--data-dir", "--layout", "--allow-null-sink"] {
            assert!(text.contains(flag), "{command:?} --help lacks {flag}:\n{text}");
        }
        for flag in ["--listen", "--tls-listen", "--log-format"] {
            assert!(!text.contains(flag), "{command:?} --help lists {flag}:\n{text}");
        }
    }
    assert!(help(&["probe"]).contains("--admin-listen"));
    for command in [&[][..], &["run"], &["check-config"]] {
        let text = help(command);
        for flag in server_only {
            assert!(text.contains(flag), "{command:?} --help lacks {flag}");
        }
    }
}

/// A flag beats the environment wherever it stands (before or after the
/// subcommand); after the subcommand it beats one before it.
#[test]
fn flags_beat_the_environment_before_or_after_the_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        format!(
            "[sink]\nkind = \"sqlite\"\ndata_dir = \"{}\"\n\n[[tenants]]\nid = \"t\"\nsecrets = [\"{}\"]\n",
            dir.path().join("data").display(),
            "ab".repeat(32)
        ),
    )
    .unwrap();
    let missing = dir.path().join("missing.toml");
    let check = |env: Option<&std::path::Path>, args: &[&std::ffi::OsStr]| {
        let mut cmd = gateway();
        cmd.env_remove("GATEWAY_CONFIG");
        if let Some(env) = env {
            cmd.env("GATEWAY_CONFIG", env);
        }
        cmd.args(args).output().unwrap()
    };
    let (g, m) = (good.as_os_str(), missing.as_os_str());
    let flag = std::ffi::OsStr::new("--config");
    let sub = std::ffi::OsStr::new("check-config");
    let out = check(Some(&missing), &[flag, g, sub]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = check(Some(&good), &[flag, m, sub]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
    let out = check(None, &[flag, m, sub, flag, g]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = check(Some(&missing), &[sub]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));

    // The store's readers take the sink's overrides, from a flag or the
    // environment, and after a nested subcommand too.
    let export = gateway()
        .args(["export", "--tenant", "t", "--sink", "null", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&export.stderr);
    assert!(!export.status.success() && said.contains("allow_null"), "{said}");
    let export = gateway()
        .env("GATEWAY_SINK", "null")
        .args(["export", "--tenant", "t", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&export.stderr);
    assert!(!export.status.success() && said.contains("allow_null"), "{said}");
    let tables = gateway()
        .args(["tables", "describe", "--config"])
        .arg(&missing)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&tables.stderr);
    assert!(said.contains("missing.toml"), "{said}");
}
