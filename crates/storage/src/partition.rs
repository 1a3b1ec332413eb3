//! Partitions: (table, project, service, UTC hour), their Hive-style folder
//! names, and splitting a batch by partition.
//!
//! Folder layout under the lake root (`<table>` is `spans`, `logs` or `errors`):
//!
//! ```text
//! <table>/project=<P>/service=<S>/date=YYYY-MM-DD/hour=HH/<file id>.parquet
//! ```
//!
//! Partition values are escaped the way Hive and Spark do it: every byte outside
//! `[A-Za-z0-9._-]` (and a leading `.`) becomes `%XX`, so `/`, `=`, `%`, `..` and
//! control characters can never leave their folder or be mistaken for a key.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::TimestampNanosecondType;
use lighttrace_model::{NANOS_PER_HOUR, columns, hour_of};

use crate::error::StorageError;
use crate::table::Table;

/// The unit of buffering and of the folder layout.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    pub table: Table,
    pub project: Arc<str>,
    pub service: Arc<str>,
    /// Hours since the Unix epoch (UTC).
    pub hour: i64,
}

impl fmt::Debug for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.folder())
    }
}

impl PartitionKey {
    /// A partition of the `spans` table.
    pub fn new(project: &str, service: &str, hour: i64) -> Self {
        Self::of_table(Table::Spans, project, service, hour)
    }

    pub fn of_table(table: Table, project: &str, service: &str, hour: i64) -> Self {
        PartitionKey {
            table,
            project: project.into(),
            service: service.into(),
            hour,
        }
    }

    /// First nanosecond of the partition's hour.
    pub fn hour_start_ns(&self) -> i64 {
        self.hour.saturating_mul(NANOS_PER_HOUR)
    }

    /// `<table>/project=…/service=…/date=YYYY-MM-DD/hour=HH`, escaped.
    pub fn folder(&self) -> String {
        let secs = self.hour.saturating_mul(3600);
        let (date, hour) = match chrono::DateTime::from_timestamp(secs, 0) {
            Some(t) => (t.format("%Y-%m-%d").to_string(), t.format("%H").to_string()),
            None => ("invalid".to_string(), "00".to_string()),
        };
        format!(
            "{}/project={}/service={}/date={}/hour={}",
            self.table.name(),
            escape_partition_value(&self.project),
            escape_partition_value(&self.service),
            date,
            hour
        )
    }
}

