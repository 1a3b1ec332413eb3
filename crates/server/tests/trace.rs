//! `GET /api/v1/traces/{id}`: ids in any case and without leading zeros, the
//! analysis in the JSON (tree, self time, critical path, clock skew, orphans),
//! errors and logs attached, 400 / 404 / 401.

mod common;

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, Int64Array, MapBuilder, RecordBatch, StringArray};
use arrow::array::{StringBuilder, TimestampNanosecondArray};
use arrow::datatypes::DataType;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use lighttrace_server::{ProjectKey, Projects, ServerConfig};
use lighttrace_storage::Table;
use opentelemetry_proto::tonic::trace::v1::{Span, Status, span::Event};
use serde_json::{Value, json};

const MS: u64 = 1_000_000;
/// `…0abc`: 14 zero bytes, then 0x0a, 0xbc.
const TRACE: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0xbc];
const TRACE_HEX: &str = "00000000000000000000000000000abc";

fn span_id(n: u8) -> Vec<u8> {
    vec![0x10, 0, 0, 0, 0, 0, 0, n]
}

fn span_hex(n: u8) -> String {
    format!("10000000000000{n:02x}")
}

/// Span `n` of `trace` over `[start_ms, end_ms]` after [`BASE_NS`].
fn timed(
    trace: [u8; 16],
    n: u8,
    parent: Option<u8>,
    name: &str,
    start_ms: i64,
    end_ms: i64,
) -> Span {
    let at = |ms: i64| (BASE_NS as i64 + ms * MS as i64) as u64;
    Span {
        trace_id: trace.to_vec(),
        span_id: span_id(n),
        parent_span_id: parent.map(span_id).unwrap_or_default(),
        name: name.into(),
        kind: 3, // client
        start_time_unix_nano: at(start_ms),
        end_time_unix_nano: at(end_ms),
        ..Default::default()
    }
}

/// The example: A [0, 100 ms] (frontend) with B [10, 25], D [28, 60]
/// and C [30, 90] (backend); C failed.
async fn ingest_example(app: &TestApp) {
    let mut a = timed(TRACE, 1, None, "GET /checkout", 0, 100);
    a.kind = 2;
    a.attributes = vec![string_attr("http.route", "/checkout")];
    a.events = vec![Event {
        time_unix_nano: BASE_NS + 5 * MS,
        name: "cache miss".into(),
        ..Default::default()
    }];
    let mut c = timed(TRACE, 4, Some(1), "charge", 30, 90);
    c.status = Some(Status {
        code: 2,
        message: "card declined".into(),
    });
    for (service, spans) in [
        ("frontend", vec![a]),
        (
            "backend",
            vec![
                timed(TRACE, 2, Some(1), "load cart", 10, 25),
                timed(TRACE, 3, Some(1), "price", 28, 60),
                c,
            ],
        ),
    ] {
        let reply = app
            .post_traces(PROTOBUF, None, protobuf(&request(service, spans)))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
}

/// One row of `table` (`errors` or `logs`): `values` by column, `NULL` for
/// other nullable columns, something plausible for the rest.
fn table_row(table: Table, values: &[(&str, &str)]) -> RecordBatch {
    let schema = table.schema();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| -> ArrayRef {
            let name = field.name().as_str();
            let given = values.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
            match field.data_type() {
                DataType::Utf8 => Arc::new(StringArray::from(vec![match given {
                    Some(value) => Some(value.to_owned()),
                    None if field.is_nullable() => None,
                    None => Some(format!("{name} value")),
                }])),
                DataType::Timestamp(_, _) => Arc::new(
                    TimestampNanosecondArray::from(vec![BASE_NS as i64 + 50 * MS as i64])
                        .with_timezone("UTC"),
                ),
                DataType::Int32 => Arc::new(Int32Array::from(vec![17])),
                DataType::Int64 => Arc::new(Int64Array::from(vec![0])),
                DataType::Map(_, _) => {
                    let mut map = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
                    map.append(true).unwrap();
                    Arc::new(map.finish())
                }
                other => panic!("no test value for {other}"),
            }
        })
        .collect();
    RecordBatch::try_new(schema, columns).unwrap()
}

