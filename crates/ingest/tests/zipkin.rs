//! `decode_zipkin_spans` through the public API: Zipkin v2 JSON and proto3.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, MapArray, RecordBatch, StructArray};
use arrow::datatypes::{Int64Type, TimestampNanosecondType};
use lighttrace_ingest::{DecodedSpans, IngestError, ZipkinEncoding, decode_zipkin_spans};
use lighttrace_model::spans_schema;
use prost::Message;

fn json(body: &str) -> DecodedSpans {
    decode_zipkin_spans(body.as_bytes(), ZipkinEncoding::Json, "p1")
        .unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn malformed(body: &[u8], encoding: ZipkinEncoding) -> String {
    match decode_zipkin_spans(body, encoding, "p1") {
        Err(IngestError::Malformed(message)) => message,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

fn text(batch: &RecordBatch, column: &str, row: usize) -> Option<String> {
    let array = batch.column_by_name(column).unwrap().as_string::<i32>();
    (!array.is_null(row)).then(|| array.value(row).to_string())
}

fn int(batch: &RecordBatch, column: &str, row: usize) -> i64 {
    match batch.column_by_name(column).unwrap().data_type() {
        arrow::datatypes::DataType::Int64 => batch
            .column_by_name(column)
            .unwrap()
            .as_primitive::<Int64Type>()
            .value(row),
        _ => batch
            .column_by_name(column)
            .unwrap()
            .as_primitive::<TimestampNanosecondType>()
            .value(row),
    }
}

fn map_entries(map: &MapArray, row: usize) -> BTreeMap<String, String> {
    let entries = map.value(row);
    let keys = entries.column(0).as_string::<i32>();
    let values = entries.column(1).as_string::<i32>();
    (0..entries.len())
        .map(|i| (keys.value(i).to_string(), values.value(i).to_string()))
        .collect()
}

fn map(batch: &RecordBatch, column: &str, row: usize) -> BTreeMap<String, String> {
    map_entries(batch.column_by_name(column).unwrap().as_map(), row)
}

/// `(time, name, attributes, attribute types)` of each event of `row`.
type Event = (
    i64,
    String,
    BTreeMap<String, String>,
    BTreeMap<String, String>,
);

fn events(batch: &RecordBatch, row: usize) -> Vec<Event> {
    let list = batch.column_by_name("events").unwrap().as_list::<i32>();
    let events = list.value(row);
    let events: &StructArray = events.as_struct();
    (0..events.len())
        .map(|i| {
            (
                events
                    .column(0)
                    .as_primitive::<TimestampNanosecondType>()
                    .value(i),
                events.column(1).as_string::<i32>().value(i).to_string(),
                map_entries(events.column(2).as_map(), i),
                map_entries(events.column(3).as_map(), i),
            )
        })
        .collect()
}

fn strings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What the OpenTelemetry Python SDK's Zipkin JSON exporter (1.45) sends for a
/// server span and an internal child with an error status and an event.
const OTEL_EXPORT: &str = r#"[
 {"traceId": "5b8efff798038103d269b633813fc60c", "id": "eee19b7ec3c1b174",
  "name": "POST /api/charge", "timestamp": 1714564800000000, "duration": 1500,
  "localEndpoint": {"serviceName": "payment"}, "kind": "SERVER",
  "tags": {"http.route": "/api/charge", "payment.amount": "42.5",
           "service.name": "payment", "otel.library.name": "lighttrace.e2e",
           "otel.library.version": "0.1.0", "otel.scope.name": "lighttrace.e2e",
           "otel.scope.version": "0.1.0"},
  "debug": true, "parentId": "eee19b7ec3c1b173"},
 {"traceId": "5b8efff798038103d269b633813fc60c", "id": "eee19b7ec3c1b175",
  "name": "charge card", "timestamp": 1714564800000100, "duration": 900,
  "localEndpoint": {"serviceName": "payment"}, "kind": null,
  "tags": {"payment.attempt": "2", "otel.status_code": "ERROR", "error": "card declined"},
  "annotations": [{"timestamp": 1714564800000500,
                   "value": "{\"card.declined\": {\"decline.code\": 51, \"retry\": false, \"score\": 0.5, \"issuer\": \"visa\", \"tries\": [1, 2]}}"}],
  "debug": true, "parentId": "eee19b7ec3c1b174"}
]"#;

#[test]
fn otel_exporter_spans_map_to_the_spans_table() {
    let decoded = json(OTEL_EXPORT);
    assert_eq!((decoded.accepted, decoded.rejected), (2, 0));
    let batch = &decoded.batch;
    assert_eq!(batch.schema(), spans_schema());

    assert_eq!(text(batch, "project", 0).as_deref(), Some("p1"));
    assert_eq!(text(batch, "source", 0).as_deref(), Some("zipkin"));
    assert_eq!(
        text(batch, "trace_id", 0).as_deref(),
        Some("5b8efff798038103d269b633813fc60c")
    );
    assert_eq!(
        text(batch, "span_id", 0).as_deref(),
        Some("eee19b7ec3c1b174")
    );
    assert_eq!(
        text(batch, "parent_span_id", 0).as_deref(),
        Some("eee19b7ec3c1b173")
    );
    assert_eq!(text(batch, "service_name", 0).as_deref(), Some("payment"));
    assert_eq!(text(batch, "name", 0).as_deref(), Some("POST /api/charge"));
    assert_eq!(text(batch, "kind", 0).as_deref(), Some("server"));
    assert_eq!(text(batch, "kind", 1).as_deref(), Some("internal"));
    assert_eq!(int(batch, "start_time", 0), 1_714_564_800_000_000_000);
    assert_eq!(int(batch, "end_time", 0), 1_714_564_800_001_500_000);
    assert_eq!(int(batch, "duration_ns", 0), 1_500_000);
    assert_eq!(text(batch, "status_code", 0).as_deref(), Some("unset"));
    assert_eq!(text(batch, "status_message", 0), None);
    assert_eq!(text(batch, "status_code", 1).as_deref(), Some("error"));
    assert_eq!(
        text(batch, "status_message", 1).as_deref(),
        Some("card declined")
    );
    assert_eq!(
        text(batch, "scope_name", 0).as_deref(),
        Some("lighttrace.e2e")
    );
    assert_eq!(text(batch, "scope_version", 0).as_deref(), Some("0.1.0"));
    assert_eq!(text(batch, "scope_name", 1), None);
    assert_eq!(text(batch, "trace_state", 0), None);

    let attributes = map(batch, "attributes", 0);
    assert_eq!(attributes["http.route"], "/api/charge");
    assert_eq!(attributes["payment.amount"], "42.5");
    assert_eq!(attributes["zipkin.debug"], "true");
    assert_eq!(
        map(batch, "attribute_types", 0),
        strings(&[("zipkin.debug", "bool")])
    );
    assert_eq!(
        map(batch, "resource_attributes", 0),
        strings(&[("service.name", "payment")])
    );
    let child = map(batch, "attributes", 1);
    assert_eq!(child["error"], "card declined");
    assert_eq!(child["otel.status_code"], "ERROR");

    assert!(events(batch, 0).is_empty());
    assert_eq!(
        events(batch, 1),
        vec![(
            1_714_564_800_000_500_000,
            "card.declined".to_string(),
            strings(&[
                ("decline.code", "51"),
                ("issuer", "visa"),
                ("retry", "false"),
                ("score", "0.5"),
                ("tries", "[1,2]"),
            ]),
            strings(&[
                ("decline.code", "int"),
                ("retry", "bool"),
                ("score", "double"),
            ]),
        )]
    );
}

#[test]
fn sixty_four_bit_trace_ids_are_left_padded() {
    let decoded = json(
        r#"[{"traceId":"463ac35c9f6413ad","id":"a2fb4a1d1a96d312","timestamp":1,
             "parentId":"0000000000000000"},
            {"traceId":"463AC35C9F6413AD48485A3953BB6124","id":"A2FB4A1D1A96D312","timestamp":1},
            {"traceId":"1","id":"2","timestamp":1}]"#,
    );
    assert_eq!(decoded.accepted, 3);
    let batch = &decoded.batch;
    assert_eq!(
        text(batch, "trace_id", 0).as_deref(),
        Some("0000000000000000463ac35c9f6413ad")
    );
    assert_eq!(
        text(batch, "parent_span_id", 0),
        None,
        "all-zero parent: root"
    );
    assert_eq!(
        text(batch, "trace_id", 1).as_deref(),
        Some("463ac35c9f6413ad48485a3953bb6124")
    );
    assert_eq!(
        text(batch, "span_id", 1).as_deref(),
        Some("a2fb4a1d1a96d312")
    );
    assert_eq!(
        text(batch, "trace_id", 2).as_deref(),
        Some("00000000000000000000000000000001")
    );
    assert_eq!(
        text(batch, "span_id", 2).as_deref(),
        Some("0000000000000002")
    );
}