/// Escapes a partition value so it is one safe path segment.
pub fn escape_partition_value(value: &str) -> String {
    if value.is_empty() {
        // Hive's marker for an empty / null partition value.
        return "__HIVE_DEFAULT_PARTITION__".to_string();
    }
    let mut out = String::with_capacity(value.len());
    for (i, b) in value.bytes().enumerate() {
        let safe = b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0);
        if safe {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Inverse of [`escape_partition_value`]; `None` for text it could not have produced.
pub fn unescape_partition_value(segment: &str) -> Option<String> {
    if segment == "__HIVE_DEFAULT_PARTITION__" {
        return Some(String::new());
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Splits a batch of `table` into partitions without copying: each partition
/// gets zero-copy slices of `batch`, one per run of consecutive rows with its
/// key, in row order. (An OTLP request groups spans by resource, so runs are
/// long, and a request from one service is one slice.)
pub fn split_by_partition(
    table: Table,
    batch: &RecordBatch,
) -> Result<Vec<(PartitionKey, Vec<RecordBatch>)>, StorageError> {
    let schema = batch.schema();
    let column = |name: &str| {
        schema
            .index_of(name)
            .map(|i| batch.column(i).clone())
            .map_err(|_| StorageError::InvalidBatch(format!("missing column {name}")))
    };
    let project = column(columns::PROJECT)?;
    let service = column(columns::SERVICE_NAME)?;
    let start = column(table.time_column())?;
    let project = project
        .as_string_opt::<i32>()
        .ok_or_else(|| StorageError::InvalidBatch("project is not Utf8".into()))?;
    let service = service
        .as_string_opt::<i32>()
        .ok_or_else(|| StorageError::InvalidBatch("service_name is not Utf8".into()))?;
    let start = start
        .as_primitive_opt::<TimestampNanosecondType>()
        .ok_or_else(|| {
            StorageError::InvalidBatch(format!("{} is not Timestamp(ns)", table.time_column()))
        })?;

    let key_of = |row: usize| {
        (
            if project.is_null(row) {
                ""
            } else {
                project.value(row)
            },
            if service.is_null(row) {
                ""
            } else {
                service.value(row)
            },
            hour_of(start.value(row)),
        )
    };
    let mut groups: HashMap<(&str, &str, i64), Vec<RecordBatch>> = HashMap::new();
    let mut run_start = 0;
    while run_start < batch.num_rows() {
        let key = key_of(run_start);
        let mut run_end = run_start + 1;
        while run_end < batch.num_rows() && key_of(run_end) == key {
            run_end += 1;
        }
        groups
            .entry(key)
            .or_default()
            .push(batch.slice(run_start, run_end - run_start));
        run_start = run_end;
    }
    let mut out: Vec<(PartitionKey, Vec<RecordBatch>)> = groups
        .into_iter()
        .map(|((p, s, h), slices)| (PartitionKey::of_table(table, p, s, h), slices))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_keeps_hostile_names_inside_one_segment() {
        for name in [
            "../x",
            "a/b=c",
            "..",
            ".",
            "%2F",
            "x\0y",
            "ünï code",
            "a\\b",
            "",
        ] {
            let escaped = escape_partition_value(name);
            assert!(!escaped.contains('/'), "{name:?} -> {escaped}");
            assert!(!escaped.contains('='), "{name:?} -> {escaped}");
            assert!(!escaped.starts_with('.'), "{name:?} -> {escaped}");
            assert!(!escaped.contains('\\'));
            assert_eq!(unescape_partition_value(&escaped).as_deref(), Some(name));
        }
        assert_eq!(escape_partition_value("frontend-v1.2"), "frontend-v1.2");
        assert_eq!(escape_partition_value("../x"), "%2E.%2Fx");
        assert_eq!(escape_partition_value("a/b=c"), "a%2Fb%3Dc");
    }

    #[test]
    fn split_keeps_runs_in_order_without_copying() {
        use lighttrace_model::{Source, SpanBatchBuilder, SpanKind, SpanRecord, StatusCode};
        let mut builder = SpanBatchBuilder::new();
        // Services a, a, b, a (next hour), a: four runs, three partitions.
        let rows = [("a", 0), ("a", 0), ("b", 0), ("a", 1), ("a", 1)];
        for (i, (service, hour)) in rows.iter().enumerate() {
            builder.append(&SpanRecord {
                project: "p",
                trace_id: [1; 16],
                span_id: [i as u8 + 1; 8],
                parent_span_id: None,
                trace_state: None,
                service_name: service,
                name: "op",
                kind: SpanKind::Server,
                start_time_ns: hour * NANOS_PER_HOUR + i as i64,
                end_time_ns: hour * NANOS_PER_HOUR + 10,
                status_code: StatusCode::Unset,
                status_message: None,
                attributes: &[],
                resource_attributes: &[],
                scope_name: None,
                scope_version: None,
                events: &[],
                links: &[],
                source: Source::Otlp,
            });
        }
        let batch = builder.finish();
        let parts = split_by_partition(Table::Spans, &batch).unwrap();
        let summary: Vec<(String, i64, Vec<usize>)> = parts
            .iter()
            .map(|(k, slices)| {
                (
                    k.service.to_string(),
                    k.hour,
                    slices.iter().map(|s| s.num_rows()).collect(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("a".to_string(), 0, vec![2]),
                ("a".to_string(), 1, vec![2]),
                ("b".to_string(), 0, vec![1]),
            ]
        );
        let first = batch.column(2).to_data();
        let slice = parts[0].1[0].column(2).to_data();
        assert_eq!(
            first.buffers()[1].as_ptr(),
            slice.buffers()[1].as_ptr(),
            "no copy"
        );
    }

    #[test]
    fn folder_uses_utc_date_and_hour() {
        // 2024-01-02T03:00:00Z
        let key = PartitionKey::new("p", "a/b", 1_704_164_400 / 3600);
        assert_eq!(
            key.folder(),
            "spans/project=p/service=a%2Fb/date=2024-01-02/hour=03"
        );
    }
}
