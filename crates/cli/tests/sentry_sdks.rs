//! The real Sentry SDKs against the real binary, with a DSN
//! `http://public@127.0.0.1:PORT/42`: the Python `sentry-sdk`
//! (`tests/python/sentry_transaction.py`) and `@sentry/node`
//! (`tests/node/sentry_transaction.cjs`) each send a transaction with nested
//! child spans (`@sentry/node` 11 streams them as span v2 items, the Python SDK
//! as a `transaction` item), and SQL must return every span with its parent, name, kind,
//! status and attributes as `lighttrace-ingest` documents the mapping. The
//! spans an SDK was answered 200 for survive `kill -9` (the WAL's Sentry
//! records replay).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use common::*;

const PROJECT: &str = "42";

fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn dsn(server: &TestServer) -> String {
    let url = server.url();
    let host = url.trim_start_matches("http://");
    format!("http://public@{host}/{PROJECT}")
}

fn run_json(command: &mut Command) -> Value {
    let output = run_ok(command, Duration::from_secs(120));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "the script's stdout is not JSON ({err}): {}\n--- stderr ---\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// The spans of `trace_id`, keyed by name.
fn spans_by_name(server: &TestServer, trace_id: &str) -> BTreeMap<String, BTreeMap<String, Value>> {
    let result = server.query(&format!(
        "SELECT span_id, parent_span_id, name, kind, status_code, status_message, project, \
                service_name, source, duration_ns, scope_name, \
                attributes['sentry.op'] AS op, \
                attributes['sentry.release'] AS release, \
                attributes['sentry.environment'] AS environment, \
                attributes['sentry.sdk.name'] AS sdk, \
                attributes['customer'] AS customer, \
                attributes['db.system'] AS db_system, \
                attributes['db.table'] AS db_table, \
                attributes['db.rows'] AS db_rows, \
                attribute_types['db.rows'] AS db_rows_type \
         FROM spans WHERE trace_id = {}",
        sql_string(trace_id)
    ));
    result
        .records()
        .into_iter()
        .map(|row| (as_str(&row["name"]).to_owned(), row))
        .collect()
}

// ---------------------------------------------------------------------------
// Python sentry-sdk
// ---------------------------------------------------------------------------

/// (name, op, kind, parent name, status code, status message) of one span.
type ExpectedSpan = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
    Option<&'static str>,
);

/// The spans the Python script sends: its contract.
const PYTHON_TREE: [ExpectedSpan; 5] = [
    (
        "POST /checkout",
        "http.server",
        "server",
        None,
        "unset",
        None,
    ),
    (
        "SELECT * FROM carts",
        "db",
        "client",
        Some("POST /checkout"),
        "unset",
        None,
    ),
    (
        "cart:42",
        "cache.get",
        "client",
        Some("SELECT * FROM carts"),
        "unset",
        None,
    ),
    (
        "POST /charge",
        "http.client",
        "client",
        Some("POST /checkout"),
        "error",
        Some("internal_error"),
    ),
    (
        "serialize",
        "serialize",
        "internal",
        Some("POST /checkout"),
        "unset",
        None,
    ),
];

fn send_python(server: &TestServer, python: &Path, extra: &[&str]) -> Value {
    run_json(
        Command::new(python)
            .arg(python_script("sentry_transaction.py"))
            .arg("--dsn")
            .arg(dsn(server))
            .args(extra),
    )
}

