//! Test support for every crate of the workspace (the only place tests get
//! shared fixtures from, so none of them reaches into another's files).
//!
//! - [`vectors`]: the AWP/1 test vectors of `protocol/tests/vectors.json`
//!   (the repository's copy of `shared/protocol/vectors.json`), parsed once
//!   into typed values.
//! - [`dynalite`]: a real local DynamoDB (dynalite, installed by
//!   `scripts/dynalite.sh`) and a fault-injecting proxy for it.
//! - [`certs`]: the one certificate generator of the tests and the `e2e`
//!   benchmark (server CA and certificate, tenant client CAs, client
//!   certificates, CRLs, rustls client configurations).
//!
//! testkit sits below every crate, so what is made of a crate's own types
//! lives in that crate, behind its `test-support` feature: accepted batches
//! of the vectors in `awp_store::test_support`; mocks of the gateway's
//! `TenantSink` beside the writer tests that use them.
#![forbid(unsafe_code)]

pub mod certs;
pub mod dynalite;
pub mod vectors;

pub use vectors::{InvalidVector, ValidVector, Vectors, vectors};
