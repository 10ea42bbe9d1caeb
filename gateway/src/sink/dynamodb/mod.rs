//! A tenant's items in its own DynamoDB table, written with BatchWriteItem.
//!
//! One [`TenantSink::write`] call holds many agents' batches (the pipeline
//! gathers them); their records are rendered into the SDK's attribute maps
//! (`awp_store::dynamodb`) and split into BatchWriteItem requests of at most 25
//! items and 16 MB, sent several at a time with an adaptive concurrency
//! limit (additive increase on success, halving on throttling, between 1 and
//! `max_concurrency`). A request's `UnprocessedItems` are resent; throttling,
//! 5xx and transport errors are retried with capped exponential backoff and
//! full jitter (sleep = random(0, min(cap, base · 2^attempt))). The call
//! returns `Ok` only when every item is written; a non-retryable error (a
//! missing table, a validation error, denied access) or running out of time
//! (`give_up_after`) returns an error, and the pipeline answers the batches
//! with ACK RETRY — nothing is acked that is not in the table. It returns
//! only once no request of it is in flight: a request still on its way
//! when another failed could otherwise land after the pipeline removed a
//! refused batch's items (`discard`), leaving part of a REJECTED batch
//! stored. Requests waiting to be retried are not sent then, and those in
//! flight end within the SDK's attempt timeout.
//!
//! `UnprocessedItems` is keyed by the table's name or ARN (AWS documents
//! both): every item under any key is resent.
//!
//! [`TenantSink::probe`] asks the table whether it takes well-formed items
//! without storing one: a PutItem of an item of the tenant's layout with a
//! condition that never holds. A table that answers the condition
//! (`ConditionalCheckFailedException`) validated the item first; one that
//! refuses it (`ValidationException`: keys or an index that do not fit the
//! items) is at fault, not the batch it refused.
//!
//! Items with the same (`device`, `rk`) in one call (a batch resent while
//! its first copy was still queued) are written once, the later copy
//! winning: DynamoDB refuses a BatchWriteItem that names a key twice.
//!
//! The SDK's own retries are off (this module decides, and counts, every
//! retry); each attempt has a 5 s timeout. Each tenant has its own client
//! (its own region, endpoint and credentials: the standard chain, a named
//! profile, or an assumed role in the partner's account) and its own writer
//! task, so one tenant's throttled or missing table stalls only that tenant.

mod client;
mod probe;
pub mod reads;
mod request;
mod retry;
pub mod tables;

#[cfg(test)]
mod dynamodb_test;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use awp_store::AcceptedBatch;
use awp_store::packed::Packer;

use self::probe::ProbeFailure;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, WriteRequest};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use super::{SinkError, TenantSink};
use crate::config::{DynamoConfig, Layout};
use crate::telemetry::{DynamoErrorKind, DynamoMetrics};

pub use client::{client, client_for};
use request::{MAX_REQUEST_ITEMS, Requests, packed_requests};
use retry::{AdaptiveLimit, Attempt, Retry, backoff, classify, refusal_is_about_content};

/// One tenant's table.
pub struct DynamoSink {
    /// Set for a tenant with the packed layout (boxed: its buffers and zstd
    /// context are large beside the rest).
    packer: Option<Box<Packer>>,
    tenant: String,
    table: String,
    client: Client,
    limit: AdaptiveLimit,
    give_up_after: Duration,
    metrics: DynamoMetrics,
}

impl DynamoSink {
    /// A sink writing to `config.table`; a write gives up (and its batches
    /// get ACK RETRY) after `give_up_after`.
    pub async fn connect(tenant: &str, config: &DynamoConfig, give_up_after: Duration, layout: Layout) -> DynamoSink {
        DynamoSink {
            // Making a zstd context fails only without memory; the record
            // layout is then the one that still works, and it is logged.
            packer: match layout {
                Layout::Record => None,
                Layout::Packed => match Packer::new() {
                    Ok(p) => Some(Box::new(p)),
                    Err(e) => {
                        tracing::error!(tenant, error = %e, "cannot pack: writing this tenant's records one item each");
                        None
                    }
                },
            },
            tenant: tenant.to_owned(),
            table: config.table.clone(),
            client: client_for(tenant, config).await,
            limit: AdaptiveLimit::new(config.max_concurrency),
            give_up_after,
            metrics: DynamoMetrics::new(tenant),
        }
    }
}

