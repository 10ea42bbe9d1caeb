//! The SQLite layout: a tenant's items in `<data_dir>/<tenant>.sqlite3`, one
//! row per record, keyed like DynamoDB:
//!
//! ```sql
//! CREATE TABLE items (device TEXT NOT NULL, rk TEXT NOT NULL, item TEXT NOT NULL,
//!                     UNIQUE (device, rk))
//! ```
//!
//! `item` is the whole item as DynamoDB JSON ([`crate::json`]). Rows are
//! written with an upsert on (`device`, `rk`), so a batch delivered twice is
//! stored once. The rows live in a rowid table with a unique index on the
//! key: at about 330 bytes a row they are too large for a `WITHOUT ROWID`
//! table to be the faster choice (SQLite advises those for rows under a
//! twentieth of a page), measured in `docs/performance.md`. Databases made
//! by earlier versions (a `WITHOUT ROWID` table with the same columns and
//! key) are read and written the same way.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

/// Creates the table if it is not there.
pub const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS items (device TEXT NOT NULL, rk TEXT NOT NULL, \
                                item TEXT NOT NULL, UNIQUE (device, rk))";

/// Writes one item: `?1` device, `?2` rk, `?3` the item's JSON.
pub const UPSERT: &str = "INSERT INTO items (device, rk, item) VALUES (?1, ?2, ?3) \
                          ON CONFLICT(device, rk) DO UPDATE SET item = excluded.item";

/// Removes one item: `?1` device, `?2` rk.
pub const DELETE: &str = "DELETE FROM items WHERE device = ?1 AND rk = ?2";

/// A device's items: `?1` device; rows of (rk, item).
pub const DEVICE_ITEMS: &str = "SELECT rk, item FROM items WHERE device = ?1 ORDER BY rk";

/// The items of one device (`?1`) or every device (`?1` NULL) whose `rk`
/// is in `[?2, ?3)`, as item JSON, in key order per device (what
/// [`crate::dedupe::Dedupe`] needs).
pub const ITEMS_IN_RANGE: &str = "SELECT item FROM items WHERE (?1 IS NULL OR device = ?1) AND rk >= ?2 AND rk < ?3 \
                                  ORDER BY device, rk";

/// The database file of `tenant` under `data_dir`.
pub fn database_path(data_dir: &Path, tenant: &str) -> PathBuf {
    data_dir.join(format!("{tenant}.sqlite3"))
}

/// Opens a tenant's database for reading only (reports, verification); the
/// gateway may go on writing meanwhile (WAL).
pub fn open_read_only(data_dir: &Path, tenant: &str) -> rusqlite::Result<Connection> {
    Connection::open_with_flags(database_path(data_dir, tenant), OpenFlags::SQLITE_OPEN_READ_ONLY)
}

/// Calls `each` with the JSON of every item of `device` (or of every
/// device) whose `rk` is in `[low, high)`, one row at a time, in key order
/// per device: a whole table in bounded memory.
pub fn for_each_item<E: From<rusqlite::Error>>(
    conn: &Connection,
    device: Option<&str>,
    (low, high): (&str, &str),
    mut each: impl FnMut(&str) -> Result<(), E>,
) -> Result<(), E> {
    let mut stmt = conn.prepare(ITEMS_IN_RANGE)?;
    let mut rows = stmt.query(rusqlite::params![device, low, high])?;
    while let Some(row) = rows.next()? {
        let item: String = row.get(0)?;
        each(&item)?;
    }
    Ok(())
}

/// A device's items as (rk, item JSON), in key order.
pub fn device_items(conn: &Connection, device: &str) -> rusqlite::Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare_cached(DEVICE_ITEMS)?;
    let rows = stmt.query_map([device], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}
