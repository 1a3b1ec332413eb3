-- n-plus-one: a parent making the same database or HTTP call again and again, one after the other
-- After Sentry's N+1 detectors ("N+1 Queries", "N+1 API Calls"). The
-- candidates are CLIENT spans that start in [from, to): database calls
-- (with `db.system`), keyed by their normalized statement (`db.statement`
-- or `db.query.text`, else the span name), and HTTP calls (with
-- `http.request.method` or `http.method`), keyed by method and normalized
-- URL (`url.full` or `http.url`, else the span name). Normalizing replaces
-- quoted strings, numbers, UUIDs and hex ids with `?` and drops a URL's
-- query string, so `... WHERE id = 17` and `... WHERE id = 18` are the same
-- call. Children of one parent with one key are taken in start order and cut
-- into runs where each call starts after the previous one ended (calls that
-- overlap run in parallel: a fan-out, not an N+1). A run of at least
-- `min_count` calls (5 by default, as Sentry) lasting at least
-- `min_total_ms` in total (0 by default; Sentry also asks for a minimum
-- total duration) is one detection. One row per parent operation, calling
-- service and normalized call: the detections, the traces they are in, the
-- mean and largest number of calls in a run, the mean total time of a run,
-- and up to three example traces (each once, the longest run first).
-- @param from timestamp default=-24h  start of the range (inclusive): RFC 3339, now, or relative (-1h)
-- @param to timestamp default=now  end of the range (exclusive)
-- @param service text  only calls made by this service
-- @param name text  only repeated calls whose normalized key contains this text
-- @param min_count int default=5 range=2..  calls in a run to count as N+1
-- @param min_total_ms float default=0 range=0..  total time of a run to count as N+1
WITH calls AS (
  SELECT trace_id, parent_span_id, service_name, name, attributes, start_time, end_time, duration_ns,
         CASE WHEN attributes['db.system'] IS NOT NULL THEN 'db' ELSE 'http' END AS call_type
  FROM spans
  WHERE kind = 'client' AND parent_span_id IS NOT NULL
    AND (attributes['db.system'] IS NOT NULL
         OR attributes['http.request.method'] IS NOT NULL
         OR attributes['http.method'] IS NOT NULL)
    AND start_time >= $from AND start_time < $to
    AND ($service IS NULL OR service_name = $service)
), busy AS (
  -- Only parents with enough calls of a type can hold a run: normalize and
  -- order the calls of those parents only.
  SELECT trace_id, parent_span_id, call_type
  FROM calls
  GROUP BY trace_id, parent_span_id, call_type
  HAVING count(*) >= $min_count
), candidates AS (
  SELECT c.trace_id, c.parent_span_id, c.service_name, c.start_time, c.end_time, c.duration_ns,
         c.call_type,
         CASE
           WHEN c.call_type = 'db'
             THEN coalesce(c.attributes['db.statement'], c.attributes['db.query.text'], c.name)
           ELSE coalesce(c.attributes['http.request.method'], c.attributes['http.method']) || ' ' ||
                regexp_replace(coalesce(c.attributes['url.full'], c.attributes['http.url'], c.name), '[?#].*$', '')
         END AS raw_key
  FROM calls c
  JOIN busy b
    ON c.trace_id = b.trace_id AND c.parent_span_id = b.parent_span_id AND c.call_type = b.call_type
), keyed AS (
  SELECT trace_id, parent_span_id, service_name, start_time, end_time, duration_ns, call_type,
         regexp_replace(
           regexp_replace(
             regexp_replace(
               regexp_replace(raw_key, '''(?:[^'']|'''')*''', '?', 'g'),
               '[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}', '?', 'g'),
             '\b[0-9a-fA-F]*[0-9][0-9a-fA-F]{7,}\b', '?', 'g'),
           '\b[0-9]+(?:\.[0-9]+)?\b', '?', 'g') AS call
  FROM candidates
), ordered AS (
  SELECT *,
         CASE WHEN start_time < lag(end_time) OVER w THEN 1 ELSE 0 END AS overlaps
  FROM keyed
  WHERE $name IS NULL OR strpos(call, $name) > 0
  WINDOW w AS (PARTITION BY trace_id, parent_span_id, call ORDER BY start_time, end_time)
), runs AS (
  SELECT *,
         sum(overlaps) OVER (PARTITION BY trace_id, parent_span_id, call ORDER BY start_time, end_time
                             ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS run
  FROM ordered
), detections AS (
  SELECT trace_id, parent_span_id, service_name, call_type, call, run,
         count(*) AS calls, sum(duration_ns) AS total_ns
  FROM runs
  GROUP BY trace_id, parent_span_id, service_name, call_type, call, run
  HAVING count(*) >= $min_count AND sum(duration_ns) >= $min_total_ms * 1e6
), named AS (
  SELECT d.*, p.name AS parent_name
  FROM detections d
  LEFT JOIN spans p ON p.trace_id = d.trace_id AND p.span_id = d.parent_span_id
   AND p.start_time >= $from - INTERVAL '1 hour' AND p.start_time < $to + INTERVAL '1 hour'
), per_trace AS (
  SELECT service_name, coalesce(parent_name, '') AS parent_name, call_type, call, trace_id,
         count(*) AS detections, max(calls) AS max_calls, sum(calls) AS calls,
         sum(total_ns) AS total_ns, max(total_ns) AS longest_ns
  FROM named
  GROUP BY service_name, coalesce(parent_name, ''), call_type, call, trace_id
)
SELECT service_name, parent_name, call_type, call,
       sum(detections) AS detections,
       count(*) AS traces,
       CAST(sum(calls) AS DOUBLE) / sum(detections) AS mean_calls,
       max(max_calls) AS max_calls,
       CAST(sum(total_ns) AS DOUBLE) / sum(detections) / 1e6 AS mean_total_ms,
       -- Each example trace once, the one with the longest run first.
       array_slice(array_agg(trace_id ORDER BY max_calls DESC, longest_ns DESC, trace_id), 1, 3) AS example_trace_ids
FROM per_trace
GROUP BY service_name, parent_name, call_type, call
ORDER BY detections DESC, service_name, parent_name, call
