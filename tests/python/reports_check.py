#!/usr/bin/env python3
"""Checks LightTrace's named reports against an independent computation.

Usage:
    reports_check.py inject URL             # send the N+1 fixtures over OTLP/HTTP JSON
    reports_check.py check LIGHTTRACE DATA  # run every report, compare

`inject` posts a handful of hand-made traces (sequential and parallel repeated
database and HTTP calls, runs below and above the threshold) so that the
`n-plus-one` report has something to find in otherwise generated traffic.

`check` runs `LIGHTTRACE report NAME --data DATA --format json` for every report
and recomputes each one from the lake's Parquet files with DuckDB (exact
`quantile_cont` percentiles) and plain Python (the critical path, the N+1
runs, the exemplar slices), written from the reports' documented rules and not
from LightTrace's code. Prints what it compared; exits 1 with the first
difference.
"""

import bisect
import collections
import json
import math
import os
import re
import subprocess
import sys
import time
import urllib.request

import duckdb

WIDE = ["-p", "from=2000-01-01T00:00:00Z", "-p", "to=2100-01-01T00:00:00Z"]


def fail(message):
    print(f"MISMATCH: {message}", file=sys.stderr)
    sys.exit(1)


def close(a, b, what, rel=1e-9, abs_=1e-6):
    """Equal but for floating-point rounding (or within 1 ns)."""
    if a is None or b is None:
        if a is not b:
            fail(f"{what}: {a!r} != {b!r}")
        return
    if not math.isclose(float(a), float(b), rel_tol=rel, abs_tol=abs_):
        fail(f"{what}: {a!r} != {b!r}")


# ---------------------------------------------------------------- inject

def otlp_span(trace_id, span_id, parent, name, kind, start, end, attributes=()):
    span = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": name,
        "kind": kind,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(end),
        "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attributes],
    }
    if parent:
        span["parentSpanId"] = parent
    return span


