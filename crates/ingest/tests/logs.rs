//! `decode_otlp_logs` and `encode_logs_response` through the public API.

use arrow::array::{Array, AsArray, MapArray, RecordBatch};
use arrow::datatypes::{Int32Type, Int64Type, TimestampNanosecondType};
use lighttrace_ingest::{
    DecodedLogs, IngestError, OtlpEncoding, decode_otlp_logs, decode_otlp_logs_protobuf_with_prost,
    encode_logs_response,
};
use lighttrace_model::logs_schema;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

// ---------------------------------------------------------------- builders

/// 2024-05-01T12:00:00Z in nanoseconds.
const BASE_NS: u64 = 1_714_564_800_000_000_000;

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        key_strindex: 0,
    }
}

fn string(s: &str) -> Value {
    Value::StringValue(s.into())
}

fn record(body: Option<Value>) -> LogRecord {
    LogRecord {
        time_unix_nano: BASE_NS,
        observed_time_unix_nano: BASE_NS + 5,
        severity_number: 9,
        severity_text: "INFO".into(),
        body: body.map(|value| AnyValue { value: Some(value) }),
        trace_id: vec![0x4b; 16],
        span_id: vec![0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7],
        flags: 1,
        ..Default::default()
    }
}

fn request(service: &str, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", string(service))],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "app.logger".into(),
                    version: "1.0".into(),
                    ..Default::default()
                }),
                log_records: records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// Decodes `request` as protobuf (both decoders) and as JSON; all three must agree.
fn decode_all_ways(request: &ExportLogsServiceRequest) -> DecodedLogs {
    let protobuf = request.encode_to_vec();
    let ours = decode_otlp_logs(&protobuf, OtlpEncoding::Protobuf, "proj").unwrap();
    let prost = decode_otlp_logs_protobuf_with_prost(&protobuf, "proj").unwrap();
    let json = serde_json::to_vec(request).unwrap();
    let from_json = decode_otlp_logs(&json, OtlpEncoding::Json, "proj").unwrap();
    for other in [&prost, &from_json] {
        assert_eq!(ours.batch, other.batch);
        assert_eq!(
            (ours.accepted, ours.rejected, &ours.rejection_message),
            (other.accepted, other.rejected, &other.rejection_message)
        );
    }
    assert_eq!(ours.batch.num_rows(), ours.accepted);
    assert_eq!(ours.batch.schema(), logs_schema());
    ours
}

fn decode_json(body: &str) -> Result<DecodedLogs, IngestError> {
    decode_otlp_logs(body.as_bytes(), OtlpEncoding::Json, "proj")
}

fn strings(batch: &RecordBatch, column: &str) -> Vec<Option<String>> {
    let array = batch.column_by_name(column).unwrap().as_string::<i32>();
    (0..array.len())
        .map(|i| array.is_valid(i).then(|| array.value(i).to_string()))
        .collect()
}

