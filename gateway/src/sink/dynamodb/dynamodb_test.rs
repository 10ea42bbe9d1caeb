//! Requests built, errors classified, backoff and the adaptive limit.

use std::sync::Arc;

use awp_protocol::{Limits, Platform, Record, RecordBody, Unknown};
use awp_store::Origin;

use super::*;
use crate::sink::dynamodb::client::role_session_name;
use crate::sink::dynamodb::retry::BACKOFF_BASE;
use crate::sink::dynamodb::retry::BACKOFF_CAP;

/// A batch of `count` unknown-kind records of `payload` bytes each, all at
/// the same time, from `device`, under `seq`.
fn batch(device: &str, seq: u64, count: usize, payload: usize) -> AcceptedBatch {
    let body = vec![7u8; payload];
    let b = awp_protocol::Batch {
        seq,
        base_time_ms: 1_764_000_000_000,
        records: (0..count)
            .map(|_| Record {
                time_offset_ms: 0,
                body: RecordBody::Unknown(Unknown {
                    kind: 9,
                    body: body.as_slice().into(),
                }),
            })
            .collect(),
    };
    let limits = Limits {
        max_frame_len: u32::MAX,
        max_batch_bytes: u32::MAX,
        ..Limits::DEFAULT
    };
    let content = awp_protocol::PreparedBatch::new(&b, &limits).unwrap().content().clone();
    let origin = Arc::new(Origin {
        device_id: device.into(),
        platform: Platform::Linux,
        agent_version: String::new(),
    });
    AcceptedBatch::accept(origin, seq, 1, None, content, &limits).unwrap()
}

/// Every request of a write, rendered.
fn requests(batches: &[AcceptedBatch]) -> Result<Vec<Vec<WriteRequest>>, SinkError> {
    let mut all = Requests::new(batches)?;
    let mut out = Vec::new();
    while let Some(r) = all.next_request()? {
        out.push(r);
    }
    Ok(out)
}

#[test]
fn requests_hold_at_most_25_items_and_each_key_once() {
    // 60 records of seq 1, then seq 1 again (a resend queued beside the
    // first copy): its 60 keys are the same, so each is written once.
    let reqs = requests(&[batch("d", 1, 60, 10), batch("d", 1, 60, 10), batch("e", 1, 3, 10)]).unwrap();
    assert_eq!(reqs.iter().map(Vec::len).collect::<Vec<_>>(), [25, 25, 13]);
    let keys: std::collections::HashSet<(String, String)> = reqs
        .iter()
        .flatten()
        .map(|w| {
            let item = w.put_request().unwrap().item();
            let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).unwrap().clone();
            (s("device"), s("rk"))
        })
        .collect();
    assert_eq!(keys.len(), 63);
    assert!(reqs.iter().flatten().all(|w| {
        let item = w.put_request().unwrap().item();
        item.get("body").is_some_and(|b| matches!(b, AttributeValue::B(_)))
    }));
}

#[test]
fn requests_stay_under_16_mb() {
    let reqs = requests(&[batch("e", 1, 50, 390_000)]).unwrap();
    assert!(reqs.iter().all(|r| r.len() <= 25));
    assert!(reqs.len() >= 2, "50 × 390 KB needs more than one request");
    assert_eq!(requests(&[batch("d", 1, 10, 380_000)]).unwrap().len(), 1);
}

#[test]
fn only_dynamodbs_words_for_bad_values_blame_the_items() {
    assert!(refusal_is_about_content(
        "ValidationException: Item size has exceeded the maximum allowed size"
    ));
    assert!(refusal_is_about_content(
        "ValidationException: Number overflow. Attempting to store a number with magnitude larger than supported range"
    ));
    for table_fault in [
        "ValidationException: One of the required keys was not given a value",
        "ValidationException: One or more parameter values were invalid: Type mismatch for Index Key ts Expected: S Actual: N IndexName: by-ts",
        "ValidationException: The provided key element does not match the schema",
    ] {
        assert!(!refusal_is_about_content(table_fault), "{table_fault}");
    }
}

#[test]
fn an_assumed_roles_session_names_the_tenant() {
    assert_eq!(role_session_name("acme"), "awp-gateway-acme");
    assert_eq!(role_session_name(""), "awp-gateway");
    assert_eq!(role_session_name(&"t".repeat(80)).len(), 64);
}

#[test]
fn backoff_is_jittered_and_capped() {
    for attempt in 0..40 {
        let d = backoff(attempt);
        assert!(d <= BACKOFF_CAP);
        assert!(d <= BACKOFF_BASE.saturating_mul(1 << attempt.min(16)));
    }
}

#[test]
fn a_limit_of_zero_still_lets_one_request_through() {
    let l = AdaptiveLimit::new(0);
    assert_eq!(l.current(), 1);
    l.on_success();
    l.on_throttle();
    assert_eq!(l.current(), 1);
}

#[test]
fn the_limit_adapts_within_bounds() {
    let l = AdaptiveLimit::new(8);
    assert_eq!(l.current(), 4);
    for _ in 0..10 {
        l.on_success();
    }
    assert_eq!(l.current(), 8);
    l.on_throttle();
    assert_eq!(l.current(), 4);
    for _ in 0..10 {
        l.on_throttle();
    }
    assert_eq!(l.current(), 1);
}
