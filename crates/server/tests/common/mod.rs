//! A server over a lake in a temporary directory, driven with `oneshot`.
#![allow(dead_code)] // each test binary uses a different part

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use bytes::Bytes;
use lighttrace_query::{QueryConfig, QueryEngine};
use lighttrace_server::{AppState, OtlpGrpcService, ServerConfig, endpoints, serve_grpc};
use lighttrace_storage::{Lake, StorageConfig};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde_json::Value;
use tower::ServiceExt;

pub const PROTOBUF: &str = "application/x-protobuf";
pub const JSON: &str = "application/json";

/// 2024-05-01T12:00:00Z in nanoseconds.
pub const BASE_NS: u64 = 1_714_564_800_000_000_000;

pub struct TestApp {
    pub router: Router,
    /// Shares the router's ingest permits; see [`TestApp::grpc_url`].
    pub grpc: OtlpGrpcService,
    pub lake: Arc<Lake>,
    pub query: Arc<QueryEngine>,
    pub dir: tempfile::TempDir,
}

/// A response, fully read.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "body is not JSON ({err}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn retry_after_secs(&self) -> Option<u64> {
        self.headers
            .get(header::RETRY_AFTER)?
            .to_str()
            .ok()?
            .parse()
            .ok()
    }
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with(|_| {}, ServerConfig::default()).await
    }

    pub async fn with(storage: impl FnOnce(&mut StorageConfig), config: ServerConfig) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut storage_config = StorageConfig::new(dir.path());
        // Tests check read-your-writes from the buffers; no flush in the middle.
        storage_config.flush_max_age = Duration::from_secs(3600);
        storage(&mut storage_config);
        let lake = Lake::open(storage_config).await.expect("open lake");
        let query = Arc::new(
            QueryEngine::new(
                lake.clone(),
                QueryConfig {
                    memory_limit_bytes: 256 << 20,
                    timeout: Duration::from_secs(30),
                    target_partitions: 2,
                },
            )
            .expect("query engine"),
        );
        let endpoints = endpoints(AppState {
            lake: lake.clone(),
            query: query.clone(),
            config,
        });
        TestApp {
            router: endpoints.http,
            grpc: endpoints.grpc,
            lake,
            query,
            dir,
        }
    }

    /// Serves [`TestApp::grpc`] on an ephemeral port of 127.0.0.1 until the test's
    /// runtime ends; returns its `http://` URL for a tonic client.
    pub async fn grpc_url(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(serve_grpc(
            listener,
            self.grpc.clone(),
            std::future::pending(),
        ));
        format!("http://{addr}")
    }

    /// A lake whose buffers hold 64 KiB and never flush by size: a few
    /// [`bulky_request`]s fill it up.
    pub async fn with_small_buffers() -> Self {
        Self::with(
            |storage| {
                storage.buffer_max_bytes = 64 * 1024;
                storage.flush_partition_bytes = usize::MAX / 2;
            },
            ServerConfig::default(),
        )
        .await
    }

    /// Starts a `POST /v1/traces` whose body never ends, so it holds an ingest
    /// permit until the returned sender is dropped; the task answers its status
    /// then (400: the body is truncated).
    pub fn hold_an_ingest_permit(
        &self,
    ) -> (
        futures::channel::mpsc::UnboundedSender<Result<Bytes, std::io::Error>>,
        tokio::task::JoinHandle<StatusCode>,
    ) {
        let (sender, receiver) =
            futures::channel::mpsc::unbounded::<Result<Bytes, std::io::Error>>();
        sender
            .unbounded_send(Ok(Bytes::from_static(b"\x0a")))
            .expect("send");
        let slow = Request::post("/v1/traces")
            .header(header::CONTENT_TYPE, PROTOBUF)
            .body(Body::from_stream(receiver))
            .expect("request");
        let router = self.router.clone();
        let task =
            tokio::spawn(async move { router.oneshot(slow).await.expect("infallible").status() });
        (sender, task)
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("response body");
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn post_traces(
        &self,
        content_type: &str,
        content_encoding: Option<&str>,
        body: impl Into<Body>,
    ) -> Reply {
        let mut request = Request::post("/v1/traces").header(header::CONTENT_TYPE, content_type);
        if let Some(encoding) = content_encoding {
            request = request.header(header::CONTENT_ENCODING, encoding);
        }
        self.send(request.body(body.into()).expect("request")).await
    }

    /// `POST /api/v1/sql` asking for JSON.
    pub async fn sql(&self, sql: &str) -> Reply {
        let body = serde_json::json!({ "sql": sql }).to_string();
        let request = Request::post("/api/v1/sql")
            .header(header::CONTENT_TYPE, JSON)
            .body(Body::from(body))
            .expect("request");
        self.send(request).await
    }

    /// Runs `sql`, which must succeed, and returns its rows.
    pub async fn rows(&self, sql: &str) -> Vec<Value> {
        let reply = self.sql(sql).await;
        assert_eq!(reply.status, StatusCode::OK, "{sql}: {}", reply.text());
        reply.json()["rows"].as_array().expect("rows").clone()
    }

    pub async fn count(&self) -> i64 {
        let rows = self.rows("SELECT count(*) FROM spans").await;
        rows[0][0].as_i64().expect("count")
    }
}

pub fn string_attr(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// A server span of `service`, starting `offset_ms` after [`BASE_NS`].
pub fn span(trace: u8, span: u8, parent: Option<u8>, name: &str, offset_ms: u64) -> Span {
    let start = BASE_NS + offset_ms * 1_000_000;
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![span; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: name.into(),
        kind: 2,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 1_500_123,
        attributes: vec![string_attr("http.route", "/cart")],
        ..Default::default()
    }
}

pub fn request(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![string_attr("service.name", service)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// 100 spans of trace `round + 1` with long names, about 30 KiB of Arrow data.
pub fn bulky_request(round: u32) -> ExportTraceServiceRequest {
    let spans = (0..100u8)
        .map(|i| span(round as u8 + 1, i + 1, None, &"x".repeat(200), u64::from(i)))
        .collect();
    request("svc", spans)
}

pub fn protobuf(request: &ExportTraceServiceRequest) -> Vec<u8> {
    request.encode_to_vec()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

/// `google.rpc.Status`, as the server sends it in protobuf error bodies.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// Protobuf wire helpers for messages prost cannot build (too deep to construct).
pub mod wire {
    pub fn varint(mut n: u64, out: &mut Vec<u8>) {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }

    /// A length-delimited field.
    pub fn field(tag: u32, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len() + 6);
        varint(u64::from(tag << 3 | 2), &mut out);
        varint(bytes.len() as u64, &mut out);
        out.extend_from_slice(bytes);
        out
    }
}
