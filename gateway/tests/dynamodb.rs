//! The DynamoDB sink against a real local DynamoDB (dynalite), through real
//! sockets: items land exactly as AWP1.md §7 says, resends are stored once,
//! tenants are isolated, and with a proxy injecting throttling, 500s,
//! UnprocessedItems and an outage, nothing acknowledged is lost.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use awp_gateway::config::{Config, SinkKind, TenantConfig};
use awp_protocol::{
    AckStatus, Batch, Compression, CompressionSet, Frame, Hello, HelloAuth, Limits, Location, MAGIC, Platform, Record,
    RecordBody,
};
use awp_testkit::dynalite::{Dynalite, Fault, FaultProxy};
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;
use support::{Client, TestServer, vector};

const SECRET: &str = "tenant-secret-for-tests";

/// Points the test config at DynamoDB: tenant acme (the vectors' secret) and
/// any extra tenants, each with its own table.
fn use_dynamo(c: &mut Config, endpoint: &str, extra_tenants: &[&str]) {
    c.sink.kind = SinkKind::Dynamodb;
    c.tenants[0].dynamodb = Some(support::local_dynamo("awp-acme", endpoint));
    for t in extra_tenants {
        c.tenants.push(TenantConfig {
            id: (*t).into(),
            secrets: vec![SECRET.into()],
            client_ca: None,
            crl: None,
            require_tls: false,
            retention_days: None,
            sink: None,
            dynamodb: Some(support::local_dynamo(&format!("awp-{t}"), endpoint)),
            max_connections: None,
            records_per_second: None,
            bytes_per_second: None,
            device_records_per_second: None,
            layout: Default::default(),
        });
    }
}

async fn create_tables(endpoint: &str, tenants: &[&str]) -> aws_sdk_dynamodb::Client {
    let client = awp_gateway::sink::dynamodb::client(&support::local_dynamo("unused", endpoint)).await;
    for t in tenants {
        assert!(
            awp_gateway::sink::dynamodb::tables::create_table(&client, &format!("awp-{t}"))
                .await
                .unwrap()
        );
    }
    client
}

/// Every item of a device, in key order, as DynamoDB JSON.
async fn query(client: &aws_sdk_dynamodb::Client, table: &str, device: &str) -> Vec<Value> {
    let items: Vec<HashMap<String, AttributeValue>> = client
        .query()
        .table_name(table)
        .key_condition_expression("device = :d")
        .expression_attribute_values(":d", AttributeValue::S(device.into()))
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    items.iter().map(awp_store::dynamodb::attributes_to_json).collect()
}

/// Items read back, made comparable with the vectors' (which have no
/// `received_at`; DynamoDB keeps numbers, not their spelling).
fn comparable(items: Vec<Value>) -> Vec<Value> {
    items
        .into_iter()
        .map(|i| {
            assert!(i["received_at"]["N"].is_string());
            awp_store::compare::comparable(i)
        })
        .collect()
}

#[tokio::test]
async fn vector_batches_become_exactly_their_items_once() {
    let db = Dynalite::start();
    let client = create_tables(&db.endpoint, &["acme"]).await;
    let endpoint = db.endpoint.clone();
    let t = TestServer::start(move |c| use_dynamo(c, &endpoint, &[])).await;
    let names = [
        "batch_one_location",
        "batch_mixed_kinds",
        "batch_mixed_lz4",
        "batch_mixed_zstd",
    ];
    // Sent twice over, the second time after dropping a connection mid-batch.
    for round in 0..2 {
        let mut c = t.welcomed().await;
        for n in names {
            c.send(&vector(n)).await;
            assert!(
                matches!(c.next().await, Some(Frame::Ack(a)) if a.status == AckStatus::Ok),
                "round {round} {n}"
            );
        }
        let mut dropped = t.welcomed().await;
        dropped.send(&vector("batch_one_location")).await;
        drop(dropped);
    }
    let expected: Vec<Value> = support::expected_vector_items()
        .into_iter()
        .map(awp_store::compare::comparable)
        .collect();
    assert_eq!(comparable(query(&client, "awp-acme", "dev-0001").await), expected);
    t.server.shutdown().await;
}

