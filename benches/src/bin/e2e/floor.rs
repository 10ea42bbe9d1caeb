//! The floor server: the least work a server can do and still be an AWP/1
//! peer for agent-sim. It answers HELLO with WELCOME without checking the
//! token, and acks every BATCH OK after reading only its header and `seq`:
//! no CRC, no records, no store. What it reaches is the limit of the
//! transport (TCP or TLS on this machine) and of agent-sim itself, the
//! yardstick the gateway is measured against.
//!
//! It advertises no compression, so agents send plain batches and `seq` is
//! the first varint of the payload.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use awp_protocol::{Ack, CompressionSet, Frame, FrameType, HEADER_LEN, Header, MAGIC, Welcome};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves plain TCP on `listen` and, with a certificate, TLS on `tls_listen`, until killed.
pub fn serve(listen: SocketAddr, tls: Option<(SocketAddr, &Path, &Path)>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let plain = TcpListener::bind(listen)
            .await
            .with_context(|| format!("floor: cannot listen on {listen}"))?;
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(accept(plain, None));
        if let Some((addr, cert, key)) = tls {
            let acceptor = crate::pki::acceptor(cert, key)?;
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("floor: cannot listen on {addr}"))?;
            tasks.spawn(accept(listener, Some(acceptor)));
        }
        while tasks.join_next().await.is_some() {}
        Ok(())
    })
}

async fn accept(listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => connection(stream).await,
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        connection(stream).await;
                    }
                }
            }
        });
    }
}

/// One agent: preamble, HELLO → WELCOME, then BATCH → ACK OK and PING → PONG
/// until BYE or the close. All answers to what one read brought are written
/// with one write.
async fn connection<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let mut rbuf = BytesMut::with_capacity(64 * 1024);
    let mut wbuf = BytesMut::with_capacity(4 * 1024);
    let mut preamble = [0u8; 4];
    if stream.read_exact(&mut preamble).await.is_err() || preamble != MAGIC {
        return;
    }
    loop {
        let mut bye = false;
        while let Some(header) = rbuf.first_chunk::<HEADER_LEN>().and_then(|h| Header::parse(h).ok()) {
            let frame_len = header.frame_len();
            if rbuf.len() < frame_len {
                rbuf.reserve(frame_len - rbuf.len());
                break;
            }
            let mut frame = rbuf.split_to(frame_len);
            frame.advance(HEADER_LEN);
            let answer = match header.frame_type {
                FrameType::Hello => Some(Frame::Welcome(Welcome {
                    version: 1,
                    session_id: [7; 16],
                    max_frame_len: 1 << 20,
                    max_batch_records: 1000,
                    max_inflight: 64,
                    heartbeat_ms: 30_000,
                    compression: CompressionSet::NONE,
                })),
                FrameType::Batch => seq(&frame).map(|seq| Frame::Ack(Ack::ok(seq))),
                FrameType::Ping => frame.first_chunk::<8>().map(|n| Frame::Pong(u64::from_be_bytes(*n))),
                FrameType::Bye => {
                    bye = true;
                    None
                }
                _ => None,
            };
            if let Some(answer) = answer {
                let _ = answer.encode(&mut wbuf);
            }
        }
        if !wbuf.is_empty() {
            if stream.write_all(&wbuf).await.is_err() || stream.flush().await.is_err() {
                return;
            }
            wbuf.clear();
        }
        if bye {
            let _ = stream.shutdown().await;
            return;
        }
        if rbuf.capacity() - rbuf.len() < 4096 {
            rbuf.reserve(64 * 1024);
        }
        match stream.read_buf(&mut rbuf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// The leading varint of a plain BATCH payload.
fn seq(payload: &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, byte) in payload.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}
