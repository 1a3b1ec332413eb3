//! A small deterministic lake shared by the query tests.
//!
//! Two projects, three UTC hours starting at 2024-01-01T00:00:00Z, three traces
//! per project and hour:
//!
//! | project | services | spans per trace |
//! |---|---|---|
//! | `acme` | `frontend` → `cart` → (`payments`, `cart`) | 4 |
//! | `globex` | `api` → `db` | 2 |
//!
//! Hours 0 and 1 are flushed to Parquet (one `flush_all` per hour, so one file per
//! partition: acme 6 files, globex 4 files); hour 2 stays buffered (5 partitions).
//!
//! Ids are readable hex: trace `aa HH TT 00…` (acme) / `bb HH TT 00…` (globex),
//! span `<trace prefix> SS 00000000`.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lighttrace_model::{
    Attr, NANOS_PER_HOUR, Source, SpanBatchBuilder, SpanKind, SpanRecord, StatusCode,
};
use lighttrace_storage::{Lake, StorageConfig};

/// 2024-01-01T00:00:00Z in nanoseconds.
pub const BASE_NS: i64 = 1_704_067_200 * 1_000_000_000;
pub const HOURS: u8 = 3;
pub const TRACES_PER_HOUR: u8 = 3;
const MS: i64 = 1_000_000;

struct SpanSpec {
    index: u8,
    parent: Option<u8>,
    service: &'static str,
    name: &'static str,
    kind: SpanKind,
    attributes: &'static [(&'static str, &'static str)],
}

const ACME: &[SpanSpec] = &[
    SpanSpec {
        index: 0,
        parent: None,
        service: "frontend",
        name: "GET /cart",
        kind: SpanKind::Server,
        attributes: &[("http.route", "/cart"), ("http.method", "GET")],
    },
    SpanSpec {
        index: 1,
        parent: Some(0),
        service: "cart",
        name: "CartService/Get",
        kind: SpanKind::Server,
        attributes: &[("rpc.method", "Get")],
    },
    SpanSpec {
        index: 2,
        parent: Some(1),
        service: "payments",
        name: "charge",
        kind: SpanKind::Client,
        attributes: &[("peer.service", "stripe")],
    },
    SpanSpec {
        index: 3,
        parent: Some(1),
        service: "cart",
        name: "SELECT carts",
        kind: SpanKind::Client,
        attributes: &[("db.system", "postgresql")],
    },
];

const GLOBEX: &[SpanSpec] = &[
    SpanSpec {
        index: 0,
        parent: None,
        service: "api",
        name: "POST /orders",
        kind: SpanKind::Server,
        attributes: &[("http.route", "/orders"), ("http.method", "POST")],
    },
    SpanSpec {
        index: 1,
        parent: Some(0),
        service: "db",
        name: "INSERT orders",
        kind: SpanKind::Client,
        attributes: &[("db.system", "mysql")],
    },
];

pub fn trace_id(project_code: u8, hour: u8, trace: u8) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[0] = project_code;
    id[1] = hour;
    id[2] = trace;
    id
}

fn span_id(project_code: u8, hour: u8, trace: u8, span: u8) -> [u8; 8] {
    [project_code, hour, trace, span, 0, 0, 0, 0]
}

/// The spans of one hour of both projects, as one batch.
pub fn hour_batch(hour: u8) -> arrow::array::RecordBatch {
    let mut builder = SpanBatchBuilder::new();
    for (project, code, specs) in [("acme", 0xaa, ACME), ("globex", 0xbb, GLOBEX)] {
        for trace in 0..TRACES_PER_HOUR {
            let trace_start =
                BASE_NS + i64::from(hour) * NANOS_PER_HOUR + i64::from(trace) * 600_000 * MS;
            for spec in specs {
                let attributes: Vec<Attr<'_>> = spec
                    .attributes
                    .iter()
                    .map(|(k, v)| Attr::string(*k, *v))
                    .collect();
                let resource = [Attr::string("service.name", spec.service)];
                let start = trace_start + i64::from(spec.index) * MS;
                let duration = (i64::from(spec.index) + 1) * 10 * MS + i64::from(trace) * MS;
                // The second trace of every hour fails at its deepest client call.
                let failed = trace == 1 && spec.kind == SpanKind::Client;
                builder.append(&SpanRecord {
                    project,
                    trace_id: trace_id(code, hour, trace),
                    span_id: span_id(code, hour, trace, spec.index),
                    parent_span_id: spec.parent.map(|p| span_id(code, hour, trace, p)),
                    trace_state: None,
                    service_name: spec.service,
                    name: spec.name,
                    kind: spec.kind,
                    start_time_ns: start,
                    end_time_ns: start + duration,
                    status_code: if failed {
                        StatusCode::Error
                    } else {
                        StatusCode::Ok
                    },
                    status_message: failed.then_some("upstream failed"),
                    attributes: &attributes,
                    resource_attributes: &resource,
                    scope_name: None,
                    scope_version: None,
                    events: &[],
                    links: &[],
                    source: Source::Otlp,
                });
            }
        }
    }
    builder.finish()
}

/// One root span of `service` in `project`, in hour 0.
pub fn single_span_batch(project: &str, service: &str, n: u8) -> arrow::array::RecordBatch {
    let mut builder = SpanBatchBuilder::new();
    builder.append(&SpanRecord {
        project,
        trace_id: trace_id(0xcc, 0, n),
        span_id: span_id(0xcc, 0, n, 0),
        parent_span_id: None,
        trace_state: None,
        service_name: service,
        name: "op",
        kind: SpanKind::Internal,
        start_time_ns: BASE_NS + i64::from(n) * MS,
        end_time_ns: BASE_NS + i64::from(n) * MS + MS,
        status_code: StatusCode::Unset,
        status_message: None,
        attributes: &[],
        resource_attributes: &[],
        scope_name: None,
        scope_version: None,
        events: &[],
        links: &[],
        source: Source::Otlp,
    });
    builder.finish()
}

pub fn storage_config(dir: &Path) -> StorageConfig {
    let mut config = StorageConfig::new(dir);
    // Nothing may flush behind the tests' back: hour 2 must stay buffered.
    config.flush_max_age = Duration::from_secs(24 * 3600);
    config
}

/// Opens a lake in `dir` holding the fixture: hours 0 and 1 in Parquet, hour 2 buffered.
pub async fn fixture_lake(dir: &Path) -> Arc<Lake> {
    let lake = Lake::open(storage_config(dir)).await.expect("open lake");
    for hour in 0..HOURS {
        lake.write(hour_batch(hour)).await.expect("write spans");
        if hour + 1 < HOURS {
            lake.flush_all().await.expect("flush");
        }
    }
    lake
}
