-- 0013: re-planning a rollout that has not started (engine.md: "A rollout's
-- plan is frozen; re-planning creates a new plan version with a diff, never
-- silent edits").
--
-- A platform engineer creates a rollout days ahead; meanwhile the fleet
-- changes (a tenant added or removed, a window or a dependency edited) or a
-- corrected version of the policy is stored.  POST /v1/rollouts/{id}/replan
-- plans again (the same pure planner, on the thread pool) and hands the new
-- plan here, which
--   * stores it as plan version N+1 with a diff against version N (rows of
--     rollout_plans are never edited: the trigger of 0003 refuses it);
--   * rebuilds the waves and deployments from the stored plan text, as
--     ws_rollout_create does, so the rows cannot disagree with the plan;
--   * keeps a wave's approvals only when the wave is the same in both plans
--     (index, name, settings and tenants); other approvals are withdrawn into
--     approvals_withdrawn with the plan version that withdrew them, so the
--     decision stays on record and the wave needs approving again;
--   * records a move on each tenant whose window changed (the shape the
--     engine uses), so tenant views and calendar feeds see a changed window,
--     and keeps the window of a tenant left out in windows_withdrawn (0011),
--     so its calendar shows it cancelled;
--   * appends one audit row and announces events.
--
-- Only a `planned` rollout is re-planned here: nothing of it has run, so no
-- gate result, outbox row or deployment state is lost.  A running rollout
-- re-plans its remaining tenants when it resumes from preemption (engine.md),
-- which builds on this function's diff.

CREATE TABLE approvals_withdrawn (
    id            bigint PRIMARY KEY,          -- the approval's id
    rollout_id    bigint NOT NULL REFERENCES rollouts (id),
    wave_idx      integer NOT NULL,
    wave_name     text NOT NULL,
    actor         text NOT NULL,
    role          text NOT NULL,
    decision      text NOT NULL,
    comment       text NOT NULL,
    at            timestamptz NOT NULL,
    plan_version  integer NOT NULL,            -- the plan version the decision was taken on
    withdrawn_at  timestamptz NOT NULL DEFAULT now(),
    withdrawn_by  text NOT NULL,
    reason        text NOT NULL
);
CREATE INDEX approvals_withdrawn_rollout_idx ON approvals_withdrawn (rollout_id);
CREATE TRIGGER approvals_withdrawn_append_only BEFORE UPDATE OR DELETE ON approvals_withdrawn
    FOR EACH ROW EXECUTE FUNCTION ws_refuse_change();

-- A plan text the API made, checked before anything is written from it:
-- JSON, a plan of release p_release, one settings object per wave, each
-- well formed.  p_empty: the message when the plan places nobody (with %s
-- for the unassigned count); NULL allows an empty plan.  Returns the plan.
-- (ws_rollout_create of 0004 has these checks inline; 0016 re-creates it
-- calling this.)
CREATE FUNCTION ws__plan_checked(p_plan text, p_release text, p_settings jsonb, p_empty text)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_plan    jsonb;
    v_waves   integer;
    v_problem text;
BEGIN
    BEGIN
        v_plan := p_plan::jsonb;
    EXCEPTION WHEN invalid_text_representation THEN
        PERFORM ws__fail('WSE04', 'plan: not JSON');
    END;
    IF v_plan ->> 'release' IS DISTINCT FROM p_release OR jsonb_typeof(v_plan -> 'waves') IS DISTINCT FROM 'array' THEN
        PERFORM ws__fail('WSE04', format('plan: not a plan of release %s', p_release));
    END IF;
    v_waves := jsonb_array_length(v_plan -> 'waves');
    IF v_waves = 0 AND p_empty IS NOT NULL THEN
        PERFORM ws__fail('WSE04', format(p_empty, jsonb_array_length(COALESCE(v_plan -> 'unassigned', '[]'))));
    END IF;
    IF jsonb_typeof(p_settings) IS DISTINCT FROM 'array' OR jsonb_array_length(p_settings) <> v_waves THEN
        PERFORM ws__fail('WSE04', format('settings: one object per plan wave expected (%s waves)', v_waves));
    END IF;
    SELECT format('settings of wave %s: %s', n, ws__wave_settings_problem(s)) INTO v_problem
      FROM jsonb_array_elements(p_settings) WITH ORDINALITY x(s, n)
     WHERE ws__wave_settings_problem(s) IS NOT NULL
     ORDER BY n LIMIT 1;
    IF v_problem IS NOT NULL THEN
        PERFORM ws__fail('WSE04', v_problem);
    END IF;
    RETURN v_plan;
END
$$;

-- Result: {"id", "plan_version", "plan_sha256", "wave_count", "tenant_count", "diff"}.
-- The diff (stored with the plan version):
--   {"from_version", "to_version", "reason", "policy": {"from", "to"}?,
--    "added": [{slug, wave, wave_name, window_start, window_end}],
--    "removed": [{slug, wave, wave_name, window_start, window_end}],
--    "moved": [{slug, from: {wave, wave_name, window_start, window_end}, to: {...}, reasons}],
--    "unchanged": N, "approvals_withdrawn": [{wave, wave_name, actor, decision}]}
-- each list in slug order.
CREATE FUNCTION ws_rollout_replan(p_rollout bigint, p_expected_version integer, p_policy_id bigint,
                                  p_policy_sha text, p_plan text, p_settings jsonb, p_generation bigint,
                                  p_actor text, p_start timestamptz, p_reason text)
RETURNS json
LANGUAGE plpgsql AS $$
DECLARE
    v_ro       rollouts%ROWTYPE;
    v_release  text;
    v_plan     jsonb;
    v_gen      bigint;
    v_version  integer;
    v_sha      text;
    v_waves    integer;
    v_tenants  integer;
    v_rows     integer;
    v_problem  text;
    v_conflict record;
    v_missing  text;
    v_diff     jsonb;
    v_withdrawn jsonb;
    v_old_policy text;
    v_new_policy text;
BEGIN
    IF p_actor IS NULL OR p_actor = '' THEN
        PERFORM ws__fail('WSE04', 'a re-plan needs an actor');
    END IF;
    IF p_reason IS NULL OR btrim(p_reason) = '' THEN
        PERFORM ws__fail('WSE04', 'reason: a re-plan needs a reason (it is kept with the plan version)');
    END IF;
    -- The same order of locks as ws_rollout_create: creations and re-plans
    -- are serialised, and no fleet import comes in before commit.
    PERFORM pg_advisory_xact_lock(hashtext('wavesched.rollout_create'));
    PERFORM pg_advisory_xact_lock(hashtext('wavesched.fleet_import'));

    SELECT * INTO v_ro FROM rollouts r WHERE r.id = p_rollout FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM ws__fail('WSE05', format('rollout %s does not exist', p_rollout));
    END IF;
    IF v_ro.state <> 'planned' THEN
        PERFORM ws__fail('WSE02', format('state conflict: rollout %s is %s; only a planned rollout is re-planned (a running one is re-planned when it resumes from preemption)',
                                         p_rollout, v_ro.state));
    END IF;
    IF v_ro.plan_version <> p_expected_version THEN
        PERFORM ws__fail('WSE02', format('rollout %s was re-planned meanwhile (plan version %s, expected %s): re-plan again',
                                         p_rollout, v_ro.plan_version, p_expected_version));
    END IF;
    IF EXISTS (SELECT 1 FROM gate_results g WHERE g.rollout_id = p_rollout)
       OR EXISTS (SELECT 1 FROM outbox o WHERE o.rollout_id = p_rollout)
       OR EXISTS (SELECT 1 FROM deployments d WHERE d.rollout_id = p_rollout AND d.state <> 'scheduled') THEN
        PERFORM ws__fail('WSE02', format('state conflict: rollout %s has already acted on tenants and cannot be re-planned',
                                         p_rollout));
    END IF;
    SELECT COALESCE(max(f.id), 0) INTO v_gen FROM fleet_imports f;
    IF v_gen <> p_generation THEN
        PERFORM ws__fail('WSE02', format('the fleet changed while the plan was made (generation %s, now %s): re-plan again',
                                         p_generation, v_gen));
    END IF;
    SELECT x.version INTO v_release FROM releases x WHERE x.id = v_ro.release_id;

    v_plan := ws__plan_checked(p_plan, v_release, p_settings, 'the new plan places no tenant: nothing to roll out (%s unassigned); abort the rollout instead');
    v_waves := jsonb_array_length(v_plan -> 'waves');

    CREATE TEMP TABLE IF NOT EXISTS ws_replan_new (
        slug text PRIMARY KEY, wave_idx integer, wave_name text, window_start timestamptz,
        window_end timestamptz, reasons jsonb) ON COMMIT DROP;
    TRUNCATE ws_replan_new;
    INSERT INTO ws_replan_new
    SELECT t ->> 'slug', (w ->> 'index')::integer, w ->> 'name', (t ->> 'window_start')::timestamptz,
           (t ->> 'window_end')::timestamptz, COALESCE(t -> 'reasons', '[]')
      FROM jsonb_array_elements(v_plan -> 'waves') w, jsonb_array_elements(w -> 'tenants') t;
    GET DIAGNOSTICS v_tenants = ROW_COUNT;

    CREATE TEMP TABLE IF NOT EXISTS ws_replan_old (
        slug text PRIMARY KEY, tenant_id bigint, wave_idx integer, wave_name text,
        window_start timestamptz, window_end timestamptz, moves jsonb) ON COMMIT DROP;
    TRUNCATE ws_replan_old;
    INSERT INTO ws_replan_old
    SELECT d.slug, d.tenant_id, w.idx, w.name, d.window_start, d.window_end, d.moves
      FROM deployments d JOIN waves w ON w.id = d.wave_id
     WHERE d.rollout_id = p_rollout;

    FOR v_conflict IN
        SELECT r.id, r.state, count(*) AS n,
               string_agg(d.slug, ', ' ORDER BY d.slug) FILTER (WHERE d.rn <= 10) AS slugs
          FROM (SELECT x.rollout_id, x.slug, row_number() OVER (PARTITION BY x.rollout_id ORDER BY x.slug) AS rn
                  FROM deployments x WHERE x.slug IN (SELECT n.slug FROM ws_replan_new n)
                   AND x.rollout_id <> p_rollout) d
          JOIN rollouts r ON r.id = d.rollout_id
         WHERE ws__rollout_holds_tenants(r.state)
         GROUP BY r.id, r.state ORDER BY r.id LIMIT 1
    LOOP
        PERFORM ws__fail('WSE02', format('tenants %s%s are already in rollout %s (%s); finish or abort it first',
                                         v_conflict.slugs,
                                         CASE WHEN v_conflict.n > 10 THEN format(' and %s more', v_conflict.n - 10) ELSE '' END,
                                         v_conflict.id, v_conflict.state));
    END LOOP;
    SELECT string_agg(m.slug, ', ' ORDER BY m.slug) INTO v_missing
      FROM (SELECT n.slug FROM ws_replan_new n
             WHERE NOT EXISTS (SELECT 1 FROM tenants t WHERE t.slug = n.slug AND t.removed_at IS NULL)
             ORDER BY n.slug LIMIT 10) m;
    IF v_missing IS NOT NULL THEN
        PERFORM ws__fail('WSE02', format('plan: tenants %s are not in the fleet', v_missing));
    END IF;

    -- Approvals stand only for a wave that is the same in both plans.
    CREATE TEMP TABLE IF NOT EXISTS ws_replan_kept_waves (idx integer PRIMARY KEY) ON COMMIT DROP;
    TRUNCATE ws_replan_kept_waves;
    INSERT INTO ws_replan_kept_waves
    SELECT w.idx FROM waves w
      JOIN LATERAL (SELECT nw, n FROM jsonb_array_elements(v_plan -> 'waves') WITH ORDINALITY x(nw, n)
                     WHERE (nw ->> 'index')::integer = w.idx) nx ON true
     WHERE w.rollout_id = p_rollout
       AND w.name = nx.nw ->> 'name'
       AND w.settings = p_settings -> (nx.n::integer - 1)
       AND ARRAY(SELECT o.slug FROM ws_replan_old o WHERE o.wave_idx = w.idx ORDER BY o.slug)
           = ARRAY(SELECT n.slug FROM ws_replan_new n WHERE n.wave_idx = w.idx ORDER BY n.slug);

    SELECT COALESCE(jsonb_agg(jsonb_build_object('wave', w.idx, 'wave_name', w.name, 'actor', a.actor,
                                                 'decision', a.decision) ORDER BY w.idx, a.id), '[]')
      INTO v_withdrawn
      FROM approvals a JOIN waves w ON w.id = a.wave_id
     WHERE a.rollout_id = p_rollout AND w.idx NOT IN (SELECT k.idx FROM ws_replan_kept_waves k);

    v_version := v_ro.plan_version + 1;
    SELECT p.name || ' v' || p.version INTO v_old_policy FROM policies p WHERE p.id = v_ro.policy_id;
    SELECT p.name || ' v' || p.version INTO v_new_policy FROM policies p WHERE p.id = p_policy_id;
    IF v_new_policy IS NULL THEN
        PERFORM ws__fail('WSE04', format('policy: no stored policy with id %s', p_policy_id));
    END IF;

    v_diff := jsonb_build_object(
        'from_version', v_ro.plan_version, 'to_version', v_version, 'reason', p_reason,
        'added', (SELECT COALESCE(jsonb_agg(jsonb_build_object('slug', n.slug, 'wave', n.wave_idx,
                      'wave_name', n.wave_name, 'window_start', ws__rfc3339(n.window_start),
                      'window_end', ws__rfc3339(n.window_end), 'reasons', n.reasons) ORDER BY n.slug), '[]')
                    FROM ws_replan_new n WHERE NOT EXISTS (SELECT 1 FROM ws_replan_old o WHERE o.slug = n.slug)),
        'removed', (SELECT COALESCE(jsonb_agg(jsonb_build_object('slug', o.slug, 'wave', o.wave_idx,
                      'wave_name', o.wave_name, 'window_start', ws__rfc3339(o.window_start),
                      'window_end', ws__rfc3339(o.window_end)) ORDER BY o.slug), '[]')
                    FROM ws_replan_old o WHERE NOT EXISTS (SELECT 1 FROM ws_replan_new n WHERE n.slug = o.slug)),
        'moved', (SELECT COALESCE(jsonb_agg(jsonb_build_object('slug', o.slug,
                      'from', jsonb_build_object('wave', o.wave_idx, 'wave_name', o.wave_name,
                                                 'window_start', ws__rfc3339(o.window_start),
                                                 'window_end', ws__rfc3339(o.window_end)),
                      'to', jsonb_build_object('wave', n.wave_idx, 'wave_name', n.wave_name,
                                               'window_start', ws__rfc3339(n.window_start),
                                               'window_end', ws__rfc3339(n.window_end)),
                      'reasons', n.reasons) ORDER BY o.slug), '[]')
                    FROM ws_replan_old o JOIN ws_replan_new n ON n.slug = o.slug
                   WHERE (o.wave_idx, o.wave_name) IS DISTINCT FROM (n.wave_idx, n.wave_name)
                      OR (o.window_start, o.window_end) IS DISTINCT FROM (n.window_start, n.window_end)),
        'unchanged', (SELECT count(*) FROM ws_replan_old o JOIN ws_replan_new n ON n.slug = o.slug
                       WHERE (o.wave_idx, o.wave_name) IS NOT DISTINCT FROM (n.wave_idx, n.wave_name)
                         AND (o.window_start, o.window_end) IS NOT DISTINCT FROM (n.window_start, n.window_end)),
        'approvals_withdrawn', v_withdrawn);
    IF p_policy_id <> v_ro.policy_id THEN
        v_diff := v_diff || jsonb_build_object('policy', jsonb_build_object('from', v_old_policy, 'to', v_new_policy));
    END IF;

    v_sha := encode(sha256(convert_to(p_plan, 'UTF8')), 'hex');
    INSERT INTO rollout_plans (rollout_id, version, plan, sha256, diff, reason, created_by)
    VALUES (p_rollout, v_version, p_plan, v_sha, v_diff, p_reason, p_actor);

    -- Approvals: withdrawn ones into the record, kept ones set aside to be
    -- put back on the rebuilt wave.
    INSERT INTO approvals_withdrawn (id, rollout_id, wave_idx, wave_name, actor, role, decision, comment, at,
                                     plan_version, withdrawn_by, reason)
    SELECT a.id, a.rollout_id, w.idx, w.name, a.actor, a.role, a.decision, a.comment, a.at,
           v_ro.plan_version, p_actor, format('plan version %s changed wave %s', v_version, w.idx)
      FROM approvals a JOIN waves w ON w.id = a.wave_id
     WHERE a.rollout_id = p_rollout AND w.idx NOT IN (SELECT k.idx FROM ws_replan_kept_waves k);
    CREATE TEMP TABLE IF NOT EXISTS ws_replan_approvals ON COMMIT DROP AS
        SELECT a.*, 0 AS wave_idx FROM approvals a WHERE false;
    TRUNCATE ws_replan_approvals;
    INSERT INTO ws_replan_approvals
    SELECT a.*, w.idx FROM approvals a JOIN waves w ON w.id = a.wave_id
     WHERE a.rollout_id = p_rollout AND w.idx IN (SELECT k.idx FROM ws_replan_kept_waves k);
    -- A tenant the new plan leaves out keeps a cancelled window in its
    -- calendar (0011).
    INSERT INTO windows_withdrawn (rollout_id, tenant_id, wave_idx, wave_name, window_start, window_end, moves, reason)
    SELECT p_rollout, o.tenant_id, o.wave_idx, o.wave_name, o.window_start, o.window_end, o.moves,
           format('withdrawn by re-plan (plan version %s): %s', v_version, p_reason)
      FROM ws_replan_old o WHERE NOT EXISTS (SELECT 1 FROM ws_replan_new n WHERE n.slug = o.slug);
    DELETE FROM approvals a WHERE a.rollout_id = p_rollout;
    DELETE FROM deployments d WHERE d.rollout_id = p_rollout;
    DELETE FROM waves w WHERE w.rollout_id = p_rollout;

    INSERT INTO waves (rollout_id, idx, name, start_at, end_at, settings)
    SELECT p_rollout, (w ->> 'index')::integer, w ->> 'name', (w ->> 'start')::timestamptz,
           (w ->> 'end')::timestamptz, p_settings -> (n::integer - 1)
      FROM jsonb_array_elements(v_plan -> 'waves') WITH ORDINALITY x(w, n);
    INSERT INTO approvals (id, rollout_id, wave_id, actor, role, decision, comment, at)
    SELECT k.id, p_rollout, w.id, k.actor, k.role, k.decision, k.comment, k.at
      FROM ws_replan_approvals k JOIN waves w ON w.rollout_id = p_rollout AND w.idx = k.wave_idx;

    INSERT INTO deployments (rollout_id, wave_id, tenant_id, slug, window_start, window_end, reasons,
                             previous_version, target_version, moves)
    SELECT p_rollout, w.id, t.id, n.slug, n.window_start, n.window_end, n.reasons, t.version, v_release,
           COALESCE(o.moves, '[]') || CASE
               WHEN o.slug IS NOT NULL AND (o.window_start, o.window_end) IS DISTINCT FROM (n.window_start, n.window_end)
               THEN jsonb_build_array(jsonb_build_object(
                        'reason', format('re-planned (plan version %s): %s', v_version, p_reason),
                        'from_start', ws__rfc3339(o.window_start), 'from_end', ws__rfc3339(o.window_end),
                        'to_start', ws__rfc3339(n.window_start), 'to_end', ws__rfc3339(n.window_end),
                        'plan_version', v_version))
               ELSE '[]'::jsonb END
      FROM ws_replan_new n
      JOIN waves w ON w.rollout_id = p_rollout AND w.idx = n.wave_idx
      JOIN tenants t ON t.slug = n.slug AND t.removed_at IS NULL
      LEFT JOIN ws_replan_old o ON o.slug = n.slug;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    IF v_rows <> v_tenants THEN
        PERFORM ws__fail('WSE04', format('plan: %s tenants placed, %s deployments made', v_tenants, v_rows));
    END IF;

    UPDATE rollouts r SET plan_version = v_version, start_at = p_start, policy_id = p_policy_id,
                          policy_sha256 = p_policy_sha, updated_at = now()
     WHERE r.id = p_rollout;

    PERFORM ws_audit_append(p_actor, 'rollout.replan', format('rollout/%s', p_rollout),
        jsonb_build_object('from_version', v_ro.plan_version, 'to_version', v_version, 'reason', p_reason,
                           'plan_sha256', v_sha, 'policy_id', p_policy_id, 'policy_sha256', p_policy_sha,
                           'start', ws__rfc3339(p_start), 'fleet_generation', p_generation,
                           'added', jsonb_array_length(v_diff -> 'added'),
                           'removed', jsonb_array_length(v_diff -> 'removed'),
                           'moved', jsonb_array_length(v_diff -> 'moved'),
                           'approvals_withdrawn', jsonb_array_length(v_withdrawn)));
    INSERT INTO events (rollout_id, kind, payload)
    VALUES (p_rollout, 'rollout.replanned', jsonb_build_object('object', 'rollout', 'id', p_rollout,
            'rollout', p_rollout, 'plan_version', v_version, 'reason', p_reason, 'actor', p_actor,
            'added', jsonb_array_length(v_diff -> 'added'), 'removed', jsonb_array_length(v_diff -> 'removed'),
            'moved', jsonb_array_length(v_diff -> 'moved')));
    -- Each tenant whose schedule changed learns it on its own stream.
    INSERT INTO events (rollout_id, tenant, kind, payload)
    SELECT p_rollout, x ->> 'slug', 'deployment.scheduled',
           jsonb_build_object('object', 'deployment', 'rollout', p_rollout, 'tenant', x ->> 'slug',
                              'wave', x -> 'wave', 'window_start', x -> 'window_start',
                              'window_end', x -> 'window_end', 'plan_version', v_version)
      FROM jsonb_array_elements(v_diff -> 'added') x;
    INSERT INTO events (rollout_id, tenant, kind, payload)
    SELECT p_rollout, x ->> 'slug', 'deployment.moved',
           jsonb_build_object('object', 'deployment', 'rollout', p_rollout, 'tenant', x ->> 'slug',
                              'from', x -> 'from', 'to', x -> 'to', 'plan_version', v_version,
                              'reason', p_reason)
      FROM jsonb_array_elements(v_diff -> 'moved') x;
    INSERT INTO events (rollout_id, tenant, kind, payload)
    SELECT p_rollout, x ->> 'slug', 'deployment.cancelled',
           jsonb_build_object('object', 'deployment', 'rollout', p_rollout, 'tenant', x ->> 'slug',
                              'window_start', x -> 'window_start', 'window_end', x -> 'window_end',
                              'plan_version', v_version, 'reason', p_reason)
      FROM jsonb_array_elements(v_diff -> 'removed') x;
    PERFORM pg_notify('ws_events', '');
    RETURN json_build_object('id', p_rollout, 'plan_version', v_version, 'plan_sha256', v_sha,
                             'wave_count', v_waves, 'tenant_count', v_tenants, 'diff', v_diff);
END
$$;

-- The plan versions of a rollout, oldest first, without the plan texts
-- (GET /v1/rollouts/{id}/plan?version=N serves each one byte for byte).
CREATE FUNCTION ws_rollout_plans(p_rollout bigint) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM rollouts r WHERE r.id = p_rollout) THEN NULL ELSE
        json_build_object('rollout', p_rollout, 'plans', COALESCE((
            SELECT json_agg(json_build_object('version', p.version, 'sha256', p.sha256, 'reason', p.reason,
                                              'created_by', p.created_by, 'created_at', ws__rfc3339(p.created_at),
                                              'diff', p.diff) ORDER BY p.version)
              FROM rollout_plans p WHERE p.rollout_id = p_rollout), '[]'),
            'approvals_withdrawn', COALESCE((
            SELECT json_agg(json_build_object('id', a.id, 'wave', a.wave_idx, 'wave_name', a.wave_name,
                                              'actor', a.actor, 'role', a.role, 'decision', a.decision,
                                              'comment', a.comment, 'at', ws__rfc3339(a.at),
                                              'plan_version', a.plan_version,
                                              'withdrawn_at', ws__rfc3339(a.withdrawn_at),
                                              'withdrawn_by', a.withdrawn_by, 'reason', a.reason) ORDER BY a.id)
              FROM approvals_withdrawn a WHERE a.rollout_id = p_rollout), '[]'))
    END
$$;

-- The evidence bundle (0010) gains the approvals a re-plan withdrew: they
-- are decisions people took, and their audit rows are in the bundle.
ALTER FUNCTION ws_rollout_evidence(bigint) RENAME TO ws__rollout_evidence_0010;
CREATE FUNCTION ws_rollout_evidence(p_id bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT e || jsonb_build_object('approvals_withdrawn', COALESCE((
               SELECT jsonb_agg(jsonb_build_object('id', a.id, 'wave', a.wave_idx, 'wave_name', a.wave_name,
                                                   'actor', a.actor, 'role', a.role, 'decision', a.decision,
                                                   'comment', a.comment, 'at', ws__rfc3339(a.at),
                                                   'plan_version', a.plan_version,
                                                   'withdrawn_at', ws__rfc3339(a.withdrawn_at),
                                                   'withdrawn_by', a.withdrawn_by, 'reason', a.reason)
                                ORDER BY a.id)
                 FROM approvals_withdrawn a WHERE a.rollout_id = p_id), '[]'))
      FROM ws__rollout_evidence_0010(p_id) e
     WHERE e IS NOT NULL
$$;
