//! Where batches go: one sink per tenant, written to by the tenant's writer
//! with many agents' batches at once (group commit), each batch still as
//! bytes; each sink renders the items in its own form (`awp_store`).
//!
//! The contract is all or nothing: [`TenantSink::write`] returns `Ok` only
//! once every item of every batch it was given is durable, and ACK OK is sent
//! only then. On an error nothing of the call counts: the gateway answers
//! ACK RETRY and the agents resend, which is safe because an item's key is a
//! pure function of its record (AWP1.md §6), so a rewrite overwrites.
//!
//! `open` is the factory: it turns a tenant's configuration into its
//! `Sink`.

#[cfg(feature = "dynamodb")]
pub mod dynamodb;
pub(crate) mod null;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;

use std::future::Future;

use awp_store::AcceptedBatch;

use crate::admit::tenant::Tenant;
use crate::config::{PipelineConfig, SinkConfig, SinkKind};

/// What caused a sink failure: the store's own error (rusqlite's, the
/// SDK's), kept as the error's source so that the log shows its kind.
pub type Cause = std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Why a write failed. [`SinkError::Retryable`] and [`SinkError::Fatal`]
/// are answered ACK RETRY (the agents keep their data); the two refusals
/// lead to ACK REJECTED for the batch at fault (`pipeline/writer.rs`).
/// Each keeps what the store said as its [`source`](std::error::Error::source).
#[derive(Debug, Clone)]
pub enum SinkError {
    /// Throttling, a busy or locked store, IO: may succeed later.
    Retryable {
        /// What failed, in the gateway's words.
        what: String,
        /// The store's error.
        cause: Option<Cause>,
    },
    /// A configuration problem (a missing table, no permission, a corrupt
    /// file, a table that refuses well-formed items) that will not fix
    /// itself. Still answered with ACK RETRY (the agents keep their data),
    /// but logged loudly.
    Fatal {
        /// What failed, in the gateway's words.
        what: String,
        /// The store's error.
        cause: Option<Cause>,
    },
    /// The gateway found, before it sent anything of the write, that a
    /// batch's items cannot be stored whatever the store (a packed item
    /// over DynamoDB's 400 KB): the batch's own fault, decided by its
    /// content alone, and nothing of the write was written.
    Unstorable(String),
    /// The store refused the items of this write (a validation error):
    /// writing the same items again cannot help, other items may be taken,
    /// and part of the write may be stored. The writer finds the batch at
    /// fault by writing them one at a time, and asks the store
    /// ([`TenantSink::probe`]) whether it takes well-formed items before
    /// blaming a batch written alone.
    Refused {
        /// The store's words for what it refused (told to the agent).
        what: String,
        /// The store's error.
        cause: Option<Cause>,
    },
}

impl std::fmt::Display for SinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkError::Retryable { what, .. } => write!(f, "sink write failed, retryable: {what}"),
            SinkError::Fatal { what, .. } => write!(f, "sink write failed, fatal (check the configuration): {what}"),
            SinkError::Unstorable(what) => write!(f, "the batch cannot be stored: {what}"),
            SinkError::Refused { what, .. } => write!(f, "the store refused the items: {what}"),
        }
    }
}

impl std::error::Error for SinkError {
    /// The store's own error, itself (so that it can be downcast).
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SinkError::Retryable { cause, .. } | SinkError::Fatal { cause, .. } | SinkError::Refused { cause, .. } => {
                cause.as_deref().map(|c| c as &(dyn std::error::Error + 'static))
            }
            SinkError::Unstorable(_) => None,
        }
    }
}

impl SinkError {
    /// [`SinkError::Retryable`] without a cause of the store's.
    pub fn retryable(what: impl Into<String>) -> SinkError {
        SinkError::Retryable {
            what: what.into(),
            cause: None,
        }
    }

    /// [`SinkError::Retryable`], caused by the store's `cause`.
    pub fn retryable_from(what: impl Into<String>, cause: impl std::error::Error + Send + Sync + 'static) -> SinkError {
        SinkError::Retryable {
            what: what.into(),
            cause: Some(std::sync::Arc::new(cause)),
        }
    }

