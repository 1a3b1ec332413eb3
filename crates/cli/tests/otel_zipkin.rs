//! The real OpenTelemetry Python SDK with its Zipkin JSON exporter
//! (`opentelemetry-exporter-zipkin-json`, unmodified, pointed at
//! `/api/v2/spans`) against the real binary: `tests/python/otel_zipkin.py`
//! sends one trace that crosses two services (frontend → checkout, W3C
//! `traceparent` over a real HTTP call), and SQL must return every span with
//! its parent link, service, kind, status, attributes, event and timestamps.
//! The same trace sent partly over OTLP and partly over Zipkin is one trace.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use common::*;

/// A span of the script's trace, named by (service, span name).
type SpanName = (&'static str, &'static str);

/// Every span the script sends: its kind and its parent. The script's contract.
const TREE: [(SpanName, &str, Option<SpanName>); 5] = [
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
        ("checkout", "charge card"),
        "internal",
        Some(("checkout", "POST /api/checkout")),
    ),
    (
        ("checkout", "publish order"),
        "producer",
        Some(("checkout", "POST /api/checkout")),
    ),
];

/// (service, span name, attribute key, its text). Zipkin tags are strings, so
/// only the text is compared: OTLP keeps the types, Zipkin cannot.
const ATTRIBUTES: [(&str, &str, &str, &str); 7] = [
    ("frontend", "GET /checkout", "http.route", "/checkout"),
    ("frontend", "GET /checkout", "user.premium", "true"),
    ("frontend", "POST /api/checkout", "peer.service", "checkout"),
    ("checkout", "POST /api/checkout", "order.total", "42.5"),
    (
        "checkout",
        "POST /api/checkout",
        "http.route",
        "/api/checkout",
    ),
    ("checkout", "charge card", "payment.attempt", "2"),
    ("checkout", "publish order", "messaging.system", "kafka"),
];

fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The Zipkin JSON exporter in both services; what was answered 202 survives
/// `kill -9` (the Zipkin receiver's WAL records replay).
#[test]
fn zipkin_exporter_trace_across_two_services_is_queryable_and_durable() {
    let Some(python) = python() else {
        return;
    };
    let mut server = TestServer::start();
    let sent = send(&server, &python, &[]);
    check_trace(&server, &sent);

    let trace_id = sent["trace_id"].as_str().unwrap().to_owned();
    let frontend = server.query(&format!(
        "SELECT attributes['network.local.address'] AS address, \
                attributes['network.local.port'] AS port, \
                attribute_types['network.local.port'] AS port_type \
         FROM spans WHERE trace_id = {} AND service_name = 'frontend'",
        sql_string(&trace_id)
    ));
    assert_eq!(frontend.rows.len(), 2);
    for row in frontend.records() {
        assert_eq!(as_opt_str(&row["address"]), Some("127.0.0.1"));
        assert_eq!(as_opt_str(&row["port"]), Some("8080"));
        assert_eq!(as_opt_str(&row["port_type"]), Some("int"));
    }

    server.kill_9();
    server.restart();
    check_trace(&server, &sent);
    assert_eq!(
        server.query_i64("SELECT count(*) FROM spans"),
        TREE.len() as i64,
        "each span exactly once after replay"
    );
}

