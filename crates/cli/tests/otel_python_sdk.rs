//! The real OpenTelemetry Python SDK and its OTLP exporters, HTTP and gRPC, against
//! the real binary: `tests/python/otel_three_services.py` sends one trace that
//! crosses three services (frontend → checkout → payment, W3C `traceparent` over
//! real HTTP calls), and SQL must return every span with its parent link, service,
//! kind, status and typed attributes rendered as `lighttrace-model` documents them.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use common::*;

/// A span of the script's trace, named by (service, span name).
type SpanName = (&'static str, &'static str);

/// Every span the script sends: its kind and its parent. The script's contract.
const TREE: [(SpanName, &str, Option<SpanName>); 6] = [
    (("frontend", "GET /checkout"), "server", None),
    (
        ("frontend", "POST /api/checkout"),
        "client",
        Some(("frontend", "GET /checkout")),
    ),
    (
        ("checkout", "POST /api/checkout"),
        "server",
        Some(("frontend", "POST /api/checkout")),
    ),
    (
        ("checkout", "POST /api/charge"),
        "client",
        Some(("checkout", "POST /api/checkout")),
    ),
    (
        ("payment", "POST /api/charge"),
        "server",
        Some(("checkout", "POST /api/charge")),
    ),
    (
        ("payment", "charge card"),
        "internal",
        Some(("payment", "POST /api/charge")),
    ),
];