async fn agent(addr: std::net::SocketAddr, tenant: &str, secret: &str, device: &str) -> Client<tokio::net::TcpStream> {
    let mut c = Client::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    let hello = Hello {
        min_version: 1,
        max_version: 1,
        tenant_id: tenant.into(),
        device_id: device.into(),
        platform: Platform::Linux,
        agent_version: "sim".into(),
        compression: CompressionSet::ALL,
        auth: HelloAuth::Token {
            expiry: 0,
            token: awp_protocol::token::device_token(secret.as_bytes(), tenant, device, 0),
        },
    };
    c.send(&MAGIC).await;
    c.send_frame(&Frame::Hello(hello)).await;
    assert!(
        matches!(c.next().await, Some(Frame::Welcome(_))),
        "{tenant}/{device} welcomed"
    );
    c
}

fn batch(seq: u64, records: usize) -> Vec<u8> {
    let b = Batch {
        seq,
        base_time_ms: 1_764_000_000_000 + seq * 10_000,
        records: (0..records)
            .map(|i| Record {
                time_offset_ms: i as i64,
                body: RecordBody::Location(Location {
                    lat_e7: 525_200_066,
                    lon_e7: i as i32,
                    accuracy_m: 5,
                }),
            })
            .collect(),
    };
    let mut out = bytes::BytesMut::new();
    let codec = [Compression::None, Compression::Lz4, Compression::Zstd][seq as usize % 3];
    b.encode(codec, &Limits::DEFAULT, &mut out).unwrap();
    out.to_vec()
}

/// An agent's duty: send each batch until it is acked OK, resending the same
/// seq and content after RETRY, a dropped connection or GOAWAY. Returns the
/// acked seqs.
async fn run_agent(
    addr: std::net::SocketAddr,
    tenant: String,
    secret: &'static str,
    device: String,
    batches: u64,
    records: usize,
) -> BTreeSet<u64> {
    let mut acked = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut seq = 1;
    let mut c = agent(addr, &tenant, secret, &device).await;
    while seq <= batches {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{device}: not all acked within 90 s"
        );
        c.send(&batch(seq, records)).await;
        match c.next().await {
            Some(Frame::Ack(a)) if a.status == AckStatus::Ok => {
                assert_eq!(a.seq, seq);
                acked.insert(seq);
                seq += 1;
            }
            Some(Frame::Ack(a)) if a.status == AckStatus::Retry => {
                tokio::time::sleep(Duration::from_millis(a.retry_after_ms)).await;
            }
            other => panic!("{device}: unexpected answer {other:?}"),
        }
    }
    c.send(&vector("bye")).await;
    acked
}

async fn assert_stored_once(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    device: &str,
    batches: u64,
    records: usize,
) {
    let items = query(client, table, device).await;
    let keys: Vec<String> = items
        .iter()
        .map(|i| i["rk"]["S"].as_str().unwrap().to_owned())
        .collect();
    let mut expected = Vec::new();
    for seq in 1..=batches {
        for i in 0..records {
            let time = 1_764_000_000_000 + seq * 10_000 + i as u64;
            expected.push(format!("{time:013}#{seq:020}#{i:05}"));
        }
    }
    expected.sort();
    assert_eq!(
        keys, expected,
        "{table}/{device}: every acked record once, nothing else"
    );
}

#[tokio::test]
async fn many_agents_of_many_tenants_at_once() {
    let db = Dynalite::start();
    let tenants = ["t1", "t2", "t3"];
    let client = create_tables(&db.endpoint, &tenants).await;
    let endpoint = db.endpoint.clone();
    let t = TestServer::start(move |c| use_dynamo(c, &endpoint, &tenants)).await;
    let mut agents = Vec::new();
    for tenant in tenants {
        for d in 0..8 {
            agents.push(tokio::spawn(run_agent(
                t.addr(),
                tenant.into(),
                SECRET,
                format!("dev-{d}"),
                10,
                40,
            )));
        }
    }
    for a in agents {
        assert_eq!(a.await.unwrap().len(), 10);
    }
    for tenant in tenants {
        for d in 0..8 {
            assert_stored_once(&client, &format!("awp-{tenant}"), &format!("dev-{d}"), 10, 40).await;
        }
    }
    t.server.shutdown().await;
}

