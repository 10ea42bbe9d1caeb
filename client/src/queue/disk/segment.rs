//! A segment file: its header, its entries, and reading them back.
//!
//! ```text
//! header   "AWPQ"  u8 version (1)  3 zero bytes  u64 seq_floor
//! entry    u32 length  u32 crc  u8 type  payload (length bytes)
//!            crc: CRC-32C of the type byte and the payload
//!   type 1 RECORD  u64 time_ms  u64 kind  body
//!   type 2 SEAL    u64 seq  u32 count       the oldest `count` unsealed
//!                                           records of this segment are
//!                                           batch `seq`
//!   type 3 BATCH   u64 seq  u32 records  content   a batch made whole
//!   type 4 FLOOR   u64 seq                  seqs go on above this one
//! ```
//!
//! Integers are big-endian. `seq_floor` is the highest seq the queue had
//! used when the segment was made, so the newest segment (its header, its
//! seals and FLOORs) alone says where seqs go on. A FLOOR is written to the
//! tail when seals were written into an older segment (its records had
//! lost their seal to damage), whose seqs the tail would not otherwise show.

use awp_protocol::RecordParts;

use crate::queue::SealLimits;

/// The first bytes of every segment.
pub(super) const MAGIC: [u8; 4] = *b"AWPQ";
/// The format's version.
pub(super) const VERSION: u8 = 1;
/// The header's length.
pub(super) const HEADER_LEN: u64 = 16;
/// An entry's length, type and CRC.
pub(super) const ENTRY_HEADER: usize = 9;
/// No entry is longer: a longer length is damage, not data.
pub(super) const MAX_ENTRY: usize = 16 << 20;

const RECORD: u8 = 1;
const SEAL: u8 = 2;
const BATCH: u8 = 3;
const FLOOR: u8 = 4;

/// One entry of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Entry<'a> {
    /// A record pushed.
    Record(RecordParts<'a>),
    /// The oldest `count` unsealed records of the segment are batch `seq`.
    Seal { seq: u64, count: u32 },
    /// A batch pushed whole.
    Batch { seq: u64, records: u32, content: &'a [u8] },
    /// Seqs go on above `seq`.
    Floor { seq: u64 },
}

/// What is wrong with a segment's header.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum HeaderError {
    /// Not a segment: no AWPQ header (a file cut short or zeroed by a power
    /// cut as it was made, or not ours).
    NotASegment,
    /// A segment of another format version (a newer client's).
    Version(u8),
}

/// The header of a segment made when the queue's last seq was `seq_floor`.
pub(super) fn header(seq_floor: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..4].copy_from_slice(&MAGIC);
    h[4] = VERSION;
    h[8..].copy_from_slice(&seq_floor.to_be_bytes());
    h
}

/// A header's `seq_floor`, or what is wrong with it.
pub(super) fn parse_header(buf: &[u8]) -> Result<u64, HeaderError> {
    if buf.len() < HEADER_LEN as usize || buf[..4] != MAGIC {
        return Err(HeaderError::NotASegment);
    }
    if buf[4] != VERSION {
        return Err(HeaderError::Version(buf[4]));
    }
    Ok(u64::from_be_bytes(buf[8..16].try_into().unwrap_or_default()))
}

