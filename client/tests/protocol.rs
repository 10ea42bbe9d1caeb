//! The engine's answers to each thing a gateway may say, against a
//! scripted AWP/1 peer on a real socket (the peer is the protocol's other
//! end, written from AWP1.md; `protocol_faults.rs` has the same answers
//! from a real gateway whose DynamoDB fails): ACKs out of order, RETRY
//! resent with the same bytes after `retry_after_ms`, REJECTED counted and
//! never resent, GOAWAY and a missing ACK keeping every unacked batch,
//! tokens refreshed before a HELLO and handed over by the app.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use awp_client::{Auth, Client, ClientConfig, QueuePlace, SealLimits, Token};
use awp_protocol::{
    Ack, BatchFrame, CompressionSet, Decoded, Frame, GoAway, Hello, HelloAuth, Limits, MAGIC, Welcome, decode,
};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::*;

/// How long the peer waits for the client's next frame.
const WAIT: Duration = Duration::from_secs(10);

/// One connection, as the gateway's end.
struct Peer {
    stream: TcpStream,
    buf: BytesMut,
    hello: Hello,
    limits: Limits,
}

impl Peer {
    /// Accepts a connection, reads the preamble and HELLO, says WELCOME.
    async fn accept(listener: &TcpListener, max_inflight: u64) -> Peer {
        let (mut stream, _) = tokio::time::timeout(WAIT, listener.accept())
            .await
            .expect("the client connects in time")
            .unwrap();
        let mut magic = [0u8; 4];
        stream.read_exact(&mut magic).await.unwrap();
        assert_eq!(magic, MAGIC);
        let welcome = Welcome {
            version: 1,
            session_id: [7; 16],
            max_frame_len: 1 << 20,
            max_batch_records: 1000,
            max_inflight,
            heartbeat_ms: 30_000,
            compression: CompressionSet::ALL,
        };
        let mut peer = Peer {
            stream,
            buf: BytesMut::new(),
            hello: Hello {
                min_version: 1,
                max_version: 1,
                tenant_id: String::new(),
                device_id: String::new(),
                platform: awp_protocol::Platform::Unknown,
                agent_version: String::new(),
                compression: CompressionSet::NONE,
                auth: HelloAuth::ClientCert,
            },
            limits: welcome.limits(),
        };
        match peer.next().await {
            Some(Frame::Hello(h)) => peer.hello = h,
            other => panic!("expected HELLO, got {other:?}"),
        }
        peer.send(Frame::Welcome(welcome)).await;
        peer
    }

    async fn send(&mut self, frame: Frame) {
        self.stream.write_all(&frame.to_bytes().unwrap()).await.unwrap();
    }

    /// The next frame; `None` when the client closed.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            let view = Bytes::copy_from_slice(&self.buf);
            match decode(&view, &self.limits).expect("the client sends valid frames") {
                Decoded::Complete(frame, used) => {
                    let _ = self.buf.split_to(used);
                    return Some(frame);
                }
                Decoded::Incomplete(_) => {
                    let n = tokio::time::timeout(WAIT, self.stream.read_buf(&mut self.buf))
                        .await
                        .expect("the client sends in time")
                        .unwrap_or(0);
                    if n == 0 {
                        return None;
                    }
                }
            }
        }
    }

    /// The next BATCH (PINGs are answered on the way).
    async fn batch(&mut self) -> BatchFrame {
        loop {
            match self.next().await {
                Some(Frame::Batch(b)) => return b,
                Some(Frame::Ping(n)) => self.send(Frame::Pong(n)).await,
                other => panic!("expected BATCH, got {other:?}"),
            }
        }
    }

    /// What the client sends within `within` other than PINGs: `None` if
    /// nothing, or the connection closed.
    async fn quiet_for(&mut self, within: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.next()).await {
                Err(_) | Ok(None) | Ok(Some(Frame::Bye)) => return None,
                Ok(Some(Frame::Ping(n))) => self.send(Frame::Pong(n)).await,
                Ok(Some(other)) => return Some(other),
            }
        }
    }
}

