//! `gateway tables create` and `gateway tables describe`: each tenant's
//! DynamoDB table with the key schema of AWP1.md §7 (`device` HASH S, `rk`
//! RANGE S), on-demand billing, and TTL on `expires_at`.
//!
//! Creating is idempotent: an existing table is described, not an error;
//! TTL is enabled only where it is not already. dynalite (the local server of
//! the tests) has no UpdateTimeToLive/DescribeTimeToLive: that is reported
//! and the command goes on, since the table itself is usable.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification,
};

use crate::config::{Config, DynamoConfig, SinkKind};
use crate::sink::dynamodb::client;

/// How long `create` waits for a new table to become ACTIVE.
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);

/// The tenants with a DynamoDB table, optionally just one.
fn destinations<'c>(config: &'c Config, only: Option<&str>) -> anyhow::Result<Vec<(&'c str, &'c DynamoConfig)>> {
    let list: Vec<_> = config
        .tenants
        .iter()
        .filter(|t| only.is_none_or(|id| t.id == id))
        .filter_map(|t| t.dynamodb.as_ref().map(|d| (t.id.as_str(), d)))
        .collect();
    if list.is_empty() {
        match only {
            Some(id) => anyhow::bail!("tenants: no tenant {id:?} with a [tenants.dynamodb] table"),
            None => anyhow::bail!("tenants: no tenant has a [tenants.dynamodb] table"),
        }
    }
    if config.sink.kind != SinkKind::Dynamodb && config.tenants.iter().all(|t| t.sink != Some(SinkKind::Dynamodb)) {
        tracing::warn!("no tenant writes to DynamoDB with this configuration (sink.kind is not dynamodb)");
    }
    Ok(list)
}

/// Creates every (or one) tenant's table; prints a line per tenant.
pub async fn create(config: &Config, only: Option<&str>) -> anyhow::Result<()> {
    for (tenant, dest) in destinations(config, only)? {
        let client = client(dest).await;
        let created = create_table(&client, &dest.table).await?;
        wait_active(&client, &dest.table).await?;
        let ttl = enable_ttl(&client, &dest.table).await;
        println!(
            "tenant {tenant}: table {} {} (region {}{}); TTL on expires_at: {ttl}",
            dest.table,
            if created { "created" } else { "already exists" },
            dest.region,
            dest.endpoint
                .as_deref()
                .map(|e| format!(", endpoint {e}"))
                .unwrap_or_default(),
        );
    }
    Ok(())
}

/// Prints each (or one) tenant's table: status, keys, billing, items, TTL.
pub async fn describe(config: &Config, only: Option<&str>) -> anyhow::Result<()> {
    for (tenant, dest) in destinations(config, only)? {
        let client = client(dest).await;
        match client.describe_table().table_name(&dest.table).send().await {
            Ok(out) => {
                let Some(t) = out.table else {
                    anyhow::bail!("tenant {tenant}: DescribeTable returned no table");
                };
                let keys: Vec<String> = t
                    .key_schema()
                    .iter()
                    .map(|k| format!("{} {}", k.attribute_name(), k.key_type().as_str()))
                    .collect();
                let billing = t
                    .billing_mode_summary()
                    .and_then(|b| b.billing_mode())
                    .map_or("PROVISIONED", |b| b.as_str());
                println!(
                    "tenant {tenant}: table {} {} keys [{}] billing {billing} items ~{} bytes ~{} TTL: {}",
                    dest.table,
                    t.table_status().map_or("?", |s| s.as_str()),
                    keys.join(", "),
                    t.item_count().unwrap_or(0),
                    t.table_size_bytes().unwrap_or(0),
                    describe_ttl(&client, &dest.table).await,
                );
            }
            Err(e) => anyhow::bail!(
                "tenant {tenant}: table {}: {}",
                dest.table,
                e.as_service_error()
                    .and_then(|s| s.message().map(str::to_owned))
                    .unwrap_or_else(|| e.to_string())
            ),
        }
    }
    Ok(())
}

/// Creates the table; `false` when it already exists.
pub async fn create_table(client: &Client, table: &str) -> anyhow::Result<bool> {
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let key = |name: &str, kind| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
    let result = client
        .create_table()
        .table_name(table)
        .attribute_definitions(attr("device")?)
        .attribute_definitions(attr("rk")?)
        .key_schema(key("device", KeyType::Hash)?)
        .key_schema(key("rk", KeyType::Range)?)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    match result {
        Ok(_) => Ok(true),
        Err(e) if e.code() == Some("ResourceInUseException") => Ok(false),
        Err(e) => anyhow::bail!(
            "table {table}: cannot create: {}",
            e.message().unwrap_or(&e.to_string())
        ),
    }
}

async fn wait_active(client: &Client, table: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let out = client.describe_table().table_name(table).send().await?;
        if out.table.and_then(|t| t.table_status) == Some(TableStatus::Active) {
            return Ok(());
        }
        if started.elapsed() > ACTIVE_TIMEOUT {
            anyhow::bail!("table {table}: not ACTIVE after {} s", ACTIVE_TIMEOUT.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Enables TTL on `expires_at`; says what happened, never fails the command.
async fn enable_ttl(client: &Client, table: &str) -> String {
    let spec = TimeToLiveSpecification::builder()
        .attribute_name("expires_at")
        .enabled(true)
        .build();
    let Ok(spec) = spec else {
        return "not enabled (cannot build the request)".into();
    };
    match client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(spec)
        .send()
        .await
    {
        Ok(_) => "enabled".into(),
        Err(e) if e.message().is_some_and(|m| m.contains("already enabled")) => "enabled".into(),
        Err(e) if unsupported(e.code(), e.message()) => {
            "not enabled: this endpoint has no UpdateTimeToLive (dynalite); enable it on real DynamoDB".into()
        }
        Err(e) => format!("not enabled: {}", e.message().unwrap_or(&e.to_string())),
    }
}

async fn describe_ttl(client: &Client, table: &str) -> String {
    match client.describe_time_to_live().table_name(table).send().await {
        Ok(out) => out
            .time_to_live_description
            .map(|d| {
                format!(
                    "{} on {}",
                    d.time_to_live_status().map_or("?", |s| s.as_str()),
                    d.attribute_name().unwrap_or("-")
                )
            })
            .unwrap_or_else(|| "unknown".into()),
        Err(e) if unsupported(e.code(), e.message()) => "unknown (no DescribeTimeToLive on this endpoint)".into(),
        Err(e) => format!("unknown: {}", e.message().unwrap_or(&e.to_string())),
    }
}

/// dynalite answers operations it lacks with UnknownOperationException.
fn unsupported(code: Option<&str>, message: Option<&str>) -> bool {
    code == Some("UnknownOperationException") || message.is_some_and(|m| m.contains("UnknownOperation"))
}
