//! The Java binding on this machine's JVM (Debian's openjdk-17, installed
//! here when missing): `java/test/AwpClientTest.java` drives
//! `com.awp.client.AwpClient` through JNI into `libawp_client.so`, pushing
//! a record of each kind and 1,000 locations from four threads into a real
//! gateway and checking every exception; the gateway then holds each record
//! once.

mod support;

use std::path::Path;
use std::process::Command;

use support::*;

/// `javac`, installing the JDK when it is missing (a clean machine).
fn ensure_jdk() {
    let present = Command::new("javac")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return;
    }
    let install = Command::new("sh")
        .args([
            "-c",
            "(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jdk-headless) >/dev/null",
        ])
        .status()
        .expect("run apt-get");
    assert!(install.success(), "could not install openjdk-17-jdk-headless");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_java_agent_stores_every_kind_once() {
    tokio::task::spawn_blocking(ensure_jdk).await.unwrap();
    let java_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("java");
    let work = tempfile::tempdir().unwrap();
    let classes = work.path().join("classes");
    let javac = Command::new("javac")
        .arg("-Xlint:all")
        .arg("-Werror")
        .arg("-d")
        .arg(&classes)
        .arg(java_dir.join("src/com/awp/client/AwpClient.java"))
        .arg(java_dir.join("src/com/awp/client/AwpException.java"))
        .arg(java_dir.join("test/AwpClientTest.java"))
        .output()
        .expect("run javac");
    assert!(
        javac.status.success(),
        "javac: {}",
        String::from_utf8_lossy(&javac.stderr)
    );

    let data = work.path().join("data");
    let gateway = gateway(&data).await;
    let config = serde_json::json!({
        "gateways": [gateway.plain_addrs[0].to_string()],
        "tenant": TENANT,
        "device": "java-agent",
        "token": token_hex("java-agent"),
        "queue_dir": work.path().join("queue"),
        "platform": "android",
        "batch_delay_ms": 20,
        "backoff_min_ms": 50,
        "backoff_max_ms": 500,
    });
    // A second client whose gateway never answers (its flush cannot end).
    let mut nowhere = config.clone();
    nowhere["gateways"] = serde_json::json!([free_addr()]);
    nowhere["device"] = serde_json::json!("java-nowhere");
    nowhere["queue_dir"] = serde_json::json!(work.path().join("queue-nowhere"));
    let lib_dir = cdylib_dir();
    let run = tokio::task::spawn_blocking(move || {
        Command::new("java")
            .arg("-Xcheck:jni")
            .arg(format!("-Djava.library.path={}", lib_dir.display()))
            .arg("-cp")
            .arg(&classes)
            .arg("AwpClientTest")
            .arg(config.to_string())
            .arg(nowhere.to_string())
            .output()
    })
    .await
    .unwrap()
    .expect("run java");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success() && stdout.contains("ok"),
        "java: {stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!stderr.contains("WARNING"), "-Xcheck:jni found misuse: {stderr}");
    let items = assert_every_kind_once(&data, "java-agent");
    assert!(items.iter().all(|i| i["platform"]["S"] == "android"));
    let event = items.iter().find(|i| i["kind"]["S"] == "event").unwrap();
    assert_eq!(event["name"]["S"], "java.event", "{event}");
    // Each attribute type came through JNI as itself.
    let attrs = &event["attrs"]["M"];
    assert_eq!(attrs["ok"]["BOOL"], true, "{event}");
    assert_eq!(attrs["n"]["N"], "-5", "{event}");
    assert_eq!(attrs["i"]["N"], "7", "{event}");
    assert_eq!(attrs["x"]["N"], "2.5", "{event}");
    assert_eq!(attrs["s"]["S"], "hi", "{event}");
    assert_eq!(attrs["b"]["B"], "3q0=", "{event}");
    assert_eq!(attrs["z"]["NULL"], true, "{event}");
    assert!(gateway.shutdown().await);
}
