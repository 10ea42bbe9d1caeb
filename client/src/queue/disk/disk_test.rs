//! The disk queue across restarts, damage and its files.

use std::io::Write as _;

use super::*;

fn location(i: u64) -> Record {
    Record::location(1_700_000_000_000 + i, 1, 2, i).unwrap()
}

fn small() -> QueueOptions {
    QueueOptions {
        max_bytes: 1 << 20,
        segment_bytes: 4096,
        ..QueueOptions::default()
    }
}

fn drain(q: &mut DiskQueue) -> Vec<SealedBatch> {
    q.sync().unwrap();
    std::iter::from_fn(|| q.next_unsent().unwrap()).collect()
}

fn segments(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    names
}

#[test]
fn a_queue_dropped_without_a_word_comes_back_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let (sent, unanswered, last_seq) = {
        let mut q = DiskQueue::open(dir.path(), small()).unwrap();
        for i in 0..300 {
            q.push(&location(i)).unwrap();
            if i % 50 == 49 {
                q.seal(SealLimits::default()).unwrap();
            }
        }
        let sent = drain(&mut q);
        assert!(segments(dir.path()).len() > 2, "rolled over several segments");
        // Two answered, the rest not; 300 - sealed records left unsealed.
        q.done(sent[0].seq).unwrap();
        q.done(sent[3].seq).unwrap();
        let unanswered: Vec<SealedBatch> = sent
            .iter()
            .filter(|b| b.seq != sent[0].seq && b.seq != sent[3].seq)
            .cloned()
            .collect();
        let last = sent.iter().map(|b| b.seq).max().unwrap();
        // Dropped as a killed process leaves it: nothing is synced or
        // flushed on drop (every write went to the OS when it was made).
        drop(q);
        (sent, unanswered, last)
    };
    let mut q = DiskQueue::open(dir.path(), small()).unwrap_or_else(|e| panic!("{e}"));
    let again = drain(&mut q);
    // The same batches, the same seqs and bytes: the gateway stores them once.
    assert_eq!(again, unanswered);
    let records: u32 = sent.iter().map(|b| b.records).sum();
    assert_eq!(u64::from(records) + q.unsealed().records as u64, 300);
    let seq = q.seal(SealLimits::default()).unwrap();
    assert!(seq.is_none_or(|s| s > last_seq));
    q.push(&location(300)).unwrap();
    let next = q.seal(SealLimits::default()).unwrap().unwrap();
    assert!(next > last_seq);
}

#[test]
fn a_torn_tail_is_cut_back_to_its_last_whole_entry() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut q = DiskQueue::open(dir.path(), QueueOptions::default()).unwrap();
        for i in 0..10 {
            q.push(&location(i)).unwrap();
        }
        q.seal(SealLimits::default()).unwrap();
        q.push(&location(10)).unwrap();
        q.push(&location(11)).unwrap();
    }
    let tail = dir.path().join(&segments(dir.path())[0]);
    let len = std::fs::metadata(&tail).unwrap().len();
    // A power cut mid-write: the last entry half there, then garbage.
    let f = OpenOptions::new().write(true).open(&tail).unwrap();
    f.set_len(len - 5).unwrap();
    drop(f);
    let mut f = OpenOptions::new().append(true).open(&tail).unwrap();
    f.write_all(&[0xde, 0xad]).unwrap();
    drop(f);
    let mut q = DiskQueue::open(dir.path(), QueueOptions::default()).unwrap();
    assert_eq!(q.unsealed().records, 1, "record 11 was torn, record 10 whole");
    let batches = drain(&mut q);
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].records, 10);
    // And it goes on from there.
    q.push(&location(12)).unwrap();
    q.seal(SealLimits::default()).unwrap();
    drop(q);
    let mut q = DiskQueue::open(dir.path(), QueueOptions::default()).unwrap();
    let batches = drain(&mut q);
    assert_eq!(batches.iter().map(|b| b.records).collect::<Vec<_>>(), [10, 2]);
}

