//! OTLP logs: `POST /v1/logs` and gRPC `LogsService/Export` into the `logs`
//! table, with the answers of the trace receivers.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use lighttrace_server::{ProjectKey, Projects, ServerConfig};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::json;
use tonic::Code;
use tonic::codec::CompressionEncoding;
use tonic::transport::{Channel, Endpoint};
use tonic_types::StatusExt;

/// A log line of trace `trace`, span `span`, `offset_ms` after [`BASE_NS`].
fn log(trace: u8, span: u8, body: &str, offset_ms: u64) -> LogRecord {
    let time = BASE_NS + offset_ms * 1_000_000;
    LogRecord {
        time_unix_nano: time,
        observed_time_unix_nano: time + 1_000,
        severity_number: 9,
        severity_text: "INFO".into(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body.into())),
        }),
        attributes: vec![string_attr("code.function", "checkout")],
        trace_id: vec![trace; 16],
        span_id: vec![span; 8],
        flags: 1,
        ..Default::default()
    }
}

fn logs_request(service: &str, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![string_attr("service.name", service)],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "app".into(),
                    ..Default::default()
                }),
                log_records: records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

async fn post_logs(
    app: &TestApp,
    content_type: &str,
    content_encoding: Option<&str>,
    body: impl Into<Body>,
) -> Reply {
    let mut request = Request::post("/v1/logs").header(header::CONTENT_TYPE, content_type);
    if let Some(encoding) = content_encoding {
        request = request.header(header::CONTENT_ENCODING, encoding);
    }
    app.send(request.body(body.into()).expect("request")).await
}

async fn log_count(app: &TestApp) -> i64 {
    app.rows("SELECT count(*) FROM logs").await[0][0]
        .as_i64()
        .expect("count")
}

fn protobuf_status(reply: &Reply, status: StatusCode, code: i32) -> String {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert_eq!(reply.content_type(), PROTOBUF);
    let rpc = RpcStatus::decode(reply.body.clone()).expect("google.rpc.Status body");
    assert_eq!(rpc.code, code);
    rpc.message
}

fn json_status(reply: &Reply, status: StatusCode, code: i32) -> String {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert!(reply.content_type().starts_with(JSON));
    let body = reply.json();
    assert_eq!(body["code"], json!(code), "{body}");
    body["message"].as_str().expect("message").to_owned()
}

