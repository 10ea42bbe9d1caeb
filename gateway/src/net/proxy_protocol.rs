//! The PROXY protocol, version 2, on agent listeners (`server.proxy_protocol`).
//!
//! Behind HAProxy (`send-proxy-v2`) or an AWS NLB with proxy protocol on,
//! every connection comes from the balancer's address; the balancer writes a
//! binary header with the agent's address before any of the agent's bytes.
//! [`read_source`] reads exactly that header, no byte more (what follows is
//! the agent's preamble, or its TLS ClientHello), and returns the agent's
//! address, which the waiting pool's per-source limit then counts.
//!
//! A listener with the protocol on refuses a connection without a valid
//! header: it is closed without a word, since a peer that skips the header
//! is not the balancer. A `LOCAL` header (the balancer's own health check)
//! keeps the connection's own address. Parsing is `ppp`'s.

use std::net::SocketAddr;

use ppp::v2::{Addresses, Command, Header, PROTOCOL_PREFIX};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The fixed part: the 12-byte signature, version and command, family and
/// protocol, and the length of what follows.
const FIXED_LEN: usize = 16;

/// The most address and TLV bytes accepted after the fixed part. Addresses
/// take at most 216 bytes (two UNIX paths); balancers add a few TLVs (an
/// NLB its VPC endpoint id, HAProxy a unique id or TLS details).
pub const MAX_REST_LEN: usize = 2048;

/// Why a connection's PROXY header was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyHeaderError {
    /// The connection did not start with the PROXY v2 signature.
    #[error("no PROXY protocol v2 header")]
    Missing,
    /// The header claims more address and TLV bytes than accepted.
    #[error("PROXY header of {0} bytes after its fixed part, over {MAX_REST_LEN}")]
    TooLong(usize),
    /// The header does not parse.
    #[error("malformed PROXY header: {0}")]
    Malformed(#[from] ppp::v2::ParseError),
    /// The connection failed or closed before the header was complete.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads the PROXY v2 header at the start of `stream` and returns the
/// agent's address (`peer`, the connection's own, for a `LOCAL` header or
/// one without IP addresses).
pub async fn read_source<S: AsyncRead + Unpin>(
    stream: &mut S,
    peer: SocketAddr,
) -> Result<SocketAddr, ProxyHeaderError> {
    // On the heap, and only for as long as the header takes.
    let mut header = vec![0u8; FIXED_LEN];
    stream.read_exact(&mut header).await?;
    if header[..PROTOCOL_PREFIX.len()] != *PROTOCOL_PREFIX {
        return Err(ProxyHeaderError::Missing);
    }
    // Checked before reading on: the length is the peer's claim.
    let rest = usize::from(u16::from_be_bytes([header[14], header[15]]));
    if rest > MAX_REST_LEN {
        return Err(ProxyHeaderError::TooLong(rest));
    }
    header.resize(FIXED_LEN + rest, 0);
    stream.read_exact(&mut header[FIXED_LEN..]).await?;
    source_of(&header, peer)
}

/// The agent's address in a whole header.
fn source_of(header: &[u8], peer: SocketAddr) -> Result<SocketAddr, ProxyHeaderError> {
    let header = Header::try_from(header)?;
    Ok(match (header.command, header.addresses) {
        (Command::Proxy, Addresses::IPv4(a)) => SocketAddr::from((a.source_address, a.source_port)),
        (Command::Proxy, Addresses::IPv6(a)) => SocketAddr::from((a.source_address, a.source_port)),
        _ => peer,
    })
}

#[cfg(test)]
mod tests {
    use ppp::v2::{Builder, Protocol, Version};

    use super::*;

    fn header(source: SocketAddr, command: Command) -> Vec<u8> {
        let destination: SocketAddr = if source.is_ipv4() {
            "10.0.0.1:7700".parse().unwrap()
        } else {
            "[fd00::1]:7700".parse().unwrap()
        };
        Builder::with_addresses(Version::Two | command, Protocol::Stream, (source, destination))
            .build()
            .unwrap()
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:40000".parse().unwrap()
    }

    #[tokio::test]
    async fn the_agents_address_is_read_and_nothing_after_the_header() {
        for source in ["203.0.113.7:51000", "[2001:db8::7]:51000"] {
            let source: SocketAddr = source.parse().unwrap();
            let mut input = header(source, Command::Proxy);
            input.extend_from_slice(b"\x89AWP");
            let mut stream = &input[..];
            assert_eq!(read_source(&mut stream, peer()).await.unwrap(), source);
            assert_eq!(stream, b"\x89AWP", "the agent's bytes are left");
        }
    }

    #[tokio::test]
    async fn a_local_header_keeps_the_connections_address() {
        let input = header("203.0.113.7:51000".parse().unwrap(), Command::Local);
        assert_eq!(read_source(&mut &input[..], peer()).await.unwrap(), peer());
    }

    #[tokio::test]
    async fn a_connection_without_a_valid_header_is_refused() {
        let mut preamble = b"\x89AWP".to_vec();
        preamble.extend([0; 12]);
        let err = read_source(&mut &preamble[..], peer()).await.unwrap_err();
        assert!(matches!(err, ProxyHeaderError::Missing), "{err}");

        let mut long = header("203.0.113.7:51000".parse().unwrap(), Command::Proxy);
        long[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        let err = read_source(&mut &long[..], peer()).await.unwrap_err();
        assert!(matches!(err, ProxyHeaderError::TooLong(65535)), "{err}");

        let mut bad = header("203.0.113.7:51000".parse().unwrap(), Command::Proxy);
        bad[12] = 0x31; // version 3
        let err = read_source(&mut &bad[..], peer()).await.unwrap_err();
        assert!(matches!(err, ProxyHeaderError::Malformed(_)), "{err}");

        let short = &header("203.0.113.7:51000".parse().unwrap(), Command::Proxy)[..20];
        let err = read_source(&mut &short[..], peer()).await.unwrap_err();
        assert!(matches!(err, ProxyHeaderError::Io(_)), "{err}");
    }
}
