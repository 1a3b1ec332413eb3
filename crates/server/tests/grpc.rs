//! OTLP/gRPC `TraceService/Export` over a real socket, with tonic's generated
//! client where the request is valid and hand-built gRPC frames where it is not.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use lighttrace_server::ServerConfig;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use serde_json::json;
use tonic::Code;
use tonic::codec::CompressionEncoding;
use tonic::transport::{Channel, Endpoint};
use tonic_types::StatusExt;

const EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

async fn channel(url: &str) -> Channel {
    Endpoint::from_shared(url.to_owned())
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .expect("connect to the gRPC server")
}

async fn client(url: &str) -> TraceServiceClient<Channel> {
    TraceServiceClient::new(channel(url).await)
}

/// Sends one hand-built gRPC frame (`compressed` flag, length, `message`) to
/// `path` and returns the call's status, which must come in the headers (a
/// trailers-only answer: every error is one).
async fn raw_call(
    url: &str,
    path: &str,
    grpc_encoding: Option<&str>,
    frame: Vec<u8>,
) -> tonic::Status {
    let mut request = Request::post(format!("{url}{path}"))
        .header(header::CONTENT_TYPE, "application/grpc")
        .header("te", "trailers");
    if let Some(encoding) = grpc_encoding {
        request = request.header("grpc-encoding", encoding);
    }
    let request = request
        .body(tonic::body::Body::new(Body::from(frame)))
        .expect("request");
    let response = tower::ServiceExt::oneshot(channel(url).await, request)
        .await
        .expect("an HTTP/2 answer");
    assert_eq!(response.status(), StatusCode::OK, "gRPC answers HTTP 200");
    tonic::Status::from_header_map(response.headers())
        .unwrap_or_else(|| panic!("no grpc-status in the headers: {:?}", response.headers()))
}

