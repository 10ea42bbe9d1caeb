//! The disk queue's caps through the client, against a real gateway: at
//! its byte cap the oldest records go and the exact count is kept across a
//! restart and told to the gateway (an `awp.queue.dropped` event); a full
//! disk (a 1 MiB tmpfs) makes `push` fail and harms nothing queued; a torn
//! tail (a power cut mid-write) is cut back and the rest is delivered.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use awp_client::{Auth, Client, QueueOptions, QueuePlace, SealLimits};
use support::*;

fn disk_client(addr: &str, device: &str, queue: &Path, options: QueueOptions) -> Client {
    let mut c = config(
        addr.parse().unwrap(),
        device,
        Auth::Token(token(device)),
        QueuePlace::Disk(queue.into()),
    );
    c.queue_options = options;
    c.seal = SealLimits {
        max_records: 100,
        max_bytes: 60_000,
    };
    c.queue_options.seal = c.seal;
    Client::open(c).unwrap()
}

/// Numbers of the stored LOCATIONs of `device`, and its stored events.
fn stored_split(data: &Path, device: &str) -> (Vec<u64>, Vec<serde_json::Value>) {
    let mut numbers = Vec::new();
    let mut events = Vec::new();
    for item in stored_items(data, device) {
        match item["kind"]["S"].as_str() {
            Some("location") => numbers.push(item["accuracy_m"]["N"].as_str().unwrap().parse::<u64>().unwrap()),
            Some("event") => events.push(item),
            other => panic!("unexpected kind {other:?}"),
        }
    }
    numbers.sort_unstable();
    (numbers, events)
}

