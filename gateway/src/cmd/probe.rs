//! `gateway probe`: asks a running gateway's admin endpoint whether it is
//! alive (`/healthz`) or ready (`/readyz`), for a container `HEALTHCHECK`
//! or a script on a host without curl. Plain HTTP/1.1 on a loopback or
//! private address; every step has a deadline.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// Nothing answered at the address (connect refused or timed out).
    #[error("http://{0}{1}: no answer: {2}")]
    Unreachable(SocketAddr, String, std::io::Error),
    /// The answer was not HTTP.
    #[error("http://{0}{1}: not an HTTP answer")]
    NotHttp(SocketAddr, String),
    /// The endpoint answered with a status other than 2xx.
    #[error("http://{0}{1}: {2} {3}")]
    Status(SocketAddr, String, u16, String),
}

/// The address to probe for an admin endpoint listening on `listen`: a
/// wildcard (0.0.0.0, ::) is reached on loopback.
pub fn target(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listen.port()),
        _ => listen,
    }
}

/// GETs `path` from the admin endpoint at `addr`; Ok with the status line
/// and the body's first line when it answers 2xx.
pub fn probe(addr: SocketAddr, path: &str, timeout: Duration) -> Result<String, ProbeError> {
    let unreachable = |e| ProbeError::Unreachable(addr, path.to_owned(), e);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(unreachable)?;
    stream.set_read_timeout(Some(timeout)).map_err(unreachable)?;
    stream.set_write_timeout(Some(timeout)).map_err(unreachable)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(unreachable)?;
    // An answer of the admin endpoint's probes is short: read at most 16 KiB.
    let mut answer = Vec::new();
    stream.take(16 * 1024).read_to_end(&mut answer).map_err(unreachable)?;
    let text = String::from_utf8_lossy(&answer);
    let not_http = || ProbeError::NotHttp(addr, path.to_owned());
    let status_line = text.lines().next().ok_or_else(not_http)?;
    let status: u16 = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(not_http)?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let first_line = body.lines().next().unwrap_or("").trim().to_owned();
    if (200..300).contains(&status) {
        Ok(format!("{status} {first_line}"))
    } else {
        Err(ProbeError::Status(addr, path.to_owned(), status, first_line))
    }
}
