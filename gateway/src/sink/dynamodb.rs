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

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use awp_store::batch::StoredRecords;
use awp_store::dynamodb::AttributeItems;
use awp_store::packed::Packer;
use awp_store::{AcceptedBatch, ItemSizer, RangeKey};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::config::{Credentials, Region};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, PutRequest, WriteRequest};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use secrecy::ExposeSecret;

use super::{SinkError, TenantSink};
use crate::config::{DynamoConfig, Layout};
use crate::telemetry::{DynamoErrorKind, DynamoMetrics};

/// BatchWriteItem's limits.
const MAX_REQUEST_ITEMS: usize = 25;
const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// Backoff: first retry waits up to BASE, doubling to at most CAP.
const BACKOFF_BASE: Duration = Duration::from_millis(25);
const BACKOFF_CAP: Duration = Duration::from_secs(2);

/// Builds a DynamoDB client for a destination (tools and tests; the sink
/// names its tenant, [`client_for`]).
pub async fn client(config: &DynamoConfig) -> Client {
    client_for("", config).await
}

/// Builds the DynamoDB client for `tenant`'s destination. An assumed role's
/// session is named after the tenant (`awp-gateway-TENANT`, in the
/// partner's CloudTrail), with the tenant's `external_id` if it has one.
pub async fn client_for(tenant: &str, config: &DynamoConfig) -> Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(config.region.clone()))
        .http_client(http)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(5))
                .build(),
        );
    if let Some(profile) = &config.profile {
        loader = loader.profile_name(profile);
    }
    if let (Some(key), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
        loader = loader.credentials_provider(Credentials::new(
            key,
            secret.expose_secret(),
            None,
            None,
            "awp-gateway-config",
        ));
    }
    let base = loader.load().await;
    let mut builder = aws_sdk_dynamodb::config::Builder::from(&base);
    if let Some(role) = &config.role_arn {
        let mut provider = aws_config::sts::AssumeRoleProvider::builder(role)
            .session_name(role_session_name(tenant))
            .configure(&base);
        if let Some(id) = &config.external_id {
            provider = provider.external_id(id);
        }
        let provider = provider.build().await;
        builder = builder.credentials_provider(provider);
    }
    if let Some(endpoint) = &config.endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    Client::from_conf(builder.build())
}

/// The name of the assumed-role session of `tenant`'s client: STS takes at
/// most 64 characters of `[\w+=,.@-]`, which tenant ids are made of.
fn role_session_name(tenant: &str) -> String {
    let mut name = if tenant.is_empty() {
        "awp-gateway".to_owned()
    } else {
        format!("awp-gateway-{tenant}")
    };
    name.truncate(64);
    name
}

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

/// The batches' items as BatchWriteItem requests, rendered one request at a
/// time as the write loop asks for them (so a write holds the attribute maps
/// of the requests in flight, not of all its items): ≤ 25 items, ≤ 16 MB,
/// each key once (the later copy of a key wins; order among distinct keys
/// is kept).
struct Requests<'a> {
    batches: std::slice::Iter<'a, AcceptedBatch>,
    /// Per (device, key), the number of its last copy among all the items.
    last: HashMap<(&'a str, RangeKey), usize>,
    /// The batch being rendered: its records, attribute builder and sizer.
    current: Option<(&'a AcceptedBatch, StoredRecords<'a>, AttributeItems, ItemSizer)>,
    /// Items seen so far, copies included.
    seen: usize,
    /// An item that did not fit the last request, with its size.
    carried: Option<(WriteRequest, usize)>,
}

