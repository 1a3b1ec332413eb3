//! `decode_otlp_traces` and `encode_traces_response` through the public API.

use arrow::array::{Array, AsArray, MapArray, RecordBatch, StructArray};
use arrow::datatypes::{Int64Type, TimestampNanosecondType};
use lighttrace_ingest::{
    DecodedSpans, IngestError, OtlpEncoding, decode_otlp_traces, encode_traces_response,
};
use lighttrace_model::spans_schema;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

// ---------------------------------------------------------------- builders

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

fn span(trace: u8, id: u8, name: &str) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        name: name.into(),
        kind: 2,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_250_000_000,
        ..Default::default()
    }
}

fn resource_spans(resource: Vec<KeyValue>, scopes: Vec<ScopeSpans>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: resource,
            ..Default::default()
        }),
        scope_spans: scopes,
        schema_url: String::new(),
    }
}

fn scope(name: &str, version: &str, spans: Vec<Span>) -> ScopeSpans {
    ScopeSpans {
        scope: Some(InstrumentationScope {
            name: name.into(),
            version: version.into(),
            ..Default::default()
        }),
        spans,
        schema_url: String::new(),
    }
}

fn request(resources: Vec<ResourceSpans>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: resources,
    }
}

fn decode_proto(request: &ExportTraceServiceRequest) -> DecodedSpans {
    decode_otlp_traces(&request.encode_to_vec(), OtlpEncoding::Protobuf, "proj").unwrap()
}

fn decode_json(body: &str) -> Result<DecodedSpans, IngestError> {
    decode_otlp_traces(body.as_bytes(), OtlpEncoding::Json, "proj")
}