fn map(batch: &RecordBatch, column: &str, row: usize) -> Vec<(String, String)> {
    let map: &MapArray = batch.column_by_name(column).unwrap().as_map();
    let entries = map.value(row);
    let keys = entries.column(0).as_string::<i32>();
    let values = entries.column(1).as_string::<i32>();
    (0..entries.len())
        .map(|i| (keys.value(i).to_string(), values.value(i).to_string()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn malformed_message(result: Result<DecodedLogs, IngestError>) -> String {
    match result {
        Err(IngestError::Malformed(message)) => message,
        other => panic!("expected Malformed, got {:?}", other.map(|d| d.accepted)),
    }
}

// ---------------------------------------------------------------- tests

#[test]
fn a_log_record_fills_every_column() {
    let mut full = record(Some(string("card declined")));
    full.attributes = vec![
        kv("code.lineno", Value::IntValue(42)),
        kv("payment.provider", string("acme")),
    ];
    full.event_name = "payment.declined".into();
    full.severity_number = 17;
    full.severity_text = "ERROR".into();
    let decoded = decode_all_ways(&request("payment", vec![full]));
    assert_eq!((decoded.accepted, decoded.rejected), (1, 0));
    let batch = &decoded.batch;
    let one = |column: &str| strings(batch, column).remove(0);
    assert_eq!(one("project").as_deref(), Some("proj"));
    assert_eq!(
        one("trace_id").as_deref(),
        Some("4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b")
    );
    assert_eq!(one("span_id").as_deref(), Some("00f067aa0ba902b7"));
    assert_eq!(one("severity_text").as_deref(), Some("ERROR"));
    assert_eq!(one("body").as_deref(), Some("card declined"));
    assert_eq!(one("body_type"), None);
    assert_eq!(one("scope_name").as_deref(), Some("app.logger"));
    assert_eq!(one("scope_version").as_deref(), Some("1.0"));
    assert_eq!(one("event_name").as_deref(), Some("payment.declined"));
    assert_eq!(one("service_name").as_deref(), Some("payment"));
    assert_eq!(one("source").as_deref(), Some("otlp"));
    let column = |name: &str| batch.column_by_name(name).unwrap().clone();
    assert_eq!(
        column("time")
            .as_primitive::<TimestampNanosecondType>()
            .value(0),
        BASE_NS as i64
    );
    assert_eq!(
        column("observed_time")
            .as_primitive::<TimestampNanosecondType>()
            .value(0),
        BASE_NS as i64 + 5
    );
    assert_eq!(
        column("severity_number")
            .as_primitive::<Int32Type>()
            .value(0),
        17
    );
    assert_eq!(column("flags").as_primitive::<Int64Type>().value(0), 1);
    assert_eq!(
        map(batch, "attributes", 0),
        pairs(&[("code.lineno", "42"), ("payment.provider", "acme")])
    );
    assert_eq!(
        map(batch, "attribute_types", 0),
        pairs(&[("code.lineno", "int")])
    );
    assert_eq!(
        map(batch, "resource_attributes", 0),
        pairs(&[("service.name", "payment")])
    );
    assert!(map(batch, "resource_attribute_types", 0).is_empty());
}

#[test]
fn every_body_type_renders_like_an_attribute_value() {
    let cases: Vec<(Option<AnyValue>, Option<&str>, Option<&str>)> = vec![
        (
            Some(AnyValue {
                value: Some(string("plain text")),
            }),
            Some("plain text"),
            None,
        ),
        (
            Some(AnyValue {
                value: Some(string("")),
            }),
            Some(""),
            None,
        ),
        (
            Some(AnyValue {
                value: Some(Value::IntValue(-42)),
            }),
            Some("-42"),
            Some("int"),
        ),
        (
            Some(AnyValue {
                value: Some(Value::DoubleValue(0.5)),
            }),
            Some("0.5"),
            Some("double"),
        ),
        (
            Some(AnyValue {
                value: Some(Value::DoubleValue(2.0)),
            }),
            Some("2"),
            Some("double"),
        ),
        (
            Some(AnyValue {
                value: Some(Value::BoolValue(true)),
            }),
            Some("true"),
            Some("bool"),
        ),
        (
            Some(AnyValue {
                value: Some(Value::BytesValue(vec![0xff, 0, 1])),
            }),
            Some("/wAB"),
            Some("bytes"),
        ),
        (
            Some(AnyValue {
                value: Some(Value::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue {
                            value: Some(string("a")),
                        },
                        AnyValue {
                            value: Some(Value::IntValue(1)),
                        },
                        AnyValue {
                            value: Some(Value::DoubleValue(1.5)),
                        },
                    ],
                })),
            }),
            Some(r#"[{"stringValue":"a"},{"intValue":"1"},{"doubleValue":1.5}]"#),
            Some("array"),
        ),
        (
            Some(AnyValue {
                value: Some(Value::KvlistValue(KeyValueList {
                    values: vec![
                        kv("event", string("login")),
                        kv("ok", Value::BoolValue(false)),
                    ],
                })),
            }),
            Some(
                r#"[{"key":"event","value":{"stringValue":"login"}},{"key":"ok","value":{"boolValue":false}}]"#,
            ),
            Some("kvlist"),
        ),
        // No body, and a body with nothing set: null.
        (None, None, None),
        (Some(AnyValue { value: None }), None, None),
    ];
    let records = cases
        .iter()
        .map(|(body, _, _)| LogRecord {
            body: body.clone(),
            ..record(None)
        })
        .collect();
    let decoded = decode_all_ways(&request("svc", records));
    assert_eq!(decoded.accepted, cases.len());
    let bodies = strings(&decoded.batch, "body");
    let types = strings(&decoded.batch, "body_type");
    for (i, (_, body, ty)) in cases.iter().enumerate() {
        assert_eq!(bodies[i].as_deref(), *body, "row {i}");
        assert_eq!(types[i].as_deref(), *ty, "row {i}");
    }
}

#[test]
fn absent_and_all_zero_ids_are_null() {
    let records = vec![
        LogRecord {
            trace_id: vec![],
            span_id: vec![],
            ..record(Some(string("no ids")))
        },
        LogRecord {
            trace_id: vec![0; 16],
            span_id: vec![0; 8],
            ..record(Some(string("zero ids")))
        },
        LogRecord {
            span_id: vec![],
            ..record(Some(string("trace only")))
        },
    ];
    let decoded = decode_all_ways(&request("svc", records));
    assert_eq!((decoded.accepted, decoded.rejected), (3, 0));
    assert_eq!(
        strings(&decoded.batch, "trace_id"),
        vec![None, None, Some("4b".repeat(16))]
    );
    assert_eq!(strings(&decoded.batch, "span_id"), vec![None, None, None]);
}

#[test]
fn ids_of_a_wrong_length_reject_the_record_and_keep_the_rest() {
    let records = vec![
        LogRecord {
            trace_id: vec![1; 15],
            ..record(Some(string("short trace id")))
        },
        record(Some(string("good"))),
        LogRecord {
            span_id: vec![1; 16],
            ..record(Some(string("long span id")))
        },
    ];
    let decoded = decode_all_ways(&request("svc", records));
    assert_eq!((decoded.accepted, decoded.rejected), (1, 2));
    assert_eq!(strings(&decoded.batch, "body"), vec![Some("good".into())]);
    assert_eq!(
        decoded.rejection_message.as_deref(),
        Some(
            "2 log records rejected: log record 0 of scope 0 of resource 0: trace id must be \
             empty or 16 bytes, got 15; log record 2 of scope 0 of resource 0: span id must be \
             empty or 8 bytes, got 16"
        )
    );

    let response = encode_logs_response(
        OtlpEncoding::Json,
        decoded.rejected,
        decoded.rejection_message.as_deref(),
    );
    let response: ExportLogsServiceResponse = serde_json::from_slice(&response).unwrap();
    assert_eq!(
        response.partial_success.map(|p| p.rejected_log_records),
        Some(2)
    );
}

#[test]
fn time_falls_back_to_the_observed_time() {
    let records = vec![
        LogRecord {
            time_unix_nano: 0,
            ..record(None)
        },
        LogRecord {
            observed_time_unix_nano: 0,
            ..record(None)
        },
    ];
    let decoded = decode_all_ways(&request("svc", records));
    let times = decoded.batch.column_by_name("time").unwrap();
    let times = times.as_primitive::<TimestampNanosecondType>();
    assert_eq!(
        times.values().to_vec(),
        vec![BASE_NS as i64 + 5, BASE_NS as i64]
    );
    let observed = decoded.batch.column_by_name("observed_time").unwrap();
    assert!(observed.is_valid(0) && observed.is_null(1));
}

#[test]
fn service_name_defaults_to_unknown_service() {
    let mut no_resource = request("ignored", vec![record(None)]);
    no_resource.resource_logs[0].resource = None;
    let decoded = decode_all_ways(&no_resource);
    assert_eq!(
        strings(&decoded.batch, "service_name"),
        vec![Some("unknown_service".into())]
    );
}

#[test]
fn the_json_of_the_otlp_spec_example_decodes() {
    // opentelemetry-proto's examples/logs.json, trimmed.
    let body = r#"{"resourceLogs":[{
        "resource":{"attributes":[{"key":"service.name","value":{"stringValue":"my.service"}}]},
        "scopeLogs":[{"scope":{"name":"my.library","version":"1.0.0",
            "attributes":[{"key":"my.scope.attribute","value":{"stringValue":"some scope attribute"}}]},
          "logRecords":[{"timeUnixNano":"1544712660300000000","observedTimeUnixNano":"1544712660300000000",
            "severityNumber":10,"severityText":"Information",
            "traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174",
            "body":{"stringValue":"Example log record"},
            "attributes":[{"key":"string.attribute","value":{"stringValue":"some string"}},
              {"key":"boolean.attribute","value":{"boolValue":true}},
              {"key":"int.attribute","value":{"intValue":"10"}},
              {"key":"double.attribute","value":{"doubleValue":637.704}},
              {"key":"array.attribute","value":{"arrayValue":{"values":[{"stringValue":"many"},{"stringValue":"values"}]}}},
              {"key":"map.attribute","value":{"kvlistValue":{"values":[{"key":"some.map.key","value":{"stringValue":"some value"}}]}}}]}]}]}]}"#;
    let decoded = decode_json(body).unwrap();
    assert_eq!((decoded.accepted, decoded.rejected), (1, 0));
    let batch = &decoded.batch;
    assert_eq!(
        strings(batch, "trace_id"),
        vec![Some("5b8efff798038103d269b633813fc60c".into())]
    );
    assert_eq!(
        strings(batch, "span_id"),
        vec![Some("eee19b7ec3c1b174".into())]
    );
    assert_eq!(
        strings(batch, "body"),
        vec![Some("Example log record".into())]
    );
    assert_eq!(
        map(batch, "attribute_types", 0),
        pairs(&[
            ("boolean.attribute", "bool"),
            ("int.attribute", "int"),
            ("double.attribute", "double"),
            ("array.attribute", "array"),
            ("map.attribute", "kvlist"),
        ])
    );
}

