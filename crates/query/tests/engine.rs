//! Engine behaviour that SQL files cannot express: concurrency with flushes,
//! the provider outside the engine, error messages, and the engine's lifecycle.

mod common;

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{AsArray, Int64Array};
use arrow::datatypes::{DataType, Int64Type};
use datafusion::prelude::SessionContext;
use lighttrace_query::{
    ProjectScope, QueryConfig, QueryEngine, QueryError, QueryOutput, SpansTableProvider,
    SqlDialect, SqlRequest,
};
use lighttrace_storage::Lake;

fn config() -> QueryConfig {
    QueryConfig {
        memory_limit_bytes: 256 << 20,
        timeout: Duration::from_secs(60),
        target_partitions: 2,
    }
}

fn single_count(output: &QueryOutput) -> i64 {
    let batch = output
        .batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .expect("one row");
    batch.column(0).as_primitive::<Int64Type>().value(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_span_is_counted_once_while_flushes_commit() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(common::storage_config(dir.path()))
        .await
        .unwrap();
    let engine = Arc::new(QueryEngine::new(Arc::clone(&lake), config()).unwrap());
    let mut expected = 0;
    for hour in 0..common::HOURS {
        let batch = common::hour_batch(hour);
        expected += batch.num_rows() as i64;
        lake.write(batch).await.unwrap();

        // Flush while queries run: each must see every span exactly once.
        let flusher = {
            let lake = Arc::clone(&lake);
            tokio::spawn(async move { lake.flush_all().await })
        };
        for _ in 0..5 {
            let output = engine
                .sql("SELECT count(*) FROM spans", &ProjectScope::All)
                .await
                .unwrap();
            assert_eq!(single_count(&output), expected);
            let distinct = engine
                .sql(
                    "SELECT count(DISTINCT span_id) FROM spans",
                    &ProjectScope::All,
                )
                .await
                .unwrap();
            assert_eq!(single_count(&distinct), expected);
        }
        flusher.await.unwrap().unwrap();
    }
    lake.shutdown().await.unwrap();
}

/// Every scan of one query reads the same snapshot, even while spans arrive
/// and flushes commit between the scans.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_scans_of_one_query_see_the_same_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(common::storage_config(dir.path()))
        .await
        .unwrap();
    let engine = QueryEngine::new(Arc::clone(&lake), config()).unwrap();
    let writer = {
        let lake = Arc::clone(&lake);
        tokio::spawn(async move {
            for n in 0..60u8 {
                lake.write(common::single_span_batch("acme", "svc", n))
                    .await
                    .unwrap();
                if n % 10 == 9 {
                    lake.flush_all().await.unwrap();
                }
            }
        })
    };
    while !writer.is_finished() {
        let output = engine
            .sql(
                "SELECT (SELECT count(*) FROM spans) - (SELECT count(DISTINCT span_id) FROM spans)",
                &ProjectScope::All,
            )
            .await
            .unwrap();
        assert_eq!(single_count(&output), 0);
    }
    writer.await.unwrap();
    let output = engine
        .sql("SELECT count(*) FROM spans", &ProjectScope::All)
        .await
        .unwrap();
    assert_eq!(single_count(&output), 60);
    lake.shutdown().await.unwrap();
}

/// Escaped partition values (`%2F`, `%25` …) must reach the object store
/// exactly as the catalog wrote them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_of_services_with_hostile_names_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(common::storage_config(dir.path()))
        .await
        .unwrap();
    let names = ["checkout/v2 %41", "../etc", "ünï code", "a=b"];
    for (i, name) in names.iter().enumerate() {
        let batch = common::single_span_batch("acme", name, i as u8);
        lake.write(batch).await.unwrap();
    }
    lake.flush_all().await.unwrap();
    let engine = QueryEngine::new(Arc::clone(&lake), config()).unwrap();
    for name in names {
        let sql = format!(
            "SELECT count(*) FROM spans WHERE service_name = '{}'",
            name.replace('\'', "''")
        );
        let output = engine.sql(&sql, &ProjectScope::All).await.unwrap();
        assert_eq!(single_count(&output), 1, "{name}");
        let plan = engine.explain(&sql, &ProjectScope::All).await.unwrap();
        assert!(plan.contains("files=1/4"), "{plan}");
    }
    lake.shutdown().await.unwrap();
}

