use std::collections::BTreeMap;
use std::io::Write as _;

use arrow::array::{Array, AsArray, MapArray, RecordBatch};
use arrow::datatypes::TimestampNanosecondType;

use super::*;
use crate::decompress;

const PROJECT: &str = "42";
const RECEIVED_AT: i64 = 1_714_600_000_000_000_000;
const FALLBACK: [u8; 16] = [0xfe; 16];

fn context() -> SentryContext<'static> {
    SentryContext {
        project: PROJECT,
        received_at_ns: RECEIVED_AT,
        fallback_event_id: FALLBACK,
    }
}

fn decode(body: &[u8]) -> DecodedEnvelope {
    decode_sentry_envelope(body, &context()).unwrap_or_else(|e| panic!("{e}"))
}

/// An envelope as the Python SDK writes it: every item with its `length`, a
/// final newline.
fn with_lengths(header: &str, items: &[(&str, &str)]) -> Vec<u8> {
    let mut out = format!("{header}\n").into_bytes();
    for (item_type, payload) in items {
        out.extend(
            format!(
                "{{\"type\":\"{item_type}\",\"length\":{}}}\n",
                payload.len()
            )
            .bytes(),
        );
        out.extend(payload.bytes());
        out.push(b'\n');
    }
    out
}

/// An envelope as the JavaScript SDKs write it: no `length`, no final newline.
fn without_lengths(header: &str, items: &[(&str, &str)]) -> Vec<u8> {
    let mut out = header.to_string();
    for (item_type, payload) in items {
        out.push_str(&format!("\n{{\"type\":\"{item_type}\"}}\n{payload}"));
    }
    out.into_bytes()
}

/// One row of a batch: every column as text (maps as `{k=v, …}`), null as None.
type Row = BTreeMap<String, Option<String>>;

fn map_text(map: &MapArray, row: usize) -> String {
    let entries = map.value(row);
    let keys = entries.column(0).as_string::<i32>();
    let values = entries.column(1).as_string::<i32>();
    let pairs: Vec<String> = (0..entries.len())
        .map(|i| format!("{}={}", keys.value(i), values.value(i)))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

fn rows(batch: &RecordBatch) -> Vec<Row> {
    let schema = batch.schema();
    (0..batch.num_rows())
        .map(|row| {
            schema
                .fields()
                .iter()
                .zip(batch.columns())
                .filter_map(|(field, column)| {
                    let value = if column.is_null(row) {
                        None
                    } else if let Some(strings) = column.as_string_opt::<i32>() {
                        Some(strings.value(row).to_string())
                    } else if let Some(map) = column.as_map_opt() {
                        Some(map_text(map, row))
                    } else if let Some(times) = column.as_primitive_opt::<TimestampNanosecondType>()
                    {
                        Some(times.value(row).to_string())
                    } else if let Some(ints) =
                        column.as_primitive_opt::<arrow::datatypes::Int64Type>()
                    {
                        Some(ints.value(row).to_string())
                    } else {
                        return None;
                    };
                    Some((field.name().clone(), value))
                })
                .collect()
        })
        .collect()
}

fn by_name(batch: &RecordBatch) -> BTreeMap<String, Row> {
    rows(batch)
        .into_iter()
        .map(|row| (row["name"].clone().unwrap(), row))
        .collect()
}

fn get<'r>(row: &'r Row, column: &str) -> Option<&'r str> {
    row.get(column)
        .unwrap_or_else(|| panic!("no column {column}"))
        .as_deref()
}

/// `attributes[key]` of a row, parsed back from its `{k=v, …}` text.
fn attr(row: &Row, column: &str, key: &str) -> Option<String> {
    let text = get(row, column)?;
    let inner = &text[1..text.len() - 1];
    inner
        .split(", ")
        .find_map(|pair| pair.strip_prefix(&format!("{key}=")).map(str::to_string))
}

const TRACE: &str = "771a43a4192642f0b136d5159a501700";

