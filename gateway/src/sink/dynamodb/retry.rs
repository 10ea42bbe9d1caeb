//! What to do about a failed request (typed: retry, give up, blame the
//! content), the backoff between attempts, and the adaptive concurrency
//! limit (additive increase, halving on throttling).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::WriteRequest;

/// Backoff: first retry waits up to BASE, doubling to at most CAP.
pub(super) const BACKOFF_BASE: Duration = Duration::from_millis(25);
pub(super) const BACKOFF_CAP: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retry {
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

pub(super) fn classify<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> (Retry, String) {
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
pub(super) fn refusal_is_about_content(message: &str) -> bool {
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
pub(super) fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE.saturating_mul(1u32 << attempt.min(16)).min(BACKOFF_CAP);
    ceiling.mul_f64(fastrand::f64())
}

/// Concurrency that adapts to throttling: +1 after a success, halved on a
/// throttle, within 1..=max. Atomic because the requests in flight share it.
#[derive(Debug)]
pub(super) struct AdaptiveLimit {
    pub(super) current: AtomicUsize,
    pub(super) max: usize,
}

impl AdaptiveLimit {
    pub(super) fn new(max: usize) -> AdaptiveLimit {
        // Never below 1: with nothing allowed in flight a write would never end.
        let max = max.max(1);
        AdaptiveLimit {
            current: AtomicUsize::new(max.div_ceil(2)),
            max,
        }
    }

    pub(super) fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    pub(super) fn on_success(&self) {
        let next = (self.current() + 1).min(self.max);
        self.current.store(next, Ordering::Relaxed);
    }

    pub(super) fn on_throttle(&self) {
        let next = (self.current() / 2).max(1);
        self.current.store(next, Ordering::Relaxed);
    }
}

/// What one request attempt came back with.
pub(super) enum Attempt {
    /// All written.
    Done,
    /// Not sent: the write failed while it waited to be retried.
    NotSent,
    /// Some items came back unprocessed; resend them.
    Unprocessed(Vec<WriteRequest>),
    /// The request failed: what to do, the SDK's error in words and as
    /// itself, and the requests to resend.
    Failed(Retry, String, crate::sink::Cause, Vec<WriteRequest>),
}
