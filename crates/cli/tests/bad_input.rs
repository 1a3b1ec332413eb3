//! Invariant 4 through the real binary: bad input to `POST /v1/traces` and to
//! `POST /api/v2/spans` (Zipkin) and `POST /api/{project_id}/envelope/` (Sentry)
//! gets a 4xx with a message, never crashes the server and never harms stored
//! data.
//!
//! One server takes every case in turn; after each one it must still answer
//! `/health`, hold exactly the spans it held before, and accept good data again.

mod common;

use std::io::Write;

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use rand::{RngCore, SeedableRng};

use common::*;

const TAG: u8 = 0xba;

struct Case {
    name: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
    /// `None`: any 4xx.
    status: Option<u16>,
}

const PROTOBUF: (&str, &str) = ("content-type", "application/x-protobuf");
const JSON: (&str, &str) = ("content-type", "application/json");
const GZIP: (&str, &str) = ("content-encoding", "gzip");

fn good_request(n: u64) -> ExportTraceServiceRequest {
    trace_request("frontend", TAG, n, 5, now_ns()).0
}

/// Appends a protobuf length-delimited field.
fn len_field(out: &mut Vec<u8>, field: u32, inner: &[u8]) {
    prost::encoding::encode_key(field, prost::encoding::WireType::LengthDelimited, out);
    prost::encoding::encode_varint(inner.len() as u64, out);
    out.extend_from_slice(inner);
}

/// A request whose one span has an attribute nested `depth` arrays deep, encoded by
/// hand from the inside out (building it as a Rust value would recurse as deep).
fn deeply_nested_protobuf(depth: usize) -> Vec<u8> {
    // AnyValue { string_value (1): "x" }
    let mut any_value = Vec::new();
    len_field(&mut any_value, 1, b"x");
    for _ in 0..depth {
        // ArrayValue { values (1): [inner] }, AnyValue { array_value (5): … }
        let mut array = Vec::new();
        len_field(&mut array, 1, &any_value);
        any_value.clear();
        len_field(&mut any_value, 5, &array);
    }
    // KeyValue { key (1), value (2) }
    let mut key_value = Vec::new();
    len_field(&mut key_value, 1, b"deep");
    len_field(&mut key_value, 2, &any_value);
    // Span { …, attributes (9): [key_value] }
    let spans = good_request(1_000).resource_spans[0].scope_spans[0]
        .spans
        .clone();
    let mut span = spans[0].encode_to_vec();
    len_field(&mut span, 9, &key_value);
    // ScopeSpans { spans (2) }, ResourceSpans { scope_spans (2) }, request { resource_spans (1) }
    let mut scope_spans = Vec::new();
    len_field(&mut scope_spans, 2, &span);
    let mut resource_spans = Vec::new();
    len_field(&mut resource_spans, 2, &scope_spans);
    let mut request = Vec::new();
    len_field(&mut request, 1, &resource_spans);
    request
}

fn deeply_nested_json(depth: usize) -> Vec<u8> {
    let open = r#"{"arrayValue":{"values":["#;
    let close = "]}}";
    let mut value = String::new();
    for _ in 0..depth {
        value.push_str(open);
    }
    value.push_str(r#"{"stringValue":"x"}"#);
    for _ in 0..depth {
        value.push_str(close);
    }
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"frontend"}}}}]}},"scopeSpans":[{{"spans":[{{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"deep","kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000001000000","attributes":[{{"key":"deep","value":{value}}}]}}]}}]}}]}}"#
    )
    .into_bytes()
}

