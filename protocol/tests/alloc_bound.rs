//! Decoding never allocates more than the limits allow, whatever the input.
//!
//! This test binary runs under a capped global allocator: around each decode
//! the cap is set to what is already allocated plus the bound the crate
//! documents, so an allocation past the bound fails and aborts the test.
//! (zstd's C library allocates its contexts with malloc, outside the cap; its
//! output buffers are ours and counted.)

mod common;

use std::alloc::System;
use std::mem::size_of;
use std::sync::Mutex;

use awp_protocol::{Attr, Decoded, Frame, Limits, MAX_EVENT_ATTRS, Record, decode};
use bytes::{BufMut, Bytes, BytesMut};
use cap::Cap;
use proptest::prelude::*;

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// The cap is process-wide: tests hold this while they move it, so that one
/// test's cap never meets another test's allocations.
static CAP_LOCK: Mutex<()> = Mutex::new(());

fn with_cap<T>(extra: usize, f: impl FnOnce() -> T) -> T {
    let _guard = CAP_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    ALLOCATOR.set_limit(ALLOCATOR.allocated() + extra).unwrap();
    let out = f();
    ALLOCATOR.set_limit(usize::MAX).unwrap();
    out
}

/// The documented bound on what decoding one frame (and its content) allocates.
fn bound(limits: &Limits) -> usize {
    let records = limits.max_batch_records as usize;
    limits.max_batch_bytes as usize
        + records * (size_of::<Record<'_>>() + MAX_EVENT_ATTRS * size_of::<Attr<'_>>())
        + 64 * 1024
}

/// Decodes `bytes` (frame and content) with the allocator capped at the bound.
fn decode_capped(bytes: &Bytes, limits: &Limits) {
    with_cap(bound(limits), || {
        if let Ok(Decoded::Complete(Frame::Batch(b), _)) = decode(bytes, limits) {
            let _ = b.decode(limits).map(|batch| batch.records.len());
        }
    });
}

fn framed(flags: u8, payload: &[u8]) -> Bytes {
    common::framed(3, flags, payload)
}

#[test]
fn the_cap_is_enforced() {
    let refused = with_cap(1024, || Vec::<u8>::new().try_reserve(1 << 20).is_err());
    assert!(refused, "an allocation past the cap must fail");
}

#[test]
fn a_zstd_bomb_costs_at_most_its_declared_size() {
    let limits = Limits::DEFAULT;
    let raw = vec![0u8; 64 << 20];
    let bomb = zstd::bulk::compress(&raw, 19).unwrap();
    for declared in [1000u32, 4 << 20] {
        let mut payload = declared.to_be_bytes().to_vec();
        payload.extend_from_slice(&bomb);
        decode_capped(&framed(2, &payload), &limits);
    }
}

#[test]
fn the_largest_event_batch_stays_within_the_bound() {
    // 1000 EVENT records with 64 one-byte-key null attributes each: the most
    // attribute structs per input byte a valid batch can ask for.
    let limits = Limits::DEFAULT;
    let mut content = BytesMut::new();
    content.put_u8(1); // seq
    content.put_u8(0); // base_time_ms
    content.put_slice(&[0xe8, 0x07]); // count 1000
    for _ in 0..1000 {
        let mut body = vec![1, b'e', 64];
        for k in 0..64u8 {
            body.extend_from_slice(&[1, k.wrapping_add(0x40) & 0x7f, 0]);
        }
        content.put_u8(5);
        content.put_u8(0);
        content.put_slice(&[(body.len() as u8) | 0x80, (body.len() >> 7) as u8]);
        content.put_slice(&body);
    }
    let bytes = framed(0, &content);
    let Ok(Decoded::Complete(Frame::Batch(b), _)) = decode(&bytes, &limits) else {
        panic!("frame")
    };
    assert_eq!(b.decode(&limits).unwrap().records.len(), 1000);
    decode_capped(&bytes, &limits);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_batch_payloads_stay_within_the_bound(
        flags in 0..=2u8,
        declared in prop_oneof![Just(4u32 << 20), any::<u32>(), 0..4096u32],
        payload in prop::collection::vec(any::<u8>(), 0..4096),
    ) {
        let mut p = Vec::with_capacity(payload.len() + 4);
        if flags != 0 {
            p.extend_from_slice(&declared.to_be_bytes());
        }
        p.extend_from_slice(&payload);
        decode_capped(&framed(flags, &p), &Limits::DEFAULT);
    }
}