    /// [`SinkError::Fatal`] without a cause of the store's.
    pub fn fatal(what: impl Into<String>) -> SinkError {
        SinkError::Fatal {
            what: what.into(),
            cause: None,
        }
    }

    /// [`SinkError::Fatal`], caused by the store's `cause`.
    pub fn fatal_from(what: impl Into<String>, cause: impl std::error::Error + Send + Sync + 'static) -> SinkError {
        SinkError::Fatal {
            what: what.into(),
            cause: Some(std::sync::Arc::new(cause)),
        }
    }

    /// [`SinkError::Refused`] without a cause of the store's.
    pub fn refused(what: impl Into<String>) -> SinkError {
        SinkError::Refused {
            what: what.into(),
            cause: None,
        }
    }

    /// Whether this is [`SinkError::Fatal`].
    pub fn is_fatal(&self) -> bool {
        matches!(self, SinkError::Fatal { .. })
    }

    /// The error and its causes on one line, for the log: what the gateway
    /// says, then what the store said (`…: database is locked`).
    pub fn report(&self) -> String {
        let mut line = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            let text = cause.to_string();
            // A cause whose words are already in the line adds nothing.
            if !line.contains(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            source = cause.source();
        }
        line
    }
}

impl From<awp_store::packed::PackError> for SinkError {
    /// A batch too large to pack cannot be stored (ACK REJECTED); anything
    /// else is the gateway's.
    fn from(e: awp_store::packed::PackError) -> SinkError {
        match e {
            awp_store::packed::PackError::TooLarge { .. } => SinkError::Unstorable(e.to_string()),
            other => SinkError::fatal_from("packing a batch", other),
        }
    }
}

impl From<awp_protocol::BatchError> for SinkError {
    /// A stored batch's bytes no longer decode: they were checked when the
    /// batch was accepted, so this is a bug, never a skipped record.
    fn from(e: awp_protocol::BatchError) -> SinkError {
        SinkError::fatal_from("an accepted batch does not decode", e)
    }
}