#[test]
fn missing_optional_fields_have_defaults() {
    let decoded = json(r#"[{"traceId":"1","id":"2","timestamp":3}]"#);
    assert_eq!(decoded.accepted, 1);
    let batch = &decoded.batch;
    assert_eq!(
        text(batch, "service_name", 0).as_deref(),
        Some("unknown_service")
    );
    assert_eq!(text(batch, "name", 0).as_deref(), Some(""));
    assert_eq!(text(batch, "kind", 0).as_deref(), Some("internal"));
    assert_eq!(text(batch, "status_code", 0).as_deref(), Some("unset"));
    assert_eq!(int(batch, "duration_ns", 0), 0, "no duration: 0");
    assert_eq!(text(batch, "parent_span_id", 0), None);
    assert!(map(batch, "attributes", 0).is_empty());
    assert!(map(batch, "resource_attributes", 0).is_empty());

    let nulls = json(
        r#"[{"traceId":"1","id":"2","timestamp":3,"parentId":null,"name":null,"kind":null,
             "duration":null,"localEndpoint":null,"remoteEndpoint":null,"annotations":null,
             "tags":null,"debug":null,"shared":null,"unknownField":{"a":[1,2]}}]"#,
    );
    assert_eq!(nulls.batch, decoded.batch, "null is absent");
}

