-- Tenant deferral (issue 6, POST /v1/tenants/{slug}/deferrals).
--
-- A tenant owner moves its own not-yet-started deployment, and the
-- deployments of its dependents in the same rollout, to a trailing wave
-- named "deferred" placed after the rollout's last wave.  The placement is
-- the planner's (api_defer.c, plan_defer()); these functions read what it
-- needs (ws_defer_context) and commit it (ws_tenant_defer) after checking
-- that nothing it was computed from changed meanwhile.
--
-- A deferral is not a re-plan: the frozen plan keeps its version, as with
-- the engine's own window moves; every moved deployment records a move
-- (0011 shows it and bumps the calendar's SEQUENCE) and the deferrals table
-- says who asked, when, why and what moved.

CREATE TABLE deferrals (
    id          bigserial PRIMARY KEY,
    rollout_id  bigint NOT NULL REFERENCES rollouts (id),
    tenant_id   bigint NOT NULL REFERENCES tenants (id),
    slug        text NOT NULL,
    plan_version integer NOT NULL,             -- a re-plan rebuilds the rows: deferrals count per version
    actor       text NOT NULL,
    role        text NOT NULL,
    reason      text NOT NULL DEFAULT '',
    until_at    timestamptz,                   -- asked: not before this
    from_start  timestamptz,
    from_end    timestamptz,
    to_start    timestamptz NOT NULL,
    to_end      timestamptz NOT NULL,
    -- every moved deployment, the tenant's first:
    -- [{"slug", "from_start", "from_end", "to_start", "to_end"}]
    moved       jsonb NOT NULL CHECK (jsonb_typeof(moved) = 'array'),
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deferrals_rollout_idx ON deferrals (rollout_id, tenant_id);

-- The deferral limits count the tenant's own deferrals under the rollout's
-- current plan version (a re-plan rebuilds every row from the plan, undoing
-- the moves); "max" is measured from the window the tenant had before its
-- first of them.
CREATE FUNCTION ws__defer_count(p_rollout bigint, p_tenant bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT count(*) FROM deferrals d JOIN rollouts r ON r.id = d.rollout_id
     WHERE d.rollout_id = p_rollout AND d.tenant_id = p_tenant AND d.plan_version = r.plan_version
$$;

CREATE FUNCTION ws__defer_original_start(p_rollout bigint, p_tenant bigint, p_current timestamptz)
RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT COALESCE((SELECT d.from_start FROM deferrals d JOIN rollouts r ON r.id = d.rollout_id
                      WHERE d.rollout_id = p_rollout AND d.tenant_id = p_tenant
                        AND d.plan_version = r.plan_version
                      ORDER BY d.id LIMIT 1), p_current)
$$;

-- Everything the placement needs, after the refusals that need no policy:
-- {"rollout", "state", "release", "kind", "policy_text", "plan_version",
--  "generation", "deployment": {"state", "window_start", "window_end"},
--  "original_start", "deferrals", "after", "deferred_wave_end",
--  "open": {slug: window_start} of the rollout's deployments not started,
--  "started": [the others]}
-- "after" is where the deferred placement may begin: the end of the
-- deferred wave (when a deferral made it already) or else of the last wave,
-- plus that wave's soak, as between any two waves (policy.md step 5).
CREATE FUNCTION ws_defer_context(p_slug text, p_rollout bigint) RETURNS json
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_ro    rollouts%ROWTYPE;
    v_kind  text;
    v_rel   text;
    v_dep   deployments%ROWTYPE;
    v_last  waves%ROWTYPE;
    v_def   waves%ROWTYPE;
BEGIN
    -- One answer for a rollout that does not exist and one the tenant is
    -- not in: a tenant token learns nothing of other rollouts.
    SELECT * INTO v_ro FROM rollouts r WHERE r.id = p_rollout;
    SELECT d.* INTO v_dep FROM deployments d JOIN tenants t ON t.id = d.tenant_id
     WHERE d.rollout_id = p_rollout AND t.slug = p_slug;
    IF v_ro.id IS NULL OR v_dep.id IS NULL THEN
        PERFORM ws__fail('WSE05', format('tenant %s has no deployment in rollout %s', p_slug, p_rollout));
    END IF;
    SELECT x.kind, x.version INTO v_kind, v_rel FROM releases x WHERE x.id = v_ro.release_id;
    IF v_kind = 'urgent' THEN
        PERFORM ws__fail('WSE04', format('rollout %s rolls out urgent release %s: an urgent release is never deferred',
                                         p_rollout, v_rel));
    END IF;
    IF v_ro.state NOT IN ('planned', 'approved', 'running', 'paused') THEN
        PERFORM ws__fail('WSE02', format('state conflict: rollout %s is %s; only a planned, approved, running or paused rollout takes deferrals',
                                         p_rollout, v_ro.state));
    END IF;
    IF v_dep.state NOT IN ('scheduled', 'waiting_window') THEN
        PERFORM ws__fail('WSE02', format('state conflict: the deployment of %s in rollout %s is %s; only a scheduled or waiting deployment is deferred',
                                         p_slug, p_rollout, v_dep.state));
    END IF;
    SELECT * INTO v_last FROM waves w WHERE w.rollout_id = p_rollout ORDER BY w.idx DESC LIMIT 1;
    SELECT * INTO v_def FROM waves w WHERE w.rollout_id = p_rollout AND w.name = 'deferred';
    RETURN json_build_object(
        'rollout', p_rollout, 'state', v_ro.state, 'release', v_rel, 'kind', v_kind,
        'policy_text', (SELECT p.body FROM policies p WHERE p.id = v_ro.policy_id),
        'plan_version', v_ro.plan_version,
        'generation', (SELECT COALESCE(max(f.id), 0) FROM fleet_imports f),
        'deployment', json_build_object('state', v_dep.state, 'window_start', ws__rfc3339(v_dep.window_start),
                                        'window_end', ws__rfc3339(v_dep.window_end)),
        'original_start', ws__rfc3339(ws__defer_original_start(p_rollout, v_dep.tenant_id, v_dep.window_start)),
        'deferrals', ws__defer_count(p_rollout, v_dep.tenant_id),
        'after', ws__rfc3339(COALESCE(v_last.end_at, v_last.start_at, v_ro.start_at)
                             + make_interval(secs => COALESCE((v_last.settings ->> 'soak_s')::bigint, 0))),
        'deferred_wave_end', ws__rfc3339(v_def.end_at),
        'open', (SELECT COALESCE(json_object_agg(d.slug, ws__rfc3339(d.window_start) ORDER BY d.slug), '{}')
                   FROM deployments d
                  WHERE d.rollout_id = p_rollout AND d.state IN ('scheduled', 'waiting_window')),
        'started', (SELECT COALESCE(json_agg(d.slug ORDER BY d.slug), '[]') FROM deployments d
                     WHERE d.rollout_id = p_rollout AND d.state NOT IN ('scheduled', 'waiting_window')));
END
$$;

-- Commits a deferral.  p_moves: [{"slug", "window_start", "window_end",
-- "reasons"}], the tenant first, as placed from p_expected:
-- {"plan_version", "after", "windows": {slug: window_start or null}}.
-- Every refusal of ws_defer_context is checked again here under the locks,
-- with the limits of the policy (p_max_s, p_per_tenant) and the guard that
-- the fleet, the plan and the moved deployments are as the placement saw
-- them.
CREATE FUNCTION ws_tenant_defer(p_slug text, p_rollout bigint, p_actor text, p_role text, p_reason text,
                                p_until timestamptz, p_generation bigint, p_expected jsonb, p_moves jsonb,
                                p_settings jsonb, p_max_s bigint, p_per_tenant integer)
RETURNS json
LANGUAGE plpgsql AS $$
DECLARE
    v_ro       rollouts%ROWTYPE;
    v_ctx      jsonb;
    v_dep      deployments%ROWTYPE;
    v_gen      bigint;
    v_n        integer;
    v_orig     timestamptz;
    v_new      timestamptz;
    v_wave     waves%ROWTYPE;
    v_bad      text;
    v_moved    jsonb;
    v_reason   text;
    v_id       bigint;
    v_start    timestamptz;
    v_end      timestamptz;
    v_created  boolean := false;
    v_dropped  jsonb;
BEGIN
    IF p_actor IS NULL OR p_actor = '' THEN
        PERFORM ws__fail('WSE04', 'a deferral needs an actor');
    END IF;
    IF jsonb_typeof(p_moves) IS DISTINCT FROM 'array' OR jsonb_array_length(p_moves) = 0
       OR p_moves -> 0 ->> 'slug' IS DISTINCT FROM p_slug THEN
        PERFORM ws__fail('WSE04', format('moves: the deferred tenant %s must come first', p_slug));
    END IF;
    IF ws__wave_settings_problem(p_settings) IS NOT NULL THEN
        PERFORM ws__fail('WSE04', 'settings of the deferred wave: ' || ws__wave_settings_problem(p_settings));
    END IF;
    -- Against a fleet import (dependencies, windows) until commit.
    PERFORM pg_advisory_xact_lock(hashtext('wavesched.fleet_import'));
    SELECT * INTO v_ro FROM rollouts r WHERE r.id = p_rollout FOR UPDATE;
    v_ctx := ws_defer_context(p_slug, p_rollout)::jsonb;
    SELECT COALESCE(max(f.id), 0) INTO v_gen FROM fleet_imports f;
    IF v_gen <> p_generation THEN
        PERFORM ws__fail('WSE02', format('the fleet changed while the deferral was placed (generation %s, now %s): defer again',
                                         p_generation, v_gen));
    END IF;
    IF v_ro.plan_version <> (p_expected ->> 'plan_version')::integer
       OR v_ctx ->> 'after' IS DISTINCT FROM p_expected ->> 'after' THEN
        PERFORM ws__fail('WSE02', format('rollout %s changed while the deferral was placed: defer again', p_rollout));
    END IF;
    SELECT d.* INTO v_dep FROM deployments d
     WHERE d.rollout_id = p_rollout AND d.slug = p_slug FOR UPDATE;
    v_n := ws__defer_count(p_rollout, v_dep.tenant_id);
    IF v_n >= p_per_tenant THEN
        PERFORM ws__fail('WSE02', format('tenant %s has already deferred its window in rollout %s %s time%s (the policy allows %s)',
                                         p_slug, p_rollout, v_n, CASE WHEN v_n = 1 THEN '' ELSE 's' END, p_per_tenant));
    END IF;

    CREATE TEMP TABLE IF NOT EXISTS ws_defer_moves (
        n integer, slug text PRIMARY KEY, window_start timestamptz, window_end timestamptz,
        reasons jsonb, dep_id bigint, from_start timestamptz, from_end timestamptz) ON COMMIT DROP;
    TRUNCATE ws_defer_moves;
    INSERT INTO ws_defer_moves (n, slug, window_start, window_end, reasons)
    SELECT x.n, m ->> 'slug', (m ->> 'window_start')::timestamptz, (m ->> 'window_end')::timestamptz,
           COALESCE(m -> 'reasons', '[]')
      FROM jsonb_array_elements(p_moves) WITH ORDINALITY x(m, n);
    -- Locked before they are compared, so that the engine cannot start one
    -- between the check and the move.
    PERFORM 1 FROM deployments d
     WHERE d.rollout_id = p_rollout AND d.slug IN (SELECT m.slug FROM ws_defer_moves m)
     ORDER BY d.id FOR UPDATE;
    UPDATE ws_defer_moves m SET dep_id = d.id, from_start = d.window_start, from_end = d.window_end
      FROM deployments d
     WHERE d.rollout_id = p_rollout AND d.slug = m.slug AND d.state IN ('scheduled', 'waiting_window')
       AND (p_expected -> 'windows') ? m.slug
       AND d.window_start IS NOT DISTINCT FROM (p_expected -> 'windows' ->> m.slug)::timestamptz;
    SELECT string_agg(m.slug, ', ' ORDER BY m.slug) INTO v_bad FROM ws_defer_moves m WHERE m.dep_id IS NULL;
    IF v_bad IS NOT NULL THEN
        PERFORM ws__fail('WSE02', format('deployments of %s in rollout %s changed while the deferral was placed: defer again',
                                         v_bad, p_rollout));
    END IF;
    IF EXISTS (SELECT 1 FROM ws_defer_moves m WHERE m.window_start IS NULL OR m.window_end IS NULL
                  OR m.window_end <= m.window_start) THEN
        PERFORM ws__fail('WSE04', 'moves: every move needs a window_start before its window_end');
    END IF;

    v_orig := (v_ctx ->> 'original_start')::timestamptz;
    SELECT m.window_start INTO v_new FROM ws_defer_moves m WHERE m.slug = p_slug;
    IF v_orig IS NOT NULL AND v_new > v_orig + make_interval(secs => p_max_s) THEN
        PERFORM ws__fail('WSE04', format('the first window of %s after rollout %s''s last wave starts %s, beyond the policy''s deferral max (%s after its window of %s)',
                                         p_slug, p_rollout, ws__rfc3339(v_new), make_interval(secs => p_max_s),
                                         ws__rfc3339(v_orig)));
    END IF;

    SELECT min(m.window_start), max(m.window_end) INTO v_start, v_end FROM ws_defer_moves m;
    SELECT * INTO v_wave FROM waves w WHERE w.rollout_id = p_rollout AND w.name = 'deferred' FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO waves (rollout_id, idx, name, start_at, end_at, settings)
        SELECT p_rollout, COALESCE(max(w.idx), 0) + 1, 'deferred', v_start, v_end, p_settings
          FROM waves w WHERE w.rollout_id = p_rollout
        RETURNING * INTO v_wave;
        v_created := true;
    ELSE
        UPDATE waves w SET start_at = least(w.start_at, v_start), end_at = greatest(w.end_at, v_end),
                           updated_at = now()
         WHERE w.id = v_wave.id RETURNING * INTO v_wave;
    END IF;

    v_reason := format('deferred by tenant owner %s (%s)%s', p_slug, p_actor,
                       CASE WHEN COALESCE(p_reason, '') <> '' THEN ': ' || p_reason ELSE '' END);
    UPDATE deployments d
       SET wave_id = v_wave.id, window_start = m.window_start, window_end = m.window_end,
           reasons = jsonb_build_array(CASE WHEN m.slug = p_slug THEN v_reason
                                            ELSE format('moves with %s, which it depends on: %s', p_slug, v_reason) END)
                     || m.reasons,
           moves = d.moves || jsonb_build_array(jsonb_build_object(
               'reason', CASE WHEN m.slug = p_slug THEN v_reason
                              ELSE format('depends on %s: %s', p_slug, v_reason) END,
               'from_start', ws__rfc3339(m.from_start), 'from_end', ws__rfc3339(m.from_end),
               'to_start', ws__rfc3339(m.window_start), 'to_end', ws__rfc3339(m.window_end))),
           updated_at = now()
      FROM ws_defer_moves m WHERE m.dep_id = d.id;

    -- A wave the deferral emptied that has not started would wait for its
    -- approvals with nothing to approve (overflow waves carry the last
    -- wave's gates): it goes, with its approvals withdrawn on the record.
    -- A wave that started (gate results) stays and passes empty.
    SELECT COALESCE(jsonb_agg(jsonb_build_object('index', w.idx, 'name', w.name) ORDER BY w.idx), '[]')
      INTO v_dropped
      FROM waves w
     WHERE w.rollout_id = p_rollout AND w.id <> v_wave.id AND w.state = 'pending'
       AND NOT EXISTS (SELECT 1 FROM deployments d WHERE d.wave_id = w.id)
       AND NOT EXISTS (SELECT 1 FROM gate_results g WHERE g.wave_id = w.id);
    INSERT INTO approvals_withdrawn (id, rollout_id, wave_idx, wave_name, actor, role, decision, comment, at,
                                     plan_version, withdrawn_by, reason)
    SELECT a.id, a.rollout_id, w.idx, w.name, a.actor, a.role, a.decision, a.comment, a.at,
           v_ro.plan_version, p_actor, format('wave %s (%s) emptied by the deferral of %s', w.idx, w.name, p_slug)
      FROM approvals a JOIN waves w ON w.id = a.wave_id
     WHERE a.rollout_id = p_rollout AND w.idx IN (SELECT (x ->> 'index')::integer FROM jsonb_array_elements(v_dropped) x);
    DELETE FROM approvals a USING waves w
     WHERE a.wave_id = w.id AND a.rollout_id = p_rollout
       AND w.idx IN (SELECT (x ->> 'index')::integer FROM jsonb_array_elements(v_dropped) x);
    DELETE FROM waves w
     WHERE w.rollout_id = p_rollout
       AND w.idx IN (SELECT (x ->> 'index')::integer FROM jsonb_array_elements(v_dropped) x);
    -- A new deferred wave follows the remaining waves directly.
    IF v_created THEN
        UPDATE waves w SET idx = (SELECT COALESCE(max(o.idx), 0) + 1 FROM waves o
                                   WHERE o.rollout_id = p_rollout AND o.id <> v_wave.id)
         WHERE w.id = v_wave.id RETURNING * INTO v_wave;
    END IF;

    SELECT jsonb_agg(jsonb_build_object('slug', m.slug, 'from_start', ws__rfc3339(m.from_start),
                                        'from_end', ws__rfc3339(m.from_end), 'to_start', ws__rfc3339(m.window_start),
                                        'to_end', ws__rfc3339(m.window_end)) ORDER BY m.n)
      INTO v_moved FROM ws_defer_moves m;
    INSERT INTO deferrals (rollout_id, tenant_id, slug, plan_version, actor, role, reason, until_at, from_start,
                           from_end, to_start, to_end, moved)
    SELECT p_rollout, v_dep.tenant_id, p_slug, v_ro.plan_version, p_actor, COALESCE(p_role, ''), COALESCE(p_reason, ''), p_until,
           m.from_start, m.from_end, m.window_start, m.window_end, v_moved
      FROM ws_defer_moves m WHERE m.slug = p_slug
    RETURNING id INTO v_id;
    UPDATE rollouts r SET updated_at = now() WHERE r.id = p_rollout;

    PERFORM ws_audit_append(p_actor, 'tenant.defer', format('rollout/%s/tenant/%s', p_rollout, p_slug),
        jsonb_build_object('deferral', v_id, 'rollout', p_rollout, 'tenant', p_slug, 'role', p_role,
                           'reason', COALESCE(p_reason, ''), 'until', ws__rfc3339(p_until),
                           'wave', v_wave.idx, 'fleet_generation', p_generation, 'moved', v_moved,
                           'waves_dropped', v_dropped));
    INSERT INTO events (rollout_id, kind, payload)
    VALUES (p_rollout, 'tenant.deferred', jsonb_build_object('object', 'rollout', 'id', p_rollout,
            'rollout', p_rollout, 'tenant', p_slug, 'actor', p_actor, 'deferral', v_id,
            'moved', jsonb_array_length(v_moved)));
    INSERT INTO events (rollout_id, tenant, kind, payload)
    SELECT p_rollout, m.slug, 'deployment.moved',
           jsonb_build_object('object', 'deployment', 'rollout', p_rollout, 'tenant', m.slug,
                              'to', jsonb_build_object('wave', v_wave.idx, 'wave_name', v_wave.name,
                                                       'window_start', ws__rfc3339(m.window_start),
                                                       'window_end', ws__rfc3339(m.window_end)),
                              'from', jsonb_build_object('window_start', ws__rfc3339(m.from_start),
                                                         'window_end', ws__rfc3339(m.from_end)),
                              'reason', v_reason)
      FROM ws_defer_moves m;
    PERFORM pg_notify('ws_events', '');
    RETURN json_build_object('id', v_id, 'rollout', p_rollout, 'tenant', p_slug, 'actor', p_actor,
                             'reason', COALESCE(p_reason, ''), 'until', ws__rfc3339(p_until),
                             'wave', json_build_object('index', v_wave.idx, 'name', v_wave.name,
                                                       'start', ws__rfc3339(v_wave.start_at),
                                                       'end', ws__rfc3339(v_wave.end_at)),
                             'moved', v_moved, 'waves_dropped', v_dropped);
END
$$;