#[tokio::test]
async fn faults_lose_nothing_that_was_acknowledged() {
    let db = Dynalite::start();
    let tenants = ["f1", "f2"];
    let client = create_tables(&db.endpoint, &tenants).await;
    let proxy = FaultProxy::start(&db.endpoint).await;
    let endpoint = proxy.endpoint.clone();
    let t = TestServer::start(move |c| {
        use_dynamo(c, &endpoint, &tenants);
        c.server.retry_after = std::time::Duration::from_millis(50);
        c.pipeline.write_timeout = std::time::Duration::from_millis(2_000);
    })
    .await;
    proxy.set(Fault::Random(0.2, 0.15, 0.25));
    let mut agents = Vec::new();
    for tenant in tenants {
        for d in 0..6 {
            agents.push(tokio::spawn(run_agent(
                t.addr(),
                tenant.into(),
                SECRET,
                format!("dev-{d}"),
                12,
                60,
            )));
        }
    }
    // An outage in the middle of the run.
    tokio::time::sleep(Duration::from_millis(700)).await;
    proxy.set(Fault::Down);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    proxy.set(Fault::Random(0.2, 0.15, 0.25));
    for a in agents {
        assert_eq!(a.await.unwrap().len(), 12);
    }
    use std::sync::atomic::Ordering::Relaxed;
    let s = &proxy.stats;
    let (thr, err, unp, drop) = (
        s.throttled.load(Relaxed),
        s.errors.load(Relaxed),
        s.unprocessed.load(Relaxed),
        s.dropped.load(Relaxed),
    );
    assert!(thr > 0 && err > 0 && unp > 0 && drop > 0, "every fault happened: {s:?}");
    proxy.set(Fault::None);
    for tenant in tenants {
        for d in 0..6 {
            assert_stored_once(&client, &format!("awp-{tenant}"), &format!("dev-{d}"), 12, 60).await;
        }
    }
    t.server.shutdown().await;
}

#[tokio::test]
async fn a_missing_table_answers_retry_and_stalls_no_other_tenant() {
    let db = Dynalite::start();
    // Table for acme only; "ghost" points at a table that does not exist.
    let client = create_tables(&db.endpoint, &["acme"]).await;
    let endpoint = db.endpoint.clone();
    let t = TestServer::start(move |c| use_dynamo(c, &endpoint, &["ghost"])).await;
    let mut ghost = agent(t.addr(), "ghost", SECRET, "g-1").await;
    ghost.send(&batch(1, 5)).await;
    let mut acme = t.welcomed().await;
    acme.send(&vector("batch_one_location")).await;
    assert!(matches!(acme.next().await, Some(Frame::Ack(a)) if a.status == AckStatus::Ok));
    match ghost.next().await {
        Some(Frame::Ack(a)) => {
            assert_eq!(a.status, AckStatus::Retry, "never acked, never dropped: {}", a.message);
        }
        other => panic!("expected ACK RETRY, got {other:?}"),
    }
    assert_eq!(query(&client, "awp-acme", "dev-0001").await.len(), 1);
    t.server.shutdown().await;
}

#[tokio::test]
async fn tables_create_is_idempotent_and_describe_reports_them() {
    let db = Dynalite::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::config(dir.path());
    use_dynamo(&mut config, &db.endpoint, &["other"]);
    awp_gateway::sink::dynamodb::tables::create(&config, None)
        .await
        .unwrap();
    awp_gateway::sink::dynamodb::tables::create(&config, None)
        .await
        .unwrap();
    awp_gateway::sink::dynamodb::tables::describe(&config, Some("acme"))
        .await
        .unwrap();
    let client = awp_gateway::sink::dynamodb::client(&support::local_dynamo("x", &db.endpoint)).await;
    let out = client.describe_table().table_name("awp-other").send().await.unwrap();
    let table = out.table.unwrap();
    let keys: Vec<_> = table
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name().to_owned(), k.key_type().as_str().to_owned()))
        .collect();
    assert_eq!(
        keys,
        [
            ("device".to_owned(), "HASH".to_owned()),
            ("rk".to_owned(), "RANGE".to_owned())
        ]
    );
    assert!(
        awp_gateway::sink::dynamodb::tables::describe(&config, Some("nobody"))
            .await
            .is_err()
    );
}