fn check_python_trace(server: &TestServer, sent: &Value) {
    let trace_id = sent["trace_id"].as_str().expect("trace_id");
    assert_eq!(trace_id.len(), 32);
    let spans = spans_by_name(server, trace_id);
    assert_eq!(
        spans.len(),
        PYTHON_TREE.len(),
        "spans of {trace_id}: {spans:#?}"
    );
    for (name, op, kind, parent, status, message) in PYTHON_TREE {
        let row = spans
            .get(name)
            .unwrap_or_else(|| panic!("no span {name:?} in {spans:#?}"));
        assert_eq!(as_str(&row["op"]), op, "{name}");
        assert_eq!(as_str(&row["kind"]), kind, "{name}");
        assert_eq!(as_str(&row["status_code"]), status, "{name}");
        assert_eq!(as_opt_str(&row["status_message"]), message, "{name}");
        assert_eq!(as_str(&row["project"]), PROJECT);
        assert_eq!(
            as_str(&row["service_name"]),
            PROJECT,
            "no service name: the project"
        );
        assert_eq!(as_str(&row["source"]), "sentry");
        assert_eq!(as_opt_str(&row["release"]), Some("shop@1.2.3"));
        assert_eq!(as_opt_str(&row["environment"]), Some("test"));
        assert_eq!(as_opt_str(&row["sdk"]), Some("sentry.python"));
        assert_eq!(as_opt_str(&row["scope_name"]), Some("sentry.python"));
        assert!(as_i64(&row["duration_ns"]) >= 0);
        let parent_id = as_opt_str(&row["parent_span_id"]);
        match parent {
            None => {
                assert_eq!(parent_id, None, "{name} is the root");
                assert_eq!(
                    as_str(&row["span_id"]),
                    sent["transaction_span_id"].as_str().unwrap()
                );
            }
            Some(parent) => assert_eq!(
                parent_id,
                Some(as_str(&spans[parent]["span_id"])),
                "{name} is a child of {parent}"
            ),
        }
    }
    // What the SDK says it sent: the same ids and parents.
    for span in sent["spans"].as_array().expect("spans") {
        let name = span["name"].as_str().or(span["op"].as_str()).unwrap();
        assert_eq!(
            as_str(&spans[name]["span_id"]),
            span["span_id"].as_str().unwrap()
        );
        assert_eq!(
            as_opt_str(&spans[name]["parent_span_id"]),
            span["parent_span_id"].as_str()
        );
    }
    let root = &spans["POST /checkout"];
    assert_eq!(
        as_opt_str(&root["customer"]),
        Some("acme"),
        "transaction tag"
    );
    let db = &spans["SELECT * FROM carts"];
    assert_eq!(
        as_opt_str(&db["db_system"]),
        Some("postgresql"),
        "span data"
    );
    assert_eq!(as_opt_str(&db["db_table"]), Some("carts"), "span tag");
    assert_eq!(as_opt_str(&db["db_rows"]), Some("3"));
    assert_eq!(as_opt_str(&db["db_rows_type"]), Some("int"));
}

/// The SDK's default (br, with the `brotli` package installed), gzip, and no
/// compression; then `kill -9` and a restart: every span once.
#[test]
fn python_sentry_sdk_transactions_are_queryable_and_durable() {
    let Some(python) = python() else {
        return;
    };
    let mut server = TestServer::start();
    let mut sent = Vec::new();
    for compression in ["br", "gzip", "none"] {
        let trace = send_python(&server, &python, &["--compression", compression]);
        check_python_trace(&server, &trace);
        sent.push(trace);
    }
    server.kill_9();
    server.restart();
    for trace in &sent {
        check_python_trace(&server, trace);
    }
    assert_eq!(
        server.query_i64("SELECT count(*) FROM spans"),
        (PYTHON_TREE.len() * sent.len()) as i64,
        "each span exactly once after replay"
    );
}

