//! `gateway export`: a tenant's records as JSON lines, from its store
//! (SQLite or DynamoDB), whichever layout holds them.
//!
//! Each line is one record's item in the record layout, as plain JSON
//! (`awp_store::plain`: numbers as numbers, bytes as base64), keys sorted:
//! the same records give the same lines whether they were stored one item
//! each or packed, so exports can be compared and loaded anywhere. A table
//! that holds both (a tenant that changed its layout) exports each record
//! once, even one stored in both layouts (a batch resent across the
//! change): `awp_store::dedupe` names a record by its device and
//! record-layout `rk`, whichever item holds it.
//!
//! Items stream through: one SQLite row, or one DynamoDB page, at a time,
//! so a whole table exports in bounded memory. A time range reads keys
//! from [`MAX_PART_SPAN_MS`] before its start (`rk` begins with the
//! record time, or a packed item's earliest one, and a packed item spans at
//! most that), skips packed items whose `t_min`..`t_max` misses it, and
//! keeps the records whose time (`ts`) falls in it.

use std::io::Write;

use anyhow::Context;
use awp_store::dedupe::Dedupe;
use awp_store::key::{MAX_TIME_MS, TIME_DIGITS};
use awp_store::packed::MAX_PART_SPAN_MS;
use serde_json::Value;

use crate::config::{Config, SinkKind, TenantConfig};

/// Which records to export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// One device's, or every device's.
    pub device: Option<String>,
    /// Records at or after this time, unix ms.
    pub from_ms: Option<u64>,
    /// Records before this time, unix ms.
    pub to_ms: Option<u64>,
}

impl Selection {
    /// The `rk` range that holds every item with a selected record:
    /// `[low, high)`, as key strings.
    fn key_range(&self) -> (String, String) {
        let pad = |t: u64| format!("{:0width$}", t.min(MAX_TIME_MS + 1), width = TIME_DIGITS);
        // Every rk starts with a digit: "0" is below them all (and, unlike
        // an empty string, a value DynamoDB takes in a key condition).
        let low = self
            .from_ms
            .map_or_else(|| "0".to_owned(), |f| pad(f.saturating_sub(MAX_PART_SPAN_MS)));
        // Every rk starts with 13 digits and '#': past the largest time, past them all.
        let high = self.to_ms.map_or_else(|| "9999999999999~".to_owned(), pad);
        (low, high)
    }

    fn selects(&self, record: &Value) -> bool {
        let ts = record.get("ts").and_then(Value::as_u64);
        self.from_ms.is_none_or(|f| ts.is_some_and(|t| t >= f))
            && self.to_ms.is_none_or(|to| ts.is_some_and(|t| t < to))
    }
}

/// A time on the command line: unix milliseconds, or RFC 3339
/// (`2026-11-27T10:00:00Z`).
pub fn parse_time(text: &str) -> Result<u64, String> {
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{text:?} is neither unix milliseconds nor RFC 3339: {e}"))?;
    u64::try_from(at.unix_timestamp_nanos() / 1_000_000).map_err(|_| format!("{text:?} is before 1970"))
}

/// Writes a stored item's selected records, one line each.
struct Lines<'a, W: Write> {
    out: W,
    selection: &'a Selection,
    written: u64,
    /// Items come in key order per device (SQLite's ORDER BY, a Query, a
    /// Scan's item collections), which is what it needs.
    dedupe: Dedupe,
}

