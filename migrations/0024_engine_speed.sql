-- 0024: the engine's load, cheaper for long rollouts (issue 4's reaction
-- time).  0020's document, with each deployment's catalog backup, restore,
-- deploy-time history and health baseline read only in the states whose
-- decisions use them (engine_decide.c): the backup gate judges scheduled
-- tenants, the expected-duration rule scheduled and waiting ones, the
-- latency check deploying, verifying and soaking ones.  A rollout of a
-- hundred waves no longer reads the history of the ninety-eight that are
-- over at every step.  The other fields are 0020's.
CREATE OR REPLACE FUNCTION ws_engine_rollout(p_rollout bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', r.id, 'state', r.state, 'state_reason', r.state_reason,
        'created_by', r.created_by, 'start_at', ws__us(r.start_at),
        'release', rel.version, 'digest', rel.digest, 'kind', rel.kind,
        'policy_id', r.policy_id,
        'release_gates', ws__release_gate_doc(rel.id),
        'release_timing', ws__release_timing(rel.version),
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
                        'backup_at', CASE WHEN d.state = 'scheduled' THEN
                                     (SELECT ws__us(max(b.completed_at)) FROM backups b
                                       WHERE b.tenant_id = d.tenant_id AND b.succeeded) END,
                        'restore_at', CASE WHEN d.state = 'scheduled' THEN
                                      (SELECT ws__us(max(b.restore_verified_at)) FROM backups b
                                        WHERE b.tenant_id = d.tenant_id AND b.succeeded
                                          AND b.restore_result = 'ok') END,
                        'baseline_us', CASE WHEN d.state IN ('deploying', 'verifying')
                                              OR (d.state = 'healthy' AND w.state IN ('deploying', 'verifying', 'soaking')) THEN
                                       (SELECT (g.evidence ->> 'median_us')::bigint FROM gate_results g
                                         WHERE g.deployment_id = d.id AND g.gate = 'baseline'
                                         ORDER BY g.id DESC LIMIT 1) END,
                        'p90_s', CASE WHEN d.state IN ('scheduled', 'waiting_window') THEN
                                 (SELECT percentile_cont(0.9) WITHIN GROUP (ORDER BY
                                         extract(epoch FROM (x.ended_at - x.started_at)))
                                    FROM deployments x
                                   WHERE x.tenant_id = d.tenant_id AND x.id <> d.id
                                     AND x.started_at IS NOT NULL AND x.ended_at IS NOT NULL
                                     AND x.state IN ('verifying', 'healthy')) END
                    ) ORDER BY d.window_start NULLS LAST, d.slug)
                    FROM deployments d WHERE d.wave_id = w.id), '[]'::jsonb)
            ) ORDER BY w.idx)
            FROM waves w WHERE w.rollout_id = r.id), '[]'::jsonb))
    FROM rollouts r JOIN releases rel ON rel.id = r.release_id
    WHERE r.id = p_rollout
$$;
