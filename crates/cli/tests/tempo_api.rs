//! Tempo's query API (what Grafana's Tempo data source calls) on the real
//! binary, checked by a client that shares no code with the server:
//! `tests/python/tempo_contract.py` decodes the protobuf answers with the
//! official OpenTelemetry proto classes (Python's `opentelemetry-proto`) and
//! compares every JSON answer with `tests/golden/tempo/`, what Grafana Tempo
//! 2.x returns for the same trace (see that folder's README for where each
//! shape comes from).
//!
//! The trace is fixed (ids, times): frontend `GET /checkout` → checkout
//! `POST /api/checkout` → payment `charge card` (an error) → payment
//! `SELECT payments`, with span and resource attributes of every OTLP type,
//! events, a link and a trace state. It is sent over OTLP/HTTP; the same
//! request, protobuf-encoded, goes to the script as the truth to compare with.

mod common;

use std::process::Command;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;

use common::*;

/// The golden files' trace id: the W3C example, whose leading zero Tempo
/// drops in search results.
const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
/// 2024-05-01T12:00:00Z, the golden files' times.
const BASE_S: u64 = 1_714_564_800;
const MS: u64 = 1_000_000;

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

/// One attribute of each OTLP type, under `prefix`.
fn every_type(prefix: &str) -> Vec<KeyValue> {
    use any_value::Value::*;
    vec![
        attr(&format!("{prefix}string"), StringValue("text".into())),
        attr(&format!("{prefix}int"), IntValue(-7)),
        attr(&format!("{prefix}double"), DoubleValue(0.25)),
        attr(&format!("{prefix}bool"), BoolValue(true)),
        attr(&format!("{prefix}bytes"), BytesValue(vec![0, 1, 254, 255])),
        attr(
            &format!("{prefix}array"),
            ArrayValue(opentelemetry_proto::tonic::common::v1::ArrayValue {
                values: vec![
                    AnyValue {
                        value: Some(StringValue("a".into())),
                    },
                    AnyValue {
                        value: Some(IntValue(2)),
                    },
                ],
            }),
        ),
        attr(
            &format!("{prefix}kvlist"),
            KvlistValue(KeyValueList {
                values: vec![attr("inner", BoolValue(false))],
            }),
        ),
    ]
}

fn span_id(n: u8) -> Vec<u8> {
    vec![0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, n]
}

#[allow(clippy::too_many_arguments)]
fn span_of(
    n: u8,
    parent: Option<u8>,
    name: &str,
    kind: span::SpanKind,
    start_ms: u64,
    end_ms: u64,
    attributes: Vec<KeyValue>,
    status: Option<Status>,
) -> Span {
    Span {
        trace_id: hex::decode(TRACE_ID).unwrap(),
        span_id: span_id(n),
        parent_span_id: parent.map(span_id).unwrap_or_default(),
        name: name.into(),
        kind: kind as i32,
        start_time_unix_nano: BASE_S * 1_000_000_000 + start_ms * MS,
        end_time_unix_nano: BASE_S * 1_000_000_000 + end_ms * MS,
        attributes,
        status,
        ..Default::default()
    }
}

