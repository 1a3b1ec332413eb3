//! `lighttrace compact` against the real binary: the small files of closed
//! hours are merged, every query answers as before, the replaced files are
//! gone from the disk, and a running server's lake is left to the server.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use common::*;

const TIMEOUT: Duration = Duration::from_secs(180);

/// Hipster-shop traffic over three hours that ended long ago, written straight
/// into `data` (every run flushes its own files).
fn gen_into(data: &Path, seed: &str) {
    let topology = hipster_shop_topology();
    run_ok(
        Command::new(LIGHTTRACE)
            .args(["gen", "--topology"])
            .arg(&topology)
            .args(["--traces", "300", "--seed", seed])
            .args(["--start", "2026-01-05T10:00:00Z", "--window", "3h"])
            .arg("--data")
            .arg(data)
            .args(["--no-progress", "--json"]),
        TIMEOUT,
    );
}

/// Answers that must not change when files are merged.
const QUERIES: [&str; 4] = [
    "SELECT count(*), count(DISTINCT span_id), count(DISTINCT trace_id) FROM spans",
    "SELECT service_name, date_trunc('hour', start_time) AS hour, count(*), sum(duration_ns), \
     max(duration_ns) FROM spans GROUP BY 1, 2 ORDER BY 1, 2",
    "SELECT trace_id, count(*) FROM spans WHERE status_code = 'ERROR' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5",
    "SELECT span_id, name FROM spans WHERE trace_id = (SELECT min(trace_id) FROM spans) ORDER BY 1",
];

fn answers(data: &Path) -> Vec<String> {
    let data = data.to_str().expect("UTF-8 path");
    QUERIES
        .iter()
        .map(|sql| {
            let output = lighttrace(&["sql", sql, "--data", data, "--format", "csv"], TIMEOUT);
            String::from_utf8_lossy(&output.stdout).into_owned()
        })
        .collect()
}

fn compact(data: &Path) -> Value {
    let output = lighttrace(
        &[
            "compact",
            "--data",
            data.to_str().expect("UTF-8 path"),
            "--json",
        ],
        TIMEOUT,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("compact --json printed {stdout:?}: {e}"))
}

#[test]
fn compact_merges_closed_hours_and_every_answer_stays_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lake");
    for seed in ["1", "2", "3"] {
        gen_into(&data, seed);
    }
    let files_before = parquet_files(&data).len();
    let before = answers(&data);
    assert!(
        before[0]
            .lines()
            .nth(1)
            .is_some_and(|row| !row.starts_with("0,")),
        "{before:?}"
    );

    let report = compact(&data);
    eprintln!("{report}");
    let files_after = parquet_files(&data).len();
    assert_eq!(
        as_i64(&report["files_before"]),
        files_before as i64,
        "{report}"
    );
    assert_eq!(
        as_i64(&report["files_after"]),
        files_after as i64,
        "{report}"
    );
    // Each run wrote a file per partition-hour; one is left of each.
    assert!(
        files_after < files_before,
        "{files_before} -> {files_after}"
    );
    let mut per_folder = std::collections::BTreeMap::new();
    for file in parquet_files(&data) {
        *per_folder
            .entry(file.parent().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    assert!(per_folder.values().all(|&n| n == 1), "{per_folder:?}");
    assert_eq!(
        as_i64(&report["files_deleted"]),
        as_i64(&report["files_in"]),
        "the replaced files are deleted: {report}"
    );
    assert_eq!(answers(&data), before, "answers after compaction");

    // Nothing left to merge.
    let again = compact(&data);
    assert_eq!(as_i64(&again["files_in"]), 0, "{again}");
    assert_eq!(parquet_files(&data).len(), files_after);

    // A running server owns the lake: the command says so and changes nothing.
    let mut server = TestServer::builder().data_dir(&data).start();
    let output = Command::new(LIGHTTRACE)
        .args(["compact", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("running server"), "{stderr}");
    let total = server.query_i64("SELECT count(*) FROM spans");
    assert_eq!(
        total.to_string(),
        before[0].lines().nth(1).unwrap().split(',').next().unwrap()
    );

    // Spans only the WAL holds (the server was killed before flushing them)
    // are the server's to flush: the command refuses and changes nothing.
    let (request, _) = trace_request("late", 7, 1, 4, now_ns());
    assert_eq!(server.post_otlp(&request).unwrap().status, 200);
    server.kill_9();
    let files = parquet_files(&data);
    let output = Command::new(LIGHTTRACE)
        .args(["compact", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("4 spans that are in no file yet"),
        "{stderr}"
    );
    assert_eq!(parquet_files(&data), files);
    let server = TestServer::builder().data_dir(&data).start();
    assert_eq!(server.query_i64("SELECT count(*) FROM spans"), total + 4);
}
