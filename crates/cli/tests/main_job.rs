//! The README's first steps, small: generate hipster-shop traffic into a server with
//! `lighttrace gen`, then ask for latency per service and operation in SQL, over
//! HTTP and through `lighttrace sql --server`.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;

const TRACES: i64 = 200;

/// Per service and operation: span count and latency percentiles in milliseconds.
const LATENCY_SQL: &str = "\
SELECT service_name, name, count(*) AS spans,
       approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ns) / 1e6 AS p50_ms,
       approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ns) / 1e6 AS p99_ms
FROM spans
GROUP BY service_name, name
ORDER BY p99_ms DESC";

fn topology_services() -> BTreeSet<String> {
    let topology: serde_json::Value =
        serde_json::from_slice(&std::fs::read(hipster_shop_topology()).expect("read the topology"))
            .expect("the topology is JSON");
    topology["topology"]["services"]
        .as_array()
        .expect("topology.services")
        .iter()
        .map(|service| {
            service["serviceName"]
                .as_str()
                .expect("serviceName")
                .to_owned()
        })
        .collect()
}

#[test]
fn generated_traffic_answers_latency_per_service_and_operation() {
    let server = TestServer::start();
    generate_traffic(&server, TRACES as u32, 1);

    let roots = server.query_i64("SELECT count(*) FROM spans WHERE parent_span_id IS NULL");
    assert_eq!(roots, TRACES, "one root span per generated trace");
    assert_eq!(
        server.query_i64("SELECT count(DISTINCT trace_id) FROM spans"),
        TRACES
    );

    let latency = server.query(LATENCY_SQL);
    assert!(!latency.rows.is_empty());
    let known = topology_services();
    let mut seen = BTreeSet::new();
    for row in latency.records() {
        let service = as_str(&row["service_name"]).to_owned();
        assert!(
            known.contains(&service),
            "{service} is not a hipster-shop service"
        );
        assert!(as_i64(&row["spans"]) > 0);
        let (p50, p99) = (as_f64(&row["p50_ms"]), as_f64(&row["p99_ms"]));
        assert!(0.0 <= p50 && p50 <= p99, "{row:?}");
        seen.insert(service);
    }
    // /cart (78% of root traffic) and /product (16%) reach these in any 200 traces.
    for service in [
        "frontend",
        "cartservice",
        "recommendationservice",
        "productcatalogservice",
    ] {
        assert!(seen.contains(service), "no spans of {service}: {seen:?}");
    }

    // The same question through the CLI, as the README shows it.
    let output = lighttrace(
        &["sql", LATENCY_SQL, "--server", &server.url()],
        Duration::from_secs(120),
    );
    let table = String::from_utf8_lossy(&output.stdout);
    for service in ["frontend", "cartservice"] {
        assert!(table.contains(service), "no {service} in:\n{table}");
    }
}
