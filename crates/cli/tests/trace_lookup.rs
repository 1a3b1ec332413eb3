//! `lighttrace trace` through the real binary: a generated trace looked up by
//! id in upper case (and a trace with leading zeros without them), printed as
//! a plain waterfall (stdout is a pipe) with one row per span, and as JSON
//! whose tree is consistent; the same JSON from `--data`; an unknown id exits
//! non-zero with a clear message.

mod common;

use std::collections::HashMap;
use std::process::{Command, Output};
use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::Value;

use common::*;

const TIMEOUT: Duration = Duration::from_secs(120);

/// `lighttrace ARGS…` with the test's LIGHTTRACE_* variables removed; any exit.
fn lighttrace_any(args: &[&str]) -> Output {
    let mut command = Command::new(LIGHTTRACE);
    command.args(args).env_remove("NO_COLOR");
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("LIGHTTRACE_") {
            command.env_remove(&*key);
        }
    }
    run_with_timeout(&mut command, TIMEOUT)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Checks the JSON of one trace: tree order and depths agree with the parent
/// links, the critical path tiles the root, times add up. Returns the spans.
fn check_tree(trace: &Value) -> Vec<Value> {
    let spans = trace["spans"].as_array().expect("spans").clone();
    assert_eq!(as_i64(&trace["span_count"]) as usize, spans.len());
    let by_id: HashMap<&str, &Value> = spans.iter().map(|s| (as_str(&s["span_id"]), s)).collect();
    // Walking in tree order, the open ancestors are a stack indexed by depth.
    let mut ancestors: Vec<&str> = Vec::new();
    for span in &spans {
        let depth = as_i64(&span["depth"]) as usize;
        assert!(depth <= ancestors.len(), "depth jumps at {span}");
        ancestors.truncate(depth);
        match as_opt_str(&span["parent_span_id"]) {
            None => assert_eq!(depth, 0, "a root at depth {depth}: {span}"),
            Some(_) if span["orphan"] == Value::Bool(true) => assert_eq!(depth, 0),
            Some(parent) => {
                assert!(
                    by_id.contains_key(parent),
                    "parent {parent} not in the trace"
                );
                assert_eq!(
                    ancestors.last().copied(),
                    Some(parent),
                    "span {} is not under its parent in tree order",
                    span["span_id"]
                );
            }
        }
        ancestors.push(as_str(&span["span_id"]));
        let duration = as_i64(&span["duration_ns"]);
        let self_time = as_i64(&span["self_time_ns"]);
        let critical = as_i64(&span["critical_path_ns"]);
        assert!((0..=duration).contains(&self_time), "{span}");
        assert!((0..=duration).contains(&critical), "{span}");
        let offset = as_i64(&span["start_offset_ns"]);
        assert!(offset >= 0 && offset + duration <= as_i64(&trace["duration_ns"]));
    }
    let roots: i64 = spans
        .iter()
        .filter(|s| as_i64(&s["depth"]) == 0)
        .map(|s| as_i64(&s["duration_ns"]))
        .sum();
    let on_path: i64 = spans.iter().map(|s| as_i64(&s["critical_path_ns"])).sum();
    assert_eq!(on_path, roots, "the critical path tiles the roots");
    let segments: i64 = trace["critical_path"]
        .as_array()
        .expect("critical_path")
        .iter()
        .map(|s| as_i64(&s["duration_ns"]))
        .sum();
    assert_eq!(segments, roots);
    spans
}

