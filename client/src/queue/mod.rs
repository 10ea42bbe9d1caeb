//! The queue on the device: records pushed by the app, sealed into batches,
//! each batch kept until the gateway answers it (ACK OK or REJECTED).
//!
//! ```text
//!  push(record) ──► unsealed records ──seal()──► sealed batches ──next_unsent()──► the engine
//!                   (in push order)     seq, fixed   (in seal order)                 │
//!                                                          ▲                        │ ACK OK / REJECTED
//!                                                          └──── done(seq) ◄────────┘
//! ```
//!
//! Two queues take the same calls ([`Queue`]): [`DiskQueue`], a segmented
//! append-only log that survives the process being killed (its format and
//! guarantees are in `disk/mod.rs`), and [`MemoryQueue`], for the load
//! simulator and tests.
//!
//! What both promise:
//! - a batch's `seq` and content are fixed when it is sealed; every call
//!   of [`Queue::next_unsent`] for it gives the same bytes;
//! - `seq` never repeats for a queue: each is above the last one and at
//!   least the clock in unix microseconds, so a queue made anew (an app
//!   reinstalled) starts above anything it sent before;
//! - a batch is handed out once per [`Queue::rewind`] (one connection),
//!   oldest first, until [`Queue::done`];
//! - the queue is bounded in bytes ([`QueueOptions::max_bytes`]): at the cap
//!   the oldest batches go, and the records dropped are counted.

mod disk;
mod memory;

use std::time::{Duration, Instant};

use bytes::Bytes;

pub use disk::DiskQueue;
pub use memory::MemoryQueue;

use crate::record::Record;

/// A batch sealed in the queue: its `seq` and content never change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedBatch {
    /// Its seq (≥ 1).
    pub seq: u64,
    /// How many records it holds.
    pub records: u32,
    /// The BATCH payload after `seq`, checked as the gateway checks it.
    pub content: Bytes,
}

/// Where a batch is sealed: at the first of these reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealLimits {
    /// Records in one batch (WELCOME's `max_batch_records` caps it).
    pub max_records: u32,
    /// Bytes of content in one batch. AWP/1 promises every gateway takes
    /// frames of 65,536 bytes, so a batch sealed within that is taken by
    /// whichever gateway the agent reaches later.
    pub max_bytes: usize,
}

impl SealLimits {
    /// How many of the oldest unsealed records (their sizes in a batch, in
    /// order) one batch takes, and their bytes: at least one, whatever its
    /// size, if there is one.
    pub(crate) fn take(&self, sizes: impl Iterator<Item = usize>) -> (usize, usize) {
        let mut take = 0usize;
        let mut bytes = 0usize;
        for n in sizes {
            if take > 0 && (take as u32 >= self.max_records || bytes + n > self.max_bytes) {
                break;
            }
            take += 1;
            bytes += n;
        }
        (take, bytes)
    }
}

impl Default for SealLimits {
    fn default() -> SealLimits {
        SealLimits {
            max_records: 500,
            max_bytes: 60_000,
        }
    }
}

/// How large and how old the queue may grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueOptions {
    /// Bytes the queue may hold (on disk, or in memory). At the cap the
    /// oldest batches go.
    pub max_bytes: u64,
    /// Batches older than this go (by when they were written), sent or not.
    pub max_age: Duration,
    /// Where the queue seals on its own (when a segment fills).
    pub seal: SealLimits,
    /// The disk queue's segment size.
    pub segment_bytes: u64,
}

impl Default for QueueOptions {
    fn default() -> QueueOptions {
        QueueOptions {
            max_bytes: 64 << 20,
            max_age: Duration::from_secs(7 * 24 * 3600),
            seal: SealLimits::default(),
            segment_bytes: 1 << 20,
        }
    }
}

/// What is waiting to be sealed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unsealed {
    /// Records.
    pub records: u32,
    /// Their bytes in a batch, about.
    pub bytes: usize,
    /// When the oldest of them was pushed (this process's clock).
    pub oldest: Option<Instant>,
}

/// The queue's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    /// Bytes held (the disk queue's files, or the memory queue's contents).
    pub bytes: u64,
    /// Records pushed and not yet sealed.
    pub unsealed_records: u64,
    /// Sealed batches not yet answered, of those the queue has read.
    pub pending_batches: u64,
    /// Records dropped at the caps (or unreadable) since the queue was made
    /// (kept across restarts by the disk queue).
    pub dropped_records: u64,
    /// Segments found unreadable and removed (a header cut short by a power
    /// cut, a file removed from outside): their records are not counted.
    pub unreadable_segments: u64,
}

/// Records dropped at a cap are told to the gateway as an EVENT record of
/// this name in the queue (attributes `records`, `dropped_total`, `reason`).
pub(crate) const DROPPED_EVENT: &str = "awp.queue.dropped";

/// Bytes kept free at the cap for the event that tells of a drop.
pub(crate) const DROPPED_EVENT_ROOM: u64 = 128;

/// The queue's calls; see the module doc for what every queue promises.
pub trait Queue: Send {
    /// Appends a record. For the disk queue it is written to the OS when
    /// this returns: it survives the process being killed.
    fn push(&mut self, record: &Record) -> Result<(), QueueError>;

    /// Appends a batch already made (its content, checked): sealed at once.
    /// Returns its seq.
    fn push_sealed(&mut self, content: Bytes, records: u32) -> Result<u64, QueueError>;

    /// What waits to be sealed.
    fn unsealed(&self) -> Unsealed;

    /// Seals the oldest unsealed records (within `limits`) into a batch,
    /// if there are any. Returns its seq.
    fn seal(&mut self, limits: SealLimits) -> Result<Option<u64>, QueueError>;

