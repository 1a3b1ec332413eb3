-- latency: latency percentiles and error rate per service and operation
-- One row per service and operation, and per time bucket with `bucket`: the
-- number of spans, the share with status error, exact percentiles of the
-- duration (`quantiles`: linear interpolation between the two nearest ranks,
-- like DuckDB's quantile_cont) and the maximum, in milliseconds. Spans that start
-- in [from, to). Without `bucket` the `bucket` column is null.
-- @param from timestamp default=-24h  start of the range (inclusive): RFC 3339, now, or relative (-1h)
-- @param to timestamp default=now  end of the range (exclusive)
-- @param service text  only this service
-- @param name text  only this operation (span name)
-- @param bucket interval  also one row per time bucket of this width (30s, 1m, 1h)
SELECT bucket, service_name, name, count, error_rate,
       q[1] / 1e6 AS p50_ms,
       q[2] / 1e6 AS p90_ms,
       q[3] / 1e6 AS p95_ms,
       q[4] / 1e6 AS p99_ms,
       max_ns / 1e6 AS max_ms
FROM (
  SELECT
    -- Without `bucket` the key is the constant NULL, which the planner drops
    -- from the grouping (date_bin(NULL, …) would be computed and hashed per row).
    CASE WHEN $bucket IS NULL THEN NULL
         ELSE date_bin($bucket, start_time, TIMESTAMP '1970-01-01T00:00:00Z') END AS bucket,
    service_name,
    name,
    count(*) AS count,
    -- The same value as avg(CASE … THEN 1.0 ELSE 0.0 END), without a
    -- Float64 column per batch.
    CAST(count(*) FILTER (WHERE status_code = 'error') AS DOUBLE) / count(*) AS error_rate,
    quantiles(duration_ns, 0.50, 0.90, 0.95, 0.99) AS q,
    max(duration_ns) AS max_ns
  FROM spans
  WHERE start_time >= $from AND start_time < $to
    AND ($service IS NULL OR service_name = $service)
    AND ($name IS NULL OR name = $name)
  GROUP BY 1, 2, 3
)
ORDER BY bucket, service_name, name