#[test]
fn damage_in_an_older_segment_loses_what_follows_it_there_only() {
    let dir = tempfile::tempdir().unwrap();
    let first_segment_batches = {
        let mut q = DiskQueue::open(dir.path(), small()).unwrap();
        for i in 0..400 {
            q.push(&location(i)).unwrap();
            if i % 10 == 9 {
                q.seal(SealLimits::default()).unwrap();
            }
        }
        let names = segments(dir.path());
        assert!(names.len() >= 3);
        q.segments[0].index.as_ref().unwrap().batches.len()
    };
    let first = dir.path().join(&segments(dir.path())[0]);
    let mut data = std::fs::read(&first).unwrap();
    let middle = data.len() / 2;
    data[middle] ^= 0xff;
    std::fs::write(&first, &data).unwrap();
    let mut q = DiskQueue::open(dir.path(), small()).unwrap();
    let batches = drain(&mut q);
    let records: u32 = batches.iter().map(|b| b.records).sum();
    assert!(
        records < 400 && records > 400 - (first_segment_batches as u32 * 10),
        "{records}"
    );
    // Every batch read back decodes (checked by the queue before handing it out).
    assert!(batches.iter().all(|b| b.records >= 1));
}

#[test]
fn answered_segments_are_removed_and_the_dropped_count_survives() {
    let dir = tempfile::tempdir().unwrap();
    let options = QueueOptions {
        max_bytes: 16 << 10,
        segment_bytes: 4096,
        ..QueueOptions::default()
    };
    let dropped = {
        let mut q = DiskQueue::open(dir.path(), options).unwrap();
        for i in 0..2000 {
            q.push(&location(i)).unwrap();
        }
        let dropped = q.stats().dropped_records;
        assert!(dropped > 0);
        while q.seal(SealLimits::default()).unwrap().is_some() {}
        for b in drain(&mut q) {
            q.done(b.seq).unwrap();
        }
        assert!(q.is_empty());
        assert_eq!(segments(dir.path()).len(), 1, "only the tail is left");
        dropped
    };
    let q = DiskQueue::open(dir.path(), options).unwrap();
    assert_eq!(q.stats().dropped_records, dropped);
    assert!(q.is_empty());
}

#[test]
fn a_second_client_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let q = DiskQueue::open(dir.path(), QueueOptions::default()).unwrap();
    let e = DiskQueue::open(dir.path(), QueueOptions::default())
        .err()
        .expect("refused");
    assert!(e.to_string().contains("another client"), "{e}");
    drop(q);
    DiskQueue::open(dir.path(), QueueOptions::default()).unwrap();
}

#[test]
fn a_batch_is_not_handed_out_before_its_seal_is_synced() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = DiskQueue::open(dir.path(), QueueOptions::default()).unwrap();
    q.push(&location(1)).unwrap();
    q.seal(SealLimits::default()).unwrap();
    assert_eq!(q.next_unsent().unwrap(), None);
    let job = q.sync_job().unwrap().expect("something to sync");
    let mark = job.run().unwrap();
    q.synced(mark);
    assert!(q.next_unsent().unwrap().is_some());
    assert!(q.sync_job().unwrap().is_none(), "nothing new to sync");
}

#[test]
fn options_that_cannot_work_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let e = DiskQueue::open(
        dir.path(),
        QueueOptions {
            max_bytes: 1 << 20,
            segment_bytes: 1 << 20,
            ..QueueOptions::default()
        },
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("queue_max_bytes"), "{e}");
}

#[test]
fn a_record_above_a_mebibyte_is_refused_not_written_past_its_reader() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = DiskQueue::open(dir.path(), QueueOptions::default()).unwrap();
    let big = Record::unknown(1, 6, &vec![0u8; 2 << 20]).unwrap();
    assert!(matches!(q.push(&big), Err(QueueError::TooLarge { .. })));
    q.push(&location(1)).unwrap();
    drop(q);
    let q = DiskQueue::open(dir.path(), QueueOptions::default()).unwrap();
    assert_eq!(q.unsealed().records, 1);
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Rewrites the header floor of segment file `name`.
fn set_floor(dir: &Path, name: &str, floor: u64) {
    let path = dir.join(name);
    let mut data = std::fs::read(&path).unwrap();
    data[8..16].copy_from_slice(&floor.to_be_bytes());
    std::fs::write(&path, data).unwrap();
}