fn python_transaction() -> String {
    serde_json::json!({
        "type": "transaction",
        "event_id": "8b5c2b2a3e0d4c6c9f0e1d2c3b4a5968",
        "transaction": "GET /checkout",
        "transaction_info": {"source": "route"},
        "contexts": {
            "trace": {
                "trace_id": TRACE.to_uppercase(),
                "span_id": "AAAAAAAAAAAAAAA1",
                "parent_span_id": "bbbbbbbbbbbbbbb0",
                "op": "http.server",
                "status": "ok",
                "origin": "auto.http.flask",
                "data": {"thread.name": "MainThread", "http.response.status_code": 200}
            },
            "runtime": {"name": "CPython", "version": "3.11.2"}
        },
        "start_timestamp": "2024-05-01T12:00:00.000000Z",
        "timestamp": "2024-05-01T12:00:01.500000Z",
        "tags": {"customer": "acme", "premium": true},
        "measurements": {"cart.items": {"value": 3, "unit": "none"}},
        "release": "shop@1.2.3",
        "environment": "production",
        "platform": "python",
        "sdk": {"name": "sentry.python.flask", "version": "2.75.0"},
        "spans": [
            {
                "trace_id": TRACE,
                "span_id": "aaaaaaaaaaaaaaa2",
                "parent_span_id": "aaaaaaaaaaaaaaa1",
                "op": "db",
                "description": "SELECT * FROM carts WHERE id = %s",
                "start_timestamp": "2024-05-01T12:00:00.100000Z",
                "timestamp": "2024-05-01T12:00:00.350000Z",
                "status": "ok",
                "tags": {"db.table": "carts"},
                "data": {"db.system": "postgresql", "db.rows": 3, "db.params": ["a", 1]}
            },
            {
                "trace_id": TRACE,
                "span_id": "aaaaaaaaaaaaaaa3",
                "parent_span_id": "aaaaaaaaaaaaaaa1",
                "op": "http.client",
                "start_timestamp": "2024-05-01T12:00:00.400000Z",
                "timestamp": "2024-05-01T12:00:01.400000Z",
                "status": "deadline_exceeded"
            },
            {
                "trace_id": TRACE,
                "span_id": "aaaaaaaaaaaaaaa4",
                "parent_span_id": "aaaaaaaaaaaaaaa3",
                "op": "queue.submit.celery",
                "description": "tasks.send_mail",
                "start_timestamp": 1714564801.41,
                "timestamp": 1714564801.42
            }
        ]
    })
    .to_string()
}

