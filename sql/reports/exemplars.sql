-- exemplars: example spans of an operation at a latency, spread over the range
-- For dashboards that link from a slow bucket to a trace: spans of `service`
-- and `name` that start in [from, to) with a duration at or above the
-- `percentile`-th percentile of those spans (exact, as in `latency`), or
-- within [min_ms, max_ms] when either is given. The time from the first to
-- the last matching span is cut into `limit` equal slices and each slice
-- gives its slowest matching span (ties: the earliest), so the exemplars
-- spread over the range instead of coming from one burst; ordered by start
-- time.
-- @param from timestamp default=-24h  start of the range (inclusive): RFC 3339, now, or relative (-1h)
-- @param to timestamp default=now  end of the range (exclusive)
-- @param service text  only this service
-- @param name text  only this operation (span name)
-- @param percentile float range=0..100  durations at or above this percentile (0-100), e.g. 99; default 0 without min_ms/max_ms
-- @param min_ms float range=0..  durations of at least this many milliseconds
-- @param max_ms float range=0..  durations of at most this many milliseconds
-- @param limit int default=20 range=1..1000  at most this many exemplars (one per slice of the range)
WITH candidates AS (
  SELECT trace_id, span_id, service_name, name, start_time, duration_ns
  FROM spans
  WHERE start_time >= $from AND start_time < $to
    AND ($service IS NULL OR service_name = $service)
    AND ($name IS NULL OR name = $name)
), threshold AS (
  SELECT CASE
           WHEN $percentile IS NULL THEN NULL
           ELSE percentile_cont(coalesce($percentile, 0.0) / 100.0)
                  WITHIN GROUP (ORDER BY duration_ns)
         END AS min_ns
  FROM candidates
), matching AS (
  SELECT c.*
  FROM candidates c, threshold t
  WHERE (t.min_ns IS NULL OR c.duration_ns >= t.min_ns)
    AND ($min_ms IS NULL OR c.duration_ns >= $min_ms * 1e6)
    AND ($max_ms IS NULL OR c.duration_ns <= $max_ms * 1e6)
), span AS (
  SELECT CAST(min(start_time) AS BIGINT) AS first_ns,
         CAST(max(start_time) AS BIGINT) - CAST(min(start_time) AS BIGINT) + 1 AS width_ns
  FROM matching
), sliced AS (
  SELECT m.*, (CAST(m.start_time AS BIGINT) - s.first_ns) * $limit / s.width_ns AS slice
  FROM matching m, span s
), ranked AS (
  SELECT *, row_number() OVER (PARTITION BY slice ORDER BY duration_ns DESC, start_time, span_id) AS rank
  FROM sliced
)
SELECT trace_id, span_id, service_name, name, duration_ns / 1e6 AS duration_ms, start_time
FROM ranked
WHERE rank = 1
ORDER BY start_time, span_id
