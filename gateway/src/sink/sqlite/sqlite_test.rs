//! The SQLite sink against the vectors: stored once, durable, refused
//! batches taken back.

use std::collections::BTreeMap;

use serde_json::Value;

use super::*;
use crate::sink::tests::{mixed_kinds_batch, mixed_kinds_expected, vector_batch};

/// Every row, as rk → item JSON, read with a connection of its own.
fn rows(path: &Path) -> BTreeMap<String, Value> {
    let conn = Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT device, rk, item FROM items ORDER BY device, rk")
        .unwrap();
    stmt.query_map([], |row| {
        let (device, rk, item): (String, String, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
        Ok((device, rk, item))
    })
    .unwrap()
    .map(|r| {
        let (device, rk, item) = r.unwrap();
        let item: Value = serde_json::from_str(&item).unwrap();
        assert_eq!(item["device"]["S"], device.as_str());
        assert_eq!(item["rk"]["S"], rk.as_str());
        (rk, item)
    })
    .collect()
}

fn without_received_at(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("received_at").expect("received_at");
    v
}

#[tokio::test]
async fn stores_the_vector_items() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = SqliteSink::open(dir.path(), "acme", Layout::Record).unwrap();
    assert_eq!(sink.path(), dir.path().join("acme.sqlite3"));
    sink.write(vec![mixed_kinds_batch()]).await.unwrap();

    let stored = rows(sink.path());
    let expected = mixed_kinds_expected();
    assert_eq!(stored.len(), expected.len());
    for want in expected {
        let rk = want["rk"]["S"].as_str().unwrap();
        assert_eq!(without_received_at(stored[rk].clone()), want, "rk {rk}");
    }
}

#[tokio::test]
async fn a_resent_batch_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = SqliteSink::open(dir.path(), "acme", Layout::Record).unwrap();
    sink.write(vec![mixed_kinds_batch()]).await.unwrap();
    // The resend arrives later (a newer received_at), and twice in one write.
    let resent = vector_batch("batch_mixed_kinds", 1_764_000_099_999);
    sink.write(vec![resent.clone(), resent]).await.unwrap();
    let stored = rows(sink.path());
    assert_eq!(stored.len(), mixed_kinds_expected().len());
    assert!(stored.values().all(|v| v["received_at"]["N"] == "1764000099999"));
}

#[tokio::test]
async fn packed_a_batch_is_one_row_whose_lines_are_its_record_items() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = SqliteSink::open(dir.path(), "acme", Layout::Packed).unwrap();
    sink.write(vec![mixed_kinds_batch()]).await.unwrap();
    // Resent, twice in one write and once more later: still one row.
    let resent = vector_batch("batch_mixed_kinds", 1_764_000_099_999);
    sink.write(vec![resent.clone(), resent.clone()]).await.unwrap();
    sink.write(vec![resent]).await.unwrap();
    let stored = rows(sink.path());
    assert_eq!(stored.len(), 1);
    let (rk, item) = stored.into_iter().next().unwrap();
    let expected = mixed_kinds_expected();
    assert_eq!(item["count"]["N"], expected.len().to_string());
    let t_min = expected
        .iter()
        .map(|i| i["ts"]["N"].as_str().unwrap().parse::<u64>().unwrap())
        .min();
    assert_eq!(rk, format!("{:013}#{:020}", t_min.unwrap(), 77));
    // The records, read with nothing but zstd and a JSON parser.
    let records = crate::sink::tests::base64_decode(item["records"]["B"].as_str().unwrap());
    let lines = zstd::bulk::decompress(&records, 1 << 20).unwrap();
    let lines: Vec<Value> = String::from_utf8(lines)
        .unwrap()
        .lines()
        .map(|l| without_received_at(serde_json::from_str(l).unwrap()))
        .collect();
    // In time order: the order of the record layout's keys.
    let mut plain: Vec<Value> = expected.iter().map(awp_store::plain::value_to_plain).collect();
    plain.sort_by_key(|i| i["rk"].as_str().unwrap().to_owned());
    assert_eq!(lines, plain);
    // A refused batch's packed row is what discard removes.
    sink.discard(&mixed_kinds_batch()).await.unwrap();
    assert!(rows(sink.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_reopening_and_settings_hold() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("nested").join("data");
    {
        let mut sink = SqliteSink::open(&data_dir, "acme", Layout::Record).unwrap();
        sink.write(vec![vector_batch("batch_one_location", 1)]).await.unwrap();
        sink.write(Vec::new()).await.unwrap();
    }
    let mut sink = SqliteSink::open(&data_dir, "acme", Layout::Record).unwrap();
    assert_eq!(rows(sink.path()).len(), 1);
    sink.write(vec![mixed_kinds_batch()]).await.unwrap();
    assert_eq!(rows(sink.path()).len(), 1 + mixed_kinds_expected().len());

    let store = sink.store.lock().unwrap();
    let mode: String = store.conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    let sync: i64 = store.conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
    assert_eq!(sync, 2, "synchronous=FULL");
}

#[tokio::test]
async fn a_database_of_the_earlier_layout_is_written_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acme.sqlite3");
    Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TABLE items (device TEXT NOT NULL, rk TEXT NOT NULL, item TEXT NOT NULL, \
             PRIMARY KEY (device, rk)) WITHOUT ROWID",
        )
        .unwrap();
    let mut sink = SqliteSink::open(dir.path(), "acme", Layout::Record).unwrap();
    sink.write(vec![mixed_kinds_batch()]).await.unwrap();
    sink.write(vec![mixed_kinds_batch()]).await.unwrap();
    assert_eq!(rows(&path).len(), mixed_kinds_expected().len());
}