fn malformed_message(result: Result<DecodedSpans, IngestError>) -> String {
    match result {
        Err(IngestError::Malformed(message)) => message,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

// ---------------------------------------------------------------- readers

fn strings(batch: &RecordBatch, column: &str) -> Vec<Option<String>> {
    let array = batch.column_by_name(column).unwrap().as_string::<i32>();
    (0..array.len())
        .map(|i| array.is_valid(i).then(|| array.value(i).to_string()))
        .collect()
}

fn entries(map: &MapArray, row: usize) -> Vec<(String, String)> {
    let entries = map.value(row);
    let keys = entries.column(0).as_string::<i32>();
    let values = entries.column(1).as_string::<i32>();
    (0..entries.len())
        .map(|i| (keys.value(i).to_string(), values.value(i).to_string()))
        .collect()
}

fn map(batch: &RecordBatch, column: &str, row: usize) -> Vec<(String, String)> {
    entries(batch.column_by_name(column).unwrap().as_map(), row)
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn list_row(batch: &RecordBatch, column: &str, row: usize) -> StructArray {
    batch
        .column_by_name(column)
        .unwrap()
        .as_list::<i32>()
        .value(row)
        .as_struct()
        .clone()
}

// ---------------------------------------------------------------- protobuf

#[test]
fn protobuf_multi_resource_request_round_trips() {
    let mut child = span(0xab, 2, "SELECT");
    child.parent_span_id = vec![1; 8];
    child.kind = 3;
    child.trace_state = "vendor=1".into();
    child.status = Some(Status {
        message: "timeout".into(),
        code: 2,
    });
    child.attributes = vec![
        kv("db.system", string("postgresql")),
        kv("rows", Value::IntValue(3)),
    ];
    child.events = vec![Event {
        time_unix_nano: 1_700_000_000_100_000_000,
        name: "exception".into(),
        attributes: vec![
            kv("exception.message", string("boom")),
            kv("retry", Value::BoolValue(true)),
        ],
        dropped_attributes_count: 0,
    }];
    child.links = vec![
        Link {
            trace_id: vec![9; 16],
            span_id: vec![8; 8],
            trace_state: "x=y".into(),
            attributes: vec![kv("link.weight", Value::DoubleValue(0.5))],
            ..Default::default()
        },
        // Invalid ids: the link is dropped, the span kept.
        Link {
            trace_id: vec![0; 16],
            span_id: vec![8; 8],
            ..Default::default()
        },
        Link {
            trace_id: vec![9; 16],
            span_id: vec![8; 4],
            ..Default::default()
        },
    ];
    let mut root = span(0xab, 1, "GET /cart");
    root.parent_span_id = vec![0; 8]; // all-zero parent also means root
    root.status = Some(Status {
        message: String::new(),
        code: 1,
    });

    let req = request(vec![
        resource_spans(
            vec![
                kv("service.name", string("cart")),
                kv("host.cpus", Value::IntValue(8)),
            ],
            vec![
                scope("io.opentelemetry.http", "1.2.3", vec![root]),
                scope("io.opentelemetry.jdbc", "", vec![child]),
            ],
        ),
        ResourceSpans {
            resource: None,
            scope_spans: vec![ScopeSpans {
                scope: None,
                spans: vec![span(0xcd, 3, "orphan")],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        },
    ]);
    let decoded = decode_proto(&req);
    assert_eq!((decoded.accepted, decoded.rejected), (3, 0));
    assert_eq!(decoded.rejection_message, None);
    let batch = &decoded.batch;
    assert_eq!(batch.schema(), spans_schema());
    assert_eq!(batch.num_rows(), 3);

    let some = |s: &str| Some(s.to_string());
    assert_eq!(strings(batch, "project"), vec![some("proj"); 3]);
    assert_eq!(
        strings(batch, "trace_id"),
        vec![
            some(&"ab".repeat(16)),
            some(&"ab".repeat(16)),
            some(&"cd".repeat(16))
        ]
    );
    assert_eq!(
        strings(batch, "span_id"),
        vec![
            some(&"01".repeat(8)),
            some(&"02".repeat(8)),
            some(&"03".repeat(8))
        ]
    );
    assert_eq!(
        strings(batch, "parent_span_id"),
        vec![None, some(&"01".repeat(8)), None]
    );
    assert_eq!(
        strings(batch, "trace_state"),
        vec![None, some("vendor=1"), None]
    );
    assert_eq!(
        strings(batch, "service_name"),
        vec![some("cart"), some("cart"), some("unknown_service")]
    );
    assert_eq!(
        strings(batch, "name"),
        vec![some("GET /cart"), some("SELECT"), some("orphan")]
    );
    assert_eq!(
        strings(batch, "kind"),
        vec![some("server"), some("client"), some("server")]
    );
    assert_eq!(
        strings(batch, "status_code"),
        vec![some("ok"), some("error"), some("unset")]
    );
    assert_eq!(
        strings(batch, "status_message"),
        vec![None, some("timeout"), None]
    );
    assert_eq!(
        strings(batch, "scope_name"),
        vec![
            some("io.opentelemetry.http"),
            some("io.opentelemetry.jdbc"),
            None
        ]
    );
    assert_eq!(
        strings(batch, "scope_version"),
        vec![some("1.2.3"), None, None]
    );
    assert_eq!(strings(batch, "source"), vec![some("otlp"); 3]);

    let start = batch
        .column_by_name("start_time")
        .unwrap()
        .as_primitive::<TimestampNanosecondType>();
    assert_eq!(start.value(0), 1_700_000_000_000_000_000);
    let duration = batch
        .column_by_name("duration_ns")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(duration.value(1), 250_000_000);

    let resource = pairs(&[("service.name", "cart"), ("host.cpus", "8")]);
    assert_eq!(map(batch, "resource_attributes", 0), resource);
    assert_eq!(map(batch, "resource_attributes", 1), resource);
    assert_eq!(map(batch, "resource_attributes", 2), vec![]);
    assert_eq!(
        map(batch, "resource_attribute_types", 1),
        pairs(&[("host.cpus", "int")])
    );
    assert_eq!(
        map(batch, "attributes", 1),
        pairs(&[("db.system", "postgresql"), ("rows", "3")])
    );
    assert_eq!(map(batch, "attribute_types", 1), pairs(&[("rows", "int")]));
    assert_eq!(map(batch, "attributes", 0), vec![]);

    let events = list_row(batch, "events", 1);
    assert_eq!(events.len(), 1);
    assert_eq!(
        events
            .column(0)
            .as_primitive::<TimestampNanosecondType>()
            .value(0),
        1_700_000_000_100_000_000
    );
    assert_eq!(events.column(1).as_string::<i32>().value(0), "exception");
    assert_eq!(
        entries(events.column(2).as_map(), 0),
        pairs(&[("exception.message", "boom"), ("retry", "true")])
    );
    assert_eq!(
        entries(events.column(3).as_map(), 0),
        pairs(&[("retry", "bool")])
    );
    assert_eq!(list_row(batch, "events", 0).len(), 0);

    let links = list_row(batch, "links", 1);
    assert_eq!(links.len(), 1, "links with invalid ids are dropped");
    assert_eq!(links.column(0).as_string::<i32>().value(0), "09".repeat(16));
    assert_eq!(links.column(1).as_string::<i32>().value(0), "08".repeat(8));
    assert_eq!(links.column(2).as_string::<i32>().value(0), "x=y");
    assert_eq!(
        entries(links.column(3).as_map(), 0),
        pairs(&[("link.weight", "0.5")])
    );
    assert_eq!(
        entries(links.column(4).as_map(), 0),
        pairs(&[("link.weight", "double")])
    );
}

#[test]
fn every_attribute_type_renders_and_only_non_strings_are_typed() {
    let mut s = span(1, 1, "typed");
    s.attributes = vec![
        kv("string", string("text")),
        kv("int", Value::IntValue(-42)),
        kv("double", Value::DoubleValue(0.25)),
        kv("nan", Value::DoubleValue(f64::NAN)),
        kv("inf", Value::DoubleValue(f64::INFINITY)),
        kv("bool", Value::BoolValue(false)),
        kv("bytes", Value::BytesValue(vec![0xde, 0xad, 0xbe, 0xef])),
        kv(
            "array",
            Value::ArrayValue(ArrayValue {
                values: vec![
                    AnyValue {
                        value: Some(string("a")),
                    },
                    AnyValue {
                        value: Some(Value::IntValue(1)),
                    },
                ],
            }),
        ),
        kv(
            "kvlist",
            Value::KvlistValue(KeyValueList {
                values: vec![kv("k", Value::BoolValue(true))],
            }),
        ),
        KeyValue {
            key: "empty".into(),
            value: Some(AnyValue { value: None }),
            key_strindex: 0,
        },
    ];
    let decoded = decode_proto(&request(vec![resource_spans(
        vec![],
        vec![scope("", "", vec![s])],
    )]));
    let batch = &decoded.batch;
    assert_eq!(
        map(batch, "attributes", 0),
        pairs(&[
            ("string", "text"),
            ("int", "-42"),
            ("double", "0.25"),
            ("nan", "NaN"),
            ("inf", "inf"),
            ("bool", "false"),
            ("bytes", "3q2+7w=="),
            ("array", r#"[{"stringValue":"a"},{"intValue":"1"}]"#),
            ("kvlist", r#"[{"key":"k","value":{"boolValue":true}}]"#),
            ("empty", ""),
        ])
    );
    assert_eq!(
        map(batch, "attribute_types", 0),
        pairs(&[
            ("int", "int"),
            ("double", "double"),
            ("nan", "double"),
            ("inf", "double"),
            ("bool", "bool"),
            ("bytes", "bytes"),
            ("array", "array"),
            ("kvlist", "kvlist"),
        ])
    );
    assert_eq!(
        strings(batch, "service_name"),
        vec![Some("unknown_service".into())]
    );
}

#[test]
fn service_name_must_be_a_non_empty_string() {
    for value in [string(""), Value::IntValue(5)] {
        let req = request(vec![resource_spans(
            vec![kv("service.name", value)],
            vec![scope("", "", vec![span(1, 1, "x")])],
        )]);
        let decoded = decode_proto(&req);
        assert_eq!(
            strings(&decoded.batch, "service_name"),
            vec![Some("unknown_service".into())]
        );
    }
}

#[test]
fn invalid_spans_are_rejected_and_the_rest_accepted() {
    let mut bad: Vec<(Span, &str)> = Vec::new();
    let mut s = span(0, 1, "zero trace");
    bad.push((s.clone(), "trace id must not be all zeros"));
    s = span(1, 0, "zero span");
    bad.push((s.clone(), "span id must not be all zeros"));
    s = span(1, 1, "short trace");
    s.trace_id = vec![1; 8];
    bad.push((s.clone(), "trace id must be 16 bytes, got 8"));
    s = span(1, 1, "missing span id");
    s.span_id = vec![];
    bad.push((s.clone(), "span id must be 8 bytes, got 0"));
    s = span(1, 1, "bad parent");
    s.parent_span_id = vec![1; 5];
    bad.push((s.clone(), "parent span id must be empty or 8 bytes, got 5"));
    s = span(1, 1, "no start");
    s.start_time_unix_nano = 0;
    s.end_time_unix_nano = 0;
    bad.push((s.clone(), "start time is 0"));
    s = span(1, 1, "backwards");
    s.start_time_unix_nano = 20;
    s.end_time_unix_nano = 10;
    bad.push((s.clone(), "end time 10 is before start time 20"));
    s = span(1, 1, "far future");
    s.end_time_unix_nano = u64::MAX;
    bad.push((
        s.clone(),
        "end time 18446744073709551615 is after the year 2262",
    ));

    for (bad_span, reason) in &bad {
        let req = request(vec![resource_spans(
            vec![],
            vec![scope("", "", vec![span(7, 7, "good"), bad_span.clone()])],
        )]);
        let decoded = decode_proto(&req);
        assert_eq!((decoded.accepted, decoded.rejected), (1, 1), "{reason}");
        assert_eq!(decoded.batch.num_rows(), 1);
        assert_eq!(
            decoded.rejection_message.as_deref(),
            Some(format!("1 span rejected: span 1 of scope 0 of resource 0: {reason}").as_str())
        );
    }

    // Many rejections: counted exactly, message bounded.
    let mut spans: Vec<Span> = bad.iter().map(|(s, _)| s.clone()).collect();
    spans.extend((0..1000).map(|_| span(0, 0, "zero")));
    spans.push(span(3, 3, "good"));
    let req = request(vec![
        resource_spans(vec![], vec![scope("", "", vec![span(2, 2, "good")])]),
        resource_spans(vec![], vec![scope("", "", vec![]), scope("", "", spans)]),
    ]);
    let decoded = decode_proto(&req);
    assert_eq!((decoded.accepted, decoded.rejected), (2, 1008));
    let message = decoded.rejection_message.unwrap();
    assert!(
        message.starts_with(
            "1008 spans rejected: span 0 of scope 1 of resource 1: trace id must not be all zeros; \
             span 1 of scope 1 of resource 1: span id must not be all zeros; "
        ),
        "{message}"
    );
    assert!(message.ends_with("; and 1003 more"), "{message}");
    assert!(message.len() < 600, "{} bytes", message.len());
}

#[test]
fn a_request_with_only_invalid_spans_is_still_ok() {
    let req = request(vec![resource_spans(
        vec![],
        vec![scope("", "", vec![span(0, 1, "a"), span(1, 0, "b")])],
    )]);
    let decoded = decode_proto(&req);
    assert_eq!((decoded.accepted, decoded.rejected), (0, 2));
    assert_eq!(decoded.batch.num_rows(), 0);
    assert_eq!(decoded.batch.schema(), spans_schema());
    assert!(
        decoded
            .rejection_message
            .unwrap()
            .starts_with("2 spans rejected: span 0 of scope 0 of resource 0: ")
    );
}

#[test]
fn empty_protobuf_body_is_an_empty_request() {
    let decoded = decode_otlp_traces(b"", OtlpEncoding::Protobuf, "p").unwrap();
    assert_eq!((decoded.accepted, decoded.rejected), (0, 0));
    assert_eq!(decoded.batch.num_rows(), 0);
    assert_eq!(decoded.batch.schema(), spans_schema());
}

#[test]
fn truncated_protobuf_is_malformed() {
    let mut s = span(1, 1, "a name long enough to cut");
    s.attributes = vec![kv("k", string("v"))];
    let body = request(vec![resource_spans(
        vec![kv("service.name", string("svc"))],
        vec![scope("", "", vec![s])],
    )])
    .encode_to_vec();
    for cut in [1, body.len() / 2, body.len() - 1] {
        let message = malformed_message(decode_otlp_traces(
            &body[..cut],
            OtlpEncoding::Protobuf,
            "p",
        ));
        assert!(message.starts_with("invalid OTLP protobuf: "), "{message}");
    }
}

/// xorshift64*: deterministic bytes without a dependency.
fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

#[test]
fn random_bytes_never_panic() {
    let valid = request(vec![resource_spans(
        vec![kv("service.name", string("svc"))],
        vec![scope("s", "1", vec![span(1, 1, "a"), span(2, 2, "b")])],
    )])
    .encode_to_vec();
    for seed in 0..2000u64 {
        let len = (seed as usize * 7) % 300;
        let noise = pseudo_random_bytes(seed, len);
        for encoding in [OtlpEncoding::Protobuf, OtlpEncoding::Json] {
            match decode_otlp_traces(&noise, encoding, "p") {
                Ok(decoded) => assert_eq!(decoded.batch.num_rows(), decoded.accepted),
                Err(IngestError::Malformed(_)) => {}
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        // Valid message with a few flipped bytes.
        let mut mutated = valid.clone();
        for (i, b) in pseudo_random_bytes(seed, 3).into_iter().enumerate() {
            let at = (seed as usize * 31 + i * 17) % mutated.len();
            mutated[at] ^= b | 1;
        }
        if let Ok(decoded) = decode_otlp_traces(&mutated, OtlpEncoding::Protobuf, "p") {
            assert_eq!(decoded.batch.num_rows(), decoded.accepted);
        }
    }
}

/// A protobuf length-delimited field.
fn length_delimited(field: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 10);
    prost::encoding::encode_key(field, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

fn nested_array(levels: usize) -> Value {
    let mut value = Value::IntValue(1);
    for _ in 0..levels {
        value = Value::ArrayValue(ArrayValue {
            values: vec![AnyValue { value: Some(value) }],
        });
    }
    value
}

#[test]
fn deeply_nested_attributes_make_the_request_malformed() {
    let mut ok = span(1, 1, "sixteen");
    ok.attributes = vec![kv("deep", nested_array(16))];
    let decoded = decode_proto(&request(vec![resource_spans(
        vec![],
        vec![scope("", "", vec![ok])],
    )]));
    assert_eq!(decoded.accepted, 1);

    // Too deep in span, event, link and resource attributes alike.
    let mut in_span = span(1, 1, "x");
    in_span.attributes = vec![kv("deep", nested_array(17))];
    let mut in_event = span(1, 1, "x");
    in_event.events = vec![Event {
        time_unix_nano: 1,
        attributes: vec![kv("deep", nested_array(40))],
        ..Default::default()
    }];
    let mut in_link = span(1, 1, "x");
    in_link.links = vec![Link {
        trace_id: vec![1; 16],
        span_id: vec![1; 8],
        attributes: vec![kv("deep", nested_array(17))],
        ..Default::default()
    }];
    let requests = [
        request(vec![resource_spans(
            vec![],
            vec![scope("", "", vec![in_span])],
        )]),
        request(vec![resource_spans(
            vec![],
            vec![scope("", "", vec![in_event])],
        )]),
        request(vec![resource_spans(
            vec![],
            vec![scope("", "", vec![in_link])],
        )]),
        request(vec![resource_spans(
            vec![kv("deep", nested_array(17))],
            vec![scope("", "", vec![span(1, 1, "x")])],
        )]),
    ];
    for req in &requests {
        let message = malformed_message(decode_otlp_traces(
            &req.encode_to_vec(),
            OtlpEncoding::Protobuf,
            "p",
        ));
        assert_eq!(message, "attribute value nested deeper than 16 levels");
    }

    // Far deeper than prost's own recursion limit: refused by the decoder,
    // without exhausting the stack. Encoded by hand, since prost would recurse
    // 5000 levels deep to encode it.
    let mut value = AnyValue {
        value: Some(Value::IntValue(1)),
    }
    .encode_to_vec();
    for _ in 0..5000 {
        let array = length_delimited(1, &value); // ArrayValue.values
        value = length_delimited(5, &array); // AnyValue.array_value
    }
    let mut key_value = length_delimited(1, b"deep"); // KeyValue.key
    key_value.extend(length_delimited(2, &value)); // KeyValue.value
    let mut span_bytes = span(1, 1, "x").encode_to_vec();
    span_bytes.extend(length_delimited(9, &key_value)); // Span.attributes
    let scope_spans = length_delimited(2, &span_bytes); // ScopeSpans.spans
    let resource = length_delimited(2, &scope_spans); // ResourceSpans.scope_spans
    let body = length_delimited(1, &resource); // ExportTraceServiceRequest.resource_spans
    let message = malformed_message(decode_otlp_traces(&body, OtlpEncoding::Protobuf, "p"));
    assert!(message.starts_with("invalid OTLP protobuf: "), "{message}");
}

#[test]
fn deeply_nested_json_attributes_are_malformed() {
    let nest = |levels: usize| {
        let mut value = r#"{"intValue":"1"}"#.to_string();
        for _ in 0..levels {
            value = format!(r#"{{"arrayValue":{{"values":[{value}]}}}}"#);
        }
        format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"01010101010101010101010101010101",
            "spanId":"0101010101010101","startTimeUnixNano":"1","endTimeUnixNano":"2",
            "attributes":[{{"key":"deep","value":{value}}}]}}]}}]}}]}}"#
        )
    };
    assert_eq!(decode_json(&nest(16)).unwrap().accepted, 1);
    assert_eq!(
        malformed_message(decode_json(&nest(17))),
        "attribute value nested deeper than 16 levels"
    );
    // Beyond serde_json's recursion limit.
    let message = malformed_message(decode_json(&nest(2000)));
    assert!(message.contains("recursion limit exceeded"), "{message}");
}