/// A captured exception is an `event` envelope of its own: it becomes a row of
/// `errors` linked to the transaction's trace and span, and survives kill -9.
#[test]
fn python_sentry_sdk_error_events_land_in_the_errors_table() {
    let Some(python) = python() else {
        return;
    };
    let mut server = TestServer::start();
    let sent = send_python(&server, &python, &["--capture-exception"]);
    let responses = sent["responses"].as_array().expect("responses");
    let event = responses
        .iter()
        .find(|r| r["items"].as_array().unwrap().iter().any(|i| i == "event"))
        .unwrap_or_else(|| panic!("no event envelope in {responses:?}"));
    assert_eq!(event["status"], 200, "{responses:?}");
    check_python_trace(&server, &sent);
    let trace_id = sent["trace_id"].as_str().expect("trace_id");
    let check_error = |server: &TestServer| {
        let result = SqlResult::from_json(&server.sql(&format!(
            "SELECT level, exception_type, exception_value, stack_frames, source \
             FROM errors WHERE trace_id = '{trace_id}'"
        )));
        let rows = result.records();
        assert_eq!(rows.len(), 1, "{rows:?}");
        let row = &rows[0];
        assert_eq!(as_str(&row["level"]), "error");
        assert_eq!(as_str(&row["exception_type"]), "ValueError");
        assert_eq!(as_str(&row["exception_value"]), "card declined");
        assert_eq!(as_str(&row["source"]), "sentry");
        assert!(
            as_str(&row["stack_frames"]).contains("sentry_transaction.py"),
            "{row:?}"
        );
    };
    check_error(&server);
    server.kill_9();
    server.restart();
    check_error(&server);
}

// ---------------------------------------------------------------------------
// @sentry/node
// ---------------------------------------------------------------------------

/// The spans the Node script sends: its contract.
const NODE_TREE: [ExpectedSpan; 4] = [
    ("GET /users", "http.server", "server", None, "ok", None),
    (
        "SELECT * FROM users",
        "db",
        "client",
        Some("GET /users"),
        "ok",
        None,
    ),
    (
        "users.serialize",
        "function",
        "internal",
        Some("SELECT * FROM users"),
        "ok",
        None,
    ),
    (
        "POST /charge",
        "http.client",
        "client",
        Some("GET /users"),
        "error",
        Some("internal_error"),
    ),
];

#[test]
fn node_sentry_sdk_transaction_is_queryable() {
    let (Some(node), Some(modules)) = (node(), node_modules()) else {
        return;
    };
    let server = TestServer::start();
    let sent = run_json(
        Command::new(node)
            .arg(repo_root().join("tests/node/sentry_transaction.cjs"))
            .arg("--dsn")
            .arg(dsn(&server))
            .env("NODE_PATH", &modules),
    );
    let trace_id = sent["trace_id"].as_str().expect("trace_id");
    let spans = spans_by_name(&server, trace_id);
    assert_eq!(
        spans.len(),
        NODE_TREE.len(),
        "spans of {trace_id}: {spans:#?}"
    );
    for (name, op, kind, parent, status, message) in NODE_TREE {
        let row = spans
            .get(name)
            .unwrap_or_else(|| panic!("no span {name:?} in {spans:#?}"));
        assert_eq!(as_opt_str(&row["op"]), Some(op), "{name}");
        assert_eq!(as_str(&row["kind"]), kind, "{name}");
        assert_eq!(as_str(&row["status_code"]), status, "{name}");
        assert_eq!(as_opt_str(&row["status_message"]), message, "{name}");
        assert_eq!(as_str(&row["project"]), PROJECT);
        assert_eq!(
            as_str(&row["service_name"]),
            PROJECT,
            "no service name: the project"
        );
        assert_eq!(as_str(&row["source"]), "sentry");
        assert_eq!(as_opt_str(&row["release"]), Some("users@2.0.0"));
        assert_eq!(as_opt_str(&row["environment"]), Some("test"));
        assert_eq!(as_opt_str(&row["sdk"]), Some("sentry.javascript.node"));
        let parent_id = as_opt_str(&row["parent_span_id"]);
        match parent {
            None => assert_eq!(parent_id, None, "{name} is the root"),
            Some(parent) => assert_eq!(
                parent_id,
                Some(as_str(&spans[parent]["span_id"])),
                "{name} is a child of {parent}"
            ),
        }
    }
    for span in sent["spans"].as_array().expect("spans") {
        let name = span["name"].as_str().unwrap();
        assert_eq!(
            as_str(&spans[name]["span_id"]),
            span["span_id"].as_str().unwrap()
        );
    }
    assert_eq!(
        as_opt_str(&spans["GET /users"]["customer"]),
        Some("acme"),
        "span attribute"
    );
    assert_eq!(
        as_opt_str(&spans["SELECT * FROM users"]["db_system"]),
        Some("sqlite"),
        "span attribute"
    );
}

