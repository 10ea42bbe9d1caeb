//! Codec benchmarks live in `benches/codec.rs`; the batches they decode come
//! from `awp_protocol::sample` (shared with the load simulator).
#![forbid(unsafe_code)]

pub use awp_protocol::sample::typical_batch;
