#!/usr/bin/env python3
"""The spine's numbers, measured against the release binary (issue 2).

    python3 benches/spine.py [--traces N] [--lookup-spans N] [--out FILE]

Measures, on generated hipster-shop traffic:
  1. ingest over OTLP/HTTP protobuf with durability on (WAL fsync before ack):
     spans per second and per server CPU-second, and the server's peak RSS. The
     server is stopped right after the generator finishes, so its CPU time
     (utime+stime from wait4, minus what startup used) includes flushing every
     span to Parquet, and its peak RSS (ru_maxrss) includes that flush;
  2. bytes per span at rest (Parquet after the shutdown flush) next to the raw
     OTLP protobuf bytes the generator sent for the same spans;
  3. read-your-writes: a span queried right after its acknowledgement;
  4. trace by id, no time hint, on a lake of >= --lookup-spans spans written with
     `lighttrace gen --data`: p50 / p99 over HTTP, warm.
Only the standard library is used. Results are printed as Markdown; --out appends
them to a file (benches/RESULTS.md keeps the history).
"""

import argparse
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOPOLOGY = os.path.join(ROOT, "..", "shared", "data", "topologies", "hipster-shop.json")
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/lighttrace-target"))
BIN = os.path.join(TARGET, "release", "lighttrace")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Server:
    """`lighttrace serve` on `data` (`binary`, else BIN); with `grpc`, also OTLP/gRPC
    on a free port (`grpc_url`). benches/protocols.py uses it too."""

    def __init__(self, data, extra=(), grpc=False, binary=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.grpc_url = None
        args = [binary or BIN, "serve", "--data", data, "--http", f"127.0.0.1:{self.port}", *extra]
        if grpc:
            grpc_port = free_port()
            self.grpc_url = f"http://127.0.0.1:{grpc_port}"
            args += ["--grpc", f"127.0.0.1:{grpc_port}"]
        self.log = open(os.path.join(os.path.dirname(data.rstrip("/")), f"server-{self.port}.log"), "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(self.url + "/health", timeout=1).read()
                return
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"server did not start; see {self.log.name}")
                time.sleep(0.05)

    def sql(self, query):
        req = urllib.request.Request(self.url + "/api/v1/sql", data=json.dumps({"sql": query}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as resp:
            return json.loads(resp.read())

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        self.log.close()

    def stop_with_usage(self):
        """SIGTERM, wait for the exit; returns (CPU seconds, peak RSS bytes) of the whole run."""
        self.proc.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.log.close()
        if self.proc.returncode != 0:
            raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log.name}")
        return usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def parquet_bytes(data):
    total = 0
    for dirpath, _, files in os.walk(os.path.join(data, "spans")):
        total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files if f.endswith(".parquet"))
    return total


def catalog_bytes(data):
    """Everything under _catalog/: commits, checkpoints (with the per-file trace filters)."""
    total = 0
    for dirpath, _, files in os.walk(os.path.join(data, "_catalog")):
        total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
    return total


def otlp_json_span(trace_id, span_id, now_ns):
    return json.dumps({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "bench"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": trace_id, "spanId": span_id, "name": "ryw", "kind": 2,
            "startTimeUnixNano": str(now_ns), "endTimeUnixNano": str(now_ns + 1000)}]}]}]}).encode()


