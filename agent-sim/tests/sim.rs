//! Short runs against an in-process gateway: counts add up, and verify
//! finds every acked record stored once — with churn and a reconnect storm
//! too, and on the null sink the counts alone.

use awp_agent_sim::run;
use awp_agent_sim::scenario::Scenario;
use awp_agent_sim::verify::{DynamoTable, Store, verify};
use awp_gateway::config::{Config, SinkKind};

const SECRET: &str = "sim-tenant-secret";

async fn gateway(dir: &std::path::Path, sink: SinkKind) -> awp_gateway::RunningServer {
    let mut config = Config::parse(&format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin_listen = \"127.0.0.1:0\"\nmax_inflight = 4\n\
         [sink]\ndata_dir = \"{}\"\n[[tenants]]\nid = \"sim\"\nsecrets = [\"{SECRET}\"]\n",
        dir.display()
    ))
    .unwrap();
    config.sink.kind = sink;
    config.sink.allow_null = sink == SinkKind::Null;
    awp_gateway::start(&config).await.unwrap()
}

fn scenario(addr: std::net::SocketAddr) -> Scenario {
    Scenario {
        name: "test".into(),
        gateway: vec![addr],
        tenant: "sim".into(),
        secret: SECRET.into(),
        agents: 20,
        duration_s: 1.5,
        records_per_batch: 20,
        window: 3,
        templates: 4,
        ..Scenario::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_loop_run_on_sqlite_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let server = gateway(dir.path(), SinkKind::Sqlite).await;
    let s = Scenario {
        compression: "lz4".into(),
        ..scenario(server.plain_addrs[0])
    };
    let (report, results) = run::run(s.clone(), false).await.unwrap();
    let acked: u64 = results.iter().map(|r| r.acked.len() as u64).sum();
    assert!(acked > 0);
    assert_eq!(report.acks["ok"], acked);
    assert_eq!(report.records_acked, acked * 20);
    assert_eq!(report.connects, 20);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(results.iter().all(|r| r.unacked.is_empty()));
    assert!(report.ack_latency.count == acked && report.ack_latency.p50_ms > 0.0);
    assert!(!report.timeline.is_empty());
    let v = verify(
        &Store::Sqlite(dir.path().into()),
        "sim",
        &results,
        &run::templates(&s).unwrap(),
        report.mark(),
    )
    .await
    .unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!(v.expected_records, acked * 20);
    assert_eq!(v.found_records, v.expected_records);
    assert!(v.extra.is_empty());
    assert!(server.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_with_churn_and_a_storm_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = gateway(dir.path(), SinkKind::Sqlite).await;
    let s = Scenario {
        batches_per_s: 10.0,
        churn_per_s: 0.3,
        storms_at_s: vec![1.0],
        duration_s: 2.5,
        source_addresses: 3,
        compression: "zstd".into(),
        ..scenario(server.plain_addrs[0])
    };
    let (report, results) = run::run(s.clone(), false).await.unwrap();
    assert_eq!(report.mode, "open-loop");
    // Agents between connections (after churn) at the storm's moment miss it.
    assert!(
        report.errors.get("storm").copied().unwrap_or(0) >= 10,
        "{:?}",
        report.errors
    );
    assert!(report.connects > 20, "agents reconnected");
    // Churn and storms are not failures: every batch the rate offered was acked.
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.batches_unacked_at_end, 0);
    let acked: u64 = results.iter().map(|r| r.acked.len() as u64).sum();
    // About 10 batches/s for 2.5 s per agent.
    assert!(acked >= 20 * 20, "{acked}");
    let v = verify(
        &Store::Sqlite(dir.path().into()),
        "sim",
        &results,
        &run::templates(&s).unwrap(),
        report.mark(),
    )
    .await
    .unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!(v.found_records, acked * 20);
    assert!(server.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_null_sink_counts_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let server = gateway(dir.path(), SinkKind::Null).await;
    let (report, results) = run::run(scenario(server.plain_addrs[0]), false).await.unwrap();
    let acked: u64 = results.iter().map(|r| r.acked.len() as u64).sum();
    assert_eq!(report.acks["ok"], acked);
    assert_eq!(report.batches_sent, acked + report.resends);
    assert!(report.records_acked > 1000);
    assert!(server.shutdown().await);
}

#[tokio::test]
async fn a_wrong_secret_is_reported_as_auth_failed() {
    let dir = tempfile::tempdir().unwrap();
    let server = gateway(dir.path(), SinkKind::Null).await;
    let s = Scenario {
        secret: "not-the-secret".into(),
        agents: 2,
        duration_s: 0.5,
        ..scenario(server.plain_addrs[0])
    };
    let (report, _) = run::run(s, false).await.unwrap();
    assert!(
        report.errors.get("AUTH_FAILED").copied().unwrap_or(0) >= 2,
        "{:?}",
        report.errors
    );
    assert_eq!(report.records_acked, 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_on_dynamodb_verifies_against_the_table_in_the_packed_layout() {
    let db = awp_testkit::dynalite::Dynalite::start();
    let dest = awp_gateway::config::DynamoConfig {
        table: "awp-sim".into(),
        region: "us-east-1".into(),
        endpoint: Some(db.endpoint.clone()),
        profile: None,
        role_arn: None,
        external_id: None,
        access_key_id: Some("local".into()),
        secret_access_key: Some("local".into()),
        max_concurrency: 4,
    };
    let client = awp_gateway::sink::dynamodb::client(&dest).await;
    awp_gateway::sink::dynamodb::tables::create_table(&client, "awp-sim")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The SQLite-default config, pointed at the table.
    let server = {
        let mut config = Config::parse(&format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin_listen = \"127.0.0.1:0\"\n\
             [sink]\ndata_dir = \"{}\"\n[[tenants]]\nid = \"sim\"\nsecrets = [\"{SECRET}\"]\n",
            dir.path().display()
        ))
        .unwrap();
        config.sink.kind = SinkKind::Dynamodb;
        config.tenants[0].dynamodb = Some(dest.clone());
        config.tenants[0].layout = awp_gateway::config::Layout::Packed;
        awp_gateway::start(&config).await.unwrap()
    };
    let s = Scenario {
        agents: 8,
        duration_s: 1.0,
        ..scenario(server.plain_addrs[0])
    };
    let (report, results) = run::run(s.clone(), false).await.unwrap();
    let acked: u64 = results.iter().map(|r| r.acked.len() as u64).sum();
    assert!(acked > 0 && report.acks["ok"] == acked);
    let table = DynamoTable {
        table: dest.table.clone(),
        region: dest.region.clone(),
        endpoint: dest.endpoint.clone(),
    };
    let v = verify(
        &Store::Dynamodb(table),
        "sim",
        &results,
        &run::templates(&s).unwrap(),
        report.mark(),
    )
    .await
    .unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!(v.found_records, acked * 20);
    assert!(server.shutdown().await);
}

/// The packed layout on SQLite: verify reads each packed row's records, and
/// a row lost from the table shows as its batch's records missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packed_run_on_sqlite_verifies_and_a_lost_batch_is_found_missing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::parse(&format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin_listen = \"127.0.0.1:0\"\n\
         [sink]\ndata_dir = \"{}\"\n[[tenants]]\nid = \"sim\"\nsecrets = [\"{SECRET}\"]\nlayout = \"packed\"\n",
        dir.path().display()
    ))
    .unwrap();
    config.server.max_inflight = 4;
    let server = awp_gateway::start(&config).await.unwrap();
    let s = scenario(server.plain_addrs[0]);
    let (report, results) = run::run(s.clone(), false).await.unwrap();
    let acked: u64 = results.iter().map(|r| r.acked.len() as u64).sum();
    assert!(server.shutdown().await);
    let store = Store::Sqlite(dir.path().into());
    let templates = run::templates(&s).unwrap();
    let v = verify(&store, "sim", &results, &templates, report.mark())
        .await
        .unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!(v.found_records, acked * 20);
    // One batch per row: the table has a row per acked batch.
    let db = rusqlite::Connection::open(dir.path().join("sim.sqlite3")).unwrap();
    let rows: u64 = db.query_row("SELECT count(*) FROM items", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, acked);
    db.execute("DELETE FROM items WHERE rowid = (SELECT min(rowid) FROM items)", [])
        .unwrap();
    let v = verify(&store, "sim", &results, &templates, report.mark())
        .await
        .unwrap();
    assert!(!v.ok);
    assert_eq!(v.found_records, (acked - 1) * 20);
}

