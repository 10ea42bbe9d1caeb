//! Reaching a gateway: resolve its address again, TCP, TLS (ALPN `awp/1`,
//! the given CA or the platform's), the preamble and HELLO, WELCOME.

use std::sync::Arc;
use std::time::Duration;

use awp_protocol::{CompressionSet, Frame, Hello, HelloAuth, MAGIC};
use bytes::BytesMut;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::config::{Auth, ClientConfig, Token};
use crate::engine::ClientError;

/// A connection to a gateway, plain or TLS.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// The TLS set-up, made once per client.
pub(crate) fn tls_connector(config: &ClientConfig) -> Result<Option<tokio_rustls::TlsConnector>, ClientError> {
    let Some(tls) = &config.tls else { return Ok(None) };
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| ClientError::Config(format!("tls_ca: bad PEM: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| ClientError::Config(format!("tls_ca: unusable CA certificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err(ClientError::Config("tls_ca: no certificate in it".into()));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(ClientError::Config(
                    "tls: the platform has no CA certificates to trust; give tls_ca".into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ClientError::Config(format!("tls: {e}")))?
        .with_root_certificates(roots);
    let mut rustls_config = match &config.auth {
        Auth::ClientCert { cert_pem, key_pem } => {
            let chain = CertificateDer::pem_slice_iter(cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ClientError::Config(format!("client_cert: bad PEM: {e}")))?;
            let key = PrivateKeyDer::from_pem_slice(key_pem)
                .map_err(|e| ClientError::Config(format!("client_key: no private key: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ClientError::Config(format!("client_cert: does not match its key: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    rustls_config.alpn_protocols = vec![b"awp/1".to_vec()];
    Ok(Some(tokio_rustls::TlsConnector::from(Arc::new(rustls_config))))
}

/// Connects to `address` (resolved now) within `within`.
pub(crate) async fn open(
    address: &str,
    config: &ClientConfig,
    tls: Option<&tokio_rustls::TlsConnector>,
    within: Duration,
) -> Result<Box<dyn Stream>, String> {
    let connect = async {
        let addrs: Vec<_> = tokio::net::lookup_host(address)
            .await
            .map_err(|e| format!("{address}: cannot resolve: {e}"))?
            .collect();
        let mut last = format!("{address}: no address");
        let mut stream = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = format!("{addr}: {e}"),
            }
        }
        let stream = stream.ok_or(last)?;
        let _ = stream.set_nodelay(true);
        let Some(connector) = tls else {
            return Ok(Box::new(stream) as Box<dyn Stream>);
        };
        let host = config
            .tls
            .as_ref()
            .and_then(|t| t.server_name.clone())
            .unwrap_or_else(|| host_of(address).to_owned());
        let name = ServerName::try_from(host.clone()).map_err(|_| format!("{host}: not a DNS name or IP"))?;
        let tls = connector
            .connect(name, stream)
            .await
            .map_err(|e| format!("{address}: TLS: {e}"))?;
        Ok(Box::new(tls) as Box<dyn Stream>)
    };
    tokio::time::timeout(within, connect)
        .await
        .map_err(|_| format!("{address}: no connection within {} s", within.as_secs()))?
}

/// The host part of `host:port` (`[v6]:port` too).
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// The preamble and HELLO.
pub(crate) fn hello(config: &ClientConfig, token: Option<Token>, compression: CompressionSet) -> BytesMut {
    let auth = match token {
        Some(t) => HelloAuth::Token {
            expiry: t.expiry,
            token: t.token,
        },
        None => HelloAuth::ClientCert,
    };
    let mut out = BytesMut::with_capacity(256);
    out.extend_from_slice(&MAGIC);
    let frame = Frame::Hello(Hello {
        min_version: 1,
        max_version: 1,
        tenant_id: config.tenant.clone(),
        device_id: config.device.clone(),
        platform: config.platform,
        agent_version: awp_protocol::truncate_utf8(config.agent_version.as_str().into(), 64).into_owned(),
        compression,
        auth,
    });
    // Checked when the client was opened: tenant and device ids are valid.
    let _ = frame.encode(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_of_an_address_is_what_tls_verifies() {
        assert_eq!(host_of("gw.example.com:7701"), "gw.example.com");
        assert_eq!(host_of("127.0.0.1:7701"), "127.0.0.1");
        assert_eq!(host_of("[::1]:7701"), "::1");
    }
}
