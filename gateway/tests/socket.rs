//! The gateway over real sockets: every vector gets the spec's answer, the
//! SQLite sink holds exactly the vectors' items, and the session rules
//! (window, heartbeats, idle timeout, GOAWAY, connection limit, split reads)
//! hold end to end.

mod support;

use std::time::Duration;

use awp_protocol::{AckStatus, Compression, ErrorCode, Frame, Limits, MAGIC};
use serde_json::Value;
use support::{TestServer, vector};

#[tokio::test]
async fn every_valid_client_vector_is_answered() {
    let t = TestServer::start(|_| {}).await;
    let mut c = t.welcomed().await;
    for v in &awp_testkit::vectors().valid {
        let seq = v.frame["seq"].as_u64();
        match v.frame["type"].as_str().unwrap() {
            "BATCH" => {
                c.send(&v.bytes).await;
                match c.next().await {
                    Some(Frame::Ack(a)) => {
                        assert_eq!((Some(a.seq), a.status), (seq, AckStatus::Ok), "{}", v.name);
                    }
                    other => panic!("{}: expected ACK, got {other:?}", v.name),
                }
            }
            "PING" => {
                c.send(&v.bytes).await;
                assert!(matches!(c.next().await, Some(Frame::Pong(72623859790382856))));
            }
            _ => {}
        }
    }
    c.send(&vector("bye")).await;
    assert!(
        c.next().await.is_none(),
        "BYE: the server closes once everything is acked"
    );

    // The other valid HELLO with a token (expiry in 2030, max_version 3) is welcomed too.
    let mut c = t.connect().await;
    let mut bytes = MAGIC.to_vec();
    bytes.extend(vector("hello_token_windows_expiry"));
    c.send(&bytes).await;
    match c.next().await {
        Some(Frame::Welcome(w)) => assert_eq!(w.version, 1),
        other => panic!("expected WELCOME, got {other:?}"),
    }
    t.server.shutdown().await;
}

#[tokio::test]
async fn every_invalid_vector_gets_its_answer() {
    let t = TestServer::start(|_| {}).await;
    let invalid = &awp_testkit::vectors().invalid;
    for v in invalid {
        support::check_invalid_vector(t.connect().await, v).await;
    }
    assert_eq!(invalid.len(), 56);
    t.server.shutdown().await;
}

/// The stored rows of the vectors' device, in key order, as DynamoDB JSON
/// objects without `received_at`.
fn stored_items(dir: &std::path::Path) -> Vec<Value> {
    let db = awp_store::sqlite::open_read_only(dir, "acme").unwrap();
    let rows = awp_store::sqlite::device_items(&db, "dev-0001").unwrap();
    rows.into_iter()
        .map(|(rk, item)| {
            let mut item: Value = serde_json::from_str(&item).unwrap();
            assert_eq!(item["device"]["S"], "dev-0001");
            assert_eq!(item["rk"]["S"], rk);
            assert!(item["received_at"]["N"].is_string(), "received_at is stored");
            item.as_object_mut().unwrap().remove("received_at");
            item
        })
        .collect()
}

#[tokio::test]
async fn sqlite_holds_each_vector_item_once_however_often_it_is_sent() {
    let t = TestServer::start(|_| {}).await;
    let batches: Vec<Vec<u8>> = [
        "batch_one_location",
        "batch_mixed_kinds",
        "batch_mixed_lz4",
        "batch_mixed_zstd",
    ]
    .iter()
    .map(|n| vector(n))
    .collect();
    // Twice over, on two connections: the second time as a resend after a dropped connection.
    for round in 0..2 {
        let mut c = t.welcomed().await;
        for b in &batches {
            c.send(b).await;
            assert!(
                matches!(c.next().await, Some(Frame::Ack(a)) if a.status == AckStatus::Ok),
                "round {round}"
            );
        }
        drop(c);
    }
    let expected = support::expected_vector_items();
    assert_eq!(stored_items(t.dir.path()), expected);
    t.server.shutdown().await;
}

/// A pipeline that lingers ~300 ms before writing, so batches stay in flight.
fn slow_pipeline(c: &mut awp_gateway::config::Config) {
    c.pipeline.linger = std::time::Duration::from_millis(300);
    c.pipeline.max_items = 1_000_000;
    c.server.max_inflight = 2;
}

