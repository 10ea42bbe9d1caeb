//! Kill the agent: a small agent program (`src/bin/numbered-agent.rs`,
//! on the disk queue) pushes numbered records and is SIGKILLed at random
//! moments, 100 times, each time started again on the same queue; a last
//! run flushes. Every record whose push returned is stored exactly once,
//! and nothing is stored twice.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

mod support;

use support::{SECRET, TENANT, gateway, stored};

const KILLS: u64 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_pushed_before_a_kill_is_stored_once() {
    let data = tempfile::tempdir().unwrap();
    let queue = tempfile::tempdir().unwrap();
    let server = gateway(data.path()).await;
    let addr = server.plain_addrs[0].to_string();
    let device = "killed-1";
    let token = awp_protocol::token::device_token(SECRET.as_bytes(), TENANT, device, 0);
    let token_hex: String = token.iter().map(|b| format!("{b:02x}")).collect();
    let program = std::path::PathBuf::from(env!("CARGO_BIN_EXE_numbered-agent"));
    let queue_dir = queue.path().to_owned();
    let run = move |first: u64, count: u64| {
        Command::new(&program)
            .args([queue_dir.to_str().unwrap(), &addr, TENANT, device, &token_hex])
            .arg(first.to_string())
            .arg(count.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap()
    };
    let pushed = tokio::task::spawn_blocking(move || {
        let mut rng = fastrand::Rng::with_seed(20);
        let mut pushed = BTreeSet::new();
        for k in 0..KILLS {
            // Each run numbers its records apart: a record pushed but not
            // yet reported when the kill came is never numbered again.
            let mut child = run(1 + k * 10_000, 9_999);
            let stdout = child.stdout.take().unwrap();
            let reader = std::thread::spawn(move || {
                BufReader::new(stdout)
                    .lines()
                    .map_while(Result::ok)
                    .filter_map(|l| l.strip_prefix("pushed ").and_then(|n| n.parse::<u64>().ok()))
                    .collect::<Vec<u64>>()
            });
            std::thread::sleep(Duration::from_millis(rng.u64(30..250)));
            child.kill().unwrap();
            child.wait().unwrap();
            pushed.extend(reader.join().unwrap());
        }
        let status = run(0, 0).wait().unwrap();
        assert!(status.success(), "the last run flushed: {status}");
        pushed
    })
    .await
    .unwrap();
    assert!(pushed.len() > 1000, "only {} records pushed", pushed.len());
    eprintln!("{} records pushed across {KILLS} kills", pushed.len());
    let numbers = stored(data.path(), device);
    let distinct: BTreeSet<u64> = numbers.iter().copied().collect();
    assert_eq!(distinct.len(), numbers.len(), "a record was stored twice");
    let missing: Vec<u64> = pushed.difference(&distinct).copied().take(10).collect();
    assert!(missing.is_empty(), "pushed, never stored: {missing:?}");
    // Nothing was stored that no run pushed (beyond the few a kill caught
    // between the push and its report).
    assert!(distinct.len() - pushed.len() <= KILLS as usize);
    assert!(server.shutdown().await);
}
