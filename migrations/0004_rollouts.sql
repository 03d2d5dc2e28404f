-- 0004: what people do through the API (api.md): releases, backup reports,
-- creating a rollout from a frozen plan, deciding on waves, and the JSON
-- documents the API serves for rollouts.
--
-- Every function here is one statement of the caller, so each mutation is one
-- transaction with its audit row (ws_audit_append) and its event.  Errors use
-- the SQLSTATEs of 0003 (WSE02 conflict, WSE04 invalid, WSE05 not found,
-- WSE06 forbidden); the API maps them to HTTP statuses in one helper
-- (scheduler/api_rollouts.c).  A DETAIL that is a JSON array becomes the
-- error's "details".
--
-- Times in documents are RFC 3339 in UTC with whole seconds.

CREATE FUNCTION ws__rfc3339(p timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT to_char(p AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
$$;

-- ---- releases -------------------------------------------------------------

CREATE FUNCTION ws_release_doc(r releases) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('version', r.version, 'digest', r.digest, 'kind', r.kind,
                             'notes', r.notes, 'created_by', r.created_by,
                             'created_at', ws__rfc3339(r.created_at))
$$;

-- The caller has checked the fields (422 naming each one) and the role an
-- urgent release needs; the table's CHECKs are the second line.
CREATE FUNCTION ws_release_create(p_version text, p_digest text, p_kind text, p_notes text, p_actor text)
RETURNS json
LANGUAGE plpgsql AS $$
DECLARE
    r releases%ROWTYPE;
BEGIN
    INSERT INTO releases (version, digest, kind, notes, created_by)
    VALUES (p_version, p_digest, p_kind, COALESCE(p_notes, ''), p_actor)
    ON CONFLICT (version) DO NOTHING
    RETURNING * INTO r;
    IF r.id IS NULL THEN
        SELECT * INTO r FROM releases x WHERE x.version = p_version;
        PERFORM ws__fail('WSE02', format('release %s already exists (created by %s at %s); releases are immutable',
                                         p_version, r.created_by, ws__rfc3339(r.created_at)));
    END IF;
    PERFORM ws_audit_append(p_actor, 'release.create', 'release/' || p_version,
                            jsonb_build_object('digest', p_digest, 'kind', p_kind, 'notes', r.notes));
    RETURN ws_release_doc(r);
END
$$;

-- ---- backups ----------------------------------------------------------------

CREATE FUNCTION ws_backup_doc(b backups, p_slug text) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('id', b.id, 'tenant', p_slug, 'succeeded', b.succeeded,
        'completed_at', ws__rfc3339(b.completed_at), 'location', b.location,
        'size_bytes', b.size_bytes, 'checksum', b.checksum,
        'restore_verified_at', ws__rfc3339(b.restore_verified_at), 'restore_result', b.restore_result,
        'restore_duration_s', extract(epoch FROM b.restore_duration)::bigint,
        'reported_by', b.reported_by, 'reported_at', ws__rfc3339(b.reported_at))
$$;

-- A backup job's report.  A job that retries after a lost answer sends the
-- same report again: an identical row (tenant, completion, location,
-- checksum) is answered with the existing id and "created": false, and is
-- neither stored nor audited twice.
CREATE FUNCTION ws_backup_report(p_tenant text, p_completed_at timestamptz, p_location text, p_size bigint,
                                 p_checksum text, p_succeeded boolean, p_restore_verified_at timestamptz,
                                 p_restore_result text, p_restore_duration interval, p_actor text)
RETURNS json
LANGUAGE plpgsql AS $$
DECLARE
    v_tenant bigint;
    b        backups%ROWTYPE;
BEGIN
    SELECT t.id INTO v_tenant FROM tenants t WHERE t.slug = p_tenant AND t.removed_at IS NULL;
    IF NOT FOUND THEN
        PERFORM ws__fail('WSE04', format('tenant: unknown tenant "%s"', p_tenant),
                         json_build_array(json_build_object('field', 'tenant',
                             'message', format('tenant: unknown tenant "%s"', p_tenant)))::text);
    END IF;
    SELECT * INTO b FROM backups x
     WHERE x.tenant_id = v_tenant AND x.completed_at = p_completed_at AND x.location = p_location
       AND x.checksum = p_checksum
     ORDER BY x.id LIMIT 1;
    IF FOUND THEN
        RETURN json_build_object('created', false, 'backup', ws_backup_doc(b, p_tenant));
    END IF;
    INSERT INTO backups (tenant_id, succeeded, completed_at, location, size_bytes, checksum,
                         restore_verified_at, restore_result, restore_duration, reported_by)
    VALUES (v_tenant, COALESCE(p_succeeded, true), p_completed_at, p_location, p_size, p_checksum,
            p_restore_verified_at, p_restore_result, p_restore_duration, p_actor)
    RETURNING * INTO b;
    PERFORM ws_audit_append(p_actor, 'backup.report', 'tenant/' || p_tenant,
                            ws_backup_doc(b, p_tenant)::jsonb - 'reported_at' - 'reported_by' - 'tenant');
    RETURN json_build_object('created', true, 'backup', ws_backup_doc(b, p_tenant));
END
$$;

-- ---- creating a rollout -------------------------------------------------------

-- The keys the engine reads from waves.settings; a row without one of them is
-- refused here rather than found out by the engine mid-rollout.
--   {"soak_s": 7200,                      seconds, >= 0
--    "max_parallel_per_cluster": 2,       0 = no cap from the policy
--    "backup": {"enabled": true, "max_age_s": 86400},
--    "health": {"enabled": true, "interval_s": 30, "timeout_s": 5,
--               "consecutive_successes": 3, "max_consecutive_failures": 3,
--               "max_latency_ms": 2000, "latency_regression": 1.5},
--    "approval": {"min": 0, "roles": ["approver"]},
--    "failure": {"max_failed": 0, "action": "halt" | "rollback_wave" | "continue"}}
CREATE FUNCTION ws__wave_settings_problem(s jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN jsonb_typeof(s) IS DISTINCT FROM 'object' THEN 'settings must be an object'
        WHEN jsonb_typeof(s -> 'soak_s') IS DISTINCT FROM 'number' THEN 'soak_s is missing'
        WHEN jsonb_typeof(s -> 'max_parallel_per_cluster') IS DISTINCT FROM 'number' THEN 'max_parallel_per_cluster is missing'
        WHEN jsonb_typeof(s #> '{backup,enabled}') IS DISTINCT FROM 'boolean'
          OR jsonb_typeof(s #> '{backup,max_age_s}') IS DISTINCT FROM 'number' THEN 'backup.enabled or backup.max_age_s is missing'
        WHEN jsonb_typeof(s #> '{health,enabled}') IS DISTINCT FROM 'boolean'
          OR jsonb_typeof(s #> '{health,interval_s}') IS DISTINCT FROM 'number'
          OR jsonb_typeof(s #> '{health,timeout_s}') IS DISTINCT FROM 'number'
          OR jsonb_typeof(s #> '{health,consecutive_successes}') IS DISTINCT FROM 'number'
          OR jsonb_typeof(s #> '{health,max_consecutive_failures}') IS DISTINCT FROM 'number'
          OR jsonb_typeof(s #> '{health,max_latency_ms}') IS DISTINCT FROM 'number'
          OR jsonb_typeof(s #> '{health,latency_regression}') IS DISTINCT FROM 'number' THEN 'a health setting is missing'
        WHEN jsonb_typeof(s #> '{approval,min}') IS DISTINCT FROM 'number'
          OR jsonb_typeof(s #> '{approval,roles}') IS DISTINCT FROM 'array' THEN 'approval.min or approval.roles is missing'
        WHEN jsonb_typeof(s #> '{failure,max_failed}') IS DISTINCT FROM 'number'
          OR (s #>> '{failure,action}') IS NULL
          OR (s #>> '{failure,action}') NOT IN ('halt', 'rollback_wave', 'continue') THEN 'failure.max_failed or failure.action is missing'
    END
$$;

-- Rollout states in which a rollout still holds its tenants: a second
-- rollout may not take them.
CREATE FUNCTION ws__rollout_holds_tenants(p_state text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_state IN ('planned', 'approved', 'running', 'paused', 'preempted')
$$;

-- Creates a planned rollout from a plan the API computed (the same job and
-- the same bytes as POST /v1/rollouts?dry_run=1).  The waves and deployments
-- are read from the stored plan text itself, so the rows cannot disagree
-- with the frozen plan; p_settings has one object per plan wave, in plan
-- order (the effective settings of the policy's wave).
--
-- The plan was made from fleet generation p_generation.  The fleet import
-- lock is held to the end of this transaction, so the check that no import
-- came in between stays true until commit, and previous_version (the
-- tenant's version now) is the version the plan saw.  Creations are
-- serialised too, so two rollouts cannot take the same tenants at once.
--
-- Result: {"id", "state", "plan_version", "plan_sha256", "wave_count", "tenant_count"}.
CREATE FUNCTION ws_rollout_create(p_release text, p_kind text, p_policy_id bigint, p_policy_sha text,
                                  p_plan text, p_settings jsonb, p_generation bigint, p_actor text,
                                  p_start timestamptz)
RETURNS json
LANGUAGE plpgsql AS $$
DECLARE
    v_plan     jsonb;
    v_release  releases%ROWTYPE;
    v_gen      bigint;
    v_id       bigint;
    v_sha      text;
    v_waves    integer;
    v_tenants  integer;
    v_rows     integer;
    v_problem  text;
    v_conflict record;
    v_missing  text;
BEGIN
    IF p_actor IS NULL OR p_actor = '' THEN
        PERFORM ws__fail('WSE04', 'a rollout needs an actor');
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('wavesched.rollout_create'));
    PERFORM pg_advisory_xact_lock(hashtext('wavesched.fleet_import'));

    SELECT COALESCE(max(f.id), 0) INTO v_gen FROM fleet_imports f;
    IF v_gen <> p_generation THEN
        PERFORM ws__fail('WSE02', format('the fleet changed while the plan was made (generation %s, now %s): create the rollout again',
                                         p_generation, v_gen));
    END IF;

    SELECT * INTO v_release FROM releases r WHERE r.version = p_release FOR KEY SHARE;
    IF NOT FOUND THEN
        PERFORM ws__fail('WSE04', format('release: no release %s: create it with POST /v1/releases', p_release));
    END IF;
    IF v_release.kind <> p_kind THEN
        PERFORM ws__fail('WSE02', format('release %s is %s, the plan was made for a %s release', p_release,
                                         v_release.kind, p_kind));
    END IF;

    BEGIN
        v_plan := p_plan::jsonb;
    EXCEPTION WHEN invalid_text_representation THEN
        PERFORM ws__fail('WSE04', 'plan: not JSON');
    END;
    IF v_plan ->> 'release' IS DISTINCT FROM p_release OR jsonb_typeof(v_plan -> 'waves') IS DISTINCT FROM 'array' THEN
        PERFORM ws__fail('WSE04', format('plan: not a plan of release %s', p_release));
    END IF;
    v_waves := jsonb_array_length(v_plan -> 'waves');
    IF v_waves = 0 THEN
        PERFORM ws__fail('WSE04', format('the plan places no tenant: nothing to roll out (%s unassigned)',
                                         jsonb_array_length(COALESCE(v_plan -> 'unassigned', '[]'))));
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

    CREATE TEMP TABLE IF NOT EXISTS ws_new_deployments (
        slug text PRIMARY KEY, wave_idx integer, window_start timestamptz, window_end timestamptz,
        reasons jsonb) ON COMMIT DROP;
    TRUNCATE ws_new_deployments;
    INSERT INTO ws_new_deployments
    SELECT t ->> 'slug', (w ->> 'index')::integer, (t ->> 'window_start')::timestamptz,
           (t ->> 'window_end')::timestamptz, COALESCE(t -> 'reasons', '[]')
      FROM jsonb_array_elements(v_plan -> 'waves') w, jsonb_array_elements(w -> 'tenants') t;
    GET DIAGNOSTICS v_tenants = ROW_COUNT;

    -- Tenants held by another rollout: name them (the first ten; error
    -- texts are bounded) and that rollout; the details list the first five.
    FOR v_conflict IN
        SELECT r.id, r.state, count(*) AS n,
               string_agg(d.slug, ', ' ORDER BY d.slug) FILTER (WHERE d.rn <= 10) AS slugs,
               json_agg(json_build_object('tenant', d.slug, 'rollout', r.id, 'state', r.state)
                        ORDER BY d.slug) FILTER (WHERE d.rn <= 5) AS details
          FROM (SELECT x.rollout_id, x.slug, row_number() OVER (PARTITION BY x.rollout_id ORDER BY x.slug) AS rn
                  FROM deployments x WHERE x.slug IN (SELECT n.slug FROM ws_new_deployments n)) d
          JOIN rollouts r ON r.id = d.rollout_id
         WHERE ws__rollout_holds_tenants(r.state)
         GROUP BY r.id, r.state ORDER BY r.id LIMIT 1
    LOOP
        PERFORM ws__fail('WSE02', format('tenants %s%s are already in rollout %s (%s); finish or abort it first',
                                         v_conflict.slugs,
                                         CASE WHEN v_conflict.n > 10 THEN format(' and %s more', v_conflict.n - 10) ELSE '' END,
                                         v_conflict.id, v_conflict.state),
                         v_conflict.details::text);
    END LOOP;

    SELECT string_agg(m.slug, ', ' ORDER BY m.slug) INTO v_missing
      FROM (SELECT n.slug FROM ws_new_deployments n
             WHERE NOT EXISTS (SELECT 1 FROM tenants t WHERE t.slug = n.slug AND t.removed_at IS NULL)
             ORDER BY n.slug LIMIT 10) m;
    IF v_missing IS NOT NULL THEN
        PERFORM ws__fail('WSE02', format('plan: tenants %s are not in the fleet', v_missing));
    END IF;

    INSERT INTO rollouts (release_id, policy_id, policy_sha256, created_by, start_at)
    VALUES (v_release.id, p_policy_id, p_policy_sha, p_actor, p_start)
    RETURNING id INTO v_id;
    v_sha := encode(sha256(convert_to(p_plan, 'UTF8')), 'hex');
    INSERT INTO rollout_plans (rollout_id, version, plan, sha256, reason, created_by)
    VALUES (v_id, 1, p_plan, v_sha, 'created', p_actor);

    INSERT INTO waves (rollout_id, idx, name, start_at, end_at, settings)
    SELECT v_id, (w ->> 'index')::integer, w ->> 'name', (w ->> 'start')::timestamptz,
           (w ->> 'end')::timestamptz, p_settings -> (n::integer - 1)
      FROM jsonb_array_elements(v_plan -> 'waves') WITH ORDINALITY x(w, n);

    INSERT INTO deployments (rollout_id, wave_id, tenant_id, slug, window_start, window_end, reasons,
                             previous_version, target_version)
    SELECT v_id, w.id, t.id, n.slug, n.window_start, n.window_end, n.reasons, t.version, p_release
      FROM ws_new_deployments n
      JOIN waves w ON w.rollout_id = v_id AND w.idx = n.wave_idx
      JOIN tenants t ON t.slug = n.slug AND t.removed_at IS NULL;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    IF v_rows <> v_tenants THEN
        PERFORM ws__fail('WSE04', format('plan: %s tenants placed, %s deployments made', v_tenants, v_rows));
    END IF;

    PERFORM ws_audit_append(p_actor, 'rollout.create', format('rollout/%s', v_id),
        jsonb_build_object('release', p_release, 'kind', p_kind, 'policy_id', p_policy_id,
                           'policy_sha256', p_policy_sha, 'plan_sha256', v_sha, 'start', ws__rfc3339(p_start),
                           'waves', v_waves, 'tenants', v_tenants,
                           'unassigned', jsonb_array_length(COALESCE(v_plan -> 'unassigned', '[]')),
                           'fleet_generation', p_generation));
    INSERT INTO events (rollout_id, kind, payload)
    VALUES (v_id, 'rollout.created', jsonb_build_object('object', 'rollout', 'id', v_id, 'rollout', v_id,
            'to', 'planned', 'release', p_release, 'actor', p_actor, 'waves', v_waves, 'tenants', v_tenants));
    -- Tenant-scoped streams learn their own schedule.
    INSERT INTO events (rollout_id, tenant, kind, payload)
    SELECT v_id, n.slug, 'deployment.scheduled',
           jsonb_build_object('object', 'deployment', 'rollout', v_id, 'tenant', n.slug, 'wave', n.wave_idx,
                              'window_start', ws__rfc3339(n.window_start), 'window_end', ws__rfc3339(n.window_end))
      FROM ws_new_deployments n;
    PERFORM pg_notify('ws_events', '');
    PERFORM pg_notify('ws_engine', v_id::text);
    RETURN json_build_object('id', v_id, 'state', 'planned', 'plan_version', 1, 'plan_sha256', v_sha,
                             'wave_count', v_waves, 'tenant_count', v_tenants);
END
$$;

-- ---- deciding on a wave --------------------------------------------------------

-- ws_wave_decide with the policy's eligibility: the caller's role must be one
-- of the wave's settings.approval.roles.  Separation of duties is checked
-- first so that a creator learns the real reason.
CREATE FUNCTION ws_wave_decide_as(p_rollout bigint, p_wave integer, p_actor text, p_role text,
                                  p_decision text, p_comment text DEFAULT '')
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_creator text;
    v_roles   jsonb;
BEGIN
    SELECT r.created_by INTO v_creator FROM rollouts r WHERE r.id = p_rollout;
    IF NOT FOUND THEN
        PERFORM ws__fail('WSE05', format('rollout %s does not exist', p_rollout));
    END IF;
    IF v_creator = p_actor THEN
        PERFORM ws__fail('WSE06', format('separation of duties: %s created rollout %s and cannot approve or reject it',
                                         p_actor, p_rollout));
    END IF;
    SELECT w.settings #> '{approval,roles}' INTO v_roles FROM waves w
     WHERE w.rollout_id = p_rollout AND w.idx = p_wave;
    IF NOT FOUND THEN
        PERFORM ws__fail('WSE05', format('rollout %s has no wave %s', p_rollout, p_wave));
    END IF;
    IF jsonb_typeof(v_roles) IS DISTINCT FROM 'array' OR NOT v_roles ? p_role THEN
        PERFORM ws__fail('WSE06', format('role %s may not decide on wave %s of rollout %s (the policy allows: %s)',
            p_role, p_wave, p_rollout,
            COALESCE((SELECT string_agg(x, ', ') FROM jsonb_array_elements_text(
                CASE WHEN jsonb_typeof(v_roles) = 'array' THEN v_roles ELSE '[]' END) x), 'nobody')));
    END IF;
    RETURN ws_wave_decide(p_rollout, p_wave, p_actor, p_role, p_decision, p_comment);
END
$$;

-- ---- documents -------------------------------------------------------------------

-- One rollout as api.md shows it.  p_tenants NULL: everything; otherwise a
-- tenant token's slugs: the rollout is visible only when it deploys one of
-- them (NULL otherwise, which the API answers with 404), and only those
-- tenants are listed, without the wave-level gate evidence (which may name
-- other tenants).
CREATE FUNCTION ws_rollout_doc(p_id bigint, p_tenants text[]) RETURNS json
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
     WHERE r.id = p_id
       AND (p_tenants IS NULL OR EXISTS (SELECT 1 FROM deployments d
                                          WHERE d.rollout_id = r.id AND d.slug = ANY (p_tenants)))
$$;

-- Every rollout, oldest first, as a summary (for a tenant token: those that
-- deploy its tenants, with counts of its tenants only).
CREATE FUNCTION ws_rollout_list(p_tenants text[]) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('rollouts', COALESCE(json_agg(x.doc ORDER BY x.id), '[]'))
      FROM (SELECT r.id, json_build_object(
                'id', r.id, 'release', rel.version, 'release_kind', rel.kind,
                'policy', p.name, 'policy_version', p.version, 'policy_sha256', r.policy_sha256,
                'state', r.state, 'state_reason', r.state_reason, 'created_by', r.created_by,
                'created_at', ws__rfc3339(r.created_at), 'start', ws__rfc3339(r.start_at),
                'plan_version', r.plan_version,
                'wave_count', (SELECT count(*) FROM waves w WHERE w.rollout_id = r.id),
                'waves_passed', (SELECT count(*) FROM waves w WHERE w.rollout_id = r.id AND w.state = 'passed'),
                'tenant_count', (SELECT count(*) FROM deployments d WHERE d.rollout_id = r.id
                                    AND (p_tenants IS NULL OR d.slug = ANY (p_tenants))),
                'tenants_by_state', COALESCE((
                    SELECT json_object_agg(s.state, s.n ORDER BY s.state) FROM (
                        SELECT d.state, count(*) AS n FROM deployments d
                         WHERE d.rollout_id = r.id AND (p_tenants IS NULL OR d.slug = ANY (p_tenants))
                         GROUP BY d.state) s), '{}')) AS doc
              FROM rollouts r
              JOIN releases rel ON rel.id = r.release_id
              JOIN policies p ON p.id = r.policy_id
             WHERE p_tenants IS NULL OR EXISTS (SELECT 1 FROM deployments d
                                                 WHERE d.rollout_id = r.id AND d.slug = ANY (p_tenants))) x
$$;
