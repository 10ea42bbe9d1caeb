//! Operating a running gateway: the admin endpoint, tenant health, and
//! reloading the configuration.
//!
//! - `admin`: `/metrics`, `/healthz`, `/readyz`, `/health/tenants`,
//!   `POST /reload`;
//! - `health`: whether each tenant's records are being stored;
//! - `reload`: reads the configuration again and applies all of it or
//!   none, without dropping agents.
//!
//! In: HTTP requests, SIGHUP (from the binary). Out: reports, and a new
//! registry of tenants, writers and settings swapped in.

pub(crate) mod admin;
pub(crate) mod health;
pub mod reload;