/// Appends `entry`, framed, to `dst`.
pub(super) fn encode(entry: &Entry<'_>, dst: &mut Vec<u8>) {
    let start = dst.len();
    dst.extend_from_slice(&[0u8; ENTRY_HEADER]);
    let ty = match entry {
        Entry::Record(r) => {
            dst.extend_from_slice(&r.time_ms.to_be_bytes());
            dst.extend_from_slice(&r.kind.to_be_bytes());
            dst.extend_from_slice(r.body);
            RECORD
        }
        Entry::Seal { seq, count } => {
            dst.extend_from_slice(&seq.to_be_bytes());
            dst.extend_from_slice(&count.to_be_bytes());
            SEAL
        }
        Entry::Batch { seq, records, content } => {
            dst.extend_from_slice(&seq.to_be_bytes());
            dst.extend_from_slice(&records.to_be_bytes());
            dst.extend_from_slice(content);
            BATCH
        }
        Entry::Floor { seq } => {
            dst.extend_from_slice(&seq.to_be_bytes());
            FLOOR
        }
    };
    let len = (dst.len() - start - ENTRY_HEADER) as u32;
    dst[start + 8] = ty;
    let crc = crc32c::crc32c(&dst[start + 8..]);
    dst[start..start + 4].copy_from_slice(&len.to_be_bytes());
    dst[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
}

/// The entries of a segment's bytes (after its header), up to the first
/// that is cut short or damaged ([`Scan::clean`] says whether one was).
pub(super) struct Scan<'a> {
    buf: &'a [u8],
    /// The offset in the file of `buf[0]`.
    base: u64,
    pos: usize,
    stopped: bool,
}

impl<'a> Scan<'a> {
    /// The entries of `buf`, which starts at file offset `base`.
    pub(super) fn new(buf: &'a [u8], base: u64) -> Scan<'a> {
        Scan {
            buf,
            base,
            pos: 0,
            stopped: false,
        }
    }

    /// Whether every byte was read as sound entries.
    pub(super) fn clean(&self) -> bool {
        self.pos == self.buf.len()
    }
}

impl<'a> Iterator for Scan<'a> {
    /// (start offset, end offset, entry).
    type Item = (u64, u64, Entry<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.stopped {
            return None;
        }
        let rest = &self.buf[self.pos..];
        let parsed = parse(rest);
        match parsed {
            Some((len, entry)) => {
                let start = self.base + self.pos as u64;
                self.pos += len;
                Some((start, start + len as u64, entry))
            }
            None => {
                self.stopped = true;
                None
            }
        }
    }
}

/// One entry at the start of `buf` and its framed length, or `None` if it
/// is cut short, damaged, or not an entry.
fn parse(buf: &[u8]) -> Option<(usize, Entry<'_>)> {
    let head = buf.get(..ENTRY_HEADER)?;
    let len = u32::from_be_bytes(head[..4].try_into().ok()?) as usize;
    let crc = u32::from_be_bytes(head[4..8].try_into().ok()?);
    if len > MAX_ENTRY {
        return None;
    }
    let framed = buf.get(8..ENTRY_HEADER + len)?;
    if crc32c::crc32c(framed) != crc {
        return None;
    }
    let ty = framed[0];
    let payload = &framed[1..];
    let u64_at = |i: usize| {
        payload
            .get(i..i + 8)
            .map(|b| u64::from_be_bytes(b.try_into().unwrap_or_default()))
    };
    let u32_at = |i: usize| {
        payload
            .get(i..i + 4)
            .map(|b| u32::from_be_bytes(b.try_into().unwrap_or_default()))
    };
    let entry = match ty {
        RECORD => Entry::Record(RecordParts {
            time_ms: u64_at(0)?,
            kind: u64_at(8)?,
            body: payload.get(16..)?,
        }),
        SEAL if payload.len() == 12 => Entry::Seal {
            seq: u64_at(0)?,
            count: u32_at(8)?,
        },
        BATCH => Entry::Batch {
            seq: u64_at(0)?,
            records: u32_at(8)?,
            content: payload.get(12..)?,
        },
        FLOOR if payload.len() == 8 => Entry::Floor { seq: u64_at(0)? },
        _ => return None,
    };
    Some((ENTRY_HEADER + len, entry))
}

/// A record's place in its segment.
#[derive(Clone, Copy, Debug)]
pub(super) struct RecordRef {
    pub(super) start: u64,
    pub(super) end: u64,
    /// What it adds to a batch's content, about.
    pub(super) bytes: usize,
}

/// A sealed batch's place in its segment.
#[derive(Clone, Copy, Debug)]
pub(super) struct BatchRef {
    pub(super) seq: u64,
    pub(super) records: u32,
    /// The file range holding its records (their entries, perhaps with
    /// others' seals and whole batches between), or its BATCH entry.
    pub(super) start: u64,
    pub(super) end: u64,
    /// A BATCH entry (else records and a seal).
    pub(super) whole: bool,
    /// Where its seal (or BATCH entry) ends: durable once synced past it.
    pub(super) sealed_at: u64,
    /// Answered for good.
    pub(super) done: bool,
    /// The rewind round it was last handed out in.
    pub(super) sent_round: u64,
}

/// What a segment holds, read from its entries.
#[derive(Debug, Default)]
pub(super) struct Index {
    /// Sealed batches, in seal order.
    pub(super) batches: Vec<BatchRef>,
    /// Records not sealed yet, oldest first ([`Index::add_unsealed`]).
    pub(super) unsealed: std::collections::VecDeque<RecordRef>,
    /// Their bytes in a batch (kept, not summed at each push).
    pub(super) unsealed_bytes: usize,
    /// The highest seq in the segment.
    pub(super) max_seq: u64,
    /// Just past the last sound entry.
    pub(super) valid_end: u64,
    /// Whether damage cut the entries short.
    pub(super) damaged: bool,
}

impl Index {
    /// Reads the entries of a segment's bytes (after its header).
    pub(super) fn read(buf: &[u8]) -> Index {
        let mut index = Index::default();
        let mut scan = Scan::new(buf, HEADER_LEN);
        let mut valid_end = HEADER_LEN;
        let mut broken = false;
        for (start, end, entry) in &mut scan {
            match entry {
                Entry::Record(r) => index.add_unsealed(RecordRef {
                    start,
                    end,
                    bytes: record_bytes(r.body.len()),
                }),
                Entry::Seal { seq, count } => {
                    if count == 0 || count as usize > index.unsealed.len() {
                        // Sound bytes, impossible meaning: stop as at damage.
                        broken = true;
                        break;
                    }
                    index.seal(seq, count as usize, end);
                }
                Entry::Batch { seq, records, .. } => {
                    index.add_whole(seq, records, start, end);
                }
                Entry::Floor { seq } => index.max_seq = index.max_seq.max(seq),
            }
            valid_end = end;
        }
        index.damaged = broken || !scan.clean();
        index.valid_end = valid_end;
        index
    }