#[test]
fn invalid_spans_are_rejected_and_counted_with_reasons() {
    let cases = [
        (r#"{"id":"2","timestamp":3}"#, "traceId is missing"),
        (r#"{"traceId":"1","timestamp":3}"#, "id is missing"),
        (
            r#"{"traceId":"00000000000000000000000000000000","id":"2","timestamp":3}"#,
            "traceId must not be all zeros",
        ),
        (
            r#"{"traceId":"1","id":"0000000000000000","timestamp":3}"#,
            "id must not be all zeros",
        ),
        (
            r#"{"traceId":"xyz","id":"2","timestamp":3}"#,
            "traceId must be 1 to 32 hex digits, got \"xyz\"",
        ),
        (
            r#"{"traceId":"1","id":"12345678901234567","timestamp":3}"#,
            "id must be 1 to 16 hex digits",
        ),
        (
            r#"{"traceId":"1","id":"2","parentId":"zz","timestamp":3}"#,
            "parentId must be 1 to 16 hex digits",
        ),
        (r#"{"traceId":"1","id":"2"}"#, "timestamp is missing or 0"),
        (
            r#"{"traceId":"1","id":"2","timestamp":0}"#,
            "timestamp is missing or 0",
        ),
        (
            r#"{"traceId":"1","id":"2","timestamp":-5}"#,
            "timestamp is negative",
        ),
        (
            r#"{"traceId":"1","id":"2","timestamp":1.5}"#,
            "timestamp is not a whole number of microseconds",
        ),
        (
            r#"{"traceId":"1","id":"2","timestamp":3,"duration":-1}"#,
            "duration is negative",
        ),
        (
            r#"{"traceId":"1","id":"2","timestamp":3,"annotations":[{"value":"x"}]}"#,
            "annotation 0 has no timestamp",
        ),
        (
            r#"{"traceId":"1","id":"2","timestamp":3,"annotations":[{"timestamp":4}]}"#,
            "annotation 0 has no value",
        ),
    ];
    for (span, why) in cases {
        let body = format!(r#"[{{"traceId":"1","id":"1","timestamp":1}}, {span}]"#);
        let decoded = json(&body);
        assert_eq!((decoded.accepted, decoded.rejected), (1, 1), "{span}");
        let message = decoded.rejection_message.unwrap();
        assert!(
            message.starts_with(&format!("1 span rejected: span 1: {why}")),
            "{span}: {message}"
        );
        assert_eq!(decoded.batch.num_rows(), 1);
    }
}

#[test]
fn huge_numbers_reject_their_span_or_the_request() {
    for span in [
        r#"{"traceId":"1","id":"2","timestamp":18446744073709551615}"#,
        r#"{"traceId":"1","id":"2","timestamp":99999999999999999999999}"#,
        r#"{"traceId":"1","id":"2","timestamp":1e30}"#,
        r#"{"traceId":"1","id":"2","timestamp":9223372036854776}"#,
        r#"{"traceId":"1","id":"2","timestamp":9223372036854775,"duration":9223372036854775}"#,
        r#"{"traceId":"1","id":"2","timestamp":3,"annotations":[{"timestamp":1e25,"value":"x"}]}"#,
    ] {
        let decoded = json(&format!("[{span}]"));
        assert_eq!((decoded.accepted, decoded.rejected), (0, 1), "{span}");
        let message = decoded.rejection_message.unwrap();
        assert!(
            message.contains("2262") || message.contains("annotation 0"),
            "{message}"
        );
    }
    // The last microsecond that fits, exactly.
    let decoded = json(r#"[{"traceId":"1","id":"2","timestamp":9223372036854775}]"#);
    assert_eq!(
        int(&decoded.batch, "start_time", 0),
        9_223_372_036_854_775_000
    );
    // A number beyond f64 is not JSON serde can read: the request is refused.
    let message = malformed(
        br#"[{"traceId":"1","id":"2","timestamp":1e400}]"#,
        ZipkinEncoding::Json,
    );
    assert!(message.contains("number out of range"), "{message}");
}

#[test]
fn malformed_json_is_refused_with_a_clear_message() {
    for (body, expected) in [
        ("", "invalid Zipkin JSON: the body is empty"),
        ("  ", "invalid Zipkin JSON: the body is empty"),
        (
            r#"{"traceId":"1"}"#,
            "invalid Zipkin JSON: expected an array of Zipkin v2 spans",
        ),
        (
            "[{",
            "invalid Zipkin JSON at line 1 column 2: EOF while parsing",
        ),
        (
            "[1]",
            "invalid type: integer `1`, expected a Zipkin v2 span object",
        ),
        (
            r#"[{"traceId":123,"id":"2","timestamp":3}]"#,
            "invalid type: integer `123`, expected a string",
        ),
        (
            r#"[{"traceId":"1","id":"2","timestamp":"3"}]"#,
            "expected a number of microseconds",
        ),
        (
            r#"[{"traceId":"1","id":"2","timestamp":3,"tags":{"a":{"b":1}}}]"#,
            "expected a tag value (a string)",
        ),
        (
            r#"[{"traceId":"1","id":"2","timestamp":3,"localEndpoint":{"port":"80"}}]"#,
            "invalid type: string \"80\", expected i64",
        ),
        ("[] []", "trailing characters"),
        ("[{\"traceId\":\"\u{0}\"}]", "control character"),
    ] {
        let message = malformed(body.as_bytes(), ZipkinEncoding::Json);
        assert!(message.contains(expected), "{body:?}: {message}");
        assert!(message.starts_with("invalid Zipkin JSON"), "{message}");
    }
    let message = malformed(b"[\"\xff\"]", ZipkinEncoding::Json);
    assert!(message.contains("invalid unicode"), "{message}");
}

#[test]
fn an_empty_list_is_no_spans() {
    let decoded = json(" [ ] ");
    assert_eq!((decoded.accepted, decoded.rejected), (0, 0));
    assert_eq!(decoded.batch.num_rows(), 0);
    assert_eq!(decoded.rejection_message, None);
}

#[test]
fn endpoints_and_flags_become_attributes_unless_a_tag_says_otherwise() {
    let decoded = json(
        r#"[{"traceId":"1","id":"2","timestamp":3,"kind":"CLIENT","shared":false,
             "localEndpoint":{"serviceName":"frontend","ipv4":"10.0.0.1","ipv6":"2001:db8::1","port":8080},
             "remoteEndpoint":{"serviceName":"backend","ipv6":"2001:db8::2","port":443}},
            {"traceId":"1","id":"3","timestamp":3,"kind":"SERVER","shared":true,
             "localEndpoint":{"serviceName":"","port":0},
             "remoteEndpoint":{"ipv4":"10.0.0.9","port":70000},
             "tags":{"peer.service":"from-tag","network.peer.address":"tag-wins"}}]"#,
    );
    assert_eq!(decoded.accepted, 2);
    let batch = &decoded.batch;
    assert_eq!(
        map(batch, "attributes", 0),
        strings(&[
            ("network.local.address", "10.0.0.1"),
            ("zipkin.local_endpoint.ipv6", "2001:db8::1"),
            ("network.local.port", "8080"),
            ("peer.service", "backend"),
            ("network.peer.address", "2001:db8::2"),
            ("network.peer.port", "443"),
            ("zipkin.shared", "false"),
        ])
    );
    assert_eq!(
        map(batch, "attribute_types", 0),
        strings(&[
            ("network.local.port", "int"),
            ("network.peer.port", "int"),
            ("zipkin.shared", "bool"),
        ])
    );
    assert_eq!(text(batch, "kind", 0).as_deref(), Some("client"));
    assert_eq!(
        map(batch, "attributes", 1),
        strings(&[
            ("network.peer.address", "tag-wins"),
            ("peer.service", "from-tag"),
            ("zipkin.shared", "true"),
        ]),
        "empty service name, port 0 and port 70000 are left out"
    );
    assert_eq!(
        text(batch, "service_name", 1).as_deref(),
        Some("unknown_service")
    );
}

#[test]
fn kinds_map_to_span_kinds() {
    let decoded = json(
        r#"[{"traceId":"1","id":"1","timestamp":1,"kind":"PRODUCER"},
            {"traceId":"1","id":"2","timestamp":1,"kind":"consumer"},
            {"traceId":"1","id":"3","timestamp":1,"kind":"WEIRD"}]"#,
    );
    let kinds: Vec<_> = (0..3)
        .map(|row| text(&decoded.batch, "kind", row).unwrap())
        .collect();
    assert_eq!(kinds, ["producer", "consumer", "unspecified"]);
}

#[test]
fn tags_keep_the_last_duplicate_and_render_scalars_as_text() {
    let decoded = json(
        r#"[{"traceId":"1","id":"2","timestamp":3,
             "tags":{"a":"1","b":true,"c":42,"d":0.5,"e":null,"a":"2","\u00e9":"caf\u00e9"}}]"#,
    );
    assert_eq!(
        map(&decoded.batch, "attributes", 0),
        strings(&[
            ("a", "2"),
            ("b", "true"),
            ("c", "42"),
            ("d", "0.5"),
            ("é", "café")
        ])
    );
    assert!(map(&decoded.batch, "attribute_types", 0).is_empty());
}

