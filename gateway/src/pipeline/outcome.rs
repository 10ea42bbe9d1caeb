//! The answer to a batch, on its way back from the store to its session:
//! one type from the writer to the ACK. The writer makes it from its
//! sink's result ([`BatchOutcome::of`]); the session turns it into ACK OK,
//! RETRY or REJECTED.

use crate::sink::SinkError;

/// How storing a batch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Every item is durable: ACK OK.
    Stored,
    /// Nothing may be counted as stored: ACK RETRY with this message.
    Retry(String),
    /// The store cannot take the batch and nothing of it is stored: ACK
    /// REJECTED with this message.
    Rejected(String),
}

impl BatchOutcome {
    /// What agents are told of a write: durable, refused (with the reason),
    /// or try again. The details of a failure are logged by the writer, not
    /// told to agents.
    pub fn of(result: &Result<(), SinkError>) -> BatchOutcome {
        match result {
            Ok(()) => BatchOutcome::Stored,
            Err(SinkError::Refused { what: reason, .. } | SinkError::Unstorable(reason)) => {
                BatchOutcome::Rejected(format!("the store refused this batch: {reason}"))
            }
            Err(_) => BatchOutcome::storage_unavailable(),
        }
    }

    /// ACK RETRY for a batch whose write did not happen or did not end.
    pub fn storage_unavailable() -> BatchOutcome {
        BatchOutcome::Retry("storage unavailable".into())
    }
}