#[test]
fn resource_attributes_repeated_on_many_spans_hit_the_expansion_budget() {
    let big = "x".repeat(1 << 20);
    let spans: Vec<Span> = (0..100).map(|i| span(1, i as u8 + 1, "s")).collect();
    let req = request(vec![resource_spans(
        vec![kv("big", string(&big))],
        vec![scope("", "", spans)],
    )]);
    let message = malformed_message(decode_otlp_traces(
        &req.encode_to_vec(),
        OtlpEncoding::Protobuf,
        "p",
    ));
    assert!(
        message.starts_with("request expands to more than 67108864 bytes of span data"),
        "{message}"
    );
}

// ---------------------------------------------------------------- JSON

/// The example of the OTLP specification (opentelemetry-proto `examples/trace.json`).
const SPEC_EXAMPLE: &str = r#"{
  "resourceSpans": [
    {
      "resource": {
        "attributes": [
          { "key": "service.name", "value": { "stringValue": "my.service" } }
        ]
      },
      "scopeSpans": [
        {
          "scope": {
            "name": "my.library",
            "version": "1.0.0",
            "attributes": [
              { "key": "my.scope.attribute", "value": { "stringValue": "some scope attribute" } }
            ]
          },
          "spans": [
            {
              "traceId": "5B8EFFF798038103D269B633813FC60C",
              "spanId": "EEE19B7EC3C1B174",
              "parentSpanId": "EEE19B7EC3C1B173",
              "name": "I'm a server span",
              "startTimeUnixNano": "1544712660000000000",
              "endTimeUnixNano": "1544712661000000000",
              "kind": 2,
              "attributes": [
                { "key": "my.span.attr", "value": { "stringValue": "some value" } }
              ]
            }
          ]
        }
      ]
    }
  ]
}"#;