#[tokio::test]
async fn files_are_readable_by_the_gateways_user_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut sink = SqliteSink::open(&data_dir, "acme", Layout::Record).unwrap();
    sink.write(vec![mixed_kinds_batch()]).await.unwrap();
    assert_eq!(mode(&data_dir), 0o700);
    for file in ["acme.sqlite3", "acme.sqlite3-wal", "acme.sqlite3-shm"] {
        assert_eq!(mode(&data_dir.join(file)), 0o600, "{file}");
    }
}

#[tokio::test]
async fn a_discarded_batch_leaves_no_row() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = SqliteSink::open(dir.path(), "acme", Layout::Record).unwrap();
    sink.write(vec![mixed_kinds_batch(), vector_batch("batch_one_location", 1)])
        .await
        .unwrap();
    sink.discard(&mixed_kinds_batch()).await.unwrap();
    let left = rows(sink.path());
    assert_eq!(left.len(), 1);
    assert!(left.values().all(|v| v["seq"]["N"] == "1"));
}

#[tokio::test]
async fn tenants_get_their_own_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = SqliteSink::open(dir.path(), "acme", Layout::Record).unwrap();
    let b = SqliteSink::open(dir.path(), "partner_b", Layout::Record).unwrap();
    a.write(vec![mixed_kinds_batch()]).await.unwrap();
    assert_eq!(rows(b.path()).len(), 0);
}

#[test]
fn configuration_problems_are_fatal() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        SqliteSink::open(dir.path(), "../x", Layout::Record)
            .err()
            .unwrap()
            .is_fatal()
    );
    std::fs::write(dir.path().join("junk.sqlite3"), vec![0x5a; 8192]).unwrap();
    let err = SqliteSink::open(dir.path(), "junk", Layout::Record).err().unwrap();
    assert!(err.is_fatal(), "{err}");
    // The store's own error is kept as the cause, and the log line has it.
    let cause = std::error::Error::source(&err).expect("rusqlite's error as the source");
    let sqlite = cause.downcast_ref::<rusqlite::Error>().expect("a rusqlite::Error");
    assert_eq!(sqlite.sqlite_error_code(), Some(ErrorCode::NotADatabase));
    assert!(
        err.report().contains("junk.sqlite3") && err.report().contains("not a database"),
        "{}",
        err.report()
    );
}

#[tokio::test]
async fn a_held_lock_is_retryable() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = SqliteSink::open(dir.path(), "acme", Layout::Record).unwrap();
    sink.store
        .lock()
        .unwrap()
        .conn
        .busy_timeout(Duration::from_millis(50))
        .unwrap();
    let other = Connection::open(sink.path()).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let err = sink.write(vec![mixed_kinds_batch()]).await.unwrap_err();
    assert!(!err.is_fatal(), "{err}");
    assert!(err.report().contains("database is locked"), "{}", err.report());
    other.execute_batch("ROLLBACK").unwrap();
    sink.write(vec![mixed_kinds_batch()]).await.unwrap();
    assert_eq!(rows(sink.path()).len(), mixed_kinds_expected().len());
}