#[test]
fn error_tag_without_otel_status_code_is_an_error() {
    let decoded = json(
        r#"[{"traceId":"1","id":"2","timestamp":3,"tags":{"error":"timeout"}},
            {"traceId":"1","id":"3","timestamp":3,"tags":{"error":""}},
            {"traceId":"1","id":"4","timestamp":3,"tags":{"otel.status_code":"OK"}}]"#,
    );
    let batch = &decoded.batch;
    assert_eq!(text(batch, "status_code", 0).as_deref(), Some("error"));
    assert_eq!(text(batch, "status_message", 0).as_deref(), Some("timeout"));
    assert_eq!(text(batch, "status_code", 1).as_deref(), Some("error"));
    assert_eq!(text(batch, "status_message", 1), None);
    assert_eq!(text(batch, "status_code", 2).as_deref(), Some("ok"));
}

#[test]
fn annotations_that_are_not_otel_events_keep_their_value_as_the_name() {
    let decoded = json(
        r#"[{"traceId":"1","id":"2","timestamp":3,"annotations":[
              {"timestamp":4,"value":"cs"},
              {"timestamp":5,"value":"{\"a\": {}, \"b\": {}}"},
              {"timestamp":6,"value":"{\"a\": 1}"},
              {"timestamp":7,"value":"{not json}"},
              {"timestamp":8,"value":" {\"retry\": {}} "}]}]"#,
    );
    let names: Vec<(i64, String, usize)> = events(&decoded.batch, 0)
        .into_iter()
        .map(|(time, name, attributes, _)| (time, name, attributes.len()))
        .collect();
    assert_eq!(
        names,
        vec![
            (4_000, "cs".to_string(), 0),
            (5_000, r#"{"a": {}, "b": {}}"#.to_string(), 0),
            (6_000, r#"{"a": 1}"#.to_string(), 0),
            (7_000, "{not json}".to_string(), 0),
            (8_000, "retry".to_string(), 0),
        ]
    );
}

// ---------------------------------------------------------------- protobuf

/// zipkin.proto3, as the OpenTelemetry `zipkin-proto-http` exporter encodes it.
mod zipkin_proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListOfSpans {
        #[prost(message, repeated, tag = "1")]
        pub spans: Vec<Span>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Span {
        #[prost(bytes = "vec", tag = "1")]
        pub trace_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub parent_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "3")]
        pub id: Vec<u8>,
        #[prost(int32, tag = "4")]
        pub kind: i32,
        #[prost(string, tag = "5")]
        pub name: String,
        #[prost(fixed64, tag = "6")]
        pub timestamp: u64,
        #[prost(uint64, tag = "7")]
        pub duration: u64,
        #[prost(message, optional, tag = "8")]
        pub local_endpoint: Option<Endpoint>,
        #[prost(message, optional, tag = "9")]
        pub remote_endpoint: Option<Endpoint>,
        #[prost(message, repeated, tag = "10")]
        pub annotations: Vec<Annotation>,
        #[prost(btree_map = "string, string", tag = "11")]
        pub tags: std::collections::BTreeMap<String, String>,
        #[prost(bool, tag = "12")]
        pub debug: bool,
        #[prost(bool, tag = "13")]
        pub shared: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Endpoint {
        #[prost(string, tag = "1")]
        pub service_name: String,
        #[prost(bytes = "vec", tag = "2")]
        pub ipv4: Vec<u8>,
        #[prost(bytes = "vec", tag = "3")]
        pub ipv6: Vec<u8>,
        #[prost(int32, tag = "4")]
        pub port: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Annotation {
        #[prost(fixed64, tag = "1")]
        pub timestamp: u64,
        #[prost(string, tag = "2")]
        pub value: String,
    }
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn proto(spans: Vec<zipkin_proto::Span>) -> DecodedSpans {
    let body = zipkin_proto::ListOfSpans { spans }.encode_to_vec();
    decode_zipkin_spans(&body, ZipkinEncoding::Protobuf, "p1").unwrap()
}

#[test]
fn protobuf_decodes_to_the_same_rows_as_json() {
    let span = zipkin_proto::Span {
        trace_id: unhex("5b8efff798038103d269b633813fc60c"),
        parent_id: unhex("eee19b7ec3c1b173"),
        id: unhex("eee19b7ec3c1b174"),
        kind: 1,
        name: "GET /cart".into(),
        timestamp: 1_714_564_800_000_000,
        duration: 1500,
        local_endpoint: Some(zipkin_proto::Endpoint {
            service_name: "frontend".into(),
            ipv4: vec![10, 0, 0, 1],
            ipv6: vec![0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            port: 8080,
        }),
        remote_endpoint: Some(zipkin_proto::Endpoint {
            service_name: "cart".into(),
            ipv4: vec![10, 0, 0, 2],
            ipv6: vec![],
            port: 0,
        }),
        annotations: vec![zipkin_proto::Annotation {
            timestamp: 1_714_564_800_000_700,
            value: r#"{"retry": {"n": 2}}"#.into(),
        }],
        tags: [("http.method", "GET"), ("error", "")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        debug: true,
        shared: false,
    };
    let from_proto = proto(vec![span]);
    let from_json = json(
        r#"[{"traceId":"5b8efff798038103d269b633813fc60c","parentId":"eee19b7ec3c1b173",
             "id":"eee19b7ec3c1b174","kind":"CLIENT","name":"GET /cart",
             "timestamp":1714564800000000,"duration":1500,
             "localEndpoint":{"serviceName":"frontend","ipv4":"10.0.0.1","ipv6":"2001:db8::1","port":8080},
             "remoteEndpoint":{"serviceName":"cart","ipv4":"10.0.0.2"},
             "annotations":[{"timestamp":1714564800000700,"value":"{\"retry\": {\"n\": 2}}"}],
             "tags":{"http.method":"GET","error":""},"debug":true}]"#,
    );
    assert_eq!((from_proto.accepted, from_proto.rejected), (1, 0));
    assert_eq!(from_proto.batch, from_json.batch);
}

#[test]
fn protobuf_64_bit_ids_zero_values_and_bad_spans() {
    let good = zipkin_proto::Span {
        trace_id: vec![0xab; 8],
        id: vec![1; 8],
        timestamp: 5,
        ..Default::default()
    };
    let decoded = proto(vec![
        good.clone(),
        zipkin_proto::Span {
            timestamp: 0,
            ..good.clone()
        },
        zipkin_proto::Span {
            id: vec![1; 4],
            ..good.clone()
        },
        zipkin_proto::Span {
            trace_id: vec![],
            ..good.clone()
        },
    ]);
    assert_eq!((decoded.accepted, decoded.rejected), (1, 3));
    let message = decoded.rejection_message.unwrap();
    assert!(
        message.contains("span 1: timestamp is missing or 0"),
        "{message}"
    );
    assert!(message.contains("span 2: id has 4 bytes"), "{message}");
    // proto3 does not write an empty field: it is missing.
    assert!(message.contains("span 3: traceId is missing"), "{message}");
    let batch = &decoded.batch;
    assert_eq!(
        text(batch, "trace_id", 0).as_deref(),
        Some("0000000000000000abababababababab")
    );
    assert_eq!(text(batch, "kind", 0).as_deref(), Some("internal"));
    assert_eq!(text(batch, "parent_span_id", 0), None);
}

#[test]
fn malformed_protobuf_is_refused() {
    let body = zipkin_proto::ListOfSpans {
        spans: vec![zipkin_proto::Span {
            trace_id: vec![1; 16],
            id: vec![1; 8],
            timestamp: 5,
            name: "x".into(),
            ..Default::default()
        }],
    }
    .encode_to_vec();
    // Cut short: the span's length runs past the end.
    let message = malformed(&body[..body.len() - 1], ZipkinEncoding::Protobuf);
    assert!(message.starts_with("invalid Zipkin protobuf"), "{message}");
    // The name is not UTF-8.
    let mut bad = body.clone();
    let x = bad.iter().rposition(|b| *b == b'x').unwrap();
    bad[x] = 0xff;
    let message = malformed(&bad, ZipkinEncoding::Protobuf);
    assert!(message.contains("Span"), "{message}");
    // JSON sent as protobuf.
    assert!(decode_zipkin_spans(OTEL_EXPORT.as_bytes(), ZipkinEncoding::Protobuf, "p").is_err());
    // Empty: proto3's empty list.
    let empty = decode_zipkin_spans(b"", ZipkinEncoding::Protobuf, "p").unwrap();
    assert_eq!((empty.accepted, empty.rejected), (0, 0));
}

/// The fuzzers' seeds are valid requests (so the fuzzers start from spans that
/// are accepted, not from errors).
#[test]
fn fuzz_seeds_decode() {
    let decoded = decode_zipkin_spans(
        include_bytes!("../../../fuzz/seeds/zipkin_protobuf/two_spans.pb"),
        ZipkinEncoding::Protobuf,
        "p",
    )
    .unwrap();
    assert_eq!((decoded.accepted, decoded.rejected), (2, 0));
    assert_eq!(
        map(&decoded.batch, "attributes", 0),
        strings(&[
            ("http.method", "GET"),
            ("network.local.address", "10.0.0.1"),
            ("network.local.port", "8080"),
            ("peer.service", "cart"),
            ("network.peer.address", "2001:db8::1"),
            ("zipkin.debug", "true"),
            ("zipkin.shared", "false"),
        ])
    );
    for seed in [
        &include_bytes!("../../../fuzz/seeds/zipkin_json/otel_exporter.json")[..],
        &include_bytes!("../../../fuzz/seeds/zipkin_json/minimal.json")[..],
    ] {
        let decoded = decode_zipkin_spans(seed, ZipkinEncoding::Json, "p").unwrap();
        assert!(decoded.accepted > 0 && decoded.rejected == 0);
    }
}

/// A body recorded from the OpenTelemetry Python SDK 1.45.2 with its Zipkin
/// protobuf exporter (`opentelemetry-exporter-zipkin-proto-http` 1.45.1, which
/// needs protobuf 3.x and so cannot share the end-to-end tests' venv): a server
/// span `root` and its internal child `child` with an error status and an
/// event `retry {n: 2}`, local endpoint 10.1.2.3:9000. The server answered 202.
#[test]
fn a_body_from_the_otel_python_zipkin_protobuf_exporter_decodes() {
    let decoded = decode_zipkin_spans(
        include_bytes!("fixtures/zipkin_otel_python_proto_http_1.45.1.pb"),
        ZipkinEncoding::Protobuf,
        "p",
    )
    .unwrap();
    assert_eq!((decoded.accepted, decoded.rejected), (2, 0));
    let batch = &decoded.batch;
    let (child, root) = (0, 1);
    for row in [child, root] {
        assert_eq!(
            text(batch, "trace_id", row).as_deref(),
            Some("7c4becb9718450b486234418f31113ef")
        );
        assert_eq!(
            text(batch, "service_name", row).as_deref(),
            Some("proto-svc")
        );
        assert_eq!(text(batch, "scope_name", row).as_deref(), Some("proto.e2e"));
        let attributes = map(batch, "attributes", row);
        assert_eq!(attributes["network.local.address"], "10.1.2.3");
        assert_eq!(attributes["network.local.port"], "9000");
    }
    assert_eq!(text(batch, "name", root).as_deref(), Some("root"));
    assert_eq!(text(batch, "kind", root).as_deref(), Some("server"));
    assert_eq!(text(batch, "parent_span_id", root), None);
    assert_eq!(text(batch, "name", child).as_deref(), Some("child"));
    assert_eq!(text(batch, "kind", child).as_deref(), Some("internal"));
    assert_eq!(
        text(batch, "parent_span_id", child),
        text(batch, "span_id", root)
    );
    assert_eq!(text(batch, "status_code", child).as_deref(), Some("error"));
    assert_eq!(
        text(batch, "status_message", child).as_deref(),
        Some("boom")
    );
    let events = events(batch, child);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1, "retry");
    assert_eq!(events[0].2, strings(&[("n", "2")]));
    assert_eq!(events[0].3, strings(&[("n", "int")]));
    assert!(int(batch, "start_time", child) >= int(batch, "start_time", root));
    assert!(int(batch, "end_time", child) <= int(batch, "end_time", root));
}