/// A gzip member that inflates to `mib` MiB of zeros, about 1 KiB per MiB.
///
/// Deflating a MiB of zeros after a MiB of zeros (sync-flushed) gives the same
/// bytes every time, so the stream is built by repeating them instead of
/// compressing a GiB. The trailer's CRC is left zero: a server that enforces a
/// decompressed-size limit stops long before it; one that inflates it all fails
/// this test either way.
fn gzip_bomb(mib: usize) -> Vec<u8> {
    let zeros = vec![0u8; 1 << 20];
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    let mut ends = Vec::new();
    for _ in 0..3 {
        encoder.write_all(&zeros).expect("deflate to memory");
        encoder.flush().expect("deflate to memory");
        ends.push(encoder.get_ref().len());
    }
    let raw = encoder.get_ref();
    let (first, repeat) = (&raw[..ends[0]], &raw[ends[0]..ends[1]]);
    assert_eq!(
        repeat,
        &raw[ends[1]..ends[2]],
        "deflate of zeros is not periodic"
    );
    let mut bomb = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]; // gzip header, no name
    bomb.extend_from_slice(first);
    for _ in 1..mib {
        bomb.extend_from_slice(repeat);
    }
    bomb.extend_from_slice(&[0x03, 0x00]); // final, empty, fixed-Huffman block
    bomb.extend_from_slice(&0u32.to_le_bytes()); // CRC32 (see above)
    bomb.extend_from_slice(&((mib as u64) << 20).to_le_bytes()[..4]); // ISIZE mod 2^32
    bomb
}

fn with_ids(trace_id: Vec<u8>, span_id: Vec<u8>) -> Vec<u8> {
    let mut request = good_request(2_000);
    let span = &mut request.resource_spans[0].scope_spans[0].spans[0];
    span.trace_id = trace_id;
    span.span_id = span_id;
    request.resource_spans[0].scope_spans[0].spans.truncate(1);
    request.encode_to_vec()
}

fn cases() -> Vec<Case> {
    let valid = good_request(3_000).encode_to_vec();

    let mut random = vec![0u8; 4096];
    rand_chacha::ChaCha8Rng::seed_from_u64(7).fill_bytes(&mut random);
    assert!(
        ExportTraceServiceRequest::decode(&random[..]).is_err(),
        "the random bytes must not be a valid request"
    );
    let truncated = valid[..valid.len() * 3 / 5].to_vec();
    assert!(ExportTraceServiceRequest::decode(&truncated[..]).is_err());
    let nested = deeply_nested_protobuf(5_000);

    vec![
        Case {
            name: "random bytes as protobuf",
            headers: vec![PROTOBUF],
            body: random,
            status: Some(400),
        },
        Case {
            name: "truncated protobuf",
            headers: vec![PROTOBUF],
            body: truncated,
            status: Some(400),
        },
        Case {
            name: "broken JSON",
            headers: vec![JSON],
            body: br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8e"#.to_vec(),
            status: Some(400),
        },
        Case {
            name: "JSON that is not OTLP",
            headers: vec![JSON],
            body: br#"{"resourceSpans": 42}"#.to_vec(),
            status: Some(400),
        },
        Case {
            name: "all-zero trace id",
            headers: vec![PROTOBUF],
            body: with_ids(vec![0; 16], span_id(TAG, 1).to_vec()),
            status: Some(400),
        },
        Case {
            name: "all-zero span id",
            headers: vec![PROTOBUF],
            body: with_ids(trace_id(TAG, 1).to_vec(), vec![0; 8]),
            status: Some(400),
        },
        Case {
            name: "trace id of 15 bytes",
            headers: vec![PROTOBUF],
            body: with_ids(vec![7; 15], span_id(TAG, 2).to_vec()),
            status: Some(400),
        },
        Case {
            name: "gzip header on a body that is not gzip",
            headers: vec![PROTOBUF, GZIP],
            body: valid.clone(),
            status: Some(400),
        },
        Case {
            name: "gzip stream cut short",
            headers: vec![PROTOBUF, GZIP],
            body: {
                let full = gzip(&valid);
                full[..full.len() / 2].to_vec()
            },
            status: Some(400),
        },
        Case {
            name: "unknown content type",
            headers: vec![("content-type", "text/plain")],
            body: valid.clone(),
            status: Some(415),
        },
        Case {
            name: "gzip bomb (1 GiB of zeros)",
            headers: vec![PROTOBUF, GZIP],
            body: gzip_bomb(1024),
            status: Some(413),
        },
        Case {
            name: "attribute nested 5000 arrays deep (protobuf)",
            headers: vec![PROTOBUF],
            body: nested,
            status: None,
        },
        Case {
            name: "attribute nested 5000 arrays deep (JSON)",
            headers: vec![JSON],
            body: deeply_nested_json(5_000),
            status: None,
        },
    ]
}