impl<W: Write> Lines<'_, W> {
    /// One stored item, as DynamoDB JSON: a record, or a packed item.
    fn item(&mut self, item: &Value) -> anyhow::Result<()> {
        // A packed item whose records all lie outside the range is not unpacked.
        let time = |name: &str| item.get(name)?.get("N")?.as_str()?.parse::<u64>().ok();
        if let (Some(t_min), Some(t_max)) = (time("t_min"), time("t_max"))
            && (self.selection.to_ms.is_some_and(|to| t_min >= to)
                || self.selection.from_ms.is_some_and(|from| t_max < from))
        {
            return Ok(());
        }
        let rk = item
            .get("rk")
            .and_then(|r| r.get("S"))
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned();
        let (selection, out, written) = (self.selection, &mut self.out, &mut self.written);
        self.dedupe
            .item::<anyhow::Error>(item, |record| write_record(selection, &mut *out, written, &record))
            .with_context(|| format!("item {rk}"))
    }

    /// At the end: says if the store's order made the copies uncertain.
    fn finish(&mut self) -> anyhow::Result<()> {
        self.dedupe.finish();
        let copies = self.dedupe.copies();
        if copies.unordered_items > 0 {
            tracing::warn!(
                items = copies.unordered_items,
                "the store gave items out of key order: a record stored in both layouts may be printed twice"
            );
        }
        Ok(())
    }
}

/// Writes `record` if `selection` selects it.
fn write_record(selection: &Selection, out: &mut impl Write, written: &mut u64, record: &Value) -> anyhow::Result<()> {
    if selection.selects(record) {
        // serde_json's maps are sorted: the same record, the same line.
        // As an io::Error, so a closed pipe is seen as one (`export | head`).
        serde_json::to_writer(&mut *out, record).map_err(std::io::Error::from)?;
        out.write_all(b"\n")?;
        *written += 1;
    }
    Ok(())
}

/// Exports `tenant`'s selected records to `out`; returns how many.
pub async fn export(config: &Config, tenant: &str, selection: &Selection, out: impl Write) -> anyhow::Result<u64> {
    let (i, tenant_config) = config
        .tenants
        .iter()
        .enumerate()
        .find(|(_, t)| t.id == tenant)
        .with_context(|| format!("--tenant: no tenant {tenant:?} in the configuration"))?;
    let mut lines = Lines {
        out: std::io::BufWriter::new(out),
        selection,
        written: 0,
        dedupe: Dedupe::new(),
    };
    match tenant_config.sink.unwrap_or(config.sink.kind) {
        SinkKind::Sqlite => from_sqlite(config, tenant, &mut lines)?,
        SinkKind::Dynamodb => from_dynamodb(tenant_config, i, &mut lines).await?,
        other => anyhow::bail!(
            "tenants[{i}]: its records are in the {} sink, which cannot be exported",
            other.name()
        ),
    }
    lines.finish()?;
    lines.out.flush()?;
    Ok(lines.written)
}

fn from_sqlite<W: Write>(config: &Config, tenant: &str, lines: &mut Lines<'_, W>) -> anyhow::Result<()> {
    let path = awp_store::sqlite::database_path(&config.sink.data_dir, tenant);
    let conn = awp_store::sqlite::open_read_only(&config.sink.data_dir, tenant)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let (low, high) = lines.selection.key_range();
    let device = lines.selection.device.clone();
    awp_store::sqlite::for_each_item::<anyhow::Error>(&conn, device.as_deref(), (&low, &high), |text| {
        let item: Value = serde_json::from_str(text).context("a stored item is not JSON")?;
        lines.item(&item)
    })
}

