//! Projects and keys: every receiver and SQL refuse a missing or wrong key with
//! 401 and store nothing; a key writes to, and reads, its own project only.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use lighttrace_server::{ProjectKey, Projects, ServerConfig};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use serde_json::json;
use tonic::Code;
use tonic::transport::Endpoint;

async fn app_with_projects() -> TestApp {
    let projects = Projects::new(vec![
        ProjectKey::parse("1:key-one").unwrap(),
        ProjectKey::parse("2:key-two").unwrap(),
    ])
    .unwrap();
    TestApp::with(
        |_| {},
        ServerConfig {
            projects,
            ..ServerConfig::default()
        },
    )
    .await
}

fn traces(service: &str, trace: u8, key: Option<(&'static str, &str)>) -> Request<Body> {
    let mut request =
        Request::post("/v1/traces").header(header::CONTENT_TYPE, "application/x-protobuf");
    if let Some((name, value)) = key {
        request = request.header(name, value);
    }
    request
        .body(Body::from(protobuf(&request_of(service, trace))))
        .unwrap()
}

fn request_of(
    service: &str,
    trace: u8,
) -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    request(service, vec![span(trace, 1, None, "op", 0)])
}

fn sql(query: &str, key: Option<&str>) -> Request<Body> {
    let mut request = Request::post("/api/v1/sql").header(header::CONTENT_TYPE, "application/json");
    if let Some(key) = key {
        request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    request
        .body(Body::from(json!({ "sql": query }).to_string()))
        .unwrap()
}

fn rows(reply: &Reply) -> serde_json::Value {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()["rows"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_key_is_refused_and_nothing_is_stored() {
    let app = app_with_projects().await;
    for key in [
        None,
        Some(("authorization", "Bearer nope")),
        Some(("authorization", "Bearer key-one-")),
        Some(("x-lighttrace-key", "KEY-ONE")),
        Some(("authorization", "Basic a2V5LW9uZQ==")),
    ] {
        let reply = app.send(traces("svc", 1, key)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{key:?}");
        assert!(reply.headers.contains_key(header::WWW_AUTHENTICATE));
    }
    let zipkin = Request::post("/api/v2/spans")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("[]"))
        .unwrap();
    assert_eq!(app.send(zipkin).await.status, StatusCode::UNAUTHORIZED);
    let reply = app.send(sql("SELECT 1", None)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("missing key")
    );
    assert_eq!(
        app.send(sql("SELECT 1", Some("bad"))).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Nothing reached the lake.
    assert_eq!(app.lake.stats().buffered_rows, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_writes_and_reads_its_own_project() {
    let app = app_with_projects().await;
    let ok = app
        .send(traces("a", 1, Some(("authorization", "Bearer key-one"))))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    let ok = app
        .send(traces("b", 2, Some(("x-lighttrace-key", "key-two"))))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());

    let one = app
        .send(sql(
            "SELECT project, service_name FROM spans",
            Some("key-one"),
        ))
        .await;
    assert_eq!(rows(&one), json!([["1", "a"]]));
    // No SQL reaches another project: filters, joins, subqueries, other tables.
    for query in [
        "SELECT count(*) FROM spans WHERE project = '2'",
        "SELECT count(*) FROM spans s JOIN spans t ON s.trace_id <> t.trace_id",
        "SELECT count(*) FROM (SELECT * FROM spans WHERE service_name = 'b') x",
        "SELECT count(*) FROM logs WHERE project = '2'",
    ] {
        let reply = app.send(sql(query, Some("key-one"))).await;
        assert_eq!(rows(&reply), json!([[0]]), "{query}");
    }
    let two = app
        .send(sql(
            "SELECT project, service_name FROM spans",
            Some("key-two"),
        ))
        .await;
    assert_eq!(rows(&two), json!([["2", "b"]]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_takes_the_key_from_metadata() {
    let app = app_with_projects().await;
    let url = app.grpc_url().await;
    let channel = Endpoint::from_shared(url)
        .unwrap()
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    let mut client = TraceServiceClient::new(channel);

    let status = client.export(request_of("g", 3)).await.expect_err("no key");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    let mut call = tonic::Request::new(request_of("g", 3));
    call.metadata_mut()
        .insert("authorization", "Bearer key-two".parse().unwrap());
    client.export(call).await.expect("key-two");
    let two = app
        .send(sql(
            "SELECT project, service_name FROM spans",
            Some("key-two"),
        ))
        .await;
    assert_eq!(rows(&two), json!([["2", "g"]]));
}