#[tokio::test]
async fn the_window_is_enforced_over_a_socket() {
    let t = TestServer::start(slow_pipeline).await;
    let mut c = t.welcomed().await;
    c.send(&vector("batch_one_location")).await;
    c.send(&vector("batch_mixed_kinds")).await;
    c.send(&vector("batch_max_seq")).await;
    let message = c.expect_error(ErrorCode::WindowExceeded).await;
    assert!(message.contains("max_inflight=2"), "{message}");

    let mut c = t.welcomed().await;
    c.send(&vector("batch_one_location")).await;
    c.send(&vector("batch_one_location")).await;
    let message = c.expect_error(ErrorCode::WindowExceeded).await;
    assert!(message.contains("already in flight"), "{message}");
    t.server.shutdown().await;
}

#[tokio::test]
async fn ping_is_answered_before_the_ack_of_a_batch_in_flight() {
    let t = TestServer::start(slow_pipeline).await;
    let mut c = t.welcomed().await;
    c.send(&vector("batch_one_location")).await;
    c.send(&vector("ping")).await;
    assert!(matches!(c.next().await, Some(Frame::Pong(_))), "PONG first");
    assert!(matches!(c.next().await, Some(Frame::Ack(a)) if a.seq == 1 && a.status == AckStatus::Ok));
    t.server.shutdown().await;
}

#[tokio::test]
async fn silence_ends_in_idle_timeout_and_pings_keep_a_session_alive() {
    let t = TestServer::start(|c| c.server.heartbeat = std::time::Duration::from_millis(100)).await;
    let mut c = t.welcomed().await;
    // Pinging every heartbeat keeps it open well past three heartbeats.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        c.send(&vector("ping")).await;
        assert!(matches!(c.next().await, Some(Frame::Pong(_))));
    }
    let started = std::time::Instant::now();
    c.expect_error(ErrorCode::IdleTimeout).await;
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "not before three heartbeats"
    );
    t.server.shutdown().await;
}

#[tokio::test]
async fn no_hello_in_time_is_closed() {
    let t = TestServer::start(|c| c.server.hello_timeout = std::time::Duration::from_millis(200)).await;
    let mut c = t.connect().await;
    c.send(&MAGIC).await;
    let message = c.expect_error(ErrorCode::IdleTimeout).await;
    assert!(message.contains("HELLO"));
    t.server.shutdown().await;
}

#[tokio::test]
async fn shutdown_sends_goaway_acks_what_was_received_and_retries_the_rest() {
    let t = TestServer::start(slow_pipeline).await;
    let mut c = t.welcomed().await;
    c.send(&vector("batch_one_location")).await;
    // Let the batch reach the pipeline before the drain starts.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let dir = t.dir;
    let shutdown = tokio::spawn(t.server.shutdown());
    match c.next().await {
        // The configured 1000 ms, give or take half (jitter).
        Some(Frame::GoAway(g)) => assert!((500..=1500).contains(&g.reconnect_after_ms), "{g:?}"),
        other => panic!("expected GOAWAY, got {other:?}"),
    }
    c.send(&vector("batch_mixed_kinds")).await;
    let mut acks = Vec::new();
    while let Some(frame) = c.next().await {
        if let Frame::Ack(a) = frame {
            acks.push((a.seq, a.status));
        }
    }
    acks.sort_by_key(|(seq, _)| *seq);
    assert_eq!(acks, [(1, AckStatus::Ok), (77, AckStatus::Retry)]);
    assert!(shutdown.await.unwrap(), "drained within the deadline");
    assert_eq!(stored_items(dir.path()).len(), 1, "the acked batch is durable");
}

#[tokio::test]
async fn authenticated_connections_beyond_the_limit_get_server_busy() {
    let t = TestServer::start(|c| c.server.max_connections = 1).await;
    let _first = t.welcomed_as("d1").await;
    // Connecting is not refused: only a HELLO takes a place.
    let mut second = t.connect().await;
    second.send_hello_as("acme", "acme-secret-1", "d2").await;
    second.expect_error(ErrorCode::ServerBusy).await;
    t.server.shutdown().await;
}