    /// How many of the oldest unsealed records one batch within `limits`
    /// takes (at least one, whatever its size, if there is one).
    pub(super) fn sealable(&self, limits: SealLimits) -> usize {
        limits.take(self.unsealed.iter().map(|r| r.bytes)).0
    }

    /// Makes the oldest `count` unsealed records batch `seq`, whose seal
    /// ends at `sealed_at`. Returns its index.
    pub(super) fn seal(&mut self, seq: u64, count: usize, sealed_at: u64) -> usize {
        let (start, end) = (self.unsealed[0].start, self.unsealed[count - 1].end);
        for r in self.unsealed.drain(..count) {
            self.unsealed_bytes -= r.bytes;
        }
        self.push(BatchRef {
            seq,
            records: count as u32,
            start,
            end,
            whole: false,
            sealed_at,
            done: false,
            sent_round: 0,
        })
    }

    /// Adds a record pushed, not sealed yet.
    pub(super) fn add_unsealed(&mut self, record: RecordRef) {
        self.unsealed_bytes += record.bytes;
        self.unsealed.push_back(record);
    }

    /// Adds batch `seq` pushed whole, its entry at `start..end`. Returns its
    /// index.
    pub(super) fn add_whole(&mut self, seq: u64, records: u32, start: u64, end: u64) -> usize {
        self.push(BatchRef {
            seq,
            records,
            start,
            end,
            whole: true,
            sealed_at: end,
            done: false,
            sent_round: 0,
        })
    }

    fn push(&mut self, batch: BatchRef) -> usize {
        self.max_seq = self.max_seq.max(batch.seq);
        self.batches.push(batch);
        self.batches.len() - 1
    }
}

/// What a record with a body of `body_len` bytes adds to a batch's content,
/// at most (kind, offset and length as varints).
pub(super) fn record_bytes(body_len: usize) -> usize {
    30 + body_len
}
