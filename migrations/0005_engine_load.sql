-- 0005: what the engine reads.  One call returns everything the leader needs
-- to decide a rollout's next step, as one JSON document (times as
-- microseconds since the Unix epoch, schedule time where 0003 says so), so a
-- rollout is loaded in one round trip and decided from a consistent view.

CREATE FUNCTION ws__us(p timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p IS NULL OR NOT isfinite(p) THEN NULL
                ELSE (extract(epoch FROM p) * 1000000)::bigint END
$$;

-- The rollouts the engine still has to advance or finish.
CREATE FUNCTION ws_engine_active() RETURNS SETOF bigint
LANGUAGE sql STABLE AS $$
    SELECT r.id FROM rollouts r
     WHERE r.state IN ('approved', 'running', 'paused', 'preempted', 'halted', 'aborted')
       AND (r.state NOT IN ('halted', 'aborted')
            OR EXISTS (SELECT 1 FROM deployments d
                        WHERE d.rollout_id = r.id
                          AND d.state IN ('deploying', 'verifying', 'rolling_back')))
     ORDER BY r.id
$$;

-- One rollout.  Per deployment: its latest outbox intent, the completion of
-- the tenant's latest successful backup, the health baseline recorded before
-- its deploy, and the 90th percentile of the tenant's past deployment times
-- (deploying -> verifying, seconds) for the expected-duration rule.
CREATE FUNCTION ws_engine_rollout(p_rollout bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', r.id, 'state', r.state, 'state_reason', r.state_reason,
        'created_by', r.created_by, 'start_at', ws__us(r.start_at),
        'release', rel.version, 'digest', rel.digest, 'kind', rel.kind,
        'policy_id', r.policy_id,
        'waves', COALESCE((
            SELECT jsonb_agg(jsonb_build_object(
                'id', w.id, 'idx', w.idx, 'name', w.name, 'state', w.state,
                'start_at', ws__us(w.start_at), 'end_at', ws__us(w.end_at),
                'started_at', ws__us(w.started_at), 'soak_until', ws__us(w.soak_until),
                'settings', w.settings,
                'approvals', (SELECT count(*) FROM approvals a
                               WHERE a.wave_id = w.id AND a.decision = 'approve'),
                'rejected_by', (SELECT min(a.actor) FROM approvals a
                                 WHERE a.wave_id = w.id AND a.decision = 'reject'),
                'deployments', COALESCE((
                    SELECT jsonb_agg(jsonb_build_object(
                        'id', d.id, 'tenant_id', d.tenant_id, 'slug', d.slug, 'state', d.state,
                        'window_start', ws__us(d.window_start), 'window_end', ws__us(d.window_end),
                        'attempt', d.attempt, 'previous_version', d.previous_version,
                        'target_version', d.target_version, 'started_at', ws__us(d.started_at),
                        'outbox', (SELECT jsonb_build_object('id', o.id, 'key', o.idempotency_key,
                                                             'kind', o.kind, 'state', o.state,
                                                             'attempt', o.attempt)
                                     FROM outbox o WHERE o.deployment_id = d.id
                                    ORDER BY o.id DESC LIMIT 1),
                        'backup_at', (SELECT ws__us(max(b.completed_at)) FROM backups b
                                       WHERE b.tenant_id = d.tenant_id AND b.succeeded),
                        'baseline_us', (SELECT (g.evidence ->> 'median_us')::bigint FROM gate_results g
                                         WHERE g.deployment_id = d.id AND g.gate = 'baseline'
                                         ORDER BY g.id DESC LIMIT 1),
                        'p90_s', (SELECT percentile_cont(0.9) WITHIN GROUP (ORDER BY
                                         extract(epoch FROM (x.ended_at - x.started_at)))
                                    FROM deployments x
                                   WHERE x.tenant_id = d.tenant_id AND x.id <> d.id
                                     AND x.started_at IS NOT NULL AND x.ended_at IS NOT NULL
                                     AND x.state IN ('verifying', 'healthy'))
                    ) ORDER BY d.window_start NULLS LAST, d.slug)
                    FROM deployments d WHERE d.wave_id = w.id), '[]'::jsonb)
            ) ORDER BY w.idx)
            FROM waves w WHERE w.rollout_id = r.id), '[]'::jsonb))
    FROM rollouts r JOIN releases rel ON rel.id = r.release_id
    WHERE r.id = p_rollout
$$;
