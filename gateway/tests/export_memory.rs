//! `gateway export` streams: a table many times larger than the memory it
//! is given exports whole, in either layout.
//!
//! This test binary runs under a capped global allocator (`cap`): during
//! the export the cap is what was allocated before plus 8 MiB, while the
//! export is 25 MB of lines (and several times that as JSON values), so
//! holding the table's records would fail an allocation and abort the test. (SQLite allocates its page cache with
//! its own malloc, outside the cap.)

use std::alloc::System;
use std::sync::Arc;

use awp_gateway::cmd::export::{Selection, export};
use awp_gateway::config::{Config, Layout};
use awp_protocol::{Limits, Platform, PreparedBatch};
use awp_store::packed::{PackError, Packer};
use awp_store::{AcceptedBatch, JsonItems, Origin};
use cap::Cap;

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// What the export may allocate beyond what was allocated before it.
const EXPORT_BUDGET: usize = 8 << 20;

const BATCHES: u64 = 100;
const RECORDS_PER_BATCH: usize = 1000;

/// A tenant database of `BATCHES` typical 1,000-record batches, written in
/// `layout` the way the SQLite sink writes it.
fn database(dir: &std::path::Path, layout: Layout) {
    let mut db = rusqlite::Connection::open(awp_store::sqlite::database_path(dir, "acme")).unwrap();
    db.execute_batch(awp_store::sqlite::CREATE_TABLE).unwrap();
    let tx = db.transaction().unwrap();
    {
        let mut upsert = tx.prepare(awp_store::sqlite::UPSERT).unwrap();
        let mut packer = Packer::new().unwrap();
        let mut json = JsonItems::new();
        let mut text = String::new();
        let limits = Limits {
            max_batch_records: RECORDS_PER_BATCH as u32,
            ..Limits::DEFAULT
        };
        for seq in 1..=BATCHES {
            let origin = Arc::new(Origin {
                device_id: format!("device-{}", seq % 10),
                platform: Platform::Linux,
                agent_version: "1.0".into(),
            });
            let content = PreparedBatch::new(
                &awp_protocol::sample::typical_batch(seq, RECORDS_PER_BATCH, seq),
                &limits,
            )
            .unwrap();
            let batch = AcceptedBatch::accept(origin, seq, 1_764_000_000_000, None, content.content().clone(), &limits)
                .unwrap();
            match layout {
                Layout::Record => json
                    .render::<awp_protocol::BatchError>(&batch, |item| {
                        upsert
                            .execute(rusqlite::params![item.device, item.rk, item.json])
                            .unwrap();
                        Ok(())
                    })
                    .unwrap(),
                Layout::Packed => packer
                    .pack::<PackError>(&batch, |item| {
                        text.clear();
                        item.push_json(&mut text);
                        upsert
                            .execute(rusqlite::params![batch.device_id(), item.rk, text])
                            .unwrap();
                        Ok(())
                    })
                    .unwrap(),
            }
        }
    }
    tx.commit().unwrap();
}

/// Counts the lines and their bytes, keeping nothing.
#[derive(Default)]
struct Counted {
    lines: u64,
    bytes: u64,
}

impl std::io::Write for Counted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.lines += buf.iter().filter(|b| **b == b'\n').count() as u64;
        self.bytes += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_table_exports_whole_in_a_few_mib_in_either_layout() {
    for layout in [Layout::Record, Layout::Packed] {
        let dir = tempfile::tempdir().unwrap();
        database(dir.path(), layout);
        let config = Config::development(dir.path().to_path_buf(), "0123456789abcdef".into());
        let mut config = config;
        config.tenants[0].id = "acme".into();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut out = Counted::default();
        ALLOCATOR.set_limit(ALLOCATOR.allocated() + EXPORT_BUDGET).unwrap();
        let written = runtime.block_on(export(&config, "acme", &Selection::default(), &mut out));
        ALLOCATOR.set_limit(usize::MAX).unwrap();
        let written = written.unwrap();
        let total = BATCHES * RECORDS_PER_BATCH as u64;
        assert_eq!((written, out.lines), (total, total), "{layout:?}");
        assert!(out.bytes > 2 * EXPORT_BUDGET as u64, "{layout:?}: {} bytes", out.bytes);
        // The cap holds: the lines alone would not have fitted under it.
        ALLOCATOR.set_limit(ALLOCATOR.allocated() + EXPORT_BUDGET).unwrap();
        let refused = Vec::<u8>::new().try_reserve(out.bytes as usize).is_err();
        ALLOCATOR.set_limit(usize::MAX).unwrap();
        assert!(refused);
    }
}
