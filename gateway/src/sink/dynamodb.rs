//! A tenant's items in its own DynamoDB table, written with BatchWriteItem.
//!
//! One [`TenantSink::write`] call holds many agents' batches (the pipeline
//! gathers them). It is split into BatchWriteItem requests of at most 25
//! items and 16 MB, sent several at a time with an adaptive concurrency
//! limit (additive increase on success, halving on throttling, between 1 and
//! `max_concurrency`). A request's `UnprocessedItems` are resent; throttling,
//! 5xx and transport errors are retried with capped exponential backoff and
//! full jitter (sleep = random(0, min(cap, base · 2^attempt))). The call
//! returns `Ok` only when every item is written; a non-retryable error (a
//! missing table, a validation error, denied access) or running out of time
//! (`give_up_after`) returns an error, and the pipeline answers the batches
//! with ACK RETRY — nothing is acked that is not in the table.
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

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::config::{Credentials, Region};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use super::{SinkError, TenantSink};
use crate::config::DynamoConfig;
use crate::item::{Item, ItemValue};

/// BatchWriteItem's limits.
const MAX_REQUEST_ITEMS: usize = 25;
const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// Backoff: first retry waits up to BASE, doubling to at most CAP.
const BACKOFF_BASE: Duration = Duration::from_millis(25);
const BACKOFF_CAP: Duration = Duration::from_secs(2);

/// Builds the DynamoDB client for one tenant's destination.
pub async fn client(config: &DynamoConfig) -> Client {
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
        loader = loader.credentials_provider(Credentials::new(key, secret, None, None, "awp-gateway-config"));
    }
    let base = loader.load().await;
    let mut builder = aws_sdk_dynamodb::config::Builder::from(&base);
    if let Some(role) = &config.role_arn {
        let provider = aws_config::sts::AssumeRoleProvider::builder(role)
            .session_name("awp-gateway")
            .configure(&base)
            .build()
            .await;
        builder = builder.credentials_provider(provider);
    }
    if let Some(endpoint) = &config.endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    Client::from_conf(builder.build())
}

/// One tenant's table.
pub struct DynamoSink {
    tenant: String,
    table: String,
    client: Client,
    limit: AdaptiveLimit,
    give_up_after: Duration,
}

impl DynamoSink {
    /// A sink writing to `config.table`; a write gives up (and its batches
    /// get ACK RETRY) after `give_up_after`.
    pub async fn connect(tenant: &str, config: &DynamoConfig, give_up_after: Duration) -> DynamoSink {
        DynamoSink {
            tenant: tenant.to_owned(),
            table: config.table.clone(),
            client: client(config).await,
            limit: AdaptiveLimit::new(config.max_concurrency),
            give_up_after,
        }
    }
}

/// An attribute value as the SDK wants it.
pub fn attribute_value(value: &ItemValue) -> AttributeValue {
    match value {
        ItemValue::S(s) => AttributeValue::S(s.clone()),
        ItemValue::N(n) => AttributeValue::N(n.clone()),
        ItemValue::B(b) => AttributeValue::B(Blob::new(b.clone())),
        ItemValue::Bool(b) => AttributeValue::Bool(*b),
        ItemValue::Null => AttributeValue::Null(true),
        ItemValue::M(m) => AttributeValue::M(m.iter().map(|(k, v)| (k.clone(), attribute_value(v))).collect()),
    }
}

/// An item as the SDK wants it.
pub fn attribute_map(item: &Item) -> HashMap<String, AttributeValue> {
    let mut map = HashMap::with_capacity(item.attrs.len() + 2);
    map.insert("device".to_owned(), AttributeValue::S(item.device.clone()));
    map.insert("rk".to_owned(), AttributeValue::S(item.rk.clone()));
    for (name, value) in &item.attrs {
        map.insert((*name).to_owned(), attribute_value(value));
    }
    map
}