/// One tenant's store.
pub trait TenantSink: Send + 'static {
    /// Stores every item of `batches` durably, or returns an error; nothing
    /// partial counts. Writing an item whose (`device`, `rk`) is already
    /// stored replaces it, so a resent batch is stored once.
    fn write(&mut self, batches: Vec<AcceptedBatch>) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Removes whatever of `batch` a refused write may have stored, so that a
    /// batch answered ACK REJECTED leaves nothing behind (a write is one
    /// transaction in SQLite, but several requests in DynamoDB).
    fn discard(&mut self, batch: &AcceptedBatch) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Whether the store takes well-formed items now, without storing
    /// anything: `Ok` if so, else why not. Asked when the store refused a
    /// batch written alone, to tell the batch's fault (ACK REJECTED) from
    /// the store's (a table whose keys or indexes do not fit the items:
    /// ACK RETRY, and the tenant degraded). Stores that refuse nothing
    /// by validation take everything.
    fn probe(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send {
        std::future::ready(Ok(()))
    }

    /// The health check of a store just opened (at start, after a restart,
    /// on a reload's swap): `Err(Fatal)` only for what writes cannot get
    /// past either (a missing table, keys that do not fit). The probe, but
    /// a store may say "cannot tell" (`Ok`) where only the probe itself is
    /// refused: a writer without `dynamodb:PutItem` still writes.
    fn health_check(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send {
        self.probe()
    }
}

/// A tenant's sink, whichever kind its configuration names.
pub(crate) enum Sink {
    /// One SQLite database per tenant.
    #[cfg(feature = "sqlite")]
    Sqlite(sqlite::SqliteSink),
    /// The tenant's DynamoDB table.
    #[cfg(feature = "dynamodb")]
    Dynamodb(dynamodb::DynamoSink),
    /// Renders and counts, stores nothing.
    Null(null::NullSink),
}

/// Opens `tenant`'s sink: its own kind if it names one, else the default.
pub(crate) async fn open(tenant: &Tenant, config: &SinkConfig, pipeline: &PipelineConfig) -> Result<Sink, SinkError> {
    Ok(match tenant.sink.unwrap_or(config.kind) {
        #[cfg(feature = "sqlite")]
        SinkKind::Sqlite => Sink::Sqlite(sqlite::SqliteSink::open(&config.data_dir, &tenant.id, tenant.layout)?),
        SinkKind::Null => Sink::Null(null::NullSink::new().0),
        #[cfg(feature = "dynamodb")]
        SinkKind::Dynamodb => {
            let Some(dynamo) = &tenant.dynamodb else {
                return Err(SinkError::fatal(format!(
                    "tenant {}: no [tenants.dynamodb] table",
                    tenant.id
                )));
            };
            // Give up a little before the pipeline's own timeout, so the
            // batches get the sink's reason rather than a timeout.
            let give_up = pipeline.write_timeout * 9 / 10;
            Sink::Dynamodb(dynamodb::DynamoSink::connect(&tenant.id, dynamo, give_up, tenant.layout).await)
        }
        #[allow(unreachable_patterns)]
        other => {
            return Err(SinkError::fatal(format!(
                "tenant {}: this gateway was built without the {} sink",
                tenant.id,
                other.name()
            )));
        }
    })
}

impl Sink {
    /// Which kind it is.
    pub fn kind(&self) -> SinkKind {
        match self {
            #[cfg(feature = "sqlite")]
            Sink::Sqlite(_) => SinkKind::Sqlite,
            #[cfg(feature = "dynamodb")]
            Sink::Dynamodb(_) => SinkKind::Dynamodb,
            Sink::Null(_) => SinkKind::Null,
        }
    }
}

impl TenantSink for Sink {
    async fn write(&mut self, batches: Vec<AcceptedBatch>) -> Result<(), SinkError> {
        match self {
            #[cfg(feature = "sqlite")]
            Sink::Sqlite(s) => s.write(batches).await,
            #[cfg(feature = "dynamodb")]
            Sink::Dynamodb(s) => s.write(batches).await,
            Sink::Null(s) => s.write(batches).await,
        }
    }

    async fn discard(&mut self, batch: &AcceptedBatch) -> Result<(), SinkError> {
        match self {
            #[cfg(feature = "sqlite")]
            Sink::Sqlite(s) => s.discard(batch).await,
            #[cfg(feature = "dynamodb")]
            Sink::Dynamodb(s) => s.discard(batch).await,
            Sink::Null(s) => s.discard(batch).await,
        }
    }

    async fn probe(&mut self) -> Result<(), SinkError> {
        match self {
            #[cfg(feature = "sqlite")]
            Sink::Sqlite(s) => s.probe().await,
            #[cfg(feature = "dynamodb")]
            Sink::Dynamodb(s) => s.probe().await,
            Sink::Null(s) => s.probe().await,
        }
    }

    async fn health_check(&mut self) -> Result<(), SinkError> {
        match self {
            #[cfg(feature = "sqlite")]
            Sink::Sqlite(s) => s.health_check().await,
            #[cfg(feature = "dynamodb")]
            Sink::Dynamodb(s) => s.health_check().await,
            Sink::Null(s) => s.health_check().await,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Batches of the test vectors, accepted as the session accepts them.
    use awp_store::AcceptedBatch;
    use serde_json::Value;

    /// A valid BATCH vector from device `dev-0001`, received at
    /// `received_at_ms` (the store's test support: one home for them).
    pub(crate) use awp_store::test_support::accept_vector_at as vector_batch;

    /// `batch_mixed_kinds`, received at 1764000009999.
    pub(crate) fn mixed_kinds_batch() -> AcceptedBatch {
        vector_batch("batch_mixed_kinds", 1_764_000_009_999)
    }

    /// Base64 as DynamoDB JSON writes binary, decoded (tests).
    pub(crate) fn base64_decode(text: &str) -> Vec<u8> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.decode(text).unwrap()
    }

    /// The items `batch_mixed_kinds` must become (without `received_at`).
    pub(crate) fn mixed_kinds_expected() -> Vec<Value> {
        awp_testkit::vectors().valid("batch_mixed_kinds").items.clone().unwrap()
    }
}
