//! `POST /api/v2/spans`: Zipkin v2 ingest, bad input and overload.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use lighttrace_server::ServerConfig;
use serde_json::{Value, json};

async fn post_spans(
    app: &TestApp,
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: impl Into<Body>,
) -> Reply {
    let mut request = Request::post("/api/v2/spans");
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    if let Some(encoding) = content_encoding {
        request = request.header(header::CONTENT_ENCODING, encoding);
    }
    app.send(request.body(body.into()).expect("request")).await
}

/// `{"error": "…"}` with `status`; returns the message.
fn error(reply: &Reply, status: StatusCode) -> String {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert_eq!(reply.content_type(), JSON);
    reply.json()["error"]
        .as_str()
        .expect("error message")
        .to_owned()
}

/// A Zipkin v2 span of `service` (ids are hex digits, 64-bit trace id).
fn zipkin_span(trace: &str, id: &str, parent: Option<&str>, service: &str, name: &str) -> Value {
    let mut span = json!({
        "traceId": trace,
        "id": id,
        "name": name,
        "kind": "SERVER",
        "timestamp": 1_714_564_800_000_000u64,
        "duration": 1500,
        "localEndpoint": {"serviceName": service, "ipv4": "10.0.0.1", "port": 8080},
        "tags": {"http.route": "/cart"},
    });
    if let Some(parent) = parent {
        span["parentId"] = json!(parent);
    }
    span
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_spans_are_queryable_as_soon_as_acknowledged() {
    let app = TestApp::new().await;
    let body = json!([
        zipkin_span(
            "463ac35c9f6413ad",
            "a2fb4a1d1a96d312",
            None,
            "frontend",
            "GET /cart"
        ),
        zipkin_span(
            "463ac35c9f6413ad",
            "a2fb4a1d1a96d313",
            Some("a2fb4a1d1a96d312"),
            "cart",
            "SELECT"
        ),
    ]);
    let reply = post_spans(&app, Some(JSON), None, body.to_string()).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text());
    assert!(reply.body.is_empty());

    let rows = app
        .rows(
            "SELECT trace_id, span_id, parent_span_id, service_name, name, kind, project, \
             source, duration_ns, attributes['network.local.port'] FROM spans ORDER BY span_id",
        )
        .await;
    assert_eq!(
        rows,
        vec![
            json!([
                "0000000000000000463ac35c9f6413ad",
                "a2fb4a1d1a96d312",
                null,
                "frontend",
                "GET /cart",
                "server",
                "default",
                "zipkin",
                1_500_000,
                "8080"
            ]),
            json!([
                "0000000000000000463ac35c9f6413ad",
                "a2fb4a1d1a96d313",
                "a2fb4a1d1a96d312",
                "cart",
                "SELECT",
                "server",
                "default",
                "zipkin",
                1_500_000,
                "8080"
            ]),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_protobuf_and_a_missing_content_type_are_accepted() {
    let app = TestApp::new().await;
    let body = json!([zipkin_span("1", "1", None, "svc", "gzipped")]).to_string();
    let reply = post_spans(&app, Some(JSON), Some("gzip"), gzip(body.as_bytes())).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text());

    let body = json!([zipkin_span("1", "2", None, "svc", "no content type")]).to_string();
    let reply = post_spans(&app, None, None, body).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text());

    // ListOfSpans { spans: [Span { trace_id, id, name, timestamp }] }, by hand.
    let mut span = Vec::new();
    span.extend(wire::field(1, &[7; 16]));
    span.extend(wire::field(3, &[8; 8]));
    span.extend(wire::field(5, b"protobuf"));
    span.push(6 << 3 | 1); // fixed64 timestamp
    span.extend(1_714_564_800_000_000u64.to_le_bytes());
    let list = wire::field(1, &span);
    let reply = post_spans(&app, Some(PROTOBUF), Some("gzip"), gzip(&list)).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text());

    assert_eq!(
        app.rows("SELECT name, source FROM spans ORDER BY name")
            .await,
        vec![
            json!(["gzipped", "zipkin"]),
            json!(["no content type", "zipkin"]),
            json!(["protobuf", "zipkin"]),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_spans_are_dropped_and_counted() {
    let app = TestApp::new().await;
    let body = json!([
        zipkin_span("1", "1", None, "svc", "good"),
        zipkin_span("0", "2", None, "svc", "zero trace id"),
    ]);
    let reply = post_spans(&app, Some(JSON), None, body.to_string()).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text());
    let answer = reply.json();
    assert_eq!(answer["rejectedSpans"], json!(1));
    let message = answer["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("span 1: traceId must not be all zeros"),
        "{message}"
    );
    assert_eq!(
        app.rows("SELECT name FROM spans").await,
        vec![json!(["good"])]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_every_span_is_invalid_is_400() {
    let app = TestApp::new().await;
    let body = json!([{"traceId": "1", "name": "no id", "timestamp": 5}]);
    let reply = post_spans(&app, Some(JSON), None, body.to_string()).await;
    let message = error(&reply, StatusCode::BAD_REQUEST);
    assert_eq!(
        message,
        "every span was rejected (1): 1 span rejected: span 0: id is missing"
    );
    assert_eq!(app.count().await, 0);

    // An empty list is not an error.
    let reply = post_spans(&app, Some(JSON), None, "[]").await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_are_4xx_with_a_reason_and_harm_nothing() {
    let app = TestApp::new().await;
    let good = json!([zipkin_span("1", "1", None, "svc", "before")]).to_string();
    assert_eq!(
        post_spans(&app, Some(JSON), None, good.clone())
            .await
            .status,
        StatusCode::ACCEPTED
    );

    for (body, expected) in [
        ("[{\"traceId\": ", "EOF while parsing"),
        (
            r#"{"traceId": "1"}"#,
            "expected an array of Zipkin v2 spans",
        ),
        (r#"[{"traceId": 1}]"#, "expected a string"),
        ("\u{0}\u{1}not json", "expected an array"),
        ("", "the body is empty"),
    ] {
        let reply = post_spans(&app, Some(JSON), None, body).await;
        let message = error(&reply, StatusCode::BAD_REQUEST);
        assert!(message.starts_with("invalid Zipkin JSON"), "{message}");
        assert!(message.contains(expected), "{body:?}: {message}");
    }
    let reply = post_spans(&app, Some(PROTOBUF), None, vec![0xff; 32]).await;
    let message = error(&reply, StatusCode::BAD_REQUEST);
    assert!(message.starts_with("invalid Zipkin protobuf"), "{message}");
    let reply = post_spans(&app, Some(JSON), Some("gzip"), "not gzip").await;
    error(&reply, StatusCode::BAD_REQUEST);

    let reply = post_spans(&app, Some("application/x-thrift"), None, good.clone()).await;
    let message = error(&reply, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(message.contains("application/x-thrift"), "{message}");
    let reply = post_spans(&app, Some(JSON), Some("zstd"), good.clone()).await;
    error(&reply, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    assert_eq!(
        app.rows("SELECT name FROM spans").await,
        vec![json!(["before"])]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limits_are_413() {
    let config = ServerConfig {
        max_body_bytes: 1024,
        max_decompressed_bytes: 1 << 20,
        ..ServerConfig::default()
    };
    let app = TestApp::with(|_| {}, config).await;
    let reply = post_spans(&app, Some(JSON), None, vec![b' '; 4096]).await;
    let message = error(&reply, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(message.contains("1024"), "{message}");
    // A gzip bomb stops inflating at the decompressed limit.
    let bomb = gzip(&vec![b' '; 32 << 20]);
    let config = ServerConfig {
        max_decompressed_bytes: 1 << 20,
        ..ServerConfig::default()
    };
    let app = TestApp::with(|_| {}, config).await;
    let reply = post_spans(&app, Some(JSON), Some("gzip"), bomb).await;
    error(&reply, StatusCode::PAYLOAD_TOO_LARGE);
}

/// The ingest permits are shared with OTLP: while an OTLP request holds the
/// only one, a Zipkin request is refused at once with `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_answers_503_with_retry_after() {
    let config = ServerConfig {
        max_inflight_ingest: 1,
        ..ServerConfig::default()
    };
    let app = TestApp::with(|_| {}, config).await;
    let (sender, first) = app.hold_an_ingest_permit();
    let body = json!([zipkin_span("1", "1", None, "svc", "x")]).to_string();
    let mut refused = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let reply = post_spans(&app, Some(JSON), None, body.clone()).await;
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            refused = Some(reply);
            break;
        }
    }
    let refused = refused.expect("the Zipkin request was never refused");
    assert_eq!(refused.retry_after_secs(), Some(1));
    error(&refused, StatusCode::SERVICE_UNAVAILABLE);
    drop(sender);
    first.await.unwrap();
    let reply = post_spans(&app, Some(JSON), None, body).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text());
}