#[test]
fn seqs_go_on_above_the_last_even_with_the_clock_behind() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut q = DiskQueue::open(dir.path(), QueueOptions::default()).unwrap();
        q.push(&location(1)).unwrap();
        q.seal(SealLimits::default()).unwrap();
    }
    // As if earlier seqs ran far ahead of this clock (a clock set back).
    let ahead = now_us() + 1_000_000_000_000;
    set_floor(dir.path(), &segments(dir.path())[0], ahead);
    let mut q = DiskQueue::open(dir.path(), QueueOptions::default()).unwrap();
    q.push(&location(2)).unwrap();
    assert_eq!(q.seal(SealLimits::default()).unwrap(), Some(ahead + 1));
}

#[test]
fn seals_written_into_an_older_segment_raise_the_floor_the_tail_keeps() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut q = DiskQueue::open(dir.path(), small()).unwrap();
        for i in 0..400 {
            q.push(&location(i)).unwrap();
        }
        assert!(segments(dir.path()).len() >= 3);
    }
    let names = segments(dir.path());
    let ahead = now_us() + 1_000_000_000_000;
    set_floor(dir.path(), names.last().unwrap(), ahead);
    // The first segment's last seal (made at its roll) damaged: its
    // records lost their seal.
    let first = dir.path().join(&names[0]);
    let mut data = std::fs::read(&first).unwrap();
    let n = data.len();
    data[n - 2] ^= 0xff;
    std::fs::write(&first, data).unwrap();
    let orphan_seqs: Vec<u64> = {
        let mut q = DiskQueue::open(dir.path(), small()).unwrap();
        let batches = drain(&mut q);
        let seqs: Vec<u64> = batches.iter().map(|b| b.seq).filter(|s| *s > ahead).collect();
        assert!(!seqs.is_empty(), "the orphans were sealed anew, above the floor");
        seqs
    };
    // Killed right after: the tail's FLOOR keeps those seqs from coming again.
    let mut q = DiskQueue::open(dir.path(), small()).unwrap();
    q.push(&location(1000)).unwrap();
    let next = q.seal(SealLimits::default()).unwrap().unwrap();
    assert!(
        next > *orphan_seqs.iter().max().unwrap(),
        "{next} reused {orphan_seqs:?}"
    );
    // And the orphans come out again under the seqs they were sealed with.
    q.rewind();
    let again: Vec<u64> = drain(&mut q)
        .iter()
        .map(|b| b.seq)
        .filter(|s| orphan_seqs.contains(s))
        .collect();
    assert_eq!(again, orphan_seqs);
}

#[test]
fn a_segment_without_a_whole_header_is_removed_and_a_newer_format_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut q = DiskQueue::open(dir.path(), small()).unwrap();
        for i in 0..400 {
            q.push(&location(i)).unwrap();
        }
    }
    let names = segments(dir.path());
    // Made by a roll the power cut caught: its header zeroed, or cut short.
    let tail = dir.path().join(names.last().unwrap());
    let mut data = std::fs::read(&tail).unwrap();
    data[..16].fill(0);
    std::fs::write(&tail, data).unwrap();
    std::fs::write(dir.path().join("00000000000000ff.seg"), b"AWP").unwrap();
    let mut q = DiskQueue::open(dir.path(), small()).unwrap();
    assert_eq!(
        q.stats().unreadable_segments,
        1,
        "the zeroed one held entries; the short one nothing"
    );
    assert_eq!(segments(dir.path()).len(), names.len() - 1);
    assert!(!drain(&mut q).is_empty());
    drop(q);
    let first = dir.path().join(&segments(dir.path())[0]);
    let mut data = std::fs::read(&first).unwrap();
    data[4] = 2;
    std::fs::write(&first, data).unwrap();
    let e = DiskQueue::open(dir.path(), small()).err().expect("refused");
    assert!(e.to_string().contains("version 2"), "{e}");
}

#[test]
fn a_sync_that_failed_is_asked_again_of_the_same_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = DiskQueue::open(dir.path(), small()).unwrap();
    for i in 0..400 {
        q.push(&location(i)).unwrap();
    }
    let first = q.sync_job().unwrap().unwrap();
    assert!(first.files.len() >= 3, "the rolled segments and the tail");
    assert!(first.dir.is_some(), "segments were made");
    // The job failed (never reported synced): nothing it covered is durable.
    let files = first.files.len();
    drop(first);
    assert_eq!(q.next_unsent().unwrap(), None);
    let second = q.sync_job().unwrap().unwrap();
    assert_eq!(second.files.len(), files);
    assert!(second.dir.is_some());
    let mark = second.run().unwrap();
    q.synced(mark);
    assert!(q.next_unsent().unwrap().is_some());
    let third = q.sync_job().unwrap();
    assert!(third.is_none(), "{third:?}");
}

