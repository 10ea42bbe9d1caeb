//! Shared by the client's tests: a real gateway in process (SQLite sink,
//! loopback), tokens for its tenant, and what it stored.
#![allow(dead_code)]

use std::time::Duration;

use awp_client::{Auth, ClientConfig, QueuePlace, Record, SealLimits, Token};
use awp_gateway::config::Config;

pub const SECRET: &str = "client-test-secret";
pub const TENANT: &str = "t";

pub async fn gateway(dir: &std::path::Path) -> awp_gateway::RunningServer {
    gateway_on(dir, "127.0.0.1:0").await
}

/// A gateway listening on `listen` (a port another one just left).
pub async fn gateway_on(dir: &std::path::Path, listen: &str) -> awp_gateway::RunningServer {
    let config = Config::parse(&format!(
        "[server]\nlisten = [\"{listen}\"]\nadmin_listen = \"127.0.0.1:0\"\nmax_inflight = 4\n\
         [sink]\ndata_dir = \"{}\"\n[[tenants]]\nid = \"{TENANT}\"\nsecrets = [\"{SECRET}\"]\n",
        dir.display()
    ))
    .unwrap();
    awp_gateway::start(&config).await.unwrap()
}

pub fn token(device: &str) -> Token {
    Token {
        token: awp_protocol::token::device_token(SECRET.as_bytes(), TENANT, device, 0),
        expiry: 0,
    }
}

pub fn config(addr: std::net::SocketAddr, device: &str, auth: Auth, queue: QueuePlace) -> ClientConfig {
    let mut c = ClientConfig::new(vec![addr.to_string()], TENANT, device, auth, queue);
    c.batch_delay = Duration::from_millis(50);
    c.seal = SealLimits {
        max_records: 50,
        max_bytes: 60_000,
    };
    c.backoff = (Duration::from_millis(50), Duration::from_millis(500));
    c
}

pub fn location(i: u64) -> Record {
    Record::location(1_700_000_000_000 + i, 1, 2, i).unwrap()
}

/// The numbers (accuracy_m) of `device`'s stored records, sorted.
pub fn stored(data_dir: &std::path::Path, device: &str) -> Vec<u64> {
    let conn = awp_store::sqlite::open_read_only(data_dir, TENANT).unwrap();
    let mut numbers: Vec<u64> = awp_store::sqlite::device_items(&conn, device)
        .unwrap()
        .iter()
        .map(|(_, item)| {
            let v: serde_json::Value = serde_json::from_str(item).unwrap();
            find(&v, "accuracy_m").unwrap_or_else(|| panic!("no accuracy_m in {item}"))
        })
        .collect();
    numbers.sort_unstable();
    numbers
}

fn find(v: &serde_json::Value, key: &str) -> Option<u64> {
    match v {
        // DynamoDB JSON: {"accuracy_m": {"N": "12"}}.
        serde_json::Value::Object(o) => o
            .get(key)
            .and_then(|x| x.get("N"))
            .and_then(|n| n.as_str())
            .and_then(|n| n.parse().ok())
            .or_else(|| o.values().find_map(|x| find(x, key))),
        serde_json::Value::Array(a) => a.iter().find_map(|x| find(x, key)),
        _ => None,
    }
}

/// `device`'s stored items (DynamoDB JSON), in sort-key order.
pub fn stored_items(data_dir: &std::path::Path, device: &str) -> Vec<serde_json::Value> {
    let conn = awp_store::sqlite::open_read_only(data_dir, TENANT).unwrap();
    awp_store::sqlite::device_items(&conn, device)
        .unwrap()
        .iter()
        .map(|(_, item)| serde_json::from_str(item).unwrap())
        .collect()
}

/// A token as `gateway token` prints it (64 hex digits).
pub fn token_hex(device: &str) -> String {
    token(device).token.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where cargo put this build's libraries (`target/debug`).
pub fn build_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(|deps| deps.parent()).unwrap().to_path_buf()
}

/// What a bindings' agent (`tests/c/agent.c`, `java/test/AwpClientTest.java`)
/// leaves stored: a record of each of the six kinds and locations numbered
/// 1000..2000 from four threads, each once. Returns the items.
pub fn assert_every_kind_once(data_dir: &std::path::Path, device: &str) -> Vec<serde_json::Value> {
    let items = stored_items(data_dir, device);
    assert_eq!(items.len(), 1007, "every record once");
    let kinds: std::collections::BTreeSet<&str> = items.iter().filter_map(|i| i["kind"]["S"].as_str()).collect();
    assert_eq!(kinds.len(), 6, "six kinds: {kinds:?}");
    let mut numbers: Vec<u64> = items
        .iter()
        .filter_map(|i| i["accuracy_m"]["N"].as_str()?.parse().ok())
        .filter(|&n| n >= 1000)
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1000..2000).collect::<Vec<u64>>());
    items
}

/// A loopback address nothing listens on (a port just freed).
pub fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// Where `libawp_client.so` is, for the C and Java tests (asserting it is).
pub fn cdylib_dir() -> std::path::PathBuf {
    let dir = build_dir();
    assert!(
        dir.join("libawp_client.so").exists(),
        "no libawp_client.so in {}: build it first with cargo build -p awp-client \
         (scripts/test.sh does; cargo test -p awp-client makes it too)",
        dir.display()
    );
    dir
}
