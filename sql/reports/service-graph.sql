-- service-graph: caller → callee edges with request and error counts, p50 and p99
-- An edge per (caller, callee) from CLIENT or PRODUCER spans in [from, to):
-- the callee is the service of the SERVER or CONSUMER span that is the
-- client span's child in the same trace; a client span without such a child
-- calls an uninstrumented peer (a database, a cache, an outside API), named
-- by its first attribute of `peer.service`, `server.address`,
-- `net.peer.name` and `db.system` (`peer` is true then). Latency is the client span's duration (what the
-- caller waited), errors count client spans with status error. `service`
-- and `name` filter the caller's service and the client span's name.
-- @param from timestamp default=-24h  start of the range (inclusive): RFC 3339, now, or relative (-1h)
-- @param to timestamp default=now  end of the range (exclusive)
-- @param service text  only calls made by this service
-- @param name text  only client spans with this name
WITH calls AS (
  SELECT trace_id, span_id, service_name, status_code, duration_ns,
         coalesce(attributes['peer.service'], attributes['server.address'],
                  attributes['net.peer.name'], attributes['db.system']) AS peer
  FROM spans
  WHERE kind IN ('client', 'producer')
    AND start_time >= $from AND start_time < $to
    AND ($service IS NULL OR service_name = $service)
    AND ($name IS NULL OR name = $name)
), served AS (
  SELECT trace_id, parent_span_id, min(service_name) AS service_name
  FROM spans
  WHERE kind IN ('server', 'consumer') AND parent_span_id IS NOT NULL
    AND start_time >= $from - INTERVAL '1 hour' AND start_time < $to + INTERVAL '1 hour'
  GROUP BY trace_id, parent_span_id
), edges AS (
  SELECT c.service_name AS caller,
         coalesce(s.service_name, c.peer, 'unknown') AS callee,
         s.service_name IS NULL AS peer,
         c.status_code, c.duration_ns
  -- `served` first: the join builds its hash table on the smaller side.
  FROM served s
  RIGHT JOIN calls c ON s.trace_id = c.trace_id AND s.parent_span_id = c.span_id
)
SELECT
  caller,
  callee,
  peer,
  requests,
  errors,
  q[1] / 1e6 AS p50_ms,
  q[2] / 1e6 AS p99_ms
FROM (
  SELECT caller, callee, peer, count(*) AS requests,
         sum(CASE WHEN status_code = 'error' THEN 1 ELSE 0 END) AS errors,
         quantiles(duration_ns, 0.50, 0.99) AS q
  FROM edges
  GROUP BY caller, callee, peer
)
ORDER BY requests DESC, caller, callee
