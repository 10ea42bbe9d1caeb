//! The C ABI from C: `tests/c/agent.c`, compiled with the system's C
//! compiler against `include/awp_client.h` and `libawp_client.so`, pushes a
//! record of each kind and 1,000 locations from four threads into a real
//! gateway and checks every error answer; the gateway then holds each
//! record once.

mod support;

use std::path::Path;
use std::process::Command;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_c_agent_stores_every_kind_once() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let gateway = gateway(&data).await;
    let lib_dir = cdylib_dir();
    let agent = work.path().join("agent");
    let cc = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Werror", "-pthread", "-o"])
        .arg(&agent)
        .arg(crate_dir.join("tests/c/agent.c"))
        .arg("-I")
        .arg(crate_dir.join("include"))
        .arg("-L")
        .arg(&lib_dir)
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .arg("-lawp_client")
        .output()
        .expect("run cc");
    assert!(cc.status.success(), "cc: {}", String::from_utf8_lossy(&cc.stderr));

    let config = serde_json::json!({
        "gateways": [gateway.plain_addrs[0].to_string()],
        "tenant": TENANT,
        "device": "c-agent",
        "token": token_hex("c-agent"),
        "queue_dir": work.path().join("queue"),
        "batch_delay_ms": 20,
        "backoff_min_ms": 50,
        "backoff_max_ms": 500,
    });
    let run = tokio::task::spawn_blocking(move || Command::new(&agent).arg(config.to_string()).output())
        .await
        .unwrap()
        .expect("run the agent");
    assert!(
        run.status.success(),
        "agent: {}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert_every_kind_once(&data, "c-agent");
    assert!(gateway.shutdown().await);
}
