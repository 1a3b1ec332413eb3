//! Jaeger's query API under `/jaeger/api/` (what Grafana's Jaeger data source
//! calls): the contract test against a golden file of Jaeger's JSON for a
//! fixed trace, then every endpoint with its 400 / 404 / 401 answers in
//! Jaeger's error envelope.

mod common;

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use lighttrace_server::{ProjectKey, Projects, ServerConfig};
use serde_json::{Value, json};

const TRACE: &str = "5b8efff798038103d269b633813fc60c";
/// 2024-05-01T12:00:00Z in microseconds, Jaeger's unit for `start`/`end`.
const BASE_US: i64 = (BASE_NS / 1_000) as i64;
const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/golden/jaeger/trace.json"
);

/// `ms` milliseconds (and `ns` nanoseconds) after [`BASE_NS`], as OTLP/JSON
/// writes times.
fn at(ms: u64, ns: u64) -> String {
    (BASE_NS + ms * 1_000_000 + ns).to_string()
}

/// The fixed trace, as OTLP/JSON: two services (two resources), four spans,
/// attributes of every type, events, links. `tests/golden/jaeger/trace.json`
/// is what Jaeger answers for it; see [`the_fixed_trace_matches_the_golden_file`].
fn fixed_trace() -> Value {
    json!({"resourceSpans": [
        {
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "frontend"}},
                {"key": "host.name", "value": {"stringValue": "web-1"}},
                {"key": "process.pid", "value": {"intValue": "4242"}}
            ]},
            "scopeSpans": [{
                "scope": {"name": "lighttrace.test", "version": "1.2.0"},
                "spans": [
                    {
                        "traceId": TRACE, "spanId": "eee19b7ec3c1b174",
                        "traceState": "vendor=value",
                        "name": "GET /checkout", "kind": 2,
                        "startTimeUnixNano": at(0, 0), "endTimeUnixNano": at(100, 0),
                        "attributes": [
                            {"key": "http.route", "value": {"stringValue": "/checkout"}},
                            {"key": "http.status_code", "value": {"intValue": "200"}},
                            {"key": "ratio", "value": {"doubleValue": 0.25}},
                            {"key": "cache.hit", "value": {"boolValue": true}},
                            {"key": "payload", "value": {"bytesValue": "AAEC/w=="}},
                            {"key": "tags", "value": {"arrayValue": {"values": [
                                {"stringValue": "a"}, {"intValue": "1"},
                                {"boolValue": true}, {"doubleValue": 2.5}
                            ]}}},
                            {"key": "headers", "value": {"kvlistValue": {"values": [
                                {"key": "x", "value": {"stringValue": "y"}},
                                {"key": "accept", "value": {"arrayValue": {"values": [
                                    {"stringValue": "json"}, {"stringValue": "html"}
                                ]}}}
                            ]}}}
                        ],
                        "events": [
                            {"timeUnixNano": at(5, 0), "name": "cache miss", "attributes": [
                                {"key": "cache.key", "value": {"stringValue": "cart:42"}}
                            ]},
                            {"timeUnixNano": at(7, 500_000), "name": "retry", "attributes": [
                                {"key": "attempt", "value": {"intValue": "2"}}
                            ]}
                        ],
                        "status": {"code": 1}
                    },
                    {
                        "traceId": TRACE, "spanId": "eee19b7ec3c1b175",
                        "parentSpanId": "eee19b7ec3c1b174",
                        "name": "charge card", "kind": 3,
                        "startTimeUnixNano": at(10, 0), "endTimeUnixNano": at(60, 0),
                        "attributes": [
                            {"key": "peer.service", "value": {"stringValue": "payments"}}
                        ],
                        "links": [{
                            "traceId": "0af7651916cd43dd8448eb211c80319c",
                            "spanId": "b7ad6b7169203331",
                            "attributes": [{"key": "link.reason", "value": {"stringValue": "batch"}}]
                        }],
                        "status": {"code": 2, "message": "card declined"}
                    }
                ]
            }]
        },
        {
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "payments"}},
                {"key": "deployment.environment", "value": {"stringValue": "prod"}}
            ]},
            "scopeSpans": [{
                "spans": [
                    {
                        "traceId": TRACE, "spanId": "00f067aa0ba902b7",
                        "parentSpanId": "eee19b7ec3c1b175",
                        "name": "POST /charge", "kind": 2,
                        "startTimeUnixNano": at(15, 0), "endTimeUnixNano": at(55, 0),
                        "attributes": [
                            {"key": "http.status_code", "value": {"intValue": "402"}}
                        ],
                        "events": [
                            {"timeUnixNano": at(50, 0), "name": "exception", "attributes": [
                                {"key": "exception.type", "value": {"stringValue": "CardDeclined"}},
                                {"key": "exception.message", "value": {"stringValue": "insufficient funds"}}
                            ]}
                        ]
                    },
                    {
                        "traceId": TRACE, "spanId": "00f067aa0ba902b8",
                        "parentSpanId": "00f067aa0ba902b7",
                        "name": "publish receipt", "kind": 0,
                        "startTimeUnixNano": at(40, 0), "endTimeUnixNano": at(45, 500_999),
                        "attributes": [
                            {"key": "big.number", "value": {"intValue": "9007199254740993"}}
                        ],
                        "links": [{
                            "traceId": TRACE, "spanId": "00f067aa0ba902b7",
                            "attributes": [{"key": "opentracing.ref_type", "value": {"stringValue": "follows_from"}}]
                        }]
                    }
                ]
            }]
        }
    ]})
}