#[test]
fn json_example_from_the_otlp_spec() {
    let decoded = decode_json(SPEC_EXAMPLE).unwrap();
    assert_eq!((decoded.accepted, decoded.rejected), (1, 0));
    let batch = &decoded.batch;
    let some = |s: &str| vec![Some(s.to_string())];
    assert_eq!(
        strings(batch, "trace_id"),
        some("5b8efff798038103d269b633813fc60c")
    );
    assert_eq!(strings(batch, "span_id"), some("eee19b7ec3c1b174"));
    assert_eq!(strings(batch, "parent_span_id"), some("eee19b7ec3c1b173"));
    assert_eq!(strings(batch, "service_name"), some("my.service"));
    assert_eq!(strings(batch, "name"), some("I'm a server span"));
    assert_eq!(strings(batch, "kind"), some("server"));
    assert_eq!(strings(batch, "scope_name"), some("my.library"));
    assert_eq!(strings(batch, "scope_version"), some("1.0.0"));
    assert_eq!(
        map(batch, "attributes", 0),
        pairs(&[("my.span.attr", "some value")])
    );
    let duration = batch
        .column_by_name("duration_ns")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(duration.value(0), 1_000_000_000);
}

#[test]
fn json_and_protobuf_decode_to_the_same_batch() {
    let mut s = span(0x5b, 0xee, "same");
    s.attributes = vec![
        kv("i", Value::IntValue(-7)),
        kv("d", Value::DoubleValue(2.5)),
        kv("b", Value::BytesValue(vec![1, 2, 3])),
        kv(
            "a",
            Value::ArrayValue(ArrayValue {
                values: vec![AnyValue {
                    value: Some(Value::BoolValue(true)),
                }],
            }),
        ),
    ];
    s.events = vec![Event {
        time_unix_nano: 5,
        name: "e".into(),
        ..Default::default()
    }];
    let req = request(vec![resource_spans(
        vec![kv("service.name", string("svc"))],
        vec![scope("lib", "2", vec![s])],
    )]);
    let json = serde_json::to_string(&req).unwrap();
    let from_json = decode_json(&json).unwrap();
    let from_proto = decode_proto(&req);
    assert_eq!(from_json.batch, from_proto.batch, "{json}");
}