#[test]
fn a_python_transaction_becomes_a_root_span_and_its_children() {
    let body = with_lengths(
        r#"{"event_id":"8b5c2b2a3e0d4c6c9f0e1d2c3b4a5968","sent_at":"2024-05-01T12:00:02.000000Z","trace":{"trace_id":"771a43a4192642f0b136d5159a501700","public_key":"k"}}"#,
        &[("transaction", &python_transaction())],
    );
    let decoded = decode(&body);
    assert_eq!(decoded.id, "8b5c2b2a3e0d4c6c9f0e1d2c3b4a5968");
    assert_eq!((decoded.spans.accepted, decoded.spans.rejected), (4, 0));
    assert!(decoded.errors.is_empty());
    let spans = by_name(&decoded.spans.batch);

    let root = &spans["GET /checkout"];
    assert_eq!(get(root, "trace_id"), Some(TRACE), "lowercased");
    assert_eq!(get(root, "span_id"), Some("aaaaaaaaaaaaaaa1"));
    assert_eq!(get(root, "parent_span_id"), Some("bbbbbbbbbbbbbbb0"));
    assert_eq!(get(root, "kind"), Some("server"));
    assert_eq!(get(root, "status_code"), Some("ok"));
    assert_eq!(get(root, "status_message"), None);
    assert_eq!(get(root, "project"), Some(PROJECT));
    assert_eq!(get(root, "service_name"), Some(PROJECT));
    assert_eq!(get(root, "source"), Some("sentry"));
    assert_eq!(get(root, "scope_name"), Some("sentry.python.flask"));
    assert_eq!(get(root, "scope_version"), Some("2.75.0"));
    assert_eq!(get(root, "start_time"), Some("1714564800000000000"));
    assert_eq!(get(root, "duration_ns"), Some("1500000000"));
    for (key, value) in [
        ("sentry.op", "http.server"),
        ("sentry.origin", "auto.http.flask"),
        ("sentry.span.source", "route"),
        ("sentry.release", "shop@1.2.3"),
        ("sentry.environment", "production"),
        ("sentry.sdk.name", "sentry.python.flask"),
        ("sentry.platform", "python"),
        ("thread.name", "MainThread"),
        ("http.response.status_code", "200"),
        ("customer", "acme"),
        ("premium", "true"),
        ("sentry.measurements.cart.items", "3"),
        ("sentry.measurements.cart.items.unit", "none"),
    ] {
        assert_eq!(
            attr(root, "attributes", key).as_deref(),
            Some(value),
            "{key}"
        );
    }
    assert_eq!(
        attr(root, "attribute_types", "http.response.status_code").as_deref(),
        Some("int")
    );
    assert_eq!(
        attr(root, "attribute_types", "premium").as_deref(),
        Some("bool")
    );
    assert_eq!(
        attr(root, "attribute_types", "sentry.measurements.cart.items").as_deref(),
        Some("double")
    );
    assert_eq!(get(root, "resource_attributes"), Some("{}"));

    let db = &spans["SELECT * FROM carts WHERE id = %s"];
    assert_eq!(get(db, "parent_span_id"), Some("aaaaaaaaaaaaaaa1"));
    assert_eq!(get(db, "kind"), Some("client"));
    assert_eq!(get(db, "status_code"), Some("ok"));
    assert_eq!(get(db, "duration_ns"), Some("250000000"));
    assert_eq!(attr(db, "attributes", "sentry.op").as_deref(), Some("db"));
    assert_eq!(
        attr(db, "attributes", "db.system").as_deref(),
        Some("postgresql")
    );
    assert_eq!(attr(db, "attributes", "db.table").as_deref(), Some("carts"));
    assert_eq!(
        attr(db, "attributes", "db.params").as_deref(),
        Some(r#"["a",1]"#)
    );
    assert_eq!(
        attr(db, "attribute_types", "db.params").as_deref(),
        Some("json")
    );
    assert_eq!(
        attr(db, "attributes", "sentry.release").as_deref(),
        Some("shop@1.2.3")
    );
    // Transaction tags stay on the transaction.
    assert_eq!(attr(db, "attributes", "customer"), None);

    // No description: the op names the span.
    let client = &spans["http.client"];
    assert_eq!(get(client, "kind"), Some("client"));
    assert_eq!(get(client, "status_code"), Some("error"));
    assert_eq!(get(client, "status_message"), Some("deadline_exceeded"));

    let producer = &spans["tasks.send_mail"];
    assert_eq!(get(producer, "kind"), Some("producer"));
    assert_eq!(get(producer, "status_code"), Some("unset"));
    assert_eq!(get(producer, "parent_span_id"), Some("aaaaaaaaaaaaaaa3"));
    assert_eq!(get(producer, "duration_ns"), Some("10000000"));
}

/// A transaction as `@sentry/node` (OpenTelemetry inside) sends it: float
/// timestamps, `otel.kind` in the data, the OpenTelemetry resource.
fn node_transaction(service_name: &str) -> String {
    serde_json::json!({
        "contexts": {
            "trace": {
                "span_id": "1000000000000001",
                "trace_id": TRACE,
                "data": {"sentry.op": "http.server", "otel.kind": "SERVER", "http.method": "GET", "sentry.sample_rate": 1},
                "op": "http.server",
                "status": "ok",
                "origin": "auto.http.otel.http"
            },
            "otel": {
                "resource": {
                    "service.name": service_name,
                    "service.namespace": "sentry",
                    "telemetry.sdk.language": "nodejs",
                    "service.version": "11.12.0"
                }
            }
        },
        "spans": [{
            "span_id": "1000000000000002",
            "trace_id": TRACE,
            "parent_span_id": "1000000000000001",
            "data": {"sentry.op": "db", "otel.kind": "CLIENT", "db.system": "sqlite"},
            "description": "select 1",
            "start_timestamp": 1714564800.125,
            "timestamp": 1714564800.25,
            "status": "internal_error",
            "op": "db",
            "origin": "manual"
        }],
        "start_timestamp": 1714564800.1,
        "timestamp": 1714564800.3,
        "transaction": "GET /users",
        "type": "transaction",
        "transaction_info": {"source": "route"},
        "platform": "node",
        "event_id": "1f2e3d4c5b6a79880102030405060708",
        "environment": "production",
        "sdk": {"name": "sentry.javascript.node", "version": "11.12.0"}
    })
    .to_string()
}

#[test]
fn a_node_transaction_without_lengths_or_final_newline() {
    let body = without_lengths(
        r#"{"event_id":"1f2e3d4c5b6a79880102030405060708","sent_at":"2024-05-01T12:00:01.000Z","sdk":{"name":"sentry.javascript.node","version":"11.12.0"}}"#,
        &[("transaction", &node_transaction("checkout"))],
    );
    assert!(!body.ends_with(b"\n"));
    let decoded = decode(&body);
    assert_eq!((decoded.spans.accepted, decoded.spans.rejected), (2, 0));
    let spans = by_name(&decoded.spans.batch);
    let root = &spans["GET /users"];
    assert_eq!(get(root, "service_name"), Some("checkout"));
    assert_eq!(get(root, "kind"), Some("server"));
    assert_eq!(get(root, "start_time"), Some("1714564800100000000"));
    assert_eq!(get(root, "end_time"), Some("1714564800300000000"));
    assert_eq!(
        attr(root, "resource_attributes", "telemetry.sdk.language").as_deref(),
        Some("nodejs")
    );
    let db = &spans["select 1"];
    assert_eq!(get(db, "service_name"), Some("checkout"));
    assert_eq!(get(db, "kind"), Some("client"));
    assert_eq!(get(db, "status_code"), Some("error"));
    assert_eq!(get(db, "status_message"), Some("internal_error"));
    assert_eq!(get(db, "duration_ns"), Some("125000000"));
    assert_eq!(
        attr(db, "resource_attributes", "service.name").as_deref(),
        Some("checkout")
    );
}

#[test]
fn the_node_sdks_default_service_name_is_the_project() {
    for placeholder in ["node", "unknown_service:node", ""] {
        let body = without_lengths("{}", &[("transaction", &node_transaction(placeholder))]);
        let decoded = decode(&body);
        for row in rows(&decoded.spans.batch) {
            assert_eq!(get(&row, "service_name"), Some(PROJECT), "{placeholder:?}");
        }
    }
}

#[test]
fn gzip_and_brotli_bodies_decode_alike() {
    let body = with_lengths("{}", &[("transaction", &python_transaction())]);
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(&body).unwrap();
    let gzip = gzip.finish().unwrap();
    let mut br = Vec::new();
    {
        let mut writer = brotli::CompressorWriter::new(&mut br, 4096, 5, 22);
        writer.write_all(&body).unwrap();
    }
    let plain = decode(&body).spans.batch;
    for (encoding, compressed) in [("gzip", gzip), ("br", br)] {
        let inflated = decompress(&compressed, Some(encoding), 1 << 20).unwrap();
        assert_eq!(decode(&inflated).spans.batch, plain, "{encoding}");
    }
}

#[test]
fn invalid_spans_are_dropped_and_counted() {
    let span = |span_id: &str, start: serde_json::Value, end: serde_json::Value| {
        serde_json::json!({
            "span_id": span_id, "parent_span_id": "aaaaaaaaaaaaaaa1", "op": "db",
            "description": span_id, "start_timestamp": start, "timestamp": end
        })
    };
    let transaction = serde_json::json!({
        "type": "transaction",
        "transaction": "root",
        "contexts": {"trace": {"trace_id": TRACE, "span_id": "aaaaaaaaaaaaaaa1"}},
        "start_timestamp": 1714564800.0,
        "timestamp": 1714564801.0,
        "spans": [
            span("bbbbbbbbbbbbbbb1", 1714564800.5.into(), 1714564800.6.into()),
            span("0000000000000000", 1714564800.5.into(), 1714564800.6.into()),
            span("bbbbbbbbbbbbbbb", 1714564800.5.into(), 1714564800.6.into()),
            span("bbbbbbbbbbbbbbb2", 1714564800.5.into(), 1714564800.4.into()),
            span("bbbbbbbbbbbbbbb3", 0.into(), 1714564800.4.into()),
            span("bbbbbbbbbbbbbbb4", 1714564800.5.into(), serde_json::Value::Null),
            span("bbbbbbbbbbbbbbb5", "last tuesday".into(), 1714564800.6.into()),
        ]
    })
    .to_string();
    let decoded = decode(&with_lengths("{}", &[("transaction", &transaction)]));
    assert_eq!((decoded.spans.accepted, decoded.spans.rejected), (2, 6));
    assert_eq!(decoded.spans.batch.num_rows(), 2);
    let message = decoded.spans.rejection_message.unwrap();
    for reason in [
        "item 1 span 1: span id must not be all zeros",
        r#"item 1 span 2: span id "bbbbbbbbbbbbbbb" is not 16 hex characters"#,
        "item 1 span 3: end time 1714564800400000000 is before start time 1714564800500000000",
        "item 1 span 4: start time is 0",
        "item 1 span 5: no timestamp",
        "and 1 more",
    ] {
        assert!(message.contains(reason), "{reason:?} not in {message}");
    }
    assert!(message.starts_with("6 spans rejected: "), "{message}");
}

#[test]
fn a_transaction_without_a_trace_context_is_a_rejected_root() {
    let transaction =
        r#"{"type":"transaction","transaction":"t","start_timestamp":1,"timestamp":2}"#;
    let decoded = decode(&with_lengths("{}", &[("transaction", transaction)]));
    assert_eq!((decoded.spans.accepted, decoded.spans.rejected), (0, 1));
    assert_eq!(
        decoded.spans.rejection_message.as_deref(),
        Some("1 span rejected: item 1 transaction: no trace id")
    );
}

#[test]
fn child_spans_default_to_their_transactions_trace() {
    let transaction = serde_json::json!({
        "transaction": "t",
        "contexts": {"trace": {"trace_id": TRACE, "span_id": "aaaaaaaaaaaaaaa1"}},
        "start_timestamp": 1, "timestamp": 2,
        "spans": [{"span_id": "aaaaaaaaaaaaaaa2", "parent_span_id": "aaaaaaaaaaaaaaa1",
                   "start_timestamp": 1, "timestamp": 2}]
    })
    .to_string();
    let decoded = decode(&with_lengths("{}", &[("transaction", &transaction)]));
    let rows = rows(&decoded.spans.batch);
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| get(r, "trace_id") == Some(TRACE)));
    assert!(
        rows.iter()
            .any(|r| get(r, "name") == Some("<unlabeled span>"))
    );
}

