//! After a run: is every record the gateway acked stored, once, with the
//! right attributes? The expected items are rendered from the same
//! templates by the storage mapping the gateway's sinks use (`awp_store`),
//! so any difference is the store's or the gateway's, not the check's.
//!
//! Each acked batch's records must all be there (`missing` otherwise), equal
//! to the expected item except `received_at`/`expires_at` (`mismatched`).
//! Records stored but never acked are `extra`: at-least-once delivery allows
//! them (a batch stored whose ACK was lost, then not resent before the run
//! ended), so they are reported but do not fail the check. The store's key
//! (`device`, `rk`) makes a record present at most once.
//!
//! The check proves this run, not an earlier one: the run's devices carry
//! its run id, its batches' `seq`s start at its start time (so a client
//! certificate's device, the same every run, gets new keys too), and a
//! record found must have been received no earlier than the run's start
//! (`stale` otherwise: a failure). A replay (`run_id` and `first_seq` set
//! to send an earlier run's batches again) is no exception: both stores
//! write a record again when it comes again, so a replay into the store it
//! is verified against leaves fresh rows, and one verified against another
//! store finds the earlier run's stale ones. Rows of the same devices with
//! a `seq` outside the run's are other runs': counted apart, never `extra`.
//!
//! Records are compared as the record layout's items in plain JSON, so a
//! table in either layout (or both: a tenant that changed its layout) is
//! checked the same way: a packed item's records are its lines. A record
//! held by both layouts (a batch resent across a layout change) counts
//! once (`awp_store::dedupe`); one held twice by the same layout (two
//! packed items with the same record: stored twice) fails the check.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use awp_protocol::{Limits, PreparedBatch};
use awp_store::compare::comparable_plain;
use awp_store::plain::value_to_plain;
use awp_store::{AcceptedBatch, JsonItems, Origin, RangeKey};
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;

use crate::agent::{AGENT_VERSION, AgentResult};
pub use crate::report::RunMark;
use crate::report::{Discrepancy, VerifyReport};

/// Where the gateway stored the records.
#[derive(Debug, Clone)]
pub enum Store {
    /// The SQLite sink's data directory (`<dir>/<tenant>.sqlite3`).
    Sqlite(PathBuf),
    /// A DynamoDB table.
    Dynamodb(DynamoTable),
}

/// A DynamoDB table to read back.
#[derive(Debug, Clone)]
pub struct DynamoTable {
    /// The table name.
    pub table: String,
    /// Its region.
    pub region: String,
    /// An endpoint override (dynalite, DynamoDB Local); with one, static
    /// dummy credentials are used, else the standard credential chain.
    pub endpoint: Option<String>,
}

impl Store {
    fn name(&self) -> String {
        match self {
            Store::Sqlite(dir) => format!("sqlite:{}", dir.display()),
            Store::Dynamodb(d) => format!("dynamodb:{}", d.table),
        }
    }
}

/// A client for `table` (rustls, no SDK retries beyond the default).
pub async fn dynamodb_client(table: &DynamoTable) -> aws_sdk_dynamodb::Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new(table.region.clone()))
        .http_client(http)
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(10))
                .build(),
        );
    if table.endpoint.is_some() {
        let creds = aws_sdk_dynamodb::config::Credentials::new("local", "local", None, None, "agent-sim");
        loader = loader.credentials_provider(creds);
    }
    let base = loader.load().await;
    let mut builder = aws_sdk_dynamodb::config::Builder::from(&base);
    if let Some(endpoint) = &table.endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    aws_sdk_dynamodb::Client::from_conf(builder.build())
}

/// Records by their record-layout `rk`, each as its item in plain JSON,
/// comparable (`awp_store::compare::comparable_plain`): the same whether
/// the table holds one item per record or packed batches.
type ItemsByRk = BTreeMap<String, Value>;

/// Clock slack allowed between agent-sim's start and the gateway's
/// `received_at` (same host; a second covers rounding and scheduling).
const CLOCK_SLACK_MS: u64 = 1000;

/// A device's stored records, each once, and the copies skipped.
#[derive(Debug, Default)]
struct Stored {
    records: ItemsByRk,
    /// The latest `received_at` of each record's copies, by `rk`.
    received_at: BTreeMap<String, u64>,
    copies: awp_store::dedupe::Copies,
}

/// Reads a device's stored items (in key order) into its records.
fn read_stored<'a>(items: impl IntoIterator<Item = &'a Value>) -> anyhow::Result<Stored> {
    let mut dedupe = awp_store::dedupe::Dedupe::new();
    let mut records = ItemsByRk::new();
    let mut received_at = BTreeMap::<String, u64>::new();
    // Every copy counts for when a record was last received (a batch resent
    // across a layout change: the newer copy is this run's).
    let mut add = |record: Value, copy: bool| -> anyhow::Result<()> {
        let rk = record["rk"].as_str().unwrap_or_default().to_owned();
        let at = record["received_at"].as_u64().unwrap_or(0);
        let latest = received_at.entry(rk.clone()).or_default();
        *latest = (*latest).max(at);
        if !copy {
            records.insert(rk, comparable_plain(record));
        }
        Ok(())
    };
    for item in items {
        dedupe.item_and_copies(item, &mut add)?;
    }
    dedupe.finish();
    Ok(Stored {
        records,
        received_at,
        copies: dedupe.copies(),
    })
}

fn item_rk(item: &Value) -> String {
    item["rk"]["S"].as_str().unwrap_or_default().to_owned()
}