impl<'a> Requests<'a> {
    fn new(batches: &'a [AcceptedBatch]) -> Result<Requests<'a>, SinkError> {
        let mut last = HashMap::new();
        let mut n = 0usize;
        for batch in batches {
            for record in batch.records() {
                last.insert((batch.device_id(), record?.key), n);
                n += 1;
            }
        }
        Ok(Requests {
            batches: batches.iter(),
            last,
            current: None,
            seen: 0,
            carried: None,
        })
    }

    /// The next item to write and its size, skipping copies of keys that
    /// come again later; `None` when all are rendered.
    fn next_item(&mut self) -> Result<Option<(WriteRequest, usize)>, SinkError> {
        if let Some(item) = self.carried.take() {
            return Ok(Some(item));
        }
        loop {
            if self.current.is_none() {
                let Some(batch) = self.batches.next() else {
                    return Ok(None);
                };
                self.current = Some((
                    batch,
                    batch.records(),
                    AttributeItems::new(batch),
                    ItemSizer::new(batch),
                ));
            }
            let Some((batch, records, items, sizer)) = &mut self.current else {
                continue;
            };
            let Some(record) = records.next() else {
                self.current = None;
                continue;
            };
            let record = record?;
            let this = self.seen;
            self.seen += 1;
            if self.last.get(&(batch.device_id(), record.key)) != Some(&this) {
                continue;
            }
            let size = sizer.item_size(&record.key, &record.record);
            let put = PutRequest::builder()
                .set_item(Some(items.item(&record)))
                .build()
                .map_err(|e| SinkError::Fatal(format!("cannot build a PutRequest: {e}")))?;
            return Ok(Some((WriteRequest::builder().put_request(put).build(), size)));
        }
    }

    /// The next request, or `None` when every item is in one.
    fn next_request(&mut self) -> Result<Option<Vec<WriteRequest>>, SinkError> {
        let mut request = Vec::with_capacity(MAX_REQUEST_ITEMS);
        let mut bytes = 0;
        while request.len() < MAX_REQUEST_ITEMS {
            let Some((item, size)) = self.next_item()? else { break };
            if bytes + size > MAX_REQUEST_BYTES && !request.is_empty() {
                self.carried = Some((item, size));
                break;
            }
            request.push(item);
            bytes += size;
        }
        Ok((!request.is_empty()).then_some(request))
    }
}

/// How a failed request is handled.
/// A write's requests in the packed layout: every batch's packed items (one
/// per batch, or its parts), at most 25 items and 16 MB a request; a key
/// named twice (a batch resent while its first copy was queued) is written
/// once, the later copy winning.
fn packed_requests(packer: &mut Packer, batches: &[AcceptedBatch]) -> Result<Vec<Vec<WriteRequest>>, SinkError> {
    let mut items: Vec<(WriteRequest, usize)> = Vec::with_capacity(batches.len());
    let mut at: HashMap<(&str, String), usize> = HashMap::with_capacity(batches.len());
    for batch in batches {
        packer.pack::<SinkError>(batch, |item| {
            let put = PutRequest::builder()
                .set_item(Some(awp_store::dynamodb::packed_item(&item)))
                .build()
                .map_err(|e| SinkError::Fatal(format!("cannot build a PutRequest: {e}")))?;
            let request = (WriteRequest::builder().put_request(put).build(), item.size());
            match at.entry((batch.device_id(), item.rk.to_owned())) {
                std::collections::hash_map::Entry::Occupied(e) => items[*e.get()] = request,
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(items.len());
                    items.push(request);
                }
            }
            Ok(())
        })?;
    }
    let mut requests = Vec::new();
    let (mut request, mut bytes) = (Vec::new(), 0);
    for (item, size) in items {
        if request.len() == MAX_REQUEST_ITEMS || (bytes + size > MAX_REQUEST_BYTES && !request.is_empty()) {
            requests.push(std::mem::take(&mut request));
            bytes = 0;
        }
        request.push(item);
        bytes += size;
    }
    if !request.is_empty() {
        requests.push(request);
    }
    Ok(requests)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Throttled: back off and lower the concurrency.
    Throttled,
    /// A transient fault (5xx, timeout, connection): back off.
    Transient,
    /// The request's items were refused (a validation error): retrying the
    /// same items cannot help, but other items may be accepted.
    Refused,
    /// Will not succeed by retrying (missing table, access).
    Never,
}

