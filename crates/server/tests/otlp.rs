//! `POST /v1/traces`: OTLP/HTTP ingest, bad input and overload.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use common::*;
use lighttrace_server::ServerConfig;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use serde_json::json;

fn assert_protobuf_status(reply: &Reply, status: StatusCode, code: i32) -> String {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert_eq!(reply.content_type(), PROTOBUF);
    let rpc = RpcStatus::decode(reply.body.clone()).expect("google.rpc.Status body");
    assert_eq!(rpc.code, code);
    assert!(!rpc.message.is_empty());
    rpc.message
}

fn assert_json_status(reply: &Reply, status: StatusCode, code: i32) -> String {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert!(reply.content_type().starts_with(JSON));
    let body = reply.json();
    assert_eq!(body["code"], json!(code), "{body}");
    body["message"].as_str().expect("message").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_spans_are_queryable_as_soon_as_acknowledged() {
    let app = TestApp::new().await;
    let body = protobuf(&request(
        "checkout",
        vec![
            span(1, 1, None, "GET /cart", 0),
            span(1, 2, Some(1), "SELECT", 1),
        ],
    ));
    let reply = app.post_traces(PROTOBUF, None, body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.content_type(), PROTOBUF);
    let response = ExportTraceServiceResponse::decode(reply.body.clone()).expect("response");
    assert!(
        response
            .partial_success
            .is_none_or(|p| p.rejected_spans == 0)
    );

    let rows = app
        .rows(
            "SELECT trace_id, span_id, parent_span_id, service_name, name, kind, project, \
             source, duration_ns FROM spans ORDER BY span_id",
        )
        .await;
    assert_eq!(
        rows,
        vec![
            json!([
                "01010101010101010101010101010101",
                "0101010101010101",
                null,
                "checkout",
                "GET /cart",
                "server",
                "default",
                "otlp",
                1_500_123
            ]),
            json!([
                "01010101010101010101010101010101",
                "0202020202020202",
                "0101010101010101",
                "checkout",
                "SELECT",
                "server",
                "default",
                "otlp",
                1_500_123
            ]),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_spans_are_queryable_and_answered_in_json() {
    let app = TestApp::new().await;
    let body = json!({
        "resourceSpans": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "frontend"}}
            ]},
            "scopeSpans": [{
                "scope": {"name": "manual"},
                "spans": [{
                    "traceId": "5b8efff798038103d269b633813fc60c",
                    "spanId": "eee19b7ec3c1b174",
                    "name": "GET /",
                    "kind": 2,
                    "startTimeUnixNano": "1714564800000000000",
                    "endTimeUnixNano": "1714564800250000000",
                    "attributes": [
                        {"key": "http.status_code", "value": {"intValue": "200"}}
                    ]
                }]
            }]
        }]
    });
    let reply = app
        .post_traces("application/json; charset=utf-8", None, body.to_string())
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.content_type(), JSON);
    let response = reply.json();
    assert!(
        response.get("partialSuccess").is_none_or(|p| p
            .get("rejectedSpans")
            .is_none_or(|r| r == &json!(0) || r == &json!("0"))),
        "{response}"
    );

    let rows = app
        .rows(
            "SELECT trace_id, service_name, duration_ns, attributes['http.status_code'] \
             FROM spans",
        )
        .await;
    assert_eq!(
        rows,
        vec![json!([
            "5b8efff798038103d269b633813fc60c",
            "frontend",
            250_000_000,
            "200"
        ])]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bodies_are_accepted() {
    let app = TestApp::new().await;
    let body = gzip(&protobuf(&request("svc", vec![span(3, 1, None, "a", 0)])));
    let reply = app.post_traces(PROTOBUF, Some("gzip"), body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(app.count().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_spans_are_a_partial_success() {
    let app = TestApp::new().await;
    let mut zero_ids = span(2, 2, None, "zero trace id", 0);
    zero_ids.trace_id = vec![0; 16];
    let body = protobuf(&request("svc", vec![span(2, 1, None, "good", 0), zero_ids]));
    let reply = app.post_traces(PROTOBUF, None, body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let response = ExportTraceServiceResponse::decode(reply.body.clone()).expect("response");
    let partial = response.partial_success.expect("partialSuccess");
    assert_eq!(partial.rejected_spans, 1);
    assert!(!partial.error_message.is_empty());
    assert_eq!(
        app.rows("SELECT name FROM spans").await,
        vec![json!(["good"])]
    );
}

/// A request with nothing valid in it is bad data as a whole: 400, not a partial
/// success, in both encodings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_every_span_is_invalid_is_400() {
    let app = TestApp::new().await;
    let body = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "00000000000000000000000000000000",
        "spanId": "0000000000000000",
        "name": "zero",
        "startTimeUnixNano": "1714564800000000000",
        "endTimeUnixNano": "1714564800000000001"
    }]}]}]});
    let reply = app.post_traces(JSON, None, body.to_string()).await;
    let message = assert_json_status(&reply, StatusCode::BAD_REQUEST, 3);
    assert!(message.contains("trace id"), "{message}");

    let mut short_id = span(5, 1, None, "short", 0);
    short_id.trace_id = vec![5; 15];
    let mut zero_span_id = span(5, 2, None, "zero", 0);
    zero_span_id.span_id = vec![0; 8];
    let body = protobuf(&request("svc", vec![short_id, zero_span_id]));
    let reply = app.post_traces(PROTOBUF, None, body).await;
    let message = assert_protobuf_status(&reply, StatusCode::BAD_REQUEST, 3);
    assert!(message.contains("15"), "{message}");
    assert_eq!(app.count().await, 0);

    // An empty request is not an error.
    let reply = app
        .post_traces(PROTOBUF, None, protobuf(&request("svc", vec![])))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_content_types_are_415() {
    let app = TestApp::new().await;
    let reply = app.post_traces("text/plain", None, "hello").await;
    let message = assert_json_status(&reply, StatusCode::UNSUPPORTED_MEDIA_TYPE, 3);
    assert!(message.contains("text/plain"), "{message}");

    let request = Request::post("/v1/traces").body(Body::from("x")).unwrap();
    let reply = app.send(request).await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let reply = app.post_traces(PROTOBUF, Some("zstd"), "x").await;
    let message = assert_protobuf_status(&reply, StatusCode::UNSUPPORTED_MEDIA_TYPE, 3);
    assert!(message.contains("zstd"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_bomb_stops_at_the_decompressed_limit() {
    let config = ServerConfig {
        max_decompressed_bytes: 1 << 20,
        ..ServerConfig::default()
    };
    let app = TestApp::with(|_| {}, config).await;
    let bomb = gzip(&vec![0u8; 32 << 20]);
    assert!(bomb.len() < 1 << 20);
    let reply = app.post_traces(PROTOBUF, Some("gzip"), bomb).await;
    assert_protobuf_status(&reply, StatusCode::PAYLOAD_TOO_LARGE, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_wire_limit_is_413() {
    let config = ServerConfig {
        max_body_bytes: 1024,
        ..ServerConfig::default()
    };
    let app = TestApp::with(|_| {}, config).await;
    let reply = app.post_traces(JSON, None, vec![b' '; 4096]).await;
    let message = assert_json_status(&reply, StatusCode::PAYLOAD_TOO_LARGE, 8);
    assert!(message.contains("1024"), "{message}");
}

/// Every kind of bad body is a 400 that says what was wrong; the server keeps
/// working and the data written before is intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_are_400_and_harm_nothing() {
    let app = TestApp::new().await;
    let good = protobuf(&request(
        "svc",
        vec![
            span(7, 1, None, "before", 0),
            span(7, 2, Some(1), "child", 1),
        ],
    ));
    assert_eq!(
        app.post_traces(PROTOBUF, None, good.clone()).await.status,
        StatusCode::OK
    );

    // Not gzip at all.
    let reply = app
        .post_traces(PROTOBUF, Some("gzip"), b"this is not gzip".to_vec())
        .await;
    assert_protobuf_status(&reply, StatusCode::BAD_REQUEST, 3);

    // Gzip cut short.
    let gz = gzip(&good);
    let reply = app
        .post_traces(PROTOBUF, Some("gzip"), gz[..gz.len() / 2].to_vec())
        .await;
    assert_protobuf_status(&reply, StatusCode::BAD_REQUEST, 3);

    // Random bytes (a fixed, deterministic sequence).
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    let reply = app.post_traces(PROTOBUF, None, random).await;
    assert_protobuf_status(&reply, StatusCode::BAD_REQUEST, 3);

    // A valid request cut in the middle of a span.
    let reply = app
        .post_traces(PROTOBUF, None, good[..good.len() - 7].to_vec())
        .await;
    assert_protobuf_status(&reply, StatusCode::BAD_REQUEST, 3);

    // Broken JSON, and JSON of the wrong shape.
    for body in [
        r#"{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "#,
        r#"{"resourceSpans": 5}"#,
        "\u{0}\u{1}not json",
    ] {
        let reply = app.post_traces(JSON, None, body).await;
        let message = assert_json_status(&reply, StatusCode::BAD_REQUEST, 3);
        assert!(!message.contains("internal"), "{message}");
    }

    // Nothing above was stored, and what was stored before is intact.
    assert_eq!(
        app.rows("SELECT name FROM spans ORDER BY name").await,
        vec![json!(["before"]), json!(["child"])]
    );

    // The server still takes a valid request.
    let after = protobuf(&request("svc", vec![span(8, 1, None, "after", 2)]));
    assert_eq!(
        app.post_traces(PROTOBUF, None, after).await.status,
        StatusCode::OK
    );
    assert_eq!(app.count().await, 3);
}

/// An attribute value nested far deeper than any real SDK sends is refused with a
/// 400 (the decoder's depth limit), without overflowing the stack, in both
/// encodings; the server keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_attributes_are_400() {
    use common::wire::field;
    let app = TestApp::new().await;

    // AnyValue { kvlist_value: KeyValueList { values: [KeyValue { key, value: AnyValue … }] } }
    let mut value = field(1, b"leaf"); // AnyValue.string_value
    for _ in 0..5_000 {
        let mut key_value = field(1, b"k");
        key_value.extend(field(2, &value));
        let list = field(1, &key_value);
        value = field(6, &list);
    }
    let mut attribute = field(1, b"deep");
    attribute.extend(field(2, &value));
    let mut span_bytes = span(9, 1, None, "deep", 0).encode_to_vec();
    span_bytes.extend(field(9, &attribute));
    let scope_spans = field(2, &span_bytes);
    let resource_spans = field(2, &scope_spans);
    let body = field(1, &resource_spans);
    let reply = app.post_traces(PROTOBUF, None, body).await;
    assert_protobuf_status(&reply, StatusCode::BAD_REQUEST, 3);

    // Built as text: a serde_json::Value this deep would overflow the stack on drop.
    let mut text = String::from(r#"{"stringValue":"leaf"}"#);
    for _ in 0..2_000 {
        text = format!(r#"{{"kvlistValue":{{"values":[{{"key":"k","value":{text}}}]}}}}"#);
    }
    let body = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a","spanId":"0a0a0a0a0a0a0a0a","name":"deep json","startTimeUnixNano":"1714564800000000000","endTimeUnixNano":"1714564800000000001","attributes":[{{"key":"deep","value":{text}}}]}}]}}]}}]}}"#
    );
    let reply = app.post_traces(JSON, None, body).await;
    assert_json_status(&reply, StatusCode::BAD_REQUEST, 3);

    let ok = protobuf(&request("svc", vec![span(8, 1, None, "after", 2)]));
    assert_eq!(
        app.post_traces(PROTOBUF, None, ok).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.rows("SELECT name FROM spans").await,
        vec![json!(["after"])]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_buffers_answer_503_with_retry_after() {
    let app = TestApp::with_small_buffers().await;
    let mut overloaded = None;
    for round in 0..200u32 {
        let reply = app
            .post_traces(PROTOBUF, None, protobuf(&bulky_request(round)))
            .await;
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            overloaded = Some(reply);
            break;
        }
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    let reply = overloaded.expect("the buffers never filled up");
    assert!(reply.retry_after_secs().is_some_and(|s| s >= 1));
    assert_protobuf_status(&reply, StatusCode::SERVICE_UNAVAILABLE, 14);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_in_flight_answer_503_at_once() {
    let config = ServerConfig {
        max_inflight_ingest: 1,
        ..ServerConfig::default()
    };
    let app = TestApp::with(|_| {}, config).await;
    let (sender, first) = app.hold_an_ingest_permit();
    // Wait until the first request holds its permit.
    let mut second = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let body = protobuf(&request("svc", vec![span(4, 1, None, "x", 0)]));
        let reply = app.post_traces(PROTOBUF, None, body).await;
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            second = Some(reply);
            break;
        }
    }
    let second = second.expect("the second request was never refused");
    assert_eq!(second.retry_after_secs(), Some(1));
    assert_protobuf_status(&second, StatusCode::SERVICE_UNAVAILABLE, 14);

    drop(sender);
    let first = first.await.unwrap();
    assert_eq!(
        first,
        StatusCode::BAD_REQUEST,
        "a truncated body is bad data"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_arrives_too_slowly_is_503() {
    let config = ServerConfig {
        body_read_timeout: Duration::from_millis(100),
        ..ServerConfig::default()
    };
    let app = TestApp::with(|_| {}, config).await;
    let (sender, receiver) = futures::channel::mpsc::unbounded::<Result<Bytes, std::io::Error>>();
    let reply = app
        .post_traces(JSON, None, Body::from_stream(receiver))
        .await;
    drop(sender);
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.retry_after_secs().is_some());
    assert_eq!(reply.json()["code"], json!(14));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_unknown_routes() {
    let app = TestApp::new().await;
    let reply = app
        .send(Request::get("/health").body(Body::empty()).unwrap())
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = app
        .send(Request::get("/nope").body(Body::empty()).unwrap())
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.json()["error"].as_str().unwrap().contains("/nope"));
    let reply = app
        .send(Request::get("/v1/traces").body(Body::empty()).unwrap())
        .await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
}
