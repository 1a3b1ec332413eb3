//! Jaeger's query API (`/jaeger/api/…`, what Grafana's Jaeger data source
//! calls) on the real binary, with a trace from the real OpenTelemetry Python
//! SDK: `tests/python/otel_three_services.py` (frontend → checkout → payment).
//! The calls are Grafana's: services, a service's operations, a search with
//! Grafana's parameters (`lookback=custom`, JSON `tags`), the trace by id,
//! the dependency graph.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use common::*;

/// `GET url`: must be 200 with Jaeger's envelope; its `data`.
fn jaeger_data(server: &TestServer, path: &str) -> Value {
    let url = format!("{}/jaeger{path}", server.url());
    let reply = http_get(&http_agent(), &url).unwrap_or_else(|err| panic!("{url}: {err}"));
    assert_eq!(reply.status, 200, "{url}: {}", reply.text());
    let body: Value = serde_json::from_slice(&reply.body).expect("JSON");
    assert_eq!(body["errors"], Value::Null, "{url}: {body}");
    body["data"].clone()
}

fn now_us() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros()
}

#[test]
fn grafana_reads_a_python_sdk_trace_through_the_jaeger_api() {
    let Some(python) = python() else {
        return;
    };
    let server = TestServer::start();
    let output = run_ok(
        Command::new(&python)
            .arg(python_script("otel_three_services.py"))
            .args(["--endpoint", &server.url()]),
        Duration::from_secs(120),
    );
    let sent: Value = serde_json::from_slice(&output.stdout).expect("the script prints JSON");
    let trace_id = sent["trace_id"].as_str().expect("trace_id").to_owned();
    // What the SDK says it sent: span id → (service, name, parent).
    let sent_spans: BTreeMap<String, (String, String, Option<String>)> = sent["spans"]
        .as_array()
        .expect("spans")
        .iter()
        .map(|s| {
            (
                s["span_id"].as_str().unwrap().to_owned(),
                (
                    s["service"].as_str().unwrap().to_owned(),
                    s["name"].as_str().unwrap().to_owned(),
                    s["parent_span_id"].as_str().map(str::to_owned),
                ),
            )
        })
        .collect();
    assert_eq!(sent_spans.len(), 6, "{sent}");

    assert_eq!(
        jaeger_data(&server, "/api/services"),
        json!(["checkout", "frontend", "payment"])
    );
    assert_eq!(
        jaeger_data(&server, "/api/services/payment/operations"),
        json!(["POST /api/charge", "charge card"])
    );

    // Grafana's search: its time range in µs, `lookback=custom`, tags as JSON.
    let (start, end) = (now_us() - 3_600_000_000, now_us() + 60_000_000);
    let found = jaeger_data(
        &server,
        &format!(
            "/api/traces?service=payment&operation=charge%20card&limit=20&start={start}&end={end}\
             &lookback=custom&tags=%7B%22payment.attempt%22%3A%222%22%7D&minDuration=1us"
        ),
    );
    assert_eq!(found.as_array().map(Vec::len), Some(1), "{found}");
    let trace = jaeger_data(&server, &format!("/api/traces/{trace_id}"));
    assert_eq!(found[0], trace[0], "a search returns whole traces");
    let trace = &trace[0];
    assert_eq!(trace["traceID"], json!(trace_id));

    let processes = trace["processes"].as_object().expect("processes");
    let services: BTreeSet<&str> = processes
        .values()
        .map(|p| p["serviceName"].as_str().unwrap())
        .collect();
    assert_eq!(
        services,
        BTreeSet::from(["checkout", "frontend", "payment"])
    );
    let spans = trace["spans"].as_array().expect("spans");
    assert_eq!(spans.len(), 6);
    for span in spans {
        let id = span["spanID"].as_str().unwrap();
        let (service, name, parent) = &sent_spans[id];
        assert_eq!(span["operationName"], json!(name));
        let process = &processes[span["processID"].as_str().unwrap()];
        assert_eq!(process["serviceName"], json!(service));
        // The SDK's resource: `telemetry.sdk.*` among the process tags.
        assert!(
            process["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["key"] == json!("telemetry.sdk.language")),
            "{process}"
        );
        let parent_reference = span["references"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["refType"] == json!("CHILD_OF"))
            .map(|r| r["spanID"].as_str().unwrap().to_owned());
        assert_eq!(&parent_reference, parent, "{span}");
        assert!(span["startTime"].as_u64().unwrap() >= start as u64);
    }

    // Typed tags, as Jaeger types the SDK's attributes.
    let tag = |service: &str, name: &str, key: &str| -> Value {
        let span = spans
            .iter()
            .find(|s| {
                s["operationName"] == json!(name)
                    && processes[s["processID"].as_str().unwrap()]["serviceName"] == json!(service)
            })
            .unwrap_or_else(|| panic!("no span {service}/{name}"));
        let tag = span["tags"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["key"] == json!(key))
            .unwrap_or_else(|| panic!("no tag {key} on {span}"));
        json!([tag["type"], tag["value"]])
    };
    for (service, name, key, expected) in [
        (
            "frontend",
            "GET /checkout",
            "user.premium",
            json!(["bool", true]),
        ),
        (
            "frontend",
            "GET /checkout",
            "http.response.status_code",
            json!(["int64", 200]),
        ),
        (
            "frontend",
            "GET /checkout",
            "cart.items",
            json!(["string", r#"["sku-1","sku-2","sku-3"]"#]),
        ),
        (
            "frontend",
            "GET /checkout",
            "span.kind",
            json!(["string", "server"]),
        ),
        (
            "checkout",
            "POST /api/checkout",
            "order.total",
            json!(["float64", 42.5]),
        ),
        (
            "payment",
            "charge card",
            "payment.attempt",
            json!(["int64", 2]),
        ),
        (
            "payment",
            "charge card",
            "payment.fraud_scores",
            json!(["string", "[0.25,1.5]"]),
        ),
        (
            "payment",
            "charge card",
            "span.kind",
            json!(["string", "internal"]),
        ),
    ] {
        assert_eq!(tag(service, name, key), expected, "{service}/{name} {key}");
    }

    // The dependency graph, as Grafana asks for it (ms).
    let end_ms = now_us() / 1_000 + 60_000;
    let links = jaeger_data(
        &server,
        &format!("/api/dependencies?endTs={end_ms}&lookback=3600000"),
    );
    let edges: BTreeSet<(String, String, u64)> = links
        .as_array()
        .expect("links")
        .iter()
        .map(|l| {
            (
                l["parent"].as_str().unwrap().to_owned(),
                l["child"].as_str().unwrap().to_owned(),
                l["callCount"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        edges,
        BTreeSet::from([
            ("checkout".to_owned(), "payment".to_owned(), 1),
            ("frontend".to_owned(), "checkout".to_owned(), 1),
        ])
    );
}