#[test]
fn json_int_values_may_be_numbers_or_strings() {
    let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{
        "traceId":"01010101010101010101010101010101","spanId":"0101010101010101",
        "startTimeUnixNano":1,"endTimeUnixNano":"2","kind":3,
        "attributes":[{"key":"n","value":{"intValue":12}},{"key":"s","value":{"intValue":"13"}},
                      {"key":"b","value":{"bytesValue":"AQID"}},{"key":"d","value":{"doubleValue":1}}]
    }]}]}]}"#;
    let decoded = decode_json(body).unwrap();
    assert_eq!(
        map(&decoded.batch, "attributes", 0),
        pairs(&[("n", "12"), ("s", "13"), ("b", "AQID"), ("d", "1")])
    );
    assert_eq!(strings(&decoded.batch, "kind"), vec![Some("client".into())]);
}

#[test]
fn json_unknown_fields_are_ignored() {
    let body = r#"{"resourceSpans":[{"futureField":{"x":[1,2]},
        "resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc","futureValue":1}}],"other":true},
        "scopeSpans":[{"scope":{"name":"lib","unknown":"x"},"spans":[{
            "traceId":"01010101010101010101010101010101","spanId":"0101010101010101",
            "startTimeUnixNano":"1","endTimeUnixNano":"2","flags":1,"newThing":[{"a":null}],
            "status":{"code":2,"message":"m","extra":0},
            "events":[{"timeUnixNano":"1","name":"e","unknown":{}}],
            "attributes":[{"key":"k","value":{"stringValue":"v"},"extra":1}]
        }]}]}],"topLevelUnknown":42}"#;
    let decoded = decode_json(body).unwrap();
    assert_eq!(decoded.accepted, 1);
    assert_eq!(
        strings(&decoded.batch, "service_name"),
        vec![Some("svc".into())]
    );
    assert_eq!(
        strings(&decoded.batch, "status_code"),
        vec![Some("error".into())]
    );
    assert_eq!(map(&decoded.batch, "attributes", 0), pairs(&[("k", "v")]));
}

