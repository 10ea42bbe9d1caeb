//! The `gateway` binary's commands besides running: each works on files or
//! a store, not on a running gateway's state (`probe` asks one over HTTP).
//!
//! - `inspect`: a captured byte stream as JSON lines, frame by frame;
//! - `export`: a tenant's records from either store and layout (the
//!   `gateway tables` command is `sink::dynamodb::tables`);
//! - `dev_certs`: a throwaway PKI for trying TLS and mutual TLS;
//! - `probe`: asks the admin endpoint whether the gateway is alive.

pub mod dev_certs;
#[cfg(all(feature = "dynamodb", feature = "sqlite"))]
pub mod export;
pub mod inspect;
pub mod probe;
