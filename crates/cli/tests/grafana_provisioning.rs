//! The Grafana files in `deploy/grafana/` against the real binary.
//!
//! A Grafana server is not available to the tests, so
//! `tests/python/grafana_provisioning.py` does what Grafana does with the
//! files: it reads the data source provisioning with Grafana's environment
//! expansion, runs each data source's health check, expands the dashboard's
//! template variables and the PostgreSQL data source's macros as Grafana's
//! frontend and `macros.go` do, runs every panel's SQL over the Postgres wire
//! protocol as one simple query (like pgx), checks the columns Grafana's
//! frames need, follows the table's trace links as the Tempo and Jaeger data
//! sources would, and sends the TraceQL metrics panels' queries the way
//! Grafana's Tempo backend does. See the script's docstring for every check.
//!
//! The server runs with a project, so every data source must carry the key
//! (header or password) the provisioning file gives it. Traffic is the
//! hipster-shop topology from `lighttrace gen`, spread over the last 30
//! minutes (inside the dashboard's default range, the last hour).

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::*;

const KEY: &str = "grafana-key";
const CLIENT_TIMEOUT: Duration = Duration::from_secs(300);

fn server_with_traffic() -> TestServer {
    let server = TestServer::builder()
        .with_pg()
        .env("LIGHTTRACE_PROJECT", format!("7:{KEY}"))
        .start();
    let topology = hipster_shop_topology();
    let header = format!("Authorization=Bearer {KEY}");
    let output = lighttrace(
        &[
            "gen",
            "--topology",
            topology.to_str().expect("UTF-8 path"),
            "--traces",
            "1500",
            "--seed",
            "11",
            "--window",
            "30m",
            "--target",
            &server.url(),
            "--header",
            &header,
            "--no-progress",
        ],
        Duration::from_secs(300),
    );
    eprintln!(
        "gen: {}",
        String::from_utf8_lossy(&output.stderr).trim_end()
    );
    server
}

/// Runs the checker on `panels` (`postgres` or `tempo`); the report of a
/// successful run, else a panic with what failed.
fn check_dashboard(
    python: &std::path::Path,
    server: &TestServer,
    panels: &str,
) -> serde_json::Value {
    let http = server.url().trim_start_matches("http://").to_owned();
    let output: Output = run_with_timeout(
        Command::new(python)
            .arg(python_script("grafana_provisioning.py"))
            .arg("--deploy")
            .arg(repo_root().join("deploy/grafana"))
            .args(["--http", &http])
            .args(["--pg", &server.pg_addr().to_string()])
            .args(["--key", KEY])
            .args(["--panels", panels]),
        CLIENT_TIMEOUT,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: String = stdout.trim_end().chars().take(6000).collect();
    assert!(
        output.status.success(),
        "grafana_provisioning.py --panels {panels} failed ({}):\n{}\n--- report (start) ---\n{report}\n{}",
        output.status,
        stderr.trim_end(),
        server.logs()
    );
    serde_json::from_str(stdout.lines().last().unwrap_or("{}")).expect("a JSON report")
}

#[test]
fn postgres_panels_variable_and_trace_links_work_on_lighttrace() {
    let Some(python) = python() else {
        return;
    };
    let server = server_with_traffic();
    let report = check_dashboard(&python, &server, "postgres");
    eprintln!("{report:#}");

    let services = report["variable"]["service"]["values"]
        .as_array()
        .expect("the service variable's values");
    assert_eq!(
        services.len(),
        10,
        "hipster-shop has 10 services: {services:?}"
    );
    // The repeated latency panel once per service, four more time series /
    // table panels, every one with rows.
    let panels = report["panels"].as_array().expect("panels");
    assert_eq!(panels.len(), services.len() + 4, "{panels:#?}");
    for panel in panels {
        assert!(panel["rows"].as_u64().unwrap_or(0) > 0, "{panel:#}");
    }
    // The SQL that reached LightTrace is plain SQL: no macro is left.
    for panel in panels {
        let sql = panel["sql"].as_str().expect("sql");
        assert!(!sql.contains('$'), "{sql}");
        assert!(sql.contains(" BETWEEN '"), "{sql}");
    }
    // Both trace links (Tempo and Jaeger) opened the slowest trace, whole.
    let links = report["links"].as_array().expect("links");
    assert_eq!(links.len(), 2, "{links:#?}");
    assert!(links.iter().all(|link| link["spans"].as_u64() > Some(1)));
}

#[test]
fn traceql_metrics_panels_with_exemplars_work_on_lighttrace() {
    let Some(python) = python() else {
        return;
    };
    let server = server_with_traffic();
    // Fails, naming the endpoint, while GET /api/metrics/query_range is missing.
    let report = check_dashboard(&python, &server, "tempo");
    eprintln!("{report:#}");
    let tempo = report["tempo"].as_array().expect("tempo panels");
    assert_eq!(tempo.len(), 2, "{tempo:#?}");
    for panel in tempo {
        assert_eq!(panel["status"], 200, "{panel:#}");
        assert!(panel["exemplars"].as_u64() > Some(0), "{panel:#}");
    }
}
