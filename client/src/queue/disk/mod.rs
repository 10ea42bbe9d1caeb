//! The queue on disk: a segmented append-only log in one directory.
//!
//! # Files
//!
//! - `0000000000000001.seg`, `…2.seg`, …: segments of about
//!   [`QueueOptions::segment_bytes`] (1 MiB), written only at their end; the
//!   newest is the *tail*. Their format is in `segment.rs`: a header, then
//!   entries (a record pushed, a seal making the oldest unsealed records a
//!   batch, a batch pushed whole, a seq floor), each framed with its length
//!   and a CRC-32C. A batch never spans segments: before a new segment is
//!   begun, the tail's unsealed records are sealed.
//! - `acks`: the seqs answered for good, 12 bytes each (`u64` seq, CRC-32C);
//!   rewritten without the seqs of removed segments when it grows.
//! - `dropped`: how many records the caps have dropped, ever, and the last
//!   segment dropped (written, synced and renamed into place before that
//!   segment is removed, so a kill in between neither loses nor doubles the
//!   count: the segment is removed at the next open).
//! - `lock`: held (an advisory file lock) while a client has the queue
//!   open: a second client on the same directory is refused, not let in to
//!   interleave its writes.
//!
//! Files are written through read-write handles at a known offset, never
//! append-only ones: cutting a partial write back (`set_len`) and syncing
//! work the same on Linux, Android, macOS and Windows.
//!
//! # What survives what
//!
//! - `push` returns once its entry is written to the OS (`write(2)`): the
//!   record survives the process being killed at any instant.
//! - A power cut (or an OS crash) can lose what was written since the last
//!   sync: the engine syncs (`fdatasync`) every second, so that is what a
//!   push may lose — never more, and never a record behind a synced one.
//! - A batch's seal is synced before the batch is first handed out, so a
//!   batch the gateway may have stored is never sealed again with another
//!   seq after a power cut: a resend is the same (device, seq, records).
//!   A sync that fails is asked again of the same files: nothing it was to
//!   cover counts as durable until one succeeds.
//! - Losing `acks` entries (a power cut) only sends their batches again,
//!   which the gateway stores once.
//!
//! # Start-up
//!
//! Opening reads each segment's 16-byte header, the tail in full (checking
//! every CRC: a torn tail, from a power cut, is cut back to its last whole
//! entry), `acks` and `dropped`. The other segments are read when the
//! sender reaches them. Nothing is synced at open: the first sync covers
//! whatever the last process left unsynced, before any batch is handed out.
//! A segment whose header is not a segment's (cut short or zeroed by a
//! power cut as it was made) is removed and counted; one of a newer format
//! version fails the open (a downgrade must not eat a newer client's queue).
//!
//! # Caps and damage
//!
//! At [`QueueOptions::max_bytes`] the oldest segment goes, sent or not, and
//! its unanswered records are counted as dropped; so do segments last
//! written longer ago than [`QueueOptions::max_age`]. The count is kept in
//! `dropped` and told to the gateway as an EVENT record in the queue
//! (`awp.queue.dropped`, with the count of this drop and the total since
//! the queue was made: an event dropped at a later cap is covered by the
//! next one's total). A batch that cannot be read back (damage) is dropped
//! and counted the same way, so that it never blocks the ones after it. A
//! full disk fails `push` with an error ([`QueueError::is_disk_full`]), its
//! partial entry cut away: nothing already queued is touched.
//!
//! A full disk must not stop delivery either, and delivery writes too (a
//! SEAL, an ack, a FLOOR). So the queue holds `reserve`, a file of
//! [`RESERVE_BYTES`] written in full: the first write the disk refuses
//! removes it, and the room it leaves is for those writes. Pushes are then
//! refused (disk full) until the reserve can be written again, which is
//! tried when a segment is removed, at open, and at a push every
//! [`RESERVE_RETRY`] (the room may come from elsewhere). An ack the disk
//! cannot take still frees its segment (unrecorded, the batch is sent again
//! after a restart and stored once).

mod segment;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use self::segment::{BatchRef, Entry, HEADER_LEN, HeaderError, Index, RecordRef};
use super::*;

/// The largest record or whole batch a push takes: well under what a
/// segment's reader takes for an entry (`segment::MAX_ENTRY`), and what a
/// gateway's default `max_frame_len` takes.
const MAX_PUSH: usize = 1 << 20;

/// One segment file.
struct Segment {
    id: u64,
    /// The highest seq used before it was made: its own are all above.
    floor: u64,
    len: u64,
    /// When it was last written (its mtime at start-up).
    modified: SystemTime,
    /// Read when first needed (the tail always is).
    index: Option<Index>,
}