#[test]
fn json_empty_object_and_empty_lists_are_empty_requests() {
    for body in [
        "{}",
        r#"{"resourceSpans":[]}"#,
        r#"{"resourceSpans":[{}]}"#,
        " {} \n",
    ] {
        let decoded = decode_json(body).unwrap();
        assert_eq!((decoded.accepted, decoded.rejected), (0, 0), "{body}");
        assert_eq!(decoded.batch.num_rows(), 0);
    }
    // A span with every field omitted fails validation, not parsing.
    let decoded = decode_json(r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{}]}]}]}"#).unwrap();
    assert_eq!((decoded.accepted, decoded.rejected), (0, 1));
}

#[test]
fn json_empty_body_is_malformed() {
    for body in ["", "  \n"] {
        assert_eq!(
            malformed_message(decode_json(body)),
            "invalid OTLP JSON: the body is empty"
        );
    }
}

#[test]
fn broken_json_is_malformed_with_its_position() {
    let cases = [
        (
            r#"{"resourceSpans": [}"#,
            "invalid OTLP JSON at line 1 column 20: ",
        ),
        (
            r#"{"resourceSpans":"#,
            "invalid OTLP JSON at line 1 column 17: ",
        ),
        (
            "[]",
            "invalid OTLP JSON: expected an ExportTraceServiceRequest object",
        ),
        (
            "null",
            "invalid OTLP JSON: expected an ExportTraceServiceRequest object",
        ),
        (
            r#"{"resourceSpans":[]} trailing"#,
            "invalid OTLP JSON at line 1 column 22: ",
        ),
        (
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"xyz"}]}]}]}"#,
            "invalid OTLP JSON at line 1 column ",
        ),
        (
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"SPAN_KIND_SERVER"}]}]}]}"#,
            "invalid OTLP JSON at line 1 column ",
        ),
        (
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":"-1"}]}]}]}"#,
            "invalid OTLP JSON at line 1 column ",
        ),
    ];
    for (body, prefix) in cases {
        let message = malformed_message(decode_json(body));
        assert!(message.starts_with(prefix), "{body}: {message}");
        assert!(
            !message.ends_with(" column 0"),
            "position not repeated: {message}"
        );
    }
    let message = malformed_message(decode_otlp_traces(
        b"{\"resourceSpans\":[\xff]}",
        OtlpEncoding::Json,
        "p",
    ));
    assert!(
        message.starts_with("invalid OTLP JSON at line 1 column "),
        "{message}"
    );
}