/// A file's `project` and `service_name` are its partition's values, served as
/// constants: a query of only these columns reads no column chunk, and gets
/// every name exactly as written (escaped in the folder, or empty), from files
/// and buffers alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_columns_are_constants_of_each_file() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(common::storage_config(dir.path()))
        .await
        .unwrap();
    let services = ["checkout/v2 %41", "", "a=b", "ünï code"];
    for (i, service) in services.iter().enumerate() {
        let project = if i % 2 == 0 { "acme" } else { "globex/1" };
        for n in 0..=i as u8 {
            let batch = common::single_span_batch(project, service, 10 * i as u8 + n);
            lake.write(batch).await.unwrap();
        }
    }
    lake.flush_all().await.unwrap();
    // The same again, buffered.
    for (i, service) in services.iter().enumerate() {
        let project = if i % 2 == 0 { "acme" } else { "globex/1" };
        for n in 0..=i as u8 {
            let batch = common::single_span_batch(project, service, 100 + 10 * i as u8 + n);
            lake.write(batch).await.unwrap();
        }
    }
    let engine = QueryEngine::new(Arc::clone(&lake), config()).unwrap();
    let grouped = "SELECT project, service_name, length(service_name), count(*) FROM spans \
                   WHERE span_id {} 'cc00640000000000' GROUP BY 1, 2 ORDER BY 1, 2";
    let expected = vec![
        "acme | a=b | 3 | 3",
        "acme | checkout/v2 %41 | 15 | 1",
        "globex/1 |  | 0 | 2",
        "globex/1 | ünï code | 8 | 4",
    ];
    // Files (trace numbers below 100) and buffers give the same rows.
    assert_eq!(rows(&engine, &grouped.replace("{}", "<")).await, expected);
    assert_eq!(rows(&engine, &grouped.replace("{}", ">=")).await, expected);

    let analyzed = engine
        .sql(
            "EXPLAIN ANALYZE SELECT project, service_name, count(*) FROM spans GROUP BY 1, 2",
            &ProjectScope::All,
        )
        .await
        .unwrap()
        .explain_text();
    let parquet = analyzed
        .lines()
        .find(|line| line.contains("file_type=parquet"))
        .unwrap_or_else(|| panic!("no Parquet scan in {analyzed}"));
    assert!(parquet.contains("bytes_scanned=0,"), "{parquet}");
    lake.shutdown().await.unwrap();
}

