//! Reading a tenant's table back, a page at a time (`gateway export`): one
//! device's items by a Query, every device's by a Scan, each item as
//! DynamoDB JSON. A Query gives a device's items in key order, and a Scan
//! each device's together and in key order, which is what
//! `awp_store::dedupe` needs.

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;

use crate::config::DynamoConfig;

/// Calls `each` with every item of `device` (or of every device) in
/// `table` whose `rk` lies in `[low, high]`, one page in memory at a time.
pub async fn for_each_item(
    table: &DynamoConfig,
    device: Option<&str>,
    (low, high): (&str, &str),
    mut each: impl FnMut(&Value) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let client = super::client(table).await;
    let name = &table.table;
    let failed = |e: String| anyhow::anyhow!("table {name}: {e}");
    let mut values = vec![
        (":lo".to_owned(), AttributeValue::S(low.to_owned())),
        (":hi".to_owned(), AttributeValue::S(high.to_owned())),
    ];
    macro_rules! pages {
        ($paginator:expr) => {{
            let mut pages = $paginator.into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| failed(DisplayErrorContext(e).to_string()))?;
                for item in page.items() {
                    each(&awp_store::dynamodb::attributes_to_json(item))?;
                }
            }
        }};
    }
    match device {
        Some(device) => {
            values.push((":d".to_owned(), AttributeValue::S(device.to_owned())));
            pages!(
                client
                    .query()
                    .table_name(name)
                    .key_condition_expression("device = :d AND rk BETWEEN :lo AND :hi")
                    .set_expression_attribute_values(Some(values.into_iter().collect()))
            )
        }
        None => pages!(
            client
                .scan()
                .table_name(name)
                .filter_expression("rk BETWEEN :lo AND :hi")
                .set_expression_attribute_values(Some(values.into_iter().collect()))
        ),
    }
    Ok(())
}