// ---------------------------------------------------------------------------
// One trace across OpenTelemetry and Sentry
// ---------------------------------------------------------------------------

/// `tests/python/sentry_otel_cross.py`: frontend (OpenTelemetry) → billing
/// (sentry-sdk, a process of its own) → inventory (OpenTelemetry), the trace
/// context in real HTTP headers (`traceparent` one way, `sentry-trace` the
/// other). SQL must return one trace of five spans from both receivers, each
/// linked to its parent across the SDK boundaries.
#[test]
fn sentry_and_opentelemetry_services_share_one_trace() {
    let Some(python) = python() else {
        return;
    };
    let server = TestServer::start();
    let sent = run_json(
        Command::new(python)
            .arg(python_script("sentry_otel_cross.py"))
            .arg("--endpoint")
            .arg(server.url())
            .arg("--dsn")
            .arg(dsn(&server)),
    );
    let trace_id = sent["trace_id"].as_str().expect("trace_id");
    assert_eq!(sent["inventory"]["trace_id"], trace_id, "{sent}");
    let result = server.query(&format!(
        "SELECT service_name, name, kind, source, span_id, parent_span_id, \
                attributes['sentry.op'] AS op \
         FROM spans WHERE trace_id = {} ORDER BY start_time",
        sql_string(trace_id)
    ));
    let rows = result.records();
    let summary: Vec<(String, String, String, String)> = rows
        .iter()
        .map(|row| {
            let name = as_str(&row["name"]);
            // The Sentry HTTP span is named after the URL, port included.
            let name = if name.starts_with("GET http://127.0.0.1:") {
                "GET http://127.0.0.1:PORT/stock"
            } else {
                name
            };
            (
                as_str(&row["service_name"]).to_owned(),
                name.to_owned(),
                as_str(&row["kind"]).to_owned(),
                as_str(&row["source"]).to_owned(),
            )
        })
        .collect();
    let expected = [
        ("frontend", "GET /checkout", "server", "otlp"),
        ("frontend", "call billing", "client", "otlp"),
        (PROJECT, "POST /bill", "server", "sentry"),
        (
            PROJECT,
            "GET http://127.0.0.1:PORT/stock",
            "client",
            "sentry",
        ),
        ("inventory", "GET /stock", "server", "otlp"),
    ];
    assert_eq!(
        summary,
        expected
            .iter()
            .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
            .collect::<Vec<_>>(),
        "the spans of {trace_id}"
    );
    let span_id = |i: usize| as_str(&rows[i]["span_id"]);
    let parent = |i: usize| as_opt_str(&rows[i]["parent_span_id"]);
    assert_eq!(parent(0), None);
    assert_eq!(span_id(0), sent["frontend"]["server_span_id"]);
    assert_eq!(span_id(1), sent["frontend"]["client_span_id"]);
    assert_eq!(parent(1), Some(span_id(0)));
    assert_eq!(
        parent(2),
        Some(span_id(1)),
        "Sentry continues the OpenTelemetry client span"
    );
    assert_eq!(parent(3), Some(span_id(2)));
    assert_eq!(as_opt_str(&rows[3]["op"]), Some("http.client"));
    assert_eq!(
        parent(4),
        Some(span_id(3)),
        "OpenTelemetry continues the Sentry client span"
    );
    assert_eq!(span_id(4), sent["inventory"]["span_id"]);
}
