//! Tempo's query API: trace by id (OTLP protobuf and JSON, v1 and v2) giving
//! back exactly what was sent, search with TraceQL and the legacy parameters,
//! tags and tag values, and the errors.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, TracesData, span,
};
use prost::Message;
use serde_json::{Value, json};

const MS: u64 = 1_000_000;
const TRACE: [u8; 16] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];
const TRACE_HEX: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
/// A second trace, 10 s later, whose id starts with zeros.
const LATER: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0xbc];

fn value(v: any_value::Value) -> Option<AnyValue> {
    Some(AnyValue { value: Some(v) })
}

fn attr(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value(v),
        ..Default::default()
    }
}

fn typed_attributes() -> Vec<KeyValue> {
    use any_value::Value::*;
    vec![
        attr("http.route", StringValue("/checkout".into())),
        attr("http.response.status_code", IntValue(502)),
        attr("ratio", DoubleValue(0.25)),
        attr("cache.hit", BoolValue(false)),
        attr("blob", BytesValue(vec![0, 1, 254])),
        attr(
            "tags",
            ArrayValue(opentelemetry_proto::tonic::common::v1::ArrayValue {
                values: vec![
                    AnyValue {
                        value: Some(StringValue("a".into())),
                    },
                    AnyValue {
                        value: Some(IntValue(7)),
                    },
                ],
            }),
        ),
        attr(
            "nested",
            KvlistValue(KeyValueList {
                values: vec![attr("inner", BoolValue(true))],
            }),
        ),
    ]
}

fn span_of(
    trace: [u8; 16],
    n: u8,
    parent: Option<u8>,
    name: &str,
    start_ms: u64,
    end_ms: u64,
    kind: i32,
) -> Span {
    Span {
        trace_id: trace.to_vec(),
        span_id: vec![0x10, 0, 0, 0, 0, 0, trace[15], n],
        parent_span_id: parent
            .map(|p| vec![0x10, 0, 0, 0, 0, 0, trace[15], p])
            .unwrap_or_default(),
        name: name.into(),
        kind,
        start_time_unix_nano: BASE_NS + start_ms * MS,
        end_time_unix_nano: BASE_NS + end_ms * MS,
        ..Default::default()
    }
}

fn resource(service: &str, extra: Vec<KeyValue>) -> Option<Resource> {
    let mut attributes = vec![attr(
        "service.name",
        any_value::Value::StringValue(service.into()),
    )];
    attributes.extend(extra);
    Some(Resource {
        attributes,
        ..Default::default()
    })
}