#[test]
fn a_batch_or_segment_that_no_longer_reads_is_dropped_and_blocks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = DiskQueue::open(dir.path(), small()).unwrap();
    for i in 0..400 {
        q.push(&location(i)).unwrap();
    }
    while q.seal(SealLimits::default()).unwrap().is_some() {}
    let names = segments(dir.path());
    // Damage inside the first batch's records, after they were read.
    let first = dir.path().join(&names[0]);
    let mut data = std::fs::read(&first).unwrap();
    data[HEADER_LEN as usize + 12] ^= 0xff;
    std::fs::write(&first, data).unwrap();
    let batches = drain(&mut q);
    let records: u64 = batches.iter().map(|b| u64::from(b.records)).sum();
    let dropped = q.stats().dropped_records;
    assert!(dropped > 0);
    // Every record but the unreadable batch's came out, and an event
    // telling of it waits to be sealed.
    assert_eq!(records, 400 - dropped);
    assert_eq!(q.unsealed().records, 1);
    drop(q);
    // After a restart, an older segment removed from outside.
    let mut q = DiskQueue::open(dir.path(), small()).unwrap();
    std::fs::remove_file(dir.path().join(&names[1])).unwrap();
    let batches = drain(&mut q);
    assert_eq!(q.stats().unreadable_segments, 1);
    assert!(!batches.is_empty(), "the segments after it still come out");
}

#[test]
fn a_kill_between_counting_a_drop_and_removing_its_segment_is_finished_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut q = DiskQueue::open(dir.path(), small()).unwrap();
        for i in 0..400 {
            q.push(&location(i)).unwrap();
        }
    }
    let names = segments(dir.path());
    let front = segment_id(&names[0]).unwrap();
    // `dropped` written (count and segment), the segment not yet removed.
    write_dropped(dir.path(), 17, front).unwrap();
    let q = DiskQueue::open(dir.path(), small()).unwrap();
    assert_eq!(q.stats().dropped_records, 17);
    assert_eq!(segments(dir.path()), names[1..].to_vec());
}

/// As a write the disk refused leaves the queue: the reserve given up.
fn give_up_reserve(q: &mut DiskQueue, at: Instant) {
    std::fs::remove_file(q.dir.join("reserve")).unwrap();
    q.reserve_held = false;
    q.reserve_failed = Some((at, std::io::ErrorKind::StorageFull));
}

#[test]
fn a_reserve_given_up_to_a_full_disk_is_taken_again_when_room_may_be_back() {
    let dir = tempfile::tempdir().unwrap();
    let reserve = dir.path().join("reserve");
    let mut q = DiskQueue::open(dir.path(), small()).unwrap();
    assert_eq!(std::fs::metadata(&reserve).unwrap().len(), RESERVE_BYTES as u64);
    for i in 0..200 {
        q.push(&location(i)).unwrap();
    }
    give_up_reserve(&mut q, Instant::now());
    // Refused at once, without a write, until room may be back.
    let refused = q.push(&location(1)).unwrap_err();
    assert!(refused.is_disk_full(), "{refused}");
    assert!(!reserve.exists());
    // Delivered segments removed: room was freed, pushes go on.
    while q.seal(SealLimits::default()).unwrap().is_some() {}
    for b in drain(&mut q) {
        q.done(b.seq).unwrap();
    }
    q.push(&location(500)).expect("room was freed");
    assert!(reserve.exists());
    // Room from elsewhere: tried again once RESERVE_RETRY passed.
    give_up_reserve(&mut q, Instant::now() - RESERVE_RETRY);
    q.push(&location(501)).expect("tried again after RESERVE_RETRY");
    assert!(reserve.exists());
    // And at open.
    give_up_reserve(&mut q, Instant::now());
    drop(q);
    let mut q = DiskQueue::open(dir.path(), small()).unwrap();
    assert!(reserve.exists());
    q.push(&location(502)).unwrap();
}
