//! The named reports (issue 4) on generated traffic, checked against an
//! independent computation over the same Parquet files: `reports_check.py`
//! recomputes every report with DuckDB (exact `quantile_cont`) and plain Python
//! (critical path, N+1 runs, exemplar slices). Plus the HTTP side:
//! `GET /api/v1/reports`, `GET /api/v1/reports/{name}` (rows, 400, 404), and
//! `lighttrace report --server`.

mod common;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use common::*;

#[test]
fn reports_match_an_independent_computation() {
    let Some(python) = python() else {
        return;
    };
    let mut server = TestServer::start();
    generate_traffic(&server, 3000, 11);
    run_ok(
        Command::new(&python)
            .arg(python_script("reports_check.py"))
            .arg("inject")
            .arg(server.url()),
        Duration::from_secs(60),
    );

    // Over HTTP, while the server runs.
    let agent = http_agent();
    let list = http_get(&agent, &format!("{}/api/v1/reports", server.url())).unwrap();
    assert_eq!(list.status, 200, "{}", list.text());
    let list: Value = serde_json::from_slice(&list.body).unwrap();
    let names: Vec<&str> = list["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "latency",
            "bottlenecks",
            "exemplars",
            "errors",
            "n-plus-one",
            "service-graph"
        ]
    );

    let latency = http_get(
        &agent,
        &format!(
            "{}/api/v1/reports/latency?service=cartservice&from=-1d&name=%2FGetCart",
            server.url()
        ),
    )
    .unwrap();
    assert_eq!(latency.status, 200, "{}", latency.text());
    let rows = SqlResult::from_json(&serde_json::from_slice(&latency.body).unwrap());
    assert_eq!(rows.rows.len(), 1, "{:?}", rows.rows);
    let count = as_i64(rows.get(0, "count"));
    assert_eq!(
        count,
        server.query_i64(
            "SELECT count(*) FROM spans WHERE service_name = 'cartservice' AND name = '/GetCart'"
        )
    );
    assert!(as_f64(rows.get(0, "p50_ms")) <= as_f64(rows.get(0, "p99_ms")));

    // A value is a value: quotes in it do not become SQL.
    let injected = http_get(
        &agent,
        &format!(
            "{}/api/v1/reports/latency?service=x%27%20OR%20%271%27%3D%271",
            server.url()
        ),
    )
    .unwrap();
    assert_eq!(injected.status, 200, "{}", injected.text());
    let rows = SqlResult::from_json(&serde_json::from_slice(&injected.body).unwrap());
    assert!(rows.rows.is_empty(), "{:?}", rows.rows);

    for (path, status, message) in [
        (
            "/api/v1/reports/latency?servce=x",
            400,
            "no parameter \"servce\"",
        ),
        (
            "/api/v1/reports/latency?from=soon",
            400,
            "parameter \"from\"",
        ),
        (
            "/api/v1/reports/exemplars?percentile=101",
            400,
            "outside 0..100",
        ),
        ("/api/v1/reports/nope", 404, "no report \"nope\""),
    ] {
        let response = http_get(&agent, &format!("{}{path}", server.url())).unwrap();
        assert_eq!(response.status, status, "{path}: {}", response.text());
        let body: Value = serde_json::from_slice(&response.body).unwrap();
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(message), "{path}: {error}");
    }

    // The CLI against the server prints what the server computed.
    let output = lighttrace(
        &[
            "report",
            "errors",
            "--server",
            &server.url(),
            "--format",
            "json",
        ],
        Duration::from_secs(60),
    );
    let errors: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        !errors.as_array().unwrap().is_empty(),
        "generated traffic has errors: {errors}"
    );

    server.terminate();
    let output = run_ok(
        Command::new(&python)
            .arg(python_script("reports_check.py"))
            .arg("check")
            .arg(LIGHTTRACE)
            .arg(server.data_dir()),
        Duration::from_secs(600),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}");
    assert!(stdout.contains("all reports match"), "{stdout}");
}
