//! After a run: is every record the gateway acked stored, once, with the
//! right attributes? The expected items are made from the same templates,
//! by the gateway's own mapping (`awp_gateway::item`), so any difference is
//! the store's or the gateway's, not the check's.
//!
//! Each acked batch's records must all be there (`missing` otherwise), equal
//! to the expected item except `received_at`/`expires_at` (`mismatched`).
//! Records stored but never acked are `extra`: at-least-once delivery allows
//! them (a batch stored whose ACK was lost, then not resent before the run
//! ended), so they are reported but do not fail the check. The store's key
//! (`device`, `rk`) makes a record present at most once.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::Context;
use awp_gateway::config::DynamoConfig;
use awp_gateway::item::{ItemContext, batch_items};
use awp_protocol::{Compression, Decoded, Frame, Limits, PreparedBatch, decode};
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;

use crate::agent::{AGENT_VERSION, AgentResult};
use crate::report::{Discrepancy, VerifyReport};

/// Where the gateway stored the records.
#[derive(Debug, Clone)]
pub enum Store {
    /// The SQLite sink's data directory (`<dir>/<tenant>.sqlite3`).
    Sqlite(PathBuf),
    /// A DynamoDB table.
    Dynamodb(DynamoConfig),
}

impl Store {
    fn name(&self) -> String {
        match self {
            Store::Sqlite(dir) => format!("sqlite:{}", dir.display()),
            Store::Dynamodb(d) => format!("dynamodb:{}", d.table),
        }
    }
}

/// Items as DynamoDB JSON by `rk`, without the time-of-arrival attributes.
type ItemsByRk = BTreeMap<String, Value>;

fn comparable(mut item: Value) -> Value {
    if let Some(map) = item.as_object_mut() {
        map.remove("received_at");
        map.remove("expires_at");
    }
    canonical_numbers(&mut item);
    item
}

/// Stores keep numbers, not their spelling (dynalite writes -2.5E-100 as
/// -0.000…025): numbers are compared by value.
fn canonical_numbers(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(n)) = map.get_mut("N")
                && n.parse::<i128>().is_err()
                && let Ok(f) = n.parse::<f64>()
            {
                *n = format!("{f:e}");
            }
            map.values_mut().for_each(canonical_numbers);
        }
        Value::Array(items) => items.iter_mut().for_each(canonical_numbers),
        _ => {}
    }
}

fn expected(agent: &AgentResult, templates: &[PreparedBatch]) -> anyhow::Result<ItemsByRk> {
    let mut out = ItemsByRk::new();
    for &(seq, template) in &agent.acked {
        let mut buf = bytes::BytesMut::new();
        templates[template].encode(seq, Compression::None, &Limits::DEFAULT, &mut buf)?;
        let Ok(Decoded::Complete(Frame::Batch(frame), _)) = decode(&buf.freeze(), &Limits::DEFAULT) else {
            anyhow::bail!("a template does not decode");
        };
        let ctx = ItemContext {
            device_id: &agent.plan.device,
            platform: agent.plan.platform,
            agent_version: AGENT_VERSION,
            seq,
            received_at_ms: 0,
            expires_at: None,
        };
        for item in batch_items(&frame, &ctx, &Limits::DEFAULT)? {
            out.insert(item.rk.clone(), comparable(item.to_dynamodb_json()));
        }
    }
    Ok(out)
}

async fn stored(
    store: &Store,
    tenant: &str,
    device: &str,
    dynamo: Option<&aws_sdk_dynamodb::Client>,
) -> anyhow::Result<ItemsByRk> {
    match store {
        Store::Sqlite(dir) => {
            let path = dir.join(format!("{tenant}.sqlite3"));
            let db = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let mut stmt = db.prepare("SELECT rk, item FROM items WHERE device = ?1")?;
            let rows = stmt.query_map([device], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            let mut out = ItemsByRk::new();
            for row in rows {
                let (rk, item) = row?;
                out.insert(rk, comparable(serde_json::from_str(&item)?));
            }
            Ok(out)
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
            Ok(items
                .iter()
                .map(|i| {
                    let json = awp_gateway::sink::dynamodb::attributes_to_json(i);
                    let rk = json["rk"]["S"].as_str().unwrap_or_default().to_owned();
                    (rk, comparable(json))
                })
                .collect())
        }
    }
}

fn seq_of(rk: &str) -> u64 {
    rk.split('#').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
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

/// Checks every agent's acked batches against the store.
pub async fn verify(
    store: &Store,
    tenant: &str,
    agents: &[AgentResult],
    templates: &[PreparedBatch],
) -> anyhow::Result<VerifyReport> {
    let dynamo = match store {
        Store::Dynamodb(d) => Some(awp_gateway::sink::dynamodb::client(d).await),
        Store::Sqlite(_) => None,
    };
    let mut report = VerifyReport {
        store: store.name(),
        devices: agents.len(),
        ..VerifyReport::default()
    };
    for agent in agents {
        let want = expected(agent, templates)?;
        let have = stored(store, tenant, &agent.plan.device, dynamo.as_ref()).await?;
        report.expected_records += want.len() as u64;
        report.found_records += want.keys().filter(|rk| have.contains_key(*rk)).count() as u64;
        let missing: Vec<&String> = want.keys().filter(|rk| !have.contains_key(*rk)).collect();
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
    report.ok = report.missing.is_empty() && report.mismatched.is_empty();
    Ok(report)
}
