-- 0016: concurrent rollouts and preemption (issue 6).
--
-- A tenant is in at most one active rollout.  An urgent rollout may take
-- tenants that standard rollouts hold (planned, approved, running, paused,
-- preempted), never those of another urgent rollout; each overlap is a row
-- of `preemptions`.  From then on, until the urgent rollout has ended:
--   * a standard rollout that has not started holds (the engine does not
--     start it);
--   * a running one finishes the wave it is in and, instead of starting its
--     next wave, goes running -> preempted (the engine, ws_engine_tx);
--   * the urgent rollout starts no wave while an overlapping standard
--     rollout has a wave under way (left pending, not passed or failed) with
--     a tenant of the urgent one, or any tenant deploying, verifying or
--     rolling back (so nothing deploying is interrupted, and a standard wave
--     that fails its soak cannot roll back a tenant the urgent one patched);
--     a standard wave without its tenants does not hold it up.
-- When the urgent rollout has ended, each rollout it preempted is re-planned
-- for its remaining tenants by the same pure planner (engine.c) and resumed
-- here in one transaction (ws_rollout_resume): plan version N+1 with the
-- diff of 0013, tenants now on the urgent release named and left out.
-- Under all of this, a trigger refuses a deploy or rollback of a tenant that
-- another rollout is deploying, verifying or rolling back: never two at once.

CREATE TABLE preemptions (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    urgent_rollout    bigint NOT NULL REFERENCES rollouts (id),
    preempted_rollout bigint NOT NULL REFERENCES rollouts (id),
    tenants           jsonb NOT NULL CHECK (jsonb_typeof(tenants) = 'array'),  -- slugs in both
    state_at_creation text NOT NULL,           -- the standard rollout's state when the urgent one came
    created_at        timestamptz NOT NULL DEFAULT now(),
    preempted_at      timestamptz,             -- when it reached its wave boundary (running ones)
    resumed_at        timestamptz,             -- when the overlap ended for it
    plan_version      integer,                 -- the plan version it resumed on
    resume_error      text,                    -- why the last re-plan failed
    UNIQUE (urgent_rollout, preempted_rollout),
    CHECK (urgent_rollout <> preempted_rollout)
);
CREATE INDEX preemptions_preempted_idx ON preemptions (preempted_rollout) WHERE resumed_at IS NULL;
CREATE INDEX preemptions_urgent_idx ON preemptions (urgent_rollout) WHERE resumed_at IS NULL;

-- A rollout that may still act on tenants: not ended, or ended with a
-- tenant still in flight (a halted rollout finishing its deploys).
CREATE FUNCTION ws__rollout_moving(p_rollout bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM rollouts r WHERE r.id = p_rollout
                      AND r.state IN ('planned', 'approved', 'running', 'paused'))
        OR EXISTS (SELECT 1 FROM deployments d WHERE d.rollout_id = p_rollout
                      AND d.state IN ('deploying', 'verifying', 'rolling_back'))
$$;

