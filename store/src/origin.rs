//! Who sent a batch: the attributes every item of a connection's batches
//! shares (apart from `batch.rs` so that item sizing needs no batch).

use awp_protocol::Platform;

/// Who sent a batch: the session's part of every item, shared by all the
/// batches of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The device id from HELLO (the items' partition key).
    pub device_id: String,
    /// The platform from HELLO.
    pub platform: Platform,
    /// The agent version from HELLO (omitted from items when empty).
    pub agent_version: String,
}