fn client_config(addr: std::net::SocketAddr, auth: Auth) -> ClientConfig {
    let mut c = ClientConfig::new(vec![addr.to_string()], TENANT, "scripted", auth, QueuePlace::Memory);
    // Batches are sealed by count (or flush), never by a delay that a
    // loaded machine could cut in two.
    c.batch_delay = Duration::from_secs(30);
    c.seal = SealLimits {
        max_records: 10,
        max_bytes: 60_000,
    };
    c.backoff = (Duration::from_millis(20), Duration::from_millis(100));
    c.ack_timeout = Duration::from_secs(1);
    c
}

fn records(client: &Client, numbers: std::ops::Range<u64>) {
    for i in numbers {
        client.push(&location(i)).unwrap();
    }
}

/// A client to `listener` that pushed `count` records and is flushing them
/// (the flush's outcome comes from the handle).
fn pushed_and_flushing(
    listener: &TcpListener,
    count: u64,
) -> (
    Arc<Client>,
    tokio::task::JoinHandle<Result<(), awp_client::ClientError>>,
) {
    let config = client_config(listener.local_addr().unwrap(), Auth::Token(token("scripted")));
    let client = Arc::new(Client::open(config).unwrap());
    records(&client, 0..count);
    let flushing = client.clone();
    let flusher = tokio::task::spawn_blocking(move || flushing.flush(Duration::from_secs(20)));
    (client, flusher)
}

#[tokio::test]
async fn acks_out_of_order_retry_and_rejected() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (client, flusher) = pushed_and_flushing(&listener, 40);
    let mut peer = Peer::accept(&listener, 4).await;
    let mut batches = Vec::new();
    for _ in 0..4 {
        batches.push(peer.batch().await);
    }
    let seqs: Vec<u64> = batches.iter().map(BatchFrame::seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seqs rise: {seqs:?}");
    // The window is full: nothing more comes until an ACK.
    assert_eq!(peer.quiet_for(Duration::from_millis(200)).await, None);
    // Answers in reverse order: OK, OK, RETRY, REJECTED.
    peer.send(Frame::Ack(Ack::ok(seqs[3]))).await;
    peer.send(Frame::Ack(Ack::ok(seqs[2]))).await;
    let retry_sent = Instant::now();
    peer.send(Frame::Ack(Ack::retry(seqs[1], 300, "store busy"))).await;
    peer.send(Frame::Ack(Ack::rejected(seqs[0], "bad record 3"))).await;
    let resent = peer.batch().await;
    assert!(
        retry_sent.elapsed() >= Duration::from_millis(300),
        "resent before retry_after_ms"
    );
    assert_eq!(resent, batches[1], "the same seq and the same bytes");
    peer.send(Frame::Ack(Ack::ok(seqs[1]))).await;
    flusher.await.unwrap().expect("flush: everything answered");
    // REJECTED is not resent.
    assert_eq!(peer.quiet_for(Duration::from_millis(300)).await, None);
    let stats = client.stats();
    assert_eq!(stats.records_acked, 30);
    assert_eq!(stats.records_rejected, 10);
    assert_eq!(stats.last_rejection.as_deref(), Some("bad record 3"));
    assert_eq!(stats.retries, 1);
    assert_eq!(stats.batches_sent, 5);
    assert_eq!(stats.queue.pending_batches, 0);
    Arc::into_inner(client).unwrap().close();
}

