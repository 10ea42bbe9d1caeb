//! The inflate attack of issue 8, and a probe that times a new agent's
//! WELCOME while it goes on.
//!
//! Each attacking connection authenticates, then keeps 32 BATCHes in flight:
//! each is a Zstandard frame of a few hundred wire bytes that inflates to 10
//! records of an unknown kind with 390 KiB bodies (about 3.9 MB). Whatever
//! the gateway answers, the same `seq` is sent again as soon as it is
//! answered, so the gateway always holds as much as the window lets it.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use awp_protocol::{
    AckStatus, Batch, Compression, CompressionSet, Decoded, Frame, Hello, HelloAuth, Limits, MAGIC, Platform, Record,
    RecordBody, Unknown,
};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Batches in flight per attacking connection.
pub const WINDOW: u64 = 32;
/// Records per batch, and the body size of each.
pub const RECORDS: usize = 10;
/// The body size of each record.
pub const BODY: usize = 390 * 1024;

/// What the attackers got back.
#[derive(Debug, Default)]
pub struct AttackStats {
    /// ACK OK.
    pub ok: AtomicU64,
    /// ACK RETRY.
    pub retry: AtomicU64,
    /// ACK REJECTED, ERRORs and dropped connections.
    pub failed: AtomicU64,
}

/// The 32 frames one connection cycles through (seq 1..=32); and their wire size.
pub fn frames() -> anyhow::Result<(Vec<Bytes>, usize)> {
    let body = vec![0x41u8; BODY];
    let mut frames = Vec::new();
    for seq in 1..=WINDOW {
        let batch = Batch {
            seq,
            base_time_ms: 1_764_000_000_000,
            records: (0..RECORDS)
                .map(|_| Record {
                    time_offset_ms: 0,
                    body: RecordBody::Unknown(Unknown {
                        kind: 99,
                        body: Cow::Borrowed(&body[..]),
                    }),
                })
                .collect(),
        };
        let mut buf = BytesMut::new();
        batch.encode(Compression::Zstd, &Limits::DEFAULT, &mut buf)?;
        frames.push(buf.freeze());
    }
    let wire = frames[0].len();
    Ok((frames, wire))
}

fn hello(tenant: &str, secret: &str, device: &str, compression: CompressionSet) -> Frame {
    Frame::Hello(Hello {
        min_version: 1,
        max_version: 1,
        tenant_id: tenant.to_owned(),
        device_id: device.to_owned(),
        platform: Platform::Linux,
        agent_version: "e2e-attack".to_owned(),
        compression,
        auth: HelloAuth::Token {
            expiry: 0,
            token: awp_protocol::token::device_token(secret.as_bytes(), tenant, device, 0),
        },
    })
}

/// A connection that reads whole frames.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    async fn open(addr: SocketAddr, hello: Frame) -> anyhow::Result<Conn> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut out = BytesMut::from(&MAGIC[..]);
        hello.encode(&mut out)?;
        stream.write_all(&out).await?;
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(4096),
        })
    }

    async fn frame(&mut self) -> anyhow::Result<Frame> {
        loop {
            let bytes = Bytes::copy_from_slice(&self.buf);
            if let Decoded::Complete(frame, len) = awp_protocol::decode(&bytes, &Limits::DEFAULT)? {
                let _ = self.buf.split_to(len);
                return Ok(frame);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                bail!("closed by the gateway");
            }
        }
    }
}

/// One attacking connection, until `until`.
pub async fn attacker(
    addr: SocketAddr,
    tenant: String,
    secret: String,
    device: String,
    frames: Arc<Vec<Bytes>>,
    until: Instant,
    stats: Arc<AttackStats>,
) {
    let result: anyhow::Result<()> = async {
        let mut conn = Conn::open(addr, hello(&tenant, &secret, &device, CompressionSet::ALL)).await?;
        match conn.frame().await? {
            Frame::Welcome(w) if w.compression.allows(Compression::Zstd) => {}
            other => bail!("no zstd WELCOME: {other:?}"),
        }
        for frame in frames.iter() {
            conn.stream.write_all(frame).await?;
        }
        while Instant::now() < until {
            let Ok(frame) = tokio::time::timeout_at(until.into(), conn.frame()).await else {
                break;
            };
            match frame? {
                Frame::Ack(ack) => {
                    match ack.status {
                        AckStatus::Ok => stats.ok.fetch_add(1, Ordering::Relaxed),
                        AckStatus::Retry => stats.retry.fetch_add(1, Ordering::Relaxed),
                        AckStatus::Rejected => stats.failed.fetch_add(1, Ordering::Relaxed),
                    };
                    let index = usize::try_from(ack.seq)?.checked_sub(1);
                    let frame = index.and_then(|i| frames.get(i)).context("ack for a seq never sent")?;
                    conn.stream.write_all(frame).await?;
                }
                Frame::Ping(nonce) => {
                    let mut out = BytesMut::new();
                    Frame::Pong(nonce).encode(&mut out)?;
                    conn.stream.write_all(&out).await?;
                }
                Frame::Pong(_) => {}
                other => bail!("unexpected {other:?}"),
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        stats.failed.fetch_add(1, Ordering::Relaxed);
        eprintln!("e2e: attacker {device}: {e:#}");
    }
}

/// A new agent: time from connect to WELCOME, then from sending one small
/// batch to its ACK (whatever its status).
pub async fn probe(addr: SocketAddr, tenant: &str, secret: &str) -> anyhow::Result<(Duration, Duration, AckStatus)> {
    let started = Instant::now();
    let mut conn = Conn::open(addr, hello(tenant, secret, "e2e-probe", CompressionSet::NONE)).await?;
    let welcome = tokio::time::timeout(Duration::from_secs(30), conn.frame())
        .await
        .context("no WELCOME in 30 s")??;
    let Frame::Welcome(_) = welcome else {
        bail!("expected WELCOME, got {welcome:?}");
    };
    let to_welcome = started.elapsed();
    let batch = awp_protocol::sample::batch(1, 1, 7, &awp_protocol::sample::Mix::default());
    let mut out = BytesMut::new();
    batch.encode(Compression::None, &Limits::DEFAULT, &mut out)?;
    let sent = Instant::now();
    conn.stream.write_all(&out).await?;
    loop {
        match tokio::time::timeout(Duration::from_secs(30), conn.frame())
            .await
            .context("no ACK in 30 s")??
        {
            Frame::Ack(ack) => return Ok((to_welcome, sent.elapsed(), ack.status)),
            Frame::Ping(_) | Frame::Pong(_) => {}
            other => bail!("expected ACK, got {other:?}"),
        }
    }
}