#[test]
fn json_bad_input_is_malformed() {
    assert!(malformed_message(decode_json("")).contains("empty"));
    assert!(malformed_message(decode_json("[]")).contains("expected an ExportLogsServiceRequest"));
    let message = malformed_message(decode_json(
        r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"zz"}]}]}]}"#,
    ));
    assert!(message.starts_with("invalid OTLP JSON"), "{message}");
    let decoded = decode_json("{}").unwrap();
    assert_eq!(decoded.batch.num_rows(), 0);
}

#[test]
fn protobuf_bad_input_is_malformed_and_an_empty_body_is_an_empty_request() {
    let decoded = decode_otlp_logs(b"", OtlpEncoding::Protobuf, "p").unwrap();
    assert_eq!((decoded.accepted, decoded.rejected), (0, 0));
    let body = request("svc", vec![record(Some(string("x")))]).encode_to_vec();
    let message = malformed_message(decode_otlp_logs(
        &body[..body.len() - 1],
        OtlpEncoding::Protobuf,
        "p",
    ));
    assert!(message.starts_with("invalid OTLP protobuf: "), "{message}");
}

#[test]
fn bodies_nested_too_deep_make_the_request_malformed() {
    let mut value = Value::IntValue(7);
    for _ in 0..17 {
        value = Value::ArrayValue(ArrayValue {
            values: vec![AnyValue { value: Some(value) }],
        });
    }
    let request = request("svc", vec![record(Some(value))]);
    let protobuf = request.encode_to_vec();
    let ours = malformed_message(decode_otlp_logs(&protobuf, OtlpEncoding::Protobuf, "p"));
    let prost = malformed_message(decode_otlp_logs_protobuf_with_prost(&protobuf, "p"));
    assert_eq!(ours, prost);
    assert!(ours.contains("nested deeper than 16"), "{ours}");
}