/// The disk [`Queue`]; see the module doc.
pub struct DiskQueue {
    dir: PathBuf,
    options: QueueOptions,
    segments: VecDeque<Segment>,
    /// The tail, open for reading and writing, positioned at its end.
    tail: File,
    /// When each of the tail's unsealed records was pushed.
    unsealed_at: VecDeque<Instant>,
    /// Every byte of every segment.
    bytes: u64,
    acked: HashSet<u64>,
    /// Positioned at its end.
    acks: File,
    acks_entries: u64,
    /// Where each loaded batch is: (segment id, index in it).
    places: HashMap<u64, (u64, usize)>,
    last_seq: u64,
    dropped: u64,
    /// The last segment removed by a cap (`dropped`'s second number).
    dropped_through: u64,
    /// Segments found unreadable (a bad header, a file gone).
    unreadable_segments: u64,
    /// Bumped by each rewind.
    round: u64,
    /// Where `next_unsent` looks first: (segment id, batch index).
    cursor: (u64, usize),
    /// Written so far, and synced so far.
    written: SyncMark,
    synced: SyncMark,
    /// Segments no longer the tail (or left by the last process) whose
    /// writes up to the mark are not known to be synced.
    unsynced: Vec<(SyncMark, File)>,
    /// Files made or removed, counted; and how many of those a sync covered.
    dir_changes: u64,
    _lock: File,
    buf: Vec<u8>,
    /// Whether `reserve` is written in full.
    reserve_held: bool,
    /// Whether room was freed since the reserve could not be written.
    reserve_retry: bool,
    /// The last failed try to write it: when, and why.
    reserve_failed: Option<(Instant, std::io::ErrorKind)>,
}

/// Bytes held in `reserve` for the writes delivery needs on a full disk.
pub(crate) const RESERVE_BYTES: usize = 64 << 10;

/// How often a push tries again to write a reserve it could not.
pub(crate) const RESERVE_RETRY: Duration = Duration::from_secs(5);

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> QueueError {
    let path = path.to_owned();
    move |source| QueueError::Io { what, path, source }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016x}.seg"))
}

fn segment_id(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".seg")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Opens a file for reading and writing (never append-only: see the module doc).
fn open_rw(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}

/// Removes a file that may already be gone.
fn remove(path: &Path) -> Result<(), QueueError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("removing a segment", path)(e)),
        _ => Ok(()),
    }
}