enum Expected {
    /// A string attribute: this text, no entry in `attribute_types`.
    Str(&'static str),
    /// A typed attribute: this text and this type.
    Typed(&'static str, &'static str),
    /// An array: its text is OTLP/JSON of the values (compared as JSON), type `array`.
    Array(Value),
}

/// (service, span name, attribute key, expected value).
fn expected_attributes() -> Vec<(&'static str, &'static str, &'static str, Expected)> {
    use Expected::*;
    vec![
        (
            "frontend",
            "GET /checkout",
            "http.request.method",
            Str("GET"),
        ),
        ("frontend", "GET /checkout", "http.route", Str("/checkout")),
        (
            "frontend",
            "GET /checkout",
            "user.premium",
            Typed("true", "bool"),
        ),
        (
            "frontend",
            "GET /checkout",
            "http.response.status_code",
            Typed("200", "int"),
        ),
        (
            "frontend",
            "GET /checkout",
            "cart.items",
            Array(
                json!([{"stringValue": "sku-1"}, {"stringValue": "sku-2"}, {"stringValue": "sku-3"}]),
            ),
        ),
        (
            "frontend",
            "POST /api/checkout",
            "peer.service",
            Str("checkout"),
        ),
        (
            "frontend",
            "POST /api/checkout",
            "http.response.status_code",
            Typed("200", "int"),
        ),
        (
            "checkout",
            "POST /api/checkout",
            "http.route",
            Str("/api/checkout"),
        ),
        (
            "checkout",
            "POST /api/checkout",
            "order.total",
            Typed("42.5", "double"),
        ),
        (
            "checkout",
            "POST /api/checkout",
            "order.item_count",
            Typed("3", "int"),
        ),
        (
            "checkout",
            "POST /api/checkout",
            "order.gift",
            Typed("false", "bool"),
        ),
        (
            "checkout",
            "POST /api/checkout",
            "order.quantities",
            Array(json!([{"intValue": "1"}, {"intValue": "2"}, {"intValue": "3"}])),
        ),
        (
            "checkout",
            "POST /api/charge",
            "peer.service",
            Str("payment"),
        ),
        (
            "payment",
            "POST /api/charge",
            "payment.amount",
            Typed("42.5", "double"),
        ),
        (
            "payment",
            "POST /api/charge",
            "payment.currency",
            Str("EUR"),
        ),
        (
            "payment",
            "POST /api/charge",
            "payment.fee_ratio",
            Typed("0.1", "double"),
        ),
        (
            "payment",
            "charge card",
            "payment.attempt",
            Typed("2", "int"),
        ),
        (
            "payment",
            "charge card",
            "payment.fraud_scores",
            Array(json!([{"doubleValue": 0.25}, {"doubleValue": 1.5}])),
        ),
        (
            "payment",
            "charge card",
            "payment.flags",
            Array(json!([{"boolValue": true}, {"boolValue": false}])),
        ),
    ]
}

fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[test]
fn python_sdk_trace_across_three_services_is_queryable() {
    let Some(python) = python() else {
        return;
    };
    let server = TestServer::start();
    let url = server.url();
    send_and_check(&server, &python, &["--endpoint", &url]);
}

/// The SDK's OTLP/gRPC exporter (`opentelemetry-exporter-otlp-proto-grpc`), with
/// checkout's exports gzipped and the others not.
#[test]
fn python_sdk_grpc_exporter_trace_across_three_services_is_queryable() {
    let Some(python) = python() else {
        return;
    };
    let server = TestServer::start();
    let grpc = server.grpc_addr().to_string();
    send_and_check(&server, &python, &["--grpc", &grpc]);
}

/// The OTLP/gRPC exporter with gzip on in every service; what it was answered
/// OK for survives `kill -9` (the gRPC receiver's WAL records replay).
#[test]
fn python_sdk_grpc_exporter_with_gzip_is_queryable_and_durable() {
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
    check_trace(&server, &sent);
    assert_eq!(
        server.query_i64("SELECT count(*) FROM spans"),
        TREE.len() as i64,
        "each span exactly once after replay"
    );
}

/// Runs the script with `args` (where to send) and checks its trace in SQL;
/// returns what the script printed.
fn send_and_check(server: &TestServer, python: &std::path::Path, args: &[&str]) -> Value {
    let output = run_ok(
        Command::new(python)
            .arg(python_script("otel_three_services.py"))
            .args(args),
        Duration::from_secs(120),
    );
    let sent: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "the script's stdout is not JSON ({err}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    check_trace(server, &sent);
    sent
}

/// Checks in SQL the trace the script says it `sent`.
fn check_trace(server: &TestServer, sent: &Value) {
    let trace_id = sent["trace_id"].as_str().expect("trace_id").to_owned();
    assert_eq!(trace_id.len(), 32);
    let sent_spans = sent["spans"].as_array().expect("spans");
    assert_eq!(
        sent_spans.len(),
        TREE.len(),
        "the SDK exported {sent_spans:?}"
    );
    for span in sent_spans {
        assert_eq!(span["trace_id"], trace_id.as_str(), "one trace: {span}");
    }

    // What the SDK says it sent, keyed by (service, name).
    let sdk: BTreeMap<(String, String), &Value> = sent_spans
        .iter()
        .map(|span| {
            let key = (
                span["service"].as_str().expect("service").to_owned(),
                span["name"].as_str().expect("name").to_owned(),
            );
            (key, span)
        })
        .collect();

    let result = server.query(&format!(
        "SELECT span_id, parent_span_id, service_name, name, kind, status_code, status_message, \
                source, duration_ns, \
                resource_attributes['service.version'] AS service_version, \
                resource_attributes['telemetry.sdk.language'] AS sdk_language \
         FROM spans WHERE trace_id = {} ORDER BY start_time",
        sql_string(&trace_id)
    ));
    assert_eq!(
        result.rows.len(),
        TREE.len(),
        "spans of {trace_id}: {:?}",
        result.rows
    );
    let stored: BTreeMap<(String, String), BTreeMap<String, Value>> = result
        .records()
        .into_iter()
        .map(|row| {
            let key = (
                as_str(&row["service_name"]).to_owned(),
                as_str(&row["name"]).to_owned(),
            );
            (key, row)
        })
        .collect();
    assert_eq!(stored.len(), TREE.len(), "(service, name) pairs are unique");

    let key = |service: &str, name: &str| (service.to_owned(), name.to_owned());
    for ((service, name), kind, parent) in TREE {
        let row = stored
            .get(&key(service, name))
            .unwrap_or_else(|| panic!("no span {service}/{name} in {stored:?}"));
        let sdk_span = sdk[&key(service, name)];
        assert_eq!(
            as_str(&row["span_id"]),
            sdk_span["span_id"].as_str().unwrap()
        );
        assert_eq!(as_str(&row["kind"]), kind, "{service}/{name}");
        assert_eq!(as_str(&row["source"]), "otlp");
        assert!(as_i64(&row["duration_ns"]) >= 0);
        assert_eq!(as_opt_str(&row["service_version"]), Some("1.2.3"));
        assert_eq!(as_opt_str(&row["sdk_language"]), Some("python"));
        let parent_id = as_opt_str(&row["parent_span_id"]);
        match parent {
            None => assert_eq!(parent_id, None, "{service}/{name} is the root"),
            Some((parent_service, parent_name)) => {
                let expected = as_str(&stored[&key(parent_service, parent_name)]["span_id"]);
                assert_eq!(
                    parent_id,
                    Some(expected),
                    "{service}/{name} is a child of {parent_service}/{parent_name}"
                );
            }
        }
        assert_eq!(parent_id, sdk_span["parent_span_id"].as_str());
        let (status, message) = if name == "charge card" {
            ("error", Some("card declined"))
        } else {
            ("unset", None)
        };
        assert_eq!(as_str(&row["status_code"]), status, "{service}/{name}");
        if let Some(message) = message {
            assert_eq!(as_opt_str(&row["status_message"]), Some(message));
        }
    }

    // Attributes, one column per key: the text rendering and the type.
    let expected = expected_attributes();
    let mut columns = Vec::new();
    for (i, (_, _, attribute, _)) in expected.iter().enumerate() {
        let attribute = sql_string(attribute);
        columns.push(format!("attributes[{attribute}] AS v{i}"));
        columns.push(format!("attribute_types[{attribute}] AS t{i}"));
    }
    let result = server.query(&format!(
        "SELECT service_name, name, {} FROM spans WHERE trace_id = {}",
        columns.join(", "),
        sql_string(&trace_id)
    ));
    let rows: BTreeMap<(String, String), BTreeMap<String, Value>> = result
        .records()
        .into_iter()
        .map(|row| {
            let key = (
                as_str(&row["service_name"]).to_owned(),
                as_str(&row["name"]).to_owned(),
            );
            (key, row)
        })
        .collect();
    let mut wrong = Vec::new();
    for (i, (service, name, attribute, expectation)) in expected.iter().enumerate() {
        let row = &rows[&key(service, name)];
        let text = as_opt_str(&row[&format!("v{i}")]);
        let ty = as_opt_str(&row[&format!("t{i}")]);
        let ok = match expectation {
            Expected::Str(want) => text == Some(*want) && ty.is_none(),
            Expected::Typed(want, want_ty) => text == Some(*want) && ty == Some(*want_ty),
            Expected::Array(want) => {
                ty == Some("array")
                    && text
                        .and_then(|t| serde_json::from_str::<Value>(t).ok())
                        .is_some_and(|got| &got == want)
            }
        };
        if !ok {
            let want = match expectation {
                Expected::Str(want) => format!("{want:?} (string)"),
                Expected::Typed(want, ty) => format!("{want:?} ({ty})"),
                Expected::Array(want) => format!("{want} (array)"),
            };
            wrong.push(format!(
                "{service}/{name} {attribute}: got {text:?} of type {ty:?}, want {want}"
            ));
        }
    }
    assert!(wrong.is_empty(), "attribute values:\n{}", wrong.join("\n"));
}
