//! The lake's other tables, `logs` and `errors`, beside `spans`: written,
//! buffered, replayed from the WAL, flushed under their own folders, pruned by
//! trace id, scoped by project, and queried together with spans.

mod common;

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, AsArray, Int32Array, Int64Array, MapBuilder, RecordBatch, StringArray, StringBuilder,
    TimestampNanosecondArray,
};
use arrow::datatypes::{DataType, Int64Type};
use bytes::Bytes;
use lighttrace_query::{ProjectScope, QueryConfig, QueryEngine};
use lighttrace_storage::{Lake, StorageConfig, Table, WalRecordDecoder};

const HOUR_NS: i64 = 3_600_000_000_000;
const BASE_NS: i64 = 490_000 * HOUR_NS;

fn query_config() -> QueryConfig {
    QueryConfig {
        memory_limit_bytes: 256 << 20,
        timeout: Duration::from_secs(60),
        target_partitions: 2,
    }
}

fn trace_id(n: u64) -> String {
    format!("{:032x}", n + 1)
}

/// `n` rows of `table` (`logs` or `errors`) for `project`/`service`: row `i`
/// has trace id `trace_id(first + i / 2)`, time `BASE_NS + i µs`; every other
/// text column says which row it is.
fn rows(table: Table, project: &str, service: &str, first: u64, n: u64) -> RecordBatch {
    let schema = table.schema();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| -> ArrayRef {
            let name = field.name().as_str();
            let ids = first..first + n;
            match field.data_type() {
                DataType::Utf8 => {
                    Arc::new(StringArray::from_iter_values(ids.map(|i| match name {
                        "project" => project.to_string(),
                        "service_name" => service.to_string(),
                        "trace_id" => trace_id(i / 2),
                        "span_id" => format!("{:016x}", i + 1),
                        "event_id" => format!("{:032x}", i + 1),
                        "source" => "test".to_string(),
                        other => format!("{other} {i}"),
                    })))
                }
                DataType::Timestamp(_, _) => Arc::new(
                    TimestampNanosecondArray::from_iter_values(
                        ids.map(|i| BASE_NS + i as i64 * 1_000),
                    )
                    .with_timezone("UTC"),
                ),
                DataType::Int32 => Arc::new(Int32Array::from_iter_values(ids.map(|i| i as i32))),
                DataType::Int64 => Arc::new(Int64Array::from_iter_values(ids.map(|i| i as i64))),
                DataType::Map(_, _) => {
                    let mut map = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
                    for i in ids {
                        map.keys().append_value("row");
                        map.values().append_value(i.to_string());
                        map.append(true).unwrap();
                    }
                    Arc::new(map.finish())
                }
                other => panic!("no test values for {other}"),
            }
        })
        .collect();
    // MapBuilder names its fields like the tables' maps do.
    RecordBatch::try_new(schema, columns).unwrap()
}

fn count(output: &lighttrace_query::QueryOutput) -> i64 {
    output
        .batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .map(|b| b.column(0).as_primitive::<Int64Type>().value(0))
        .unwrap_or(0)
}

async fn sql_count(engine: &QueryEngine, sql: &str, scope: &ProjectScope) -> i64 {
    count(&engine.sql(sql, scope).await.unwrap())
}