impl DiskQueue {
    /// Opens the queue in `dir` (made if missing), recovering what the last
    /// process left: see the module doc.
    pub fn open(dir: impl AsRef<Path>, options: QueueOptions) -> Result<DiskQueue, QueueError> {
        let dir = dir.as_ref().to_owned();
        if options.segment_bytes < 4096 {
            return Err(QueueError::Options("segment_bytes must be at least 4096".into()));
        }
        if options.max_bytes < 2 * options.segment_bytes {
            return Err(QueueError::Options(format!(
                "queue_max_bytes ({}) must be at least two segments ({})",
                options.max_bytes,
                2 * options.segment_bytes
            )));
        }
        check_seal_limits(options.seal)?;
        std::fs::create_dir_all(&dir).map_err(io("making the directory", &dir))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("opening the lock file", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(QueueError::Options(format!(
                    "{} is open in another client (each queue directory takes one)",
                    dir.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io("locking the queue", &lock_path)(e)),
        }
        let (dropped, dropped_through) = read_dropped(&dir.join("dropped"))?;

        let mut ids = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io("listing the directory", &dir))? {
            let entry = entry.map_err(io("listing the directory", &dir))?;
            if let Some(id) = entry.file_name().to_str().and_then(segment_id) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let mut segments = VecDeque::new();
        let mut unsynced = Vec::new();
        let mut bytes = 0;
        let mut unreadable_segments = 0;
        for id in ids {
            let path = segment_path(&dir, id);
            if id <= dropped_through {
                // Dropped at a cap (and counted) by a process killed before
                // it could remove the file.
                remove(&path)?;
                continue;
            }
            let mut file = open_rw(&path).map_err(io("opening a segment", &path))?;
            let meta = file.metadata().map_err(io("reading a segment's size", &path))?;
            let mut head = [0u8; HEADER_LEN as usize];
            let header = match file.read_exact(&mut head) {
                Ok(()) => segment::parse_header(&head),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(HeaderError::NotASegment),
                Err(e) => return Err(io("reading a segment's header", &path)(e)),
            };
            let floor = match header {
                Ok(floor) => floor,
                Err(HeaderError::Version(v)) => {
                    return Err(QueueError::Format {
                        path,
                        what: format!("segment format version {v} (this client reads {})", segment::VERSION),
                    });
                }
                Err(HeaderError::NotASegment) => {
                    // Made, but its header never reached the disk whole: if
                    // anything followed it, it cannot be told from garbage.
                    if meta.len() > HEADER_LEN {
                        unreadable_segments += 1;
                    }
                    drop(file);
                    remove(&path)?;
                    continue;
                }
            };
            bytes += meta.len();
            unsynced.push((
                SyncMark {
                    segment: id,
                    offset: meta.len(),
                    dir_changes: 0,
                },
                file,
            ));
            segments.push_back(Segment {
                id,
                floor,
                len: meta.len(),
                modified: meta.modified().unwrap_or_else(|_| SystemTime::now()),
                index: None,
            });
        }

        let acks_path = dir.join("acks");
        let (acked, acks_entries) = read_acks(&acks_path)?;
        let mut acks = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&acks_path)
            .map_err(io("opening acks", &acks_path))?;
        acks.seek(SeekFrom::End(0)).map_err(io("opening acks", &acks_path))?;

        let mut queue = DiskQueue {
            dir: dir.clone(),
            options,
            tail: File::open(&lock_path).map_err(io("opening the lock file", &lock_path))?,
            segments,
            unsealed_at: VecDeque::new(),
            bytes,
            acked,
            acks,
            acks_entries,
            places: HashMap::new(),
            last_seq: 0,
            dropped,
            dropped_through,
            unreadable_segments,
            round: 1,
            cursor: (0, 0),
            written: SyncMark::default(),
            // Nothing is known durable: the first sync covers what the last
            // process wrote (its files, and the directory's entries).
            synced: SyncMark::default(),
            unsynced,
            dir_changes: 1,
            _lock: lock,
            buf: Vec::new(),
            reserve_held: false,
            reserve_retry: true,
            reserve_failed: None,
        };
        // A full disk at open: pushes wait, delivery goes on (it frees room).
        let _ = queue.hold_reserve();
        match queue.segments.back().map(|s| s.id) {
            Some(id) => queue.open_tail(id)?,
            None => queue.begin_segment(dropped_through + 1)?,
        }
        queue.cursor = (queue.front_id(), 0);
        queue.prune_acked();
        Ok(queue)
    }

    /// Reads the tail in full, cuts a torn end, and opens it for writing.
    fn open_tail(&mut self, id: u64) -> Result<(), QueueError> {
        let path = segment_path(&self.dir, id);
        let data = std::fs::read(&path).map_err(io("reading the tail segment", &path))?;
        let floor = self.segments.back().map_or(0, |s| s.floor);
        let index = Index::read(data.get(HEADER_LEN as usize..).unwrap_or_default());
        let mut file = open_rw(&path).map_err(io("opening the tail segment", &path))?;
        if index.damaged {
            // A torn tail (power cut mid-write): back to its last whole entry.
            file.set_len(index.valid_end)
                .map_err(io("cutting a torn tail", &path))?;
        }
        file.seek(SeekFrom::Start(index.valid_end))
            .map_err(io("opening the tail segment", &path))?;
        self.last_seq = floor.max(index.max_seq);
        let now = Instant::now();
        self.unsealed_at = index.unsealed.iter().map(|_| now).collect();
        let tail = self.segments.back_mut().expect("the tail exists");
        self.bytes = self.bytes - tail.len + index.valid_end;
        tail.len = index.valid_end;
        self.tail = file;
        self.written = SyncMark {
            segment: id,
            offset: index.valid_end,
            dir_changes: 0,
        };
        self.install_index(id, index);
        Ok(())
    }

    /// Makes segment `id` the new tail.
    fn begin_segment(&mut self, id: u64) -> Result<(), QueueError> {
        let path = segment_path(&self.dir, id);
        let mut file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io("making a segment", &path))?;
        if let Err(e) = file.write_all(&segment::header(self.last_seq)) {
            drop(file);
            let _ = std::fs::remove_file(&path);
            return Err(io("writing a segment's header", &path)(e));
        }
        let old = std::mem::replace(&mut self.tail, file);
        if let Some(previous) = self.segments.back() {
            let end = SyncMark {
                segment: previous.id,
                offset: previous.len,
                dir_changes: 0,
            };
            self.unsynced.push((end, old));
        }
        self.dir_changes += 1;
        self.bytes += HEADER_LEN;
        self.segments.push_back(Segment {
            id,
            floor: self.last_seq,
            len: HEADER_LEN,
            modified: SystemTime::now(),
            index: Some(Index {
                valid_end: HEADER_LEN,
                ..Index::default()
            }),
        });
        self.written = SyncMark {
            segment: id,
            offset: HEADER_LEN,
            dir_changes: 0,
        };
        Ok(())
    }

    /// Forgets the answers of batches in segments gone: every seq at or
    /// below the oldest segment's floor.
    fn prune_acked(&mut self) {
        let floor = self.segments.front().map_or(0, |s| s.floor);
        self.acked.retain(|seq| *seq > floor);
    }

    fn front_id(&self) -> u64 {
        self.segments.front().map_or(0, |s| s.id)
    }

    fn tail_id(&self) -> u64 {
        self.segments.back().map_or(0, |s| s.id)
    }

    fn position(&self, id: u64) -> Option<usize> {
        let front = self.front_id();
        let i = usize::try_from(id.checked_sub(front)?).ok()?;
        // Ids are consecutive but for segments removed as unreadable: check.
        match self.segments.get(i) {
            Some(s) if s.id == id => Some(i),
            _ => self.segments.iter().position(|s| s.id == id),
        }
    }