/// Files wholly inside the query's time range are read without its time
/// filters (`CoveredExec`); files that straddle an end of it, and buffered
/// spans, with them. Every range counts the same spans as the same filter
/// written so that neither the pruning nor the scan recognizes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_inside_the_time_range_are_read_without_the_time_filters() {
    let dir = tempfile::tempdir().unwrap();
    let lake = common::fixture_lake(dir.path()).await;
    let engine = QueryEngine::new(Arc::clone(&lake), config()).unwrap();
    // Hours 0 and 1 are files, hour 2 is buffered; each hour's three traces
    // start at :00, :10 and :20, their spans a millisecond apart.
    let ranges = [
        "start_time >= '2000-01-01T00:00:00Z' AND start_time < '2100-01-01T00:00:00Z'",
        "start_time >= '2024-01-01T01:00:00Z' AND start_time < '2024-01-01T02:00:00Z'",
        "start_time >= '2024-01-01T00:05:00Z' AND start_time < '2024-01-01T01:15:00Z'",
        "start_time > '2024-01-01T00:00:00.002Z'",
        "TIMESTAMP '2024-01-01T01:20:00Z' >= start_time",
        "start_time BETWEEN '2024-01-01T00:00:00Z' AND '2024-01-01T00:20:00.001Z'",
        "start_time >= '2024-01-01T01:00:00Z' AND start_time < '2024-01-01T02:00:00Z' \
         AND (start_time < '2024-01-01T01:10:00Z' OR start_time > '2024-01-01T01:15:00Z')",
    ];
    let query = "SELECT count(*), sum(duration_ns), min(start_time), max(start_time) \
                 FROM spans WHERE {}";
    for range in ranges {
        let hidden = range.replace("start_time", "(start_time + INTERVAL '0 seconds')");
        assert_eq!(
            rows(&engine, &query.replace("{}", range)).await,
            rows(&engine, &query.replace("{}", &hidden)).await,
            "{range}"
        );
    }
    let explained = |sql: String| {
        let engine = &engine;
        async move {
            engine
                .sql(&format!("EXPLAIN {sql}"), &ProjectScope::All)
                .await
                .unwrap()
                .explain_text()
        }
    };
    // Every file inside: one scan, without the time filter.
    let plan = explained(query.replace("{}", ranges[0])).await;
    assert!(plan.contains("CoveredExec: start_time in ["), "{plan}");
    let parquet: Vec<&str> = plan
        .lines()
        .filter(|line| line.contains("file_type=parquet"))
        .collect();
    assert_eq!(parquet.len(), 1, "{plan}");
    assert!(!parquet[0].contains("start_time@"), "{plan}");
    // Hour 0 cut by the range: it keeps the filter; hour 1 is covered.
    let plan = explained(query.replace("{}", ranges[3])).await;
    let parquet: Vec<&str> = plan
        .lines()
        .filter(|line| line.contains("file_type=parquet"))
        .collect();
    assert_eq!(parquet.len(), 2, "{plan}");
    assert_eq!(
        parquet.iter().filter(|l| l.contains("start_time@")).count(),
        1,
        "{plan}"
    );
    lake.shutdown().await.unwrap();
}

/// Files of one project or service are read without filters on that value
/// (`CoveredExec`): the lake pruned the other partitions, and the answers are
/// those of the same filters written so that neither recognizes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_on_the_partition_of_every_file_are_not_pushed_into_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    let lake = common::fixture_lake(dir.path()).await;
    let engine = QueryEngine::new(Arc::clone(&lake), config()).unwrap();
    let filters = [
        "service_name = 'cart'",
        "'cart' = service_name AND project = 'acme'",
        "service_name IN ('cart', 'nothing')",
        "service_name = 'cart' AND name <> 'x'",
        "service_name IN ('cart', 'payments')",
        "project = 'globex'",
        "service_name = ''",
    ];
    let query = "SELECT service_name, count(*), sum(duration_ns), min(start_time) \
                 FROM spans WHERE {} GROUP BY 1 ORDER BY 1";
    for filter in filters {
        let hidden = filter
            .replace("service_name", "(service_name || '')")
            .replace("project", "(project || '')");
        assert_eq!(
            rows(&engine, &query.replace("{}", filter)).await,
            rows(&engine, &query.replace("{}", &hidden)).await,
            "{filter}"
        );
    }
    let parquet_predicates = |sql: String| {
        let engine = &engine;
        async move {
            let plan = engine
                .sql(&format!("EXPLAIN {sql}"), &ProjectScope::All)
                .await
                .unwrap()
                .explain_text();
            let scans: Vec<String> = plan
                .lines()
                .filter(|line| line.contains("file_type=parquet"))
                .map(str::to_owned)
                .collect();
            (plan, scans)
        }
    };
    let (plan, scans) = parquet_predicates(query.replace("{}", filters[0])).await;
    assert!(plan.contains("service_name = cart"), "{plan}");
    assert!(!scans.is_empty(), "{plan}");
    assert!(scans.iter().all(|s| !s.contains("service_name@")), "{plan}");
    // Another filter beside it is still pushed down.
    let (plan, scans) = parquet_predicates(query.replace("{}", filters[3])).await;
    assert!(
        scans
            .iter()
            .all(|s| !s.contains("service_name@") && s.contains("name@")),
        "{plan}"
    );
    // Two services: the filter is the scan's to check.
    let (plan, scans) = parquet_predicates(query.replace("{}", filters[4])).await;
    assert!(scans.iter().any(|s| s.contains("service_name@")), "{plan}");
    lake.shutdown().await.unwrap();
}

