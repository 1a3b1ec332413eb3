//! The `critical_path` SQL aggregate and report parameter binding, on a lake
//! holding the hand-computed trace of issue 4: root A [0, 100 ms] with children
//! B [10, 25], D [28, 60] and C [30, 90]. A and B are flushed to Parquet, C and D
//! stay buffered, so the aggregate merges partial states from several scans.

mod common;

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use lighttrace_model::{Source, SpanBatchBuilder, SpanKind, SpanRecord, StatusCode};
use lighttrace_query::reports::{find_report, run_report};
use lighttrace_query::{ProjectScope, QueryConfig, QueryEngine};
use lighttrace_storage::Lake;

use common::{BASE_NS, storage_config};

const MS: i64 = 1_000_000;

/// (span, parent, service, name, start ms, end ms)
type Row<'a> = (u8, Option<u8>, &'a str, &'a str, i64, i64);

fn batch(spans: &[Row], trace: u8) -> RecordBatch {
    let mut builder = SpanBatchBuilder::new();
    for &(id, parent, service, name, start, end) in spans {
        builder.append(&SpanRecord {
            project: "p",
            trace_id: [0xee, trace, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            span_id: [0xee, trace, id, 0, 0, 0, 0, 1],
            parent_span_id: parent.map(|p| [0xee, trace, p, 0, 0, 0, 0, 1]),
            trace_state: None,
            service_name: service,
            name,
            kind: if parent.is_none() {
                SpanKind::Server
            } else {
                SpanKind::Client
            },
            start_time_ns: BASE_NS + start * MS,
            end_time_ns: BASE_NS + end * MS,
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
    builder.finish()
}

async fn lake(dir: &std::path::Path) -> std::sync::Arc<Lake> {
    let lake = Lake::open(storage_config(dir)).await.unwrap();
    lake.write(batch(
        &[
            (1, None, "front", "A", 0, 100),
            (2, Some(1), "front", "B", 10, 25),
        ],
        1,
    ))
    .await
    .unwrap();
    // A second trace: one root with one child covering [20, 50] of [0, 50].
    lake.write(batch(
        &[
            (1, None, "front", "A", 0, 50),
            (2, Some(1), "back", "E", 20, 50),
        ],
        2,
    ))
    .await
    .unwrap();
    lake.flush_all().await.unwrap();
    lake.write(batch(
        &[
            (3, Some(1), "back", "D", 28, 60),
            (4, Some(1), "back", "C", 30, 90),
        ],
        1,
    ))
    .await
    .unwrap();
    lake
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn critical_path_aggregate_matches_the_hand_computed_trace() {
    let dir = tempfile::tempdir().unwrap();
    let engine = QueryEngine::new(lake(dir.path()).await, QueryConfig::default()).unwrap();
    let output = engine
        .sql(
            "WITH t AS (
               SELECT trace_id, critical_path(span_id, parent_span_id, start_time, end_time,
                                              kind, service_name, name) AS spans
               FROM spans GROUP BY trace_id
             )
             SELECT trace_id, s['name'], s['depth'], s['self_time_ns'], s['critical_path_ns']
             FROM (SELECT trace_id, unnest(spans) AS s FROM t)
             ORDER BY trace_id, s['name']",
            &ProjectScope::All,
        )
        .await
        .unwrap();
    let mut got: BTreeMap<(String, String), (i64, i64, i64)> = BTreeMap::new();
    for batch in &output.batches {
        let trace = batch.column(0).as_string::<i32>();
        let name = batch.column(1).as_string::<i32>();
        let int = |i: usize| batch.column(i).as_primitive::<Int64Type>().clone();
        let (depth, self_time, critical) = (int(2), int(3), int(4));
        for row in 0..batch.num_rows() {
            assert!(!name.is_null(row));
            got.insert(
                (trace.value(row)[..4].to_owned(), name.value(row).to_owned()),
                (
                    depth.value(row),
                    self_time.value(row) / MS,
                    critical.value(row) / MS,
                ),
            );
        }
    }
    let want: BTreeMap<(String, String), (i64, i64, i64)> = [
        // Issue 4: critical path C 60, A 25, B 15, D 0; A's self time 23 ms.
        (("ee01", "A"), (0, 23, 25)),
        (("ee01", "B"), (1, 15, 15)),
        (("ee01", "C"), (1, 60, 60)),
        (("ee01", "D"), (1, 32, 0)),
        (("ee02", "A"), (0, 20, 20)),
        (("ee02", "E"), (1, 30, 30)),
    ]
    .into_iter()
    .map(|((t, n), v)| ((t.to_owned(), n.to_owned()), v))
    .collect();
    assert_eq!(got, want);

    // Summed per operation: trace ee01's four operations, most critical first.
    let output = engine
        .sql(
            "SELECT o['service_name'] || ' ' || o['name'], o['spans'], o['critical_path_ns'] / 1000000
             FROM (SELECT unnest(critical_path_by_operation(span_id, parent_span_id, start_time,
                                 end_time, kind, service_name, name)) AS o
                   FROM spans WHERE trace_id LIKE 'ee01%' GROUP BY trace_id)",
            &ProjectScope::All,
        )
        .await
        .unwrap();
    let text = output.to_pretty_string().unwrap();
    let rows: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("| ") && !l.contains("spans"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        rows,
        [
            "| back C | 1 | 60 |",
            "| front A | 1 | 25 |",
            "| front B | 1 | 15 |",
            "| back D | 1 | 0 |"
        ],
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_bind_parameters_as_values() {
    let dir = tempfile::tempdir().unwrap();
    let engine = QueryEngine::new(lake(dir.path()).await, QueryConfig::default()).unwrap();
    let latency = find_report("latency").unwrap();
    let params = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let wide = [
        ("from", "2024-01-01T00:00:00Z"),
        ("to", "2024-01-02T00:00:00Z"),
    ];
    let rows = |output: lighttrace_query::QueryOutput| -> Vec<(String, String, i64)> {
        let mut rows = Vec::new();
        for batch in &output.batches {
            let service = batch
                .column_by_name("service_name")
                .unwrap()
                .as_string::<i32>();
            let name = batch.column_by_name("name").unwrap().as_string::<i32>();
            let count = batch
                .column_by_name("count")
                .unwrap()
                .as_primitive::<Int64Type>();
            for row in 0..batch.num_rows() {
                rows.push((
                    service.value(row).to_owned(),
                    name.value(row).to_owned(),
                    count.value(row),
                ));
            }
        }
        rows
    };
    let all = run_report(&engine, latency, &params(&wide), &ProjectScope::All)
        .await
        .unwrap();
    assert_eq!(
        rows(all),
        [
            ("back".into(), "C".into(), 1),
            ("back".into(), "D".into(), 1),
            ("back".into(), "E".into(), 1),
            ("front".into(), "A".into(), 2),
            ("front".into(), "B".into(), 1),
        ]
    );
    let mut filtered = params(&wide);
    filtered.push(("service".into(), "back".into()));
    filtered.push(("name".into(), "E".into()));
    let one = run_report(&engine, latency, &filtered, &ProjectScope::All)
        .await
        .unwrap();
    assert_eq!(rows(one), [("back".into(), "E".into(), 1)]);
    // The range excludes everything: [from, to) before the spans.
    let before = params(&[
        ("from", "2023-12-31T00:00:00Z"),
        ("to", "2024-01-01T00:00:00Z"),
    ]);
    let none = run_report(&engine, latency, &before, &ProjectScope::All)
        .await
        .unwrap();
    assert!(rows(none).is_empty());
    // Without `bucket` the bucket is NULL; with it, one row per bucket.
    let buckets = |output: &lighttrace_query::QueryOutput| -> Vec<Option<i64>> {
        output
            .batches
            .iter()
            .flat_map(|batch| {
                let bucket = batch.column_by_name("bucket").unwrap();
                let bucket =
                    arrow::compute::cast(bucket, &arrow::datatypes::DataType::Int64).unwrap();
                bucket
                    .as_primitive::<Int64Type>()
                    .iter()
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let unbucketed = run_report(&engine, latency, &params(&wide), &ProjectScope::All)
        .await
        .unwrap();
    assert_eq!(buckets(&unbucketed), [None; 5]);
    let mut bucketed = params(&wide);
    bucketed.push(("bucket".into(), "25ms".into()));
    let bucketed = run_report(&engine, latency, &bucketed, &ProjectScope::All)
        .await
        .unwrap();
    let at = |ms: i64| Some(BASE_NS + ms * MS);
    assert_eq!(buckets(&bucketed), [at(0), at(0), at(0), at(25), at(25)]);
    assert_eq!(
        rows(bucketed),
        [
            ("back".into(), "E".into(), 1),
            ("front".into(), "A".into(), 2),
            ("front".into(), "B".into(), 1),
            ("back".into(), "C".into(), 1),
            ("back".into(), "D".into(), 1),
        ]
    );
    // Another project's caller sees nothing.
    let other = run_report(
        &engine,
        latency,
        &params(&wide),
        &ProjectScope::Project("q".into()),
    )
    .await
    .unwrap();
    assert!(rows(other).is_empty());
}