#[tokio::test]
async fn goaway_and_a_missing_ack_keep_the_batch_and_resend_it_unchanged() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (client, flusher) = pushed_and_flushing(&listener, 20);
    // 1: two batches; GOAWAY, A stored, B answered RETRY: the connection
    // ends once nothing is in flight, and B waits for the next one.
    let mut first = Peer::accept(&listener, 4).await;
    let (a, b) = (first.batch().await, first.batch().await);
    first.send(Frame::GoAway(GoAway::new(300, "draining"))).await;
    let goaway_sent = Instant::now();
    first.send(Frame::Ack(Ack::ok(a.seq()))).await;
    first.send(Frame::Ack(Ack::retry(b.seq(), 0, "draining"))).await;
    // A record pushed now (the answers read) is not sent on a connection
    // that said GOAWAY.
    while client.stats().retries == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    client.push(&location(20)).unwrap();
    assert_eq!(
        first.quiet_for(Duration::from_secs(2)).await,
        None,
        "nothing more after GOAWAY"
    );
    drop(first);
    // 2: after GOAWAY's delay, B again (the same bytes) and the new record's
    // batch; no ACK.
    let mut second = Peer::accept(&listener, 4).await;
    assert!(
        goaway_sent.elapsed() >= Duration::from_millis(300),
        "reconnected before GOAWAY's delay"
    );
    let mut resent = [second.batch().await, second.batch().await];
    resent.sort_by_key(BatchFrame::seq);
    assert_eq!(resent[0], b, "B unchanged");
    let c = resent[1].clone();
    assert!(c.seq() > b.seq());
    // The ACK deadline (1 s here) passes: the client gives up on this one.
    assert_eq!(second.quiet_for(Duration::from_secs(5)).await, None);
    // 3: B and C again, unchanged, acked at last.
    let mut third = Peer::accept(&listener, 4).await;
    let mut again = [third.batch().await, third.batch().await];
    again.sort_by_key(BatchFrame::seq);
    assert_eq!(again, [b.clone(), c.clone()]);
    third.send(Frame::Ack(Ack::ok(b.seq()))).await;
    third.send(Frame::Ack(Ack::ok(c.seq()))).await;
    flusher.await.unwrap().expect("flush");
    client
        .flush(Duration::from_secs(10))
        .expect("flush the record pushed later");
    let stats = client.stats();
    assert_eq!(stats.records_acked, 21);
    assert_eq!(stats.batches_sent, 6);
    assert_eq!(stats.connects, 3);
    Arc::into_inner(client).unwrap().close();
}

fn hello_token(peer: &Peer) -> ([u8; 32], u64) {
    match peer.hello.auth {
        HelloAuth::Token { token, expiry } => (token, expiry),
        HelloAuth::ClientCert => panic!("a token HELLO"),
    }
}

#[tokio::test]
async fn tokens_are_fetched_before_they_expire_and_taken_from_the_app() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let calls = Arc::new(AtomicU64::new(0));
    let source = {
        let calls = calls.clone();
        Arc::new(move || {
            // The first expires within token_refresh_before (300 s): the
            // next HELLO must fetch another; the second is good for a day.
            let n = calls.fetch_add(1, Ordering::SeqCst);
            let expiry = if n == 0 { now + 100 } else { now + 86_400 };
            Ok(Token {
                token: [n as u8 + 1; 32],
                expiry,
            })
        })
    };
    let client = Arc::new(Client::open(client_config(listener.local_addr().unwrap(), Auth::Source(source))).unwrap());
    let mut said = Vec::new();
    for round in 0..4u64 {
        if round == 3 {
            // Handed over while the engine waits, idle, for something to
            // send (it went back to waiting well within 200 ms): the next
            // HELLO says it.
            tokio::time::sleep(Duration::from_millis(200)).await;
            client
                .set_token(Token {
                    token: [9; 32],
                    expiry: now + 86_400,
                })
                .unwrap();
        }
        records(&client, round * 10..round * 10 + 10);
        let mut peer = Peer::accept(&listener, 4).await;
        said.push(hello_token(&peer));
        let batch = peer.batch().await;
        peer.send(Frame::Ack(Ack::ok(batch.seq()))).await;
        peer.send(Frame::GoAway(GoAway::new(0, "next round"))).await;
        assert_eq!(peer.quiet_for(Duration::from_secs(2)).await, None);
    }
    assert_eq!(
        said,
        [
            ([1; 32], now + 100),
            ([2; 32], now + 86_400),
            ([2; 32], now + 86_400),
            ([9; 32], now + 86_400),
        ],
        "fetched at first, again before expiry, kept while fresh, replaced by the app's"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    Arc::into_inner(client).unwrap().close();
}

#[tokio::test]
async fn close_does_not_wait_for_a_welcome_that_never_comes() {
    // A gateway that accepts and then says nothing.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = client_config(listener.local_addr().unwrap(), Auth::Token(token("scripted")));
    config.connect_timeout = Duration::from_secs(120);
    let client = Client::open(config).unwrap();
    client.push(&location(1)).unwrap();
    let (_silent, _) = tokio::time::timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    let closing = Instant::now();
    tokio::task::spawn_blocking(move || client.close()).await.unwrap();
    assert!(
        closing.elapsed() < Duration::from_secs(20),
        "close waited {:?} for the handshake",
        closing.elapsed()
    );
}
