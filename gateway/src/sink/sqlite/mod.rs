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

mod writer;

#[cfg(test)]
mod sqlite_test;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use awp_store::packed::Packer;
use awp_store::sqlite::{CREATE_TABLE, database_path};
use awp_store::{AcceptedBatch, JsonItems};
use rusqlite::{Connection, ErrorCode};

use super::{SinkError, TenantSink};
use crate::config::Layout;

use writer::{delete_batch, write_batches};

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
            return Err(SinkError::fatal(format!("invalid tenant id {tenant_id:?}")));
        }
        crate::files::create_private_dir(data_dir)
            .map_err(|e| SinkError::fatal_from(format!("cannot create data directory {}", data_dir.display()), e))?;
        let path = database_path(data_dir, tenant_id);
        // The records are the agents' users' data: readable by the gateway's
        // user only. SQLite gives the WAL and shared-memory files the mode
        // of the database file.
        crate::files::create_private_file(&path)
            .map_err(|e| SinkError::fatal_from(format!("cannot create {}", path.display()), e))?;
        let conn = open_connection(&path).map_err(|e| sink_error(&path, e))?;
        let packer = match layout {
            Layout::Record => None,
            Layout::Packed => Some(Packer::new().map_err(|e| SinkError::fatal_from("the packer", e))?),
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

/// Busy, locked, IO, full disk, out of memory: may succeed later. The rest
/// (corrupt file, read-only, permissions, schema) will not.
fn sink_error(path: &Path, e: rusqlite::Error) -> SinkError {
    let message = format!("sqlite {}", path.display());
    match e.sqlite_error_code() {
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::OutOfMemory,
        ) => SinkError::retryable_from(message, e),
        _ => SinkError::fatal_from(message, e),
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
        .map_err(|e| SinkError::fatal_from("sqlite write task failed", e))?
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
        .map_err(|e| SinkError::fatal_from("sqlite discard task failed", e))?
    }
}
