//! A tenant's items in a local SQLite file, `<data_dir>/<tenant_id>.sqlite3`,
//! in the layout of `awp_store::sqlite`: one row per record, `(device, rk,
//! item)` with `item` the whole item as DynamoDB JSON, unique on
//! `(device, rk)` and written with an upsert, so a batch delivered twice is
//! stored once.
//!
//! # Durability
//!
//! The database runs with `journal_mode=WAL` and `synchronous=FULL`: every
//! commit appends to the write-ahead log and fsyncs it before `COMMIT`
//! returns, so a committed write survives a crash or a power loss. Each
//! [`TenantSink::write`] call is one transaction (group commit: the writer
//! hands over many agents' batches at once, so one fsync covers them all),
//! and returns `Ok` only after its commit, which is what makes ACK OK
//! honest. Readers (the `sqlite3` shell, reports) do not block the gateway
//! in WAL mode; a writer that holds the lock makes the gateway wait up to
//! the busy timeout, then answer ACK RETRY.
//!
//! Each record is rendered into one reused text buffer and bound to a
//! cached statement: nothing is allocated per row.
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

use awp_store::packed::{PackError, Packer};
use awp_store::sqlite::{CREATE_TABLE, DELETE, UPSERT, database_path};
use awp_store::{AcceptedBatch, JsonItems};
use rusqlite::{Connection, ErrorCode, TransactionBehavior, params};

use super::{SinkError, TenantSink};
use crate::config::Layout;

/// How long a write waits for a lock held by another connection (a shell,
/// a checkpoint) before failing with a retryable error.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The page size of new databases. Items are about 330 bytes and arrive
/// in clusters of keys (a device's batches), so large pages take many rows
/// per page write; measured in `docs/performance.md`.
const PAGE_SIZE: u32 = 64 * 1024;

/// SQLite's page cache per tenant database: the unique index on
/// (device, rk) is written at scattered places, and it should stay cached.
const CACHE_BYTES: i64 = 64 * 1024 * 1024;

/// Checkpoint (copy the WAL into the database) after this much WAL: pages
/// written again before then are copied once.
const CHECKPOINT_BYTES: u32 = 128 * 1024 * 1024;

/// The connection and the buffers its rows are rendered into.
struct Store {
    conn: Connection,
    json: JsonItems,
    /// Set for a tenant with the packed layout.
    packer: Option<Packer>,
    packed_json: String,
}

/// One tenant's SQLite store.
#[derive(Clone)]
pub struct SqliteSink {
    store: Arc<Mutex<Store>>,
    path: PathBuf,
}

impl SqliteSink {
    /// Opens (creating it and `data_dir` if missing) the tenant's database
    /// `data_dir/<tenant_id>.sqlite3`. Blocking: call it at startup or on a
    /// blocking thread.
    pub fn open(data_dir: &Path, tenant_id: &str, layout: Layout) -> Result<SqliteSink, SinkError> {
        if !awp_protocol::is_valid_tenant_id(tenant_id) {
            return Err(SinkError::Fatal(format!("invalid tenant id {tenant_id:?}")));
        }
        crate::files::create_private_dir(data_dir)
            .map_err(|e| SinkError::Fatal(format!("cannot create data directory {}: {e}", data_dir.display())))?;
        let path = database_path(data_dir, tenant_id);
        // The records are the agents' users' data: readable by the gateway's
        // user only. SQLite gives the WAL and shared-memory files the mode
        // of the database file.
        crate::files::create_private_file(&path)
            .map_err(|e| SinkError::Fatal(format!("cannot create {}: {e}", path.display())))?;
        let conn = open_connection(&path).map_err(|e| sink_error(&path, e))?;
        let packer = match layout {
            Layout::Record => None,
            Layout::Packed => Some(Packer::new().map_err(|e| SinkError::Fatal(e.to_string()))?),
        };
        Ok(SqliteSink {
            store: Arc::new(Mutex::new(Store {
                conn,
                json: JsonItems::new(),
                packer,
                packed_json: String::new(),
            })),
            path,
        })
    }