/// A write ends only when every request is written: with no request
/// allowed in flight (a limit of 0 from the sink's own settings) the writer
/// used to return Ok after the first requests and drop the rest, while
/// their batches got ACK OK. The limit is now at least 1, and configuration
/// refuses 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_stores_every_item_even_with_a_concurrency_of_zero() {
    use std::sync::Arc;

    use awp_gateway::sink::TenantSink;
    use awp_gateway::sink::dynamodb::DynamoSink;
    use awp_protocol::{Limits, Platform, PreparedBatch};
    use awp_store::{AcceptedBatch, Origin};

    let db = Dynalite::start();
    let client = create_tables(&db.endpoint, &["acme"]).await;
    let mut config = support::local_dynamo("awp-acme", &db.endpoint);
    config.max_concurrency = 0;
    let mut sink = DynamoSink::connect("acme", &config, Duration::from_secs(60), Default::default()).await;
    let origin = Arc::new(Origin {
        device_id: "dev-0001".into(),
        platform: Platform::Android,
        agent_version: String::new(),
    });
    let batches: Vec<AcceptedBatch> = (1..=6)
        .map(|seq| {
            let content =
                PreparedBatch::new(&awp_protocol::sample::typical_batch(seq, 100, seq), &Limits::DEFAULT).unwrap();
            AcceptedBatch::accept(
                origin.clone(),
                seq,
                1,
                None,
                content.content().clone(),
                &Limits::DEFAULT,
            )
            .unwrap()
        })
        .collect();
    sink.write(batches).await.unwrap();
    assert_eq!(query(&client, "awp-acme", "dev-0001").await.len(), 600);
}

/// A BATCH with one EVENT the store refuses (the proxy refuses any write
/// that carries its name, as DynamoDB refuses a value it will not store).
fn poisoned_batch(seq: u64) -> Vec<u8> {
    let b = Batch {
        seq,
        base_time_ms: 1_764_000_000_000 + seq * 10_000,
        records: vec![Record {
            time_offset_ms: 0,
            body: RecordBody::Event(awp_protocol::Event {
                name: "poison-pill".into(),
                attrs: Vec::new(),
            }),
        }],
    };
    let mut buf = bytes::BytesMut::new();
    b.encode(
        awp_protocol::Compression::None,
        &awp_protocol::Limits::DEFAULT,
        &mut buf,
    )
    .unwrap();
    buf.to_vec()
}

/// Three batches' ACKs, by seq.
async fn three_acks(c: &mut Client<tokio::net::TcpStream>) -> BTreeMap<u64, (AckStatus, String)> {
    let mut acks = BTreeMap::new();
    while acks.len() < 3 {
        match c.next().await {
            Some(Frame::Ack(a)) => {
                acks.insert(a.seq, (a.status, a.message));
            }
            other => panic!("expected ACK, got {other:?}"),
        }
    }
    acks
}