#[test]
fn resource_attributes_repeated_on_many_records_hit_the_expansion_budget() {
    let mut request = request("svc", (0..2000).map(|_| record(None)).collect());
    request.resource_logs[0]
        .resource
        .as_mut()
        .unwrap()
        .attributes
        .push(kv("big", string(&"x".repeat(40_000))));
    let protobuf = request.encode_to_vec();
    let ours = malformed_message(decode_otlp_logs(&protobuf, OtlpEncoding::Protobuf, "p"));
    let prost = malformed_message(decode_otlp_logs_protobuf_with_prost(&protobuf, "p"));
    assert_eq!(ours, prost);
    assert!(
        ours.starts_with("request expands to more than 67108864 bytes of log record data"),
        "{ours}"
    );
}

/// A body recorded from the OpenTelemetry Python SDK's OTLP/HTTP log exporter
/// (payment's records of `tests/python/otel_logs.py`), also a fuzzing seed.
#[test]
fn a_body_from_the_otel_python_log_exporter_decodes() {
    let body = include_bytes!("../../../fuzz/seeds/otlp_logs_protobuf/otel_python_1.45.2.pb");
    let ours = decode_otlp_logs(body, OtlpEncoding::Protobuf, "p").unwrap();
    let prost = decode_otlp_logs_protobuf_with_prost(body, "p").unwrap();
    assert_eq!(ours.batch, prost.batch);
    assert_eq!((ours.accepted, ours.rejected), (3, 0));
    let batch = &ours.batch;
    assert_eq!(
        strings(batch, "body"),
        vec![
            Some(
                r#"[{"key":"event","value":{"stringValue":"charge"}},{"key":"amount","value":{"doubleValue":42.5}}]"#
                    .into()
            ),
            Some("card declined".into()),
            Some("charge failed".into()),
        ]
    );
    assert_eq!(
        strings(batch, "body_type"),
        vec![Some("kvlist".into()), None, None]
    );
    assert_eq!(
        strings(batch, "severity_text"),
        vec![
            Some("INFO".into()),
            Some("ERROR".into()),
            Some("ERROR".into())
        ]
    );
    assert_eq!(
        strings(batch, "service_name"),
        vec![Some("payment".into()); 3]
    );
    let trace_ids = strings(batch, "trace_id");
    assert!(
        trace_ids
            .iter()
            .all(|id| id.as_ref().is_some_and(|id| id.len() == 32))
    );
    assert!(
        trace_ids.windows(2).all(|pair| pair[0] == pair[1]),
        "one trace"
    );
    let exception = map(batch, "attributes", 2);
    assert!(exception.contains(&("exception.type".into(), "ValueError".into())));

    let json = include_bytes!("../../../fuzz/seeds/otlp_logs_json/spec_example.json");
    let decoded = decode_otlp_logs(json, OtlpEncoding::Json, "p").unwrap();
    assert_eq!((decoded.accepted, decoded.rejected), (1, 1));
}
