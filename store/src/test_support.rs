//! Batches of the test vectors, accepted as the gateway's session accepts
//! them: the one place tests (this crate's and the gateway's, with the
//! `test-support` feature) get an `AcceptedBatch` from. The vectors
//! themselves come from `awp_testkit`.

use std::sync::Arc;

use awp_protocol::{Decoded, Frame, Limits, Platform, RecordBody, decode};
use bytes::Bytes;

use crate::{AcceptedBatch, Origin};

/// The vectors' HELLO sends device `dev-0001`, android, agent 4.2.0.
pub fn origin() -> Arc<Origin> {
    Arc::new(Origin {
        device_id: "dev-0001".into(),
        platform: Platform::Android,
        agent_version: "4.2.0".into(),
    })
}

/// A valid BATCH vector, accepted with received_at 1764000009999 and no retention.
pub fn accept_vector(name: &str) -> AcceptedBatch {
    accept_vector_with(name, "4.2.0", None)
}

/// A valid BATCH vector, accepted with the given agent version and expiry.
pub fn accept_vector_with(name: &str, agent_version: &str, expires_at: Option<u64>) -> AcceptedBatch {
    let bytes = Bytes::copy_from_slice(&awp_testkit::vectors().valid(name).bytes);
    let Ok(Decoded::Complete(Frame::Batch(frame), _)) = decode(&bytes, &Limits::DEFAULT) else {
        panic!("{name} is not a whole BATCH");
    };
    let origin = Arc::new(Origin {
        agent_version: agent_version.into(),
        ..(*origin()).clone()
    });
    AcceptedBatch::accept(
        origin,
        frame.seq(),
        1_764_000_009_999,
        expires_at,
        frame.content().clone(),
        &Limits::DEFAULT,
    )
    .unwrap()
}

/// A batch of `bodies` at time 1764000000000, seq 5, from `device`.
pub fn accept_records(device: &str, bodies: Vec<RecordBody<'static>>) -> AcceptedBatch {
    let batch = awp_protocol::Batch {
        seq: 5,
        base_time_ms: 1_764_000_000_000,
        records: bodies
            .into_iter()
            .map(|body| awp_protocol::Record {
                time_offset_ms: 0,
                body,
            })
            .collect(),
    };
    let prepared = awp_protocol::PreparedBatch::new(&batch, &Limits::DEFAULT).unwrap();
    let origin = Arc::new(Origin {
        device_id: device.into(),
        ..(*origin()).clone()
    });
    AcceptedBatch::accept(
        origin,
        5,
        1_764_000_009_999,
        None,
        prepared.content().clone(),
        &Limits::DEFAULT,
    )
    .unwrap()
}

/// A valid BATCH vector from `dev-0001`, received at `received_at_ms`.
pub fn accept_vector_at(name: &str, received_at_ms: u64) -> AcceptedBatch {
    let bytes = Bytes::copy_from_slice(&awp_testkit::vectors().valid(name).bytes);
    let Ok(Decoded::Complete(Frame::Batch(frame), _)) = decode(&bytes, &Limits::DEFAULT) else {
        panic!("{name} is not a whole BATCH");
    };
    AcceptedBatch::accept(
        origin(),
        frame.seq(),
        received_at_ms,
        None,
        frame.content().clone(),
        &Limits::DEFAULT,
    )
    .unwrap()
}