#[test]
fn malformed_payloads_are_clear_errors() {
    let cases: [(&[u8], &str); 4] = [
        (
            b"{}\n{\"type\":\"transaction\",\"length\":5}\n{oops\n",
            "the payload of item 1 (transaction) is not a valid transaction: key must be a string",
        ),
        (
            b"{}\n{\"type\":\"transaction\"}\n{\"spans\": 5}",
            "is not a valid transaction: invalid type: integer `5`, expected a sequence",
        ),
        (
            b"{}\n{\"type\":\"event\"}\n[]",
            "the payload of item 1 (event) is not a JSON object",
        ),
        (
            b"not an envelope",
            "invalid Sentry envelope: the first line must be the envelope header",
        ),
    ];
    for (body, want) in cases {
        match decode_sentry_envelope(body, &context()) {
            Err(IngestError::Malformed(message)) => {
                assert!(message.contains(want), "{want:?} not in {message:?}")
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(body)),
        }
    }
}

#[test]
fn other_item_types_are_ignored() {
    let body = with_lengths(
        "{}",
        &[
            ("session", r#"{"sid":"x","status":"ok"}"#),
            ("client_report", r#"{"discarded_events":[]}"#),
            ("attachment", "binary\n\u{0}stuff"),
            ("profile", "{}"),
            ("check_in", "{}"),
            ("transaction", &python_transaction()),
            ("replay_event", "not even json"),
        ],
    );
    let decoded = decode(&body);
    assert_eq!(decoded.ignored_items, 6);
    assert_eq!(decoded.spans.accepted, 4);
}

#[test]
fn the_replayable_envelope_decodes_to_the_same_rows() {
    let body = with_lengths(
        r#"{"event_id":"8b5c2b2a3e0d4c6c9f0e1d2c3b4a5968"}"#,
        &[
            ("attachment", "a large attachment that stays out of the log"),
            ("transaction", &python_transaction()),
            ("profile", "{\"a large\": \"profile\"}"),
        ],
    );
    let decoded = decode(&body);
    let replayable = decoded.replayable_bytes(&body);
    assert!(replayable.len() < body.len());
    assert!(!String::from_utf8_lossy(&replayable).contains("large"));
    let again = decode(&replayable);
    assert_eq!(again.spans.batch, decoded.spans.batch);
    assert_eq!(again.id, decoded.id);
    assert_eq!(again.ignored_items, 0);
    // Without lengths, the payload is written with one.
    let node = without_lengths("{}", &[("transaction", &node_transaction("svc"))]);
    let decoded = decode(&node);
    assert_eq!(
        decode(&decoded.replayable_bytes(&node)).spans.batch,
        decoded.spans.batch
    );
}

#[test]
fn the_answer_id_comes_from_the_header_then_the_items_then_the_fallback() {
    let transaction = python_transaction();
    let dashed = r#"{"event_id":"8B5C2B2A-3E0D-4C6C-9F0E-1D2C3B4A5968"}"#;
    assert_eq!(
        decode(&with_lengths(dashed, &[])).id,
        "8b5c2b2a3e0d4c6c9f0e1d2c3b4a5968"
    );
    assert_eq!(
        decode(&with_lengths("{}", &[("transaction", &transaction)])).id,
        "8b5c2b2a3e0d4c6c9f0e1d2c3b4a5968"
    );
    assert_eq!(decode(b"{}").id, "fe".repeat(16));
    assert_eq!(decode(br#"{"event_id":"nope"}"#).id, "fe".repeat(16));
}

#[test]
fn the_dsn_key_is_kept() {
    let decoded = decode(br#"{"dsn":"http://public@127.0.0.1:4318/42"}"#);
    assert_eq!(decoded.dsn_key.as_deref(), Some("public"));
}

#[test]
fn span_v2_items() {
    let container = serde_json::json!({"version": 2, "items": [
        {
            "trace_id": TRACE, "span_id": "438f40bd3b4a41ee", "name": "GET /users",
            "status": "ok", "is_segment": true,
            "start_timestamp": 1742921669.158209, "end_timestamp": 1742921669.180536,
            "attributes": {
                "sentry.op": {"type": "string", "value": "http.server"},
                "sentry.release": {"type": "string", "value": "1.0.0"},
                "http.response.status_code": {"type": "integer", "value": 200},
                "sample.ratio": {"type": "double", "value": 1},
                "service.name": {"type": "string", "value": "users"}
            },
            "links": [{"trace_id": "627a2885119dcc8184fae7eef09438cb", "span_id": "6c71fc6b09b8b716",
                       "attributes": {"sentry.link.type": {"type": "string", "value": "previous_trace"}}},
                      {"trace_id": "bad", "span_id": "6c71fc6b09b8b716"}]
        },
        {
            "trace_id": TRACE, "parent_span_id": "438f40bd3b4a41ee", "span_id": "f1196292f76e45c0",
            "name": "app.handle", "status": "error", "is_segment": false,
            "attributes": {"sentry.status.message": {"type": "string", "value": "deadline_exceeded"}},
            "start_timestamp": 1742921669.178306, "end_timestamp": 1742921669.180484
        }
    ]})
    .to_string();
    let mut body = b"{}\n".to_vec();
    body.extend(
        format!(
            "{{\"type\":\"span\",\"item_count\":2,\"content_type\":\"application/vnd.sentry.items.span.v2+json\",\"length\":{}}}\n",
            container.len()
        )
        .bytes(),
    );
    body.extend(container.bytes());
    let decoded = decode(&body);
    assert_eq!(decoded.spans.accepted, 2);
    let spans = by_name(&decoded.spans.batch);
    let root = &spans["GET /users"];
    assert_eq!(get(root, "kind"), Some("server"));
    assert_eq!(get(root, "service_name"), Some("users"));
    assert_eq!(get(root, "start_time"), Some("1742921669158209000"));
    assert_eq!(
        attr(root, "attributes", "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        attr(root, "attribute_types", "sample.ratio").as_deref(),
        Some("double")
    );
    let links = decoded
        .spans
        .batch
        .column_by_name("links")
        .unwrap()
        .as_list::<i32>();
    let root_row = rows(&decoded.spans.batch)
        .iter()
        .position(|r| get(r, "name") == Some("GET /users"))
        .unwrap();
    assert_eq!(
        links.value(root_row).len(),
        1,
        "the invalid link is dropped"
    );
    let child = &spans["app.handle"];
    assert_eq!(get(child, "status_code"), Some("error"));
    assert_eq!(get(child, "status_message"), Some("deadline_exceeded"));
    assert_eq!(get(child, "service_name"), Some(PROJECT));
    assert_eq!(get(child, "parent_span_id"), Some("438f40bd3b4a41ee"));

    // The same container without its content type is recognised too; the
    // replayable envelope keeps the content type.
    let bare = without_lengths("{}", &[("span", &container)]);
    let again = decode(&bare);
    assert_eq!(again.spans.batch, decoded.spans.batch);
    assert_eq!(
        decode(&decoded.replayable_bytes(&body)).spans.batch,
        decoded.spans.batch
    );
}

#[test]
fn a_standalone_span_item() {
    let span = serde_json::json!({
        "trace_id": TRACE, "span_id": "aaaaaaaaaaaaaaa9", "op": "ui.interaction.click",
        "description": "button.buy", "start_timestamp": 1714564800.0, "timestamp": 1714564800.2,
        "data": {"sentry.origin": "auto.http.browser.inp"}
    })
    .to_string();
    let decoded = decode(&without_lengths("{}", &[("span", &span)]));
    let spans = by_name(&decoded.spans.batch);
    let row = &spans["button.buy"];
    assert_eq!(get(row, "parent_span_id"), None);
    assert_eq!(get(row, "kind"), Some("internal"));
}

#[test]
fn an_error_event_becomes_an_errors_row() {
    let event = serde_json::json!({
        "event_id": "0123456789ABCDEF0123456789ABCDEF",
        "timestamp": "2024-05-01T12:00:00.500000Z",
        "level": "error",
        "platform": "python",
        "release": "shop@1.2.3",
        "environment": "production",
        "transaction": "GET /checkout",
        "tags": {"customer": "acme", "attempt": 2},
        "contexts": {"trace": {"trace_id": TRACE, "span_id": "aaaaaaaaaaaaaaa2", "op": "db"}},
        "exception": {"values": [
            {"type": "KeyError", "value": "'cart'", "stacktrace": {"frames": []}},
            {"type": "ValueError", "value": "card declined", "module": "builtins",
             "stacktrace": {"frames": [
                {"filename": "app.py", "abs_path": "/srv/app.py", "function": "checkout", "lineno": 10, "in_app": true,
                 "vars": {"secret": "x"}, "context_line": "charge()"},
                {"abs_path": "/usr/lib/python3/site.py", "function": "charge", "lineno": 99, "in_app": false}
             ]}}
        ]}
    })
    .to_string();
    let decoded = decode(&with_lengths("{}", &[("event", &event)]));
    assert_eq!(decoded.id, "0123456789abcdef0123456789abcdef");
    assert_eq!(decoded.errors.len(), 1);
    assert_eq!(decoded.spans.accepted, 0);
    let row = &rows(&decoded.errors.batch)[0];
    assert_eq!(get(row, "project"), Some(PROJECT));
    assert_eq!(
        get(row, "event_id"),
        Some("0123456789abcdef0123456789abcdef")
    );
    assert_eq!(get(row, "time"), Some("1714564800500000000"));
    assert_eq!(get(row, "trace_id"), Some(TRACE));
    assert_eq!(get(row, "span_id"), Some("aaaaaaaaaaaaaaa2"));
    assert_eq!(get(row, "level"), Some("error"));
    assert_eq!(get(row, "exception_type"), Some("ValueError"));
    assert_eq!(get(row, "exception_value"), Some("card declined"));
    let frames: serde_json::Value =
        serde_json::from_str(get(row, "stack_frames").unwrap()).unwrap();
    assert_eq!(
        frames,
        serde_json::json!([
            {"filename": "app.py", "function": "checkout", "lineno": 10, "in_app": true},
            {"filename": "/usr/lib/python3/site.py", "function": "charge", "lineno": 99, "in_app": false}
        ])
    );
    assert_eq!(get(row, "release"), Some("shop@1.2.3"));
    assert_eq!(get(row, "environment"), Some("production"));
    assert_eq!(get(row, "transaction"), Some("GET /checkout"));
    assert_eq!(get(row, "tags"), Some("{attempt=2, customer=acme}"));
    assert_eq!(get(row, "service_name"), Some(PROJECT));
    assert_eq!(get(row, "source"), Some("sentry"));
}

#[test]
fn a_message_event_without_ids_or_time() {
    let event = r#"{"message": "disk almost full", "level": "warning"}"#;
    let decoded = decode(&without_lengths("{}", &[("event", event)]));
    let row = &rows(&decoded.errors.batch)[0];
    assert_eq!(get(row, "event_id"), Some("fe".repeat(16).as_str()));
    assert_eq!(get(row, "time"), Some(RECEIVED_AT.to_string().as_str()));
    assert_eq!(get(row, "trace_id"), None);
    assert_eq!(get(row, "exception_type"), None);
    assert_eq!(get(row, "exception_value"), Some("disk almost full"));
    assert_eq!(get(row, "stack_frames"), None);
    assert_eq!(get(row, "level"), Some("warning"));
}

#[test]
fn span_kinds_from_ops() {
    use SpanKind::*;
    for (op, kind) in [
        ("http.server", Server),
        ("websocket.server", Server),
        ("grpc.server", Server),
        ("http.client", Client),
        ("grpc.client", Client),
        ("db", Client),
        ("db.query", Client),
        ("db.redis", Client),
        ("cache.get", Client),
        ("queue.publish", Producer),
        ("queue.submit.celery", Producer),
        ("queue.process", Consumer),
        ("queue.task.celery", Consumer),
        ("function", Internal),
        ("ui.load", Internal),
        ("", Internal),
    ] {
        assert_eq!(map_kind(Some(op), None), kind, "{op}");
    }
    assert_eq!(map_kind(None, None), Internal);
    assert_eq!(map_kind(Some("db"), Some("PRODUCER")), Producer);
    assert_eq!(map_kind(Some("db"), Some("weird")), Client);
}

#[test]
fn sentry_statuses() {
    assert_eq!(map_status(Some("ok")), (StatusCode::Ok, None));
    assert_eq!(map_status(None), (StatusCode::Unset, None));
    for status in [
        "internal_error",
        "not_found",
        "deadline_exceeded",
        "unknown",
        "error",
    ] {
        assert_eq!(map_status(Some(status)), (StatusCode::Error, Some(status)));
    }
}

#[test]
fn a_small_envelope_cannot_expand_without_bound() {
    // Big resource attributes repeated on many spans.
    let resource: serde_json::Map<String, serde_json::Value> = (0..400)
        .map(|i| (format!("key{i}"), serde_json::Value::from("v".repeat(1000))))
        .collect();
    let spans: Vec<serde_json::Value> = (0..20_000)
        .map(|i| {
            serde_json::json!({"span_id": format!("{:016x}", i + 2), "start_timestamp": 1, "timestamp": 2})
        })
        .collect();
    let transaction = serde_json::json!({
        "contexts": {"trace": {"trace_id": TRACE, "span_id": "0000000000000001"},
                     "otel": {"resource": resource}},
        "start_timestamp": 1, "timestamp": 2, "spans": spans
    })
    .to_string();
    let err = decode_sentry_envelope(
        &with_lengths("{}", &[("transaction", &transaction)]),
        &context(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("expands to more than"), "{err}");
}