fn classify<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> (Retry, String) {
    match err {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("Unknown").to_owned();
            let retry = match code.as_str() {
                "ProvisionedThroughputExceededException"
                | "RequestLimitExceeded"
                | "ThrottlingException"
                | "Throttling"
                | "TooManyRequestsException" => Retry::Throttled,
                "InternalServerError" | "ServiceUnavailable" | "InternalFailure" => Retry::Transient,
                "ValidationException" => Retry::Refused,
                "ResourceNotFoundException"
                | "AccessDeniedException"
                | "UnrecognizedClientException"
                | "MissingAuthenticationTokenException"
                | "ItemCollectionSizeLimitExceededException"
                | "SerializationException" => Retry::Never,
                // Unknown codes: a 5xx status is transient, a 4xx is not.
                _ if service.raw().status().is_server_error() => Retry::Transient,
                _ => Retry::Never,
            };
            let message = service.err().message().unwrap_or("").to_owned();
            (retry, format!("{code}: {message}"))
        }
        SdkError::TimeoutError(_) => (Retry::Transient, "timeout".into()),
        SdkError::DispatchFailure(e) => (Retry::Transient, format!("dispatch failure: {e:?}")),
        SdkError::ResponseError(_) => (Retry::Transient, "unreadable response".into()),
        other => (Retry::Never, format!("{other}")),
    }
}

/// Whether a `ValidationException` is about the items' own values, which no
/// table could store (a batch's fault: ACK REJECTED once the table shows it
/// takes well-formed items), rather than about the table (a key or an index
/// of another type, a missing key: every item of some kind refused, the
/// operator's to fix while agents keep their data). Only DynamoDB's own
/// words for the first are taken: anything else is the table's.
fn refusal_is_about_content(message: &str) -> bool {
    [
        "Item size has exceeded the maximum allowed size",
        "Item size to update has exceeded the maximum allowed size",
        "Number overflow",
        "Number underflow",
        "number with magnitude larger than supported range",
        "number with magnitude smaller than supported range",
    ]
    .iter()
    .any(|words| message.contains(words))
}

/// Full jitter: a random wait up to min(cap, base · 2^attempt).
fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE.saturating_mul(1u32 << attempt.min(16)).min(BACKOFF_CAP);
    ceiling.mul_f64(fastrand::f64())
}

/// Concurrency that adapts to throttling: +1 after a success, halved on a
/// throttle, within 1..=max. Atomic because the requests in flight share it.
#[derive(Debug)]
struct AdaptiveLimit {
    current: AtomicUsize,
    max: usize,
}

impl AdaptiveLimit {
    fn new(max: usize) -> AdaptiveLimit {
        // Never below 1: with nothing allowed in flight a write would never end.
        let max = max.max(1);
        AdaptiveLimit {
            current: AtomicUsize::new(max.div_ceil(2)),
            max,
        }
    }

    fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    fn on_success(&self) {
        let next = (self.current() + 1).min(self.max);
        self.current.store(next, Ordering::Relaxed);
    }

    fn on_throttle(&self) {
        let next = (self.current() / 2).max(1);
        self.current.store(next, Ordering::Relaxed);
    }
}