#[test]
fn a_generated_trace_as_a_waterfall_and_as_json() {
    let server = TestServer::start();
    generate_traffic(&server, 60, 7);
    let slowest = server.query(
        "SELECT trace_id FROM spans WHERE parent_span_id IS NULL ORDER BY duration_ns DESC LIMIT 1",
    );
    let trace_id = as_str(slowest.scalar()).to_owned();
    let rows = server.query(&format!(
        "SELECT span_id, service_name, name FROM spans WHERE trace_id = '{trace_id}'"
    ));
    let span_count = rows.rows.len();
    assert!(span_count > 3, "the slowest trace has {span_count} spans");

    let typed = trace_id.trim_start_matches('0').to_uppercase();
    let url = server.url();
    let waterfall = lighttrace_any(&["trace", &typed, "--server", &url, "--width", "120"]);
    assert!(
        waterfall.status.success(),
        "{}",
        String::from_utf8_lossy(&waterfall.stderr)
    );
    let text = stdout(&waterfall);
    eprintln!("{text}");
    assert!(!text.contains('\x1b'), "colour on a pipe:\n{text}");
    assert!(text.starts_with(&format!("trace {trace_id}")), "{text}");
    // One row per span (plus the axis), each 120 columns wide.
    let bar_rows: Vec<&str> = text.lines().filter(|l| l.ends_with('|')).collect();
    assert_eq!(bar_rows.len(), span_count + 1, "{text}");
    assert!(bar_rows.iter().all(|r| r.chars().count() == 120), "{text}");
    for record in rows.records() {
        let (service, name) = (as_str(&record["service_name"]), as_str(&record["name"]));
        assert!(
            bar_rows[1..]
                .iter()
                .any(|r| r.contains(service) && r.contains(name)),
            "no row for {service} {name}:\n{text}"
        );
    }
    assert!(
        bar_rows[1].contains('#'),
        "the root is on the critical path"
    );
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("where the time went (critical path "),
        "{text}"
    );

    let json = lighttrace(
        &["trace", &typed, "--server", &url, "--format", "json"],
        TIMEOUT,
    );
    let trace: Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(as_str(&trace["trace_id"]), trace_id);
    let spans = check_tree(&trace);
    assert_eq!(spans.len(), span_count);
    assert_eq!(as_i64(&spans[0]["depth"]), 0);
    assert_eq!(
        as_i64(&trace["duration_ns"]),
        as_i64(&spans[0]["duration_ns"]),
        "one root spanning the trace"
    );
    assert_eq!(trace["warnings"], Value::Array(vec![]));

    // Straight from the data directory (the server still running): the same.
    let data_dir = server.data_dir().to_str().expect("UTF-8 path").to_owned();
    let from_data = lighttrace(
        &["trace", &trace_id, "--data", &data_dir, "--format", "json"],
        TIMEOUT,
    );
    let from_data: Value = serde_json::from_slice(&from_data.stdout).expect("JSON");
    assert_eq!(from_data, trace);
}

#[test]
fn leading_zeros_are_optional_and_unknown_ids_fail_clearly() {
    let server = TestServer::start();
    // 0000…0beef0
    let mut trace = [0u8; 16];
    trace[13..].copy_from_slice(&[0x0b, 0xee, 0xf0]);
    let start = now_ns();
    let root = span(
        trace,
        span_id(1, 1),
        None,
        "GET /",
        SpanKind::Server,
        start,
        50_000_000,
    );
    let child = span(
        trace,
        span_id(1, 2),
        Some(span_id(1, 1)),
        "SELECT",
        SpanKind::Client,
        start + 10_000_000,
        20_000_000,
    );
    // Its parent never arrives.
    let orphan = span(
        trace,
        span_id(1, 3),
        Some(span_id(1, 9)),
        "late",
        SpanKind::Internal,
        start + 60_000_000,
        5_000_000,
    );
    server.ingest(&export_request(vec![
        ("web", vec![root, child]),
        ("worker", vec![orphan]),
    ]));

    let url = server.url();
    let output = lighttrace(&["trace", "BEEF0", "--server", &url], TIMEOUT);
    let text = stdout(&output);
    assert!(
        text.starts_with("trace 000000000000000000000000000beef0"),
        "{text}"
    );
    assert!(
        text.contains("warning: 1 span whose parent was not received"),
        "{text}"
    );
    assert!(text.contains("warning: the trace has 2 roots"), "{text}");
    let json = lighttrace(
        &["trace", "beef0", "--server", &url, "--format", "json"],
        TIMEOUT,
    );
    let trace: Value = serde_json::from_slice(&json.stdout).expect("JSON");
    let spans = check_tree(&trace);
    let names: Vec<&str> = spans.iter().map(|s| as_str(&s["name"])).collect();
    assert_eq!(names, ["GET /", "SELECT", "late"]);

    for (id, says) in [
        ("beef1", "trace 000000000000000000000000000beef1 not found"),
        ("not-hex", "is not hexadecimal"),
        (&"f".repeat(33), "at most 32"),
    ] {
        let output = lighttrace_any(&["trace", id, "--server", &url]);
        assert!(!output.status.success(), "{id} succeeded");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{id}: {stderr}");
        assert!(output.stdout.is_empty(), "{id}: {}", stdout(&output));
    }
    let data_dir = server.data_dir().to_str().expect("UTF-8 path").to_owned();
    let output = lighttrace_any(&["trace", "beef1", "--data", &data_dir]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not found"));
}
