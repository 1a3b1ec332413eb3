-- bottlenecks: where slow requests of an endpoint spend their time, against typical ones
-- An endpoint is a root span's service and name (`service` and `name` pick
-- one); its traces are those whose root starts in [from, to). Slow traces
-- have a root duration at or above the endpoint's `slow_percentile`-th
-- percentile (p95 by default), typical ones lie between its p40 and p60.
-- Each picked trace is analyzed whole with `critical_path_by_operation` (span tree,
-- clock-skew adjustment, last-finishing-child critical path). One row per
-- endpoint and operation (service and span name) on those critical paths:
-- the mean critical-path time the operation takes per slow trace and per
-- typical trace, the difference (what makes slow requests slow), that
-- difference as a share of the slow traces' mean duration, and up to three
-- slow traces where the operation took the most critical-path time. Largest
-- difference first.
-- @param from timestamp default=-24h  start of the range (inclusive): RFC 3339, now, or relative (-1h)
-- @param to timestamp default=now  end of the range (exclusive)
-- @param service text  only endpoints whose root span is of this service
-- @param name text  only endpoints whose root span has this name
-- @param slow_percentile float default=95 range=50..100  traces at or above this percentile of their endpoint are slow
WITH roots AS (
  SELECT trace_id, service_name AS root_service, name AS root_name, max(duration_ns) AS duration_ns
  FROM spans
  WHERE parent_span_id IS NULL
    AND start_time >= $from AND start_time < $to
    AND ($service IS NULL OR service_name = $service)
    AND ($name IS NULL OR name = $name)
  GROUP BY trace_id, service_name, name
), cuts AS (
  SELECT root_service, root_name,
         percentile_cont($slow_percentile / 100.0) WITHIN GROUP (ORDER BY duration_ns) AS slow_ns,
         percentile_cont(0.40) WITHIN GROUP (ORDER BY duration_ns) AS typical_low_ns,
         percentile_cont(0.60) WITHIN GROUP (ORDER BY duration_ns) AS typical_high_ns
  FROM roots
  GROUP BY root_service, root_name
), picked AS (
  SELECT r.trace_id, r.root_service, r.root_name, r.duration_ns,
         r.duration_ns >= c.slow_ns AS slow
  FROM roots r
  JOIN cuts c ON r.root_service = c.root_service AND r.root_name = c.root_name
  WHERE r.duration_ns >= c.slow_ns
     OR (r.duration_ns >= c.typical_low_ns AND r.duration_ns <= c.typical_high_ns)
), analyzed AS (
  SELECT p.trace_id, p.root_service, p.root_name, p.slow,
         critical_path_by_operation(s.span_id, s.parent_span_id, s.start_time, s.end_time,
                                    s.kind, s.service_name, s.name) AS operations
  -- The picked traces first: the join builds its hash table on them, not on spans.
  FROM picked p
  JOIN spans s ON s.trace_id = p.trace_id
  WHERE s.start_time >= $from - INTERVAL '1 hour' AND s.start_time < $to + INTERVAL '1 hour'
  GROUP BY p.trace_id, p.root_service, p.root_name, p.slow
), per_operation AS (
  SELECT root_service, root_name, slow, trace_id, unnest(operations) AS o
  FROM analyzed
), per_trace AS (
  SELECT root_service, root_name, slow, trace_id,
         o['service_name'] AS service_name, o['name'] AS name, o['critical_path_ns'] AS critical_ns
  FROM per_operation
), counts AS (
  SELECT root_service, root_name,
         count(*) FILTER (WHERE slow) AS slow_traces,
         count(*) FILTER (WHERE NOT slow) AS typical_traces,
         avg(duration_ns) FILTER (WHERE slow) AS slow_mean_ns
  FROM picked
  GROUP BY root_service, root_name
), operations AS (
  SELECT root_service, root_name, service_name, name,
         coalesce(sum(critical_ns) FILTER (WHERE slow), 0) AS slow_ns,
         coalesce(sum(critical_ns) FILTER (WHERE NOT slow), 0) AS typical_ns,
         array_slice(array_agg(trace_id ORDER BY critical_ns DESC, trace_id) FILTER (WHERE slow), 1, 3) AS example_trace_ids
  FROM per_trace
  GROUP BY root_service, root_name, service_name, name
), rows AS (
  SELECT o.root_service, o.root_name, o.service_name, o.name,
         c.slow_traces, c.typical_traces,
         o.slow_ns / nullif(c.slow_traces, 0) / 1e6 AS slow_critical_ms,
         o.typical_ns / nullif(c.typical_traces, 0) / 1e6 AS typical_critical_ms,
         c.slow_mean_ns,
         o.example_trace_ids
  FROM operations o
  JOIN counts c ON o.root_service = c.root_service AND o.root_name = c.root_name
)
SELECT root_service, root_name, service_name, name, slow_traces, typical_traces,
       slow_critical_ms, typical_critical_ms,
       coalesce(slow_critical_ms, 0) - coalesce(typical_critical_ms, 0) AS delta_ms,
       (coalesce(slow_critical_ms, 0) - coalesce(typical_critical_ms, 0)) / (slow_mean_ns / 1e6) AS share_of_slow,
       example_trace_ids
FROM rows
ORDER BY root_service, root_name, delta_ms DESC, service_name, name