    /// Marks what `acks` says is answered, and learns where each batch is.
    fn install_index(&mut self, id: u64, mut index: Index) {
        for (i, b) in index.batches.iter_mut().enumerate() {
            b.done = self.acked.contains(&b.seq);
            self.places.insert(b.seq, (id, i));
        }
        if let Some(p) = self.position(id) {
            self.segments[p].index = Some(index);
        }
    }

    /// Reads segment `id`'s entries, unless they are already.
    fn load(&mut self, id: u64) -> Result<(), QueueError> {
        let Some(p) = self.position(id) else { return Ok(()) };
        if self.segments[p].index.is_some() {
            return Ok(());
        }
        let path = segment_path(&self.dir, id);
        let data = std::fs::read(&path).map_err(io("reading a segment", &path))?;
        let mut index = Index::read(data.get(HEADER_LEN as usize..).unwrap_or_default());
        if !index.unsealed.is_empty() {
            self.seal_orphans(p, &mut index)?;
        }
        self.install_index(id, index);
        Ok(())
    }

    /// Seals records left unsealed in a segment that is not the tail (damage
    /// after them cut their seal away), in that segment, within the seal
    /// limits; then writes a FLOOR to the tail and syncs both, so that the
    /// seqs used here are never used again (the tail alone says where seqs
    /// go on) before these batches can be sent.
    fn seal_orphans(&mut self, p: usize, index: &mut Index) -> Result<(), QueueError> {
        let id = self.segments[p].id;
        let path = segment_path(&self.dir, id);
        let mut file = open_rw(&path).map_err(io("opening a segment", &path))?;
        // Its damaged end goes first, so the seals follow the records.
        file.set_len(index.valid_end)
            .map_err(io("cutting a damaged segment", &path))?;
        file.seek(SeekFrom::Start(index.valid_end))
            .map_err(io("appending seals", &path))?;
        let mut end = index.valid_end;
        let mut seals = Vec::new();
        while !index.unsealed.is_empty() {
            let take = index.sealable(self.options.seal);
            let seq = next_seq(self.last_seq);
            self.last_seq = seq;
            let before = seals.len();
            segment::encode(
                &Entry::Seal {
                    seq,
                    count: take as u32,
                },
                &mut seals,
            );
            end += (seals.len() - before) as u64;
            index.seal(seq, take, end);
        }
        file.write_all(&seals).map_err(io("appending seals", &path))?;
        file.sync_data().map_err(io("syncing seals", &path))?;
        self.bytes = self.bytes - self.segments[p].len + end;
        self.segments[p].len = end;
        let mut floor = Vec::new();
        segment::encode(&Entry::Floor { seq: self.last_seq }, &mut floor);
        self.append(&floor)?;
        let tail_path = segment_path(&self.dir, self.tail_id());
        self.tail.sync_data().map_err(io("syncing the tail", &tail_path))
    }

    /// Appends framed entries to the tail; on failure cuts them away again.
    fn append(&mut self, entries: &[u8]) -> Result<(), QueueError> {
        let p = self.segments.len() - 1;
        let before = self.segments[p].len;
        if let Err(e) = self.tail.write_all(entries) {
            let path = segment_path(&self.dir, self.segments[p].id);
            // Whatever part of it reached the file goes: the log stays whole.
            let _ = self.tail.set_len(before);
            let _ = self.tail.seek(SeekFrom::Start(before));
            let error = io("writing to the tail segment", &path)(e);
            self.release_reserve(&error);
            return Err(error);
        }
        let seg = &mut self.segments[p];
        seg.len += entries.len() as u64;
        seg.modified = SystemTime::now();
        self.bytes += entries.len() as u64;
        self.written.offset = seg.len;
        Ok(())
    }

    fn tail_index(&mut self) -> &mut Index {
        self.segments
            .back_mut()
            .and_then(|s| s.index.as_mut())
            .expect("the tail is always read")
    }

