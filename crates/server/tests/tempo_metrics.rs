//! Tempo's TraceQL metrics API: `rate`, `count_over_time`,
//! `quantile_over_time`, `histogram_over_time`, `min/max/avg/sum_over_time`
//! with `by (…)`, per step and as instant queries, with exemplars that are
//! real spans of the series' own steps; and the errors.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use opentelemetry_proto::tonic::trace::v1::{Span, Status};
use serde_json::Value;

const MS: u64 = 1_000_000;
const BASE_S: u64 = BASE_NS / 1_000_000_000;

/// A span of trace `trace` (its 16 bytes all `trace`) starting `start_ms`
/// after [`BASE_NS`], lasting `duration_ms`.
fn timed(trace: u8, id: u8, parent: Option<u8>, start_ms: u64, duration_ms: u64) -> Span {
    let mut span = span(trace, id, parent, "op", 0);
    span.start_time_unix_nano = BASE_NS + start_ms * MS;
    span.end_time_unix_nano = span.start_time_unix_nano + duration_ms * MS;
    span
}

/// Service `api`: traces 1–10 in minute 0 (root spans of 1..=10 ms) and
/// traces 11–15 in minute 1 (100, 200, …, 500 ms). Service `db`: one client
/// child in each of traces 1–3 (minute 0, 20 ms), the one in trace 2 an
/// error with `db.system`.
async fn app() -> TestApp {
    let app = TestApp::new().await;
    let mut api = Vec::new();
    for i in 1..=10u8 {
        api.push(timed(i, i, None, u64::from(i) * 1000, u64::from(i)));
    }
    for i in 11..=15u8 {
        api.push(timed(
            i,
            i,
            None,
            60_000 + u64::from(i) * 1000,
            u64::from(i - 10) * 100,
        ));
    }
    let mut db = Vec::new();
    for i in 1..=3u8 {
        let mut child = timed(i, 100 + i, Some(i), u64::from(i) * 1000 + 1, 20);
        child.kind = 3;
        child.name = "SELECT".into();
        if i == 2 {
            child.status = Some(Status {
                code: 2,
                message: "deadlock".into(),
            });
            child
                .attributes
                .push(string_attr("db.system", "postgresql"));
        }
        db.push(child);
    }
    for (service, spans) in [("api", api), ("db", db)] {
        let reply = app
            .post_traces(PROTOBUF, None, protobuf(&request(service, spans)))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    app
}

fn encode(q: &str) -> String {
    url::form_urlencoded::byte_serialize(q.as_bytes()).collect()
}

/// `query_range` over the first three minutes in steps of 60 s.
async fn range(app: &TestApp, q: &str) -> Value {
    let uri = format!(
        "/api/metrics/query_range?q={}&start={BASE_S}&end={}&step=60s",
        encode(q),
        BASE_S + 180
    );
    let reply = app
        .send(Request::get(uri).body(Body::empty()).unwrap())
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{q}: {}", reply.text());
    reply.json()
}

async fn refused(app: &TestApp, query: &str) -> String {
    let uri = format!("/api/metrics/query_range?{query}");
    let reply = app
        .send(Request::get(uri).body(Body::empty()).unwrap())
        .await;
    assert_eq!(
        reply.status,
        StatusCode::BAD_REQUEST,
        "{query}: {}",
        reply.text()
    );
    reply.text()
}

/// The series whose labels include `key` = `value` (as text).
fn series<'a>(body: &'a Value, key: &str, value: &str) -> &'a Value {
    body["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            s["labels"].as_array().unwrap().iter().any(|l| {
                l["key"] == key
                    && (l["value"]["stringValue"] == value
                        || l["value"]["doubleValue"].as_f64().map(|x| x.to_string())
                            == Some(value.to_owned()))
            })
        })
        .unwrap_or_else(|| panic!("no series with {key}={value} in {body}"))
}

