-- 0014: what /metrics reads from the database in one statement.  Every API
-- process answers the same figures (they are the system of record's), so a
-- scrape of any replica tells the whole story; the process's own figures
-- (leadership, probes, requests) come from the process.
--
-- Every state of each state machine is listed, zero or not, so a series
-- does not vanish when its count drops to zero.  Deploy durations are in
-- the engine's schedule time (wall time unless serve --time-scale).
CREATE FUNCTION ws_metrics_snapshot() RETURNS json
LANGUAGE sql STABLE AS $$
    WITH states AS (
        SELECT object, from_state AS state FROM ws_state_transitions
        UNION SELECT object, to_state FROM ws_state_transitions
        UNION VALUES ('deployment', 'scheduled'), ('rollout', 'planned'), ('wave', 'pending')
    ), counts AS (
        SELECT 'rollout' AS object, state, count(*) AS n FROM rollouts GROUP BY state
        UNION ALL SELECT 'wave', state, count(*) FROM waves GROUP BY state
        UNION ALL SELECT 'deployment', state, count(*) FROM deployments GROUP BY state
    ), bounds(le) AS (
        VALUES (30), (60), (120), (300), (600), (900), (1800), (3600), (7200), (14400)
    ), durations AS (
        SELECT extract(epoch FROM d.ended_at - d.started_at)::float8 AS s
          FROM deployments d
         WHERE d.started_at IS NOT NULL AND d.ended_at IS NOT NULL AND d.ended_at >= d.started_at
           AND d.state IN ('healthy', 'failed', 'rolled_back')
    )
    SELECT json_build_object(
        'states', (SELECT json_agg(json_build_object('object', s.object, 'state', s.state,
                                                     'n', COALESCE(c.n, 0)) ORDER BY s.object, s.state)
                     FROM states s LEFT JOIN counts c ON c.object = s.object AND c.state = s.state),
        'gates', COALESCE((SELECT json_agg(json_build_object('gate', g.gate, 'result', g.result, 'n', g.n)
                                           ORDER BY g.gate, g.result)
                             FROM (SELECT gate, result, count(*) AS n FROM gate_results GROUP BY 1, 2) g), '[]'),
        'deploy_seconds', json_build_object(
            'bounds', (SELECT json_agg(b.le ORDER BY b.le) FROM bounds b),
            'buckets', (SELECT json_agg((SELECT count(*) FROM durations x WHERE x.s <= b.le) ORDER BY b.le)
                          FROM bounds b),
            'count', (SELECT count(*) FROM durations),
            'sum', (SELECT COALESCE(sum(s), 0) FROM durations)),
        'audit', json_build_object('length', (SELECT count(*) FROM audit_log),
                                   'head_id', (SELECT COALESCE(max(id), 0) FROM audit_log)),
        'events_unpublished', (SELECT count(*) FROM events WHERE published_at IS NULL))
$$;