    /// Appends a record to the tail (no cap check).
    fn append_record(&mut self, record: &Record) -> Result<(), QueueError> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        segment::encode(&Entry::Record(record.parts()), &mut buf);
        let start = self.segments.back().map_or(HEADER_LEN, |s| s.len);
        let result = self.append(&buf);
        let len = buf.len() as u64;
        self.buf = buf;
        result?;
        self.tail_index().add_unsealed(RecordRef {
            start,
            end: start + len,
            bytes: segment::record_bytes(record.body().len()),
        });
        self.unsealed_at.push_back(Instant::now());
        Ok(())
    }

    /// Makes room for `len` more bytes under the byte cap.
    fn make_room(&mut self, len: u64) -> Result<(), QueueError> {
        let max = self.options.max_bytes;
        // Above MAX_PUSH no entry reads back (it would pass for damage).
        if len + HEADER_LEN + self.options.segment_bytes > max || len > MAX_PUSH as u64 {
            return Err(QueueError::TooLarge {
                len,
                max: max.min(MAX_PUSH as u64),
            });
        }
        let mut dropped = 0;
        let mut result = Ok(());
        while self.bytes + len + DROPPED_EVENT_ROOM > max && self.segments.len() > 1 {
            match self.drop_front() {
                Ok(n) => dropped += n,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        // What was dropped before a failure is told all the same.
        self.tell_dropped(dropped, "max_bytes")?;
        result
    }

    /// Tells the gateway, in the queue, that `dropped` more records went
    /// (their count is already in `dropped`).
    fn tell_dropped(&mut self, dropped: u64, reason: &str) -> Result<(), QueueError> {
        if dropped == 0 {
            return Ok(());
        }
        self.append_record(&dropped_event(dropped, self.dropped, reason))
    }

    /// Removes the oldest segment, sent or not. Returns the records it held
    /// that were not answered, counted in `dropped` before the file goes.
    fn drop_front(&mut self) -> Result<u64, QueueError> {
        let id = self.front_id();
        let path = segment_path(&self.dir, id);
        // Counted from its entries as they are, without writing anything
        // (a segment being dropped gets no seals).
        let lost = match &self.segments[0].index {
            Some(index) => unanswered(index),
            None => match std::fs::read(&path) {
                Ok(data) => unanswered(&Index::read(data.get(HEADER_LEN as usize..).unwrap_or_default())),
                Err(_) => 0,
            },
        };
        self.dropped += lost;
        self.dropped_through = id;
        write_dropped(&self.dir, self.dropped, id)?;
        remove(&path)?;
        let seg = self.segments.pop_front().expect("a segment to drop");
        self.forget(seg);
        Ok(lost)
    }

    /// Writes the reserve in full, unless it is, or the last try failed
    /// and neither room was freed nor [`RESERVE_RETRY`] passed since.
    fn hold_reserve(&mut self) -> Result<(), QueueError> {
        if self.reserve_held {
            return Ok(());
        }
        let path = self.dir.join("reserve");
        if let Some((at, kind)) = self.reserve_failed
            && !self.reserve_retry
            && at.elapsed() < RESERVE_RETRY
        {
            return Err(io("holding room for delivery (tried again shortly)", &path)(
                kind.into(),
            ));
        }
        self.reserve_retry = false;
        let whole = std::fs::metadata(&path).is_ok_and(|m| m.len() == RESERVE_BYTES as u64);
        let written = if whole {
            Ok(())
        } else {
            File::create(&path).and_then(|mut f| f.write_all(&[0u8; RESERVE_BYTES]))
        };
        if let Err(e) = written {
            let _ = std::fs::remove_file(&path);
            self.reserve_failed = Some((Instant::now(), e.kind()));
            return Err(io("holding room for delivery", &path)(e));
        }
        self.reserve_held = true;
        self.reserve_failed = None;
        Ok(())
    }

    /// The disk refused a write: the reserve's room goes to delivery.
    fn release_reserve(&mut self, error: &QueueError) {
        if error.is_disk_full() && self.reserve_held {
            let _ = std::fs::remove_file(self.dir.join("reserve"));
            self.reserve_held = false;
            self.reserve_failed = Some((Instant::now(), std::io::ErrorKind::StorageFull));
        }
    }

    /// Forgets a segment whose file was removed.
    fn forget(&mut self, seg: Segment) {
        self.reserve_retry = true;
        self.dir_changes += 1;
        self.bytes -= seg.len;
        if let Some(index) = &seg.index {
            for b in &index.batches {
                self.acked.remove(&b.seq);
                self.places.remove(&b.seq);
            }
        }
        self.unsynced.retain(|(mark, _)| mark.segment != seg.id);
        if self.cursor.0 < self.front_id() {
            self.cursor = (self.front_id(), 0);
        }
        self.prune_acked();
    }

    /// Removes the oldest segments once everything in them was answered.
    fn trim(&mut self) -> Result<(), QueueError> {
        while self.segments.len() > 1
            && let Some(front) = self.segments.front()
            && let Some(index) = &front.index
            && index.unsealed.is_empty()
            && index.batches.iter().all(|b| b.done)
        {
            remove(&segment_path(&self.dir, front.id))?;
            let seg = self.segments.pop_front().expect("checked");
            self.forget(seg);
        }
        // `acks` holds the removed segments' seqs too: rewritten when they
        // are most of it.
        if self.acks_entries > 1024 && self.acks_entries > 2 * self.acked.len() as u64 {
            self.rewrite_acks()?;
        }
        Ok(())
    }

    fn rewrite_acks(&mut self) -> Result<(), QueueError> {
        let path = self.dir.join("acks");
        let tmp = self.dir.join("acks.tmp");
        let mut data = Vec::with_capacity(self.acked.len() * 12);
        for seq in &self.acked {
            data.extend_from_slice(&ack_entry(*seq));
        }
        std::fs::write(&tmp, &data).map_err(io("writing acks", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("replacing acks", &path))?;
        let mut acks = open_rw(&path).map_err(io("opening acks", &path))?;
        acks.seek(SeekFrom::End(0)).map_err(io("opening acks", &path))?;
        self.acks = acks;
        self.acks_entries = self.acked.len() as u64;
        self.dir_changes += 1;
        Ok(())
    }

    /// Seals the tail's unsealed records (all of them, within the seal
    /// limits), then begins a new segment if the tail is full.
    fn roll_if_full(&mut self) -> Result<(), QueueError> {
        let full = self
            .segments
            .back()
            .is_some_and(|s| s.len >= self.options.segment_bytes);
        if !full {
            return Ok(());
        }
        let limits = self.options.seal;
        while self.seal(limits)?.is_some() {}
        let next = self.tail_id() + 1;
        self.begin_segment(next)
    }

    fn content(&self, id: u64, b: &BatchRef) -> Result<Bytes, QueueError> {
        let path = segment_path(&self.dir, id);
        let mut file = File::open(&path).map_err(io("opening a segment", &path))?;
        file.seek(SeekFrom::Start(b.start))
            .map_err(io("reading a batch", &path))?;
        let mut data = vec![0u8; (b.end - b.start) as usize];
        file.read_exact(&mut data).map_err(io("reading a batch", &path))?;
        let damaged = |what: &str| QueueError::Format {
            path: path.clone(),
            what: format!("batch {}: {what}", b.seq),
        };
        if b.whole {
            return match segment::Scan::new(&data, b.start).next() {
                Some((_, _, Entry::Batch { content, .. })) => Ok(Bytes::copy_from_slice(content)),
                _ => Err(damaged("its entry no longer reads back")),
            };
        }
        let parts: Vec<_> = segment::Scan::new(&data, b.start)
            .filter_map(|(_, _, e)| match e {
                Entry::Record(r) => Some(r),
                _ => None,
            })
            .collect();
        if parts.len() != b.records as usize {
            return Err(damaged("its records no longer read back"));
        }
        batch_content(&parts).map_err(|e| damaged(&e))
    }

    /// Records `seq` as answered in `acks`.
    fn write_ack(&mut self, seq: u64) -> Result<(), QueueError> {
        if let Err(e) = self.acks.write_all(&ack_entry(seq)) {
            // A fragment would misalign every later entry: cut it away.
            let whole = self.acks_entries * 12;
            let _ = self.acks.set_len(whole);
            let _ = self.acks.seek(SeekFrom::Start(whole));
            let error = io("writing acks", &self.dir.join("acks"))(e);
            self.release_reserve(&error);
            return Err(error);
        }
        self.acks_entries += 1;
        Ok(())
    }

    /// A batch that no longer reads back: answered for good, its records
    /// counted as dropped and told, so that it blocks nothing after it.
    fn give_up(&mut self, p: usize, i: usize) -> Result<(), QueueError> {
        let Some(b) = self.segments[p].index.as_mut().and_then(|x| x.batches.get_mut(i)) else {
            return Ok(());
        };
        b.done = true;
        let (seq, records) = (b.seq, u64::from(b.records));
        self.acked.insert(seq);
        self.dropped += records;
        write_dropped(&self.dir, self.dropped, self.dropped_through)?;
        self.write_ack(seq)?;
        self.tell_dropped(records, "unreadable")
    }
}

/// The records of a segment not answered.
fn unanswered(index: &Index) -> u64 {
    index
        .batches
        .iter()
        .filter(|b| !b.done)
        .map(|b| u64::from(b.records))
        .sum::<u64>()
        + index.unsealed.len() as u64
}

fn check_seal_limits(limits: SealLimits) -> Result<(), QueueError> {
    if limits.max_records == 0 || limits.max_bytes == 0 {
        return Err(QueueError::Options(
            "seal limits must be at least 1 record and 1 byte".into(),
        ));
    }
    Ok(())
}

impl Queue for DiskQueue {
    fn push(&mut self, record: &Record) -> Result<(), QueueError> {
        self.hold_reserve()?;
        self.make_room(record.body().len() as u64 + 64)?;
        self.append_record(record)?;
        // The record is queued: a roll that fails (a full disk) is tried
        // again at the next push, and must not make the caller push again.
        let _ = self.roll_if_full();
        Ok(())
    }

    fn push_sealed(&mut self, content: Bytes, records: u32) -> Result<u64, QueueError> {
        self.hold_reserve()?;
        self.make_room(content.len() as u64 + 64)?;
        let seq = next_seq(self.last_seq);
        let mut buf = Vec::with_capacity(content.len() + 32);
        segment::encode(
            &Entry::Batch {
                seq,
                records,
                content: &content,
            },
            &mut buf,
        );
        let start = self.segments.back().map_or(HEADER_LEN, |s| s.len);
        self.append(&buf)?;
        self.last_seq = seq;
        let id = self.tail_id();
        let i = self
            .tail_index()
            .add_whole(seq, records, start, start + buf.len() as u64);
        self.places.insert(seq, (id, i));
        let _ = self.roll_if_full();
        Ok(seq)
    }

    fn unsealed(&self) -> Unsealed {
        let index = self.segments.back().and_then(|s| s.index.as_ref());
        Unsealed {
            records: index.map_or(0, |i| i.unsealed.len() as u32),
            bytes: index.map_or(0, |i| i.unsealed_bytes),
            oldest: self.unsealed_at.front().copied(),
        }
    }

    fn seal(&mut self, limits: SealLimits) -> Result<Option<u64>, QueueError> {
        let take = self.tail_index().sealable(limits);
        if take == 0 {
            return Ok(None);
        }
        let seq = next_seq(self.last_seq);
        let mut buf = Vec::with_capacity(32);
        segment::encode(
            &Entry::Seal {
                seq,
                count: take as u32,
            },
            &mut buf,
        );
        self.append(&buf)?;
        self.last_seq = seq;
        let sealed_at = self.written.offset;
        let id = self.tail_id();
        let i = self.tail_index().seal(seq, take, sealed_at);
        self.unsealed_at.drain(..take);
        self.places.insert(seq, (id, i));
        Ok(Some(seq))
    }

    fn set_seal_limits(&mut self, limits: SealLimits) {
        if check_seal_limits(limits).is_ok() {
            self.options.seal = limits;
        }
    }

    fn next_unsent(&mut self) -> Result<Option<SealedBatch>, QueueError> {
        loop {
            let (id, from) = self.cursor;
            let Some(p) = self.position(id) else {
                return Ok(None);
            };
            if let Err(e) = self.load(id) {
                if p + 1 == self.segments.len() {
                    return Err(e);
                }
                // An older segment that no longer reads (removed from
                // outside, unreadable): what it held is lost; the batches
                // after it are not.
                self.unreadable_segments += 1;
                let seg = self.segments.remove(p).expect("present");
                let _ = remove(&segment_path(&self.dir, seg.id));
                self.forget(seg);
                self.cursor = (self.segments.get(p).map_or(self.tail_id(), |s| s.id), 0);
                continue;
            }
            if p == 0 {
                // A segment answered in full before a restart goes now.
                self.trim()?;
                if self.position(id) != Some(0) {
                    continue;
                }
            }
            let round = self.round;
            let synced = (self.synced.segment, self.synced.offset);
            let found = {
                let index = self.segments[p].index.as_ref().expect("loaded");
                let mut found = None;
                for (i, b) in index.batches.iter().enumerate().skip(from) {
                    if b.done || b.sent_round == round {
                        continue;
                    }
                    if (id, b.sealed_at) > synced {
                        // Not durable yet, nor anything sealed after it.
                        return Ok(None);
                    }
                    found = Some((i, *b));
                    break;
                }
                found
            };
            match found {
                Some((i, b)) => {
                    self.cursor = (id, i + 1);
                    let content = match self.content(id, &b) {
                        Ok(content) => content,
                        Err(_) => {
                            self.give_up(p, i)?;
                            continue;
                        }
                    };
                    if let Some(index) = self.segments[p].index.as_mut() {
                        index.batches[i].sent_round = round;
                    }
                    return Ok(Some(SealedBatch {
                        seq: b.seq,
                        records: b.records,
                        content,
                    }));
                }
                None if p + 1 < self.segments.len() => {
                    self.cursor = (self.segments[p + 1].id, 0);
                }
                None => {
                    let len = self.segments[p].index.as_ref().map_or(0, |x| x.batches.len());
                    self.cursor = (id, len);
                    return Ok(None);
                }
            }
        }
    }

    fn rewind(&mut self) {
        self.round += 1;
        self.cursor = (self.front_id(), 0);
    }

    fn done(&mut self, seq: u64) -> Result<(), QueueError> {
        let Some(&(id, i)) = self.places.get(&seq) else {
            return Ok(());
        };
        let Some(p) = self.position(id) else { return Ok(()) };
        let Some(b) = self.segments[p].index.as_mut().and_then(|x| x.batches.get_mut(i)) else {
            return Ok(());
        };
        if b.done {
            return Ok(());
        }
        b.done = true;
        self.acked.insert(seq);
        // An ack the disk cannot take still frees its segment: the removal
        // is what gives a full disk room again (unrecorded, the batch is
        // sent again after a restart, and the gateway stores it once).
        let recorded = self.write_ack(seq);
        self.trim()?;
        recorded
    }

    fn sync_job(&mut self) -> Result<Option<SyncJob>, QueueError> {
        let at = |m: &SyncMark| (m.segment, m.offset);
        if at(&self.written) <= at(&self.synced)
            && self.unsynced.is_empty()
            && self.dir_changes == self.synced.dir_changes
        {
            return Ok(None);
        }
        // Handles shared with the queue: a job that fails leaves them here,
        // to be synced by the next one.
        let mut files = Vec::with_capacity(self.unsynced.len() + 1);
        for (mark, file) in &self.unsynced {
            let path = segment_path(&self.dir, mark.segment);
            files.push(file.try_clone().map_err(io("sharing a segment for a sync", &path))?);
        }
        let tail_path = segment_path(&self.dir, self.tail_id());
        files.push(
            self.tail
                .try_clone()
                .map_err(io("sharing the tail for a sync", &tail_path))?,
        );
        let dir = (self.dir_changes > self.synced.dir_changes).then(|| self.dir.clone());
        Ok(Some(SyncJob {
            files,
            dir,
            mark: SyncMark {
                dir_changes: self.dir_changes,
                ..self.written
            },
        }))
    }

    fn synced(&mut self, mark: SyncMark) {
        self.synced = self.synced.max(mark);
        let done = (mark.segment, mark.offset);
        self.unsynced.retain(|(end, _)| (end.segment, end.offset) > done);
    }

    fn expire(&mut self) -> Result<(), QueueError> {
        let now = SystemTime::now();
        let mut dropped = 0;
        let mut result = Ok(());
        while self.segments.len() > 1
            && self.segments.front().is_some_and(|s| {
                now.duration_since(s.modified)
                    .is_ok_and(|age| age > self.options.max_age)
            })
        {
            match self.drop_front() {
                Ok(n) => dropped += n,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.tell_dropped(dropped, "max_age")?;
        result
    }

    fn is_empty(&self) -> bool {
        self.segments.len() == 1
            && self.segments[0]
                .index
                .as_ref()
                .is_some_and(|i| i.unsealed.is_empty() && i.batches.iter().all(|b| b.done))
    }

    fn stats(&self) -> QueueStats {
        let loaded = self.segments.iter().filter_map(|s| s.index.as_ref());
        QueueStats {
            bytes: self.bytes,
            unsealed_records: self.unsealed_at.len() as u64,
            pending_batches: loaded
                .map(|i| i.batches.iter().filter(|b| !b.done).count() as u64)
                .sum(),
            dropped_records: self.dropped,
            unreadable_segments: self.unreadable_segments,
        }
    }
}

fn ack_entry(seq: u64) -> [u8; 12] {
    let mut e = [0u8; 12];
    e[..8].copy_from_slice(&seq.to_be_bytes());
    let crc = crc32c::crc32c(&e[..8]);
    e[8..].copy_from_slice(&crc.to_be_bytes());
    e
}

/// The seqs in `acks` and how many entries it holds; a torn end is cut.
fn read_acks(path: &Path) -> Result<(HashSet<u64>, u64), QueueError> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((HashSet::new(), 0)),
        Err(e) => return Err(io("reading acks", path)(e)),
    };
    let mut acked = HashSet::new();
    let mut whole = 0usize;
    for chunk in data.chunks_exact(12) {
        let seq = u64::from_be_bytes(chunk[..8].try_into().unwrap_or_default());
        if crc32c::crc32c(&chunk[..8]).to_be_bytes() != chunk[8..] {
            break;
        }
        acked.insert(seq);
        whole += 12;
    }
    if whole != data.len() {
        let file = open_rw(path).map_err(io("opening acks", path))?;
        file.set_len(whole as u64).map_err(io("cutting a torn acks", path))?;
    }
    Ok((acked, (whole / 12) as u64))
}

/// `dropped`: the records dropped ever, and the last segment dropped.
fn read_dropped(path: &Path) -> Result<(u64, u64), QueueError> {
    match std::fs::read(path) {
        Ok(d) if d.len() == 20 && crc32c::crc32c(&d[..16]).to_be_bytes() == d[16..] => Ok((
            u64::from_be_bytes(d[..8].try_into().unwrap_or_default()),
            u64::from_be_bytes(d[8..16].try_into().unwrap_or_default()),
        )),
        // Never written whole (it is renamed into place after a sync).
        Ok(_) => Ok((0, 0)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((0, 0)),
        Err(e) => Err(io("reading dropped", path)(e)),
    }
}

/// Writes `dropped` durably (a synced temporary file renamed into place,
/// the directory synced), before the segment it counts is removed.
fn write_dropped(dir: &Path, dropped: u64, through: u64) -> Result<(), QueueError> {
    let path = dir.join("dropped");
    let tmp = dir.join("dropped.tmp");
    let mut data = [0u8; 20];
    data[..8].copy_from_slice(&dropped.to_be_bytes());
    data[8..16].copy_from_slice(&through.to_be_bytes());
    let crc = crc32c::crc32c(&data[..16]);
    data[16..].copy_from_slice(&crc.to_be_bytes());
    let mut file = File::create(&tmp).map_err(io("writing dropped", &tmp))?;
    file.write_all(&data).map_err(io("writing dropped", &tmp))?;
    file.sync_data().map_err(io("syncing dropped", &tmp))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(io("replacing dropped", &path))?;
    sync_dir(dir)
}

#[cfg(test)]
#[path = "disk_test.rs"]
mod tests;
