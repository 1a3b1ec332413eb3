//! The Postgres wire protocol (`lighttrace serve --pg`) through real clients:
//! Debian's `psql` and psycopg 3 (`tests/python/pg_client.py`), against the
//! real binary with spans ingested over OTLP/HTTP.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use prost::Message;

use common::*;

const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// `psql -c SQL` (each `-c` one statement) against `server`'s `--pg` port,
/// unaligned, tuples only.
fn psql_command(psql: &std::path::Path, server: &TestServer, password: Option<&str>) -> Command {
    let addr = server.pg_addr();
    let mut command = Command::new(psql);
    command
        .args(["-X", "-w", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
        .arg(addr.ip().to_string())
        .arg("-p")
        .arg(addr.port().to_string())
        .args(["-U", "lighttrace", "-d", "lighttrace"])
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PGSSLMODE", "prefer")
        .env_remove("PGPASSWORD")
        .env_remove("PGSERVICE");
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    command
}

fn psql(
    psql: &std::path::Path,
    server: &TestServer,
    password: Option<&str>,
    sql: &[&str],
) -> Output {
    let mut command = psql_command(psql, server, password);
    for statement in sql {
        command.arg("-c").arg(statement);
    }
    run_with_timeout(&mut command, CLIENT_TIMEOUT)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).trim().to_owned()
}

fn psql_ok(
    path: &std::path::Path,
    server: &TestServer,
    password: Option<&str>,
    sql: &[&str],
) -> String {
    let output = psql(path, server, password, sql);
    assert!(
        output.status.success(),
        "psql {sql:?} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}\n{}",
        output.status,
        stdout(&output),
        stderr(&output),
        server.logs()
    );
    stdout(&output)
}

/// `traces` traces of `width` spans of `service`, sent with `key` (if any).
fn ingest(server: &TestServer, service: &str, tag: u8, traces: u64, width: u64, key: Option<&str>) {
    let start = now_ns() - 60_000_000_000;
    for n in 0..traces {
        let (request, _) = trace_request(service, tag, n, width, start + n * 10_000_000);
        let auth = key.map(|k| format!("Bearer {k}"));
        let mut headers = vec![("content-type", "application/x-protobuf")];
        if let Some(auth) = &auth {
            headers.push(("authorization", auth.as_str()));
        }
        let response = server
            .post("/v1/traces", &headers, &request.encode_to_vec())
            .expect("POST /v1/traces");
        assert_eq!(response.status, 200, "{}", response.text());
    }
}

#[test]
fn psql_queries_spans_over_the_postgres_protocol() {
    let Some(psql_path) = common::psql() else {
        return;
    };
    let mut server = TestServer::builder().with_pg().start();
    ingest(&server, "checkout", 0x51, 3, 4, None);
    let path = psql_path.as_path();

    assert_eq!(
        psql_ok(path, &server, None, &["SELECT count(*) FROM spans"]),
        "12"
    );
    assert_eq!(
        psql_ok(
            path,
            &server,
            None,
            &["SELECT service_name, kind, count(*) FROM spans GROUP BY 1, 2 ORDER BY 2"]
        ),
        "checkout|client|9\ncheckout|server|3"
    );
    // Types as Postgres shows them: timestamptz, int8, json.
    let row = psql_ok(
        path,
        &server,
        None,
        &[
            "SELECT start_time, duration_ns, attributes FROM spans WHERE kind = 'server' ORDER BY start_time LIMIT 1",
        ],
    );
    let fields: Vec<&str> = row.split('|').collect();
    assert_eq!(fields.len(), 3, "{row}");
    assert!(
        fields[0].ends_with("+00") && fields[0].contains(' '),
        "{row}"
    );
    assert_eq!(fields[1], "5000000", "{row}");
    assert!(fields[2].contains(r#""http.route":"/api/items""#), "{row}");
    let version = psql_ok(path, &server, None, &["SELECT version()"]);
    assert!(version.starts_with("PostgreSQL 16"), "{version}");

    // Several statements in one simple query, session settings, SHOW.
    assert_eq!(
        psql_ok(
            path,
            &server,
            None,
            &[
                "SET application_name = 'e2e'; SET extra_float_digits = 3",
                "SHOW application_name",
                "SELECT 1; SELECT 2",
            ]
        ),
        "SET\nSET\ne2e\n1\n2"
    );
    // pg_catalog for tools that look there.
    assert_eq!(
        psql_ok(
            path,
            &server,
            None,
            &["SELECT tablename FROM pg_tables ORDER BY 1"]
        ),
        "errors\nlogs\nspans"
    );

    // Refusals are errors with a message, and psql exits 1.
    for (sql, message) in [
        ("CREATE TABLE t (a int)", "DDL is not allowed"),
        ("DELETE FROM spans", "DML is not allowed"),
        (
            "SET datafusion.execution.batch_size = 1",
            "SET is not allowed",
        ),
        (
            "SELECT * FROM '/etc/passwd'",
            "reading files is not allowed",
        ),
        ("SELECT nope FROM spans", "nope"),
    ] {
        let output = psql(path, &server, None, &[sql]);
        assert!(
            !output.status.success(),
            "{sql} was accepted: {}",
            stdout(&output)
        );
        assert!(
            stderr(&output).contains(message),
            "{sql}: {}",
            stderr(&output)
        );
    }
    // The server is still there, and stops cleanly (exit 0 after SIGTERM)
    // with a client connected.
    assert_eq!(psql_ok(path, &server, None, &["SELECT 1"]), "1");
    let idle = std::net::TcpStream::connect(server.pg_addr()).expect("connect to --pg");
    server.terminate();
    drop(idle);
}

#[test]
fn psycopg_binds_parameters_scopes_projects_and_answers_grafana() {
    let Some(python) = python() else {
        return;
    };
    let psql_path = common::psql();
    let server = TestServer::builder()
        .with_pg()
        .env("LIGHTTRACE_PROJECT", "1:key-one,2:key-two")
        .start();
    ingest(&server, "checkout", 0x61, 2, 3, Some("key-one"));
    ingest(&server, "billing", 0x62, 1, 4, Some("key-two"));

    let output = run_with_timeout(
        Command::new(&python)
            .arg(python_script("pg_client.py"))
            .args(["--port", &server.pg_addr().port().to_string()])
            .args(["--user", "1"])
            .args(["--key-a", "key-one", "--key-b", "key-two"])
            .args(["--project-a", "1", "--project-b", "2"])
            .args(["--service-a", "checkout", "--service-b", "billing"])
            .args(["--spans-a", "6", "--spans-b", "4"]),
        CLIENT_TIMEOUT,
    );
    assert!(
        output.status.success(),
        "pg_client.py failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}\n{}",
        output.status,
        stdout(&output),
        stderr(&output),
        server.logs()
    );
    let report: serde_json::Value =
        serde_json::from_str(stdout(&output).lines().last().unwrap_or("{}")).expect("JSON report");
    assert_eq!(report["long_spans"], 2, "{report}");
    assert_eq!(
        report["grafana_simple"]["tables"],
        serde_json::json!(["errors", "logs", "spans"])
    );

    // psql with the keys: a wrong one is refused, each reads its project.
    if let Some(path) = psql_path.as_deref() {
        let refused = psql(path, &server, Some("key-three"), &["SELECT 1"]);
        assert!(!refused.status.success(), "a wrong key was accepted");
        assert!(
            stderr(&refused)
                .to_lowercase()
                .contains("password authentication failed"),
            "{}",
            stderr(&refused)
        );
        let missing = psql(path, &server, None, &["SELECT 1"]);
        assert!(!missing.status.success(), "no password was accepted");
        assert_eq!(
            psql_ok(
                path,
                &server,
                Some("key-two"),
                &["SELECT project, count(*) FROM spans GROUP BY 1"]
            ),
            "2|4"
        );
    }
}
