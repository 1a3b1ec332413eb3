//! Invariant 6: the lake is plain Parquet in Hive-style folders that DuckDB reads
//! directly. Generated traffic goes in, SIGTERM flushes it, and DuckDB
//! (`tests/python/duckdb_count.py`) must count the same spans, per service, as
//! LightTrace does, with every span in the `service=` folder of its own service.

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
    server.terminate();

    let output = run_ok(
        Command::new(python)
            .arg(python_script("duckdb_count.py"))
            .arg(server.data_dir()),
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
