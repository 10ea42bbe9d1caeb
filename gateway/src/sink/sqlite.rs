//! A tenant's items in a local SQLite file: `<data_dir>/<tenant_id>.sqlite3`.
//!
//! One table, one row per record, keyed like DynamoDB:
//!
//! ```sql
//! CREATE TABLE items (device TEXT NOT NULL, rk TEXT NOT NULL, item TEXT NOT NULL,
//!                     PRIMARY KEY (device, rk)) WITHOUT ROWID
//! ```
//!
//! `item` is the whole item in DynamoDB JSON (AWP1.md §7, the form of the
//! `items` in `protocol/tests/vectors.json`). A row is written with an
//! upsert on (`device`, `rk`), so a batch delivered twice is stored once.
//!
//! # Durability
//!
//! The database runs with `journal_mode=WAL` and `synchronous=FULL`: every
//! commit appends to the write-ahead log and fsyncs it before `COMMIT`
//! returns, so a committed write survives a crash or a power loss. Each
//! [`TenantSink::write`] call is one transaction (group commit: the gateway
//! batches many agents' batches into one call, so one fsync covers them
//! all), and returns `Ok` only after its commit, which is what makes ACK OK
//! honest. Readers (the `sqlite3` shell, reports) do not block the gateway
//! in WAL mode; a writer that holds the lock makes the gateway wait up to
//! the busy timeout, then answer ACK RETRY.
//!
//! # Querying
//!
//! ```sh
//! sqlite3 data/acme.sqlite3 "select device, rk, item from items limit 5"
//! # records per kind
//! sqlite3 data/acme.sqlite3 "select json_extract(item, '$.kind.S') as kind, count(*) from items group by kind"
//! # a device's last locations (rk starts with the 13-digit record time, so this reads the key in order)
//! sqlite3 data/acme.sqlite3 "select json_extract(item, '$.ts.N') as ts, json_extract(item, '$.lat.N') as lat,
//!     json_extract(item, '$.lon.N') as lon from items
//!     where device = 'dev-0001' and json_extract(item, '$.kind.S') = 'location' order by rk desc limit 10"
//! # one hour of a device's records, by key range (unix ms)
//! sqlite3 data/acme.sqlite3 "select rk, json_extract(item, '$.kind.S') from items
//!     where device = 'dev-0001' and rk >= '1764000000000' and rk < '1764003600000'"
//! # an EVENT attribute
//! sqlite3 data/acme.sqlite3 "select json_extract(item, '$.attrs.M.level.N') from items
//!     where json_extract(item, '$.name.S') = 'battery'"
//! ```
//!
//! Numbers are DynamoDB `N` strings; `cast(json_extract(item, '$.lat.N') as real)`
//! gives a number. `B` values are base64.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, TransactionBehavior, params};

use super::{SinkError, TenantSink};
use crate::item::Item;

/// How long a write waits for a lock held by another connection (a shell,
/// a checkpoint) before failing with a retryable error.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS items (device TEXT NOT NULL, rk TEXT NOT NULL, \
                            item TEXT NOT NULL, PRIMARY KEY (device, rk)) WITHOUT ROWID";

const UPSERT: &str = "INSERT INTO items (device, rk, item) VALUES (?1, ?2, ?3) \
                      ON CONFLICT(device, rk) DO UPDATE SET item = excluded.item";

/// One tenant's SQLite store.
#[derive(Clone, Debug)]
pub struct SqliteSink {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl SqliteSink {
    /// Opens (creating it and `data_dir` if missing) the tenant's database
    /// `data_dir/<tenant_id>.sqlite3`. Blocking: call it at startup or on a
    /// blocking thread.
    pub fn open(data_dir: &Path, tenant_id: &str) -> Result<SqliteSink, SinkError> {
        if !awp_protocol::is_valid_tenant_id(tenant_id) {
            return Err(SinkError::Fatal(format!("invalid tenant id {tenant_id:?}")));
        }
        std::fs::create_dir_all(data_dir)
            .map_err(|e| SinkError::Fatal(format!("cannot create data directory {}: {e}", data_dir.display())))?;
        let path = data_dir.join(format!("{tenant_id}.sqlite3"));
        let conn = open_connection(&path).map_err(|e| sink_error(&path, e))?;
        Ok(SqliteSink {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        // Not durable the way the module promises: refuse rather than degrade.
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!("journal_mode is {mode}, WAL unavailable")),
        ));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(CREATE_TABLE)?;
    Ok(conn)
}

/// One transaction: every item or none.
fn write_items(conn: &mut Connection, items: &[Item]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut stmt = tx.prepare_cached(UPSERT)?;
        for item in items {
            let json = item.to_dynamodb_json().to_string();
            stmt.execute(params![item.device, item.rk, json])?;
        }
    }
    tx.commit()
}

