//! What every queue promises, asked of both.

use awp_protocol::{Batch, Limits};

use super::*;

fn location(i: u64) -> Record {
    Record::location(1_700_000_000_000 + i, (i % 1000) as i32, 7, i).unwrap()
}

fn both(options: QueueOptions) -> Vec<(&'static str, Box<dyn Queue>, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    vec![
        ("memory", Box::new(MemoryQueue::new(options)) as Box<dyn Queue>, None),
        (
            "disk",
            Box::new(DiskQueue::open(dir.path(), options).unwrap()),
            Some(dir),
        ),
    ]
}

/// The accuracy of each record of a batch (the tests number records so).
fn numbers(batch: &SealedBatch) -> Vec<u64> {
    let limits = Limits {
        max_batch_records: 100_000,
        ..Limits::DEFAULT
    };
    let b = Batch::decode_content(batch.seq, &batch.content, &limits).unwrap();
    b.records
        .iter()
        .map(|r| match &r.body {
            awp_protocol::RecordBody::Location(l) => l.accuracy_m,
            other => panic!("not a test record: {other:?}"),
        })
        .collect()
}

fn drain(q: &mut dyn Queue) -> Vec<SealedBatch> {
    q.sync().unwrap();
    std::iter::from_fn(|| q.next_unsent().unwrap()).collect()
}

#[test]
fn records_come_out_in_batches_in_push_order_until_answered() {
    for (name, mut q, _dir) in both(QueueOptions::default()) {
        for i in 0..25 {
            q.push(&location(i)).unwrap();
        }
        assert_eq!(q.unsealed().records, 25, "{name}");
        let limits = SealLimits {
            max_records: 10,
            max_bytes: 60_000,
        };
        let seqs: Vec<u64> = std::iter::from_fn(|| q.seal(limits).unwrap()).collect();
        assert_eq!(seqs.len(), 3, "{name}");
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{name}: {seqs:?}");
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64;
        assert!(seqs[0] > now_us - 10_000_000, "{name}: seqs start at the clock");
        let batches = drain(q.as_mut());
        assert_eq!(batches.iter().map(|b| b.seq).collect::<Vec<_>>(), seqs, "{name}");
        let all: Vec<u64> = batches.iter().flat_map(numbers).collect();
        assert_eq!(all, (0..25).collect::<Vec<_>>(), "{name}");
        // Handed out once per connection; a rewind gives the unanswered
        // again, byte for byte.
        assert_eq!(q.next_unsent().unwrap(), None, "{name}");
        q.done(seqs[1]).unwrap();
        q.rewind();
        let again = drain(q.as_mut());
        assert_eq!(again, vec![batches[0].clone(), batches[2].clone()], "{name}");
        assert!(!q.is_empty(), "{name}");
        q.done(seqs[0]).unwrap();
        q.done(seqs[2]).unwrap();
        q.done(seqs[2]).unwrap();
        q.done(12345).unwrap();
        assert!(q.is_empty(), "{name}");
        assert_eq!(q.stats().pending_batches, 0, "{name}");
    }
}

#[test]
fn a_batch_is_sealed_at_its_byte_limit_and_a_large_record_alone() {
    for (name, mut q, _dir) in both(QueueOptions::default()) {
        for i in 0..10 {
            q.push(&location(i)).unwrap();
        }
        let big = Record::app_usage(1, "app", &"t".repeat(500), 1).unwrap();
        q.push(&big).unwrap();
        let limits = SealLimits {
            max_records: 100,
            max_bytes: 200,
        };
        let mut sizes = Vec::new();
        while q.seal(limits).unwrap().is_some() {}
        for b in drain(q.as_mut()) {
            sizes.push(b.records);
        }
        assert_eq!(sizes.iter().sum::<u32>(), 11, "{name}");
        assert_eq!(*sizes.last().unwrap(), 1, "{name}: the large record alone");
        assert!(sizes.len() >= 3, "{name}: {sizes:?}");
    }
}

#[test]
fn batches_pushed_whole_keep_their_content() {
    for (name, mut q, _dir) in both(QueueOptions::default()) {
        let parts = [location(1), location(2)];
        let parts: Vec<_> = parts.iter().map(Record::parts).collect();
        let content = batch_content(&parts).unwrap();
        q.push(&location(0)).unwrap();
        let a = q.seal(SealLimits::default()).unwrap().unwrap();
        let b = q.push_sealed(content.clone(), 2).unwrap();
        assert!(b > a, "{name}");
        let batches = drain(q.as_mut());
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[1].content, content, "{name}");
        assert_eq!(numbers(&batches[1]), [1, 2], "{name}");
    }
}

#[test]
fn at_the_byte_cap_the_oldest_go_and_are_counted_exactly() {
    let options = QueueOptions {
        max_bytes: 64 << 10,
        segment_bytes: 8 << 10,
        ..QueueOptions::default()
    };
    for (name, mut q, _dir) in both(options) {
        let limits = SealLimits {
            max_records: 20,
            max_bytes: 60_000,
        };
        let pushed = 20_000u64;
        for i in 0..pushed {
            q.push(&location(i)).unwrap();
            if i % 20 == 19 {
                q.seal(limits).unwrap();
            }
        }
        while q.seal(limits).unwrap().is_some() {}
        let stats = q.stats();
        assert!(stats.bytes <= options.max_bytes, "{name}: {stats:?}");
        let batches = drain(q.as_mut());
        let mut kept = Vec::new();
        let mut told = 0u64;
        let limits = Limits {
            max_batch_records: 100_000,
            ..Limits::DEFAULT
        };
        for b in &batches {
            let decoded = Batch::decode_content(b.seq, &b.content, &limits).unwrap();
            for r in &decoded.records {
                match &r.body {
                    awp_protocol::RecordBody::Location(l) => kept.push(l.accuracy_m),
                    awp_protocol::RecordBody::Event(e) => {
                        assert_eq!(e.name, DROPPED_EVENT);
                        let Some(awp_protocol::AttrValue::Int(n)) = e
                            .attrs
                            .iter()
                            .find(|a| a.key == "dropped_total")
                            .map(|a| a.value.clone())
                        else {
                            panic!("no count")
                        };
                        told = told.max(n as u64);
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        // The newest are kept, in order; the rest were dropped and counted
        // (with the drop events that went at later caps), and the gateway
        // is told the count as it was at the last drop.
        let lost = pushed - kept.len() as u64;
        assert!(lost > 0, "{name}");
        assert_eq!(kept, (lost..pushed).collect::<Vec<_>>(), "{name}");
        let dropped = q.stats().dropped_records;
        assert!(dropped >= lost, "{name}: {dropped} < {lost}");
        assert!(
            dropped - lost < lost / 10,
            "{name}: {dropped} counts far more than {lost}"
        );
        assert_eq!(told, dropped, "{name}");
    }
}

#[test]
fn a_record_larger_than_the_queue_is_refused() {
    let options = QueueOptions {
        max_bytes: 16 << 10,
        segment_bytes: 8 << 10,
        ..QueueOptions::default()
    };
    for (name, mut q, _dir) in both(options) {
        let attrs: Vec<(String, String)> = (0..8).map(|i| (format!("k{i}"), "v".repeat(4096))).collect();
        let big = Record::event(
            1,
            "big",
            attrs
                .iter()
                .map(|(k, v)| (k.as_str(), awp_protocol::AttrValue::String(v.as_str().into()))),
        )
        .unwrap();
        let e = q.push(&big).unwrap_err();
        assert!(matches!(e, QueueError::TooLarge { .. }), "{name}: {e}");
        assert!(q.is_empty(), "{name}");
    }
}