/// Sends each case to `path`; after each, the server must answer `/health` and
/// still hold `stored` spans. Returns what went wrong.
fn run_cases(server: &TestServer, path: &str, cases: Vec<Case>, stored: i64) -> Vec<String> {
    let count_sql = "SELECT count(*) FROM spans";
    let mut failures = Vec::new();
    for case in cases {
        let response = server
            .post(path, &case.headers, &case.body)
            .unwrap_or_else(|err| {
                panic!(
                    "{}: no HTTP answer ({err}); did the server crash?\n{}",
                    case.name,
                    server.logs()
                )
            });
        let message = response.text();
        eprintln!("{}: {} {}", case.name, response.status, message.trim());
        let status_ok = match case.status {
            Some(expected) => response.status == expected,
            None => (400..500).contains(&response.status),
        };
        if !status_ok {
            failures.push(format!(
                "{}: expected {}, got {} {message}",
                case.name,
                case.status.map_or("a 4xx".to_owned(), |s| s.to_string()),
                response.status
            ));
        }
        // A message a person can read (JSON `{"error": …}` or an OTLP Status with
        // its text), not an empty body.
        if response
            .body
            .iter()
            .filter(|b| b.is_ascii_alphabetic())
            .count()
            < 8
        {
            failures.push(format!("{}: no error message in {:?}", case.name, message));
        }
        let health = server.health().unwrap_or_else(|err| {
            panic!(
                "after {}: /health failed: {err}\n{}",
                case.name,
                server.logs()
            )
        });
        assert_eq!(health.status, 200, "after {}: /health", case.name);
        assert_eq!(
            server.query_i64(count_sql),
            stored,
            "after {}: the stored spans changed",
            case.name
        );
    }
    failures
}

#[test]
fn bad_otlp_input_gets_a_4xx_and_harms_nothing() {
    let server = TestServer::start();
    server.ingest(&good_request(0));
    server.ingest(&good_request(1));
    let count_sql = "SELECT count(*) FROM spans";
    let stored = server.query_i64(count_sql);
    assert_eq!(stored, 10);

    let failures = run_cases(&server, "/v1/traces", cases(), stored);
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // One good span and one with a zero trace id: either the whole request is
    // rejected (4xx) or the good span is kept and the bad one reported rejected
    // (OTLP partial success, 200). Never the bad span stored.
    let mut mixed = good_request(6_000);
    let spans = &mut mixed.resource_spans[0].scope_spans[0].spans;
    spans.truncate(2);
    spans[1].trace_id = vec![0; 16];
    let response = server.post_otlp(&mixed).expect("POST");
    eprintln!(
        "one good and one bad span: {} {}",
        response.status,
        response.text()
    );
    let kept = match response.status {
        200 => {
            let answer =
                ExportTraceServiceResponse::decode(&response.body[..]).expect("an OTLP response");
            let partial = answer.partial_success.unwrap_or_default();
            assert_eq!(partial.rejected_spans, 1, "partial success: {partial:?}");
            assert!(!partial.error_message.is_empty(), "{partial:?}");
            1
        }
        400..500 => 0,
        other => panic!("one good and one bad span: {other} {}", response.text()),
    };
    assert_eq!(server.query_i64(count_sql), stored + kept);
    assert_eq!(
        server.query_i64(&format!(
            "SELECT count(*) FROM spans WHERE span_id = '{}'",
            hex_id(&mixed.resource_spans[0].scope_spans[0].spans[1].span_id)
        )),
        0,
        "the span with the zero trace id is not stored"
    );
    let stored = stored + kept;

    // Still takes good data, also gzipped, also after all that.
    server.ingest(&good_request(4));
    let response = server
        .post(
            "/v1/traces",
            &[PROTOBUF, GZIP],
            &gzip(&good_request(5).encode_to_vec()),
        )
        .expect("POST");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(server.query_i64(count_sql), stored + 10);
}

