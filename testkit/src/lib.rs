//! Test support for every crate of the workspace (the only place tests get
//! shared fixtures from, so none of them reaches into another's files).
//!
//! - [`vectors`]: the AWP/1 test vectors of `protocol/tests/vectors.json`
//!   (the repository's copy of `shared/protocol/vectors.json`), parsed once
//!   into typed values.
//! - [`dynalite`]: a real local DynamoDB (dynalite, installed by
//!   `scripts/dynalite.sh`) and a fault-injecting proxy for it.
#![forbid(unsafe_code)]

pub mod dynalite;
pub mod vectors;

pub use vectors::{InvalidVector, ValidVector, Vectors, vectors};
