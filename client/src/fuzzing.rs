//! The fuzz target's harness (`fuzz/fuzz_targets/client_session.rs`): the
//! engine's session state machine fed arbitrary gateway frames, ACKs for
//! seqs in flight and not, and the clock, checking after each step that
//! nothing panicked, that a seq is always resent with the bytes it was
//! first sent with, that no seq is twice in flight, that the window holds
//! and that nothing new goes after GOAWAY. Not part of the API.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use awp_protocol::{Ack, CompressionSet, Decoded, ErrorFrame, Frame, GoAway, Limits, Welcome, decode};
use bytes::{Bytes, BytesMut};

use crate::engine::session::{Answered, Session, SessionSettings};
use crate::queue::{SealedBatch, batch_content};
use crate::record::Record;

/// Reads the fuzzer's bytes.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u64(&mut self, len: usize) -> u64 {
        (0..len).fold(0u64, |v, _| (v << 8) | u64::from(self.u8().unwrap_or(0)))
    }

    fn bytes(&mut self, len: usize) -> &[u8] {
        let (head, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        head
    }
}

/// Runs one input; panics on a broken promise.
pub fn run(data: &[u8]) {
    let mut input = Input(data);
    let window = 1 + u64::from(input.u8().unwrap_or(0) % 8);
    let compression = CompressionSet::from_bits(input.u8().unwrap_or(0) & 0b11).unwrap_or(CompressionSet::NONE);
    let welcome = Welcome {
        version: 1,
        session_id: [0; 16],
        max_frame_len: 1 << 20,
        max_batch_records: 1000,
        max_inflight: window,
        heartbeat_ms: 30_000,
        compression,
    };
    let settings = SessionSettings {
        compression: awp_protocol::Compression::Lz4,
        ack_timeout: Duration::from_secs(60),
    };
    let mut now = Instant::now();
    let mut session = Session::new(&welcome, settings, now);
    let limits = welcome.limits();
    let mut out = BytesMut::new();
    let mut next_seq = 1u64;
    let mut first_sent: HashMap<u64, Bytes> = HashMap::new();
    let mut in_flight: HashSet<u64> = HashSet::new();
    let mut goaway = false;

    while let Some(op) = input.u8() {
        match op % 5 {
            0 => {
                let batch = match session.due_retry(now) {
                    Some(b) => Some(b),
                    None if session.wants_new() => {
                        let records: Vec<Record> = (0..1 + u64::from(op >> 5))
                            .map(|i| Record::location(1_700_000_000_000 + i, 1, 2, next_seq).expect("a record"))
                            .collect();
                        let parts: Vec<_> = records.iter().map(Record::parts).collect();
                        let content = batch_content(&parts).expect("valid content");
                        next_seq += 1;
                        Some(SealedBatch {
                            seq: next_seq - 1,
                            records: records.len() as u32,
                            content,
                        })
                    }
                    None => None,
                };
                if let Some(batch) = batch {
                    assert!(
                        !goaway || first_sent.contains_key(&batch.seq),
                        "a new batch after GOAWAY"
                    );
                    session.send(batch, &mut out, now).expect("a batch within the limits");
                }
            }
            1 => {
                now += Duration::from_millis(input.u64(3));
                session.ping_if_idle(&mut out, now);
                if session.end(now).is_some() {
                    break;
                }
            }
            2 => {
                let len = usize::from(input.u8().unwrap_or(0));
                let bytes = Bytes::copy_from_slice(input.bytes(len));
                if let Ok(Decoded::Complete(frame, _)) = decode(&bytes, &Limits::DEFAULT)
                    && !feed(&mut session, frame, &mut out, now, &mut in_flight, &mut goaway)
                {
                    break;
                }
            }
            3 => {
                // An ACK for a seq in flight (or near one): the answers
                // random bytes would almost never reach.
                let pick = input.u8().unwrap_or(0);
                let seq = if in_flight.is_empty() || pick & 1 == 1 {
                    input.u64(1)
                } else {
                    let mut seqs: Vec<u64> = in_flight.iter().copied().collect();
                    seqs.sort_unstable();
                    seqs[usize::from(pick >> 1) % seqs.len()]
                };
                let ack = match input.u8().unwrap_or(0) % 3 {
                    0 => Ack::ok(seq),
                    1 => Ack::retry(seq, input.u64(8), "busy"),
                    _ => Ack::rejected(seq, "bad"),
                };
                if !feed(
                    &mut session,
                    Frame::Ack(ack),
                    &mut out,
                    now,
                    &mut in_flight,
                    &mut goaway,
                ) {
                    break;
                }
            }
            _ => {
                let frame = match input.u8().unwrap_or(0) % 4 {
                    0 => Frame::GoAway(GoAway::new(input.u64(8), "draining")),
                    1 => Frame::Ping(input.u64(8)),
                    2 => Frame::Pong(input.u64(8)),
                    _ => Frame::Error(ErrorFrame::new(awp_protocol::ErrorCode::Internal, "no")),
                };
                if !feed(&mut session, frame, &mut out, now, &mut in_flight, &mut goaway) {
                    break;
                }
            }
        }
        check_sent(&mut out, &limits, &mut first_sent, &mut in_flight, window);
        let _ = session.next_wake();
    }
}

