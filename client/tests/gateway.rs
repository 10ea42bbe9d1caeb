//! The client against a real gateway (in process, SQLite sink, real
//! sockets): what is pushed is stored once, across a reopen; AUTH_FAILED
//! stops the client; a token source is asked for tokens.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use awp_client::{Auth, Client, ClientError, QueuePlace, Token};

mod support;

use support::{SECRET, TENANT, config, gateway, location, stored, token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_pushed_is_stored_once_across_a_reopen() {
    let data = tempfile::tempdir().unwrap();
    let queue = tempfile::tempdir().unwrap();
    let server = gateway(data.path()).await;
    let addr = server.plain_addrs[0];
    let place = QueuePlace::Disk(queue.path().to_owned());
    let c = config(addr, "phone-1", Auth::Token(token("phone-1")), place.clone());
    tokio::task::spawn_blocking(move || {
        let client = Client::open(c.clone()).unwrap();
        for i in 0..1000 {
            client.push(&location(i)).unwrap();
        }
        client.flush(Duration::from_secs(30)).unwrap();
        let stats = client.stats();
        assert_eq!(stats.records_pushed, 1000);
        assert_eq!(stats.records_acked, 1000);
        assert_eq!(stats.records_rejected, 0);
        assert!(stats.connects >= 1);
        client.close();
        // Reopened: nothing left to send; more records go on from there.
        let client = Client::open(c).unwrap();
        assert_eq!(client.stats().queue.pending_batches, 0);
        for i in 1000..1010 {
            client.push(&location(i)).unwrap();
        }
        client
            .push_json(
                r#"{"kind": 1, "time_ms": 1700000001010, "location": {"lat_e7": 1, "lon_e7": 2, "accuracy_m": 1010}}"#,
            )
            .unwrap();
        client.flush(Duration::from_secs(30)).unwrap();
        client.close();
    })
    .await
    .unwrap();
    assert_eq!(stored(data.path(), "phone-1"), (0..1011).collect::<Vec<_>>());
    assert!(server.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_failed_stops_the_client_and_tells_the_app() {
    let data = tempfile::tempdir().unwrap();
    let server = gateway(data.path()).await;
    let wrong = Token {
        token: [9; 32],
        expiry: 0,
    };
    let c = config(server.plain_addrs[0], "phone-2", Auth::Token(wrong), QueuePlace::Memory);
    tokio::task::spawn_blocking(move || {
        let client = Client::open(c).unwrap();
        client.push(&location(1)).unwrap();
        let e = client.flush(Duration::from_secs(10)).unwrap_err();
        assert!(
            matches!(&e, ClientError::Stopped(why) if why.contains("AUTH_FAILED")),
            "{e}"
        );
        assert!(client.stats().stopped.is_some());
        assert!(matches!(client.push(&location(2)), Err(ClientError::Stopped(_))));
        // Stopped means one connection: retrying would only burn battery.
        assert_eq!(client.stats().connection_failures, 1);
        client.close();
    })
    .await
    .unwrap();
    assert!(server.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_source_is_asked_before_hello_and_again_near_expiry() {
    let data = tempfile::tempdir().unwrap();
    let server = gateway(data.path()).await;
    let asked = Arc::new(AtomicU64::new(0));
    let source = {
        let asked = asked.clone();
        Arc::new(move || {
            asked.fetch_add(1, Ordering::SeqCst);
            // Expires within the refresh margin: asked again at each HELLO.
            let expiry = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + 60;
            Ok(Token {
                token: awp_protocol::token::device_token(SECRET.as_bytes(), TENANT, "phone-3", expiry),
                expiry,
            })
        })
    };
    let c = config(
        server.plain_addrs[0],
        "phone-3",
        Auth::Source(source),
        QueuePlace::Memory,
    );
    tokio::task::spawn_blocking(move || {
        let client = Client::open(c).unwrap();
        client.push(&location(1)).unwrap();
        client.flush(Duration::from_secs(10)).unwrap();
        assert_eq!(client.stats().records_acked, 1);
        client.close();
    })
    .await
    .unwrap();
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    assert_eq!(stored(data.path(), "phone-3"), [1]);
    assert!(server.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_and_the_next_push_opens_one() {
    let data = tempfile::tempdir().unwrap();
    let server = gateway(data.path()).await;
    let mut c = config(
        server.plain_addrs[0],
        "phone-4",
        Auth::Token(token("phone-4")),
        QueuePlace::Memory,
    );
    c.idle_close = Duration::from_millis(200);
    tokio::task::spawn_blocking(move || {
        let client = Client::open(c).unwrap();
        client.push(&location(1)).unwrap();
        client.flush(Duration::from_secs(10)).unwrap();
        assert!(client.stats().connected);
        std::thread::sleep(Duration::from_millis(600));
        let stats = client.stats();
        assert!(!stats.connected, "closed when idle: {stats:?}");
        assert_eq!(stats.connection_failures, 0, "a BYE, not a failure");
        client.push(&location(2)).unwrap();
        client.flush(Duration::from_secs(10)).unwrap();
        assert_eq!(client.stats().connects, 2);
        client.close();
    })
    .await
    .unwrap();
    assert_eq!(stored(data.path(), "phone-4"), [1, 2]);
    assert!(server.shutdown().await);
}

/// The gateway drains (GOAWAY) under load and another takes its place:
/// every batch unanswered is kept and sent again, and stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_draining_under_load_loses_nothing_and_doubles_nothing() {
    let data = tempfile::tempdir().unwrap();
    let queue = tempfile::tempdir().unwrap();
    let first = gateway(data.path()).await;
    let addr = first.plain_addrs[0];
    let c = config(
        addr,
        "phone-5",
        Auth::Token(token("phone-5")),
        QueuePlace::Disk(queue.path().into()),
    );
    let pushing = tokio::task::spawn_blocking(move || {
        let client = Client::open(c).unwrap();
        for i in 0..3000 {
            client.push(&location(i)).unwrap();
            if i % 10 == 9 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        client.flush(Duration::from_secs(60)).unwrap();
        let stats = client.stats();
        client.close();
        stats
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(first.shutdown().await, "drained");
    let second = support::gateway_on(data.path(), &addr.to_string()).await;
    let stats = pushing.await.unwrap();
    assert!(stats.connects >= 2, "{stats:?}");
    assert_eq!(stats.records_acked, 3000);
    assert_eq!(stored(data.path(), "phone-5"), (0..3000).collect::<Vec<_>>());
    assert!(second.shutdown().await);
}
