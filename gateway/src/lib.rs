//! The AWP/1 ingestion gateway (overview written with the session module).
#![forbid(unsafe_code)]

pub mod item;
pub mod sink;
pub mod tls;