/// A run stored in the record layout, then the same run replayed after the
/// tenant went packed (the same devices and batches, as agents resending
/// across a layout change): verify counts each record once, reporting the
/// copies across layouts, and fails when a packed row is stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_counts_a_record_in_both_layouts_once_and_fails_one_stored_twice() {
    let dir = tempfile::tempdir().unwrap();
    let server = gateway(dir.path(), SinkKind::Sqlite).await;
    // Open loop: the same batches both times, and few of them.
    let replay = |addr| Scenario {
        run_id: "replayed".into(),
        first_seq: 1,
        batches_per_s: 20.0,
        ..scenario(addr)
    };
    let s = replay(server.plain_addrs[0]);
    let (first_report, first) = run::run(s.clone(), false).await.unwrap();
    assert!(server.shutdown().await);
    let mut config = Config::parse(&format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin_listen = \"127.0.0.1:0\"\nmax_inflight = 4\n\
         [sink]\ndata_dir = \"{}\"\n[[tenants]]\nid = \"sim\"\nsecrets = [\"{SECRET}\"]\nlayout = \"packed\"\n",
        dir.path().display()
    ))
    .unwrap();
    config.server.max_inflight = 4;
    let server = awp_gateway::start(&config).await.unwrap();
    let s = replay(server.plain_addrs[0]);
    let (second_report, second) = run::run(s.clone(), false).await.unwrap();
    assert!(server.shutdown().await);
    for report in [&first_report, &second_report] {
        assert!(report.problems.is_empty(), "{:?} {:?}", report.problems, report.errors);
    }
    let store = Store::Sqlite(dir.path().into());
    let templates = run::templates(&s).unwrap();
    for (report, results) in [(&first_report, &first), (&second_report, &second)] {
        let v = verify(&store, "sim", results, &templates, report.mark()).await.unwrap();
        assert!(v.ok, "{v:?}");
        assert!(v.copies_across_layouts > 0, "{v:?}");
        assert_eq!(v.copies_same_layout, 0);
    }
    // A packed row under a second key: its records stored twice.
    let db = rusqlite::Connection::open(dir.path().join("sim.sqlite3")).unwrap();
    let copied = db
        .execute(
            "INSERT INTO items (device, rk, item) SELECT device, rk || '#p999', item FROM items \
             WHERE item LIKE '%\"records\"%' LIMIT 1",
            [],
        )
        .unwrap();
    assert_eq!(copied, 1);
    let v = verify(&store, "sim", &second, &templates, second_report.mark())
        .await
        .unwrap();
    assert!(!v.ok);
    assert_eq!(v.copies_same_layout, 20, "{v:?}");
}
