//! The queue in memory: the disk queue's calls and promises, but gone with
//! the process. For the load simulator (whose agents need no disk) and
//! tests.

use std::collections::VecDeque;
use std::time::{Instant, SystemTime};

use bytes::Bytes;

use super::*;

struct Batch {
    seq: u64,
    records: u32,
    content: Bytes,
    written: SystemTime,
    sent_round: u64,
}

/// A [`Queue`] in memory.
pub struct MemoryQueue {
    options: QueueOptions,
    unsealed: VecDeque<(Record, Instant)>,
    unsealed_bytes: usize,
    /// Not yet answered, oldest first.
    batches: VecDeque<Batch>,
    bytes: u64,
    last_seq: u64,
    /// Bumped by each rewind: a batch is handed out once per round.
    round: u64,
    dropped: u64,
}

impl MemoryQueue {
    /// An empty queue.
    pub fn new(options: QueueOptions) -> MemoryQueue {
        MemoryQueue {
            options,
            unsealed: VecDeque::new(),
            unsealed_bytes: 0,
            batches: VecDeque::new(),
            bytes: 0,
            last_seq: 0,
            round: 1,
            dropped: 0,
        }
    }

    /// Makes room for `len` bytes: drops the oldest batches (then the
    /// oldest unsealed records), counting their records.
    fn make_room(&mut self, len: u64) -> Result<(), QueueError> {
        if len + DROPPED_EVENT_ROOM > self.options.max_bytes {
            return Err(QueueError::TooLarge {
                len,
                max: self.options.max_bytes,
            });
        }
        let mut dropped = 0u64;
        // Room for the event telling the drop, too.
        while self.bytes + len + DROPPED_EVENT_ROOM > self.options.max_bytes {
            if let Some(batch) = self.batches.pop_front() {
                self.bytes -= batch.content.len() as u64;
                dropped += u64::from(batch.records);
            } else if let Some((record, _)) = self.unsealed.pop_front() {
                let n = record_bytes(&record);
                self.bytes -= n;
                self.unsealed_bytes -= n as usize;
                dropped += 1;
            } else {
                break;
            }
        }
        if dropped > 0 {
            self.dropped += dropped;
            let event = dropped_event(dropped, self.dropped, "max_bytes");
            self.append(event);
        }
        Ok(())
    }

    fn append(&mut self, record: Record) {
        let n = record_bytes(&record);
        self.bytes += n;
        self.unsealed_bytes += n as usize;
        self.unsealed.push_back((record, Instant::now()));
    }

    fn add_batch(&mut self, content: Bytes, records: u32) -> u64 {
        let seq = next_seq(self.last_seq);
        self.last_seq = seq;
        self.bytes += content.len() as u64;
        self.batches.push_back(Batch {
            seq,
            records,
            content,
            written: SystemTime::now(),
            sent_round: 0,
        });
        seq
    }
}

fn record_bytes(record: &Record) -> u64 {
    // Its parts as a batch will hold them, about: kind, time, length, body.
    16 + record.body().len() as u64
}

impl Queue for MemoryQueue {
    fn push(&mut self, record: &Record) -> Result<(), QueueError> {
        self.make_room(record_bytes(record))?;
        self.append(record.clone());
        Ok(())
    }

    fn push_sealed(&mut self, content: Bytes, records: u32) -> Result<u64, QueueError> {
        self.make_room(content.len() as u64)?;
        Ok(self.add_batch(content, records))
    }

    fn unsealed(&self) -> Unsealed {
        Unsealed {
            records: self.unsealed.len() as u32,
            bytes: self.unsealed_bytes,
            oldest: self.unsealed.front().map(|(_, at)| *at),
        }
    }

    fn seal(&mut self, limits: SealLimits) -> Result<Option<u64>, QueueError> {
        let (take, bytes) = limits.take(self.unsealed.iter().map(|(r, _)| record_bytes(r) as usize));
        if take == 0 {
            return Ok(None);
        }
        // Written before the records leave the unsealed list: a failure
        // loses nothing.
        let parts: Vec<_> = self.unsealed.iter().take(take).map(|(r, _)| r.parts()).collect();
        let content = batch_content(&parts).map_err(|what| QueueError::Format {
            path: "memory".into(),
            what,
        })?;
        self.unsealed.drain(..take);
        self.unsealed_bytes -= bytes;
        self.bytes -= bytes as u64;
        Ok(Some(self.add_batch(content, take as u32)))
    }

    fn set_seal_limits(&mut self, limits: SealLimits) {
        self.options.seal = limits;
    }

    fn next_unsent(&mut self) -> Result<Option<SealedBatch>, QueueError> {
        let round = self.round;
        Ok(self.batches.iter_mut().find(|b| b.sent_round != round).map(|b| {
            b.sent_round = round;
            SealedBatch {
                seq: b.seq,
                records: b.records,
                content: b.content.clone(),
            }
        }))
    }

    fn rewind(&mut self) {
        self.round += 1;
    }

    fn done(&mut self, seq: u64) -> Result<(), QueueError> {
        // Answers come mostly in order: the batch is near the front.
        if let Some(i) = self.batches.iter().position(|b| b.seq == seq)
            && let Some(batch) = self.batches.remove(i)
        {
            self.bytes -= batch.content.len() as u64;
        }
        Ok(())
    }

    fn sync_job(&mut self) -> Result<Option<SyncJob>, QueueError> {
        Ok(None)
    }

    fn synced(&mut self, _job: SyncMark) {}

    fn expire(&mut self) -> Result<(), QueueError> {
        let now = SystemTime::now();
        let mut dropped = 0u64;
        while let Some(b) = self.batches.front()
            && now
                .duration_since(b.written)
                .is_ok_and(|age| age > self.options.max_age)
        {
            dropped += u64::from(b.records);
            self.bytes -= b.content.len() as u64;
            self.batches.pop_front();
        }
        if dropped > 0 {
            self.dropped += dropped;
            self.append(dropped_event(dropped, self.dropped, "max_age"));
        }
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.unsealed.is_empty() && self.batches.is_empty()
    }

    fn stats(&self) -> QueueStats {
        QueueStats {
            bytes: self.bytes,
            unsealed_records: self.unsealed.len() as u64,
            pending_batches: self.batches.len() as u64,
            dropped_records: self.dropped,
            unreadable_segments: 0,
        }
    }
}