#[test]
fn json_hex_ids_of_the_wrong_length_reject_the_span() {
    let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[
        {"traceId":"0101","spanId":"0101010101010101","startTimeUnixNano":"1","endTimeUnixNano":"2"},
        {"traceId":"01010101010101010101010101010101","spanId":"0101010101010101","startTimeUnixNano":"1","endTimeUnixNano":"2"}
    ]}]}]}"#;
    let decoded = decode_json(body).unwrap();
    assert_eq!((decoded.accepted, decoded.rejected), (1, 1));
    assert_eq!(
        decoded.rejection_message.as_deref(),
        Some("1 span rejected: span 0 of scope 0 of resource 0: trace id must be 16 bytes, got 2")
    );
}

/// Documents a limit of opentelemetry-proto's serde support: OTLP/JSON allows
/// `"NaN"` / `"Infinity"` strings for doubles (ProtoJSON), but its `AnyValue`
/// deserializer accepts JSON numbers only, so such a request is refused whole.
#[test]
fn json_special_double_strings_are_refused_by_the_upstream_deserializer() {
    let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{
        "traceId":"01010101010101010101010101010101","spanId":"0101010101010101",
        "startTimeUnixNano":"1","endTimeUnixNano":"2",
        "attributes":[{"key":"d","value":{"doubleValue":"NaN"}}]}]}]}]}"#;
    let message = malformed_message(decode_json(body));
    assert!(
        message.starts_with("invalid OTLP JSON at line "),
        "{message}"
    );
}

