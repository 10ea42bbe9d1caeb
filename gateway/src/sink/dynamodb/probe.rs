//! Whether the table takes well-formed items, asked without storing one: a
//! PutItem of an item of the tenant's layout with a condition that never
//! holds.

use std::collections::HashMap;

use awp_store::AcceptedBatch;
use awp_store::dynamodb::AttributeItems;

use aws_sdk_dynamodb::types::AttributeValue;

use super::SinkError;

use super::*;

/// The device id of [`DynamoSink::probe_table`]'s item (never written).
pub(super) const PROBE_DEVICE: &str = "awp-gateway-probe";

/// A one-record batch, for an item of the tenant's layout that
/// [`DynamoSink::probe_table`] offers the table.
pub(super) fn probe_batch() -> Result<AcceptedBatch, SinkError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
    let batch = awp_protocol::Batch {
        seq: 0,
        base_time_ms: now,
        records: vec![awp_protocol::Record {
            time_offset_ms: 0,
            body: awp_protocol::RecordBody::Location(awp_protocol::Location {
                lat_e7: 0,
                lon_e7: 0,
                accuracy_m: 1,
            }),
        }],
    };
    let limits = awp_protocol::Limits::DEFAULT;
    let content = awp_protocol::PreparedBatch::new(&batch, &limits)
        .map_err(|e| SinkError::fatal_from("cannot make a probe item", e))?;
    let origin = std::sync::Arc::new(awp_store::Origin {
        device_id: PROBE_DEVICE.into(),
        platform: awp_protocol::Platform::Linux,
        agent_version: "probe".into(),
    });
    AcceptedBatch::accept(origin, 0, now, None, content.content().clone(), &limits)
        .map_err(|e| SinkError::fatal_from("cannot make a probe item", e))
}

/// Why a probe failed: the probe itself denied (the writer lacks
/// `dynamodb:PutItem`, which writes do not need), or the store's answer.
pub(super) enum ProbeFailure {
    /// AccessDenied on the probe's PutItem.
    Denied(SinkError),
    /// Anything else, classified as a write's answer would be.
    Store(SinkError),
}

impl ProbeFailure {
    /// What a refused write learns from the probe: a denied probe cannot
    /// tell the batch's fault from the store's, so the batch gets ACK RETRY.
    pub(super) fn into_error(self) -> SinkError {
        match self {
            ProbeFailure::Denied(e) | ProbeFailure::Store(e) => e,
        }
    }
}

impl DynamoSink {
    /// A well-formed item of the tenant's layout.
    pub(super) fn probe_item(&mut self) -> Result<HashMap<String, AttributeValue>, SinkError> {
        let batch = probe_batch()?;
        let mut item = None;
        match &mut self.packer {
            Some(packer) => packer.pack::<SinkError>(&batch, |packed| {
                item.get_or_insert_with(|| awp_store::dynamodb::packed_item(&packed));
                Ok(())
            })?,
            None => {
                if let Some(record) = batch.records().next() {
                    item = Some(AttributeItems::new(&batch).item(&record?));
                }
            }
        }
        item.ok_or_else(|| SinkError::fatal("the probe batch has no item"))
    }

    /// Whether the table takes well-formed items now: a PutItem of one,
    /// under a condition that never holds, so nothing is stored. DynamoDB
    /// validates an item (keys, index keys, sizes) before it evaluates the
    /// condition: a failed condition means the item was fine.
    pub(super) async fn probe_table(&mut self) -> Result<(), ProbeFailure> {
        let item = self.probe_item().map_err(ProbeFailure::Store)?;
        let answer = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_exists(#d) AND attribute_not_exists(#d)")
            .expression_attribute_names("#d", "device")
            .send()
            .await;
        match answer {
            // Cannot happen (the condition never holds); nothing is wrong with the table either way.
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => {
                let (retry, message) = classify(&e);
                if message.starts_with("AccessDenied") {
                    return Err(ProbeFailure::Denied(SinkError::fatal_from(
                        format!(
                            "table {}: the probe needs dynamodb:PutItem (docs/dynamodb.md, IAM), and was denied: \
                             until it is granted, a batch the table refuses alone gets ACK RETRY",
                            self.table
                        ),
                        e,
                    )));
                }
                let message = format!("table {}: a probe item was refused: {message}", self.table);
                Err(ProbeFailure::Store(match retry {
                    Retry::Throttled | Retry::Transient => SinkError::retryable_from(message, e),
                    Retry::Refused | Retry::Never => SinkError::fatal_from(message, e),
                }))
            }
        }
    }
}