async fn get(app: &TestApp, path: &str, key: Option<&str>) -> Reply {
    let mut request = Request::get(path);
    if let Some(key) = key {
        request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    app.send(request.body(Body::empty()).unwrap()).await
}

fn ms(value: &Value) -> f64 {
    value
        .as_i64()
        .unwrap_or_else(|| panic!("{value} is not an integer")) as f64
        / 1e6
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_is_found_in_any_case_without_leading_zeros_and_analyzed() {
    let app = TestApp::new().await;
    ingest_example(&app).await;
    let project = [("project", "default"), ("trace_id", TRACE_HEX)];
    let c = span_hex(4);
    let b = span_hex(2);
    for row in [
        table_row(
            Table::Errors,
            &[
                project[0],
                project[1],
                ("span_id", &c),
                ("exception_type", "CardDeclined"),
            ],
        ),
        table_row(
            Table::Errors,
            &[project[0], project[1], ("exception_type", "Timeout")],
        ),
        table_row(
            Table::Logs,
            &[
                project[0],
                project[1],
                ("span_id", &b),
                ("body", "cart loaded"),
            ],
        ),
    ] {
        app.lake.write(row).await.unwrap();
    }

    let reply = get(&app, "/api/v1/traces/ABC", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.content_type(), JSON);
    let trace = reply.json();
    for id in ["abc", "0ABC", &TRACE_HEX.to_uppercase(), TRACE_HEX] {
        let again = get(&app, &format!("/api/v1/traces/{id}"), None).await;
        assert_eq!(again.status, StatusCode::OK, "{id}: {}", again.text());
        assert_eq!(again.json(), trace, "{id}");
    }

    assert_eq!(trace["trace_id"], json!(TRACE_HEX));
    assert_eq!(trace["start_time"], json!("2024-05-01T12:00:00.000000000Z"));
    assert_eq!(trace["start_time_unix_nano"], json!(BASE_NS));
    assert_eq!(ms(&trace["duration_ns"]), 100.0);
    assert_eq!(trace["span_count"], json!(4));
    assert_eq!(trace["error_span_count"], json!(1));
    assert_eq!(trace["projects"], json!(["default"]));
    assert_eq!(
        trace["services"],
        json!([
            {"service_name": "backend", "span_count": 3, "error_span_count": 1},
            {"service_name": "frontend", "span_count": 1, "error_span_count": 0},
        ])
    );
    assert_eq!(trace["warnings"], json!([]));

    let spans = trace["spans"].as_array().unwrap();
    let rows: Vec<(String, u64, f64, f64, f64, f64)> = spans
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["depth"].as_u64().unwrap(),
                ms(&s["start_offset_ns"]),
                ms(&s["duration_ns"]),
                ms(&s["self_time_ns"]),
                ms(&s["critical_path_ns"]),
            )
        })
        .collect();
    let expected = [
        ("GET /checkout", 0, 0.0, 100.0, 23.0, 25.0),
        ("load cart", 1, 10.0, 15.0, 15.0, 15.0),
        ("price", 1, 28.0, 32.0, 32.0, 0.0),
        ("charge", 1, 30.0, 60.0, 60.0, 60.0),
    ];
    assert_eq!(
        rows,
        expected
            .iter()
            .map(|(n, d, o, l, s, c)| (n.to_string(), *d, *o, *l, *s, *c))
            .collect::<Vec<_>>()
    );

    let root = &spans[0];
    assert_eq!(root["span_id"], json!(span_hex(1)));
    assert_eq!(root["parent_span_id"], json!(null));
    assert_eq!(root["service_name"], json!("frontend"));
    assert_eq!(root["kind"], json!("server"));
    assert_eq!(root["status_code"], json!("unset"));
    assert_eq!(root["clock_skew_ns"], json!(0));
    assert_eq!(root["attributes"]["http.route"], json!("/checkout"));
    assert_eq!(
        root["resource_attributes"]["service.name"],
        json!("frontend")
    );
    assert_eq!(root["events"][0]["name"], json!("cache miss"));
    assert_eq!(
        root["events"][0]["time"],
        json!("2024-05-01T12:00:00.005000000Z")
    );
    assert_eq!(root["start_time"], json!("2024-05-01T12:00:00.000000000Z"));
    assert_eq!(root["end_time"], json!("2024-05-01T12:00:00.100000000Z"));

    let charge = &spans[3];
    assert_eq!(charge["parent_span_id"], json!(span_hex(1)));
    assert_eq!(charge["status_code"], json!("error"));
    assert_eq!(charge["status_message"], json!("card declined"));
    assert_eq!(charge["errors"].as_array().unwrap().len(), 1);
    assert_eq!(charge["errors"][0]["exception_type"], json!("CardDeclined"));
    assert_eq!(spans[1]["logs"][0]["body"], json!("cart loaded"));
    assert_eq!(spans[1]["logs"][0]["severity_number"], json!(17));
    assert_eq!(trace["errors"].as_array().unwrap().len(), 1);
    assert_eq!(trace["errors"][0]["exception_type"], json!("Timeout"));
    assert_eq!(trace["logs"], json!([]));

    let path: Vec<(String, f64, f64)> = trace["critical_path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["span_id"].as_str().unwrap().to_owned(),
                ms(&s["start_offset_ns"]),
                ms(&s["duration_ns"]),
            )
        })
        .collect();
    assert_eq!(
        path,
        [
            (span_hex(1), 0.0, 10.0),
            (span_hex(2), 10.0, 15.0),
            (span_hex(1), 25.0, 5.0),
            (span_hex(4), 30.0, 60.0),
            (span_hex(1), 90.0, 10.0),
        ]
    );
    assert_eq!(trace["time_by_operation"][0]["name"], json!("charge"));
    assert_eq!(ms(&trace["time_by_operation"][0]["critical_path_ns"]), 60.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_several_roots_and_clock_skew_are_reported() {
    let app = TestApp::new().await;
    let trace = [7u8; 16];
    let mut root = timed(trace, 1, None, "GET /", 0, 100);
    root.kind = 2;
    // backend's clock is 30 ms behind frontend's.
    let mut served = timed(trace, 2, Some(1), "serve", -20, 60);
    served.kind = 2;
    let lost = timed(trace, 3, Some(99), "lost", 120, 130);
    for (service, spans) in [("frontend", vec![root, lost]), ("backend", vec![served])] {
        let reply = app
            .post_traces(PROTOBUF, None, protobuf(&request(service, spans)))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    let reply = get(&app, &format!("/api/v1/traces/{}", "07".repeat(16)), None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let body = reply.json();
    let kinds: Vec<&str> = body["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["orphans", "multiple_roots", "clock_skew_adjusted"]);
    assert_eq!(body["warnings"][0]["span_ids"], json!([span_hex(3)]));
    assert_eq!(body["warnings"][2]["span_ids"], json!([span_hex(2)]));
    let spans = body["spans"].as_array().unwrap();
    let names: Vec<&str> = spans.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["GET /", "serve", "lost"]);
    assert_eq!(ms(&spans[1]["clock_skew_ns"]), 30.0);
    assert_eq!(ms(&spans[1]["start_offset_ns"]), 10.0);
    // The raw time stays as received: 20 ms before the trace's start.
    assert_eq!(
        spans[1]["start_time"],
        json!("2024-05-01T11:59:59.980000000Z")
    );
    assert_eq!(spans[2]["orphan"], json!(true));
    assert_eq!(spans[2]["depth"], json!(0));
    assert_eq!(ms(&body["duration_ns"]), 130.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_malformed_ids_are_404_and_400_with_a_message() {
    let app = TestApp::new().await;
    ingest_example(&app).await;
    let reply = get(&app, "/api/v1/traces/abd", None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text());
    assert_eq!(
        reply.json()["error"],
        json!("trace 00000000000000000000000000000abd not found")
    );
    for (id, says) in [
        ("xyz", "not hexadecimal"),
        ("0x0abc", "not hexadecimal"),
        (&"1".repeat(33), "at most 32"),
        ("0", "all zeros"),
    ] {
        let reply = get(&app, &format!("/api/v1/traces/{id}"), None).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{id}");
        let message = reply.json()["error"].as_str().unwrap().to_owned();
        assert!(message.contains(says), "{id}: {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_finds_only_its_own_projects_traces() {
    let projects = Projects::new(vec![
        ProjectKey::parse("1:key-one").unwrap(),
        ProjectKey::parse("2:key-two").unwrap(),
    ])
    .unwrap();
    let app = TestApp::with(
        |_| {},
        ServerConfig {
            projects,
            ..ServerConfig::default()
        },
    )
    .await;
    let request = Request::post("/v1/traces")
        .header(header::CONTENT_TYPE, PROTOBUF)
        .header(header::AUTHORIZATION, "Bearer key-one")
        .body(Body::from(protobuf(&request(
            "svc",
            vec![timed(TRACE, 1, None, "op", 0, 10)],
        ))))
        .unwrap();
    assert_eq!(app.send(request).await.status, StatusCode::OK);

    let path = format!("/api/v1/traces/{TRACE_HEX}");
    let mine = get(&app, &path, Some("key-one")).await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.text());
    assert_eq!(mine.json()["projects"], json!(["1"]));
    assert_eq!(mine.json()["spans"][0]["project"], json!("1"));
    let theirs = get(&app, &path, Some("key-two")).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{}", theirs.text());
    for key in [None, Some("nope")] {
        let reply = get(&app, "/api/v1/traces/not-even-hex", key).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{key:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentry_transactions_error_event_is_attached_to_its_span() {
    let app = TestApp::new().await;
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let transaction = json!({
        "type": "transaction",
        "event_id": "9ec79c33ec9942ab8353589fcb2e04dc",
        "transaction": "POST /bill",
        "contexts": {"trace": {"trace_id": trace, "span_id": "aaaaaaaaaaaaaaa1", "op": "http.server", "status": "ok"}},
        "start_timestamp": 1714564800.0,
        "timestamp": 1714564800.5,
        "spans": [{
            "trace_id": trace, "span_id": "bbbbbbbbbbbbbbb2", "parent_span_id": "aaaaaaaaaaaaaaa1",
            "op": "db", "description": "SELECT invoices",
            "start_timestamp": "2024-05-01T12:00:00.100000Z",
            "timestamp": "2024-05-01T12:00:00.400000Z",
            "status": "internal_error"
        }]
    })
    .to_string();
    let event = json!({
        "event_id": "0123456789abcdef0123456789abcdef",
        "level": "error",
        "exception": {"values": [{"type": "ValueError", "value": "boom"}]},
        "contexts": {"trace": {"trace_id": trace, "span_id": "bbbbbbbbbbbbbbb2"}}
    })
    .to_string();
    let mut body = b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}\n".to_vec();
    for (item_type, payload) in [("transaction", &transaction), ("event", &event)] {
        body.extend(
            format!(
                "{{\"type\":\"{item_type}\",\"length\":{}}}\n",
                payload.len()
            )
            .bytes(),
        );
        body.extend(payload.bytes());
        body.push(b'\n');
    }
    let request = Request::post("/api/42/envelope/")
        .body(Body::from(body))
        .unwrap();
    let reply = app.send(request).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());

    let reply = get(
        &app,
        &format!("/api/v1/traces/{}", trace.to_uppercase()),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["projects"], json!(["42"]));
    let spans = body["spans"].as_array().unwrap();
    let names: Vec<&str> = spans.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["POST /bill", "SELECT invoices"]);
    assert_eq!(spans[1]["depth"], json!(1));
    assert_eq!(spans[1]["status_code"], json!("error"));
    assert_eq!(spans[1]["errors"][0]["exception_type"], json!("ValueError"));
    assert_eq!(spans[1]["errors"][0]["exception_value"], json!("boom"));
    assert_eq!(spans[0]["errors"], json!([]));
    assert_eq!(body["errors"], json!([]));
    assert_eq!(ms(&spans[0]["critical_path_ns"]), 200.0);
    assert_eq!(ms(&spans[1]["critical_path_ns"]), 300.0);
}