fn frame(compressed: bool, message: &[u8]) -> Vec<u8> {
    let mut frame = vec![u8::from(compressed)];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

fn two_spans(trace: u8) -> ExportTraceServiceRequest {
    request(
        "checkout",
        vec![
            span(trace, 1, None, "root", 0),
            span(trace, 2, Some(1), "child", 5),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_queryable_as_soon_as_acknowledged() {
    let app = TestApp::new().await;
    let mut client = client(&app.grpc_url().await).await;
    let response = client.export(two_spans(7)).await.expect("export");
    assert_eq!(response.into_inner().partial_success, None);
    assert_eq!(
        app.rows(
            "SELECT project, service_name, name, parent_span_id, source FROM spans ORDER BY start_time"
        )
        .await,
        vec![
            json!(["default", "checkout", "root", null, "otlp"]),
            json!(["default", "checkout", "child", "0101010101010101", "otlp"]),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_requests_are_accepted() {
    let app = TestApp::new().await;
    let mut client = client(&app.grpc_url().await)
        .await
        .send_compressed(CompressionEncoding::Gzip);
    let response = client.export(two_spans(8)).await.expect("gzip export");
    assert_eq!(response.into_inner().partial_success, None);
    assert_eq!(app.count().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_spans_are_a_partial_success() {
    let app = TestApp::new().await;
    let mut client = client(&app.grpc_url().await).await;
    let mut zero_ids = span(2, 2, None, "zero trace id", 0);
    zero_ids.trace_id = vec![0; 16];
    let response = client
        .export(request("svc", vec![span(2, 1, None, "good", 0), zero_ids]))
        .await
        .expect("a partial success is OK");
    let partial = response
        .into_inner()
        .partial_success
        .expect("partial_success");
    assert_eq!(partial.rejected_spans, 1);
    assert!(
        partial.error_message.contains("trace id"),
        "{}",
        partial.error_message
    );
    assert_eq!(
        app.rows("SELECT name FROM spans").await,
        vec![json!(["good"])]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_every_span_is_invalid_is_invalid_argument() {
    let app = TestApp::new().await;
    let mut client = client(&app.grpc_url().await).await;
    let mut short_id = span(5, 1, None, "short", 0);
    short_id.trace_id = vec![5; 15];
    let status = client
        .export(request("svc", vec![short_id]))
        .await
        .expect_err("nothing valid");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("every span was rejected"),
        "{status:?}"
    );
    assert_eq!(app.count().await, 0);

    // An empty request is not an error.
    client
        .export(request("svc", vec![]))
        .await
        .expect("empty export");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_invalid_argument_and_harms_nothing() {
    let app = TestApp::new().await;
    let url = app.grpc_url().await;

    let status = raw_call(&url, EXPORT, None, frame(false, b"\xff\xff\xff garbage")).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(!status.message().is_empty());

    // The compressed flag without gzip data behind it.
    let status = raw_call(&url, EXPORT, Some("gzip"), frame(true, b"not gzip")).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // A frame that ends before its declared length, and no frame at all.
    let mut truncated = frame(false, &protobuf(&two_spans(3)));
    truncated.truncate(truncated.len() - 3);
    let status = raw_call(&url, EXPORT, None, truncated).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let status = raw_call(&url, EXPORT, None, Vec::new()).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    let status = raw_call(
        &url,
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        None,
        frame(false, b""),
    )
    .await;
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert!(
        status.message().contains("LogsService/Export"),
        "{status:?}"
    );

    // The server still works, and stored nothing of the above.
    client(&url)
        .await
        .export(two_spans(4))
        .await
        .expect("export after garbage");
    assert_eq!(app.count().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limits_are_resource_exhausted() {
    let config = ServerConfig {
        max_body_bytes: 64 << 10,
        max_decompressed_bytes: 16 << 10,
        ..ServerConfig::default()
    };
    let app = TestApp::with(|_| {}, config).await;
    let url = app.grpc_url().await;

    // A gzip bomb stops at max_decompressed_bytes.
    let bomb = gzip(&vec![0u8; 1 << 20]);
    assert!(bomb.len() < 64 << 10);
    let status = raw_call(&url, EXPORT, Some("gzip"), frame(true, &bomb)).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("size limit"), "{status:?}");
    assert!(status.get_details_retry_info().is_none(), "not retryable");

    // Over max_decompressed_bytes uncompressed (tonic's OUT_OF_RANGE, which
    // OTLP exporters would retry, is not answered).
    let status = raw_call(&url, EXPORT, None, frame(false, &vec![0u8; 32 << 10])).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    // Over max_body_bytes on the wire.
    let status = raw_call(&url, EXPORT, None, frame(false, &vec![0u8; 128 << 10])).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("65536"), "{status:?}");
    assert_eq!(app.count().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_buffers_answer_unavailable_with_retry_info() {
    let app = TestApp::with_small_buffers().await;
    let mut client = client(&app.grpc_url().await).await;
    let mut overloaded = None;
    for round in 0..200u32 {
        match client.export(bulky_request(round)).await {
            Ok(_) => {}
            Err(status) if status.code() == Code::Unavailable => {
                overloaded = Some(status);
                break;
            }
            Err(status) => panic!("unexpected {status:?}"),
        }
    }
    let status = overloaded.expect("the buffers never filled up");
    let retry = status
        .get_details_retry_info()
        .expect("UNAVAILABLE carries RetryInfo");
    assert_eq!(retry.retry_delay, Some(Duration::from_secs(1)));
}

/// The gRPC and HTTP receivers share `max_inflight_ingest`: a slow HTTP body
/// holding the only permit makes a gRPC export UNAVAILABLE at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_in_flight_answer_unavailable_at_once() {
    let config = ServerConfig {
        max_inflight_ingest: 1,
        overload_retry_after: Duration::from_secs(3),
        ..ServerConfig::default()
    };
    let app = TestApp::with(|_| {}, config).await;
    let mut client = client(&app.grpc_url().await).await;
    let (sender, first) = app.hold_an_ingest_permit();
    let mut refused = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        match client.export(two_spans(6)).await {
            Err(status) if status.code() == Code::Unavailable => {
                refused = Some(status);
                break;
            }
            // The HTTP request has not taken its permit yet.
            Ok(_) => {}
            Err(status) => panic!("unexpected {status:?}"),
        }
    }
    let status = refused.expect("the gRPC export was never refused");
    assert!(status.message().contains("in flight"), "{status:?}");
    let retry = status.get_details_retry_info().expect("RetryInfo");
    assert_eq!(retry.retry_delay, Some(Duration::from_secs(3)));

    drop(sender);
    assert_eq!(first.await.unwrap(), StatusCode::BAD_REQUEST);
    client
        .export(two_spans(6))
        .await
        .expect("the permit is free again");
}

/// A panic while handling a call answers INTERNAL (as HTTP answers 500) instead
/// of resetting the connection, and the service keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_call_answers_internal() {
    let app = TestApp::new().await;
    let body = Body::from_stream(futures::stream::once(async {
        if true {
            panic!("the request body broke");
        }
        Ok::<_, std::io::Error>(bytes::Bytes::new())
    }));
    let request = Request::post("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        .header(header::CONTENT_TYPE, "application/grpc")
        .body(body)
        .expect("request");
    let response = tower::ServiceExt::oneshot(app.grpc.clone(), request)
        .await
        .expect("an answer");
    let status = tonic::Status::from_header_map(response.headers())
        .unwrap_or_else(|| panic!("no grpc-status in {:?}", response.headers()));
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(
        status.message().contains("the request body broke"),
        "{status:?}"
    );

    let url = app.grpc_url().await;
    client(&url)
        .await
        .export(ExportTraceServiceRequest::default())
        .await
        .expect("the service still answers");
}
