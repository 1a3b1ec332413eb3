//! The real OpenTelemetry Python SDK's logging handler and OTLP log exporters,
//! HTTP and gRPC, against the real binary: `tests/python/otel_logs.py` logs
//! lines with Python's `logging` inside the spans of one request that crosses
//! two services (frontend → payment, W3C `traceparent` over a real HTTP call),
//! and `SELECT … FROM logs WHERE trace_id = …` must return every line with the
//! trace and span ids of the span it was logged in, its severity, body and
//! typed attributes; after `kill -9` and a restart, exactly the same rows.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use common::*;

/// What a log line's body is in SQL.
enum Body {
    Text(&'static str),
    /// A non-string body: its rendering (compared as JSON) and `body_type`.
    Json(Value, &'static str),
}

/// An attribute of a log line in SQL.
enum Attr {
    /// A string: this text, no `attribute_types` entry.
    Str(&'static str),
    /// A typed value: this text and this type.
    Typed(&'static str, &'static str),
    /// An array: OTLP/JSON of its values (compared as JSON), type `array`.
    Array(Value),
}

/// One log line of the script's trace: the script's contract.
struct Line {
    service: &'static str,
    /// Its body in SQL; also the key that finds it in the script's output.
    body: Body,
    severity_number: i64,
    severity_text: &'static str,
    /// The span (of `service`) it is logged in.
    span: &'static str,
    attributes: Vec<(&'static str, Attr)>,
}

fn lines() -> Vec<Line> {
    use Attr::*;
    vec![
        Line {
            service: "frontend",
            body: Body::Text("checkout started for ada"),
            severity_number: 9,
            severity_text: "INFO",
            span: "GET /checkout",
            attributes: vec![
                ("cart.items", Typed("3", "int")),
                ("user.premium", Typed("true", "bool")),
                ("code.function.name", Str("main")),
            ],
        },
        Line {
            service: "frontend",
            body: Body::Text("payment slow"),
            severity_number: 13,
            severity_text: "WARN",
            span: "POST /api/charge",
            attributes: vec![("latency.ratio", Typed("1.5", "double"))],
        },
        Line {
            service: "payment",
            body: Body::Json(
                json!([
                    {"key": "event", "value": {"stringValue": "charge"}},
                    {"key": "amount", "value": {"doubleValue": 42.5}}
                ]),
                "kvlist",
            ),
            severity_number: 9,
            severity_text: "INFO",
            span: "POST /api/charge",
            attributes: vec![("code.function.name", Str("payment_handler"))],
        },
        Line {
            service: "payment",
            body: Body::Text("card declined"),
            severity_number: 17,
            severity_text: "ERROR",
            span: "charge card",
            attributes: vec![
                ("decline.code", Typed("51", "int")),
                (
                    "card.tags",
                    Array(json!([{"stringValue": "visa"}, {"stringValue": "debit"}])),
                ),
            ],
        },
        Line {
            service: "payment",
            body: Body::Text("charge failed"),
            severity_number: 17,
            severity_text: "ERROR",
            span: "charge card",
            attributes: vec![
                ("exception.type", Str("ValueError")),
                ("exception.message", Str("insufficient funds")),
            ],
        },
    ]
}

/// Log records the script sends outside any span (no trace id).
const UNTRACED_LINES: i64 = 1;

/// Spans the script sends.
const SPANS: i64 = 4;

fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[test]
fn python_sdk_logs_over_http_are_queryable_by_trace_id() {
    let Some(python) = python() else {
        return;
    };
    let server = TestServer::start();
    let url = server.url();
    send_and_check(&server, &python, &["--endpoint", &url]);
}

/// The gRPC log exporter with gzip on in both services; what it was answered
/// OK for survives `kill -9` (the logs receiver's WAL records replay), once.
#[test]
fn python_sdk_logs_over_grpc_are_queryable_and_durable() {
    let Some(python) = python() else {
        return;
    };
    let mut server = TestServer::start();
    let grpc = server.grpc_addr().to_string();
    let sent = send_and_check(
        &server,
        &python,
        &["--grpc", &grpc, "--compression", "gzip"],
    );
    server.kill_9();
    server.restart();
    check_logs(&server, &sent);
    assert_eq!(
        server.query_i64("SELECT count(*) FROM logs"),
        lines().len() as i64 + UNTRACED_LINES,
        "each log record exactly once after replay"
    );
    assert_eq!(server.query_i64("SELECT count(*) FROM spans"), SPANS);
}

/// Runs the script with `args` (where to send), checks its log lines in SQL and
/// returns what it printed.
fn send_and_check(server: &TestServer, python: &std::path::Path, args: &[&str]) -> Value {
    let output = run_ok(
        Command::new(python)
            .arg(python_script("otel_logs.py"))
            .args(args),
        Duration::from_secs(120),
    );
    let sent: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "the script's stdout is not JSON ({err}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    check_logs(server, &sent);
    sent
}

/// The text of a body as the script printed it (a string, or the JSON of a
/// mapping), to find a line by.
fn sdk_body_key(body: &Value) -> String {
    match body {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn line_key(line: &Line) -> String {
    match &line.body {
        Body::Text(text) => text.to_string(),
        Body::Json(..) => json!({"event": "charge", "amount": 42.5}).to_string(),
    }
}

/// Checks in SQL the log lines the script says it `sent`.
fn check_logs(server: &TestServer, sent: &Value) {
    let trace_id = sent["trace_id"].as_str().expect("trace_id").to_owned();
    assert_eq!(trace_id.len(), 32);
    let expected = lines();

    // What the SDK exported, keyed by body.
    let sdk_logs: BTreeMap<String, &Value> = sent["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .map(|log| (sdk_body_key(&log["body"]), log))
        .collect();
    assert_eq!(
        sdk_logs.len() as i64,
        expected.len() as i64 + UNTRACED_LINES,
        "the SDK exported {sdk_logs:?}"
    );
    // The spans as stored, by (service, name): the lines must point at them.
    let spans: BTreeMap<(String, String), String> = server
        .query(&format!(
            "SELECT service_name, name, span_id FROM spans WHERE trace_id = {}",
            sql_string(&trace_id)
        ))
        .records()
        .into_iter()
        .map(|row| {
            (
                (
                    as_str(&row["service_name"]).to_owned(),
                    as_str(&row["name"]).to_owned(),
                ),
                as_str(&row["span_id"]).to_owned(),
            )
        })
        .collect();
    assert_eq!(spans.len() as i64, SPANS, "spans of {trace_id}: {spans:?}");

    let mut columns = vec![
        "service_name".to_owned(),
        "trace_id".to_owned(),
        "span_id".to_owned(),
        "severity_number".to_owned(),
        "severity_text".to_owned(),
        "body".to_owned(),
        "body_type".to_owned(),
        "source".to_owned(),
        "flags".to_owned(),
        "resource_attributes['service.version'] AS service_version".to_owned(),
        "scope_name".to_owned(),
    ];
    let keys: Vec<&str> = {
        let mut keys: Vec<&str> = expected
            .iter()
            .flat_map(|line| line.attributes.iter().map(|(key, _)| *key))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    };
    for (i, key) in keys.iter().enumerate() {
        columns.push(format!("attributes[{}] AS v{i}", sql_string(key)));
        columns.push(format!("attribute_types[{}] AS t{i}", sql_string(key)));
    }
    let result = server.query(&format!(
        "SELECT {} FROM logs WHERE trace_id = {} ORDER BY time",
        columns.join(", "),
        sql_string(&trace_id)
    ));
    assert_eq!(
        result.rows.len(),
        expected.len(),
        "log lines of {trace_id}: {:?}",
        result.rows
    );

    let mut wrong = Vec::new();
    let records = result.records();
    for line in &expected {
        let key = line_key(line);
        let sdk = sdk_logs
            .get(&key)
            .unwrap_or_else(|| panic!("the SDK did not export {key:?}: {sdk_logs:?}"));
        let row = records
            .iter()
            .find(|row| match &line.body {
                Body::Text(text) => as_opt_str(&row["body"]) == Some(*text),
                Body::Json(want, _) => as_opt_str(&row["body"])
                    .and_then(|body| serde_json::from_str::<Value>(body).ok())
                    .is_some_and(|got| &got == want),
            })
            .unwrap_or_else(|| panic!("no log line {key:?} in {records:?}"));
        assert_eq!(as_str(&row["service_name"]), line.service, "{key}");
        assert_eq!(as_str(&row["trace_id"]), trace_id, "{key}");
        let span_id = as_str(&row["span_id"]);
        assert_eq!(
            Some(span_id),
            sdk["span_id"].as_str(),
            "{key}: the SDK's span id"
        );
        assert_eq!(
            Some(span_id),
            spans
                .get(&(line.service.to_owned(), line.span.to_owned()))
                .map(String::as_str),
            "{key} is logged in {}/{}",
            line.service,
            line.span
        );
        assert_eq!(
            as_i64(&row["severity_number"]),
            line.severity_number,
            "{key}"
        );
        assert_eq!(as_str(&row["severity_text"]), line.severity_text, "{key}");
        let body_type = match &line.body {
            Body::Text(_) => None,
            Body::Json(_, ty) => Some(*ty),
        };
        assert_eq!(as_opt_str(&row["body_type"]), body_type, "{key}");
        assert_eq!(as_str(&row["source"]), "otlp");
        assert_eq!(as_i64(&row["flags"]) & 1, 1, "{key}: sampled");
        assert_eq!(as_opt_str(&row["service_version"]), Some("2.0.1"));
        assert_eq!(
            as_opt_str(&row["scope_name"]),
            Some(format!("lighttrace.e2e.{}", line.service).as_str())
        );
        for (attribute, want) in &line.attributes {
            let i = keys.iter().position(|k| k == attribute).expect("column");
            let text = as_opt_str(&row[&format!("v{i}")]);
            let ty = as_opt_str(&row[&format!("t{i}")]);
            let ok = match want {
                Attr::Str(want) => text == Some(*want) && ty.is_none(),
                Attr::Typed(want, want_ty) => text == Some(*want) && ty == Some(*want_ty),
                Attr::Array(want) => {
                    ty == Some("array")
                        && text
                            .and_then(|t| serde_json::from_str::<Value>(t).ok())
                            .is_some_and(|got| &got == want)
                }
            };
            if !ok {
                wrong.push(format!("{key} {attribute}: got {text:?} of type {ty:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "attribute values:\n{}", wrong.join("\n"));

    // The line logged outside any span has no trace.
    let untraced = server.query(
        "SELECT service_name, span_id FROM logs WHERE trace_id IS NULL AND body = 'service ready'",
    );
    assert_eq!(untraced.rows, vec![vec![json!("frontend"), Value::Null]]);

    // Logs join their spans.
    let joined = server.query(&format!(
        "SELECT s.name, count(*) AS n FROM logs l JOIN spans s \
         ON l.trace_id = s.trace_id AND l.span_id = s.span_id \
         WHERE l.trace_id = {} GROUP BY s.name ORDER BY s.name",
        sql_string(&trace_id)
    ));
    assert_eq!(
        joined.rows,
        vec![
            vec![json!("GET /checkout"), json!(1)],
            vec![json!("POST /api/charge"), json!(2)],
            vec![json!("charge card"), json!(2)],
        ]
    );
}