    /// The database file.
    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Takes effect only on a database not yet written (a new file).
    conn.pragma_update(None, "page_size", PAGE_SIZE)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        // Not durable the way the module promises: refuse rather than degrade.
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!("journal_mode is {mode}, WAL unavailable")),
        ));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "cache_size", -(CACHE_BYTES / 1024))?;
    let page_size: u32 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
    conn.pragma_update(
        None,
        "wal_autocheckpoint",
        (CHECKPOINT_BYTES / page_size.max(512)).max(1),
    )?;
    // After a checkpoint the WAL file is cut back to this size.
    conn.pragma_update(None, "journal_size_limit", i64::from(CHECKPOINT_BYTES))?;
    conn.execute_batch(CREATE_TABLE)?;
    Ok(conn)
}

/// One transaction: every item of every batch, or none.
fn write_batches(store: &mut Store, batches: &[AcceptedBatch]) -> Result<(), WriteError> {
    let tx = store.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut stmt = tx.prepare_cached(UPSERT)?;
        for batch in batches {
            match &mut store.packer {
                None => store.json.render::<WriteError>(batch, |item| {
                    stmt.execute(params![item.device, item.rk, item.json])?;
                    Ok(())
                })?,
                Some(packer) => {
                    let text = &mut store.packed_json;
                    packer.pack::<WriteError>(batch, |item| {
                        text.clear();
                        item.push_json(text);
                        stmt.execute(params![batch.device_id(), item.rk, text.as_str()])?;
                        Ok(())
                    })?
                }
            }
        }
    }
    tx.commit()?;
    Ok(())
}

/// What can go wrong inside a write.
enum WriteError {
    Sqlite(rusqlite::Error),
    Batch(awp_protocol::BatchError),
    Pack(PackError),
}

impl From<PackError> for WriteError {
    fn from(e: PackError) -> Self {
        WriteError::Pack(e)
    }
}

impl WriteError {
    fn into_sink_error(self, path: &Path) -> SinkError {
        match self {
            WriteError::Sqlite(e) => sink_error(path, e),
            WriteError::Batch(e) => SinkError::from(e),
            WriteError::Pack(e) => SinkError::from(e),
        }
    }
}

impl From<rusqlite::Error> for WriteError {
    fn from(e: rusqlite::Error) -> Self {
        WriteError::Sqlite(e)
    }
}

impl From<awp_protocol::BatchError> for WriteError {
    fn from(e: awp_protocol::BatchError) -> Self {
        WriteError::Batch(e)
    }
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
    async fn write(&mut self, batches: Vec<AcceptedBatch>) -> Result<(), SinkError> {
        if batches.is_empty() {
            return Ok(());
        }
        let store = Arc::clone(&self.store);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            // A panic elsewhere cannot leave a transaction open (Transaction
            // rolls back on drop), so a poisoned lock is still usable.
            let mut store = store.lock().unwrap_or_else(PoisonError::into_inner);
            write_batches(&mut store, &batches).map_err(|e| e.into_sink_error(&path))
        })
        .await
        .map_err(|e| SinkError::Fatal(format!("sqlite write task failed: {e}")))?
    }

    async fn discard(&mut self, batch: &AcceptedBatch) -> Result<(), SinkError> {
        let store = Arc::clone(&self.store);
        let path = self.path.clone();
        let batch = batch.clone();
        tokio::task::spawn_blocking(move || {
            let mut store = store.lock().unwrap_or_else(PoisonError::into_inner);
            delete_batch(&mut store, &batch).map_err(|e| e.into_sink_error(&path))
        })
        .await
        .map_err(|e| SinkError::Fatal(format!("sqlite discard task failed: {e}")))?
    }
}

/// Deletes a batch's rows, in one transaction.
fn delete_batch(store: &mut Store, batch: &AcceptedBatch) -> Result<(), WriteError> {
    let tx = store.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut stmt = tx.prepare_cached(DELETE)?;
        match &mut store.packer {
            None => {
                for record in batch.records() {
                    stmt.execute(params![batch.device_id(), record?.key.to_string()])?;
                }
            }
            Some(packer) => packer.pack::<WriteError>(batch, |item| {
                stmt.execute(params![batch.device_id(), item.rk])?;
                Ok(())
            })?,
        }
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
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
        other.execute_batch("ROLLBACK").unwrap();
        sink.write(vec![mixed_kinds_batch()]).await.unwrap();
        assert_eq!(rows(sink.path()).len(), mixed_kinds_expected().len());
    }
}