// ---------------------------------------------------------------- response

#[test]
fn protobuf_response_round_trips() {
    let full = encode_traces_response(OtlpEncoding::Protobuf, 0, None);
    assert!(full.is_empty());
    let decoded = ExportTraceServiceResponse::decode(&full[..]).unwrap();
    assert_eq!(decoded.partial_success, None);

    let partial = encode_traces_response(OtlpEncoding::Protobuf, 3, Some("3 spans rejected: …"));
    let decoded = ExportTraceServiceResponse::decode(&partial[..]).unwrap();
    let partial_success = decoded.partial_success.unwrap();
    assert_eq!(partial_success.rejected_spans, 3);
    assert_eq!(partial_success.error_message, "3 spans rejected: …");
}

#[test]
fn json_response_round_trips() {
    let full = encode_traces_response(OtlpEncoding::Json, 0, Some("ignored"));
    assert_eq!(full, b"{}");
    let decoded: ExportTraceServiceResponse = serde_json::from_slice(&full).unwrap();
    assert_eq!(decoded.partial_success, None);

    let partial = encode_traces_response(OtlpEncoding::Json, 2, Some("quote \" ok"));
    assert_eq!(
        std::str::from_utf8(&partial).unwrap(),
        r#"{"partialSuccess":{"rejectedSpans":2,"errorMessage":"quote \" ok"}}"#
    );
    let decoded: ExportTraceServiceResponse = serde_json::from_slice(&partial).unwrap();
    let partial_success = decoded.partial_success.unwrap();
    assert_eq!(partial_success.rejected_spans, 2);
    assert_eq!(partial_success.error_message, "quote \" ok");

    let no_message = encode_traces_response(OtlpEncoding::Json, 1, None);
    let decoded: ExportTraceServiceResponse = serde_json::from_slice(&no_message).unwrap();
    assert_eq!(decoded.partial_success.unwrap().rejected_spans, 1);
}

#[test]
fn decode_then_respond_carries_the_rejections() {
    let req = request(vec![resource_spans(
        vec![],
        vec![scope("", "", vec![span(1, 1, "ok"), span(1, 0, "bad")])],
    )]);
    let decoded = decode_proto(&req);
    let body = encode_traces_response(
        OtlpEncoding::Protobuf,
        decoded.rejected,
        decoded.rejection_message.as_deref(),
    );
    let response = ExportTraceServiceResponse::decode(&body[..]).unwrap();
    let partial = response.partial_success.unwrap();
    assert_eq!(partial.rejected_spans, 1);
    assert_eq!(
        partial.error_message,
        "1 span rejected: span 1 of scope 0 of resource 0: span id must not be all zeros"
    );
}