/// One batch the store refuses between two it takes, sharing a write
/// (`linger_ms`) or each alone (none): the refused one is REJECTED, the
/// others stored; nothing of the refused one stays.
async fn a_batch_the_store_refuses_is_rejected_and_the_rest_is_stored(linger_ms: u64) {
    let db = Dynalite::start();
    let client = create_tables(&db.endpoint, &["acme"]).await;
    let proxy = FaultProxy::start(&db.endpoint).await;
    let endpoint = proxy.endpoint.clone();
    let t = TestServer::start(move |c| {
        use_dynamo(c, &endpoint, &[]);
        c.pipeline.linger = std::time::Duration::from_millis(linger_ms);
    })
    .await;
    proxy.set(Fault::Refuse("poison-pill"));
    let mut c = agent(t.addr(), "acme", "acme-secret-1", "dev-7").await;
    for frame in [batch(1, 10), poisoned_batch(2), batch(3, 10)] {
        c.send(&frame).await;
    }
    let acks = three_acks(&mut c).await;
    assert_eq!(acks[&1].0, AckStatus::Ok, "{acks:?}");
    assert_eq!(acks[&3].0, AckStatus::Ok, "{acks:?}");
    let (status, message) = &acks[&2];
    assert_eq!(*status, AckStatus::Rejected, "{acks:?}");
    assert!(
        message.contains("refused") && message.contains("injected refusal"),
        "{message}"
    );
    // The good batches are stored, nothing of the refused one.
    let items = query(&client, "awp-acme", "dev-7").await;
    let seqs: BTreeSet<String> = items
        .iter()
        .map(|i| i["seq"]["N"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(items.len(), 20);
    assert_eq!(seqs, BTreeSet::from(["1".to_owned(), "3".to_owned()]));
    t.server.shutdown().await;
}

#[tokio::test]
async fn a_batch_the_store_refuses_is_rejected_and_the_rest_of_its_write_is_stored() {
    a_batch_the_store_refuses_is_rejected_and_the_rest_is_stored(300).await;
}

#[tokio::test]
async fn a_batch_the_store_refuses_alone_is_rejected_too() {
    a_batch_the_store_refuses_is_rejected_and_the_rest_is_stored(0).await;
}

/// A reload that gives a tenant another table starts a new writer for it:
/// the tenant's connected agent goes on, and its next batches land in the
/// new table.
#[tokio::test]
async fn a_reload_moves_a_tenant_to_its_new_table_without_dropping_its_agents() {
    let db = Dynalite::start();
    let client = create_tables(&db.endpoint, &["acme", "acme-moved"]).await;
    let endpoint = db.endpoint.clone();
    let t = TestServer::start(|c| use_dynamo(c, &endpoint, &[])).await;
    let mut next = support::config(t.dir.path());
    use_dynamo(&mut next, &db.endpoint, &[]);
    next.tenants[0].dynamodb = Some(support::local_dynamo("awp-acme-moved", &db.endpoint));
    t.server
        .set_config_source(std::sync::Arc::new(move || Ok(next.clone())));

    let mut c = agent(t.addr(), "acme", "acme-secret-1", "phone-1").await;
    c.send(&batch(1, 3)).await;
    assert!(matches!(c.next().await, Some(Frame::Ack(a)) if a.status == AckStatus::Ok));
    let report = t.server.reload().await.unwrap();
    assert_eq!(report.store_changed, ["acme"]);
    c.send(&batch(2, 3)).await;
    assert!(matches!(c.next().await, Some(Frame::Ack(a)) if a.seq == 2 && a.status == AckStatus::Ok));
    let seqs = |items: Vec<Value>| -> BTreeSet<String> {
        items
            .iter()
            .map(|i| i["seq"]["N"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        seqs(query(&client, "awp-acme", "phone-1").await),
        BTreeSet::from(["1".to_owned()])
    );
    assert_eq!(
        seqs(query(&client, "awp-acme-moved", "phone-1").await),
        BTreeSet::from(["2".to_owned()])
    );
    t.server.shutdown().await;
}

/// A packed tenant: one item per batch, however often and however
/// compressed it is sent, whose records read back as the record layout's
/// items in plain JSON.
#[tokio::test]
async fn a_packed_tenant_stores_each_batch_as_one_item() {
    let db = Dynalite::start();
    let client = create_tables(&db.endpoint, &["acme"]).await;
    let endpoint = db.endpoint.clone();
    let t = TestServer::start(move |c| {
        use_dynamo(c, &endpoint, &[]);
        c.tenants[0].layout = awp_gateway::config::Layout::Packed;
    })
    .await;
    for _round in 0..2 {
        let mut c = t.welcomed().await;
        for n in [
            "batch_one_location",
            "batch_mixed_kinds",
            "batch_mixed_lz4",
            "batch_mixed_zstd",
        ] {
            c.send(&vector(n)).await;
            assert!(
                matches!(c.next().await, Some(Frame::Ack(a)) if a.status == AckStatus::Ok),
                "{n}"
            );
        }
    }
    let items = query(&client, "awp-acme", "dev-0001").await;
    // Two batches (the mixed vectors are one batch, compressed three ways).
    assert_eq!(items.len(), 2, "{items:?}");
    let mut records: Vec<Value> = Vec::new();
    for item in &items {
        use base64::Engine;
        let blob = base64::engine::general_purpose::STANDARD
            .decode(item["records"]["B"].as_str().unwrap())
            .unwrap();
        let lines = awp_store::packed::unpack(&blob).unwrap();
        assert_eq!(item["count"]["N"], lines.lines().count().to_string());
        for line in lines.lines() {
            let mut v: Value = serde_json::from_str(line).unwrap();
            v.as_object_mut().unwrap().remove("received_at");
            records.push(v);
        }
    }
    let expected: Vec<Value> = support::expected_vector_items()
        .iter()
        .map(awp_store::plain::value_to_plain)
        .collect();
    records.sort_by_key(|r| r["rk"].as_str().unwrap().to_owned());
    assert_eq!(records, expected);
    t.server.shutdown().await;
}

/// `gateway export` from DynamoDB: the same batches (typical 100-record
/// ones from several devices) stored in each layout export the same lines,
/// whole and by device and time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_from_dynamodb_gives_the_same_lines_from_either_layout() {
    use std::sync::Arc;

    use awp_gateway::cmd::export::{Selection, export};
    use awp_gateway::config::Layout;
    use awp_gateway::sink::TenantSink;
    use awp_gateway::sink::dynamodb::DynamoSink;
    use awp_protocol::{Limits, Platform, PreparedBatch};
    use awp_store::{AcceptedBatch, Origin};

    let db = Dynalite::start();
    create_tables(&db.endpoint, &["record", "packed"]).await;
    let batches: Vec<AcceptedBatch> = (1..=12u64)
        .map(|seq| {
            let content =
                PreparedBatch::new(&awp_protocol::sample::typical_batch(seq, 100, seq), &Limits::DEFAULT).unwrap();
            let origin = Arc::new(Origin {
                device_id: format!("dev-{}", seq % 3),
                platform: Platform::Windows,
                agent_version: "9.1".into(),
            });
            AcceptedBatch::accept(
                origin,
                seq,
                1_764_000_009_999,
                Some(1_900_000_000),
                content.content().clone(),
                &Limits::DEFAULT,
            )
            .unwrap()
        })
        .collect();
    let mut exports = Vec::new();
    for (table, layout) in [("record", Layout::Record), ("packed", Layout::Packed)] {
        let dynamo_config = support::local_dynamo(&format!("awp-{table}"), &db.endpoint);
        let mut sink = DynamoSink::connect("acme", &dynamo_config, Duration::from_secs(60), layout).await;
        sink.write(batches.clone()).await.unwrap();
        let mut config = support::config(std::path::Path::new("/nonexistent"));
        config.sink.kind = SinkKind::Dynamodb;
        config.tenants[0].dynamodb = Some(dynamo_config);
        config.tenants[0].layout = layout;
        let mut lines_of = Vec::new();
        for selection in [
            Selection::default(),
            Selection {
                device: Some("dev-1".into()),
                from_ms: Some(1_764_000_040_000),
                to_ms: Some(1_764_000_080_000),
            },
        ] {
            let mut out = Vec::new();
            export(&config, "acme", &selection, &mut out).await.unwrap();
            let mut lines: Vec<String> = String::from_utf8(out).unwrap().lines().map(str::to_owned).collect();
            lines.sort();
            lines_of.push(lines);
        }
        exports.push(lines_of);
    }
    assert_eq!(exports[0][0].len(), 1200, "every record once");
    assert!(
        !exports[0][1].is_empty() && exports[0][1].len() < 1200,
        "{}",
        exports[0][1].len()
    );
    assert_eq!(exports[1], exports[0], "line for line");
}