/// Feeds a frame; false when the connection ends.
fn feed(
    session: &mut Session,
    frame: Frame,
    out: &mut BytesMut,
    now: Instant,
    in_flight: &mut HashSet<u64>,
    goaway: &mut bool,
) -> bool {
    let is_goaway = matches!(frame, Frame::GoAway(_));
    match session.on_frame(frame, out, now) {
        Ok(Answered::Stored { seq, .. } | Answered::Rejected { seq, .. } | Answered::Retry { seq }) => {
            assert!(in_flight.remove(&seq), "answered {seq}, which was not in flight");
        }
        Ok(Answered::Unknown { seq }) => assert!(!in_flight.contains(&seq), "{seq} is in flight"),
        Ok(Answered::Nothing) => *goaway |= is_goaway,
        Err(_) => return false,
    }
    true
}

/// Reads what the session wrote: each BATCH is its seq's first bytes, never
/// twice in flight, within the window.
fn check_sent(
    out: &mut BytesMut,
    limits: &Limits,
    first_sent: &mut HashMap<u64, Bytes>,
    in_flight: &mut HashSet<u64>,
    window: u64,
) {
    let mut view = out.split().freeze();
    while !view.is_empty() {
        let Ok(Decoded::Complete(frame, used)) = decode(&view, limits) else {
            panic!("the session wrote a frame that does not decode");
        };
        let bytes = view.split_to(used);
        if let Frame::Batch(b) = frame {
            let first = first_sent.entry(b.seq()).or_insert_with(|| bytes.clone());
            assert_eq!(*first, bytes, "seq {} resent with other bytes", b.seq());
            assert!(in_flight.insert(b.seq()), "seq {} sent while in flight", b.seq());
            assert!(in_flight.len() as u64 <= window, "the window ({window}) is exceeded");
        }
    }
}

#[cfg(test)]
mod tests {
    /// The harness on random inputs, so that it runs (and its checks hold)
    /// in every test run, not only under cargo-fuzz.
    #[test]
    fn random_inputs_keep_every_promise() {
        let mut rng = fastrand::Rng::with_seed(20);
        for _ in 0..3_000 {
            let len = rng.usize(0..400);
            let input: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            super::run(&input);
        }
    }

    /// A RETRY or GOAWAY delay past any clock (a hostile gateway) is taken
    /// at the cap, not overflowed.
    #[test]
    fn the_longest_delays_do_not_overflow() {
        // window 1, LZ4; send; ACK RETRY u64::MAX for it; time; send again.
        let mut input = vec![0, 0b11, 0, 3, 0, 1];
        input.extend([0xff; 8]);
        input.extend([1, 0xff, 0xff, 0xff, 0]);
        input.extend([4, 0]);
        input.extend([0xff; 8]);
        super::run(&input);
    }
}