fn expected(agent: &AgentResult, templates: &[PreparedBatch]) -> anyhow::Result<ItemsByRk> {
    let origin = Arc::new(Origin {
        device_id: agent.plan.device.clone(),
        platform: agent.plan.platform,
        agent_version: AGENT_VERSION.to_owned(),
    });
    let mut json = JsonItems::new();
    let mut out = ItemsByRk::new();
    for &(seq, template) in &agent.acked {
        let content = templates[template].content().clone();
        let batch = AcceptedBatch::accept(origin.clone(), seq, 0, None, content, &Limits::DEFAULT)?;
        json.render::<anyhow::Error>(&batch, |item| {
            let item: Value = serde_json::from_str(item.json)?;
            out.insert(item_rk(&item), comparable_plain(value_to_plain(&item)));
            Ok(())
        })?;
    }
    Ok(out)
}

async fn stored(
    store: &Store,
    tenant: &str,
    device: &str,
    dynamo: Option<&aws_sdk_dynamodb::Client>,
) -> anyhow::Result<Stored> {
    match store {
        Store::Sqlite(dir) => {
            let db = awp_store::sqlite::open_read_only(dir, tenant).with_context(|| {
                format!(
                    "cannot open {}",
                    awp_store::sqlite::database_path(dir, tenant).display()
                )
            })?;
            let items = awp_store::sqlite::device_items(&db, device)?
                .into_iter()
                .map(|(_, item)| serde_json::from_str(&item))
                .collect::<Result<Vec<Value>, _>>()?;
            read_stored(&items)
        }
        Store::Dynamodb(d) => {
            let client = dynamo.context("no DynamoDB client")?;
            let items: Vec<HashMap<String, AttributeValue>> = client
                .query()
                .table_name(&d.table)
                .key_condition_expression("device = :d")
                .expression_attribute_values(":d", AttributeValue::S(device.into()))
                .consistent_read(true)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .with_context(|| format!("query of table {}", d.table))?;
            let items: Vec<Value> = items.iter().map(awp_store::dynamodb::attributes_to_json).collect();
            read_stored(&items)
        }
    }
}

/// Groups record keys by batch seq into discrepancy rows.
fn rows(device: &str, rks: &[&String], detail: &str) -> Vec<Discrepancy> {
    let mut by_seq: BTreeMap<u64, u64> = BTreeMap::new();
    for rk in rks {
        *by_seq.entry(seq_of(rk)).or_default() += 1;
    }
    by_seq
        .into_iter()
        .map(|(seq, records)| Discrepancy {
            device: device.to_owned(),
            seq,
            records,
            detail: detail.to_owned(),
        })
        .collect()
}

fn seq_of(rk: &str) -> u64 {
    RangeKey::parse(rk).map_or(0, |k| k.seq)
}

/// Checks every agent's acked batches against the store.
pub async fn verify(
    store: &Store,
    tenant: &str,
    agents: &[AgentResult],
    templates: &[PreparedBatch],
    run: RunMark,
) -> anyhow::Result<VerifyReport> {
    let started = std::time::Instant::now();
    let dynamo = match store {
        Store::Dynamodb(d) => Some(dynamodb_client(d).await),
        Store::Sqlite(_) => None,
    };
    let mut report = VerifyReport {
        store: store.name(),
        devices: agents.len(),
        run_started_at_unix_ms: run.started_at_unix_ms,
        ..VerifyReport::default()
    };
    let earliest = run.started_at_unix_ms.saturating_sub(CLOCK_SLACK_MS);
    for agent in agents {
        let want = expected(agent, templates)?;
        let Stored {
            records: mut have,
            received_at,
            copies,
        } = stored(store, tenant, &agent.plan.device, dynamo.as_ref()).await?;
        // This run's batches are first_seq ..= last_seq; other seqs are
        // other runs' (earlier ones below, a later or concurrent one above).
        let ours = |rk: &String| (run.first_seq..=agent.last_seq).contains(&seq_of(rk));
        let other_runs = have.keys().filter(|rk| !ours(rk)).count();
        report.other_runs_records += other_runs as u64;
        have.retain(|rk, _| ours(rk));
        report.copies_across_layouts += copies.across_layouts;
        report.copies_same_layout += copies.same_layout;
        report.expected_records += want.len() as u64;
        report.found_records += want.keys().filter(|rk| have.contains_key(*rk)).count() as u64;
        let missing: Vec<&String> = want.keys().filter(|rk| !have.contains_key(*rk)).collect();
        let stale: Vec<&String> = want
            .keys()
            .filter(|rk| have.contains_key(*rk) && received_at.get(*rk).copied().unwrap_or(0) < earliest)
            .collect();
        report.stale.extend(rows(
            &agent.plan.device,
            &stale,
            "stored before this run started (an earlier run's row, not proof of this one)",
        ));
        let extra: Vec<&String> = have.keys().filter(|rk| !want.contains_key(*rk)).collect();
        let mismatched: Vec<&String> = want
            .iter()
            .filter(|(rk, item)| have.get(*rk).is_some_and(|h| h != *item))
            .map(|(rk, _)| rk)
            .collect();
        report
            .missing
            .extend(rows(&agent.plan.device, &missing, "acked but not stored"));
        report.extra.extend(rows(
            &agent.plan.device,
            &extra,
            "stored but not acked (allowed: at-least-once)",
        ));
        report
            .mismatched
            .extend(rows(&agent.plan.device, &mismatched, "stored with other attributes"));
    }
    report.ok = report.missing.is_empty()
        && report.stale.is_empty()
        && report.mismatched.is_empty()
        && report.copies_same_layout == 0;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