/// An item read back from DynamoDB as DynamoDB JSON (the form of the
/// vectors' `items` and of the SQLite sink's `item` column).
pub fn attributes_to_json(item: &HashMap<String, AttributeValue>) -> serde_json::Value {
    fn value(v: &AttributeValue) -> serde_json::Value {
        use serde_json::json;
        match v {
            AttributeValue::S(s) => json!({"S": s}),
            AttributeValue::N(n) => json!({"N": n}),
            AttributeValue::B(b) => json!({"B": crate::item::base64(b.as_ref())}),
            AttributeValue::Bool(b) => json!({"BOOL": b}),
            AttributeValue::Null(_) => json!({"NULL": true}),
            AttributeValue::M(m) => {
                json!({"M": m.iter().map(|(k, v)| (k.clone(), value(v))).collect::<serde_json::Map<_, _>>()})
            }
            // Types the gateway never writes; shown, not dropped.
            other => json!({"UNSUPPORTED": format!("{other:?}")}),
        }
    }
    serde_json::Value::Object(item.iter().map(|(k, v)| (k.clone(), value(v))).collect())
}

/// Splits items into BatchWriteItem requests: ≤ 25 items, ≤ 16 MB, each key once.
fn requests(items: Vec<Item>) -> Vec<Vec<WriteRequest>> {
    // The later copy of a key wins; order among distinct keys is kept.
    let mut last: HashMap<(&str, &str), usize> = HashMap::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        last.insert((item.device.as_str(), item.rk.as_str()), i);
    }
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for (i, item) in items.iter().enumerate() {
        if last.get(&(item.device.as_str(), item.rk.as_str())) != Some(&i) {
            continue;
        }
        let size = item.size_bytes();
        if current.len() == MAX_REQUEST_ITEMS || (bytes + size > MAX_REQUEST_BYTES && !current.is_empty()) {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        let put = PutRequest::builder().set_item(Some(attribute_map(item))).build();
        match put {
            Ok(put) => current.push(WriteRequest::builder().put_request(put).build()),
            // Unreachable: `item` is always set. Skipping would lose data, so it is not skipped silently.
            Err(e) => tracing::error!(error = %e, "cannot build a PutRequest"),
        }
        bytes += size;
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// How a failed request is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Throttled: back off and lower the concurrency.
    Throttled,
    /// A transient fault (5xx, timeout, connection): back off.
    Transient,
    /// Will not succeed by retrying (missing table, validation, access).
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
                "ResourceNotFoundException"
                | "ValidationException"
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
        AdaptiveLimit {
            current: AtomicUsize::new(max.div_ceil(2).max(1)),
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
    /// Some items came back unprocessed; resend them.
    Unprocessed(Vec<WriteRequest>),
    /// The request failed.
    Failed(Retry, String, Vec<WriteRequest>),
}

impl DynamoSink {
    async fn send(&self, requests: Vec<WriteRequest>) -> Attempt {
        let started = Instant::now();
        let count = requests.len();
        metrics::gauge!("awp_dynamodb_inflight_requests", "tenant" => self.tenant.clone()).increment(1.0);
        let result = self
            .client
            .batch_write_item()
            .request_items(self.table.clone(), requests.clone())
            .send()
            .await;
        metrics::gauge!("awp_dynamodb_inflight_requests", "tenant" => self.tenant.clone()).decrement(1.0);
        metrics::histogram!("awp_dynamodb_request_seconds", "tenant" => self.tenant.clone()).record(started.elapsed());
        metrics::counter!("awp_dynamodb_requests_total", "tenant" => self.tenant.clone()).increment(1);
        match result {
            Ok(out) => {
                let unprocessed = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&self.table))
                    .unwrap_or_default();
                let written = count - unprocessed.len();
                metrics::counter!("awp_dynamodb_items_written_total", "tenant" => self.tenant.clone())
                    .increment(written as u64);
                if unprocessed.is_empty() {
                    Attempt::Done
                } else {
                    metrics::counter!("awp_dynamodb_unprocessed_items_total", "tenant" => self.tenant.clone())
                        .increment(unprocessed.len() as u64);
                    Attempt::Unprocessed(unprocessed)
                }
            }
            Err(e) => {
                let (retry, message) = classify(&e);
                let kind = match retry {
                    Retry::Throttled => "throttled",
                    Retry::Transient => "transient",
                    Retry::Never => "fatal",
                };
                metrics::counter!("awp_dynamodb_errors_total", "tenant" => self.tenant.clone(), "type" => kind)
                    .increment(1);
                Attempt::Failed(retry, message, requests)
            }
        }
    }
}