impl DynamoSink {
    async fn send(&self, requests: Vec<WriteRequest>) -> Attempt {
        let started = Instant::now();
        let count = requests.len();
        self.metrics.request_started();
        let result = self
            .client
            .batch_write_item()
            .request_items(self.table.clone(), requests.clone())
            .send()
            .await;
        match result {
            Ok(out) => {
                // Keyed by the table's name or its ARN: any key counts.
                let unprocessed: Vec<WriteRequest> = out
                    .unprocessed_items
                    .into_iter()
                    .flat_map(HashMap::into_values)
                    .flatten()
                    .collect();
                self.metrics
                    .request_done(started.elapsed(), count - unprocessed.len(), unprocessed.len());
                if unprocessed.is_empty() {
                    Attempt::Done
                } else {
                    Attempt::Unprocessed(unprocessed)
                }
            }
            Err(e) => {
                let (retry, message) = classify(&e);
                let kind = match retry {
                    Retry::Throttled => DynamoErrorKind::Throttled,
                    Retry::Transient => DynamoErrorKind::Transient,
                    Retry::Refused | Retry::Never => DynamoErrorKind::Fatal,
                };
                self.metrics.request_failed(started.elapsed(), kind);
                Attempt::Failed(retry, message, std::sync::Arc::new(e), requests)
            }
        }
    }
}

impl DynamoSink {
    /// Sends every request `next` yields, as many at a time as the limit
    /// allows, retrying what can be retried; `Ok` only when every one of
    /// them is written.
    async fn send_all(
        &mut self,
        mut next: impl FnMut() -> Result<Option<Vec<WriteRequest>>, SinkError>,
    ) -> Result<(), SinkError> {
        let deadline = Instant::now() + self.give_up_after;
        // Requests to send again, with their attempt number.
        let mut retries: Vec<(Vec<WriteRequest>, u32)> = Vec::new();
        // Set when the write has failed: retries still waiting are not sent.
        let stopped = std::sync::atomic::AtomicBool::new(false);
        let mut inflight = FuturesUnordered::new();
        let result = 'write: loop {
            while inflight.len() < self.limit.current() {
                let (request, attempt) = match retries.pop() {
                    Some(r) => r,
                    None => match next() {
                        Ok(Some(request)) => (request, 0),
                        Ok(None) => break,
                        // Rendering failed: nothing more goes out.
                        Err(e) => break 'write Err(e),
                    },
                };
                let (this, stopped) = (&*self, &stopped);
                inflight.push(async move {
                    if attempt > 0 {
                        this.metrics.retry();
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                    if stopped.load(Ordering::SeqCst) {
                        return (Attempt::NotSent, attempt);
                    }
                    (this.send(request).await, attempt)
                });
            }
            // The limit is at least 1, so with requests left one is in flight.
            let Some((outcome, attempt)) = inflight.next().await else {
                break Ok(());
            };
            let (retry, message, cause, rest) = match outcome {
                Attempt::Done => {
                    self.limit.on_success();
                    continue;
                }
                Attempt::NotSent => continue,
                Attempt::Unprocessed(rest) => (Retry::Throttled, "unprocessed items".to_owned(), None, rest),
                Attempt::Failed(retry, message, cause, rest) => (retry, message, Some(cause), rest),
            };
            match retry {
                Retry::Refused if refusal_is_about_content(&message) => {
                    tracing::warn!(tenant = %self.tenant, table = %self.table, error = %message, "DynamoDB refused a request's items");
                    // The table is the operator's business (it is in the log), not the agent's.
                    break Err(SinkError::Refused { what: message, cause });
                }
                Retry::Refused => {
                    // A key, an index or a type the items do not fit: the
                    // table's fault, whatever the items (RETRY, degraded).
                    tracing::error!(tenant = %self.tenant, table = %self.table, error = %message, "DynamoDB refused items for a reason of the table's (its keys or an index do not fit them)");
                    break Err(SinkError::Fatal {
                        what: format!("table {}: {message}", self.table),
                        cause,
                    });
                }
                Retry::Never => {
                    tracing::error!(tenant = %self.tenant, table = %self.table, error = %message, "DynamoDB write failed and will not succeed by retrying");
                    break Err(SinkError::Fatal {
                        what: format!("table {}: {message}", self.table),
                        cause,
                    });
                }
                Retry::Throttled => {
                    self.metrics.throttled();
                    self.limit.on_throttle();
                }
                Retry::Transient => {}
            }
            if Instant::now() >= deadline {
                tracing::warn!(tenant = %self.tenant, table = %self.table, error = %message, "DynamoDB write gave up at its deadline");
                break Err(SinkError::Retryable {
                    what: format!("table {}: {message}", self.table),
                    cause,
                });
            }
            tracing::debug!(tenant = %self.tenant, error = %message, attempt, "retrying a BatchWriteItem");
            retries.push((rest, attempt + 1));
        };
        // Nothing of the write may land after it returned: retries not yet
        // sent stay unsent, requests on their way are waited for (each ends
        // within the SDK's attempt timeout).
        stopped.store(true, Ordering::SeqCst);
        while inflight.next().await.is_some() {}
        result
    }
}

