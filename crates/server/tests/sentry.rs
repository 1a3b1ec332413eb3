//! `POST /api/{project_id}/envelope/`: Sentry envelopes, bad input and overload.

mod common;

use std::io::Write as _;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use lighttrace_server::ServerConfig;
use serde_json::json;

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

fn transaction(name: &str, root: &str, children: &[(&str, &str)]) -> String {
    let spans: Vec<_> = children
        .iter()
        .map(|(span_id, description)| {
            json!({
                "trace_id": TRACE, "span_id": span_id, "parent_span_id": root,
                "op": "db", "description": description,
                "start_timestamp": "2024-05-01T12:00:00.100000Z",
                "timestamp": "2024-05-01T12:00:00.200000Z",
                "status": "ok"
            })
        })
        .collect();
    json!({
        "type": "transaction",
        "event_id": "9ec79c33ec9942ab8353589fcb2e04dc",
        "transaction": name,
        "contexts": {"trace": {"trace_id": TRACE, "span_id": root, "op": "http.server", "status": "ok"}},
        "start_timestamp": 1714564800.0,
        "timestamp": 1714564800.5,
        "release": "shop@1.0",
        "spans": spans
    })
    .to_string()
}

fn envelope(items: &[(&str, &str)]) -> Vec<u8> {
    let mut out = b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\",\"sent_at\":\"2024-05-01T12:00:01Z\"}\n".to_vec();
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

async fn post(app: &TestApp, path: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> Reply {
    let mut request = Request::post(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    app.send(request.body(body.into()).unwrap()).await
}

fn brotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        writer.write_all(bytes).unwrap();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_is_queryable_as_soon_as_acknowledged() {
    let app = TestApp::new().await;
    let body = envelope(&[(
        "transaction",
        &transaction(
            "GET /cart",
            "aaaaaaaaaaaaaaa1",
            &[("aaaaaaaaaaaaaaa2", "SELECT 1")],
        ),
    )]);
    let reply = post(
        &app,
        "/api/42/envelope/?sentry_key=public&sentry_version=7",
        &[(
            header::CONTENT_TYPE.as_str(),
            "application/x-sentry-envelope",
        )],
        body,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!({"id": "9ec79c33ec9942ab8353589fcb2e04dc"})
    );
    let rows = app
        .rows(
            "SELECT project, service_name, name, kind, parent_span_id, source, \
             attributes['sentry.release'] FROM spans ORDER BY start_time",
        )
        .await;
    assert_eq!(
        rows,
        vec![
            json!([
                "42",
                "42",
                "GET /cart",
                "server",
                null,
                "sentry",
                "shop@1.0"
            ]),
            json!([
                "42",
                "42",
                "SELECT 1",
                "client",
                "aaaaaaaaaaaaaaa1",
                "sentry",
                "shop@1.0"
            ]),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_br_identity_and_any_content_type_are_accepted() {
    let app = TestApp::new().await;
    let cases: Vec<(Option<&str>, Option<&str>, Vec<u8>)> = vec![
        (None, None, b"1".to_vec()),
        (Some("text/plain"), Some("gzip"), b"2".to_vec()),
        (
            Some("application/x-sentry-envelope"),
            Some("br"),
            b"3".to_vec(),
        ),
        (Some("application/json"), Some("identity"), b"4".to_vec()),
    ];
    for (i, (content_type, encoding, tag)) in cases.into_iter().enumerate() {
        let root = format!("{:0>16}", String::from_utf8(tag).unwrap());
        let body = envelope(&[("transaction", &transaction(&format!("t{i}"), &root, &[]))]);
        let body = match encoding {
            Some("gzip") => gzip(&body),
            Some("br") => brotli(&body),
            _ => body,
        };
        let mut headers = Vec::new();
        if let Some(ct) = content_type {
            headers.push((header::CONTENT_TYPE.as_str(), ct));
        }
        if let Some(encoding) = encoding {
            headers.push((header::CONTENT_ENCODING.as_str(), encoding));
        }
        // With and without the trailing slash.
        let path = if i % 2 == 0 {
            "/api/7/envelope/"
        } else {
            "/api/7/envelope"
        };
        let reply = post(&app, path, &headers, body).await;
        assert_eq!(reply.status, StatusCode::OK, "case {i}: {}", reply.text());
    }
    assert_eq!(app.count().await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_items_are_ignored_and_answered_200() {
    let app = TestApp::new().await;
    let body = envelope(&[
        (
            "session",
            r#"{"sid":"a","status":"ok","started":"2024-05-01T12:00:00Z"}"#,
        ),
        ("client_report", r#"{"discarded_events":[]}"#),
        ("attachment", "some bytes"),
    ]);
    let reply = post(&app, "/api/1/envelope/", &[], body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.json()["id"],
        json!("9ec79c33ec9942ab8353589fcb2e04dc")
    );
    assert_eq!(app.count().await, 0);

    // An envelope without an event id is answered with a generated one.
    let reply = post(&app, "/api/1/envelope/", &[], "{}").await;
    assert_eq!(reply.status, StatusCode::OK);
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_events_are_stored_with_the_envelopes_spans() {
    let app = TestApp::new().await;
    let event = json!({
        "event_id": "0123456789abcdef0123456789abcdef",
        "level": "error",
        "exception": {"values": [{"type": "ValueError", "value": "boom"}]},
        "contexts": {"trace": {"trace_id": TRACE, "span_id": "aaaaaaaaaaaaaaa1"}}
    })
    .to_string();
    let body = envelope(&[
        ("transaction", &transaction("t", "aaaaaaaaaaaaaaa1", &[])),
        ("event", &event),
    ]);
    let reply = post(&app, "/api/1/envelope/", &[], body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(app.count().await, 1, "the transaction's span");
    let rows = app
        .rows(&format!(
            "SELECT project, event_id, level, exception_type, exception_value, span_id, source \
             FROM errors WHERE trace_id = '{TRACE}'"
        ))
        .await;
    assert_eq!(
        rows,
        vec![json!([
            "1",
            "0123456789abcdef0123456789abcdef",
            "error",
            "ValueError",
            "boom",
            "aaaaaaaaaaaaaaa1",
            "sentry"
        ])]
    );
    // Both tables answer in one query.
    let spans_and_errors = app
        .rows("SELECT (SELECT count(*) FROM spans) AS s, (SELECT count(*) FROM errors) AS e")
        .await;
    assert_eq!(spans_and_errors, vec![json!([1, 1])]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_projects_the_dsn_key_must_be_the_url_projects() {
    use lighttrace_server::{ProjectKey, Projects, ServerConfig};
    let projects = Projects::new(vec![
        ProjectKey::parse("1:pub-one").unwrap(),
        ProjectKey::parse("2:pub-two").unwrap(),
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
    let body = || envelope(&[("transaction", &transaction("t", "aaaaaaaaaaaaaaa1", &[]))]);
    let auth = |key: &str| format!("Sentry sentry_key={key}, sentry_version=7");
    for (path, key) in [
        ("/api/1/envelope/", None),
        ("/api/1/envelope/", Some("nope")),
        // Project 2's key does not write to project 1.
        ("/api/1/envelope/", Some("pub-two")),
    ] {
        let value = key.map(auth);
        let headers: Vec<(&str, &str)> = value
            .as_deref()
            .map(|v| vec![("x-sentry-auth", v)])
            .unwrap_or_default();
        let reply = post(&app, path, &headers, body()).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path} {key:?}");
    }
    assert_eq!(app.lake.stats().buffered_rows, 0, "nothing stored");
    let value = auth("pub-one");
    let reply = post(
        &app,
        "/api/1/envelope/",
        &[("x-sentry-auth", &value)],
        body(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let reply = post(&app, "/api/2/envelope/?sentry_key=pub-two", &[], body()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(app.lake.stats().buffered_rows, 2);
}

/// (path, headers, body, what the error says).
type BadCase = (
    &'static str,
    Vec<(&'static str, &'static str)>,
    Vec<u8>,
    &'static str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_envelopes_are_400_with_a_reason_and_harm_nothing() {
    let app = TestApp::new().await;
    let zero_ids = json!({
        "transaction": "t", "start_timestamp": 1, "timestamp": 2,
        "contexts": {"trace": {"trace_id": "00000000000000000000000000000000", "span_id": "aaaaaaaaaaaaaaa1"}}
    })
    .to_string();
    let cases: Vec<BadCase> = vec![
        (
            "/api/1/envelope/",
            vec![],
            b"".to_vec(),
            "invalid Sentry envelope: the body is empty",
        ),
        (
            "/api/1/envelope/",
            vec![],
            b"{}\n{\"type\":\"transaction\",\"length\":999}\n{}".to_vec(),
            "item 1 declares a length of 999 bytes, but only 2 follow",
        ),
        (
            "/api/1/envelope/",
            vec![],
            b"{}\n{\"type\":\"transaction\"}\n{\"spans\":{}}".to_vec(),
            "is not a valid transaction",
        ),
        (
            "/api/1/envelope/",
            vec![],
            envelope(&[("transaction", &zero_ids)]),
            "every span was rejected (1): 1 span rejected: item 1 transaction: trace id must not be all zeros",
        ),
        (
            "/api/1/envelope/",
            vec![(header::CONTENT_ENCODING.as_str(), "gzip")],
            b"not gzip".to_vec(),
            "invalid gzip body",
        ),
        (
            "/api/1/envelope/",
            vec![(header::CONTENT_ENCODING.as_str(), "br")],
            b"not brotli at all".to_vec(),
            "invalid br body",
        ),
        (
            "/api/..%2Fetc/envelope/",
            vec![],
            envelope(&[]),
            "invalid project id",
        ),
    ];
    for (path, headers, body, want) in cases {
        let reply = post(&app, path, &headers, body).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{want}: {}",
            reply.text()
        );
        let message = reply.json()["error"].as_str().unwrap().to_owned();
        assert!(message.contains(want), "{want:?} not in {message:?}");
    }
    let reply = post(
        &app,
        "/api/1/envelope/",
        &[(header::CONTENT_ENCODING.as_str(), "zstd")],
        "x",
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(app.count().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_bodies_are_413() {
    let config = ServerConfig {
        max_body_bytes: 4096,
        max_decompressed_bytes: 64 * 1024,
        ..ServerConfig::default()
    };
    let app = TestApp::with(|_| {}, config).await;
    let reply = post(&app, "/api/1/envelope/", &[], vec![b' '; 5000]).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    // A small gzip body that inflates past the limit.
    let bomb = gzip(&vec![b'{'; 200_000]);
    assert!(bomb.len() < 4096);
    let reply = post(
        &app,
        "/api/1/envelope/",
        &[(header::CONTENT_ENCODING.as_str(), "gzip")],
        bomb,
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.text()
    );
    assert!(reply.json()["error"].as_str().unwrap().contains("65536"));
}

fn assert_rate_limited(reply: &Reply) {
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        reply.text()
    );
    let secs = reply.retry_after_secs().expect("Retry-After");
    assert!(secs >= 1);
    assert_eq!(
        reply.headers["x-sentry-rate-limits"].to_str().unwrap(),
        format!("{secs}::organization")
    );
    assert!(reply.json()["error"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_in_flight_answer_429() {
    let config = ServerConfig {
        max_inflight_ingest: 1,
        ..ServerConfig::default()
    };
    let app = TestApp::with(|_| {}, config).await;
    let (sender, first) = app.hold_an_ingest_permit();
    let mut refused = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let body = envelope(&[("transaction", &transaction("t", "aaaaaaaaaaaaaaa1", &[]))]);
        let reply = post(&app, "/api/1/envelope/", &[], body).await;
        if reply.status != StatusCode::OK {
            refused = Some(reply);
            break;
        }
    }
    assert_rate_limited(&refused.expect("never refused"));
    drop(sender);
    first.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_buffers_answer_429() {
    let app = TestApp::with_small_buffers().await;
    let children: Vec<(String, String)> = (0..100)
        .map(|i| (format!("{:016x}", i + 2), "x".repeat(200)))
        .collect();
    let mut refused = None;
    for round in 0..200u32 {
        let children: Vec<(&str, &str)> = children
            .iter()
            .map(|(id, d)| (id.as_str(), d.as_str()))
            .collect();
        let body = envelope(&[(
            "transaction",
            &transaction(&format!("t{round}"), "0000000000000001", &children),
        )]);
        let reply = post(&app, "/api/1/envelope/", &[], body).await;
        if reply.status != StatusCode::OK {
            refused = Some(reply);
            break;
        }
    }
    assert_rate_limited(&refused.expect("the buffers never filled up"));
}
