//! The network stage: sockets in, bytes to the session, frames out.
//!
//! - `server`: binds the listeners, accepts, gives each connection a place
//!   among those waiting to authenticate, runs the TLS handshake and the
//!   PROXY header within their deadlines, and starts everything else
//!   (pipeline, admin endpoint) — [`start`](server::start) is the crate's
//!   entry point;
//! - `conn`: one connection's IO loop around its [`Session`](crate::session::Session):
//!   reads into the session's buffer, writes what it emits, hands `Store`
//!   actions to the pipeline and the outcomes back, waits for budget;
//! - `tls`: the rustls server configuration and client-certificate checks;
//! - `proxy_protocol`: the PROXY v2 header from a trusted balancer;
//! - `read_buffer`: a connection's read buffer, small between frames.
//!
//! In: TCP connections. Out: frames to agents; `Store` requests to
//! [`pipeline`](crate::pipeline), whose outcomes come back by the mailbox.

pub(crate) mod conn;
pub(crate) mod proxy_protocol;
pub(crate) mod read_buffer;
pub(crate) mod server;
pub(crate) mod tls;