impl TenantSink for DynamoSink {
    async fn write(&mut self, batches: Vec<AcceptedBatch>) -> Result<(), SinkError> {
        if let Some(packer) = &mut self.packer {
            let mut requests = packed_requests(packer, &batches)?.into_iter();
            return self.send_all(|| Ok(requests.next())).await;
        }
        let mut fresh = Requests::new(&batches)?;
        self.send_all(|| fresh.next_request()).await
    }

    async fn probe(&mut self) -> Result<(), SinkError> {
        self.probe_table().await.map_err(ProbeFailure::into_error)
    }

    async fn health_check(&mut self) -> Result<(), SinkError> {
        match self.probe_table().await {
            Ok(()) => Ok(()),
            // Writes need BatchWriteItem only: a denied probe says nothing
            // of them (docs/dynamodb.md, IAM).
            Err(ProbeFailure::Denied(e)) => {
                tracing::warn!(table = %self.table, error = %e.report(), "the health check cannot tell whether the table takes items");
                Ok(())
            }
            Err(ProbeFailure::Store(e)) => Err(e),
        }
    }

    async fn discard(&mut self, batch: &AcceptedBatch) -> Result<(), SinkError> {
        let mut keys = Vec::new();
        match &mut self.packer {
            None => {
                for record in batch.records() {
                    keys.push(record?.key.to_string());
                }
            }
            Some(packer) => packer.pack::<SinkError>(batch, |item| {
                keys.push(item.rk.to_owned());
                Ok(())
            })?,
        }
        let mut deletes = Vec::with_capacity(keys.len());
        for rk in keys {
            let key = HashMap::from([
                ("device".to_owned(), AttributeValue::S(batch.device_id().to_owned())),
                ("rk".to_owned(), AttributeValue::S(rk)),
            ]);
            let delete = DeleteRequest::builder()
                .set_key(Some(key))
                .build()
                .map_err(|e| SinkError::fatal(format!("cannot build a DeleteRequest: {e}")))?;
            deletes.push(WriteRequest::builder().delete_request(delete).build());
        }
        let mut chunks = deletes.into_iter();
        self.send_all(|| {
            let chunk: Vec<WriteRequest> = chunks.by_ref().take(MAX_REQUEST_ITEMS).collect();
            Ok((!chunk.is_empty()).then_some(chunk))
        })
        .await
    }
}