impl TenantSink for DynamoSink {
    async fn write(&mut self, items: Vec<Item>) -> Result<(), SinkError> {
        let deadline = Instant::now() + self.give_up_after;
        let mut waiting: Vec<(Vec<WriteRequest>, u32)> = requests(items).into_iter().map(|r| (r, 0)).collect();
        let mut inflight = FuturesUnordered::new();
        loop {
            while inflight.len() < self.limit.current()
                && let Some((request, attempt)) = waiting.pop()
            {
                let this = &*self;
                inflight.push(async move {
                    if attempt > 0 {
                        metrics::counter!("awp_dynamodb_retries_total", "tenant" => this.tenant.clone()).increment(1);
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                    (this.send(request).await, attempt)
                });
            }
            let Some((outcome, attempt)) = inflight.next().await else {
                return Ok(());
            };
            let (retry, message, rest) = match outcome {
                Attempt::Done => {
                    self.limit.on_success();
                    continue;
                }
                Attempt::Unprocessed(rest) => (Retry::Throttled, "unprocessed items".to_owned(), rest),
                Attempt::Failed(retry, message, rest) => (retry, message, rest),
            };
            match retry {
                Retry::Never => {
                    tracing::error!(tenant = %self.tenant, table = %self.table, error = %message, "DynamoDB write failed and will not succeed by retrying");
                    return Err(SinkError::Fatal(format!("table {}: {message}", self.table)));
                }
                Retry::Throttled => {
                    metrics::counter!("awp_dynamodb_throttles_total", "tenant" => self.tenant.clone()).increment(1);
                    self.limit.on_throttle();
                }
                Retry::Transient => {}
            }
            if Instant::now() >= deadline {
                tracing::warn!(tenant = %self.tenant, table = %self.table, error = %message, "DynamoDB write gave up at its deadline");
                return Err(SinkError::Retryable(format!("table {}: {message}", self.table)));
            }
            tracing::debug!(tenant = %self.tenant, error = %message, attempt, "retrying a BatchWriteItem");
            waiting.push((rest, attempt + 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::ItemValue;

    fn item(device: &str, rk: &str, payload: usize) -> Item {
        Item {
            device: device.into(),
            rk: rk.into(),
            attrs: vec![("kind", ItemValue::S("x".repeat(payload)))],
        }
    }

    #[test]
    fn requests_hold_at_most_25_items_and_each_key_once() {
        let mut items: Vec<Item> = (0..60).map(|i| item("d", &format!("{i:05}"), 10)).collect();
        items.push(item("d", "00003", 99)); // a resend of key 3: the later copy wins
        let reqs = requests(items);
        assert_eq!(reqs.iter().map(Vec::len).collect::<Vec<_>>(), [25, 25, 10]);
        let all: Vec<_> = reqs.iter().flatten().collect();
        let key3: Vec<_> = all
            .iter()
            .filter(|w| w.put_request().unwrap().item().get("rk") == Some(&AttributeValue::S("00003".into())))
            .collect();
        assert_eq!(key3.len(), 1);
        let kind = key3[0]
            .put_request()
            .unwrap()
            .item()
            .get("kind")
            .unwrap()
            .as_s()
            .unwrap();
        assert_eq!(kind.len(), 99);
    }

    #[test]
    fn requests_stay_under_16_mb() {
        let items: Vec<Item> = (0..10).map(|i| item("d", &format!("{i}"), 380_000)).collect();
        let mut big: Vec<Item> = Vec::new();
        for i in 0..50 {
            big.push(item("e", &format!("{i}"), 390_000));
        }
        let reqs = requests(big);
        assert!(reqs.iter().all(|r| r.len() <= 25));
        assert!(reqs.len() >= 2, "50 × 390 KB needs more than one request");
        assert_eq!(requests(items).len(), 1);
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