async fn from_dynamodb<W: Write>(tenant: &TenantConfig, i: usize, lines: &mut Lines<'_, W>) -> anyhow::Result<()> {
    let dynamo = tenant
        .dynamodb
        .as_ref()
        .with_context(|| format!("tenants[{i}].dynamodb: no table to export from"))?;
    let (low, high) = lines.selection.key_range();
    let device = lines.selection.device.clone();
    crate::sink::dynamodb::reads::for_each_item(dynamo, device.as_deref(), (&low, &high), |item| lines.item(item)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_unix_ms_or_rfc_3339() {
        assert_eq!(parse_time("1764000000000"), Ok(1_764_000_000_000));
        assert_eq!(parse_time("2025-11-24T16:00:00Z"), Ok(1_764_000_000_000));
        assert_eq!(parse_time("2025-11-24T17:00:00.5+01:00"), Ok(1_764_000_000_500));
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn a_range_reads_keys_from_one_span_before_it() {
        let s = Selection {
            device: None,
            from_ms: Some(1_764_000_000_000),
            to_ms: Some(1_764_000_060_000),
        };
        assert_eq!(s.key_range(), ("1763996400000".to_owned(), "1764000060000".to_owned()));
        assert_eq!(
            Selection::default().key_range(),
            ("0".to_owned(), "9999999999999~".to_owned())
        );
        assert!(s.selects(&serde_json::json!({"ts": 1_764_000_000_000u64})));
        assert!(!s.selects(&serde_json::json!({"ts": 1_764_000_060_000u64})));
        assert!(!s.selects(&serde_json::json!({"ts": 1_763_999_999_999u64})));
    }
}

#[cfg(test)]
mod both_layouts {
    use super::*;
    use crate::config::Layout;
    use crate::sink::TenantSink;
    use crate::sink::sqlite::SqliteSink;
    use crate::sink::tests::vector_batch;
    use awp_store::plain::value_to_plain;

    /// Every BATCH vector with items, stored in `layout` under `dir`, then
    /// exported with `selection`; the lines sorted.
    async fn stored_and_exported(layout: Layout, selection: &Selection) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = SqliteSink::open(dir.path(), "acme", layout).unwrap();
        // Every BATCH vector with items, and the mixed one's LZ4 and zstd
        // twins (the same batch: stored once).
        let names = awp_testkit::vectors()
            .with_items()
            .map(|(v, _)| v.name.clone())
            .chain(["batch_mixed_lz4".to_owned(), "batch_mixed_zstd".to_owned()]);
        let batches: Vec<_> = names.map(|name| vector_batch(&name, 1_764_000_009_999)).collect();
        assert!(batches.len() >= 4);
        sink.write(batches).await.unwrap();
        let config = Config::development(dir.path().to_path_buf(), "0123456789abcdef".into());
        let mut out = Vec::new();
        let written = export(&config_with("acme", config), "acme", selection, &mut out)
            .await
            .unwrap();
        let mut lines: Vec<String> = String::from_utf8(out).unwrap().lines().map(str::to_owned).collect();
        assert_eq!(written as usize, lines.len());
        lines.sort();
        lines
    }

    fn config_with(tenant: &str, mut config: Config) -> Config {
        config.tenants[0].id = tenant.to_owned();
        config
    }

    #[tokio::test]
    async fn the_vectors_export_the_same_from_either_layout() {
        let all = Selection::default();
        let record = stored_and_exported(Layout::Record, &all).await;
        let packed = stored_and_exported(Layout::Packed, &all).await;
        // Every vector item once (the mixed batch's three encodings are one batch).
        let mut expected: Vec<String> = awp_testkit::vectors()
            .with_items()
            .flat_map(|(_, items)| items.iter().map(value_to_plain))
            .map(|mut v| {
                v.as_object_mut()
                    .unwrap()
                    .insert("received_at".into(), 1_764_000_009_999u64.into());
                serde_json::to_string(&v).unwrap()
            })
            .collect();
        expected.sort();
        expected.dedup();
        assert_eq!(record, expected);
        assert_eq!(packed, record, "line for line");
    }

    #[tokio::test]
    async fn a_time_range_selects_the_same_records_from_either_layout() {
        // The mixed batch's records span 1763999940000 to 1764000002000.
        let selection = Selection {
            device: Some("dev-0001".into()),
            from_ms: Some(1_764_000_000_000),
            to_ms: Some(1_764_000_000_300),
        };
        let record = stored_and_exported(Layout::Record, &selection).await;
        let packed = stored_and_exported(Layout::Packed, &selection).await;
        assert!(!record.is_empty());
        for line in &record {
            let ts = serde_json::from_str::<Value>(line).unwrap()["ts"].as_u64().unwrap();
            assert!((1_764_000_000_000..1_764_000_000_300).contains(&ts), "{line}");
        }
        assert_eq!(packed, record);
        let nobody = Selection {
            device: Some("nobody".into()),
            ..Selection::default()
        };
        assert!(stored_and_exported(Layout::Packed, &nobody).await.is_empty());
    }
}
