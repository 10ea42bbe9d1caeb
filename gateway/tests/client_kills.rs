//! The agents' library (`awp-client`, disk queue) against the `gateway`
//! binary: killed with SIGKILL 10 times under load and restarted on the
//! same port, then down for a whole minute while records are pushed.
//! Every record whose `push` returned is in the export exactly once.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use awp_client::{Auth, Client, ClientConfig, QueuePlace, Record, SealLimits, Token};
use support::binary::Gateway;

const TENANT: &str = "acme";
const SECRET: &str = "acme-secret-0123456789";

fn write_config(dir: &Path, port: u16) -> std::path::PathBuf {
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = [\"127.0.0.1:{port}\"]\nadmin_listen = \"127.0.0.1:0\"\n\
             [sink]\nkind = \"sqlite\"\ndata_dir = \"{}\"\n\
             [[tenants]]\nid = \"{TENANT}\"\nsecrets = [\"{SECRET}\"]\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn client(port: u16, queue: &Path, device: &str) -> Client {
    let token = Token {
        token: awp_protocol::token::device_token(SECRET.as_bytes(), TENANT, device, 0),
        expiry: 0,
    };
    let mut c = ClientConfig::new(
        vec![format!("127.0.0.1:{port}")],
        TENANT,
        device,
        Auth::Token(token),
        QueuePlace::Disk(queue.into()),
    );
    c.batch_delay = Duration::from_millis(20);
    c.seal = SealLimits {
        max_records: 50,
        max_bytes: 60_000,
    };
    c.backoff = (Duration::from_millis(50), Duration::from_secs(2));
    c.ack_timeout = Duration::from_secs(10);
    Client::open(c).unwrap()
}

/// Pushes numbered records (the number is `accuracy_m`) about `per_second`
/// until `stop`; returns how many pushes returned.
fn pusher(client: Arc<Client>, stop: Arc<AtomicBool>, per_second: u64) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut n = 0u64;
        let started = std::time::Instant::now();
        while !stop.load(Ordering::SeqCst) {
            let record = Record::location(1_700_000_000_000 + n, 1, 2, n).unwrap();
            client.push(&record).expect("push");
            n += 1;
            let due = Duration::from_micros(n * 1_000_000 / per_second);
            if let Some(ahead) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(ahead);
            }
        }
        n
    })
}

/// The numbers the export holds for `device`, with how often each is there.
fn exported(config: &Path, device: &str) -> BTreeMap<u64, u32> {
    let mut counts = BTreeMap::new();
    for line in support::binary::export(config, TENANT) {
        let item: serde_json::Value = serde_json::from_str(&line).unwrap();
        if item["device"] != device {
            continue;
        }
        let n = item["accuracy_m"]
            .as_u64()
            .unwrap_or_else(|| panic!("no accuracy_m: {line}"));
        *counts.entry(n).or_insert(0) += 1;
    }
    counts
}

fn assert_each_once(counts: &BTreeMap<u64, u32>, pushed: u64) {
    let twice: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    let missing: Vec<u64> = (0..pushed).filter(|n| !counts.contains_key(n)).collect();
    assert!(
        missing.is_empty(),
        "{} of {pushed} lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert_eq!(counts.len() as u64, pushed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_killed_ten_times_under_load_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port);
    let client = Arc::new(client(port, &dir.path().join("queue"), "phone-k"));
    let stop = Arc::new(AtomicBool::new(false));
    let pushing = pusher(client.clone(), stop.clone(), 2_000);
    for kill in 0..10 {
        let mut gateway = Gateway::start(&config, &[]).await;
        // Killed while a session is up and batches are in flight: once
        // this gateway has acknowledged something, at a random moment.
        let acked = client.stats().records_acked;
        let waited = std::time::Instant::now();
        while client.stats().records_acked == acked {
            assert!(
                waited.elapsed() < Duration::from_secs(30),
                "kill {kill}: the client never came back"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..500))).await;
        gateway.child.start_kill().unwrap();
        gateway.child.wait().await.unwrap();
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..300))).await;
    }
    stop.store(true, Ordering::SeqCst);
    let pushed = pushing.join().unwrap();
    let gateway = Gateway::start(&config, &[]).await;
    let flushing = client.clone();
    tokio::task::spawn_blocking(move || flushing.flush(Duration::from_secs(60)))
        .await
        .unwrap()
        .expect("flush after the last restart");
    let stats = client.stats();
    assert!(stats.connects >= 11, "{stats:?}");
    gateway.stop().await;
    Arc::into_inner(client).unwrap().close();
    assert!(pushed > 5_000, "load ran: {pushed}");
    assert_each_once(&exported(&config, "phone-k"), pushed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minute_offline_then_everything_arrives_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port);
    let client = Arc::new(client(port, &dir.path().join("queue"), "phone-o"));
    let stop = Arc::new(AtomicBool::new(false));
    let pushing = pusher(client.clone(), stop.clone(), 200);
    // Up, then down for a minute while the pushes go on.
    let gateway = Gateway::start(&config, &[]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    gateway.stop().await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let offline = client.stats();
    assert!(offline.queue.pending_batches > 0, "{offline:?}");
    assert!(!offline.connected);
    let gateway = Gateway::start(&config, &[]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let pushed = pushing.join().unwrap();
    let flushing = client.clone();
    tokio::task::spawn_blocking(move || flushing.flush(Duration::from_secs(60)))
        .await
        .unwrap()
        .expect("flush once the gateway is back");
    gateway.stop().await;
    Arc::into_inner(client).unwrap().close();
    assert!(pushed > 10_000, "load ran: {pushed}");
    assert_each_once(&exported(&config, "phone-o"), pushed);
}