#[tokio::test]
async fn a_tenant_beyond_its_own_limit_gets_server_busy() {
    let t = TestServer::start(|c| c.tenants[0].max_connections = Some(2)).await;
    let _first = t.welcomed_as("d1").await;
    let _second = t.welcomed_as("d2").await;
    let mut third = t.connect().await;
    third.send_hello_as("acme", "acme-secret-1", "d3").await;
    let message = third.expect_error(ErrorCode::ServerBusy).await;
    assert!(message.contains("tenant"), "{message}");
    t.server.shutdown().await;
}

#[tokio::test]
async fn silent_connections_are_evicted_for_newer_ones_and_agents_get_in() {
    let t = TestServer::start(|c| {
        c.server.max_unauthenticated = 4;
        c.server.max_unauthenticated_per_source = 4;
    })
    .await;
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(t.connect().await);
    }
    // Past their grace (a second), they can be evicted: the fifth
    // connection takes the place of the one waiting longest.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let agent = t.welcomed_as("d1").await;
    let message = silent[0].expect_error(ErrorCode::ServerBusy).await;
    assert!(message.contains("waiting to authenticate"), "{message}");
    // Authenticated, the agent no longer counts among the waiting: four
    // more silent ones evict only silent ones.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..4 {
        silent.push(t.connect().await);
    }
    for s in &mut silent[1..4] {
        s.expect_error(ErrorCode::ServerBusy).await;
    }
    let mut agent = agent;
    agent.send(&vector("ping")).await;
    assert!(matches!(agent.next().await, Some(Frame::Pong(_))));
    t.server.shutdown().await;
}

#[tokio::test]
async fn a_device_connecting_again_replaces_its_older_session() {
    let t = TestServer::start(slow_pipeline).await;
    let mut older = t.welcomed().await;
    older.send(&vector("batch_one_location")).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut newer = t.welcomed().await;
    // The older session goes away, and its batch in flight is still stored and acked.
    match older.next().await {
        Some(Frame::GoAway(g)) => assert!(g.reason.contains("replaced"), "{}", g.reason),
        other => panic!("expected GOAWAY, got {other:?}"),
    }
    assert!(matches!(older.next().await, Some(Frame::Ack(a)) if a.seq == 1 && a.status == AckStatus::Ok));
    assert!(older.next().await.is_none(), "closed once its batch is acked");
    newer.send(&vector("ping")).await;
    assert!(matches!(newer.next().await, Some(Frame::Pong(_))));
    t.server.shutdown().await;
}