/// Busy, locked, IO, full disk, out of memory: may succeed later. The rest
/// (corrupt file, read-only, permissions, schema) will not.
fn sink_error(path: &Path, e: rusqlite::Error) -> SinkError {
    let message = format!("sqlite {}: {e}", path.display());
    match e.sqlite_error_code() {
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::OutOfMemory,
        ) => SinkError::Retryable(message),
        _ => SinkError::Fatal(message),
    }
}

impl TenantSink for SqliteSink {
    async fn write(&mut self, items: Vec<Item>) -> Result<(), SinkError> {
        if items.is_empty() {
            return Ok(());
        }
        let conn = Arc::clone(&self.conn);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            // A panic elsewhere cannot leave a transaction open (Transaction
            // rolls back on drop), so a poisoned lock is still usable.
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            write_items(&mut conn, &items).map_err(|e| sink_error(&path, e))
        })
        .await
        .map_err(|e| SinkError::Fatal(format!("sqlite write task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::Value;

    use super::*;
    use crate::item::tests::{mixed_kinds_expected, mixed_kinds_items};

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
        let mut sink = SqliteSink::open(dir.path(), "acme").unwrap();
        assert_eq!(sink.path(), dir.path().join("acme.sqlite3"));
        sink.write(mixed_kinds_items()).await.unwrap();

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
        let mut sink = SqliteSink::open(dir.path(), "acme").unwrap();
        let items = mixed_kinds_items();
        sink.write(items.clone()).await.unwrap();
        // The resend arrives later: same keys, a newer received_at.
        let mut resent = items.clone();
        for item in &mut resent {
            for (name, value) in &mut item.attrs {
                if *name == "received_at" {
                    *value = crate::item::ItemValue::N("1764000099999".into());
                }
            }
        }
        sink.write(resent).await.unwrap();
        let stored = rows(sink.path());
        assert_eq!(stored.len(), items.len());
        assert!(stored.values().all(|v| v["received_at"]["N"] == "1764000099999"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn data_survives_reopening_and_settings_hold() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("nested").join("data");
        let items = mixed_kinds_items();
        {
            let mut sink = SqliteSink::open(&data_dir, "acme").unwrap();
            sink.write(items[..3].to_vec()).await.unwrap();
            sink.write(Vec::new()).await.unwrap();
        }
        let mut sink = SqliteSink::open(&data_dir, "acme").unwrap();
        assert_eq!(rows(sink.path()).len(), 3);
        sink.write(items[3..].to_vec()).await.unwrap();
        assert_eq!(rows(sink.path()).len(), items.len());

        let conn = sink.conn.lock().unwrap();
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
    }

    #[tokio::test]
    async fn tenants_get_their_own_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = SqliteSink::open(dir.path(), "acme").unwrap();
        let b = SqliteSink::open(dir.path(), "partner_b").unwrap();
        a.write(mixed_kinds_items()).await.unwrap();
        assert_eq!(rows(b.path()).len(), 0);
    }

    #[test]
    fn configuration_problems_are_fatal() {
        let dir = tempfile::tempdir().unwrap();
        assert!(SqliteSink::open(dir.path(), "../x").unwrap_err().is_fatal());
        std::fs::write(dir.path().join("junk.sqlite3"), vec![0x5a; 8192]).unwrap();
        let err = SqliteSink::open(dir.path(), "junk").unwrap_err();
        assert!(err.is_fatal(), "{err}");
    }

    #[tokio::test]
    async fn a_held_lock_is_retryable() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = SqliteSink::open(dir.path(), "acme").unwrap();
        sink.conn
            .lock()
            .unwrap()
            .busy_timeout(Duration::from_millis(50))
            .unwrap();
        let other = Connection::open(sink.path()).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let err = sink.write(mixed_kinds_items()).await.unwrap_err();
        assert!(!err.is_fatal(), "{err}");
        other.execute_batch("ROLLBACK").unwrap();
        sink.write(mixed_kinds_items()).await.unwrap();
        assert_eq!(rows(sink.path()).len(), mixed_kinds_items().len());
    }
}
