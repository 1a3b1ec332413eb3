#!/usr/bin/env bash
# The main job on the embedded default: start LightTrace on a local data
# directory, send it realistic multi-service traffic (the hipster-shop topology),
# and print a latency table per service and operation, then the slowest trace
# as a waterfall with its critical path (`lighttrace trace`).
#
#   scripts/demo.sh                 # 5000 traces into ./lighttrace-data
#   TRACES=50000 scripts/demo.sh    # more traffic
#   DATA=/tmp/lt scripts/demo.sh    # another data directory
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lighttrace-target}"
DATA="${DATA:-./lighttrace-data}"
TRACES="${TRACES:-5000}"
PORT="${PORT:-4318}"
TOPOLOGY="${TOPOLOGY:-../shared/data/topologies/hipster-shop.json}"
SERVER="http://127.0.0.1:$PORT"

echo "==> building lighttrace (release)"
cargo build --release --locked -p lighttrace-cli --bin lighttrace
BIN="$CARGO_TARGET_DIR/release/lighttrace"

echo "==> starting: lighttrace serve --data $DATA --http 127.0.0.1:$PORT"
"$BIN" serve --data "$DATA" --http "127.0.0.1:$PORT" >"${DATA%/}.log" 2>&1 &
SERVER_PID=$!
trap 'kill -TERM $SERVER_PID 2>/dev/null; wait $SERVER_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if curl -fsS "$SERVER/health" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "lighttrace failed to start; its log:" >&2
    cat "${DATA%/}.log" >&2
    exit 1
  fi
  sleep 0.1
done

echo "==> sending $TRACES hipster-shop traces over OTLP/HTTP"
"$BIN" gen --topology "$TOPOLOGY" --traces "$TRACES" --seed 42 --target "$SERVER"

echo "==> latency per service and operation (last hour)"
"$BIN" sql --server "$SERVER" "
SELECT service_name,
       name,
       count(*)                                                   AS spans,
       round(avg(CASE WHEN status_code = 'error' THEN 1.0 ELSE 0.0 END) * 100, 2) AS error_pct,
       round(percentile_cont(0.50) WITHIN GROUP (ORDER BY duration_ns) / 1e6, 2) AS p50_ms,
       round(percentile_cont(0.90) WITHIN GROUP (ORDER BY duration_ns) / 1e6, 2) AS p90_ms,
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ns) / 1e6, 2) AS p99_ms,
       round(max(duration_ns) / 1e6, 2)                           AS max_ms
FROM spans
WHERE start_time > now() - INTERVAL '1 hour' AND kind = 'server'
GROUP BY service_name, name
ORDER BY p99_ms DESC"

SLOW=$("$BIN" sql --server "$SERVER" --format csv "
SELECT trace_id FROM spans
WHERE parent_span_id IS NULL AND start_time > now() - INTERVAL '1 hour'
ORDER BY duration_ns DESC LIMIT 1" | tail -n 1)

echo "==> the slowest trace, $SLOW, as a waterfall (critical path highlighted)"
"$BIN" trace --server "$SERVER" "$SLOW"
echo "==> done; the lake is in $DATA (plain Parquet under $DATA/spans/)"