/// The `spans` table reads text as Utf8View, but results (and the shape
/// `describe` reports) carry Utf8, also inside lists and structs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_results_are_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let lake = common::fixture_lake(dir.path()).await;
    let engine = QueryEngine::new(Arc::clone(&lake), config()).unwrap();
    let sql = "SELECT service_name, min(arrow_typeof(name)) AS read_as, \
               array_agg(DISTINCT name ORDER BY name) AS names, \
               named_struct('kind', min(kind)) AS first_kind \
               FROM spans WHERE project = 'globex' GROUP BY 1 ORDER BY 1";
    let output = engine.sql(sql, &ProjectScope::All).await.unwrap();
    let text = DataType::Utf8;
    let list = DataType::new_list(text.clone(), true);
    for (field, want) in output.schema.fields().iter().zip([&text, &text, &list]) {
        assert_eq!(field.data_type(), want, "{}", field.name());
    }
    let DataType::Struct(inner) = output.schema.field(3).data_type() else {
        panic!("{:?}", output.schema.field(3));
    };
    assert_eq!(inner[0].data_type(), &text);
    for batch in &output.batches {
        assert_eq!(batch.schema(), output.schema);
    }
    assert_eq!(
        rows(&engine, sql).await,
        [
            "api | Utf8View | [POST /orders] | {kind: server}",
            "db | Utf8View | [INSERT orders] | {kind: client}",
        ]
    );
    let shape = engine
        .describe(SqlRequest {
            sql: "SELECT name, kind FROM spans".into(),
            params: None,
            scope: ProjectScope::All,
            dialect: SqlDialect::default(),
        })
        .await
        .unwrap();
    for field in shape.schema.fields() {
        assert_eq!(field.data_type(), &text, "{}", field.name());
    }
    lake.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_queries_of_different_scopes_stay_apart() {
    let dir = tempfile::tempdir().unwrap();
    let lake = common::fixture_lake(dir.path()).await;
    let engine = Arc::new(QueryEngine::new(Arc::clone(&lake), config()).unwrap());
    let mut tasks = Vec::new();
    for i in 0..8 {
        let engine = Arc::clone(&engine);
        tasks.push(tokio::spawn(async move {
            let (scope, expected) = match i % 3 {
                0 => (ProjectScope::Project("acme".into()), 36),
                1 => (ProjectScope::Project("globex".into()), 18),
                _ => (ProjectScope::All, 54),
            };
            let output = engine
                .sql(
                    "SELECT count(*) FROM spans a WHERE project IS NOT NULL",
                    &scope,
                )
                .await
                .unwrap();
            assert_eq!(single_count(&output), expected, "{scope:?}");
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    lake.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_works_in_a_plain_datafusion_session() {
    let dir = tempfile::tempdir().unwrap();
    let lake = common::fixture_lake(dir.path()).await;
    let ctx = SessionContext::new();
    ctx.register_table(
        "spans",
        Arc::new(SpansTableProvider::new(
            Arc::clone(&lake),
            ProjectScope::Project("globex".into()),
        )),
    )
    .unwrap();
    let batches = ctx
        .sql("SELECT count(*) FROM spans WHERE service_name = 'db'")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let counts: &Int64Array = batches[0].column(0).as_primitive();
    assert_eq!(counts.value(0), 9);
    lake.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_lake_is_queryable() {
    let dir = tempfile::tempdir().unwrap();
    let lake = common::fixture_lake(dir.path()).await;
    lake.shutdown().await.unwrap();
    drop(lake);

    let lake = Lake::open_read_only(common::storage_config(dir.path()))
        .await
        .unwrap();
    let engine = QueryEngine::new(lake, config()).unwrap();
    let output = engine
        .sql("SELECT count(*) FROM spans", &ProjectScope::All)
        .await
        .unwrap();
    assert_eq!(single_count(&output), 54);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_say_what_was_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let lake = common::fixture_lake(dir.path()).await;
    let engine = QueryEngine::new(Arc::clone(&lake), config()).unwrap();
    let all = ProjectScope::All;

    let err = engine
        .sql("CREATE TABLE t (a INT)", &all)
        .await
        .unwrap_err();
    assert!(matches!(err, QueryError::Refused(_)));
    assert!(
        err.to_string()
            .starts_with("DDL is not allowed: CREATE TABLE t (a INT); only queries"),
        "{err}"
    );

    let err = engine
        .sql("SELECT nope FROM spans", &all)
        .await
        .unwrap_err();
    assert!(matches!(err, QueryError::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains("nope"), "{err}");

    let err = engine.sql("", &all).await.unwrap_err();
    assert!(matches!(err, QueryError::Invalid(_)), "{err:?}");

    let err = engine
        .sql("SELECT * FROM 'x.parquet'", &all)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "reading files is not allowed: \"x.parquet\" is a file path or URL, not a table"
    );
    lake.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_query_cancels_it_and_the_engine_lives_on() {
    let dir = tempfile::tempdir().unwrap();
    let lake = common::fixture_lake(dir.path()).await;
    let engine = QueryEngine::new(Arc::clone(&lake), config()).unwrap();
    let endless =
        "SELECT count(*) FROM generate_series(1, 1000000000) a, generate_series(1, 1000000000) b";
    let abandoned = tokio::time::timeout(
        Duration::from_millis(300),
        engine.sql(endless, &ProjectScope::All),
    )
    .await;
    assert!(abandoned.is_err(), "the cross join cannot finish in 300 ms");
    let output = engine
        .sql("SELECT count(*) FROM spans", &ProjectScope::All)
        .await
        .unwrap();
    assert_eq!(single_count(&output), 54);
    // Dropping the engine inside a runtime must not panic.
    drop(engine);
    lake.shutdown().await.unwrap();
}

/// Rows of `sql` as text, one line per row, columns joined by ` | `.
async fn rows(engine: &QueryEngine, sql: &str) -> Vec<String> {
    let output = engine.sql(sql, &ProjectScope::All).await.unwrap();
    let mut out = Vec::new();
    for batch in &output.batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| {
                arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &Default::default())
                    .unwrap()
            })
            .collect();
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            out.push(cells.join(" | "));
        }
    }
    out
}

#[tokio::test]
async fn files_of_the_text_layout_and_the_compact_layout_read_as_one_table() {
    let dir = tempfile::tempdir().unwrap();
    // Hour 0 written as earlier versions did: ids as hex text, end_time stored.
    {
        let mut config = common::storage_config(dir.path());
        config.parquet.binary_ids = false;
        config.parquet.derive_end_time = false;
        let lake = Lake::open(config).await.unwrap();
        lake.write(common::hour_batch(0)).await.unwrap();
        lake.shutdown().await.unwrap();
    }
    // Hour 1 in the compact layout, hour 2 buffered.
    let lake = Lake::open(common::storage_config(dir.path()))
        .await
        .unwrap();
    lake.write(common::hour_batch(1)).await.unwrap();
    lake.flush_all().await.unwrap();
    lake.write(common::hour_batch(2)).await.unwrap();
    assert_eq!(lake.snapshot().files.len(), 10);
    let engine = QueryEngine::new(Arc::clone(&lake), config()).unwrap();

    // The same shape of traces every hour, so every hour answers alike.
    let per_hour = rows(
        &engine,
        "SELECT date_trunc('hour', start_time), count(*), count(DISTINCT trace_id), \
         count(parent_span_id), min(length(span_id)), \
         bool_and(end_time - start_time = arrow_cast(duration_ns, 'Duration(Nanosecond)')), \
         count(*) FILTER (WHERE span_id > 'aa01000000000000' AND span_id < 'bb00000000000000') \
         FROM spans GROUP BY 1 ORDER BY 1",
    )
    .await;
    assert_eq!(
        per_hour,
        [
            "2024-01-01T00:00:00Z | 18 | 6 | 12 | 16 | true | 0",
            "2024-01-01T01:00:00Z | 18 | 6 | 12 | 16 | true | 11",
            "2024-01-01T02:00:00Z | 18 | 6 | 12 | 16 | true | 12",
        ]
    );
    for (hour, expected) in [(0u8, 4), (1, 4), (2, 4)] {
        let id = hex::encode(common::trace_id(0xaa, hour, 1));
        let found = rows(
            &engine,
            &format!(
                "SELECT count(*) FROM spans WHERE trace_id = '{id}' AND end_time > start_time"
            ),
        )
        .await;
        assert_eq!(found, [expected.to_string()], "hour {hour}");
    }
    // A self-join across the layouts: parents found in every hour.
    let joined = rows(
        &engine,
        "SELECT count(*) FROM spans c JOIN spans p ON c.parent_span_id = p.span_id",
    )
    .await;
    assert_eq!(joined, ["36"]);
}

/// Conditions on attribute entries skip the files whose catalogued value sets
/// rule them out, and count exactly what the same conditions count when the
/// pruning cannot see them (an `OR` with a never-true test of another column).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_skipped_by_their_attribute_values() {
    let dir = tempfile::tempdir().unwrap();
    let lake = common::fixture_lake(dir.path()).await;
    let engine = QueryEngine::new(Arc::clone(&lake), config()).unwrap();
    let conditions = [
        "attributes['http.route'] = '/cart'",
        "attributes['http.route'] = '/nope'",
        "attributes['http.route'] IN ('/orders', '/nope')",
        "attributes['http.route'] IS NULL",
        "attributes['http.route'] IS NOT NULL",
        "attributes['db.system'] <> 'mysql'",
        "regexp_like(attributes['http.method'], '^P')",
        "coalesce(attributes['peer.service'], resource_attributes['peer.service']) = 'stripe'",
        "attributes['nope'] IS NOT NULL",
    ];
    let query = "SELECT count(*), sum(duration_ns) FROM spans WHERE {}";
    for condition in conditions {
        let hidden = format!("({condition} OR span_id IS NULL)");
        let expected = rows(&engine, &query.replace("{}", &hidden)).await;
        assert_eq!(
            rows(&engine, &query.replace("{}", condition)).await,
            expected,
            "{condition}"
        );
    }
    let plan = engine
        .sql(
            &format!(
                "EXPLAIN {}",
                query.replace("{}", "attributes['http.route'] = '/nope'")
            ),
            &ProjectScope::All,
        )
        .await
        .unwrap()
        .explain_text();
    let files = lake.snapshot().files.len();
    assert!(
        plan.contains(&format!(
            "files=0/{files} (pruned: partition=0, time=0, trace_id=0, attributes={files})"
        )),
        "{plan}"
    );
    // Only the files with a `/cart` route are read.
    let plan = engine
        .sql(
            &format!("EXPLAIN {}", query.replace("{}", conditions[0])),
            &ProjectScope::All,
        )
        .await
        .unwrap()
        .explain_text();
    let scan = plan
        .lines()
        .find(|l| l.contains("SpansScanExec"))
        .unwrap_or_else(|| panic!("{plan}"));
    assert!(!scan.contains("attributes=0)"), "{scan}");
    assert!(!scan.contains(&format!("files={files}/")), "{scan}");
    lake.shutdown().await.unwrap();
}