fn resource_spans(
    service: &str,
    extra: Vec<KeyValue>,
    scope: &str,
    spans: Vec<Span>,
) -> ResourceSpans {
    let mut attributes = vec![attr(
        "service.name",
        any_value::Value::StringValue(service.into()),
    )];
    attributes.extend(extra);
    ResourceSpans {
        resource: Some(Resource {
            attributes,
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: scope.into(),
                version: "1.2.3".into(),
                ..Default::default()
            }),
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The trace the golden files describe.
fn checkout_trace() -> ExportTraceServiceRequest {
    use any_value::Value::*;
    let mut root_attributes = vec![
        attr("http.route", StringValue("/checkout".into())),
        attr("http.response.status_code", IntValue(200)),
    ];
    root_attributes.extend(every_type("test."));
    let mut root = span_of(
        1,
        None,
        "GET /checkout",
        span::SpanKind::Server,
        0,
        120,
        root_attributes,
        Some(Status {
            code: 1,
            message: String::new(),
        }),
    );
    root.trace_state = "vendor=1".into();
    root.events = vec![span::Event {
        time_unix_nano: BASE_S * 1_000_000_000 + 5 * MS,
        name: "cache miss".into(),
        attributes: vec![attr("cache.size", IntValue(3))],
        ..Default::default()
    }];
    root.links = vec![span::Link {
        trace_id: hex::decode("00000000000000000000000000000abc").unwrap(),
        span_id: span_id(9),
        attributes: vec![attr("link.reason", StringValue("retry".into()))],
        ..Default::default()
    }];
    let checkout = span_of(
        2,
        Some(1),
        "POST /api/checkout",
        span::SpanKind::Server,
        10,
        110,
        vec![attr("order.total", DoubleValue(42.5))],
        None,
    );
    let mut charge = span_of(
        3,
        Some(2),
        "charge card",
        span::SpanKind::Internal,
        20,
        100,
        vec![attr("payment.attempt", IntValue(2))],
        Some(Status {
            code: 2,
            message: "card declined".into(),
        }),
    );
    charge.events = vec![span::Event {
        time_unix_nano: BASE_S * 1_000_000_000 + 90 * MS,
        name: "exception".into(),
        attributes: vec![
            attr("exception.type", StringValue("CardDeclined".into())),
            attr("exception.escaped", BoolValue(false)),
        ],
        ..Default::default()
    }];
    let select = span_of(
        4,
        Some(3),
        "SELECT payments",
        span::SpanKind::Client,
        30,
        60,
        vec![attr("db.system", StringValue("postgresql".into()))],
        None,
    );
    ExportTraceServiceRequest {
        resource_spans: vec![
            resource_spans(
                "frontend",
                every_type("host."),
                "io.opentelemetry.http",
                vec![root],
            ),
            resource_spans(
                "checkout",
                vec![attr("deployment.environment", StringValue("prod".into()))],
                "checkout",
                vec![checkout],
            ),
            resource_spans("payment", vec![], "payments", vec![charge, select]),
        ],
    }
}

#[test]
fn tempo_api_answers_like_grafana_tempo() {
    let Some(python) = python() else {
        return;
    };
    let server = TestServer::start();
    let request = checkout_trace();
    server.ingest(&request);
    wait_until("the trace is queryable", Duration::from_secs(30), || {
        http_get(
            &http_agent(),
            &format!("{}/api/traces/{TRACE_ID}", server.url()),
        )
        .is_ok_and(|reply| reply.status == 200)
    });

    let sent = tempfile::Builder::new()
        .prefix("lighttrace-tempo-sent-")
        .suffix(".pb")
        .tempfile()
        .expect("a temporary file");
    std::fs::write(sent.path(), request.encode_to_vec()).expect("write the sent request");
    let output = run_with_timeout(
        Command::new(&python)
            .arg(python_script("tempo_contract.py"))
            .args(["--endpoint", &server.url()])
            .args(["--trace-id", TRACE_ID])
            .args(["--start", &(BASE_S - 3600).to_string()])
            .args(["--end", &(BASE_S + 3600).to_string()])
            .arg("--sent")
            .arg(sent.path())
            .arg("--golden")
            .arg(repo_root().join("tests/golden/tempo")),
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "tempo_contract.py failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    // The script says what it checked; a check that silently ran nothing
    // would pass without this.
    for check in [
        "protobuf /api/traces",
        "protobuf /api/v2/traces",
        "json /api/traces",
        "json /api/v2/traces",
        "json /api/search",
        "json /api/search/tags",
        "json /api/v2/search/tags",
        "json /api/v2/search/tag",
    ] {
        assert!(
            stdout.contains(&format!("ok {check}")),
            "{check}:\n{stdout}\n{stderr}"
        );
    }
    eprintln!("{stdout}");
}