async fn ingest_json(app: &TestApp, body: &Value) {
    let reply = app.post_traces(JSON, None, body.to_string()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
}

/// One span of `service` as OTLP/JSON, `start_ms` after [`BASE_NS`] (or
/// after `base_ns`), lasting `duration_ms`.
#[allow(clippy::too_many_arguments)]
fn otlp_span(
    service: &str,
    trace: &str,
    span: &str,
    parent: Option<&str>,
    name: &str,
    kind: u8,
    base_ns: u64,
    start_ms: u64,
    duration_ms: u64,
    attributes: Value,
) -> Value {
    let start = base_ns + start_ms * 1_000_000;
    let mut value = json!({
        "traceId": trace, "spanId": span, "name": name, "kind": kind,
        "startTimeUnixNano": start.to_string(),
        "endTimeUnixNano": (start + duration_ms * 1_000_000).to_string(),
        "attributes": attributes,
    });
    if let Some(parent) = parent {
        value["parentSpanId"] = json!(parent);
    }
    json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"spans": [value]}]
    }]})
}

async fn get(app: &TestApp, path: &str, key: Option<&str>) -> Reply {
    let mut request = Request::get(path);
    if let Some(key) = key {
        request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    app.send(request.body(Body::empty()).unwrap()).await
}

/// `GET path` that must answer 200 with Jaeger's envelope; its `data`.
async fn data(app: &TestApp, path: &str) -> Value {
    let reply = get(app, path, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
    assert_eq!(reply.content_type(), JSON);
    let body = reply.json();
    assert_eq!(body["errors"], Value::Null, "{path}");
    assert_eq!((&body["limit"], &body["offset"]), (&json!(0), &json!(0)));
    body["data"].clone()
}

/// `GET path` that must fail with `status` in Jaeger's error envelope; the
/// message.
async fn jaeger_error(app: &TestApp, path: &str, key: Option<&str>, status: StatusCode) -> String {
    let reply = get(app, path, key).await;
    assert_eq!(reply.status, status, "{path}: {}", reply.text());
    let body = reply.json();
    assert_eq!(
        (
            &body["data"],
            &body["total"],
            &body["limit"],
            &body["offset"]
        ),
        (&Value::Null, &json!(0), &json!(0), &json!(0)),
        "{path}: {body}"
    );
    let errors = body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["code"], json!(status.as_u16()));
    errors[0]["msg"].as_str().expect("msg").to_owned()
}

/// A Jaeger answer with the parts whose order Jaeger leaves unspecified put
/// in one order: spans by id; each span's process inlined in place of its
/// `processID` (Jaeger numbers processes by the order it read the spans in);
/// tags, log fields and process tags by key; logs by time; references after
/// the first (the parent, which Jaeger puts first) by id.
fn normalized(answer: &Value) -> Value {
    let mut answer = answer.clone();
    let by_key = |list: &mut Value| {
        if let Some(items) = list.as_array_mut() {
            items.sort_by_key(|kv| (kv["key"].to_string(), kv["value"].to_string()));
        }
    };
    for trace in answer["data"].as_array_mut().expect("data") {
        let mut processes = trace["processes"].as_object().expect("processes").clone();
        for process in processes.values_mut() {
            by_key(&mut process["tags"]);
        }
        let spans = trace["spans"].as_array_mut().expect("spans");
        spans.sort_by_key(|span| span["spanID"].to_string());
        let mut used = BTreeMap::new();
        for span in spans.iter_mut() {
            let id = span["processID"].as_str().expect("processID").to_owned();
            let process = processes
                .get(&id)
                .unwrap_or_else(|| panic!("no process {id}"));
            used.insert(id, process.to_string());
            let span = span.as_object_mut().unwrap();
            span.remove("processID");
            span.insert("process".into(), process.clone());
            by_key(&mut span["tags"]);
            if let Some(logs) = span["logs"].as_array_mut() {
                logs.sort_by_key(|log| log["timestamp"].as_i64());
                for log in logs {
                    by_key(&mut log["fields"]);
                }
            }
            if let Some(references) = span["references"].as_array_mut()
                && references.len() > 1
            {
                references[1..].sort_by_key(|r| r["spanID"].to_string());
            }
        }
        // Every process is used, and no two ids name the same process.
        assert_eq!(used.len(), processes.len(), "unused processes: {trace}");
        let distinct: std::collections::BTreeSet<&String> = used.values().collect();
        assert_eq!(distinct.len(), used.len(), "duplicate processes: {trace}");
        trace.as_object_mut().unwrap().remove("processes");
    }
    answer
}

/// The contract: `GET /jaeger/api/traces/{id}` of the fixed trace equals the
/// golden file, written by hand from Jaeger's JSON model (`model/json`) as
/// Jaeger's query service fills it for spans received over OTLP:
///
/// * the envelope: `data` holds the trace; `total`, `limit`, `offset` are 0
///   and `errors` is `null`, as Jaeger's `getTrace` answers;
/// * `traceID`, `spanID`: lowercase hex; `references`: the parent as
///   `CHILD_OF` first, then each link: `FOLLOWS_FROM` (span `…b175`'s link to
///   another trace), or the type its `opentracing.ref_type` gives; a link to
///   the parent only retypes the parent reference (span `…b8`: its parent
///   reference is `FOLLOWS_FROM`), as the collector's translator does; link
///   attributes have no place in Jaeger's model;
/// * `startTime` and `duration` in microseconds, truncated (`…b8` lasts
///   5.500999 ms: 5500 µs);
/// * `tags`: the scope as `otel.scope.name` / `otel.scope.version` first
///   (the `payments` spans have no scope, so none), then the attributes by
///   key, typed: `int` → `int64` (a number; `big.number` is beyond 2^53, so
///   Jaeger sends it as a string), `double` → `float64`, `bool` → `bool`,
///   `bytes` → `binary` (base64), arrays and kvlists → `string` holding their
///   JSON (`["a",1,true,2.5]`, `{"accept":["json","html"],"x":"y"}`, keys
///   sorted); then `span.kind` (none for the unspecified `…b8`),
///   `otel.status_code` (`OK` / `ERROR`, none when unset), `error` = `true`
///   for errors, `otel.status_description` for a status message,
///   `w3c.tracestate` for a trace state;
/// * `logs`: one per event, `timestamp` in µs, fields `event` = the event's
///   name, then its attributes;
/// * `processes`: one per service and resource (`frontend`: `host.name`,
///   `process.pid` as `int64`; `payments`: `deployment.environment`), tags
///   without `service.name`; `processID` names it;
/// * `warnings`: `null` for the trace and each span; `flags` absent (Jaeger
///   omits a zero, and its OTLP translator sets none).
///
/// Spans, tags, logs and process ids are compared without order where
/// Jaeger's is unspecified ([`normalized`]); the raw answer is also checked
/// for Jaeger's own orders where they are fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fixed_trace_matches_the_golden_file() {
    let app = TestApp::new().await;
    ingest_json(&app, &fixed_trace()).await;
    let reply = get(&app, &format!("/jaeger/api/traces/{TRACE}"), None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.content_type(), JSON);
    let answer = reply.json();
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(GOLDEN).expect("golden file")).unwrap();
    assert_eq!(
        normalized(&answer),
        normalized(&golden),
        "answer:\n{}",
        serde_json::to_string_pretty(&answer).unwrap()
    );

    // Fixed orders: the parent reference first; the scope tags first and the
    // derived tags last, as the collector's translator appends them.
    let spans = answer["data"][0]["spans"].as_array().unwrap();
    let charge = spans
        .iter()
        .find(|s| s["spanID"] == json!("eee19b7ec3c1b175"))
        .unwrap();
    assert_eq!(charge["references"][0]["refType"], json!("CHILD_OF"));
    let keys: Vec<&str> = charge["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "otel.scope.name",
            "otel.scope.version",
            "peer.service",
            "span.kind",
            "otel.status_code",
            "error",
            "otel.status_description"
        ]
    );
    // No `flags`, no `parentSpanID`: the UI model has neither for OTLP spans.
    for span in spans {
        assert!(span.get("flags").is_none() && span.get("parentSpanID").is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_is_found_by_any_spelling_of_its_id_and_missing_ones_are_404() {
    let app = TestApp::new().await;
    ingest_json(&app, &fixed_trace()).await;
    // A trace whose id has a zero high half: Jaeger prints 16 digits.
    ingest_json(
        &app,
        &otlp_span(
            "svc",
            "00000000000000000000000000000abc",
            "1000000000000001",
            None,
            "op",
            2,
            BASE_NS,
            0,
            1,
            json!([]),
        ),
    )
    .await;

    let trace = data(&app, &format!("/jaeger/api/traces/{TRACE}")).await;
    for id in [TRACE.to_uppercase(), format!("{TRACE}?start=1&end=2")] {
        assert_eq!(data(&app, &format!("/jaeger/api/traces/{id}")).await, trace);
    }
    for id in ["abc", "0ABC", "00000000000000000000000000000abc"] {
        let short = data(&app, &format!("/jaeger/api/traces/{id}")).await;
        assert_eq!(short[0]["traceID"], json!("0000000000000abc"), "{id}");
        assert_eq!(short[0]["spans"][0]["traceID"], json!("0000000000000abc"));
    }

    let message = jaeger_error(&app, "/jaeger/api/traces/abd", None, StatusCode::NOT_FOUND).await;
    assert_eq!(message, "trace not found");
    for (path, says) in [
        ("/jaeger/api/traces/xyz", "not hexadecimal"),
        ("/jaeger/api/traces/0", "all zeros"),
        (
            &format!("/jaeger/api/traces/{TRACE}?start=soon") as &str,
            "param 'start'",
        ),
    ] {
        let message = jaeger_error(&app, path, None, StatusCode::BAD_REQUEST).await;
        assert!(message.contains(says), "{path}: {message}");
    }
    let message = jaeger_error(&app, "/jaeger/api/nope", None, StatusCode::NOT_FOUND).await;
    assert!(message.contains("/jaeger/api/nope"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_and_operations_of_recent_spans() {
    let app = TestApp::new().await;
    // Spans of the last minutes; the fixed trace (2024) is older than the
    // 7 days `services` and `operations` look back.
    ingest_json(&app, &fixed_trace()).await;
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let recent = now_ns - 60_000_000_000;
    let trace = "11111111111111111111111111111111";
    for (service, span, name, kind) in [
        ("frontend", "1000000000000001", "GET /cart", 2),
        ("frontend", "1000000000000002", "GET /cart", 3),
        ("frontend", "1000000000000003", "render", 0),
        ("frontend", "1000000000000004", "GET /cart", 2),
        ("cart/v2", "1000000000000005", "Get", 2),
    ] {
        ingest_json(
            &app,
            &otlp_span(
                service,
                trace,
                span,
                None,
                name,
                kind,
                recent,
                0,
                1,
                json!([]),
            ),
        )
        .await;
    }

    let reply = get(&app, "/jaeger/api/services", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!({"data": ["cart/v2", "frontend"], "total": 2, "limit": 0, "offset": 0, "errors": null})
    );

    let reply = get(&app, "/jaeger/api/services/frontend/operations", None).await;
    assert_eq!(
        reply.json(),
        json!({"data": ["GET /cart", "render"], "total": 2, "limit": 0, "offset": 0, "errors": null})
    );
    assert_eq!(
        data(&app, "/jaeger/api/services/cart%2Fv2/operations").await,
        json!(["Get"])
    );
    assert_eq!(
        data(&app, "/jaeger/api/services/nobody/operations").await,
        json!([])
    );

    let reply = get(&app, "/jaeger/api/operations?service=frontend", None).await;
    assert_eq!(
        reply.json(),
        json!({"data": [
            {"name": "GET /cart", "spanKind": "client"},
            {"name": "GET /cart", "spanKind": "server"},
            {"name": "render", "spanKind": ""},
        ], "total": 3, "limit": 0, "offset": 0, "errors": null})
    );
    assert_eq!(
        data(
            &app,
            "/jaeger/api/operations?service=frontend&spanKind=server"
        )
        .await,
        json!([{"name": "GET /cart", "spanKind": "server"}])
    );
    assert_eq!(
        data(&app, "/jaeger/api/operations?service=frontend&spanKind=").await,
        data(&app, "/jaeger/api/operations?service=frontend").await
    );

    let message = jaeger_error(
        &app,
        "/jaeger/api/operations",
        None,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(message, "parameter 'service' is required");
    let message = jaeger_error(
        &app,
        "/jaeger/api/operations?service=frontend&spanKind=SPAN_KIND_SERVER",
        None,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(message.contains("spanKind"), "{message}");
}

/// Span ids of a search answer, per trace, in answer order.
fn found(traces: &Value) -> Vec<(String, usize)> {
    traces
        .as_array()
        .expect("traces")
        .iter()
        .map(|t| {
            (
                t["traceID"].as_str().unwrap().to_owned(),
                t["spans"].as_array().unwrap().len(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_search_filters_and_returns_whole_traces_newest_first() {
    let app = TestApp::new().await;
    ingest_json(&app, &fixed_trace()).await;
    // Two more frontend traces, later: a fast one and a slow failing one.
    let fast = "22222222222222222222222222222222";
    let slow = "33333333333333333333333333333333";
    ingest_json(
        &app,
        &otlp_span(
            "frontend",
            fast,
            "2000000000000001",
            None,
            "GET /checkout",
            2,
            BASE_NS,
            1_000,
            2,
            json!([{"key": "http.status_code", "value": {"intValue": "200"}}]),
        ),
    )
    .await;
    let mut slow_span = otlp_span(
        "frontend",
        slow,
        "3000000000000001",
        None,
        "GET /home",
        2,
        BASE_NS,
        2_000,
        1_500,
        json!([{"key": "http.status_code", "value": {"intValue": "500"}}]),
    );
    slow_span["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["status"] = json!({"code": 2});
    ingest_json(&app, &slow_span).await;

    let window = format!("start={BASE_US}&end={}", BASE_US + 60_000_000);
    let search = |query: &str| format!("/jaeger/api/traces?{window}&{query}");
    let all = data(&app, &search("service=frontend")).await;
    assert_eq!(
        found(&all),
        [
            (slow.to_owned(), 1),
            (fast.to_owned(), 1),
            (TRACE.to_owned(), 4)
        ],
        "newest first, whole traces (payments spans too)"
    );
    let reply = get(&app, &search("service=frontend"), None).await;
    assert_eq!(reply.json()["total"], json!(0));
    // The same trace as a lookup by id.
    let by_id = data(&app, &format!("/jaeger/api/traces/{TRACE}")).await;
    assert_eq!(all[2], by_id[0]);

    let cases: [(&str, &[&str]); 18] = [
        ("service=payments", &[TRACE]),
        ("service=nobody", &[]),
        (
            "service=frontend&operation=GET%20%2Fcheckout",
            &[fast, TRACE],
        ),
        ("service=frontend&operation=charge+card", &[TRACE]),
        ("service=frontend&limit=2", &[slow, fast]),
        ("service=frontend&minDuration=1s", &[slow]),
        (
            "service=frontend&minDuration=40ms&maxDuration=0.1s",
            &[TRACE],
        ),
        ("service=frontend&maxDuration=2000us", &[fast]),
        // Tags: JSON as Grafana sends them, logfmt, Jaeger's `tag=k:v`.
        (
            "service=frontend&tags=%7B%22http.status_code%22%3A%22500%22%7D",
            &[slow],
        ),
        (
            "service=frontend&tags=http.status_code%3D200",
            &[fast, TRACE],
        ),
        ("service=frontend&tags=error%3Dtrue", &[slow, TRACE]),
        (
            "service=frontend&tag=error:true&operation=charge%20card",
            &[TRACE],
        ),
        ("service=frontend&tags=span.kind%3Dclient", &[TRACE]),
        ("service=frontend&tags=otel.status_code%3DOK", &[TRACE]),
        // Process (resource) tags and scope tags.
        ("service=frontend&tags=host.name%3Dweb-1", &[TRACE]),
        (
            "service=frontend&tags=otel.scope.name%3Dlighttrace.test",
            &[TRACE],
        ),
        // Every tag on the same span.
        (
            "service=frontend&tags=http.status_code%3D200%20span.kind%3Dclient",
            &[],
        ),
        // The window bounds the matching span's start.
        (
            "service=frontend&start=1714564801500000&end=1714564802500000",
            &[slow],
        ),
    ];
    for (query, expected) in cases {
        let path = if query.contains("start=") {
            format!("/jaeger/api/traces?{query}")
        } else {
            search(query)
        };
        let ids: Vec<String> = found(&data(&app, &path).await)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, expected, "{query}");
    }
    // Without `start` and `end`: the last hour, so nothing from 2024.
    assert_eq!(
        data(&app, "/jaeger/api/traces?service=frontend&lookback=custom").await,
        json!([])
    );
    // Values are values, whatever they hold.
    assert_eq!(
        data(&app, &search("service=x'%20OR%20'1'%3D'1&tags=a'%3Db'")).await,
        json!([])
    );

    for (query, says) in [
        ("", "parameter 'service' is required"),
        ("service=frontend&start=yesterday", "param 'start'"),
        ("service=frontend&minDuration=fast", "param 'minDuration'"),
        ("service=frontend&limit=lots", "param 'limit'"),
        ("service=frontend&tags=%7Bbroken", "malformed 'tags'"),
        ("service=frontend&tag=nocolon", "malformed 'tag'"),
        (
            "service=frontend&minDuration=2s&maxDuration=1s",
            "'maxDuration' should be greater than 'minDuration'",
        ),
    ] {
        let message = jaeger_error(
            &app,
            &format!("/jaeger/api/traces?{query}"),
            None,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert!(message.contains(says), "{query}: {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependencies_come_from_the_service_graph() {
    let app = TestApp::new().await;
    ingest_json(&app, &fixed_trace()).await;
    // frontend → cache, an uninstrumented peer named by `peer.service`.
    ingest_json(
        &app,
        &otlp_span(
            "frontend",
            "44444444444444444444444444444444",
            "4000000000000001",
            None,
            "GET",
            3,
            BASE_NS,
            3_000,
            1,
            json!([{"key": "peer.service", "value": {"stringValue": "cache"}}]),
        ),
    )
    .await;
    let end_ms = BASE_NS as i64 / 1_000_000 + 3_600_000;
    let path = format!("/jaeger/api/dependencies?endTs={end_ms}&lookback=7200000");
    let reply = get(&app, &path, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!({"data": [
            {"parent": "frontend", "child": "cache", "callCount": 1},
            {"parent": "frontend", "child": "payments", "callCount": 1},
        ], "total": 0, "limit": 0, "offset": 0, "errors": null})
    );
    assert_eq!(
        data(&app, &format!("{path}&service=payments")).await,
        json!([{"parent": "frontend", "child": "payments", "callCount": 1}])
    );
    // A window before the spans, and the default (the last 24 hours).
    let before = format!(
        "/jaeger/api/dependencies?endTs={}&lookback=60000",
        BASE_NS / 1_000_000
    );
    assert_eq!(data(&app, &before).await, json!([]));
    assert_eq!(data(&app, "/jaeger/api/dependencies").await, json!([]));

    for (query, says) in [
        ("endTs=now", "param 'endTs'"),
        ("lookback=1h", "param 'lookback'"),
        ("lookback=-5", "positive"),
    ] {
        let message = jaeger_error(
            &app,
            &format!("/jaeger/api/dependencies?{query}"),
            None,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert!(message.contains(says), "{query}: {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_reads_only_its_own_projects_spans() {
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
        .header(header::CONTENT_TYPE, JSON)
        .header(header::AUTHORIZATION, "Bearer key-one")
        .body(Body::from(fixed_trace().to_string()))
        .unwrap();
    assert_eq!(app.send(request).await.status, StatusCode::OK);

    let by_id = format!("/jaeger/api/traces/{TRACE}");
    let mine = get(&app, &by_id, Some("key-one")).await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.text());
    assert_eq!(mine.json()["data"][0]["spans"].as_array().unwrap().len(), 4);
    jaeger_error(&app, &by_id, Some("key-two"), StatusCode::NOT_FOUND).await;
    let search = format!(
        "/jaeger/api/traces?service=frontend&start={BASE_US}&end={}",
        BASE_US + 1_000_000
    );
    let theirs = get(&app, &search, Some("key-two")).await;
    assert_eq!(theirs.json()["data"], json!([]));
    let mine = get(&app, &search, Some("key-one")).await;
    assert_eq!(found(&mine.json()["data"]), [(TRACE.to_owned(), 4)]);

    for path in [
        "/jaeger/api/services",
        "/jaeger/api/traces/not-even-hex",
        "/jaeger/api/dependencies",
    ] {
        for key in [None, Some("nope")] {
            let reply = get(&app, path, key).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path} {key:?}");
            assert_eq!(reply.json()["errors"][0]["code"], json!(401));
        }
    }
}