// ---------------------------------------------------------------- HTTP

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_logs_are_queryable_as_soon_as_acknowledged() {
    let app = TestApp::new().await;
    let body = logs_request(
        "checkout",
        vec![log(1, 2, "cart loaded", 0), log(1, 3, "payment failed", 1)],
    )
    .encode_to_vec();
    let reply = post_logs(&app, PROTOBUF, None, body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.content_type(), PROTOBUF);
    let response = ExportLogsServiceResponse::decode(reply.body.clone()).expect("response");
    assert_eq!(response.partial_success, None);

    let rows = app
        .rows(
            "SELECT project, service_name, trace_id, span_id, severity_number, severity_text, \
             body, body_type, attributes['code.function'], scope_name, flags, source \
             FROM logs WHERE trace_id = '01010101010101010101010101010101' ORDER BY time",
        )
        .await;
    assert_eq!(
        rows,
        vec![
            json!([
                "default",
                "checkout",
                "01010101010101010101010101010101",
                "0202020202020202",
                9,
                "INFO",
                "cart loaded",
                null,
                "checkout",
                "app",
                1,
                "otlp"
            ]),
            json!([
                "default",
                "checkout",
                "01010101010101010101010101010101",
                "0303030303030303",
                9,
                "INFO",
                "payment failed",
                null,
                "checkout",
                "app",
                1,
                "otlp"
            ]),
        ]
    );
    // Logs do not show up as spans.
    assert_eq!(app.count().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_gzip_logs_are_accepted_and_answered_in_their_encoding() {
    let app = TestApp::new().await;
    let body = json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "web"}}]},
        "scopeLogs": [{"logRecords": [{
            "timeUnixNano": "1714564800000000000",
            "severityNumber": 17,
            "severityText": "ERROR",
            "traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": "eee19b7ec3c1b174",
            "body": {"kvlistValue": {"values": [{"key": "user", "value": {"intValue": "7"}}]}}
        }]}]
    }]});
    let reply = post_logs(
        &app,
        "application/json; charset=utf-8",
        None,
        body.to_string(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.content_type(), JSON);
    assert_eq!(reply.json(), json!({}));

    let gzipped = gzip(&logs_request("web", vec![log(2, 1, "zipped", 0)]).encode_to_vec());
    let reply = post_logs(&app, PROTOBUF, Some("gzip"), gzipped).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());

    assert_eq!(
        app.rows("SELECT severity_text, body, body_type FROM logs ORDER BY severity_number DESC")
            .await,
        vec![
            json!([
                "ERROR",
                r#"[{"key":"user","value":{"intValue":"7"}}]"#,
                "kvlist"
            ]),
            json!(["INFO", "zipped", null]),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_with_bad_ids_are_a_partial_success() {
    let app = TestApp::new().await;
    let mut short_trace_id = log(3, 1, "short trace id", 0);
    short_trace_id.trace_id = vec![3; 5];
    let mut no_ids = log(3, 1, "no ids", 1);
    no_ids.trace_id.clear();
    no_ids.span_id.clear();
    let body = logs_request("svc", vec![log(3, 1, "good", 2), short_trace_id, no_ids]);
    let reply = post_logs(&app, PROTOBUF, None, body.encode_to_vec()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let partial = ExportLogsServiceResponse::decode(reply.body.clone())
        .expect("response")
        .partial_success
        .expect("partialSuccess");
    assert_eq!(partial.rejected_log_records, 1);
    assert!(
        partial
            .error_message
            .contains("trace id must be empty or 16 bytes, got 5"),
        "{}",
        partial.error_message
    );
    assert_eq!(
        app.rows("SELECT body, trace_id FROM logs ORDER BY time")
            .await,
        vec![
            json!(["no ids", null]),
            json!(["good", "03030303030303030303030303030303"])
        ]
    );

    // The same in JSON: partialSuccess with rejectedLogRecords.
    let body = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [
        {"timeUnixNano": "1714564800000000000", "body": {"stringValue": "ok"}},
        {"timeUnixNano": "1714564800000000000", "spanId": "0102"}
    ]}]}]});
    let reply = post_logs(&app, JSON, None, body.to_string()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let partial = &reply.json()["partialSuccess"];
    assert_eq!(partial["rejectedLogRecords"], json!(1), "{partial}");
    assert_eq!(log_count(&app).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_logs_requests_are_400_and_harm_nothing() {
    let app = TestApp::new().await;
    let good = logs_request("svc", vec![log(4, 1, "before", 0)]).encode_to_vec();
    assert_eq!(
        post_logs(&app, PROTOBUF, None, good.clone()).await.status,
        StatusCode::OK
    );

    // Every record invalid: 400, not a partial success.
    let mut bad = log(4, 2, "bad", 1);
    bad.span_id = vec![1; 3];
    let body = logs_request("svc", vec![bad]).encode_to_vec();
    let message = protobuf_status(
        &post_logs(&app, PROTOBUF, None, body).await,
        StatusCode::BAD_REQUEST,
        3,
    );
    assert!(
        message.contains("every log record was rejected (1)"),
        "{message}"
    );

    // Truncated protobuf, broken JSON, JSON of the wrong shape, bad gzip.
    protobuf_status(
        &post_logs(&app, PROTOBUF, None, good[..good.len() - 3].to_vec()).await,
        StatusCode::BAD_REQUEST,
        3,
    );
    for body in [r#"{"resourceLogs": [{"#, r#"{"resourceLogs": 5}"#, "[]"] {
        json_status(
            &post_logs(&app, JSON, None, body).await,
            StatusCode::BAD_REQUEST,
            3,
        );
    }
    protobuf_status(
        &post_logs(&app, PROTOBUF, Some("gzip"), "not gzip").await,
        StatusCode::BAD_REQUEST,
        3,
    );

    assert_eq!(
        app.rows("SELECT body FROM logs").await,
        vec![json!(["before"])]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_content_types_and_encodings_are_415() {
    let app = TestApp::new().await;
    let message = json_status(
        &post_logs(&app, "text/plain", None, "hello").await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        3,
    );
    assert!(message.contains("text/plain"), "{message}");
    let request = Request::post("/v1/logs").body(Body::from("x")).unwrap();
    assert_eq!(
        app.send(request).await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let message = protobuf_status(
        &post_logs(&app, PROTOBUF, Some("zstd"), "x").await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        3,
    );
    assert!(message.contains("zstd"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limits_are_413() {
    let config = ServerConfig {
        max_body_bytes: 4096,
        max_decompressed_bytes: 1 << 20,
        ..ServerConfig::default()
    };
    let app = TestApp::with(|_| {}, config).await;
    let big = logs_request("svc", vec![log(5, 1, &"x".repeat(8192), 0)]).encode_to_vec();
    protobuf_status(
        &post_logs(&app, PROTOBUF, None, big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        8,
    );
    let bomb = gzip(&vec![0u8; 32 << 20]);
    assert!(bomb.len() < 1 << 20);
    let app = TestApp::with(
        |_| {},
        ServerConfig {
            max_decompressed_bytes: 1 << 20,
            ..ServerConfig::default()
        },
    )
    .await;
    protobuf_status(
        &post_logs(&app, PROTOBUF, Some("gzip"), bomb).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        8,
    );
    assert_eq!(log_count(&app).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_in_flight_answer_503_with_retry_after() {
    let config = ServerConfig {
        max_inflight_ingest: 1,
        overload_retry_after: Duration::from_secs(2),
        ..ServerConfig::default()
    };
    let app = TestApp::with(|_| {}, config).await;
    let (sender, first) = app.hold_an_ingest_permit();
    let body = logs_request("svc", vec![log(6, 1, "refused", 0)]).encode_to_vec();
    let mut refused = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let reply = post_logs(&app, PROTOBUF, None, body.clone()).await;
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            refused = Some(reply);
            break;
        }
        // The held request has not taken its permit yet.
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    let reply = refused.expect("never refused");
    assert_eq!(reply.retry_after_secs(), Some(2));
    protobuf_status(&reply, StatusCode::SERVICE_UNAVAILABLE, 14);
    drop(sender);
    assert_eq!(first.await.unwrap(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_buffers_answer_503_with_retry_after() {
    let app = TestApp::with_small_buffers().await;
    let mut overloaded = None;
    for round in 0..200u64 {
        let records = (0..100u8)
            .map(|i| log(7, i + 1, &"y".repeat(200), round * 100 + u64::from(i)))
            .collect();
        let body = logs_request("svc", records).encode_to_vec();
        let reply = post_logs(&app, PROTOBUF, None, body).await;
        match reply.status {
            StatusCode::OK => {}
            StatusCode::SERVICE_UNAVAILABLE => {
                overloaded = Some(reply);
                break;
            }
            other => panic!("unexpected {other}: {}", reply.text()),
        }
    }
    let reply = overloaded.expect("the buffers never filled up");
    assert!(reply.retry_after_secs().is_some_and(|s| s >= 1));
}

// ---------------------------------------------------------------- gRPC

async fn logs_client(url: &str) -> LogsServiceClient<Channel> {
    let channel = Endpoint::from_shared(url.to_owned())
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .expect("connect to the gRPC server");
    LogsServiceClient::new(channel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_logs_are_queryable_as_soon_as_acknowledged() {
    let app = TestApp::new().await;
    let url = app.grpc_url().await;
    let mut client = logs_client(&url).await;
    let response = client
        .export(logs_request("cart", vec![log(8, 1, "over grpc", 0)]))
        .await
        .expect("export");
    assert_eq!(response.into_inner().partial_success, None);

    let mut gzip_client = logs_client(&url)
        .await
        .send_compressed(CompressionEncoding::Gzip);
    gzip_client
        .export(logs_request("cart", vec![log(8, 2, "gzipped", 1)]))
        .await
        .expect("gzip export");

    assert_eq!(
        app.rows(
            "SELECT service_name, span_id, body FROM logs \
             WHERE trace_id = '08080808080808080808080808080808' ORDER BY time"
        )
        .await,
        vec![
            json!(["cart", "0101010101010101", "over grpc"]),
            json!(["cart", "0202020202020202", "gzipped"]),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_bad_records_are_a_partial_success_or_invalid_argument() {
    let app = TestApp::new().await;
    let mut client = logs_client(&app.grpc_url().await).await;
    let mut bad = log(9, 1, "bad", 0);
    bad.trace_id = vec![9; 17];
    let partial = client
        .export(logs_request("svc", vec![log(9, 1, "good", 0), bad.clone()]))
        .await
        .expect("a partial success is OK")
        .into_inner()
        .partial_success
        .expect("partial_success");
    assert_eq!(partial.rejected_log_records, 1);
    assert!(partial.error_message.contains("got 17"), "{partial:?}");

    let status = client
        .export(logs_request("svc", vec![bad]))
        .await
        .expect_err("nothing valid");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("every log record was rejected"),
        "{status:?}"
    );
    assert!(status.get_details_retry_info().is_none());

    // An empty request is not an error.
    client
        .export(ExportLogsServiceRequest::default())
        .await
        .expect("empty export");
    assert_eq!(
        app.rows("SELECT body FROM logs").await,
        vec![json!(["good"])]
    );
}

// ---------------------------------------------------------------- keys

/// With projects configured, a logs export needs a key (HTTP header or gRPC
/// metadata), writes to that key's project, and SQL with the key reads only it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_need_a_key_and_go_to_its_project() {
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
    let body = logs_request("svc", vec![log(10, 1, "keyed", 0)]).encode_to_vec();
    let post = |key: Option<&str>| {
        let mut request = Request::post("/v1/logs").header(header::CONTENT_TYPE, PROTOBUF);
        if let Some(key) = key {
            request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        request.body(Body::from(body.clone())).expect("request")
    };
    for key in [None, Some("nope")] {
        let reply = app.send(post(key)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{key:?}");
    }
    let mut client = logs_client(&app.grpc_url().await).await;
    let status = client
        .export(logs_request("svc", vec![log(10, 2, "no key", 0)]))
        .await
        .expect_err("no key");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    assert_eq!(app.send(post(Some("key-one"))).await.status, StatusCode::OK);
    let mut request = tonic::Request::new(logs_request("svc", vec![log(10, 3, "grpc keyed", 1)]));
    request
        .metadata_mut()
        .insert("x-lighttrace-key", "key-two".parse().unwrap());
    client.export(request).await.expect("export with a key");

    let sql = |key: &str, query: &str| {
        Request::post("/api/v1/sql")
            .header(header::CONTENT_TYPE, JSON)
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .body(Body::from(json!({ "sql": query }).to_string()))
            .expect("request")
    };
    for (key, want) in [
        ("key-one", json!([["1", "keyed"]])),
        ("key-two", json!([["2", "grpc keyed"]])),
    ] {
        let reply = app.send(sql(key, "SELECT project, body FROM logs")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(reply.json()["rows"], want, "{key}");
    }
}
