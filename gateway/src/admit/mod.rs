//! Admission: who may connect, send and hold memory, decided before a
//! batch is stored.
//!
//! - `tenant`: the tenants and HELLO authentication (token, client
//!   certificate, CRLs), each failure the same `AUTH_FAILED` to the agent;
//! - `admission`: the pools of connections (waiting to authenticate,
//!   authenticated), their limits, one session per device;
//! - `quota`: token buckets per tenant and per device (records/s, bytes/s);
//! - `budget`: the memory budget in bytes every batch takes before it is
//!   inflated and gives back when answered, with each tenant's guarantee.
//!
//! In: a HELLO, a BATCH's declared size. Out: a session admitted or
//! refused, a budget permit or a wait, a quota's delay.

pub(crate) mod admission;
pub(crate) mod auth_failure;
pub(crate) mod budget;
pub(crate) mod quota;
pub(crate) mod tenant;
