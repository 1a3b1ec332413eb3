#!/usr/bin/env python3
"""The answers' numbers (issue 4), against the release binary and DuckDB.

    python3 benches/reports.py [--traces N] [--lake DIR] [--runs R] [--lookups L]

On a lake of generated hipster-shop traffic (`lighttrace gen --data`; about
9.6 spans per trace, so the default 1,050,000 traces give ~10M spans; with
--lake an existing lake is reused), served by `lighttrace serve`:

  1. the `latency` report over HTTP (GET /api/v1/reports/latency) next to DuckDB
     computing the same exact percentiles (quantile_cont) over the same Parquet
     files, in-process, warm, with all cores;
  2. trace by id without a time hint (GET /api/v1/traces/{id}: the whole trace
     analyzed): p50 and p99 over --lookups random traces, warm;
  3. the `bottlenecks` report for the busiest endpoint next to DuckDB running
     the equivalent self-join (the same slow/typical cohorts; per operation
     the self time, the part of the critical-path analysis SQL can express);
  4. the other reports, LightTrace only, for reference.

Timings are the median of --runs runs after one warm-up. Needs the `duckdb`
Python package (tests/requirements.txt). Prints Markdown; --out appends it.
"""

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from spine import BIN, TOPOLOGY, Server  # noqa: E402

import duckdb  # noqa: E402

WIDE = "from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z"


def get(url):
    with urllib.request.urlopen(url, timeout=600) as resp:
        return json.loads(resp.read())


def timed(fn, runs):
    fn()  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


def duck(data):
    con = duckdb.connect()
    pattern = os.path.join(data, "spans", "**", "*.parquet")
    con.execute(f"CREATE VIEW spans AS SELECT * FROM read_parquet('{pattern}', hive_partitioning = true)")
    return con


LATENCY_DUCKDB = """
SELECT service_name, name, count(*) AS count,
       avg(CASE WHEN status_code = 'error' THEN 1.0 ELSE 0.0 END) AS error_rate,
       quantile_cont(duration_ns, [0.5, 0.9, 0.95, 0.99]) AS q,
       max(duration_ns) AS max_ns
FROM spans GROUP BY ALL ORDER BY service_name, name"""

