//! `POST /api/v1/sql`: the JSON shape, Arrow IPC streams and refused statements.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use serde_json::json;

async fn app_with_spans() -> TestApp {
    let app = TestApp::new().await;
    let mut root = span(0xab, 1, None, "GET /cart", 0);
    root.status = Some(opentelemetry_proto::tonic::trace::v1::Status {
        message: "boom".into(),
        code: 2,
    });
    let body = protobuf(&request(
        "checkout",
        vec![root, span(0xab, 2, Some(1), "SELECT", 1)],
    ));
    let reply = app.post_traces(PROTOBUF, None, body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_results_have_typed_columns_and_json_values() {
    let app = app_with_spans().await;
    let reply = app
        .sql(
            "SELECT span_id, parent_span_id, start_time, duration_ns, status_code, \
             attributes, events FROM spans ORDER BY span_id",
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.content_type(), JSON);
    let body = reply.json();
    let columns = body["columns"].as_array().unwrap();
    let names: Vec<&str> = columns
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "span_id",
            "parent_span_id",
            "start_time",
            "duration_ns",
            "status_code",
            "attributes",
            "events"
        ]
    );
    assert_eq!(columns[0]["type"], json!("Utf8"));
    assert_eq!(columns[3]["type"], json!("Int64"));
    let start_type = columns[2]["type"].as_str().unwrap();
    assert!(start_type.starts_with("Timestamp("), "{start_type}");
    assert!(columns[5]["type"].as_str().unwrap().starts_with("Map("));

    let rows = body["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0],
        json!([
            "0101010101010101",
            null,
            "2024-05-01T12:00:00.000000000Z",
            1_500_123,
            "error",
            {"http.route": "/cart"},
            []
        ])
    );
    assert_eq!(rows[1][1], json!("0101010101010101"));
    assert_eq!(rows[1][2], json!("2024-05-01T12:00:00.001000000Z"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_result_keeps_its_columns() {
    let app = app_with_spans().await;
    let reply = app
        .sql("SELECT name, count(*) AS n FROM spans WHERE name = 'nothing' GROUP BY name")
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["columns"][1]["name"], json!("n"));
    assert_eq!(body["rows"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrow_stream_results_on_request() {
    let app = app_with_spans().await;
    let request = Request::post("/api/v1/sql")
        .header(header::CONTENT_TYPE, JSON)
        .header(header::ACCEPT, "application/vnd.apache.arrow.stream")
        .body(Body::from(
            json!({"sql": "SELECT trace_id, start_time FROM spans ORDER BY span_id"}).to_string(),
        ))
        .unwrap();
    let reply = app.send(request).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.content_type(), "application/vnd.apache.arrow.stream");
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(reply.body.to_vec()), None)
            .expect("an Arrow IPC stream");
    let schema = reader.schema();
    assert_eq!(schema.field(0).name(), "trace_id");
    assert_eq!(schema.field(1).name(), "start_time");
    let batches: Vec<_> = reader.collect::<Result<_, _>>().expect("batches");
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_invalid_statements_are_400_with_a_message() {
    let app = app_with_spans().await;
    for sql in [
        "CREATE TABLE t AS SELECT * FROM spans",
        "DROP TABLE spans",
        "INSERT INTO spans (name) VALUES ('x')",
        "COPY (SELECT * FROM spans) TO '/tmp/lighttrace-copy.parquet'",
        "CREATE EXTERNAL TABLE etc STORED AS CSV LOCATION '/etc/passwd'",
        "SELECT * FROM '/etc/passwd'",
        "SET datafusion.execution.batch_size = 1",
        "SELEC name FROM spans",
        "SELECT no_such_column FROM spans",
        "SELECT * FROM no_such_table",
    ] {
        let reply = app.sql(sql).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{sql}: {}",
            reply.text()
        );
        assert_eq!(reply.content_type(), JSON);
        let message = reply.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(!message.is_empty(), "{sql}");
    }
    // The data is still there.
    assert_eq!(app.count().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_sql_requests_are_400() {
    let app = TestApp::new().await;
    for body in [
        "",
        "not json",
        r#"{"query": "SELECT 1"}"#,
        r#"{"sql": 5}"#,
        r#"{"sql": "  "}"#,
    ] {
        let request = Request::post("/api/v1/sql")
            .header(header::CONTENT_TYPE, JSON)
            .body(Body::from(body))
            .unwrap();
        let reply = app.send(request).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            reply.text()
        );
        assert!(reply.json()["error"].is_string(), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_beyond_the_concurrency_limit_answer_503() {
    let config = lighttrace_server::ServerConfig {
        max_concurrent_queries: 1,
        ..lighttrace_server::ServerConfig::default()
    };
    let app = std::sync::Arc::new(TestApp::with(|_| {}, config).await);
    let slow = {
        let app = app.clone();
        tokio::spawn(async move {
            app.sql("SELECT count(*) FROM generate_series(1, 2000000000) AS t(x) WHERE x % 7 = 3")
                .await
                .status
        })
    };
    let mut refused = None;
    for _ in 0..200 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let reply = app.sql("SELECT 1").await;
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            refused = Some(reply);
            break;
        }
    }
    let refused = refused.expect("a second query was never refused while the first ran");
    assert!(
        refused.text().contains("too many queries"),
        "{}",
        refused.text()
    );
    assert!(refused.retry_after_secs().is_some_and(|s| s >= 1));
    slow.abort();
}
