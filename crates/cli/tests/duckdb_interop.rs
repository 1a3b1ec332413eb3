//! Invariant 6: the lake is plain Parquet in Hive-style folders that DuckDB reads
//! directly. Generated traffic goes in, SIGTERM flushes it, and DuckDB
//! (`tests/python/duckdb_count.py`) must count the same spans, per service, as
//! LightTrace does, with every span in the `service=` folder of its own service,
//! and find one trace by its binary id (through DuckDB's own pruning) with the
//! same span ids.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use common::*;

fn counts_by_service(result: &SqlResult) -> BTreeMap<String, i64> {
    result
        .rows
        .iter()
        .map(|row| (as_str(&row[0]).to_owned(), as_i64(&row[1])))
        .collect()
}

fn json_counts(value: &Value) -> BTreeMap<String, i64> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("{value} is not an object"))
        .iter()
        .map(|(service, n)| (service.clone(), as_i64(n)))
        .collect()
}

#[test]
fn duckdb_reads_the_lake_with_the_same_counts() {
    let Some(python) = python() else {
        return;
    };
    let mut server = TestServer::start();
    generate_traffic(&server, 300, 42);

    let total = server.query_i64("SELECT count(*) FROM spans");
    assert!(total >= 300, "300 traces gave {total} spans");
    let by_service = counts_by_service(&server.query(
        "SELECT service_name, count(*) FROM spans GROUP BY service_name ORDER BY service_name",
    ));
    // The trace with the most spans, and its span ids.
    let trace = server.query(
        "SELECT trace_id FROM spans GROUP BY trace_id ORDER BY count(*) DESC, trace_id LIMIT 1",
    );
    let trace_id = as_str(&trace.rows[0][0]).to_owned();
    let span_ids: Vec<Value> = server
        .query(&format!(
            "SELECT span_id FROM spans WHERE trace_id = '{trace_id}' ORDER BY span_id"
        ))
        .rows
        .iter()
        .map(|row| row[0].clone())
        .collect();
    assert!(span_ids.len() > 1, "trace {trace_id} has {span_ids:?}");
    server.terminate();

    let output = run_ok(
        Command::new(python)
            .arg(python_script("duckdb_count.py"))
            .arg(server.data_dir())
            .arg(&trace_id),
        Duration::from_secs(120),
    );
    let duckdb: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "duckdb_count.py printed no JSON ({err}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    eprintln!("DuckDB: {duckdb}");
    assert_eq!(
        as_i64(&duckdb["count"]),
        total,
        "span count, DuckDB vs LightTrace"
    );
    assert_eq!(
        json_counts(&duckdb["by_service_name"]),
        by_service,
        "per-service counts (service_name column), DuckDB vs LightTrace"
    );
    assert_eq!(
        json_counts(&duckdb["by_service_folder"]),
        by_service,
        "per-service counts (service= folders), DuckDB vs LightTrace"
    );

    let spans = span_ids.len() as i64;
    assert_eq!(
        as_i64(&duckdb["trace"]["by_bytes"]),
        spans,
        "spans of trace {trace_id} found by DuckDB with trace_id = unhex(…)"
    );
    assert_eq!(
        as_i64(&duckdb["trace"]["by_hex"]),
        spans,
        "spans of trace {trace_id} found by DuckDB with lower(hex(trace_id)) = …"
    );
    assert_eq!(
        duckdb["trace"]["span_ids"],
        Value::Array(span_ids),
        "span ids of trace {trace_id}, DuckDB vs LightTrace"
    );

    // The CLI reading the data dir directly (no server) agrees too.
    let data_dir = server.data_dir().to_str().expect("UTF-8 path").to_owned();
    let csv = lighttrace(
        &[
            "sql",
            "SELECT count(*) AS n FROM spans",
            "--data",
            &data_dir,
            "--format",
            "csv",
        ],
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&csv.stdout);
    let mut lines = stdout
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty());
    assert_eq!(lines.next(), Some("n"), "CSV header in {stdout:?}");
    assert_eq!(
        lines.next(),
        Some(total.to_string().as_str()),
        "CSV value in {stdout:?}"
    );
    assert_eq!(lines.next(), None, "one row in {stdout:?}");
}