/// What one request attempt came back with.
enum Attempt {
    /// All written.
    Done,
    /// Not sent: the write failed while it waited to be retried.
    NotSent,
    /// Some items came back unprocessed; resend them.
    Unprocessed(Vec<WriteRequest>),
    /// The request failed.
    Failed(Retry, String, Vec<WriteRequest>),
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
                Attempt::Failed(retry, message, requests)
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
            let (retry, message, rest) = match outcome {
                Attempt::Done => {
                    self.limit.on_success();
                    continue;
                }
                Attempt::NotSent => continue,
                Attempt::Unprocessed(rest) => (Retry::Throttled, "unprocessed items".to_owned(), rest),
                Attempt::Failed(retry, message, rest) => (retry, message, rest),
            };
            match retry {
                Retry::Refused if refusal_is_about_content(&message) => {
                    tracing::warn!(tenant = %self.tenant, table = %self.table, error = %message, "DynamoDB refused a request's items");
                    // The table is the operator's business (it is in the log), not the agent's.
                    break Err(SinkError::Refused(message));
                }
                Retry::Refused => {
                    // A key, an index or a type the items do not fit: the
                    // table's fault, whatever the items (RETRY, degraded).
                    tracing::error!(tenant = %self.tenant, table = %self.table, error = %message, "DynamoDB refused items for a reason of the table's (its keys or an index do not fit them)");
                    break Err(SinkError::Fatal(format!("table {}: {message}", self.table)));
                }
                Retry::Never => {
                    tracing::error!(tenant = %self.tenant, table = %self.table, error = %message, "DynamoDB write failed and will not succeed by retrying");
                    break Err(SinkError::Fatal(format!("table {}: {message}", self.table)));
                }
                Retry::Throttled => {
                    self.metrics.throttled();
                    self.limit.on_throttle();
                }
                Retry::Transient => {}
            }
            if Instant::now() >= deadline {
                tracing::warn!(tenant = %self.tenant, table = %self.table, error = %message, "DynamoDB write gave up at its deadline");
                break Err(SinkError::Retryable(format!("table {}: {message}", self.table)));
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

/// The device id of [`DynamoSink::probe_table`]'s item (never written).
const PROBE_DEVICE: &str = "awp-gateway-probe";

/// A one-record batch, for an item of the tenant's layout that
/// [`DynamoSink::probe_table`] offers the table.
fn probe_batch() -> Result<AcceptedBatch, SinkError> {
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
        .map_err(|e| SinkError::Fatal(format!("cannot make a probe item: {e}")))?;
    let origin = std::sync::Arc::new(awp_store::Origin {
        device_id: PROBE_DEVICE.into(),
        platform: awp_protocol::Platform::Linux,
        agent_version: "probe".into(),
    });
    AcceptedBatch::accept(origin, 0, now, None, content.content().clone(), &limits)
        .map_err(|e| SinkError::Fatal(format!("cannot make a probe item: {e}")))
}

impl DynamoSink {
    /// A well-formed item of the tenant's layout.
    fn probe_item(&mut self) -> Result<HashMap<String, AttributeValue>, SinkError> {
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
        item.ok_or_else(|| SinkError::Fatal("the probe batch has no item".into()))
    }

    /// Whether the table takes well-formed items now: a PutItem of one,
    /// under a condition that never holds, so nothing is stored. DynamoDB
    /// validates an item (keys, index keys, sizes) before it evaluates the
    /// condition: a failed condition means the item was fine.
    async fn probe_table(&mut self) -> Result<(), SinkError> {
        let item = self.probe_item()?;
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
                    return Err(SinkError::Fatal(format!(
                        "table {}: the probe needs dynamodb:PutItem (docs/dynamodb.md, IAM), and was denied: \
                         until it is granted, a batch the table refuses alone gets ACK RETRY",
                        self.table
                    )));
                }
                let message = format!("table {}: a probe item was refused: {message}", self.table);
                match retry {
                    Retry::Throttled | Retry::Transient => Err(SinkError::Retryable(message)),
                    Retry::Refused | Retry::Never => Err(SinkError::Fatal(message)),
                }
            }
        }
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
        self.probe_table().await
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
                .map_err(|e| SinkError::Fatal(format!("cannot build a DeleteRequest: {e}")))?;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use awp_protocol::{Limits, Platform, Record, RecordBody, Unknown};
    use awp_store::Origin;

    use super::*;

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
}