/// The frontend exports over OTLP/HTTP, checkout over Zipkin: a lookup by
/// trace id returns the whole trace, parents linked across the two protocols.
#[test]
fn a_trace_sent_partly_over_otlp_and_partly_over_zipkin_is_whole() {
    let Some(python) = python() else {
        return;
    };
    let server = TestServer::start();
    let sent = send(&server, &python, &["--otlp", "frontend"]);
    let exporters: BTreeMap<&str, &str> = sent["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|span| {
            (
                span["service"].as_str().unwrap(),
                span["exporter"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        exporters,
        BTreeMap::from([("checkout", "zipkin"), ("frontend", "otlp")])
    );
    check_trace(&server, &sent);
}

/// Runs the script with `args` against the server; returns what it printed.
fn send(server: &TestServer, python: &std::path::Path, args: &[&str]) -> Value {
    let output = run_ok(
        Command::new(python)
            .arg(python_script("otel_zipkin.py"))
            .arg("--endpoint")
            .arg(server.url())
            .args(args),
        Duration::from_secs(120),
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "the script's stdout is not JSON ({err}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
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
    let key = |service: &str, name: &str| (service.to_owned(), name.to_owned());
    let sdk: BTreeMap<(String, String), &Value> = sent_spans
        .iter()
        .map(|span| {
            assert_eq!(span["trace_id"], trace_id.as_str(), "one trace: {span}");
            (
                key(
                    span["service"].as_str().unwrap(),
                    span["name"].as_str().unwrap(),
                ),
                span,
            )
        })
        .collect();

    let result = server.query(&format!(
        "SELECT span_id, parent_span_id, service_name, name, kind, status_code, status_message, \
                source, scope_name, \
                CAST(start_time AS BIGINT) AS start_ns, CAST(end_time AS BIGINT) AS end_ns, \
                resource_attributes['service.name'] AS resource_service, \
                events[1]['name'] AS event_name, \
                events[1]['attributes']['decline.code'] AS decline_code, \
                events[1]['attribute_types']['decline.code'] AS decline_code_type \
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
            let k = key(as_str(&row["service_name"]), as_str(&row["name"]));
            (k, row)
        })
        .collect();
    assert_eq!(stored.len(), TREE.len(), "(service, name) pairs are unique");

    for ((service, name), kind, parent) in TREE {
        let row = stored
            .get(&key(service, name))
            .unwrap_or_else(|| panic!("no span {service}/{name} in {stored:?}"));
        let sdk_span = sdk[&key(service, name)];
        let what = format!("{service}/{name}");
        assert_eq!(
            as_str(&row["span_id"]),
            sdk_span["span_id"].as_str().unwrap()
        );
        assert_eq!(as_str(&row["kind"]), kind, "{what}");
        assert_eq!(
            as_str(&row["source"]),
            sdk_span["exporter"].as_str().unwrap(),
            "{what}"
        );
        assert_eq!(as_opt_str(&row["scope_name"]), Some("lighttrace.e2e"));
        assert_eq!(as_opt_str(&row["resource_service"]), Some(service));

        let parent_id = as_opt_str(&row["parent_span_id"]);
        assert_eq!(parent_id, sdk_span["parent_span_id"].as_str(), "{what}");
        match parent {
            None => assert_eq!(parent_id, None, "{what} is the root"),
            Some((parent_service, parent_name)) => assert_eq!(
                parent_id,
                Some(as_str(
                    &stored[&key(parent_service, parent_name)]["span_id"]
                )),
                "{what} is a child of {parent_service}/{parent_name}"
            ),
        }

        // Zipkin carries microseconds, rounded by the exporter.
        let (start, end) = (as_i64(&row["start_ns"]), as_i64(&row["end_ns"]));
        let (sdk_start, sdk_end) = (
            sdk_span["start_ns"].as_i64().unwrap(),
            sdk_span["end_ns"].as_i64().unwrap(),
        );
        let (start_slack, end_slack) = match as_str(&row["source"]) {
            "zipkin" => (500, 1000),
            _ => (0, 0),
        };
        assert!(
            (start - sdk_start).abs() <= start_slack,
            "{what}: start {start} vs {sdk_start}"
        );
        assert!(
            (end - sdk_end).abs() <= end_slack,
            "{what}: end {end} vs {sdk_end}"
        );

        if name == "charge card" {
            assert_eq!(as_str(&row["status_code"]), "error");
            assert_eq!(as_opt_str(&row["status_message"]), Some("card declined"));
            assert_eq!(as_opt_str(&row["event_name"]), Some("card.declined"));
            assert_eq!(as_opt_str(&row["decline_code"]), Some("51"));
            assert_eq!(as_opt_str(&row["decline_code_type"]), Some("int"));
        } else {
            assert_eq!(as_str(&row["status_code"]), "unset", "{what}");
            assert_eq!(as_opt_str(&row["event_name"]), None, "{what}");
        }
    }

    let mut columns = Vec::new();
    for (i, (_, _, attribute, _)) in ATTRIBUTES.iter().enumerate() {
        columns.push(format!("attributes[{}] AS v{i}", sql_string(attribute)));
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
            let k = key(as_str(&row["service_name"]), as_str(&row["name"]));
            (k, row)
        })
        .collect();
    let wrong: Vec<String> = ATTRIBUTES
        .iter()
        .enumerate()
        .filter_map(|(i, (service, name, attribute, want))| {
            let got = as_opt_str(&rows[&key(service, name)][&format!("v{i}")]);
            (got != Some(*want))
                .then(|| format!("{service}/{name} {attribute}: got {got:?}, want {want:?}"))
        })
        .collect();
    assert!(wrong.is_empty(), "attribute values:\n{}", wrong.join("\n"));
}