def inject(url):
    base = time.time_ns() - 120 * 10**9
    spans = []
    counter = [0]

    def new_id(width):
        counter[0] += 1
        return f"{counter[0]:0{width}x}"

    def trace(name, calls):
        """A server root span and its client calls: (start offset µs, length µs, attrs)."""
        trace_id = "ab" + new_id(30)
        root = new_id(16)
        start = base + counter[0] * 10**9
        end = start + 10**9
        spans.append(otlp_span(trace_id, root, None, name, 2, start, end))
        for offset, length, call_name, attrs in calls:
            s = start + offset * 1000
            spans.append(otlp_span(trace_id, new_id(16), root, call_name, 3, s, s + length * 1000, attrs))

    def db(statement):
        return [("db.system", "postgresql"), ("db.statement", statement)]

    def http(url):
        return [("http.request.method", "GET"), ("url.full", url)]

    # Six sequential queries differing only in a literal: one detection of six.
    trace("GET /products", [(i * 1000, 900, "SELECT products", db(f"SELECT * FROM products WHERE id = {i + 17}")) for i in range(6)])
    # Four sequential queries: below the threshold.
    trace("GET /few", [(i * 1000, 900, "SELECT users", db(f"SELECT * FROM users WHERE id = {i}")) for i in range(4)])
    # Eight queries in parallel (a fan-out): no detection.
    trace("GET /fanout", [(i * 10, 900, "SELECT stock", db(f"SELECT * FROM stock WHERE sku = 'A-{i}'")) for i in range(8)])
    # Five HTTP calls one after the other, ids in the path and a query string.
    trace("GET /team", [(i * 2000, 1500, "GET", http(f"http://users.internal/users/{1000 + i}?expand=true")) for i in range(5)])
    # A run of five, a call overlapping the fifth, then four more after it:
    # two runs of five, two detections in one trace.
    calls = [(i * 1000, 900, "SELECT orders", db(f"SELECT * FROM orders WHERE id = {i}")) for i in range(5)]
    calls.append((4500, 900, "SELECT orders", db("SELECT * FROM orders WHERE id = 99")))
    calls += [(6000 + i * 1000, 900, "SELECT orders", db(f"SELECT * FROM orders WHERE id = {50 + i}")) for i in range(4)]
    trace("GET /orders", calls)
    # Ten sequential Redis commands keyed by a hex id: one detection of ten.
    trace("GET /session", [(i * 300, 200, "HGET", [("db.system", "redis"), ("db.statement", f"HGET session:{i:016x}")]) for i in range(10)])

    body = {
        "resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]},
            "scopeSpans": [{"spans": spans}],
        }]
    }
    request = urllib.request.Request(
        url.rstrip("/") + "/v1/traces", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200, response.status
    print(json.dumps({"injected_spans": len(spans)}))


# ---------------------------------------------------------------- check

def report(binary, data, name, *params):
    args = [binary, "report", name, "--data", data, "--format", "json", *WIDE]
    for p in params:
        args += ["-p", p]
    out = subprocess.run(args, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        fail(f"lighttrace report {name} failed: {out.stderr}")
    return json.loads(out.stdout)


def connect(data):
    pattern = os.path.join(data, "spans", "**", "*.parquet")
    con = duckdb.connect()
    con.execute(f"""
        CREATE VIEW spans AS
        SELECT lower(hex(trace_id)) AS trace_id, lower(hex(span_id)) AS span_id,
               CASE WHEN parent_span_id IS NULL THEN NULL ELSE lower(hex(parent_span_id)) END AS parent_span_id,
               service_name, name, kind, epoch_ns(start_time) AS start_ns, duration_ns,
               status_code, coalesce(status_message, '') AS status_message, attributes
        FROM read_parquet('{pattern}', hive_partitioning = true)""")
    return con


def check_latency(binary, data, con):
    ours = report(binary, data, "latency")
    theirs = con.execute("""
        SELECT service_name, name, count(*), avg(CASE WHEN status_code = 'error' THEN 1.0 ELSE 0.0 END),
               quantile_cont(duration_ns, [0.5, 0.9, 0.95, 0.99]), max(duration_ns)
        FROM spans GROUP BY ALL ORDER BY service_name, name""").fetchall()
    if len(ours) != len(theirs):
        fail(f"latency: {len(ours)} rows, DuckDB {len(theirs)}")
    for row, (service, name, count, error_rate, quantiles, max_ns) in zip(ours, theirs):
        what = f"latency {service} {name}"
        if (row["service_name"], row["name"], row["count"]) != (service, name, count):
            fail(f"{what}: {row}")
        close(row["error_rate"], error_rate, what + " error_rate")
        for key, q in zip(["p50_ms", "p90_ms", "p95_ms", "p99_ms"], quantiles):
            close(row[key], q / 1e6, f"{what} {key}")
        close(row["max_ms"], max_ns / 1e6, what + " max_ms")
    # Buckets of five minutes, one service.
    ours = report(binary, data, "latency", "bucket=5m", "service=cartservice")
    theirs = con.execute("""
        SELECT (start_ns // 300000000000) * 300 AS bucket_s, name, count(*),
               quantile_cont(duration_ns, [0.5, 0.99])
        FROM spans WHERE service_name = 'cartservice' GROUP BY ALL ORDER BY bucket_s, name""").fetchall()
    if len(ours) != len(theirs) or len(ours) < 2:
        fail(f"latency by bucket: {len(ours)} rows, DuckDB {len(theirs)}")
    for row, (bucket_s, name, count, (p50, p99)) in zip(ours, theirs):
        expected = time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime(bucket_s))
        if (row["bucket"], row["name"], row["count"]) != (expected, name, count):
            fail(f"latency by bucket: {row} vs {(expected, name, count)}")
        close(row["p50_ms"], p50 / 1e6, f"bucket {expected} {name} p50")
        close(row["p99_ms"], p99 / 1e6, f"bucket {expected} {name} p99")
    print(f"latency: {len(theirs)} bucketed rows and the overall rows match DuckDB's quantile_cont")


def check_errors(binary, data, con):
    ours = report(binary, data, "errors")
    theirs = con.execute("""
        WITH per_trace AS (
          SELECT service_name, name, status_message, trace_id, count(*) AS spans,
                 max(start_ns) AS last_ns, bool_or(parent_span_id IS NULL) AS root
          FROM spans WHERE status_code = 'error' GROUP BY ALL
        )
        SELECT service_name, name, status_message, sum(spans)::BIGINT, count(*),
               count(*) FILTER (WHERE root),
               list(trace_id ORDER BY last_ns DESC, trace_id)[1:5]
        FROM per_trace GROUP BY ALL ORDER BY 4 DESC, 1, 2, 3""").fetchall()
    if not theirs:
        fail("errors: the generated traffic has no failed spans")
    got = [(r["service_name"], r["name"], r["status_message"], r["spans"], r["traces"],
            r["failed_roots"], r["example_trace_ids"]) for r in ours]
    want = [tuple(row) for row in theirs]
    if got != want:
        fail(f"errors:\n ours   {got}\n DuckDB {want}")
    print(f"errors: {len(want)} groups match")


def check_service_graph(binary, data, con):
    ours = report(binary, data, "service-graph")
    theirs = con.execute("""
        WITH calls AS (
          SELECT trace_id, span_id, service_name, status_code, duration_ns,
                 coalesce(attributes['peer.service'], attributes['server.address'],
                          attributes['net.peer.name'], attributes['db.system']) AS peer
          FROM spans WHERE kind IN ('client', 'producer')
        ), served AS (
          SELECT trace_id, parent_span_id, min(service_name) AS service_name
          FROM spans WHERE kind IN ('server', 'consumer') AND parent_span_id IS NOT NULL
          GROUP BY ALL
        )
        SELECT c.service_name AS caller, coalesce(s.service_name, c.peer, 'unknown') AS callee,
               s.service_name IS NULL AS peer, count(*) AS requests,
               sum(CASE WHEN c.status_code = 'error' THEN 1 ELSE 0 END) AS errors,
               quantile_cont(c.duration_ns, [0.5, 0.99]) AS q
        FROM calls c LEFT JOIN served s ON s.trace_id = c.trace_id AND s.parent_span_id = c.span_id
        GROUP BY ALL""").fetchall()
    want = {(caller, callee, peer): (requests, errors, q) for caller, callee, peer, requests, errors, q in theirs}
    got = {(r["caller"], r["callee"], r["peer"]): r for r in ours}
    if set(got) != set(want):
        fail(f"service-graph edges differ: {sorted(set(got) ^ set(want))}")
    for key, (requests, errors, (p50, p99)) in want.items():
        row = got[key]
        if (row["requests"], row["errors"]) != (requests, errors):
            fail(f"service-graph {key}: {row} vs {(requests, errors)}")
        close(row["p50_ms"], p50 / 1e6, f"service-graph {key} p50")
        close(row["p99_ms"], p99 / 1e6, f"service-graph {key} p99")
    if not any(peer for (_, _, peer) in want) or all(peer for (_, _, peer) in want):
        fail("service-graph: expected both service-to-service and peer edges")
    print(f"service-graph: {len(want)} edges match")


def check_exemplars(binary, data, con):
    (service, name) = con.execute("""
        SELECT service_name, name FROM spans WHERE parent_span_id IS NULL
        GROUP BY ALL ORDER BY count(*) DESC, 1, 2 LIMIT 1""").fetchone()
    rows = con.execute(
        "SELECT trace_id, span_id, start_ns, duration_ns FROM spans WHERE service_name = ? AND name = ?",
        [service, name]).fetchall()
    (p99,) = con.execute(
        "SELECT quantile_cont(duration_ns, 0.99) FROM spans WHERE service_name = ? AND name = ?",
        [service, name]).fetchone()
    durations = sorted(r[3] for r in rows)
    low_ms, high_ms = durations[len(durations) // 4] / 1e6, durations[len(durations) // 2] / 1e6

    def expected(matching, limit):
        first = min(r[2] for r in matching)
        width = max(r[2] for r in matching) - first + 1
        best = {}
        for r in matching:
            slice_ = (r[2] - first) * limit // width
            key = (-r[3], r[2], r[1])
            if slice_ not in best or key < best[slice_][0]:
                best[slice_] = (key, r)
        chosen = sorted((r for _, r in best.values()), key=lambda r: (r[2], r[1]))
        return [(r[0], r[1], r[3] / 1e6) for r in chosen]

    cases = [
        (["percentile=99", "limit=7"], [r for r in rows if r[3] >= p99], 7),
        ([f"min_ms={low_ms}", f"max_ms={high_ms}"], [r for r in rows if low_ms * 1e6 <= r[3] <= high_ms * 1e6], 20),
    ]
    for params, matching, limit in cases:
        ours = report(binary, data, "exemplars", f"service={service}", f"name={name}", *params)
        got = [(r["trace_id"], r["span_id"], r["duration_ms"]) for r in ours]
        want = expected(matching, limit)
        if [g[:2] for g in got] != [w[:2] for w in want]:
            fail(f"exemplars {params}:\n ours {got}\n want {want}")
        if len(want) < min(limit, len(matching)) // 2:
            fail(f"exemplars {params}: only {len(want)} slices of {limit} had a span")
    print(f"exemplars: {service} {name} by percentile and by band match")


def critical_path(spans):
    """spans: span_id -> (parent, start, end, service, name). The last-finishing-
    child walk: children clamped to their parent, a child ending exactly when
    the cursor stands still counts. Returns span_id -> critical-path ns."""
    children = collections.defaultdict(list)
    roots = []
    for span_id, (parent, *_rest) in spans.items():
        (children[parent] if parent in spans else roots).append(span_id)
    result = collections.defaultdict(int)

    def walk(span_id, lo, hi):
        cursor = hi
        kids = []
        for c in children[span_id]:
            start = min(max(spans[c][1], lo), hi)
            end = min(max(spans[c][2], start), hi)
            kids.append((end, start, c))
        kids.sort(reverse=True)
        for end, start, c in kids:
            if end > cursor:
                continue
            result[span_id] += cursor - end
            walk(c, start, end)
            cursor = start
        result[span_id] += cursor - lo

    for root in roots:
        walk(root, spans[root][1], max(spans[root][2], spans[root][1]))
    return result


def check_bottlenecks(binary, data, con):
    (service, name) = con.execute("""
        SELECT service_name, name FROM spans WHERE parent_span_id IS NULL
        GROUP BY ALL ORDER BY count(*) DESC, 1, 2 LIMIT 1""").fetchone()
    ours = report(binary, data, "bottlenecks", f"service={service}", f"name={name}")
    (slow, low, high) = con.execute("""
        SELECT quantile_cont(duration_ns, 0.95), quantile_cont(duration_ns, 0.40), quantile_cont(duration_ns, 0.60)
        FROM spans WHERE parent_span_id IS NULL AND service_name = ? AND name = ?""", [service, name]).fetchone()
    roots = con.execute("""
        SELECT trace_id, duration_ns FROM spans
        WHERE parent_span_id IS NULL AND service_name = ? AND name = ?""", [service, name]).fetchall()
    picked = {t: d >= slow for t, d in roots if d >= slow or low <= d <= high}
    con.execute("CREATE OR REPLACE TEMP TABLE picked (trace_id VARCHAR)")
    con.executemany("INSERT INTO picked VALUES (?)", [[t] for t in picked])
    rows = con.execute("""
        SELECT s.trace_id, s.span_id, s.parent_span_id, s.start_ns, s.start_ns + s.duration_ns,
               s.service_name, s.name
        FROM spans s JOIN picked USING (trace_id)""").fetchall()
    traces = collections.defaultdict(dict)
    for trace_id, span_id, parent, start, end, svc, op in rows:
        traces[trace_id][span_id] = (parent, start, end, svc, op)
    slow_n = sum(1 for s in picked.values() if s)
    typical_n = len(picked) - slow_n
    sums = collections.defaultdict(lambda: [0, 0])
    for trace_id, spans in traces.items():
        for span_id, ns in critical_path(spans).items():
            _, _, _, svc, op = spans[span_id]
            sums[(svc, op)][0 if picked[trace_id] else 1] += ns
    got = {(r["service_name"], r["name"]): r for r in ours}
    if set(got) != set(sums):
        fail(f"bottlenecks operations differ: {sorted(set(got) ^ set(sums))}")
    for key, (slow_ns, typical_ns) in sums.items():
        row = got[key]
        if (row["slow_traces"], row["typical_traces"]) != (slow_n, typical_n):
            fail(f"bottlenecks {key}: {row['slow_traces']}/{row['typical_traces']} vs {slow_n}/{typical_n}")
        close(row["slow_critical_ms"], slow_ns / slow_n / 1e6, f"bottlenecks {key} slow", abs_=1e-6)
        close(row["typical_critical_ms"], typical_ns / typical_n / 1e6, f"bottlenecks {key} typical", abs_=1e-6)
    deltas = [r["delta_ms"] for r in ours]
    if deltas != sorted(deltas, reverse=True):
        fail("bottlenecks: not ordered by delta_ms")
    if slow_n < 5 or typical_n < 5:
        fail(f"bottlenecks: too few traces to mean anything ({slow_n} slow, {typical_n} typical)")
    print(f"bottlenecks: {service} {name}: {len(sums)} operations over {slow_n} slow and {typical_n} typical traces match")


NORMALIZE = [
    (re.compile(r"'(?:[^']|'')*'"), "?"),
    (re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"), "?"),
    (re.compile(r"\b[0-9a-fA-F]*[0-9][0-9a-fA-F]{7,}\b"), "?"),
    (re.compile(r"\b[0-9]+(?:\.[0-9]+)?\b"), "?"),
]


def check_n_plus_one(binary, data, con):
    ours = report(binary, data, "n-plus-one")
    rows = con.execute("""
        SELECT c.trace_id, c.parent_span_id, c.service_name, c.start_ns, c.start_ns + c.duration_ns, c.duration_ns,
               c.attributes['db.system'], c.attributes['db.statement'], c.attributes['db.query.text'],
               coalesce(c.attributes['http.request.method'], c.attributes['http.method']),
               coalesce(c.attributes['url.full'], c.attributes['http.url']), c.name, p.name
        FROM spans c LEFT JOIN spans p ON p.trace_id = c.trace_id AND p.span_id = c.parent_span_id
        WHERE c.kind = 'client' AND c.parent_span_id IS NOT NULL""").fetchall()
    groups = collections.defaultdict(list)
    for (trace_id, parent, service, start, end, dur, db_system, statement, query_text,
         method, url, name, parent_name) in rows:
        if db_system is not None:
            call_type, key = "db", statement or query_text or name
        elif method is not None:
            call_type, key = "http", method + " " + re.sub(r"[?#].*$", "", url or name)
        else:
            continue
        for pattern, replacement in NORMALIZE:
            key = pattern.sub(replacement, key)
        groups[(trace_id, parent, service, call_type, key, parent_name or "")].append((start, end, dur))
    detections = collections.defaultdict(list)
    for (trace_id, parent, service, call_type, key, parent_name), calls in groups.items():
        calls.sort()
        runs, previous_end = [[]], None
        for start, end, dur in calls:
            if previous_end is not None and start < previous_end:
                runs.append([])
            runs[-1].append(dur)
            previous_end = end
        for run in runs:
            if len(run) >= 5:
                detections[(service, parent_name, call_type, key)].append((trace_id, len(run)))
    got = {(r["service_name"], r["parent_name"], r["call_type"], r["call"]): r for r in ours}
    if set(got) != set(detections):
        fail(f"n-plus-one groups differ:\n ours {sorted(got)}\n want {sorted(detections)}")
    for key, found in detections.items():
        row = got[key]
        expected = (len(found), len({t for t, _ in found}), max(n for _, n in found))
        if (row["detections"], row["traces"], row["max_calls"]) != expected:
            fail(f"n-plus-one {key}: {row} vs {expected}")
        close(row["mean_calls"], sum(n for _, n in found) / len(found), f"n-plus-one {key} mean_calls")
        examples = row["example_trace_ids"]
        if len(examples) != len(set(examples)) or not set(examples) <= {t for t, _ in found}:
            fail(f"n-plus-one {key}: example traces {examples} for {found}")
    must = {
        ("shop", "GET /products", "db", "SELECT * FROM products WHERE id = ?"): 1,
        ("shop", "GET /orders", "db", "SELECT * FROM orders WHERE id = ?"): 2,
        ("shop", "GET /team", "http", "GET http://users.internal/users/?"): 1,
        ("shop", "GET /session", "db", "HGET session:?"): 1,
    }
    for key, count in must.items():
        if key not in got or got[key]["detections"] != count:
            fail(f"n-plus-one: expected {count} detection(s) of {key}, got {got.get(key)}")
    for absent in ["GET /few", "GET /fanout"]:
        if any(k[1] == absent for k in got):
            fail(f"n-plus-one: {absent} is not an N+1")
    print(f"n-plus-one: {len(detections)} groups match, fixtures found, non-cases absent")


def check(binary, data):
    con = connect(data)
    check_latency(binary, data, con)
    check_errors(binary, data, con)
    check_service_graph(binary, data, con)
    check_exemplars(binary, data, con)
    check_bottlenecks(binary, data, con)
    check_n_plus_one(binary, data, con)
    print("all reports match")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "inject":
        inject(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "check":
        check(sys.argv[2], sys.argv[3])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