fn values(series: &Value) -> Vec<f64> {
    series["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["value"].as_f64().unwrap())
        .collect()
}

fn times(series: &Value) -> Vec<String> {
    series["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["timestampMs"].as_str().unwrap().to_owned())
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[tokio::test]
async fn rate_and_count_per_step_and_group() {
    let app = app().await;
    let body = range(&app, "{} | rate() by (resource.service.name)").await;
    assert_eq!(body["series"].as_array().unwrap().len(), 2, "{body}");
    let api = series(&body, "resource.service.name", "api");
    // Spans per second in each 60 s step; 0 where there were none.
    let expected = [10.0 / 60.0, 5.0 / 60.0, 0.0];
    assert!(
        values(api).iter().zip(expected).all(|(a, b)| close(*a, b)),
        "{api}"
    );
    let base_ms = BASE_S * 1000;
    assert_eq!(
        times(api),
        vec![
            base_ms.to_string(),
            (base_ms + 60_000).to_string(),
            (base_ms + 120_000).to_string()
        ]
    );
    assert_eq!(api["promLabels"], "{\"resource.service.name\"=\"api\"}");
    let db = series(&body, "resource.service.name", "db");
    assert!(close(values(db)[0], 3.0 / 60.0));

    // No `by`: one series named by the function.
    let body = range(
        &app,
        r#"{ resource.service.name = "api" } | count_over_time()"#,
    )
    .await;
    let all = series(&body, "__name__", "count_over_time");
    assert_eq!(values(all), vec![10.0, 5.0, 0.0]);
    // Exemplars of a count carry the count of their step and point at the
    // step's slowest span.
    let exemplars = all["exemplars"].as_array().unwrap();
    assert_eq!(exemplars.len(), 2, "{all}");
    assert_eq!(exemplars[0]["value"], 10.0);
    assert_eq!(
        exemplars[0]["labels"][0],
        serde_json::json!({"key": "trace:id", "value": {"stringValue": "0a".repeat(16)}})
    );
    assert_eq!(
        exemplars[0]["timestampMs"],
        (BASE_S * 1000 + 10_000).to_string()
    );
    assert_eq!(exemplars[1]["value"], 5.0);
    assert_eq!(
        exemplars[1]["labels"][0]["value"]["stringValue"],
        "0f".repeat(16)
    );
}

#[tokio::test]
async fn quantiles_are_exact_with_exemplars_on_the_closest_series() {
    let app = app().await;
    let body = range(
        &app,
        r#"{ resource.service.name = "api" } | quantile_over_time(duration, .5, 0.9)"#,
    )
    .await;
    assert_eq!(body["series"].as_array().unwrap().len(), 2, "{body}");
    let p50 = series(&body, "p", "0.5");
    let p90 = series(&body, "p", "0.9");
    // Seconds; steps without spans have no sample.
    let p50_values = values(p50);
    assert_eq!(p50_values.len(), 2, "{p50}");
    assert!(
        close(p50_values[0], 0.0055) && close(p50_values[1], 0.3),
        "{p50}"
    );
    let p90_values = values(p90);
    assert!(
        close(p90_values[0], 0.0091) && close(p90_values[1], 0.46),
        "{p90}"
    );
    // The slowest span of each step (10 ms, 500 ms) is closest to p90.
    assert!(p50["exemplars"].as_array().unwrap().is_empty(), "{p50}");
    let exemplars = p90["exemplars"].as_array().unwrap();
    let got: Vec<(f64, &str)> = exemplars
        .iter()
        .map(|e| {
            (
                e["value"].as_f64().unwrap(),
                e["labels"][0]["value"]["stringValue"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(got.len(), 2);
    assert!(close(got[0].0, 0.010) && got[0].1 == "0a".repeat(16));
    assert!(close(got[1].0, 0.5) && got[1].1 == "0f".repeat(16));
    assert_eq!(exemplars[1]["labels"][1]["key"], "span:id");
    assert_eq!(
        exemplars[1]["labels"][1]["value"]["stringValue"],
        "0f".repeat(8)
    );

    // `exemplars=0` turns them off.
    let uri = format!(
        "/api/metrics/query_range?q={}&start={BASE_S}&end={}&step=60&exemplars=0",
        encode("{} | quantile_over_time(duration, .99)"),
        BASE_S + 180
    );
    let reply = app
        .send(Request::get(uri).body(Body::empty()).unwrap())
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let body = reply.json();
    assert!(
        body["series"][0]["exemplars"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn histogram_min_max_avg_sum() {
    let app = app().await;
    let body = range(
        &app,
        r#"{ resource.service.name = "api" } | histogram_over_time(duration)"#,
    )
    .await;
    // Power-of-two buckets in seconds: 1 ms → 2^20 ns, 2 ms → 2^21 ns,
    // 3 and 4 ms → 2^22 ns, 5..8 ms → 2^23 ns, 9 and 10 ms → 2^24 ns, and
    // 100 ms → 2^27, 200 ms → 2^28, 300..500 ms → 2^29.
    let bucket = |exp: i32| (2f64.powi(exp) / 1e9).to_string();
    assert_eq!(values(series(&body, "__bucket", &bucket(20)))[0], 1.0);
    assert_eq!(values(series(&body, "__bucket", &bucket(22)))[0], 2.0);
    assert_eq!(values(series(&body, "__bucket", &bucket(23)))[0], 4.0);
    assert_eq!(
        values(series(&body, "__bucket", &bucket(29))),
        vec![0.0, 3.0, 0.0]
    );
    // A histogram's exemplar is placed at its span's duration (seconds).
    let slowest = &series(&body, "__bucket", &bucket(29))["exemplars"][0];
    assert_eq!(slowest["value"], 0.5, "{body}");
    assert_eq!(
        slowest["labels"][0]["value"]["stringValue"],
        "0f".repeat(16)
    );
    let total: f64 = body["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| values(s).iter().sum::<f64>())
        .sum();
    assert_eq!(total, 15.0);

    for (function, minute0, minute1) in [
        ("min_over_time", 0.001, 0.1),
        ("max_over_time", 0.010, 0.5),
        ("avg_over_time", 0.0055, 0.3),
        ("sum_over_time", 0.055, 1.5),
    ] {
        let body = range(
            &app,
            &format!(r#"{{ resource.service.name = "api" }} | {function}(duration)"#),
        )
        .await;
        let got = values(&body["series"][0]);
        assert!(
            got.len() == 2 && close(got[0], minute0) && close(got[1], minute1),
            "{function}: {body}"
        );
    }
}

#[tokio::test]
async fn filters_spansets_trace_level_and_existence() {
    let app = app().await;
    // Spans of traces that have an `api` span and an error span: trace 2's
    // two spans.
    let body = range(
        &app,
        r#"{ resource.service.name = "api" } && { status = error } | count_over_time() by (resource.service.name)"#,
    )
    .await;
    assert_eq!(
        values(series(&body, "resource.service.name", "api"))[0],
        1.0
    );
    assert_eq!(values(series(&body, "resource.service.name", "db"))[0], 1.0);

    // Trace-level: client spans of traces whose root is an `api` span.
    let body = range(
        &app,
        r#"{ trace:rootService = "api" && kind = client } | count_over_time()"#,
    )
    .await;
    assert_eq!(values(&body["series"][0])[0], 3.0);

    // Roots, as Grafana's Traces Drilldown asks for them; existence checks.
    let body = range(
        &app,
        "{ nestedSetParent < 0 && true } | count_over_time() with (sample = true)",
    )
    .await;
    assert_eq!(values(&body["series"][0])[..2], [10.0, 5.0]);
    let body = range(&app, "{ span.db.system != nil } | count_over_time()").await;
    assert_eq!(values(&body["series"][0])[0], 1.0);
    let body = range(&app, "{ span.db.system = nil } | count_over_time()").await;
    assert_eq!(values(&body["series"][0])[..2], [12.0, 5.0]);

    // Grouping by an intrinsic.
    let body = range(&app, "{} | count_over_time() by (status)").await;
    assert_eq!(values(series(&body, "status", "error"))[0], 1.0);
}

#[tokio::test]
async fn instant_query_is_one_value_over_the_range() {
    let app = app().await;
    let uri = format!(
        "/api/metrics/query?q={}&start={}&end={}",
        encode("{} | count_over_time() by (resource.service.name)"),
        BASE_S + 30,
        BASE_S + 150
    );
    let reply = app
        .send(Request::get(uri).body(Body::empty()).unwrap())
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let body = reply.json();
    // From 30 s (not aligned down): api traces 1..10 start at 1..10 s, so
    // only the 5 of minute 1 count; db spans all start before 30 s.
    let api = body["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["labels"][0]["value"]["stringValue"] == "api")
        .unwrap();
    assert_eq!(api["value"], 5.0, "{body}");
    assert_eq!(body["series"].as_array().unwrap().len(), 1, "{body}");
}

#[tokio::test]
async fn bad_requests_are_400_and_name_the_problem() {
    let app = app().await;
    assert!(refused(&app, "start=1").await.contains("q is required"));
    let q = |text: &str| format!("q={}&start={BASE_S}&end={}", encode(text), BASE_S + 60);
    assert!(refused(&app, &q("{}")).await.contains("needs a function"));
    assert!(
        refused(&app, &q("{} | topk(3)"))
            .await
            .contains("`topk` is not a supported")
    );
    assert!(
        refused(&app, &q("{} | rate() | topk(3)"))
            .await
            .contains("second-stage")
    );
    assert!(
        refused(&app, &q("{} | quantile_over_time(duration)"))
            .await
            .contains("unexpected `)`")
    );
    assert!(
        refused(&app, &q("{} | quantile_over_time(duration, 2)"))
            .await
            .contains("not a quantile")
    );
    assert!(
        refused(&app, &q("{} | avg_over_time(name)"))
            .await
            .contains("only `duration` and numeric")
    );
    assert!(
        refused(&app, &q("{ nestedSetParent > 3 } | rate()"))
            .await
            .contains("root tests")
    );
    let rate = encode("{} | rate()");
    assert!(
        refused(&app, &format!("q={rate}&start=200&end=100"))
            .await
            .contains("start must be before end")
    );
    assert!(
        refused(&app, &format!("q={rate}&start=0&end=100000&step=1"))
            .await
            .contains("at most 11000")
    );
    assert!(
        refused(&app, &format!("q={rate}&exemplars=-1"))
            .await
            .contains("exemplars must be")
    );
    assert!(
        refused(&app, &format!("q={rate}&step=soon"))
            .await
            .contains("step must be")
    );
    // Search refuses metrics queries and says where they go.
    let reply = app
        .send(
            Request::get(format!("/api/search?q={rate}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.text().contains("/api/metrics/query_range"),
        "{}",
        reply.text()
    );
}