    /// Seals from now on within `limits` when the queue seals on its own
    /// (a full segment): the gateway's WELCOME may allow fewer records.
    fn set_seal_limits(&mut self, limits: SealLimits);

    /// The oldest batch not yet answered nor handed out since the last
    /// [`Queue::rewind`], if one is ready (for the disk queue: its seal is
    /// on disk, [`Queue::sync`]).
    fn next_unsent(&mut self) -> Result<Option<SealedBatch>, QueueError>;

    /// A new connection: every batch not yet answered is to be sent again.
    fn rewind(&mut self);

    /// The gateway answered `seq` for good (ACK OK or REJECTED): it leaves
    /// the queue. Unknown seqs (dropped at a cap meanwhile) are ignored.
    fn done(&mut self, seq: u64) -> Result<(), QueueError>;

    /// What makes everything written so far survive a power cut, to run
    /// outside the queue's lock ([`SyncJob::run`], then [`Queue::synced`]).
    /// `None` if there is nothing to do.
    fn sync_job(&mut self) -> Result<Option<SyncJob>, QueueError>;

    /// A [`SyncJob`] finished: what it covered is on disk.
    fn synced(&mut self, job: SyncMark);

    /// Drops what is older than the age cap.
    fn expire(&mut self) -> Result<(), QueueError>;

    /// Whether every record pushed was sealed and answered.
    fn is_empty(&self) -> bool;

    /// The counters.
    fn stats(&self) -> QueueStats;

    /// Syncs now (the job, under the caller's lock): tests and shutdown.
    fn sync(&mut self) -> Result<(), QueueError> {
        if let Some(job) = self.sync_job()? {
            let mark = job.run()?;
            self.synced(mark);
        }
        Ok(())
    }
}

/// Files to `fdatasync`, and how far that makes the queue durable.
#[derive(Debug)]
pub struct SyncJob {
    pub(crate) files: Vec<std::fs::File>,
    pub(crate) dir: Option<std::path::PathBuf>,
    pub(crate) mark: SyncMark,
}

/// How far a [`SyncJob`] made the queue durable: a place in the log, and
/// how many of the directory's changes (files made or removed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct SyncMark {
    pub(crate) segment: u64,
    pub(crate) offset: u64,
    pub(crate) dir_changes: u64,
}

impl SyncJob {
    /// Syncs the files (and the directory, where files came or went).
    pub fn run(self) -> Result<SyncMark, QueueError> {
        for file in &self.files {
            file.sync_data().map_err(|source| QueueError::Io {
                what: "syncing a segment",
                path: self.dir.clone().unwrap_or_default(),
                source,
            })?;
        }
        if let Some(dir) = &self.dir {
            sync_dir(dir)?;
        }
        Ok(self.mark)
    }
}

pub(crate) fn sync_dir(dir: &std::path::Path) -> Result<(), QueueError> {
    // A directory's entries (files made, renamed, removed) are durable once
    // the directory itself is synced (Linux, Android; a no-op elsewhere).
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| QueueError::Io {
            what: "syncing the directory",
            path: dir.to_owned(),
            source,
        })?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// What went wrong in the queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A file could not be read or written.
    #[error("queue {}: {what}: {source}", path.display())]
    Io {
        /// What the queue was doing.
        what: &'static str,
        /// The file or directory.
        path: std::path::PathBuf,
        /// The OS's error.
        #[source]
        source: std::io::Error,
    },
    /// The directory holds something that is not a queue of this version.
    #[error("queue {}: {what}", path.display())]
    Format {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// The record or batch is larger than the queue may ever hold.
    #[error("{len} bytes do not fit in a queue of {max} bytes")]
    TooLarge {
        /// Its size.
        len: u64,
        /// The queue's cap.
        max: u64,
    },
    /// The options cannot work.
    #[error("queue options: {0}")]
    Options(String),
}

impl QueueError {
    /// Whether the disk is full (the push failed, nothing queued was harmed).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, QueueError::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull
            || source.raw_os_error() == Some(28))
    }
}

/// The next seq after `last`: above it, and at least the clock in unix
/// microseconds (so a queue made anew starts above what an earlier one sent,
/// unless the clock went back).
pub(crate) fn next_seq(last: u64) -> u64 {
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    last.saturating_add(1).max(now_us).max(1)
}

/// The event record telling the gateway that `records` were dropped just
/// now, `total` since the queue was made. The total is what counts: an
/// event may itself be dropped at a later cap, and the next one's total
/// covers it (a dashboard reads the device's highest `dropped_total`).
pub(crate) fn dropped_event(records: u64, total: u64, reason: &str) -> Record {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
    let int = |n: u64| awp_protocol::AttrValue::Int(i64::try_from(n).unwrap_or(i64::MAX));
    Record::event(
        now_ms,
        DROPPED_EVENT,
        [
            ("records", int(records)),
            ("dropped_total", int(total)),
            ("reason", awp_protocol::AttrValue::String(reason.into())),
        ],
    )
    .expect("a well-formed event")
}

/// Writes the content of a batch made of `records`, checked as the gateway
/// checks it.
pub(crate) fn batch_content(records: &[awp_protocol::RecordParts<'_>]) -> Result<Bytes, String> {
    let mut content = bytes::BytesMut::new();
    awp_protocol::content_from_parts(records, &mut content);
    let limits = awp_protocol::Limits {
        max_batch_records: u32::try_from(records.len()).unwrap_or(u32::MAX).max(1),
        ..awp_protocol::Limits::DEFAULT
    };
    awp_protocol::PreparedBatch::from_content(content.freeze(), &limits)
        .map(|p| p.content().clone())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
#[path = "queue_test.rs"]
mod tests;