#[tokio::test]
async fn frames_delivered_a_byte_at_a_time_work() {
    let t = TestServer::start(|_| {}).await;
    let mut c = t.connect().await;
    let mut bytes = MAGIC.to_vec();
    bytes.extend(vector("hello_token_android"));
    bytes.extend(vector("batch_mixed_zstd"));
    for b in bytes {
        c.send(&[b]).await;
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    assert!(matches!(c.next().await, Some(Frame::Welcome(_))));
    assert!(matches!(c.next().await, Some(Frame::Ack(a)) if a.seq == 77 && a.status == AckStatus::Ok));
    t.server.shutdown().await;
}

/// A plain BATCH of 1,000 typical records (about 28 KB), under `seq`.
fn big_batch(seq: u64) -> Vec<u8> {
    let mut buf = bytes::BytesMut::new();
    awp_protocol::sample::typical_batch(seq, 1000, 5)
        .encode(Compression::None, &Limits::DEFAULT, &mut buf)
        .unwrap();
    buf.to_vec()
}

#[tokio::test]
async fn a_full_budget_holds_batches_back_pings_are_answered_and_a_failing_sink_answers_retry() {
    let t = TestServer::start(|c| {
        // The smallest frames the protocol allows, and a tenant share of
        // exactly one such frame: two 28 KB batches fit, a third waits.
        c.server.max_frame_len = 65_536;
        c.server.max_batch_bytes = 65_536;
        c.pipeline.budget_bytes = 2 * (65_536 + 512);
        c.pipeline.write_timeout = std::time::Duration::from_millis(700);
        // The late write holds its batches' budget until SQLite gives up on
        // the lock (5 s): the third batch stops waiting for it after 1 s.
        c.pipeline.budget_wait = std::time::Duration::from_millis(1000);
        c.server.max_inflight = 8;
    })
    .await;
    // Hold the tenant database's write lock so that the sink's write blocks.
    let db = rusqlite::Connection::open(t.dir.path().join("acme.sqlite3")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let mut c = t.welcomed().await;
    let mut input = Vec::new();
    for seq in 1..=3 {
        input.extend(big_batch(seq));
    }
    input.extend(vector("ping"));
    c.send(&input).await;
    // The third batch waits for budget, yet the PING behind it is answered
    // before any batch is.
    assert!(matches!(c.next().await, Some(Frame::Pong(_))), "PONG first");
    let mut acks = Vec::new();
    for _ in 0..3 {
        match c.next().await {
            Some(Frame::Ack(a)) => acks.push((a.seq, a.status, a.retry_after_ms)),
            other => panic!("expected ACK, got {other:?}"),
        }
    }
    // The blocked write times out, and the batch waiting for budget stops
    // waiting: nothing is acked OK while the store is locked, and every
    // batch is answered RETRY.
    assert!(
        acks.iter()
            .all(|(_, st, after)| *st == AckStatus::Retry && (500..=1500).contains(after)),
        "{acks:?}"
    );
    let mut seqs: Vec<u64> = acks.iter().map(|a| a.0).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, [1, 2, 3]);
    db.execute_batch("ROLLBACK").unwrap();
    drop(db);
    // Once the store is free again (and the late write has ended), a resend
    // is stored: resend after each RETRY, as an agent does.
    let mut ok = false;
    for _ in 0..50 {
        c.send(&big_batch(1)).await;
        match c.next().await {
            Some(Frame::Ack(a)) if a.seq == 1 && a.status == AckStatus::Ok => {
                ok = true;
                break;
            }
            Some(Frame::Ack(a)) if a.seq == 1 && a.status == AckStatus::Retry => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("expected an ACK for seq 1, got {other:?}"),
        }
    }
    assert!(ok, "the resend is stored");
    t.server.shutdown().await;
}

#[tokio::test]
async fn http_on_the_agent_port_is_told_so() {
    let t = TestServer::start(|_| {}).await;
    let mut c = t.connect().await;
    c.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let message = c.expect_error(ErrorCode::BadMagic).await;
    assert!(message.contains("HTTP"), "{message}");
    t.server.shutdown().await;
}

#[tokio::test]
async fn admin_endpoints_answer() {
    let t = TestServer::start(|_| {}).await;
    let mut c = t.welcomed().await;
    c.send(&vector("batch_one_location")).await;
    assert!(matches!(c.next().await, Some(Frame::Ack(_))));
    let admin = t.server.admin_addr.unwrap();
    assert!(support::http_get(admin, "/healthz").await.starts_with("HTTP/1.1 200"));
    assert!(support::http_get(admin, "/readyz").await.starts_with("HTTP/1.1 200"));
    let metrics = support::http_get(admin, "/metrics").await;
    for name in [
        "awp_frames_received_total",
        "awp_acks_total",
        "awp_records_received_total",
        "awp_items_written_total",
        "awp_batch_durable_seconds_bucket",
        "awp_tenant_sink{tenant=\"acme\",kind=\"sqlite\"} 1",
        "awp_tenant_degraded{tenant=\"acme\"} 0",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    t.server.shutdown().await;
}

#[tokio::test]
async fn a_tenant_on_the_null_sink_is_acked_and_nothing_is_written() {
    let t = TestServer::start(|c| {
        c.tenants[0].sink = Some(awp_gateway::config::SinkKind::Null);
        c.sink.allow_null = true;
    })
    .await;
    let mut c = t.welcomed().await;
    c.send(&vector("batch_mixed_kinds")).await;
    assert!(matches!(c.next().await, Some(Frame::Ack(a)) if a.seq == 77 && a.status == AckStatus::Ok));
    assert!(
        !t.dir.path().join("acme.sqlite3").exists(),
        "the null sink opens no database"
    );
    t.server.shutdown().await;
}

#[tokio::test]
async fn retention_sets_expires_at() {
    let t = TestServer::start(|c| c.tenants[0].retention_days = Some(90)).await;
    let mut c = t.welcomed().await;
    c.send(&vector("batch_one_location")).await;
    assert!(matches!(c.next().await, Some(Frame::Ack(a)) if a.status == AckStatus::Ok));
    let db = rusqlite::Connection::open(t.dir.path().join("acme.sqlite3")).unwrap();
    let item: String = db.query_row("SELECT item FROM items", [], |r| r.get(0)).unwrap();
    let item: Value = serde_json::from_str(&item).unwrap();
    let received_s = item["received_at"]["N"].as_str().unwrap().parse::<u64>().unwrap() / 1000;
    let expires = item["expires_at"]["N"].as_str().unwrap().parse::<u64>().unwrap();
    assert_eq!(expires, received_s + 90 * 86_400);
    t.server.shutdown().await;
}

#[tokio::test]
async fn a_client_that_half_closes_still_gets_its_acks() {
    use tokio::io::AsyncWriteExt;
    let t = TestServer::start(slow_pipeline).await;
    let mut c = t.welcomed().await;
    c.send(&vector("batch_one_location")).await;
    c.stream.shutdown().await.unwrap();
    assert!(matches!(c.next().await, Some(Frame::Ack(a)) if a.seq == 1 && a.status == AckStatus::Ok));
    assert!(c.next().await.is_none());
    t.server.shutdown().await;
}

#[tokio::test]
async fn a_record_too_large_for_a_dynamodb_item_is_rejected() {
    use awp_protocol::{Batch, Compression, Limits, Record, RecordBody, Unknown};
    let t = TestServer::start(|_| {}).await;
    let mut c = t.welcomed().await;
    let batch = Batch {
        seq: 9,
        base_time_ms: 1_764_000_000_000,
        records: vec![
            Record {
                time_offset_ms: 0,
                body: RecordBody::Unknown(Unknown {
                    kind: 42,
                    body: std::borrow::Cow::Owned(vec![7; 1000]),
                }),
            },
            Record {
                time_offset_ms: 0,
                body: RecordBody::Unknown(Unknown {
                    kind: 42,
                    body: std::borrow::Cow::Owned(vec![7; 450 * 1024]),
                }),
            },
        ],
    };
    let mut bytes = bytes::BytesMut::new();
    batch.encode(Compression::None, &Limits::DEFAULT, &mut bytes).unwrap();
    c.send(&bytes).await;
    match c.next().await {
        Some(Frame::Ack(a)) => {
            assert_eq!((a.seq, a.status), (9, AckStatus::Rejected));
            assert_eq!(
                a.message,
                "record 1: body makes an item over DynamoDB's 400 KB item limit"
            );
        }
        other => panic!("expected ACK REJECTED, got {other:?}"),
    }
    t.server.shutdown().await;
}

#[tokio::test]
async fn a_sink_failing_every_write_degrades_its_tenant_and_not_the_nodes_readiness() {
    let t = TestServer::start(|c| {
        c.pipeline.write_timeout = std::time::Duration::from_millis(300);
        c.pipeline.unhealthy_after = std::time::Duration::from_millis(500);
    })
    .await;
    let admin = t.server.admin_addr.unwrap();
    // Hold the database's write lock: every write fails.
    let db = rusqlite::Connection::open(t.dir.path().join("acme.sqlite3")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let mut c = t.welcomed().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let tenants = loop {
        c.send(&vector("batch_one_location")).await;
        assert!(matches!(c.next().await, Some(Frame::Ack(a)) if a.status == AckStatus::Retry));
        let tenants = support::http_get(admin, "/health/tenants").await;
        if tenants.contains("\"degraded\":[\"acme\"]") || std::time::Instant::now() > deadline {
            break tenants;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(tenants.contains("its store has failed"), "{tenants}");
    // The node still takes agents (every node shares acme's store): ready,
    // naming the tenant.
    let readyz = support::http_get(admin, "/readyz").await;
    assert!(readyz.starts_with("HTTP/1.1 200"), "{readyz}");
    assert!(
        readyz.contains("degraded: tenant acme: its store has failed"),
        "{readyz}"
    );
    let metrics = support::http_get(admin, "/metrics").await;
    assert!(metrics.contains("awp_tenant_degraded{tenant=\"acme\"} 1"), "{metrics}");
    // The store is free again: the next write succeeds and the gateway is ready.
    db.execute_batch("ROLLBACK").unwrap();
    drop(db);
    let mut stored = false;
    for _ in 0..100 {
        c.send(&vector("batch_one_location")).await;
        if matches!(c.next().await, Some(Frame::Ack(a)) if a.status == AckStatus::Ok) {
            stored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stored);
    let tenants = support::http_get(admin, "/health/tenants").await;
    assert!(tenants.contains("\"degraded\":[]"), "{tenants}");
    t.server.shutdown().await;
}

/// A PROXY protocol v2 header saying the agent is `source`.
fn proxy_header(source: &str) -> Vec<u8> {
    use ppp::v2::{Builder, Command, Protocol, Version};
    let source: std::net::SocketAddr = source.parse().unwrap();
    let destination: std::net::SocketAddr = "10.0.0.1:7700".parse().unwrap();
    Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, (source, destination))
        .build()
        .unwrap()
}

#[tokio::test]
async fn behind_a_proxy_the_agents_address_comes_from_the_header() {
    let t = TestServer::start(|c| {
        c.server.proxy_protocol = true;
        c.server.proxy_protocol_trusted = vec!["127.0.0.0/8".parse().unwrap()];
        c.server.max_unauthenticated_per_source = 1;
    })
    .await;
    // Every connection comes from 127.0.0.1; the header says who it is.
    let mut first = t.connect().await;
    first.send(&proxy_header("198.51.100.1:40001")).await;
    let mut other = t.connect().await;
    other.send(&proxy_header("198.51.100.2:40002")).await;
    // Past the grace in which a waiting connection is never evicted.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The same agent address again: the per-source limit (1) takes the
    // first one's place, not the other address's.
    let mut again = t.connect().await;
    again.send(&proxy_header("198.51.100.1:40003")).await;
    let message = first.expect_error(ErrorCode::ServerBusy).await;
    assert!(message.contains("waiting to authenticate"), "{message}");
    // An agent behind the proxy is served as usual.
    let mut agent = t.connect().await;
    agent.send(&proxy_header("198.51.100.3:40004")).await;
    agent.send_hello_as("acme", "acme-secret-1", "d1").await;
    assert!(matches!(agent.next().await, Some(Frame::Welcome(_))));
    // A connection without the header is not the balancer: closed unanswered.
    let mut direct = t.connect().await;
    direct.send_hello_as("acme", "acme-secret-1", "d2").await;
    assert!(direct.next().await.is_none());
    drop((other, again));
    t.server.shutdown().await;
}

#[tokio::test]
async fn a_second_gateway_can_listen_on_the_same_port_for_an_upgrade() {
    let old = TestServer::start(|c| c.server.reuse_port = true).await;
    let addr = old.addr();
    let new = TestServer::start(|c| {
        c.server.listen = vec![addr];
        c.server.reuse_port = true;
    })
    .await;
    assert_eq!(new.addr(), addr);
    // The old one drains; new connections reach the new one.
    assert!(old.server.shutdown().await);
    let mut c = new.welcomed().await;
    c.send(&vector("ping")).await;
    assert!(matches!(c.next().await, Some(Frame::Pong(_))));
    new.server.shutdown().await;
}

#[tokio::test]
async fn a_connection_past_its_maximum_age_is_told_to_go_away() {
    let t = TestServer::start(|c| c.server.max_connection_age = Some(std::time::Duration::from_millis(300))).await;
    let started = std::time::Instant::now();
    let mut c = t.welcomed().await;
    match c.next().await {
        Some(Frame::GoAway(g)) => assert!(g.reason.contains("maximum age"), "{}", g.reason),
        other => panic!("expected GOAWAY, got {other:?}"),
    }
    let age = started.elapsed();
    assert!(
        age >= Duration::from_millis(270) && age < Duration::from_secs(2),
        "{age:?}"
    );
    assert!(c.next().await.is_none());
    t.server.shutdown().await;
}