/// A Zipkin v2 JSON span of trace `trace` (hex), ending now.
fn zipkin_span(trace: &str, id: u64, name: &str) -> serde_json::Value {
    serde_json::json!({
        "traceId": trace,
        "id": format!("{id:016x}"),
        "name": name,
        "timestamp": now_ns() / 1000,
        "duration": 150,
        "localEndpoint": {"serviceName": "frontend"},
    })
}

fn zipkin_cases() -> Vec<Case> {
    let valid = serde_json::json!([zipkin_span("ab", 1, "x")]).to_string();
    let mut random = vec![0u8; 4096];
    rand_chacha::ChaCha8Rng::seed_from_u64(11).fill_bytes(&mut random);
    // A span (without an id) with an unknown field nested 5000 arrays deep:
    // skipping it must not overflow the stack.
    let deep = format!(
        r#"[{{"traceId":"1","timestamp":1,"extra":{}1{}}}]"#,
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    let case = |name, headers: Vec<(&'static str, &'static str)>, body: Vec<u8>, status| Case {
        name,
        headers,
        body,
        status: Some(status),
    };
    vec![
        case(
            "random bytes as protobuf",
            vec![PROTOBUF],
            random.clone(),
            400,
        ),
        case("random bytes as JSON", vec![JSON], random, 400),
        case(
            "broken JSON",
            vec![JSON],
            br#"[{"traceId":"5b8e"#.to_vec(),
            400,
        ),
        case(
            "a JSON object instead of a list",
            vec![JSON],
            br#"{"traceId":"1","id":"1","timestamp":1}"#.to_vec(),
            400,
        ),
        case(
            "all-zero trace id",
            vec![JSON],
            serde_json::json!([zipkin_span("0", 1, "x")])
                .to_string()
                .into_bytes(),
            400,
        ),
        case(
            "trace id of 33 hex digits",
            vec![JSON],
            serde_json::json!([zipkin_span(&"1".repeat(33), 1, "x")])
                .to_string()
                .into_bytes(),
            400,
        ),
        case(
            "timestamp past the year 2262",
            vec![JSON],
            br#"[{"traceId":"1","id":"1","timestamp":99999999999999999999}]"#.to_vec(),
            400,
        ),
        case(
            "unknown field nested 5000 arrays deep",
            vec![JSON],
            deep.into_bytes(),
            400,
        ),
        case(
            "gzip header on a body that is not gzip",
            vec![JSON, GZIP],
            valid.clone().into_bytes(),
            400,
        ),
        case(
            "unknown content type",
            vec![("content-type", "application/x-thrift")],
            valid.into_bytes(),
            415,
        ),
        case(
            "gzip bomb (1 GiB of zeros)",
            vec![JSON, GZIP],
            gzip_bomb(1024),
            413,
        ),
    ]
}

/// Hostile input to the Zipkin receiver (`POST /api/v2/spans`) through the
/// real binary: each a 4xx with a message; the server keeps running and keeps
/// its data.
#[test]
fn bad_zipkin_input_gets_a_4xx_and_harms_nothing() {
    let server = TestServer::start();
    let good = |n: u64| {
        let spans: Vec<_> = (0..3)
            .map(|i| zipkin_span("5b8efff798038103d269b633813fc60c", n * 10 + i + 1, "good"))
            .collect();
        serde_json::Value::from(spans).to_string().into_bytes()
    };
    let post_good = |n: u64| {
        let response = server
            .post("/api/v2/spans", &[JSON], &good(n))
            .expect("POST");
        assert_eq!(response.status, 202, "{}", response.text());
    };
    post_good(0);
    let stored = server.query_i64("SELECT count(*) FROM spans");
    assert_eq!(stored, 3);
    let failures = run_cases(&server, "/api/v2/spans", zipkin_cases(), stored);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    post_good(1);
    let response = server
        .post("/api/v2/spans", &[JSON, GZIP], &gzip(&good(2)))
        .expect("POST");
    assert_eq!(response.status, 202, "{}", response.text());
    assert_eq!(server.query_i64("SELECT count(*) FROM spans"), stored + 6);
}

#[test]
fn sql_errors_are_4xx_with_a_message() {
    let server = TestServer::start();
    server.ingest(&good_request(0));
    let copy_target = tempfile::tempdir().expect("temp dir");
    let copy = format!(
        "COPY (SELECT * FROM spans) TO '{}'",
        copy_target.path().join("out.csv").display()
    );
    for (name, sql) in [
        ("syntax error", "SELEKT 1"),
        ("unknown table", "SELECT * FROM no_such_table"),
        ("unknown column", "SELECT no_such_column FROM spans"),
        ("DDL", "CREATE TABLE t AS SELECT 1"),
        ("COPY", copy.as_str()),
        (
            "external table",
            "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
        ),
    ] {
        let (status, body) = match server.try_sql(sql) {
            Ok(value) => panic!("{name}: `{sql}` succeeded: {value}"),
            Err(err) => err,
        };
        assert!((400..500).contains(&status), "{name}: {status} {body}");
        let error: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|err| panic!("{name}: error body is not JSON ({err}): {body}"));
        let message = error["error"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{name}: no `error` message in {body}");
    }
    assert_eq!(server.query_i64("SELECT count(*) FROM spans"), 5);
    assert!(
        !copy_target.path().join("out.csv").exists(),
        "COPY wrote a file"
    );
}

/// A `--grpc` address that cannot be bound stops `lighttrace serve` at start-up
/// with a message that names the flag, before the lake is opened.
#[test]
fn a_taken_grpc_port_is_a_clear_startup_error() {
    let server = TestServer::start();
    let taken = server.grpc_addr().to_string();
    let data = tempfile::tempdir().expect("tempdir");
    let http = format!("127.0.0.1:{}", free_port());
    let mut command = std::process::Command::new(LIGHTTRACE);
    command
        .args(["serve", "--http", &http, "--grpc", &taken, "--data"])
        .arg(data.path())
        .env_remove("LIGHTTRACE_GRPC")
        .env_remove("LIGHTTRACE_HTTP");
    let output = run_with_timeout(&mut command, STARTUP_TIMEOUT);
    assert!(
        !output.status.success(),
        "a second server on {taken} started"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on --grpc {taken}")),
        "{stderr}"
    );
    assert!(
        std::fs::read_dir(data.path()).unwrap().next().is_none(),
        "nothing written to the data dir"
    );
}

/// A Sentry envelope with one transaction (a root and no children) of trace
/// `trace_id`, whose root has span id `span_id`.
fn sentry_envelope(trace_id: &str, span_id: &str) -> Vec<u8> {
    let payload = format!(
        r#"{{"transaction":"t","start_timestamp":1714564800.0,"timestamp":1714564800.5,"contexts":{{"trace":{{"trace_id":"{trace_id}","span_id":"{span_id}","op":"http.server"}}}}}}"#
    );
    format!(
        "{{}}\n{{\"type\":\"transaction\",\"length\":{}}}\n{payload}\n",
        payload.len()
    )
    .into_bytes()
}

fn sentry_cases() -> Vec<Case> {
    let valid = sentry_envelope(
        &hex_id(&trace_id(TAG, 9_000)),
        &hex_id(&span_id(TAG, 9_000)),
    );
    let mut deep_data = String::from(
        r#"{"transaction":"t","start_timestamp":1,"timestamp":2,"contexts":{"trace":{"trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"b7ad6b7169203331","data":{"x":"#,
    );
    deep_data.push_str(&"[".repeat(5_000));
    deep_data.push_str(&"]".repeat(5_000));
    deep_data.push_str("}}}}");
    let deep = format!(
        "{{}}\n{{\"type\":\"transaction\",\"length\":{}}}\n{deep_data}",
        deep_data.len()
    )
    .into_bytes();
    vec![
        Case {
            name: "Sentry: empty body",
            headers: vec![],
            body: vec![],
            status: Some(400),
        },
        Case {
            name: "Sentry: header line that is not JSON",
            headers: vec![],
            body: b"hello\n{\"type\":\"transaction\"}\n{}".to_vec(),
            status: Some(400),
        },
        Case {
            name: "Sentry: item length past the end of the body",
            headers: vec![],
            body: b"{}\n{\"type\":\"transaction\",\"length\":18446744073709551615}\n{}".to_vec(),
            status: Some(400),
        },
        Case {
            name: "Sentry: transaction payload that is not a transaction",
            headers: vec![],
            body: b"{}\n{\"type\":\"transaction\"}\n{\"spans\":\"many\"}".to_vec(),
            status: Some(400),
        },
        Case {
            name: "Sentry: all-zero trace id",
            headers: vec![],
            body: sentry_envelope(&"0".repeat(32), "b7ad6b7169203331"),
            status: Some(400),
        },
        Case {
            name: "Sentry: span id that is not hex",
            headers: vec![],
            body: sentry_envelope("0af7651916cd43dd8448eb211c80319c", "not-hex-at-all!!"),
            status: Some(400),
        },
        Case {
            name: "Sentry: data nested 5000 arrays deep",
            headers: vec![],
            body: deep,
            status: Some(400),
        },
        Case {
            name: "Sentry: gzip header on a body that is not gzip",
            headers: vec![GZIP],
            body: valid.clone(),
            status: Some(400),
        },
        Case {
            name: "Sentry: brotli stream cut short",
            headers: vec![("content-encoding", "br")],
            body: {
                let mut out = Vec::new();
                {
                    let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                    writer
                        .write_all(&valid.repeat(50))
                        .expect("brotli to memory");
                }
                out[..out.len() / 2].to_vec()
            },
            status: Some(400),
        },
        Case {
            name: "Sentry: gzip bomb (1 GiB of zeros)",
            headers: vec![GZIP],
            body: gzip_bomb(1024),
            status: Some(413),
        },
        Case {
            name: "Sentry: unknown content encoding",
            headers: vec![("content-encoding", "zstd")],
            body: valid,
            status: Some(415),
        },
    ]
}

/// Invariant 4 for `POST /api/{project_id}/envelope/`: hostile envelopes get a
/// 4xx with a message and harm nothing.
#[test]
fn bad_sentry_input_gets_a_4xx_and_harms_nothing() {
    let server = TestServer::start();
    let path = "/api/42/envelope/";
    let good = sentry_envelope(&hex_id(&trace_id(TAG, 1)), &hex_id(&span_id(TAG, 1)));
    let response = server.post(path, &[], &good).expect("POST");
    assert_eq!(response.status, 200, "{}", response.text());
    let count_sql = "SELECT count(*) FROM spans";
    let stored = server.query_i64(count_sql);
    assert_eq!(stored, 1);

    let mut failures = Vec::new();
    for case in sentry_cases() {
        let response = server
            .post(path, &case.headers, &case.body)
            .unwrap_or_else(|err| {
                panic!(
                    "{}: no HTTP answer ({err}); did the server crash?\n{}",
                    case.name,
                    server.logs()
                )
            });
        let message = response.text();
        eprintln!("{}: {} {}", case.name, response.status, message.trim());
        if Some(response.status) != case.status {
            failures.push(format!(
                "{}: expected {:?}, got {} {message}",
                case.name, case.status, response.status
            ));
        }
        let error = serde_json::from_slice::<serde_json::Value>(&response.body)
            .ok()
            .and_then(|body| body["error"].as_str().map(str::to_owned));
        if error.is_none_or(|e| e.len() < 8) {
            failures.push(format!("{}: no error message in {message:?}", case.name));
        }
        let health = server.health().expect("/health");
        assert_eq!(health.status, 200, "after {}: /health", case.name);
        assert_eq!(
            server.query_i64(count_sql),
            stored,
            "after {}: the stored spans changed",
            case.name
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    let good = sentry_envelope(&hex_id(&trace_id(TAG, 2)), &hex_id(&span_id(TAG, 2)));
    let response = server.post(path, &[GZIP], &gzip(&good)).expect("POST");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(server.query_i64(count_sql), stored + 1);
}