/// Trace [`TRACE`]: frontend `GET /checkout` (server, 0–100 ms, typed
/// attributes, an event, a link) → backend `charge` (server, 30–90 ms,
/// error) → backend `SELECT` (client, 40–80 ms, `db.system`); trace
/// [`LATER`]: frontend `GET /cart` alone, 10 s later, 5 ms.
fn example() -> ExportTraceServiceRequest {
    let mut root = span_of(TRACE, 1, None, "GET /checkout", 0, 100, 2);
    root.attributes = typed_attributes();
    root.trace_state = "vendor=1".into();
    root.events = vec![span::Event {
        time_unix_nano: BASE_NS + 5 * MS,
        name: "cache miss".into(),
        attributes: vec![attr("size", any_value::Value::IntValue(3))],
        ..Default::default()
    }];
    root.links = vec![span::Link {
        trace_id: LATER.to_vec(),
        span_id: vec![0x10, 0, 0, 0, 0, 0, 0xbc, 1],
        trace_state: String::new(),
        attributes: vec![attr(
            "reason",
            any_value::Value::StringValue("retry".into()),
        )],
        ..Default::default()
    }];
    root.status = Some(Status {
        code: 1,
        message: String::new(),
    });
    let mut charge = span_of(TRACE, 2, Some(1), "charge", 30, 90, 2);
    charge.status = Some(Status {
        code: 2,
        message: "card declined".into(),
    });
    charge.attributes = vec![attr(
        "http.response.status_code",
        any_value::Value::IntValue(500),
    )];
    let mut select = span_of(TRACE, 3, Some(2), "SELECT", 40, 80, 3);
    select.attributes = vec![attr(
        "db.system",
        any_value::Value::StringValue("postgresql".into()),
    )];
    let mut cart = span_of(LATER, 1, None, "GET /cart", 10_000, 10_005, 2);
    cart.attributes = vec![attr(
        "http.route",
        any_value::Value::StringValue("/cart".into()),
    )];
    let scope = |name: &str| {
        Some(InstrumentationScope {
            name: name.into(),
            version: "1.2.3".into(),
            ..Default::default()
        })
    };
    ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: resource(
                    "frontend",
                    vec![
                        attr("host.name", any_value::Value::StringValue("node-1".into())),
                        attr("process.pid", any_value::Value::IntValue(42)),
                    ],
                ),
                scope_spans: vec![ScopeSpans {
                    scope: scope("io.opentelemetry.http"),
                    spans: vec![root, cart],
                    ..Default::default()
                }],
                ..Default::default()
            },
            ResourceSpans {
                resource: resource("backend", vec![]),
                scope_spans: vec![ScopeSpans {
                    scope: scope("payments"),
                    spans: vec![charge, select],
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
    }
}

async fn app_with_example() -> TestApp {
    let app = TestApp::new().await;
    let reply = app.post_traces(PROTOBUF, None, protobuf(&example())).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    app
}

async fn get(app: &TestApp, uri: &str, accept: Option<&str>) -> Reply {
    let mut request = Request::get(uri);
    if let Some(accept) = accept {
        request = request.header(header::ACCEPT, accept);
    }
    app.send(request.body(Body::empty()).unwrap()).await
}

#[derive(Clone, PartialEq, prost::Message)]
struct TraceByIdResponse {
    #[prost(message, optional, tag = "1")]
    trace: Option<TracesData>,
}

/// `trace`'s spans per service, each with its resource and scope, spans by id.
fn by_service(
    resource_spans: &[ResourceSpans],
    trace: &[u8],
) -> Vec<(Resource, InstrumentationScope, Vec<Span>)> {
    let mut out = Vec::new();
    for rs in resource_spans {
        for ss in &rs.scope_spans {
            let mut spans: Vec<Span> = ss
                .spans
                .iter()
                .filter(|s| s.trace_id == trace)
                .cloned()
                .collect();
            if spans.is_empty() {
                continue;
            }
            spans.sort_by(|a, b| a.span_id.cmp(&b.span_id));
            for span in &mut spans {
                // No status and status unset are the same to OTLP.
                span.status.get_or_insert_default();
            }
            let mut resource = rs.resource.clone().unwrap_or_default();
            resource.attributes.sort_by(|a, b| a.key.cmp(&b.key));
            out.push((resource, ss.scope.clone().unwrap_or_default(), spans));
        }
    }
    out.sort_by(|a, b| format!("{:?}", a.0).cmp(&format!("{:?}", b.0)));
    out
}

#[tokio::test]
async fn trace_by_id_protobuf_gives_back_what_was_sent() {
    let app = app_with_example().await;
    let sent = by_service(&example().resource_spans, &TRACE);

    let reply = get(
        &app,
        &format!("/api/v2/traces/{TRACE_HEX}"),
        Some("application/protobuf"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.content_type(), "application/protobuf");
    let v2 = TraceByIdResponse::decode(reply.body.clone()).unwrap();
    let got = by_service(&v2.trace.unwrap().resource_spans, &TRACE);
    assert_eq!(got, sent);

    // v1 is Tempo's bare `Trace`, wire-identical to TracesData.
    let reply = get(
        &app,
        &format!("/api/traces/{}", TRACE_HEX.to_uppercase()),
        Some("application/protobuf"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let v1 = TracesData::decode(reply.body.clone()).unwrap();
    assert_eq!(by_service(&v1.resource_spans, &TRACE), sent);
    // Only the asked trace.
    assert!(
        v1.resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .all(|s| s.trace_id == TRACE)
    );
}

#[tokio::test]
async fn trace_by_id_json_is_otlp_json() {
    let app = app_with_example().await;
    let reply = get(&app, &format!("/api/v2/traces/{TRACE_HEX}"), None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.content_type(), "application/json");
    let body = reply.json();
    let resource_spans = body["trace"]["resourceSpans"]
        .as_array()
        .expect("resourceSpans");
    assert_eq!(resource_spans.len(), 2);
    let spans: Vec<&Value> = resource_spans
        .iter()
        .flat_map(|rs| rs["scopeSpans"].as_array().unwrap())
        .flat_map(|ss| ss["spans"].as_array().unwrap())
        .collect();
    assert_eq!(spans.len(), 3);
    // Tempo's JSON is gogo jsonpb's: `bytes` ids in base64, enums by name,
    // 64-bit integers as strings, zero values left out.
    let root = spans.iter().find(|s| s["name"] == "GET /checkout").unwrap();
    assert_eq!(root["traceId"], "S/kvNXezTaajzpKdDg5HNg==");
    assert_eq!(root["spanId"], "EAAAAAAANgE=");
    assert_eq!(root.get("parentSpanId"), None);
    assert_eq!(root["kind"], "SPAN_KIND_SERVER");
    assert_eq!(root["status"], json!({"code": "STATUS_CODE_OK"}));
    assert_eq!(root["startTimeUnixNano"], BASE_NS.to_string());
    assert_eq!(root["traceState"], "vendor=1");
    assert_eq!(root.get("droppedAttributesCount"), None);
    assert_eq!(root.get("flags"), None);
    assert_eq!(
        root["events"],
        json!([{
            "timeUnixNano": (BASE_NS + 5 * MS).to_string(),
            "name": "cache miss",
            "attributes": [{"key": "size", "value": {"intValue": "3"}}],
        }])
    );
    assert_eq!(root["links"][0]["traceId"], "AAAAAAAAAAAAAAAAAAAKvA==");
    let typed: Vec<&Value> = root["attributes"].as_array().unwrap().iter().collect();
    assert_eq!(
        typed,
        vec![
            &json!({"key": "http.route", "value": {"stringValue": "/checkout"}}),
            &json!({"key": "http.response.status_code", "value": {"intValue": "502"}}),
            &json!({"key": "ratio", "value": {"doubleValue": 0.25}}),
            &json!({"key": "cache.hit", "value": {"boolValue": false}}),
            &json!({"key": "blob", "value": {"bytesValue": "AAH+"}}),
            &json!({"key": "tags", "value": {"arrayValue": {"values": [
                {"stringValue": "a"}, {"intValue": "7"}
            ]}}}),
            &json!({"key": "nested", "value": {"kvlistValue": {"values": [
                {"key": "inner", "value": {"boolValue": true}}
            ]}}}),
        ]
    );
    let charge = spans.iter().find(|s| s["name"] == "charge").unwrap();
    assert_eq!(charge["parentSpanId"], "EAAAAAAANgE=");
    assert_eq!(
        charge["status"],
        json!({"message": "card declined", "code": "STATUS_CODE_ERROR"})
    );
    let status = root["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == "http.response.status_code")
        .unwrap();
    assert_eq!(status["value"], json!({"intValue": "502"}));
    let frontend = resource_spans
        .iter()
        .find(|rs| rs["scopeSpans"][0]["scope"]["name"] == "io.opentelemetry.http")
        .unwrap();
    assert!(
        frontend["resource"]["attributes"]
            .as_array()
            .unwrap()
            .contains(&json!({"key": "service.name", "value": {"stringValue": "frontend"}}))
    );

    // v1: `batches`.
    let reply = get(
        &app,
        &format!("/api/traces/{TRACE_HEX}"),
        Some("application/json"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["batches"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn trace_by_id_honours_start_end_and_says_404_and_400() {
    let app = app_with_example().await;
    let base_s = BASE_NS / 1_000_000_000;
    // A window that holds the trace.
    let reply = get(
        &app,
        &format!(
            "/api/v2/traces/{TRACE_HEX}?start={}&end={}",
            base_s - 60,
            base_s + 60
        ),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    // A window before it: nothing.
    let reply = get(
        &app,
        &format!(
            "/api/v2/traces/{TRACE_HEX}?start={}&end={}",
            base_s - 600,
            base_s - 60
        ),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    // Leading zeros may be left out.
    let reply = get(&app, "/api/traces/abc", Some("application/protobuf")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let reply = get(&app, "/api/traces/abd", None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.text().contains("not found"), "{}", reply.text());
    let reply = get(&app, "/api/traces/xyz", None).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = get(
        &app,
        &format!("/api/traces/{TRACE_HEX}?start=yesterday"),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.text().contains("start"), "{}", reply.text());
}

#[tokio::test]
async fn echo_ready_buildinfo() {
    let app = TestApp::new().await;
    let reply = get(&app, "/api/echo", None).await;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (StatusCode::OK, "echo")
    );
    assert_eq!(get(&app, "/ready", None).await.status, StatusCode::OK);
    let info = get(&app, "/api/status/buildinfo", None).await.json();
    assert!(info["version"].as_str().unwrap().starts_with("2."));
    assert!(
        info["revision"]
            .as_str()
            .unwrap()
            .starts_with("lighttrace-")
    );
}

fn window() -> String {
    let base_s = BASE_NS / 1_000_000_000;
    format!("start={}&end={}", base_s - 60, base_s + 60)
}

async fn search(app: &TestApp, params: &str) -> Value {
    let reply = get(app, &format!("/api/search?{params}&{}", window()), None).await;
    assert_eq!(reply.status, StatusCode::OK, "{params}: {}", reply.text());
    reply.json()
}

fn encode(q: &str) -> String {
    url::form_urlencoded::byte_serialize(q.as_bytes()).collect()
}

fn trace_ids(result: &Value) -> Vec<String> {
    result["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["traceID"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn search_with_traceql() {
    let app = app_with_example().await;
    // Everything, newest first; ids without leading zeros, like Tempo.
    let all = search(&app, &format!("q={}", encode("{}"))).await;
    assert_eq!(
        trace_ids(&all),
        vec!["abc".to_owned(), TRACE_HEX.to_owned()]
    );
    let checkout = &all["traces"][1];
    assert_eq!(checkout["rootServiceName"], "frontend");
    assert_eq!(checkout["rootTraceName"], "GET /checkout");
    assert_eq!(checkout["startTimeUnixNano"], BASE_NS.to_string());
    assert_eq!(checkout["durationMs"], 100);
    assert_eq!(
        checkout["serviceStats"],
        json!({"backend": {"spanCount": 2, "errorCount": 1}, "frontend": {"spanCount": 1}})
    );
    // `{}` matches all 3 spans; spss (default 3) caps the list.
    assert_eq!(checkout["spanSets"][0]["matched"], 3);
    assert_eq!(
        checkout["spanSets"][0]["spans"].as_array().unwrap().len(),
        3
    );
    assert_eq!(checkout["spanSet"], checkout["spanSets"][0]);
    let limited = search(&app, &format!("q={}&spss=1&limit=1", encode("{}"))).await;
    assert_eq!(trace_ids(&limited), vec!["abc".to_owned()]);
    assert_eq!(
        limited["traces"][0]["spanSets"][0]["spans"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let cases: &[(&str, &[&str])] = &[
        (r#"{ resource.service.name = "backend" }"#, &[TRACE_HEX]),
        (r#"{ .service.name = "frontend" }"#, &["abc", TRACE_HEX]),
        (r#"{ name = "GET /cart" }"#, &["abc"]),
        (r#"{ status = error }"#, &[TRACE_HEX]),
        (
            r#"{ status != error && kind = server }"#,
            &["abc", TRACE_HEX],
        ),
        (r#"{ kind = client }"#, &[TRACE_HEX]),
        (r#"{ duration > 50ms }"#, &[TRACE_HEX]),
        (r#"{ duration <= 5ms }"#, &["abc"]),
        (r#"{ span.http.response.status_code >= 500 }"#, &[TRACE_HEX]),
        (r#"{ span.http.response.status_code = 404 }"#, &[]),
        (r#"{ .http.route =~ "/c.*" }"#, &["abc", TRACE_HEX]),
        (r#"{ .http.route =~ "/c" }"#, &[]),
        (r#"{ .http.route !~ "/cart" }"#, &[TRACE_HEX]),
        (
            r#"{ span.db.system = "postgresql" } && { status = error }"#,
            &[TRACE_HEX],
        ),
        (
            r#"{ span.db.system = "postgresql" } && { name = "GET /cart" }"#,
            &[],
        ),
        (
            r#"{ span.db.system = "postgresql" } || { name = "GET /cart" }"#,
            &["abc", TRACE_HEX],
        ),
        (
            r#"{ resource.host.name = "node-1" && span.cache.hit = false }"#,
            &[TRACE_HEX],
        ),
        (r#"{ resource.process.pid = 42 }"#, &["abc", TRACE_HEX]),
        (
            r#"{ resource.process.pid = 42 && span.ratio >= 0.25 }"#,
            &[TRACE_HEX],
        ),
        (
            r#"{ trace:rootService = "frontend" && resource.service.name = "backend" }"#,
            &[TRACE_HEX],
        ),
        (r#"{ trace:rootName = "GET /cart" }"#, &["abc"]),
        (r#"{ trace:duration > 90ms }"#, &[TRACE_HEX]),
        (r#"{ span.ratio > 0.2 && span.ratio < 0.3 }"#, &[TRACE_HEX]),
    ];
    for (q, expected) in cases {
        let result = search(&app, &format!("q={}", encode(q))).await;
        assert_eq!(
            trace_ids(&result),
            expected.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "{q}"
        );
    }

    // The matched spans and the attributes the query read.
    let result = search(
        &app,
        &format!(
            "q={}",
            encode(r#"{ span.db.system = "postgresql" } && { status = error }"#)
        ),
    )
    .await;
    let set = &result["traces"][0]["spanSets"][0];
    assert_eq!(set["matched"], 2);
    let names: Vec<&str> = set["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["charge", "SELECT"]);
    let select = &set["spans"][1];
    assert_eq!(select["durationNanos"], (40 * MS).to_string());
    assert_eq!(
        select["attributes"],
        json!([{"key": "db.system", "value": {"stringValue": "postgresql"}}])
    );
    // Each span shows what the query's conditions accept of it, as Tempo
    // reads each column through the query's predicates on it.
    assert_eq!(
        set["spans"][0]["attributes"],
        json!([{"key": "status", "value": {"stringValue": "error"}}])
    );
}

/// The `attributes` of the matched span `name` in the search for `q`, `None`
/// when the span has none (Tempo leaves the list out).
async fn shown(app: &TestApp, q: &str, name: &str) -> Option<Value> {
    let result = search(app, &format!("q={}", encode(q))).await;
    let span = result["traces"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["spanSets"][0]["spans"].as_array().unwrap())
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("{q}: no matched span {name}: {result}"))
        .clone();
    // `spanSet` repeats `spanSets[0]`.
    for trace in result["traces"].as_array().unwrap() {
        assert_eq!(trace["spanSet"], trace["spanSets"][0], "{q}");
    }
    span.get("attributes").cloned()
}

fn kv(key: &str, value: Value) -> Value {
    json!({"key": key, "value": value})
}

#[tokio::test]
async fn search_shows_typed_attributes_and_the_intrinsics_read_like_tempo() {
    let app = app_with_example().await;
    let cases: Vec<(&str, &str, Option<Value>)> = vec![
        // Typed as the span sent them: an int64 as a JSON string, a double
        // and a bool as JSON values.
        (
            "{ span.http.response.status_code >= 500 }",
            "GET /checkout",
            Some(json!([kv(
                "http.response.status_code",
                json!({"intValue": "502"})
            )])),
        ),
        (
            "{ span.http.response.status_code >= 500 }",
            "charge",
            Some(json!([kv(
                "http.response.status_code",
                json!({"intValue": "500"})
            )])),
        ),
        (
            "{ span.ratio > 0.2 && span.cache.hit = false }",
            "GET /checkout",
            Some(json!([
                kv("ratio", json!({"doubleValue": 0.25})),
                kv("cache.hit", json!({"boolValue": false})),
            ])),
        ),
        (
            "{ resource.process.pid = 42 }",
            "GET /cart",
            Some(json!([kv("process.pid", json!({"intValue": "42"}))])),
        ),
        // Unscoped: the span's attribute, else the resource's, typed as
        // the one read.
        (
            "{ .process.pid = 42 && .http.route = \"/checkout\" }",
            "GET /checkout",
            Some(json!([
                kv("process.pid", json!({"intValue": "42"})),
                kv("http.route", json!({"stringValue": "/checkout"})),
            ])),
        ),
        (
            "{ resource.service.name = \"backend\" }",
            "SELECT",
            Some(json!([kv(
                "service.name",
                json!({"stringValue": "backend"})
            )])),
        ),
        // The intrinsics read, by their TraceQL names and values.
        (
            "{ status = error }",
            "charge",
            Some(json!([kv("status", json!({"stringValue": "error"}))])),
        ),
        (
            "{ status != error && kind = server }",
            "GET /checkout",
            Some(json!([
                kv("status", json!({"stringValue": "ok"})),
                kv("kind", json!({"stringValue": "server"})),
            ])),
        ),
        (
            "{ status != error && kind = server }",
            "GET /cart",
            Some(json!([
                kv("status", json!({"stringValue": "unset"})),
                kv("kind", json!({"stringValue": "server"})),
            ])),
        ),
        // Only what a condition accepts: charge is a server span, SELECT
        // has no status message.
        (
            "{ kind = client || statusMessage = \"card declined\" }",
            "charge",
            Some(json!([kv(
                "statusMessage",
                json!({"stringValue": "card declined"})
            )])),
        ),
        (
            "{ kind = client || statusMessage = \"card declined\" }",
            "SELECT",
            Some(json!([kv("kind", json!({"stringValue": "client"}))])),
        ),
        (
            "{ nestedSetParent < 0 }",
            "GET /checkout",
            Some(json!([kv("nestedSetParent", json!({"intValue": "-1"}))])),
        ),
        (
            "{ span.http.response.status_code >= 500 || span.db.system = \"postgresql\" }",
            "SELECT",
            Some(json!([kv(
                "db.system",
                json!({"stringValue": "postgresql"})
            )])),
        ),
        // `name` has its own field; `duration` and the trace's intrinsics
        // are left out.
        ("{ name = \"charge\" }", "charge", None),
        ("{ duration > 50ms }", "charge", None),
        (
            "{ trace:rootService = \"frontend\" && kind = client }",
            "SELECT",
            Some(json!([kv("kind", json!({"stringValue": "client"}))])),
        ),
        ("{}", "SELECT", None),
    ];
    for (q, name, expected) in cases {
        assert_eq!(shown(&app, q, name).await, expected, "{q} {name}");
    }
}

#[tokio::test]
async fn search_with_legacy_parameters_and_refusals() {
    let app = app_with_example().await;
    let result = search(&app, &format!("tags={}", encode("service.name=backend"))).await;
    assert_eq!(trace_ids(&result), vec![TRACE_HEX.to_owned()]);
    let result = search(&app, &format!("tags={}", encode(r#"http.route="/cart""#))).await;
    assert_eq!(trace_ids(&result), vec!["abc".to_owned()]);
    let result = search(&app, "minDuration=50ms").await;
    assert_eq!(trace_ids(&result), vec![TRACE_HEX.to_owned()]);
    let result = search(&app, "maxDuration=50ms").await;
    assert_eq!(trace_ids(&result), vec!["abc".to_owned()]);
    let result = search(&app, &format!("tags={}", encode("error=true"))).await;
    assert_eq!(trace_ids(&result), vec![TRACE_HEX.to_owned()]);

    for (params, message) in [
        (format!("q={}", encode("{ } | count() > 1")), "pipelines"),
        (
            format!("q={}", encode("{ .a = 1 } >> { .b = 1 }")),
            "structural",
        ),
        (
            format!("q={}", encode("{ duration > \"x\" }")),
            "different types",
        ),
        ("limit=0".to_owned(), "limit"),
        ("minDuration=fast".to_owned(), "minDuration"),
        (format!("tags={}", encode("a=1 a=2")), "twice"),
    ] {
        let reply = get(&app, &format!("/api/search?{params}&{}", window()), None).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{params}");
        assert!(reply.text().contains(message), "{params}: {}", reply.text());
    }
    let reply = get(&app, "/api/search?start=5&end=1", None).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn tags_and_values() {
    let app = app_with_example().await;
    let base_s = BASE_NS / 1_000_000_000;
    let range = format!("start={}&end={}", base_s - 60, base_s + 60);
    let v1 = get(&app, &format!("/api/search/tags?{range}"), None)
        .await
        .json();
    let names: Vec<&str> = v1["tagNames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for name in [
        "http.route",
        "db.system",
        "host.name",
        "service.name",
        "process.pid",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    let v2 = get(&app, &format!("/api/v2/search/tags?{range}"), None)
        .await
        .json();
    let scope = |name: &str| -> Vec<String> {
        v2["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    assert!(scope("resource").contains(&"host.name".to_owned()));
    assert!(scope("span").contains(&"http.route".to_owned()));
    assert!(!scope("span").contains(&"host.name".to_owned()));
    assert!(scope("intrinsic").contains(&"duration".to_owned()));
    let only = get(
        &app,
        &format!("/api/v2/search/tags?scope=intrinsic&{range}"),
        None,
    )
    .await
    .json();
    assert_eq!(only["scopes"].as_array().unwrap().len(), 1);

    let values = get(
        &app,
        &format!("/api/search/tag/service.name/values?{range}"),
        None,
    )
    .await
    .json();
    assert_eq!(values["tagValues"], json!(["backend", "frontend"]));
    let values = get(
        &app,
        &format!("/api/v2/search/tag/span.http.response.status_code/values?{range}"),
        None,
    )
    .await
    .json();
    assert_eq!(
        values["tagValues"],
        json!([{"type": "int", "value": "500"}, {"type": "int", "value": "502"}])
    );
    let values = get(
        &app,
        &format!(
            "/api/v2/search/tag/resource.service.name/values?{range}&q={}",
            encode(r#"{ status = error }"#)
        ),
        None,
    )
    .await
    .json();
    assert_eq!(
        values["tagValues"],
        json!([{"type": "string", "value": "backend"}])
    );
    let values = get(
        &app,
        &format!("/api/v2/search/tag/status/values?{range}"),
        None,
    )
    .await
    .json();
    assert_eq!(
        values["tagValues"],
        json!([{"type": "keyword", "value": "error"}, {"type": "keyword", "value": "ok"}, {"type": "keyword", "value": "unset"}])
    );
    let values = get(
        &app,
        &format!("/api/v2/search/tag/name/values?{range}"),
        None,
    )
    .await
    .json();
    assert_eq!(values["tagValues"].as_array().unwrap().len(), 4);
    let reply = get(
        &app,
        &format!("/api/v2/search/tag/duration/values?{range}"),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = get(
        &app,
        &format!("/api/v2/search/tags?scope=event&{range}"),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn search_leaves_out_a_duration_under_a_millisecond_like_tempo() {
    let app = TestApp::new().await;
    let mut ping = span_of(TRACE, 1, None, "ping", 0, 0, 2);
    ping.end_time_unix_nano = ping.start_time_unix_nano + 400_000;
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource("frontend", vec![]),
            scope_spans: vec![ScopeSpans {
                spans: vec![ping],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let reply = app.post_traces(PROTOBUF, None, protobuf(&request)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let result = search(&app, &format!("q={}", encode("{}"))).await;
    let trace = &result["traces"][0];
    assert_eq!(trace["traceID"], TRACE_HEX);
    // `durationMs` is a uint32: gogo jsonpb drops it at 0.
    assert_eq!(trace.get("durationMs"), None, "{trace}");
    assert_eq!(trace["spanSets"][0]["spans"][0]["durationNanos"], "400000");
}