# The bottlenecks report's cohorts, then per operation the self time (a span's
# duration minus its children's: a self-join of spans on parent = span) in slow
# and in typical traces. Children's intervals are summed, not unioned.
BOTTLENECKS_DUCKDB = """
WITH roots AS (
  SELECT trace_id, duration_ns FROM spans
  WHERE parent_span_id IS NULL AND service_name = $service AND name = $name
), cuts AS (
  SELECT quantile_cont(duration_ns, 0.95) AS slow, quantile_cont(duration_ns, 0.40) AS lo,
         quantile_cont(duration_ns, 0.60) AS hi FROM roots
), picked AS (
  SELECT r.trace_id, r.duration_ns >= c.slow AS slow FROM roots r, cuts c
  WHERE r.duration_ns >= c.slow OR r.duration_ns BETWEEN c.lo AND c.hi
), s AS (
  SELECT s.*, p.slow FROM spans s JOIN picked p USING (trace_id)
), child_time AS (
  SELECT parent.trace_id, parent.span_id, sum(child.duration_ns) AS children_ns
  FROM s parent JOIN s child ON child.trace_id = parent.trace_id AND child.parent_span_id = parent.span_id
  GROUP BY ALL
), self AS (
  SELECT s.service_name, s.name, s.slow, s.trace_id,
         greatest(s.duration_ns - coalesce(c.children_ns, 0), 0) AS self_ns
  FROM s LEFT JOIN child_time c USING (trace_id, span_id)
)
SELECT service_name, name,
       sum(self_ns) FILTER (WHERE slow) / count(DISTINCT trace_id) FILTER (WHERE slow) / 1e6 AS slow_ms,
       sum(self_ns) FILTER (WHERE NOT slow) / count(DISTINCT trace_id) FILTER (WHERE NOT slow) / 1e6 AS typical_ms
FROM self GROUP BY ALL ORDER BY slow_ms - typical_ms DESC"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--traces", type=int, default=1_050_000)
    parser.add_argument("--lake", help="reuse (or create and keep) the lake in this directory")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lookups", type=int, default=300)
    parser.add_argument("--out")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="lighttrace-reports-")
    data = args.lake or os.path.join(workdir, "lake")
    if not os.path.isdir(os.path.join(data, "spans")):
        started = time.time()
        subprocess.run([BIN, "gen", "--topology", TOPOLOGY, "--traces", str(args.traces), "--seed", "21",
                        "--data", data, "--no-progress"], check=True)
        print(f"generated the lake in {time.time() - started:.0f} s", file=sys.stderr)
    server = Server(data, extra=["--query-timeout", "10m", "--query-memory-limit", "8GiB"])
    lines = []
    try:
        spans = server.sql("SELECT count(*) FROM spans")["rows"][0][0]
        files = sum(1 for _, _, fs in os.walk(os.path.join(data, "spans")) for f in fs if f.endswith(".parquet"))
        con = duck(data)
        (duck_count,) = con.execute("SELECT count(*) FROM spans").fetchone()
        assert duck_count == spans, (duck_count, spans)

        # 1. latency
        ours, our_runs = timed(lambda: get(f"{server.url}/api/v1/reports/latency?{WIDE}"), args.runs)
        theirs, their_runs = timed(lambda: con.execute(LATENCY_DUCKDB).fetchall(), args.runs)
        rows = get(f"{server.url}/api/v1/reports/latency?{WIDE}")["rows"]
        duck_rows = con.execute(LATENCY_DUCKDB).fetchall()
        assert len(rows) == len(duck_rows), (len(rows), len(duck_rows))

        # 2. trace by id
        ids = [r[0] for r in server.sql(
            "SELECT trace_id FROM spans WHERE parent_span_id IS NULL ORDER BY random() LIMIT "
            f"{args.lookups}")["rows"]]
        for trace_id in ids[:20]:
            get(f"{server.url}/api/v1/traces/{trace_id}")
        lookups = []
        for trace_id in ids:
            started = time.perf_counter()
            trace = get(f"{server.url}/api/v1/traces/{trace_id}")
            lookups.append(time.perf_counter() - started)
            assert trace["spans"], trace_id
        lookups.sort()
        p50 = lookups[len(lookups) // 2]
        p99 = lookups[min(len(lookups) - 1, int(len(lookups) * 0.99))]

        # 3. bottlenecks for the busiest endpoint
        service, name = server.sql(
            "SELECT service_name, name FROM spans WHERE parent_span_id IS NULL "
            "GROUP BY 1, 2 ORDER BY count(*) DESC LIMIT 1")["rows"][0]
        query = f"{WIDE}&service={urllib.parse.quote(service)}&name={urllib.parse.quote(name)}"
        b_ours, _ = timed(lambda: get(f"{server.url}/api/v1/reports/bottlenecks?{query}"), args.runs)
        b_theirs, _ = timed(lambda: con.execute(BOTTLENECKS_DUCKDB, {"service": service, "name": name}).fetchall(),
                            args.runs)
        roots = server.sql(
            f"SELECT count(*) FROM spans WHERE parent_span_id IS NULL AND service_name = '{service}' "
            f"AND name = '{name}'")["rows"][0][0]

        # 4. the others
        others = {}
        for report, params in [("errors", ""), ("service-graph", ""), ("n-plus-one", ""),
                               ("exemplars", f"&service={urllib.parse.quote(service)}"
                                             f"&name={urllib.parse.quote(name)}&percentile=99")]:
            others[report], _ = timed(lambda: get(f"{server.url}/api/v1/reports/{report}?{WIDE}{params}"),
                                      args.runs)
    finally:
        server.stop()

    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}"
    lines.append(f"Machine: {machine}; {time.strftime('%Y-%m-%d')}; DuckDB {duckdb.__version__}")
    lines.append(f"Lake: {spans:,} spans in {files} Parquet files; {args.runs} runs after a warm-up, median")
    lines.append("")
    lines.append("| measurement | LightTrace | DuckDB | target |")
    lines.append("|---|---:|---:|---|")
    verdict = "met" if ours <= theirs else "**not met**"
    lines.append(f"| `latency` report, {len(rows)} rows (all spans, exact p50/p90/p95/p99) | "
                 f"{ours * 1000:,.0f} ms | {theirs * 1000:,.0f} ms | no slower than DuckDB: {verdict} |")
    verdict = "met" if p50 <= 0.020 else "**not met**"
    lines.append(f"| trace by id, no time hint, {len(lookups)} traces (p50 / p99) | "
                 f"{p50 * 1000:.1f} / {p99 * 1000:.1f} ms | | p50 ≤ 20 ms: {verdict} |")
    lines.append(f"| `bottlenecks` for {service} {name} ({roots:,} traces; LightTrace: critical path, "
                 f"DuckDB: self-join self time) | {b_ours * 1000:,.0f} ms | {b_theirs * 1000:,.0f} ms | |")
    for report, seconds in others.items():
        lines.append(f"| `{report}` report | {seconds * 1000:,.0f} ms | | |")
    lines.append("")
    lines.append(f"latency runs (s): ours {[round(t, 3) for t in our_runs]}, "
                 f"DuckDB {[round(t, 3) for t in their_runs]}")
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n")
    if not args.lake:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
