//! Projects and keys through the real binary: `LIGHTTRACE_PROJECT` turns
//! authentication on; the real OpenTelemetry Python SDK sends with its standard
//! `OTEL_EXPORTER_OTLP_HEADERS` (over HTTP and as gRPC metadata); a wrong key
//! stores nothing; `lighttrace sql --key` reads its own project only.

mod common;

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use common::*;

fn sql_as(server: &TestServer, key: Option<&str>, sql: &str) -> (u16, Value) {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("authorization", auth.as_str()));
    }
    let body = serde_json::to_vec(&json!({ "sql": sql })).unwrap();
    let response = server
        .post("/api/v1/sql", &headers, &body)
        .expect("POST /api/v1/sql");
    let value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    (response.status, value)
}

fn send(python: &std::path::Path, key: &str, args: &[&str]) -> std::process::Output {
    run_with_timeout(
        Command::new(python)
            .arg(python_script("otel_three_services.py"))
            .args(args)
            .env(
                "OTEL_EXPORTER_OTLP_HEADERS",
                format!("Authorization=Bearer {key}"),
            ),
        Duration::from_secs(120),
    )
}

#[test]
fn keys_pick_the_project_for_sdks_and_sql() {
    let Some(python) = python() else {
        return;
    };
    let server = TestServer::builder()
        .env("LIGHTTRACE_PROJECT", "1:key-one,2:key-two")
        .start();
    let url = server.url();
    let grpc = server.grpc_addr().to_string();

    // A wrong key: the SDK's exports fail (the script exits 1), nothing is stored.
    let refused = send(&python, "wrong", &["--endpoint", &url]);
    assert!(!refused.status.success(), "a wrong key was accepted");
    let refused = send(&python, "wrong", &["--grpc", &grpc]);
    assert!(
        !refused.status.success(),
        "a wrong key was accepted over gRPC"
    );

    let ok = send(&python, "key-one", &["--endpoint", &url]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let ok = send(&python, "key-two", &["--grpc", &grpc]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let (status, body) = sql_as(&server, None, "SELECT count(*) FROM spans");
    assert_eq!(status, 401, "{body}");
    let count = |key| {
        let (status, body) = sql_as(
            &server,
            Some(key),
            "SELECT project, count(*) FROM spans GROUP BY 1",
        );
        assert_eq!(status, 200, "{body}");
        body["rows"].clone()
    };
    assert_eq!(count("key-one"), json!([["1", 6]]));
    assert_eq!(count("key-two"), json!([["2", 6]]));

    // The CLI client with --key (and without: a clear error).
    let output = run_ok(
        Command::new(LIGHTTRACE).args([
            "sql",
            "--server",
            &url,
            "--key",
            "key-two",
            "--format",
            "csv",
            "SELECT DISTINCT project FROM spans",
        ]),
        Duration::from_secs(60),
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "project\n2");

    // Reports read the caller's project only: six spans each, not twelve.
    let report_count = |key: &str| {
        let output = run_ok(
            Command::new(LIGHTTRACE).args([
                "report", "latency", "--server", &url, "--key", key, "--format", "json",
            ]),
            Duration::from_secs(60),
        );
        let rows: Value = serde_json::from_slice(&output.stdout).unwrap();
        rows.as_array()
            .unwrap()
            .iter()
            .map(|row| row["count"].as_i64().unwrap())
            .sum::<i64>()
    };
    assert_eq!(report_count("key-one"), 6);
    assert_eq!(report_count("key-two"), 6);
    let anonymous = http_get(&http_agent(), &format!("{url}/api/v1/reports/latency")).unwrap();
    assert_eq!(anonymous.status, 401, "{}", anonymous.text());
    let output = run_with_timeout(
        Command::new(LIGHTTRACE).args(["sql", "--server", &url, "SELECT 1"]),
        Duration::from_secs(60),
    );
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("missing key"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
