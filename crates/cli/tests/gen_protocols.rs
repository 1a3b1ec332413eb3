//! `lighttrace gen --protocol` against the real binary: the same generated
//! traces sent as OTLP/gRPC, Zipkin v2 JSON and Sentry envelopes all arrive,
//! span for span, with their source and their services.

mod common;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use common::*;

const TRACES: &str = "25";
const GEN_TIMEOUT: Duration = Duration::from_secs(120);

/// Sends [`TRACES`] traces with `protocol` to `target`; the `--json` summary.
fn gen_to(target: &str, protocol: &str, extra: &[&str]) -> Value {
    let topology = hipster_shop_topology();
    let output = run_ok(
        Command::new(LIGHTTRACE)
            .args(["gen", "--topology"])
            .arg(&topology)
            .args(["--traces", TRACES, "--seed", "4", "--target", target])
            .args(["--protocol", protocol, "--no-progress", "--json"])
            .args(["--batch-spans", "60"])
            .args(extra),
        GEN_TIMEOUT,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("gen --json printed {stdout:?}: {e}"))
}

/// Every span sent is stored once, from `source`, under the topology's
/// service names.
fn assert_stored(server: &TestServer, summary: &Value, source: &str) {
    let sent = as_i64(&summary["spans"]);
    assert!(sent > 0, "{summary}");
    assert_eq!(summary["traces"], 25, "{summary}");
    assert!(as_i64(&summary["payload_bytes"]) > sent * 100, "{summary}");
    let stored = server.query_i64(&format!(
        "SELECT count(*) FROM spans WHERE source = '{source}'"
    ));
    assert_eq!(stored, sent, "{}", server.logs());
    let distinct = server.query_i64("SELECT count(DISTINCT span_id) FROM spans");
    assert_eq!(distinct, sent);
    let traces = server.query_i64("SELECT count(DISTINCT trace_id) FROM spans");
    assert_eq!(traces, 25);
    let frontend = server.query_i64("SELECT count(*) FROM spans WHERE service_name = 'frontend'");
    assert!(frontend > 0, "no span of the frontend service");
}

#[test]
fn gen_sends_otlp_grpc() {
    let server = TestServer::start();
    let target = format!("http://{}", server.grpc_addr());
    let summary = gen_to(&target, "otlp-grpc", &["--gzip"]);
    assert_stored(&server, &summary, "otlp");
}

#[test]
fn gen_sends_zipkin_json() {
    let server = TestServer::start();
    let summary = gen_to(&server.url(), "zipkin", &[]);
    assert_stored(&server, &summary, "zipkin");
}

#[test]
fn gen_sends_sentry_envelopes() {
    let server = TestServer::start();
    let summary = gen_to(&server.url(), "sentry", &["--sentry-project", "7"]);
    assert_stored(&server, &summary, "sentry");
    let projects = server.query_i64("SELECT count(*) FROM spans WHERE project = '7'");
    assert_eq!(projects, as_i64(&summary["spans"]));
}