def bench_ingest(workdir, traces, results):
    data = os.path.join(workdir, "ingest")
    server = Server(data)
    pid = server.proc.pid
    cpu0 = cpu_seconds(pid)
    t0 = time.time()
    out = subprocess.run([BIN, "gen", "--topology", TOPOLOGY, "--traces", str(traces), "--seed", "7",
                          "--target", server.url, "--no-progress", "--concurrency", "8", "--json"],
                         check=True, capture_output=True, text=True)
    wall = time.time() - t0
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    cpu_at_last_ack = cpu_seconds(pid) - cpu0
    # Stop at once: the shutdown flush writes what is still buffered, and its
    # CPU belongs to these spans.
    cpu_total, rss = server.stop_with_usage()
    cpu = cpu_total - cpu0
    spans = summary["spans"]
    at_rest = parquet_bytes(data)
    catalog = catalog_bytes(data)
    files = sum(len(f) for _, _, f in os.walk(os.path.join(data, "spans")))

    server = Server(data)
    count = server.sql("SELECT count(*) FROM spans")["rows"][0][0]

    # Read-your-writes: query each span right after its acknowledgement.
    seen, tries = 0, 300
    for _ in range(tries):
        trace_id = "%032x" % random.getrandbits(128)
        span_id = "%016x" % (random.getrandbits(64) | 1)
        req = urllib.request.Request(server.url + "/v1/traces", data=otlp_json_span(trace_id, span_id, time.time_ns()),
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=30).read()
        rows = server.sql(f"SELECT span_id FROM spans WHERE trace_id = '{trace_id}'")["rows"]
        seen += rows == [[span_id]]
    server.stop()
    results += [
        ("ingest, OTLP/HTTP protobuf, WAL fsync on", f"{spans / wall:,.0f} spans/s wall ({spans:,} spans, {wall:.1f} s, client on the same 2 cores)"),
        ("ingest per server CPU-second, every span flushed to Parquet", f"{spans / cpu:,.0f} spans per CPU-s ({cpu:.1f} CPU-s) — target ≥ 300k"),
        ("  (CPU up to the last ack, before the shutdown flush)", f"{spans / cpu_at_last_ack:,.0f} spans per CPU-s ({cpu_at_last_ack:.1f} CPU-s)"),
        ("server peak RSS, ingest and shutdown flush", f"{rss / 2**20:,.0f} MiB — target ≤ 1 GiB"),
        ("spans counted by SQL after ingest", f"{count:,} (sent {spans:,})"),
        ("bytes per span at rest (Parquet, zstd)", f"{at_rest / spans:.1f} B ({at_rest:,} B in {files} files) — target ≤ 30 B"),
        ("catalog at rest (file list, statistics, per-file trace filters)", f"{catalog / spans:.1f} B per span ({catalog:,} B)"),
        ("raw OTLP protobuf per span (as sent)", f"{summary.get('payload_bytes', 0) / spans:.1f} B"),
        ("read-your-writes (query right after ack)", f"{seen}/{tries} seen"),
    ]


def bench_lookup(workdir, lookup_spans, results):
    data = os.path.join(workdir, "lookup")
    traces = max(1, lookup_spans // 9)  # hipster-shop averages about 9.7 spans per trace
    t0 = time.time()
    out = subprocess.run([BIN, "gen", "--topology", TOPOLOGY, "--traces", str(traces), "--seed", "11",
                          "--data", data, "--no-progress", "--json"], check=True, capture_output=True, text=True)
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    write_s = time.time() - t0
    server = Server(data)
    total = server.sql("SELECT count(*) FROM spans")["rows"][0][0]
    files = sum(len(f) for _, _, f in os.walk(os.path.join(data, "spans")))
    ids = [r[0] for r in server.sql(
        "SELECT trace_id FROM spans WHERE parent_span_id IS NULL ORDER BY span_id LIMIT 200")["rows"]]
    for trace_id in ids[:20]:  # warm up
        server.sql(f"SELECT * FROM spans WHERE trace_id = '{trace_id}'")
    latencies = []
    for trace_id in ids:
        t = time.perf_counter()
        rows = server.sql(f"SELECT * FROM spans WHERE trace_id = '{trace_id}'")["rows"]
        latencies.append((time.perf_counter() - t) * 1000)
        assert rows, trace_id
    server.stop()
    latencies.sort()
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]
    results += [
        ("lake for lookups (gen --data)", f"{total:,} spans in {files} files, written in {write_s:.0f} s ({summary['spans'] / write_s:,.0f} spans/s)"),
        ("trace by id, no time hint, warm, over HTTP", f"p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms ({len(latencies)} lookups) — target p50 ≤ 20 ms"),
    ]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--traces", type=int, default=100_000)
    parser.add_argument("--lookup-spans", type=int, default=10_000_000)
    parser.add_argument("--out")
    parser.add_argument("--skip-lookup", action="store_true")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the lakes (the path is printed)")
    args = parser.parse_args()
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} missing: cargo build --release -p lighttrace-cli")
    workdir = tempfile.mkdtemp(prefix="lighttrace-bench-")
    results = []
    try:
        if not args.skip_ingest:
            bench_ingest(workdir, args.traces, results)
        if not args.skip_lookup:
            bench_lookup(workdir, args.lookup_spans, results)
    finally:
        if args.keep:
            print(f"lakes kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    header = (f"\n## {time.strftime('%Y-%m-%d')} — {platform.node()}, {os.cpu_count()} cores ({cpu}), "
              f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB\n\n"
              f"`python3 benches/spine.py {' '.join(sys.argv[1:])}`\n\n"
              "| measurement | result |\n|---|---|\n")
    text = header + "".join(f"| {k} | {v} |\n" for k, v in results)
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
