//! RETRY and REJECTED from a real gateway on DynamoDB (dynalite behind the
//! fault-injecting proxy): a throttled table makes the gateway answer
//! RETRY, and the client's resends are stored once when it recovers; a
//! record the table refuses gets its batch REJECTED, counted with the
//! reason, never resent, and the records after it are stored.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use awp_client::{Auth, Client, QueuePlace, Record};
use awp_gateway::config::Config;
use awp_testkit::dynalite::{Dynalite, Fault, FaultProxy};
use aws_sdk_dynamodb::types::AttributeValue;
use support::*;

async fn dynamo_gateway(endpoint: &str) -> awp_gateway::RunningServer {
    let config = Config::parse(&format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin_listen = \"127.0.0.1:0\"\n\
         [pipeline]\nwrite_timeout_ms = 1000\n[sink]\nkind = \"dynamodb\"\n\
         [[tenants]]\nid = \"{TENANT}\"\nsecrets = [\"{SECRET}\"]\n\
         [tenants.dynamodb]\ntable = \"awp-{TENANT}\"\nregion = \"us-east-1\"\nendpoint = \"{endpoint}\"\n\
         access_key_id = \"local\"\nsecret_access_key = \"local\"\n"
    ))
    .unwrap();
    awp_gateway::start(&config).await.unwrap()
}

async fn items(db: &aws_sdk_dynamodb::Client, device: &str) -> Vec<HashMap<String, AttributeValue>> {
    db.query()
        .table_name(format!("awp-{TENANT}"))
        .key_condition_expression("device = :d")
        .expression_attribute_values(":d", AttributeValue::S(device.into()))
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap()
}

fn numbers(items: &[HashMap<String, AttributeValue>]) -> Vec<u64> {
    let mut n: Vec<u64> = items
        .iter()
        .filter_map(|i| i.get("accuracy_m")?.as_n().ok()?.parse().ok())
        .collect();
    n.sort_unstable();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_from_a_throttled_table_then_rejected_from_a_refusing_one() {
    let dynalite = Dynalite::start();
    let dynamo_config = awp_gateway::config::DynamoConfig {
        table: "unused".into(),
        region: "us-east-1".into(),
        endpoint: Some(dynalite.endpoint.clone()),
        profile: None,
        role_arn: None,
        external_id: None,
        access_key_id: Some("local".into()),
        secret_access_key: Some("local".into()),
        max_concurrency: 4,
    };
    let db = awp_gateway::sink::dynamodb::client(&dynamo_config).await;
    assert!(
        awp_gateway::sink::dynamodb::tables::create_table(&db, &format!("awp-{TENANT}"))
            .await
            .unwrap()
    );
    let proxy = FaultProxy::start(&dynalite.endpoint).await;
    let gateway = dynamo_gateway(&proxy.endpoint).await;
    let addr = gateway.plain_addrs[0];

    // Throttled: RETRY, resent, stored once when the table recovers.
    proxy.set(Fault::Throttle);
    let mut c = config(addr, "faults", Auth::Token(token("faults")), QueuePlace::Memory);
    // Batches sealed by count or flush only: the batch counts below hold
    // however slow the machine.
    c.batch_delay = Duration::from_secs(30);
    let client = std::sync::Arc::new(Client::open(c).unwrap());
    for i in 0..50 {
        client.push(&location(i)).unwrap();
    }
    let flusher = {
        let client = client.clone();
        tokio::task::spawn_blocking(move || client.flush(Duration::from_secs(60)))
    };
    let waited = Instant::now();
    while client.stats().retries == 0 {
        assert!(waited.elapsed() < Duration::from_secs(30), "no RETRY came");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(client.stats().records_acked, 0);
    proxy.set(Fault::None);
    flusher.await.unwrap().expect("flush after the table recovered");
    assert_eq!(numbers(&items(&db, "faults").await), (0..50).collect::<Vec<u64>>());

    // Refused content: that batch is REJECTED, counted, never resent.
    proxy.set(Fault::Refuse("poison-pill"));
    let poison = Record::app_usage(1_700_000_000_000, "poison-pill", "", 1).unwrap();
    let sent_before = client.stats().batches_sent;
    {
        let client = client.clone();
        tokio::task::spawn_blocking(move || {
            client.push(&poison).unwrap();
            client.flush(Duration::from_secs(30)).unwrap();
            for i in 50..60 {
                client.push(&location(i)).unwrap();
            }
            client.flush(Duration::from_secs(30)).unwrap();
        })
        .await
        .unwrap();
    }
    let stats = client.stats();
    assert_eq!(stats.records_rejected, 1);
    assert!(
        stats.last_rejection.as_deref().unwrap_or("").contains("refused"),
        "{:?}",
        stats.last_rejection
    );
    assert_eq!(stats.records_acked, 60);
    assert_eq!(stats.batches_sent, sent_before + 2, "the rejected batch was not resent");
    let stored = items(&db, "faults").await;
    assert_eq!(stored.len(), 60);
    assert_eq!(numbers(&stored), (0..60).collect::<Vec<u64>>());
    std::sync::Arc::into_inner(client).unwrap().close();
    assert!(gateway.shutdown().await);
}
