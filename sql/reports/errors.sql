-- errors: failed spans grouped by service, operation and status message
-- One row per (service, operation, status message) of spans with status
-- error that start in [from, to): the number of failed spans, of traces they
-- are in, of those traces whose root failed too, the first and last time
-- seen, and up to five example traces (each once, the most recent failure
-- first). Most failed spans first.
-- @param from timestamp default=-24h  start of the range (inclusive): RFC 3339, now, or relative (-1h)
-- @param to timestamp default=now  end of the range (exclusive)
-- @param service text  only this service
-- @param name text  only this operation (span name)
WITH failed AS (
  SELECT trace_id, service_name, name, coalesce(status_message, '') AS status_message,
         start_time, parent_span_id IS NULL AS is_root
  FROM spans
  WHERE status_code = 'error'
    AND start_time >= $from AND start_time < $to
    AND ($service IS NULL OR service_name = $service)
    AND ($name IS NULL OR name = $name)
), per_trace AS (
  SELECT service_name, name, status_message, trace_id,
         count(*) AS spans, max(start_time) AS last_seen, min(start_time) AS first_seen,
         bool_or(is_root) AS failed_root
  FROM failed
  GROUP BY service_name, name, status_message, trace_id
)
SELECT
  service_name,
  name,
  status_message,
  sum(spans) AS spans,
  count(*) AS traces,
  count(*) FILTER (WHERE failed_root) AS failed_roots,
  min(first_seen) AS first_seen,
  max(last_seen) AS last_seen,
  array_slice(array_agg(trace_id ORDER BY last_seen DESC, trace_id), 1, 5) AS example_trace_ids
FROM per_trace
GROUP BY service_name, name, status_message
ORDER BY spans DESC, service_name, name, status_message