-- Whether a new rollout of kind p_kind may take tenants rollout p_other
-- holds: only an urgent one, and only from a standard one.
CREATE FUNCTION ws__urgent_may_take(p_kind text, p_other bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT p_kind = 'urgent'
       AND EXISTS (SELECT 1 FROM rollouts r JOIN releases rel ON rel.id = r.release_id
                    WHERE r.id = p_other AND rel.kind <> 'urgent')
$$;

-- Called by ws_rollout_create for an urgent rollout, in its transaction:
-- one row per standard rollout it overlaps, audited and announced.
CREATE FUNCTION ws__preemptions_record(p_urgent bigint, p_release text, p_actor text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v record;
BEGIN
    FOR v IN
        SELECT r.id, r.state, jsonb_agg(o.slug ORDER BY o.slug) AS tenants
          FROM deployments n
          JOIN deployments o ON o.tenant_id = n.tenant_id AND o.rollout_id <> n.rollout_id
          JOIN rollouts r ON r.id = o.rollout_id
         WHERE n.rollout_id = p_urgent AND ws__rollout_holds_tenants(r.state)
         GROUP BY r.id, r.state ORDER BY r.id
    LOOP
        INSERT INTO preemptions (urgent_rollout, preempted_rollout, tenants, state_at_creation)
        VALUES (p_urgent, v.id, v.tenants, v.state);
        PERFORM ws_audit_append(p_actor, 'rollout.preemption', format('rollout/%s', v.id),
            jsonb_build_object('urgent_rollout', p_urgent, 'release', p_release, 'state', v.state,
                               'tenants', v.tenants,
                               'effect', CASE v.state
                                   WHEN 'running' THEN 'preempted at its next wave boundary'
                                   WHEN 'preempted' THEN 'stays preempted until this rollout ends too'
                                   ELSE 'held until the urgent rollout ends' END));
        INSERT INTO events (rollout_id, kind, payload)
        VALUES (v.id, 'rollout.preemption', jsonb_build_object('object', 'rollout', 'rollout', v.id,
                'urgent_rollout', p_urgent, 'release', p_release, 'state', v.state, 'tenants', v.tenants));
        PERFORM pg_notify('ws_engine', v.id::text);
    END LOOP;
END
$$;

-- ---- creating a rollout: 0004's, with urgent rollouts taking standard rollouts' tenants ----

CREATE OR REPLACE FUNCTION ws_rollout_create(p_release text, p_kind text, p_policy_id bigint, p_policy_sha text,
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

    v_plan := ws__plan_checked(p_plan, p_release, p_settings, 'the plan places no tenant: nothing to roll out (%s unassigned)');
    v_waves := jsonb_array_length(v_plan -> 'waves');

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
           AND NOT ws__urgent_may_take(p_kind, r.id)
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
    IF p_kind = 'urgent' THEN
        PERFORM ws__preemptions_record(v_id, p_release, p_actor);
    END IF;
    PERFORM pg_notify('ws_events', '');
    PERFORM pg_notify('ws_engine', v_id::text);
    RETURN json_build_object('id', v_id, 'state', 'planned', 'plan_version', 1, 'plan_sha256', v_sha,
                             'wave_count', v_waves, 'tenant_count', v_tenants);
END
$$;

-- ---- what the engine reads -------------------------------------------------

-- The overlaps of one rollout, joined by the driver to ws_engine_rollout()
-- (engine.c) as key "preempt":
--   by, by_release: an urgent rollout still moving that takes tenants of
--       this (standard) rollout: hold, or preempt at the wave boundary;
--   wait_for, wait_state: a standard rollout this (urgent) rollout overlaps
--       whose wave under way has a tenant of this one, or that has a tenant
--       in flight: start no wave;
--   resume: preempted, and every urgent rollout that preempted it has ended;
--   base: the highest index of a wave that has left `pending` (0: none);
--   remaining: the tenants of its pending waves still to plan, in slug order
--       (those now on an urgent release left out);
--   on_urgent: [{slug, rollout, release}] of its pending waves' tenants that
--       an ended urgent rollout left healthy.
CREATE FUNCTION ws_engine_preempt(p_rollout bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_state text;
    v_out   jsonb;
    v_by    record;
    v_wait  record;
    v_on    jsonb;
BEGIN
    SELECT r.state INTO v_state FROM rollouts r WHERE r.id = p_rollout;
    IF NOT FOUND OR NOT EXISTS (SELECT 1 FROM preemptions p
                                 WHERE (p.preempted_rollout = p_rollout OR p.urgent_rollout = p_rollout)
                                   AND p.resumed_at IS NULL) THEN
        RETURN '{}';
    END IF;
    SELECT p.urgent_rollout AS id, rel.version INTO v_by
      FROM preemptions p JOIN rollouts u ON u.id = p.urgent_rollout JOIN releases rel ON rel.id = u.release_id
     WHERE p.preempted_rollout = p_rollout AND p.resumed_at IS NULL AND ws__rollout_moving(p.urgent_rollout)
     ORDER BY p.urgent_rollout LIMIT 1;
    SELECT p.preempted_rollout AS id, s.state INTO v_wait
      FROM preemptions p JOIN rollouts s ON s.id = p.preempted_rollout
     WHERE p.urgent_rollout = p_rollout AND p.resumed_at IS NULL
       AND ((s.state IN ('running', 'paused')
             AND EXISTS (SELECT 1 FROM deployments d JOIN waves w ON w.id = d.wave_id
                           JOIN deployments u ON u.tenant_id = d.tenant_id AND u.rollout_id = p_rollout
                          WHERE d.rollout_id = s.id AND w.state NOT IN ('pending', 'passed', 'failed')))
            OR EXISTS (SELECT 1 FROM deployments d WHERE d.rollout_id = s.id
                          AND d.state IN ('deploying', 'verifying', 'rolling_back')))
     ORDER BY p.preempted_rollout LIMIT 1;
    v_out := jsonb_strip_nulls(jsonb_build_object('by', v_by.id, 'by_release', v_by.version,
                                                  'wait_for', v_wait.id, 'wait_state', v_wait.state));
    IF v_state IN ('preempted', 'planned', 'approved') AND v_by.id IS NULL
       AND EXISTS (SELECT 1 FROM preemptions p WHERE p.preempted_rollout = p_rollout AND p.resumed_at IS NULL) THEN
        SELECT COALESCE(jsonb_agg(jsonb_build_object('slug', x.slug, 'rollout', x.rollout, 'release', x.release)
                                  ORDER BY x.slug), '[]')
          INTO v_on
          FROM ws__preempt_on_urgent(p_rollout) x;
        v_out := v_out || jsonb_build_object(
            'resume', true,
            'plan_version', (SELECT r.plan_version FROM rollouts r WHERE r.id = p_rollout),
            'base', (SELECT COALESCE(max(w.idx), 0) FROM waves w
                      WHERE w.rollout_id = p_rollout AND w.state <> 'pending'),
            'on_urgent', v_on,
            'remaining', (SELECT COALESCE(jsonb_agg(d.slug ORDER BY d.slug), '[]')
                            FROM deployments d JOIN waves w ON w.id = d.wave_id
                           WHERE d.rollout_id = p_rollout AND w.state = 'pending'
                             AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(v_on) o
                                              WHERE o ->> 'slug' = d.slug)));
    END IF;
    RETURN v_out;
END
$$;

-- The tenants of a preempted rollout's pending waves that an urgent
-- rollout which preempted it (and has ended) left healthy: they run the
-- urgent release now.
CREATE FUNCTION ws__preempt_on_urgent(p_rollout bigint)
RETURNS TABLE (slug text, tenant_id bigint, rollout bigint, release text)
LANGUAGE sql STABLE AS $$
    SELECT DISTINCT ON (d.slug) d.slug, d.tenant_id, u.rollout_id, u.target_version
      FROM deployments d
      JOIN waves w ON w.id = d.wave_id AND w.state = 'pending'
      JOIN preemptions p ON p.preempted_rollout = d.rollout_id AND p.resumed_at IS NULL
      JOIN deployments u ON u.rollout_id = p.urgent_rollout AND u.tenant_id = d.tenant_id AND u.state = 'healthy'
     WHERE d.rollout_id = p_rollout
     ORDER BY d.slug, u.rollout_id DESC
$$;

-- ---- following the rollouts' states -------------------------------------------

-- A standard rollout reaching its boundary wakes the urgent rollouts
-- waiting for it; an urgent rollout ending wakes the rollouts it preempted
-- or held (they are re-planned); a standard rollout that ends has no
-- overlap left.
CREATE FUNCTION ws__preempt_follow() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state = 'preempted' AND OLD.state = 'running' THEN
        UPDATE preemptions p SET preempted_at = now()
         WHERE p.preempted_rollout = NEW.id AND p.resumed_at IS NULL AND p.preempted_at IS NULL;
    END IF;
    IF NEW.state IN ('completed', 'halted', 'aborted', 'rolled_back') THEN
        -- the overlaps of a standard rollout that ended before resuming
        UPDATE preemptions p SET resumed_at = now()
         WHERE p.preempted_rollout = NEW.id AND p.resumed_at IS NULL;
    END IF;
    PERFORM pg_notify('ws_engine', x.id::text)
       FROM (SELECT p.urgent_rollout AS id FROM preemptions p WHERE p.preempted_rollout = NEW.id
             UNION SELECT p.preempted_rollout FROM preemptions p WHERE p.urgent_rollout = NEW.id) x;
    RETURN NULL;
END
$$;
CREATE TRIGGER rollouts_preempt_follow AFTER UPDATE OF state ON rollouts
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state) EXECUTE FUNCTION ws__preempt_follow();

-- Fail closed: a deploy or rollback of a tenant that another rollout has in
-- flight is refused (WSE02), whatever a decision said.  The per-tenant lock
-- makes two such transitions at once see each other.
CREATE FUNCTION ws__one_rollout_per_tenant() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v record;
BEGIN
    PERFORM pg_advisory_xact_lock(2016, NEW.tenant_id::integer);
    SELECT d.rollout_id, d.state INTO v FROM deployments d
     WHERE d.tenant_id = NEW.tenant_id AND d.rollout_id <> NEW.rollout_id
       AND d.state IN ('deploying', 'verifying', 'rolling_back')
     ORDER BY d.rollout_id LIMIT 1;
    IF FOUND THEN
        PERFORM ws__fail('WSE02', format('state conflict: tenant %s is %s in rollout %s; rollout %s may not act on it at the same time',
                                         NEW.slug, v.state, v.rollout_id, NEW.rollout_id));
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER deployments_one_rollout_per_tenant BEFORE UPDATE OF state ON deployments
    FOR EACH ROW WHEN (NEW.state IN ('deploying', 'rolling_back') AND OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION ws__one_rollout_per_tenant();

-- ---- resuming -------------------------------------------------------------------

-- Resumes a preempted rollout on the plan the engine made for its remaining
-- tenants (engine.c: the fleet restricted to `remaining` of
-- ws_engine_preempt, dependencies on tenants outside it counted as met; wave
-- indexes continue after `base`).  One transaction under the lease epoch:
--   * waves that left `pending` and their deployments stay as they are;
--   * plan version N+1 is stored with 0013's diff against the pending part
--     of version N, plus "on_urgent": [{slug, rollout, release, wave,
--     wave_name}] -- tenants an urgent rollout left healthy are not deployed
--     again with the standard release (it would undo the security fix); their
--     windows are kept cancelled in windows_withdrawn, naming the urgent
--     rollout and release;
--   * the pending waves are rebuilt from the plan text; a wave's approvals
--     stand only when it is identical (index, name, settings, tenants), the
--     others move to approvals_withdrawn and the wave is approved again;
--   * preempted -> running (resume_preempted), audited, announced.
-- Result: {"id", "plan_version", "plan_sha256", "wave_count", "tenant_count", "diff"}.
CREATE FUNCTION ws_rollout_resume(p_epoch bigint, p_rollout bigint, p_expected_version integer, p_base integer,
                                  p_plan text, p_settings jsonb, p_generation bigint, p_start timestamptz)
RETURNS json
LANGUAGE plpgsql AS $$
DECLARE
    v_epoch    bigint;
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
    v_base     integer;
    v_bad      text;
    v_urgent   text;
    v_reason   text;
    v_diff     jsonb;
    v_withdrawn jsonb;
    v_on       jsonb;
BEGIN
    SELECT e.epoch INTO v_epoch FROM engine_lease e WHERE e.id = 1 FOR SHARE;
    IF v_epoch IS DISTINCT FROM p_epoch THEN
        PERFORM ws__fail('WSE01', 'stale epoch',
                         format('the re-plan carries epoch %s but the lease is at epoch %s', p_epoch, v_epoch));
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('wavesched.rollout_create'));
    PERFORM pg_advisory_xact_lock(hashtext('wavesched.fleet_import'));

    SELECT * INTO v_ro FROM rollouts r WHERE r.id = p_rollout FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM ws__fail('WSE05', format('rollout %s does not exist', p_rollout));
    END IF;
    IF v_ro.state NOT IN ('preempted', 'planned', 'approved') THEN
        PERFORM ws__fail('WSE02', format('state conflict: rollout %s is %s, not preempted or held', p_rollout, v_ro.state));
    END IF;
    IF v_ro.plan_version <> p_expected_version THEN
        PERFORM ws__fail('WSE02', format('rollout %s was re-planned meanwhile (plan version %s, expected %s)',
                                         p_rollout, v_ro.plan_version, p_expected_version));
    END IF;
    SELECT string_agg(format('%s (%s)', p.urgent_rollout, u.state), ', ' ORDER BY p.urgent_rollout) INTO v_urgent
      FROM preemptions p JOIN rollouts u ON u.id = p.urgent_rollout
     WHERE p.preempted_rollout = p_rollout AND p.resumed_at IS NULL AND ws__rollout_moving(p.urgent_rollout);
    IF v_urgent IS NOT NULL THEN
        PERFORM ws__fail('WSE02', format('state conflict: rollout %s is still preempted by urgent rollout %s',
                                         p_rollout, v_urgent));
    END IF;
    SELECT string_agg(p.urgent_rollout::text, ', ' ORDER BY p.urgent_rollout) INTO v_urgent
      FROM preemptions p WHERE p.preempted_rollout = p_rollout AND p.resumed_at IS NULL;
    IF v_urgent IS NULL THEN
        PERFORM ws__fail('WSE02', format('state conflict: rollout %s was not preempted by an urgent rollout', p_rollout));
    END IF;
    SELECT COALESCE(max(w.idx), 0) INTO v_base FROM waves w WHERE w.rollout_id = p_rollout AND w.state <> 'pending';
    IF v_base <> p_base THEN
        PERFORM ws__fail('WSE02', format('rollout %s: the plan continues after wave %s, the rows after wave %s',
                                         p_rollout, p_base, v_base));
    END IF;
    SELECT COALESCE(max(f.id), 0) INTO v_gen FROM fleet_imports f;
    IF v_gen <> p_generation THEN
        PERFORM ws__fail('WSE02', format('the fleet changed while the plan was made (generation %s, now %s): re-plan again',
                                         p_generation, v_gen));
    END IF;
    SELECT x.version INTO v_release FROM releases x WHERE x.id = v_ro.release_id;

    v_plan := ws__plan_checked(p_plan, v_release, p_settings, NULL);
    v_waves := jsonb_array_length(v_plan -> 'waves');
    SELECT format('wave index %s', w ->> 'index') INTO v_bad
      FROM jsonb_array_elements(v_plan -> 'waves') w
     WHERE jsonb_typeof(w -> 'index') IS DISTINCT FROM 'number' OR (w ->> 'index')::integer <= v_base
     LIMIT 1;
    IF v_bad IS NOT NULL THEN
        PERFORM ws__fail('WSE04', format('plan: %s does not come after wave %s, the last one under way or done',
                                         v_bad, v_base));
    END IF;

    CREATE TEMP TABLE IF NOT EXISTS ws_resume_new (
        slug text PRIMARY KEY, wave_idx integer, wave_name text, window_start timestamptz,
        window_end timestamptz, reasons jsonb) ON COMMIT DROP;
    TRUNCATE ws_resume_new;
    INSERT INTO ws_resume_new
    SELECT t ->> 'slug', (w ->> 'index')::integer, w ->> 'name', (t ->> 'window_start')::timestamptz,
           (t ->> 'window_end')::timestamptz, COALESCE(t -> 'reasons', '[]')
      FROM jsonb_array_elements(v_plan -> 'waves') w, jsonb_array_elements(w -> 'tenants') t;
    GET DIAGNOSTICS v_tenants = ROW_COUNT;

    CREATE TEMP TABLE IF NOT EXISTS ws_resume_old (
        slug text PRIMARY KEY, tenant_id bigint, wave_idx integer, wave_name text,
        window_start timestamptz, window_end timestamptz, moves jsonb) ON COMMIT DROP;
    TRUNCATE ws_resume_old;
    INSERT INTO ws_resume_old
    SELECT d.slug, d.tenant_id, w.idx, w.name, d.window_start, d.window_end, d.moves
      FROM deployments d JOIN waves w ON w.id = d.wave_id
     WHERE d.rollout_id = p_rollout AND w.state = 'pending';

    -- Only the remaining tenants may be planned: nobody already done, and
    -- nobody another rollout holds now.
    SELECT string_agg(n.slug, ', ' ORDER BY n.slug) INTO v_bad
      FROM ws_resume_new n WHERE NOT EXISTS (SELECT 1 FROM ws_resume_old o WHERE o.slug = n.slug);
    IF v_bad IS NOT NULL THEN
        PERFORM ws__fail('WSE04', format('plan: tenants %s are not among the remaining tenants of rollout %s',
                                         left(v_bad, 400), p_rollout));
    END IF;
    SELECT string_agg(DISTINCT format('%s (rollout %s, %s)', n.slug, r.id, r.state), ', ') INTO v_bad
      FROM ws_resume_new n JOIN deployments x ON x.slug = n.slug AND x.rollout_id <> p_rollout
      JOIN rollouts r ON r.id = x.rollout_id
     WHERE ws__rollout_holds_tenants(r.state);
    IF v_bad IS NOT NULL THEN
        PERFORM ws__fail('WSE02', format('tenants %s are held by another rollout', left(v_bad, 400)));
    END IF;

    SELECT COALESCE(jsonb_agg(jsonb_build_object('slug', x.slug, 'rollout', x.rollout, 'release', x.release,
                                                 'wave', o.wave_idx, 'wave_name', o.wave_name) ORDER BY x.slug), '[]')
      INTO v_on
      FROM ws__preempt_on_urgent(p_rollout) x JOIN ws_resume_old o ON o.slug = x.slug;
    SELECT string_agg(n.slug, ', ' ORDER BY n.slug) INTO v_bad
      FROM ws_resume_new n JOIN jsonb_array_elements(v_on) o ON o ->> 'slug' = n.slug;
    IF v_bad IS NOT NULL THEN
        PERFORM ws__fail('WSE04', format('plan: tenants %s run the urgent release now and may not be planned again',
                                         left(v_bad, 400)));
    END IF;

    CREATE TEMP TABLE IF NOT EXISTS ws_resume_kept_waves (idx integer PRIMARY KEY) ON COMMIT DROP;
    TRUNCATE ws_resume_kept_waves;
    INSERT INTO ws_resume_kept_waves
    SELECT w.idx FROM waves w
      JOIN LATERAL (SELECT nw, n FROM jsonb_array_elements(v_plan -> 'waves') WITH ORDINALITY x(nw, n)
                     WHERE (nw ->> 'index')::integer = w.idx) nx ON true
     WHERE w.rollout_id = p_rollout AND w.state = 'pending'
       AND w.name = nx.nw ->> 'name'
       AND w.settings = p_settings -> (nx.n::integer - 1)
       AND ARRAY(SELECT o.slug FROM ws_resume_old o WHERE o.wave_idx = w.idx ORDER BY o.slug)
           = ARRAY(SELECT n.slug FROM ws_resume_new n WHERE n.wave_idx = w.idx ORDER BY n.slug);

    SELECT COALESCE(jsonb_agg(jsonb_build_object('wave', w.idx, 'wave_name', w.name, 'actor', a.actor,
                                                 'decision', a.decision) ORDER BY w.idx, a.id), '[]')
      INTO v_withdrawn
      FROM approvals a JOIN waves w ON w.id = a.wave_id
     WHERE a.rollout_id = p_rollout AND w.state = 'pending'
       AND w.idx NOT IN (SELECT k.idx FROM ws_resume_kept_waves k);

    v_version := v_ro.plan_version + 1;
    v_reason := format('%s after urgent rollout %s ended',
                       CASE WHEN v_ro.state = 'preempted' THEN 'resumed' ELSE 're-planned' END, v_urgent);
    v_diff := jsonb_build_object(
        'from_version', v_ro.plan_version, 'to_version', v_version, 'reason', v_reason,
        'kept_waves', v_base, 'preempted_by', (SELECT jsonb_agg(p.urgent_rollout ORDER BY p.urgent_rollout)
                                                 FROM preemptions p
                                                WHERE p.preempted_rollout = p_rollout AND p.resumed_at IS NULL),
        'added', '[]'::jsonb,
        'removed', (SELECT COALESCE(jsonb_agg(jsonb_build_object('slug', o.slug, 'wave', o.wave_idx,
                      'wave_name', o.wave_name, 'window_start', ws__rfc3339(o.window_start),
                      'window_end', ws__rfc3339(o.window_end)) ORDER BY o.slug), '[]')
                    FROM ws_resume_old o WHERE NOT EXISTS (SELECT 1 FROM ws_resume_new n WHERE n.slug = o.slug)
                     AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(v_on) u WHERE u ->> 'slug' = o.slug)),
        'on_urgent', v_on,
        'moved', (SELECT COALESCE(jsonb_agg(jsonb_build_object('slug', o.slug,
                      'from', jsonb_build_object('wave', o.wave_idx, 'wave_name', o.wave_name,
                                                 'window_start', ws__rfc3339(o.window_start),
                                                 'window_end', ws__rfc3339(o.window_end)),
                      'to', jsonb_build_object('wave', n.wave_idx, 'wave_name', n.wave_name,
                                               'window_start', ws__rfc3339(n.window_start),
                                               'window_end', ws__rfc3339(n.window_end)),
                      'reasons', n.reasons) ORDER BY o.slug), '[]')
                    FROM ws_resume_old o JOIN ws_resume_new n ON n.slug = o.slug
                   WHERE (o.wave_idx, o.wave_name) IS DISTINCT FROM (n.wave_idx, n.wave_name)
                      OR (o.window_start, o.window_end) IS DISTINCT FROM (n.window_start, n.window_end)),
        'unchanged', (SELECT count(*) FROM ws_resume_old o JOIN ws_resume_new n ON n.slug = o.slug
                       WHERE (o.wave_idx, o.wave_name) IS NOT DISTINCT FROM (n.wave_idx, n.wave_name)
                         AND (o.window_start, o.window_end) IS NOT DISTINCT FROM (n.window_start, n.window_end)),
        'approvals_withdrawn', v_withdrawn);

    v_sha := encode(sha256(convert_to(p_plan, 'UTF8')), 'hex');
    INSERT INTO rollout_plans (rollout_id, version, plan, sha256, diff, reason, created_by)
    VALUES (p_rollout, v_version, p_plan, v_sha, v_diff, v_reason, 'engine');

    INSERT INTO approvals_withdrawn (id, rollout_id, wave_idx, wave_name, actor, role, decision, comment, at,
                                     plan_version, withdrawn_by, reason)
    SELECT a.id, a.rollout_id, w.idx, w.name, a.actor, a.role, a.decision, a.comment, a.at,
           v_ro.plan_version, 'engine', format('plan version %s changed wave %s (%s)', v_version, w.idx, v_reason)
      FROM approvals a JOIN waves w ON w.id = a.wave_id
     WHERE a.rollout_id = p_rollout AND w.state = 'pending'
       AND w.idx NOT IN (SELECT k.idx FROM ws_resume_kept_waves k);
    CREATE TEMP TABLE IF NOT EXISTS ws_resume_approvals ON COMMIT DROP AS
        SELECT a.*, 0 AS wave_idx FROM approvals a WHERE false;
    TRUNCATE ws_resume_approvals;
    INSERT INTO ws_resume_approvals
    SELECT a.*, w.idx FROM approvals a JOIN waves w ON w.id = a.wave_id
     WHERE a.rollout_id = p_rollout AND w.state = 'pending'
       AND w.idx IN (SELECT k.idx FROM ws_resume_kept_waves k);
    INSERT INTO windows_withdrawn (rollout_id, tenant_id, wave_idx, wave_name, window_start, window_end, moves, reason)
    SELECT p_rollout, o.tenant_id, o.wave_idx, o.wave_name, o.window_start, o.window_end, o.moves,
           CASE WHEN u.value IS NOT NULL
                THEN format('runs urgent release %s (rollout %s) now; release %s would undo it (plan version %s)',
                            u.value ->> 'release', u.value ->> 'rollout', v_release, v_version)
                ELSE format('withdrawn by re-plan (plan version %s): %s', v_version, v_reason) END
      FROM ws_resume_old o LEFT JOIN jsonb_array_elements(v_on) u ON u.value ->> 'slug' = o.slug
     WHERE NOT EXISTS (SELECT 1 FROM ws_resume_new n WHERE n.slug = o.slug);
    DELETE FROM approvals a USING waves w
     WHERE a.wave_id = w.id AND w.rollout_id = p_rollout AND w.state = 'pending';
    DELETE FROM deployments d USING waves w
     WHERE d.wave_id = w.id AND w.rollout_id = p_rollout AND w.state = 'pending';
    DELETE FROM waves w WHERE w.rollout_id = p_rollout AND w.state = 'pending';

    INSERT INTO waves (rollout_id, idx, name, start_at, end_at, settings)
    SELECT p_rollout, (w ->> 'index')::integer, w ->> 'name', (w ->> 'start')::timestamptz,
           (w ->> 'end')::timestamptz, p_settings -> (n::integer - 1)
      FROM jsonb_array_elements(v_plan -> 'waves') WITH ORDINALITY x(w, n);
    INSERT INTO approvals (id, rollout_id, wave_id, actor, role, decision, comment, at)
    SELECT k.id, p_rollout, w.id, k.actor, k.role, k.decision, k.comment, k.at
      FROM ws_resume_approvals k JOIN waves w ON w.rollout_id = p_rollout AND w.idx = k.wave_idx;
    INSERT INTO deployments (rollout_id, wave_id, tenant_id, slug, window_start, window_end, reasons,
                             previous_version, target_version, moves)
    SELECT p_rollout, w.id, t.id, n.slug, n.window_start, n.window_end, n.reasons, t.version, v_release,
           COALESCE(o.moves, '[]') || CASE
               WHEN (o.window_start, o.window_end) IS DISTINCT FROM (n.window_start, n.window_end)
               THEN jsonb_build_array(jsonb_build_object(
                        'reason', format('re-planned (plan version %s): %s', v_version, v_reason),
                        'from_start', ws__rfc3339(o.window_start), 'from_end', ws__rfc3339(o.window_end),
                        'to_start', ws__rfc3339(n.window_start), 'to_end', ws__rfc3339(n.window_end),
                        'plan_version', v_version))
               ELSE '[]'::jsonb END
      FROM ws_resume_new n
      JOIN ws_resume_old o ON o.slug = n.slug
      JOIN waves w ON w.rollout_id = p_rollout AND w.idx = n.wave_idx
      JOIN tenants t ON t.slug = n.slug AND t.removed_at IS NULL;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    IF v_rows <> v_tenants THEN
        PERFORM ws__fail('WSE04', format('plan: %s tenants placed, %s deployments made', v_tenants, v_rows));
    END IF;

    -- A held rollout keeps its state (and start): only its plan changed.
    UPDATE rollouts r SET state = CASE WHEN r.state = 'preempted' THEN 'running' ELSE r.state END,
                          plan_version = v_version, updated_at = now(),
                          start_at = CASE WHEN r.state = 'preempted' THEN LEAST(r.start_at, p_start) ELSE r.start_at END,
                          state_reason = format('%s; plan version %s', v_reason, v_version)
     WHERE r.id = p_rollout;
    UPDATE preemptions p SET resumed_at = now(), plan_version = v_version, resume_error = NULL
     WHERE p.preempted_rollout = p_rollout AND p.resumed_at IS NULL;

    PERFORM ws_audit_append('engine', CASE WHEN v_ro.state = 'preempted' THEN 'rollout.running' ELSE 'rollout.replan' END,
        format('rollout/%s', p_rollout),
        jsonb_build_object('from', v_ro.state, 'to', CASE WHEN v_ro.state = 'preempted' THEN 'running' ELSE v_ro.state END,
                           'event', CASE WHEN v_ro.state = 'preempted' THEN 'resume_preempted' ELSE 'replan' END,
                           'epoch', p_epoch,
                           'reason', v_reason, 'from_version', v_ro.plan_version, 'to_version', v_version,
                           'plan_sha256', v_sha, 'fleet_generation', p_generation, 'kept_waves', v_base,
                           'removed', jsonb_array_length(v_diff -> 'removed'),
                           'moved', jsonb_array_length(v_diff -> 'moved'),
                           'on_urgent', jsonb_array_length(v_on),
                           'approvals_withdrawn', jsonb_array_length(v_withdrawn)));
    IF v_ro.state = 'preempted' THEN
        INSERT INTO events (rollout_id, kind, payload)
        VALUES (p_rollout, 'rollout.state', jsonb_build_object('object', 'rollout', 'id', p_rollout, 'rollout', p_rollout,
                'from', 'preempted', 'to', 'running', 'event', 'resume_preempted', 'reason', v_reason));
    END IF;
    INSERT INTO events (rollout_id, kind, payload)
    VALUES (p_rollout, 'rollout.replanned', jsonb_build_object('object', 'rollout', 'id', p_rollout,
            'rollout', p_rollout, 'plan_version', v_version, 'reason', v_reason, 'actor', 'engine',
            'removed', jsonb_array_length(v_diff -> 'removed'), 'moved', jsonb_array_length(v_diff -> 'moved'),
            'on_urgent', jsonb_array_length(v_on)));
    INSERT INTO events (rollout_id, tenant, kind, payload)
    SELECT p_rollout, x ->> 'slug', 'deployment.moved',
           jsonb_build_object('object', 'deployment', 'rollout', p_rollout, 'tenant', x ->> 'slug',
                              'from', x -> 'from', 'to', x -> 'to', 'plan_version', v_version, 'reason', v_reason)
      FROM jsonb_array_elements(v_diff -> 'moved') x;
    INSERT INTO events (rollout_id, tenant, kind, payload)
    SELECT p_rollout, x ->> 'slug', 'deployment.cancelled',
           jsonb_build_object('object', 'deployment', 'rollout', p_rollout, 'tenant', x ->> 'slug',
                              'plan_version', v_version,
                              'reason', CASE WHEN x ? 'release'
                                  THEN format('runs urgent release %s (rollout %s) now', x ->> 'release', x ->> 'rollout')
                                  ELSE v_reason END)
      FROM jsonb_array_elements((v_diff -> 'removed') || v_on) x;
    PERFORM pg_notify('ws_events', '');
    PERFORM pg_notify('ws_engine', p_rollout::text);
    RETURN json_build_object('id', p_rollout, 'plan_version', v_version, 'plan_sha256', v_sha,
                             'wave_count', v_waves, 'tenant_count', v_tenants, 'diff', v_diff);
END
$$;

-- A re-plan that could not be made or stored: the rollout stays preempted
-- and says why (state_reason, the preemption rows); audited once per reason.
CREATE FUNCTION ws_rollout_resume_failed(p_epoch bigint, p_rollout bigint, p_reason text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_epoch bigint;
    v_text  text := 'resume: re-planning the remaining tenants failed: ' || left(COALESCE(p_reason, '?'), 800);
BEGIN
    SELECT e.epoch INTO v_epoch FROM engine_lease e WHERE e.id = 1 FOR SHARE;
    IF v_epoch IS DISTINCT FROM p_epoch THEN
        PERFORM ws__fail('WSE01', 'stale epoch',
                         format('the call carries epoch %s but the lease is at epoch %s', p_epoch, v_epoch));
    END IF;
    UPDATE rollouts r SET state_reason = v_text, updated_at = now()
     WHERE r.id = p_rollout AND r.state IN ('preempted', 'planned', 'approved')
       AND r.state_reason IS DISTINCT FROM v_text;
    IF FOUND THEN
        UPDATE preemptions p SET resume_error = p_reason
         WHERE p.preempted_rollout = p_rollout AND p.resumed_at IS NULL;
        PERFORM ws_audit_append('engine', 'rollout.resume_failed', format('rollout/%s', p_rollout),
                                jsonb_build_object('reason', p_reason, 'epoch', p_epoch));
        INSERT INTO events (rollout_id, kind, payload)
        VALUES (p_rollout, 'rollout.resume_failed', jsonb_build_object('object', 'rollout', 'rollout', p_rollout,
                'reason', p_reason));
        PERFORM pg_notify('ws_events', '');
    END IF;
END
$$;

-- The engine's scan (0005) also finds a planned rollout an urgent one held
-- and that is to be re-planned now (approved ones it finds already), so a
-- new leader re-plans it too.
CREATE OR REPLACE FUNCTION ws_engine_active() RETURNS SETOF bigint
LANGUAGE sql STABLE AS $$
    SELECT r.id FROM rollouts r
     WHERE (r.state IN ('approved', 'running', 'paused', 'preempted', 'halted', 'aborted')
            AND (r.state NOT IN ('halted', 'aborted')
                 OR EXISTS (SELECT 1 FROM deployments d
                             WHERE d.rollout_id = r.id
                               AND d.state IN ('deploying', 'verifying', 'rolling_back'))))
        OR (r.state = 'planned'
            AND EXISTS (SELECT 1 FROM preemptions p WHERE p.preempted_rollout = r.id AND p.resumed_at IS NULL))
     ORDER BY r.id
$$;
