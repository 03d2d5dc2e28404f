-- 0020: the gates of issue 7 in the wave settings, and what the engine reads
-- for them.
--
-- waves.settings may carry, only when the policy asks for them:
--    "backup": {..., "restore_max_age_s": 604800}   require_restore_verified
--    "attestations": ["tests", "image-scan"]
--    "metrics": [{"name": "queue-backlog", "query": "...", "for_s": 600,
--                 "min"?: number, "max"?: number}]
-- 0012's check stays as it is (renamed); these keys are checked after it,
-- so that a settings row with them in another shape is refused when the
-- rollout is created.
ALTER FUNCTION ws__wave_settings_problem(jsonb) RENAME TO ws__wave_settings_problem_0012;
CREATE FUNCTION ws__wave_settings_problem(s jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT COALESCE(ws__wave_settings_problem_0012(s), CASE
        WHEN (s #> '{backup,restore_max_age_s}') IS NOT NULL
         AND (jsonb_typeof(s #> '{backup,restore_max_age_s}') IS DISTINCT FROM 'number'
              OR (s #>> '{backup,restore_max_age_s}')::numeric <= 0) THEN 'backup.restore_max_age_s must be a positive number'
        WHEN (s -> 'attestations') IS NOT NULL
         AND (jsonb_typeof(s -> 'attestations') IS DISTINCT FROM 'array'
              OR EXISTS (SELECT 1 FROM jsonb_array_elements(s -> 'attestations') e
                          WHERE jsonb_typeof(e) <> 'string' OR e #>> '{}' !~ '^[a-z0-9-]{1,63}$'))
            THEN 'attestations must be an array of names'
        WHEN (s -> 'metrics') IS NOT NULL
         AND (jsonb_typeof(s -> 'metrics') IS DISTINCT FROM 'array'
              OR EXISTS (SELECT 1 FROM jsonb_array_elements(s -> 'metrics') m
                          WHERE jsonb_typeof(m) <> 'object'
                             OR jsonb_typeof(m -> 'name') IS DISTINCT FROM 'string'
                             OR jsonb_typeof(m -> 'query') IS DISTINCT FROM 'string'
                             OR jsonb_typeof(m -> 'for_s') IS DISTINCT FROM 'number'
                             OR (m ->> 'for_s')::numeric < 0
                             OR ((m -> 'min') IS NULL AND (m -> 'max') IS NULL)
                             OR ((m -> 'min') IS NOT NULL AND jsonb_typeof(m -> 'min') <> 'number')
                             OR ((m -> 'max') IS NOT NULL AND jsonb_typeof(m -> 'max') <> 'number'))
              OR (SELECT count(DISTINCT m ->> 'name') FROM jsonb_array_elements(s -> 'metrics') m)
                 <> jsonb_array_length(s -> 'metrics'))
            THEN 'metrics must be an array of {name, query, for_s, min and/or max}, names unique'
    END)
$$;

-- What the gates of a release need to know about it, joined to the engine's
-- document as "release_gates".  Empty here; the attestations (0021) replace
-- it with their state, so that the engine's load stays one function.
CREATE FUNCTION ws__release_gate_doc(p_release bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT '{}'::jsonb
$$;

-- How long deploying a release has taken so far (engine.md "Windows in
-- practice", issue 7 "migration timing from staging"): the 90th percentile
-- of the executor calls that deployed this version (the outbox result's
-- call_s, schedule seconds, engine_fx.c) to tenants that got through, in any
-- rollout (a staging rollout with production-like data counts).  A
-- migration that took an hour in staging makes the engine expect an hour in
-- production, whatever the tenant's own history says.  The call, not the
-- deployment's started/ended times: those would count an engine outage.
CREATE FUNCTION ws__release_timing(p_version text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH m AS (
        SELECT (o.result ->> 'call_s')::float8 AS s, x.wave_id
          FROM deployments x
          JOIN outbox o ON o.deployment_id = x.id AND o.kind = 'deploy' AND o.state = 'done'
         WHERE x.target_version = p_version AND x.started_at IS NOT NULL AND x.ended_at IS NOT NULL
           AND x.state IN ('verifying', 'healthy') AND jsonb_typeof(o.result -> 'call_s') = 'number'
    )
    SELECT CASE WHEN count(*) = 0 THEN NULL ELSE jsonb_build_object(
               'p90_s', percentile_cont(0.9) WITHIN GROUP (ORDER BY m.s),
               'count', count(*),
               'waves', (SELECT jsonb_agg(DISTINCT w.name) FROM waves w
                          WHERE w.id IN (SELECT m2.wave_id FROM m m2))) END
      FROM m
$$;

-- 0005's document, with per deployment the time of the tenant's latest
-- restore verification when it succeeded ("restore_at"; none when the
-- latest one failed: a restore that worked last month says nothing once
-- this week's failed), and per rollout the release's gate
-- state and deploy timing.  Each deployment's catalog backup, restore,
-- deploy-time history and health baseline are read only in the states whose
-- decisions use them (engine_decide.c): the backup gate judges scheduled
-- tenants, the expected-duration rule scheduled and waiting ones, the
-- latency check deploying, verifying and soaking ones.  A rollout of a
-- hundred waves does not read the history of the ninety-eight that are over
-- at every step (issue 4's reaction time).
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
                                      (SELECT CASE WHEN b.restore_result = 'ok' THEN ws__us(b.restore_verified_at) END
                                         FROM backups b
                                        WHERE b.tenant_id = d.tenant_id AND b.succeeded
                                          AND b.restore_verified_at IS NOT NULL
                                        ORDER BY b.restore_verified_at DESC, b.id DESC LIMIT 1) END,
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

-- ws__release_timing() reads a release's finished deploys at every load.
CREATE INDEX deployments_version_idx ON deployments (target_version)
    WHERE started_at IS NOT NULL AND ended_at IS NOT NULL AND state IN ('verifying', 'healthy');


-- The deploy time the engine expects of a deployment (engine_decide.c
-- em_expected_s, the same rule): the longer of the tenant's own p90 and the
-- release's p90 so far, else the policy's deploy_estimate (carried by the
-- wave's settings); with where it comes from, for the rollout's views.
-- `p_timing` is ws__release_timing(p_version), read once per document.
CREATE FUNCTION ws__deploy_expected(p_dep bigint, p_tenant bigint, p_version text, p_timing jsonb,
                                    p_settings jsonb)
RETURNS json
LANGUAGE sql STABLE AS $$
    WITH own AS (
        SELECT percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM (x.ended_at - x.started_at))) AS p90,
               count(*) AS n
          FROM deployments x
         WHERE x.tenant_id = p_tenant AND x.id <> p_dep
           AND x.started_at IS NOT NULL AND x.ended_at IS NOT NULL AND x.state IN ('verifying', 'healthy')
    ), rel AS (
        SELECT (p_timing ->> 'p90_s')::float8 AS p90, (p_timing ->> 'count')::int AS n,
               p_timing -> 'waves' AS waves
    )
    SELECT CASE
        WHEN rel.p90 IS NOT NULL AND (own.p90 IS NULL OR rel.p90 > own.p90) THEN
            json_build_object('seconds', ceil(rel.p90)::bigint, 'source', 'release',
                              'detail', format('p90 of %s deployment(s) of %s so far (waves: %s)', rel.n, p_version,
                                               (SELECT string_agg(v, ', ') FROM jsonb_array_elements_text(rel.waves) v)))
        WHEN own.p90 IS NOT NULL THEN
            json_build_object('seconds', ceil(own.p90)::bigint, 'source', 'tenant',
                              'detail', format('p90 of the tenant''s %s past deployment(s)', own.n))
        ELSE json_build_object('seconds', (p_settings ->> 'deploy_estimate_s')::bigint, 'source', 'deploy_estimate',
                               'detail', 'the policy''s schedule.deploy_estimate (no deployment measured yet)')
    END
      FROM own, rel
$$;

-- 0004's document, with what each deployment is expected to take.
CREATE OR REPLACE FUNCTION ws_rollout_doc(p_id bigint, p_tenants text[]) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'id', r.id, 'release', rel.version, 'release_kind', rel.kind, 'release_digest', rel.digest,
        'policy', p.name, 'policy_version', p.version, 'policy_sha256', r.policy_sha256,
        'state', r.state, 'state_reason', r.state_reason, 'created_by', r.created_by,
        'created_at', ws__rfc3339(r.created_at), 'updated_at', ws__rfc3339(r.updated_at),
        'start', ws__rfc3339(r.start_at), 'plan_version', r.plan_version, 'plan_sha256', pl.sha256,
        'waves', COALESCE((
            SELECT json_agg(json_build_object(
                'index', w.idx, 'name', w.name, 'state', w.state, 'state_reason', w.state_reason,
                'start', ws__rfc3339(w.start_at), 'end', ws__rfc3339(w.end_at),
                'started_at', ws__rfc3339(w.started_at), 'soak_until', ws__rfc3339(w.soak_until),
                'ended_at', ws__rfc3339(w.ended_at), 'settings', w.settings,
                'approvals', COALESCE((
                    SELECT json_agg(json_build_object('actor', a.actor, 'role', a.role, 'decision', a.decision,
                                                      'comment', a.comment, 'at', ws__rfc3339(a.at)) ORDER BY a.id)
                      FROM approvals a WHERE a.wave_id = w.id), '[]'),
                'gates', CASE WHEN p_tenants IS NULL THEN COALESCE((
                    SELECT json_agg(json_build_object('gate', g.gate, 'result', g.result, 'evidence', g.evidence,
                                                      'at', ws__rfc3339(g.at)) ORDER BY g.id)
                      FROM gate_results g WHERE g.wave_id = w.id AND g.deployment_id IS NULL), '[]') ELSE '[]' END,
                'tenants', COALESCE((
                    SELECT json_agg(json_build_object(
                        'slug', d.slug, 'state', d.state, 'state_reason', d.state_reason,
                        'window_start', ws__rfc3339(d.window_start), 'window_end', ws__rfc3339(d.window_end),
                        'attempt', d.attempt, 'reasons', d.reasons, 'previous_version', d.previous_version,
                        'target_version', d.target_version, 'moves', d.moves,
                        'started_at', ws__rfc3339(d.started_at), 'ended_at', ws__rfc3339(d.ended_at),
                        'expected', ws__deploy_expected(d.id, d.tenant_id, rel.version, rt.timing, w.settings),
                        'gates', COALESCE((
                            SELECT json_agg(json_build_object('gate', g.gate, 'result', g.result,
                                                              'evidence', g.evidence, 'at', ws__rfc3339(g.at))
                                            ORDER BY g.id)
                              FROM gate_results g WHERE g.deployment_id = d.id), '[]'))
                        ORDER BY d.window_start, d.id)
                      FROM deployments d
                     WHERE d.wave_id = w.id AND (p_tenants IS NULL OR d.slug = ANY (p_tenants))), '[]'))
                ORDER BY w.idx)
              FROM waves w WHERE w.rollout_id = r.id), '[]'),
        'unassigned', COALESCE((
            SELECT json_agg(u ORDER BY u ->> 'slug')
              FROM jsonb_array_elements(pl.plan::jsonb -> 'unassigned') u
             WHERE p_tenants IS NULL OR u ->> 'slug' = ANY (p_tenants)), '[]'))
      FROM rollouts r
      JOIN releases rel ON rel.id = r.release_id
      JOIN policies p ON p.id = r.policy_id
      JOIN rollout_plans pl ON pl.rollout_id = r.id AND pl.version = r.plan_version
      CROSS JOIN LATERAL (SELECT ws__release_timing(rel.version) AS timing) rt
     WHERE r.id = p_id
       AND (p_tenants IS NULL OR EXISTS (SELECT 1 FROM deployments d
                                          WHERE d.rollout_id = r.id AND d.slug = ANY (p_tenants)))
$$;