/// The integer attribute `key` of an event item, wherever the layout put it.
fn attr(item: &serde_json::Value, key: &str) -> Option<i64> {
    match item {
        serde_json::Value::Object(o) => o
            .get(key)
            .and_then(|v| v.get("N").and_then(|n| n.as_str()).and_then(|n| n.parse().ok()))
            .or_else(|| o.values().find_map(|v| attr(v, key))),
        serde_json::Value::Array(a) => a.iter().find_map(|v| attr(v, key)),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_byte_cap_the_oldest_go_and_the_exact_count_is_told() {
    let work = tempfile::tempdir().unwrap();
    let queue = work.path().join("queue");
    let addr = free_addr();
    let options = QueueOptions {
        max_bytes: 128 << 10,
        segment_bytes: 16 << 10,
        ..QueueOptions::default()
    };
    const PUSHED: u64 = 6_000;
    let dropped = {
        let (addr, queue) = (addr.clone(), queue.clone());
        tokio::task::spawn_blocking(move || {
            // No gateway yet: everything stays queued, up to the cap.
            let client = disk_client(&addr, "capped", &queue, options);
            for i in 0..PUSHED {
                client.push(&location(i)).unwrap();
            }
            let dropped = client.stats().queue.dropped_records;
            assert!(dropped > 0, "the cap was reached");
            assert!(client.stats().queue.bytes <= options.max_bytes);
            client.close();
            // The count survives a restart.
            let client = disk_client(&addr, "capped", &queue, options);
            assert_eq!(client.stats().queue.dropped_records, dropped);
            client.close();
            dropped
        })
        .await
        .unwrap()
    };
    let data = work.path().join("data");
    let gateway = gateway_on(&data, &addr).await;
    let flushed = {
        let (addr, queue) = (addr.clone(), queue.clone());
        tokio::task::spawn_blocking(move || {
            let client = disk_client(&addr, "capped", &queue, options);
            let r = client.flush(Duration::from_secs(30));
            client.close();
            r
        })
        .await
        .unwrap()
    };
    flushed.expect("flush");
    let (numbers, events) = stored_split(&data, "capped");
    // The oldest went: what is stored is the newest, each once.
    assert_eq!(numbers, (dropped..PUSHED).collect::<Vec<u64>>());
    let told = events
        .iter()
        .filter_map(|e| attr(e, "dropped_total"))
        .max()
        .expect("an awp.queue.dropped event reached the gateway");
    assert_eq!(told as u64, dropped, "the event tells the exact count: {events:?}");
    assert!(gateway.shutdown().await);
}

/// A small tmpfs mounted for the test (this machine's tests run as root),
/// unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_push_and_harms_nothing_queued() {
    let disk = Tmpfs::mount("1m");
    let queue = disk.0.path().join("queue");
    let work = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let options = QueueOptions {
        segment_bytes: 64 << 10,
        ..QueueOptions::default()
    };
    let pushed = {
        let (addr, queue) = (addr.clone(), queue.clone());
        tokio::task::spawn_blocking(move || {
            let client = disk_client(&addr, "full", &queue, options);
            let mut pushed = 0u64;
            let error = loop {
                match client.push(&location(pushed)) {
                    Ok(()) => pushed += 1,
                    Err(e) => break e,
                }
                assert!(pushed < 1_000_000, "the disk never filled");
            };
            assert!(error.is_disk_full(), "{error}");
            // Again: still refused, still harmless.
            assert!(client.push(&location(pushed)).unwrap_err().is_disk_full());
            client.close();
            pushed
        })
        .await
        .unwrap()
    };
    assert!(pushed > 1_000, "{pushed}");
    let data = work.path().join("data");
    let gateway = gateway_on(&data, &addr).await;
    {
        let (addr, queue) = (addr.clone(), queue.clone());
        tokio::task::spawn_blocking(move || {
            let client = disk_client(&addr, "full", &queue, options);
            if let Err(e) = client.flush(Duration::from_secs(30)) {
                panic!("flush: {e}: {:?}", client.stats());
            }
            // Delivered, the segments went: there is room again.
            client.push(&location(pushed)).expect("a push once there is room");
            client.flush(Duration::from_secs(30)).expect("flush");
            client.close();
        })
        .await
        .unwrap();
    }
    let (numbers, _) = stored_split(&data, "full");
    assert_eq!(
        numbers,
        (0..=pushed).collect::<Vec<u64>>(),
        "every record whose push returned, once"
    );
    assert!(gateway.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_cut_back_and_the_rest_delivered() {
    let work = tempfile::tempdir().unwrap();
    let queue = work.path().join("queue");
    let addr = free_addr();
    let options = QueueOptions::default();
    {
        let (addr, queue) = (addr.clone(), queue.clone());
        tokio::task::spawn_blocking(move || {
            let client = disk_client(&addr, "torn", &queue, options);
            for i in 0..250 {
                client.push(&location(i)).unwrap();
            }
            client.close();
        })
        .await
        .unwrap();
    }
    // A power cut mid-write: the tail's last entry loses its last byte and
    // half of a next entry's frame follows it.
    let mut segments: Vec<_> = std::fs::read_dir(&queue)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    let tail = segments.last().unwrap();
    let len = std::fs::metadata(tail).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(tail).unwrap();
    file.set_len(len - 1).unwrap();
    drop(file);
    let mut bytes = std::fs::read(tail).unwrap();
    bytes.extend_from_slice(&[1, 0, 0, 0, 0x40, 0x7f, 0x13]);
    std::fs::write(tail, &bytes).unwrap();

    let data = work.path().join("data");
    let gateway = gateway_on(&data, &addr).await;
    {
        let (addr, queue) = (addr.clone(), queue.clone());
        tokio::task::spawn_blocking(move || {
            let client = disk_client(&addr, "torn", &queue, options);
            client.flush(Duration::from_secs(30)).expect("flush");
            client.close();
        })
        .await
        .unwrap();
    }
    let (numbers, _) = stored_split(&data, "torn");
    // At most the torn entry is lost (a record, or a seal whose records
    // come back unsealed); nothing twice.
    let k = numbers.len() as u64;
    assert!(k >= 249, "{k} of 250 delivered");
    assert_eq!(numbers, (0..k).collect::<Vec<u64>>());
    assert!(gateway.shutdown().await);
}