fn parquet_files_under(root: &std::path::Path, table: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.join(table)];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_errors_are_tables_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::storage_config(dir.path());
    let lake = Lake::open(config.clone()).await.unwrap();
    lake.write(rows(Table::Logs, "p1", "checkout", 0, 40))
        .await
        .unwrap();
    lake.write(rows(Table::Logs, "p2", "cart", 100, 10))
        .await
        .unwrap();
    lake.write(rows(Table::Errors, "p1", "checkout", 0, 6))
        .await
        .unwrap();
    lake.write(common::hour_batch(0)).await.unwrap();
    let spans = common::hour_batch(0).num_rows() as i64;

    let check = |lake: Arc<Lake>| async move {
        let engine = QueryEngine::new(lake, query_config()).unwrap();
        let all = ProjectScope::All;
        assert_eq!(
            sql_count(&engine, "SELECT count(*) FROM logs", &all).await,
            50
        );
        assert_eq!(
            sql_count(&engine, "SELECT count(*) FROM errors", &all).await,
            6
        );
        assert_eq!(
            sql_count(&engine, "SELECT count(*) FROM spans", &all).await,
            spans
        );
        // One trace's log lines, by id, as the table shows them.
        let id = trace_id(3);
        let output = engine
            .sql(
                &format!(
                    "SELECT body, service_name FROM logs WHERE trace_id = '{id}' ORDER BY time"
                ),
                &all,
            )
            .await
            .unwrap();
        let bodies: Vec<String> = output
            .batches
            .iter()
            .flat_map(|b| {
                let c = b.column(0).as_string::<i32>();
                (0..b.num_rows())
                    .map(|i| c.value(i).to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(bodies, ["body 6", "body 7"]);
        assert_eq!(
            sql_count(
                &engine,
                &format!(
                    "SELECT count(*) FROM errors WHERE trace_id = '{}'",
                    trace_id(1)
                ),
                &all
            )
            .await,
            2
        );
        // A key sees its own project only, in every table.
        let p2 = ProjectScope::Project("p2".into());
        assert_eq!(
            sql_count(&engine, "SELECT count(*) FROM logs", &p2).await,
            10
        );
        assert_eq!(
            sql_count(
                &engine,
                "SELECT count(*) FROM logs WHERE project = 'p1'",
                &p2
            )
            .await,
            0
        );
        assert_eq!(
            sql_count(&engine, "SELECT count(*) FROM errors", &p2).await,
            0
        );
        // Time filters prune on the table's own time column.
        assert_eq!(
            sql_count(
                &engine,
                "SELECT count(*) FROM logs WHERE time >= to_timestamp_nanos(0) + INTERVAL '1' SECOND",
                &all
            )
            .await,
            50
        );
    };

    // Buffered, then after a restart (replayed from the WAL's IPC records).
    check(Arc::clone(&lake)).await;
    drop(lake);
    let lake = Lake::open(config.clone()).await.unwrap();
    check(Arc::clone(&lake)).await;

    // Flushed: each table under its own folder, and still the same rows.
    lake.flush_all().await.unwrap();
    assert_eq!(lake.stats().buffered_rows, 0);
    let logs = parquet_files_under(dir.path(), "logs");
    assert_eq!(logs.len(), 2, "{logs:?}");
    assert!(
        logs.iter()
            .any(|p| p.starts_with("logs/project=p1/service=checkout/date=2025-11-24/hour=16/")),
        "{logs:?}"
    );
    assert_eq!(parquet_files_under(dir.path(), "errors").len(), 1);
    check(Arc::clone(&lake)).await;
    lake.shutdown().await.unwrap();
    drop(lake);
    let lake = Lake::open(config).await.unwrap();
    check(Arc::clone(&lake)).await;

    // A trace id that is in no file: every file is pruned by the catalog.
    let engine = QueryEngine::new(Arc::clone(&lake), query_config()).unwrap();
    let output = engine
        .sql(
            &format!(
                "EXPLAIN ANALYZE SELECT * FROM logs WHERE trace_id = '{}'",
                trace_id(999)
            ),
            &ProjectScope::All,
        )
        .await
        .unwrap();
    let plan = arrow::util::pretty::pretty_format_batches(&output.batches)
        .unwrap()
        .to_string();
    assert!(plan.contains("files=0/2"), "{plan}");
    lake.shutdown().await.unwrap();
}

/// Compaction merges the files of `logs` and `errors` like those of `spans`:
/// the same rows, read through SQL, and a trace filter that still prunes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_errors_files_are_compacted_like_spans() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(common::storage_config(dir.path()))
        .await
        .unwrap();
    for (first, n) in [(0, 20), (20, 30)] {
        lake.write(rows(Table::Logs, "p1", "checkout", first, n))
            .await
            .unwrap();
        lake.write(rows(Table::Errors, "p1", "checkout", first, 3))
            .await
            .unwrap();
        lake.flush_all().await.unwrap();
    }
    assert_eq!(parquet_files_under(dir.path(), "logs").len(), 2);
    let engine = QueryEngine::new(Arc::clone(&lake), query_config()).unwrap();
    let all = ProjectScope::All;
    let answers = || async {
        let output = engine
            .sql(
                "SELECT 'logs', count(*), min(body), max(body), count(DISTINCT trace_id) FROM logs \
                 UNION ALL SELECT 'errors', count(*), min(trace_id), max(trace_id), \
                 count(DISTINCT event_id) FROM errors ORDER BY 1",
                &all,
            )
            .await
            .unwrap();
        arrow::util::pretty::pretty_format_batches(&output.batches)
            .unwrap()
            .to_string()
    };
    let before = answers().await;
    assert_eq!(
        sql_count(&engine, "SELECT count(*) FROM logs", &all).await,
        50
    );

    let policy = lighttrace_storage::CompactionPolicy {
        min_age: Duration::ZERO,
        delete_delay: Duration::ZERO,
        ..Default::default()
    };
    let report = lake
        .compact(&policy, std::time::SystemTime::now())
        .await
        .unwrap();
    assert_eq!((report.files_in, report.files_out), (4, 2), "{report:?}");
    assert_eq!(report.files_deleted, 4, "{report:?}");
    assert_eq!(parquet_files_under(dir.path(), "logs").len(), 1);
    assert_eq!(parquet_files_under(dir.path(), "errors").len(), 1);
    assert_eq!(answers().await, before);

    // The merged file's trace filter knows the traces of both inputs.
    for (id, expected) in [(trace_id(3), 2), (trace_id(20), 2), (trace_id(999), 0)] {
        assert_eq!(
            sql_count(
                &engine,
                &format!("SELECT count(*) FROM logs WHERE trace_id = '{id}'"),
                &all
            )
            .await,
            expected,
            "{id}"
        );
    }
    let output = engine
        .sql(
            &format!(
                "EXPLAIN ANALYZE SELECT * FROM logs WHERE trace_id = '{}'",
                trace_id(999)
            ),
            &all,
        )
        .await
        .unwrap();
    let plan = arrow::util::pretty::pretty_format_batches(&output.batches)
        .unwrap()
        .to_string();
    assert!(plan.contains("files=0/1"), "{plan}");
    drop(engine);
    lake.shutdown().await.unwrap();
}

/// A receiver's record that decodes to spans and errors at once (a Sentry
/// envelope): both are applied, and replayed, together.
struct SpansAndErrors;

impl WalRecordDecoder for SpansAndErrors {
    fn decode(&self, kind: u8, body: &[u8]) -> Result<Vec<RecordBatch>, String> {
        assert_eq!((kind, body), (40, &b"envelope"[..]));
        Ok(vec![
            common::hour_batch(1),
            rows(Table::Errors, "p1", "web", 0, 3),
        ])
    }
}

#[tokio::test]
async fn one_record_can_hold_batches_of_several_tables() {
    let dir = tempfile::tempdir().unwrap();
    let config = StorageConfig {
        wal_decoder: Some(Arc::new(SpansAndErrors)),
        ..common::storage_config(dir.path())
    };
    let lake = Lake::open(config.clone()).await.unwrap();
    let batches = SpansAndErrors.decode(40, b"envelope").unwrap();
    let expected_spans = batches[0].num_rows() as i64;
    let receipt = lake
        .write_logged_batches(batches, 40, vec![Bytes::from_static(b"envelope")])
        .await
        .unwrap();
    assert_eq!(receipt.rows as i64, expected_spans + 3);
    drop(lake);
    let lake = Lake::open(config).await.unwrap();
    let engine = QueryEngine::new(Arc::clone(&lake), query_config()).unwrap();
    let all = ProjectScope::All;
    assert_eq!(
        sql_count(&engine, "SELECT count(*) FROM errors", &all).await,
        3
    );
    assert_eq!(
        sql_count(&engine, "SELECT count(*) FROM spans", &all).await,
        expected_spans
    );
    lake.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_batch_of_no_table_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(common::storage_config(dir.path()))
        .await
        .unwrap();
    let logs = rows(Table::Logs, "p", "s", 0, 2);
    let wrong = logs.project(&[0, 1, 2]).unwrap();
    let err = lake.write(wrong).await.unwrap_err();
    assert!(err.to_string().contains("none of the tables"), "{err}");
    lake.shutdown().await.unwrap();
}
