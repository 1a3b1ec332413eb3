//! Decode throughput of OTLP export requests, in spans per second on one core.
//!
//! ```text
//! cargo bench -p lighttrace-ingest --bench decode_otlp
//! ```
//!
//! `protobuf + arrow` is what the server runs (the borrowing wire decoder);
//! `protobuf via prost + arrow` is the reference it replaced, which first
//! builds the prost request.
//!
//! The request mimics an OpenTelemetry SDK batch: one resource with the usual
//! SDK attributes, 1000 HTTP/DB spans with 8 attributes each, one in five with
//! an exception event, one in ten with a link.

use std::hint::black_box;
use std::time::{Duration, Instant};

use lighttrace_ingest::{
    OtlpEncoding, decode_otlp_protobuf_with_prost, decode_otlp_traces, decompress,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

const SPANS: usize = 1000;

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        key_strindex: 0,
    }
}

fn s(value: &str) -> Value {
    Value::StringValue(value.into())
}

fn request() -> ExportTraceServiceRequest {
    let resource = vec![
        kv("service.name", s("checkout")),
        kv("service.version", s("1.42.0")),
        kv("deployment.environment", s("production")),
        kv("host.name", s("ip-10-0-12-34.eu-west-1.compute.internal")),
        kv("k8s.pod.name", s("checkout-7d9f8b6c5-x2x9z")),
        kv("k8s.namespace.name", s("shop")),
        kv("telemetry.sdk.language", s("java")),
        kv("telemetry.sdk.name", s("opentelemetry")),
        kv("telemetry.sdk.version", s("1.38.0")),
        kv("process.pid", Value::IntValue(4242)),
    ];
    let spans = (0..SPANS)
        .map(|i| {
            let n = i as u64 + 1;
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&(n / 10 + 1).to_be_bytes());
            trace_id[8..].copy_from_slice(&0x9e37_79b9_7f4a_7c15u64.to_be_bytes());
            let start = 1_700_000_000_000_000_000 + n * 1_000_000;
            Span {
                trace_id: trace_id.to_vec(),
                span_id: n.to_be_bytes().to_vec(),
                parent_span_id: if i % 10 == 0 {
                    vec![]
                } else {
                    (n - 1).to_be_bytes().to_vec()
                },
                name: if i % 2 == 0 {
                    "GET /api/cart/{id}"
                } else {
                    "SELECT carts"
                }
                .into(),
                kind: if i % 2 == 0 { 2 } else { 3 },
                start_time_unix_nano: start,
                end_time_unix_nano: start + 1_234_567,
                attributes: vec![
                    kv("http.request.method", s("GET")),
                    kv("http.route", s("/api/cart/{id}")),
                    kv("url.path", s("/api/cart/8c2f1a")),
                    kv("http.response.status_code", Value::IntValue(200)),
                    kv("server.port", Value::IntValue(8080)),
                    kv("db.system", s("postgresql")),
                    kv("cache.hit", Value::BoolValue(i % 3 == 0)),
                    kv("sampling.ratio", Value::DoubleValue(0.25)),
                ],
                events: if i % 5 == 0 {
                    vec![Event {
                        time_unix_nano: start + 1000,
                        name: "exception".into(),
                        attributes: vec![
                            kv("exception.type", s("java.io.IOException")),
                            kv("exception.message", s("connection reset by peer")),
                        ],
                        dropped_attributes_count: 0,
                    }]
                } else {
                    vec![]
                },
                links: if i % 10 == 0 {
                    vec![Link {
                        trace_id: vec![7; 16],
                        span_id: vec![7; 8],
                        ..Default::default()
                    }]
                } else {
                    vec![]
                },
                status: Some(Status {
                    message: String::new(),
                    code: if i % 5 == 0 { 2 } else { 0 },
                }),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: resource,
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "io.opentelemetry.tomcat-10.0".into(),
                    version: "2.4.0-alpha".into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// Runs `run` for 3 s unless the command line names other benchmarks
/// (`cargo bench -p lighttrace-ingest --bench decode_otlp -- JSON`).
fn measure(label: &str, bytes: usize, mut run: impl FnMut()) {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !filters.is_empty() && !filters.iter().any(|f| label.contains(f.as_str())) {
        return;
    }
    run(); // warm up allocations
    let started = Instant::now();
    let mut iterations = 0u32;
    while started.elapsed() < Duration::from_secs(3) {
        run();
        iterations += 1;
    }
    let per_request = started.elapsed() / iterations;
    let spans_per_second = SPANS as f64 / per_request.as_secs_f64();
    let mib_per_second = bytes as f64 / per_request.as_secs_f64() / (1 << 20) as f64;
    println!(
        "{label:<28} {per_request:>10.2?} per {SPANS}-span request, {spans_per_second:>10.0} spans/s, {mib_per_second:>6.1} MiB/s of body"
    );
}

fn main() {
    let req = request();
    let protobuf = req.encode_to_vec();
    let json = serde_json::to_vec(&req).expect("serializable request");
    let gzip = {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&protobuf).expect("in-memory write");
        encoder.finish().expect("in-memory write")
    };
    println!(
        "protobuf body {} bytes, gzip {} bytes, JSON body {} bytes",
        protobuf.len(),
        gzip.len(),
        json.len()
    );
    measure("protobuf + arrow", protobuf.len(), || {
        let decoded = decode_otlp_traces(&protobuf, OtlpEncoding::Protobuf, "p").expect("valid");
        assert_eq!(decoded.accepted, SPANS);
        black_box(decoded);
    });
    measure("gzip + protobuf", gzip.len(), || {
        let body = decompress(&gzip, Some("gzip"), 64 << 20).expect("valid");
        let decoded = decode_otlp_traces(&body, OtlpEncoding::Protobuf, "p").expect("valid");
        black_box(decoded);
    });
    measure("protobuf via prost + arrow", protobuf.len(), || {
        let decoded = decode_otlp_protobuf_with_prost(&protobuf, "p").expect("valid");
        assert_eq!(decoded.accepted, SPANS);
        black_box(decoded);
    });
    measure("protobuf (prost decode only)", protobuf.len(), || {
        black_box(ExportTraceServiceRequest::decode(&protobuf[..]).expect("valid"));
    });
    measure("JSON + arrow", json.len(), || {
        let decoded = decode_otlp_traces(&json, OtlpEncoding::Json, "p").expect("valid");
        assert_eq!(decoded.accepted, SPANS);
        black_box(decoded);
    });
}
