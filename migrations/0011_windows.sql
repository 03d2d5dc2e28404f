-- 0011: a tenant's view of its own schedule (api.md "GET
-- /v1/tenants/{slug}/windows" and its iCalendar feed windows.ics).
--
-- One document per tenant, built in one statement so that the JSON answer
-- and the calendar (scheduler/ics.c renders it from this same document)
-- cannot disagree.  Which windows are listed:
--   * every deployment of the tenant in a rollout that still holds it
--     (planned, approved, running, paused, preempted: at most one, since a
--     tenant is in one such rollout at a time);
--   * deployments of rollouts that ended (completed, halted, aborted,
--     rolled_back) within the last 30 days of the database clock, so that
--     a subscribed calendar learns that a window was cancelled or see the
--     one that was used, instead of the event silently disappearing.
-- Oldest window first (windows without a time last, then by rollout).
--
-- A window is cancelled when the rollout ended (aborted, halted, rolled
-- back, or completed without it) before the tenant was deployed, when a
-- re-plan withdrew it (windows_withdrawn, state "withdrawn"), or when
-- its deployment was skipped (the engine's reason: backup stale, window
-- missed beyond the horizon, ...); cancel_reason says which, in words.
--
-- "status" is the calendar's STATUS: TENTATIVE while the rollout is only
-- planned (nobody has started it; the window may never be used),
-- CONFIRMED once it has been started, CANCELLED as above.  A window only
-- ever goes forward along TENTATIVE -> CONFIRMED -> CANCELLED, and its
-- "sequence" (the calendar's SEQUENCE) is the number of moves plus the
-- steps taken along that line: RFC 5545 (3.8.7.4) counts a new time and a
-- new STATUS as revisions, and calendar clients apply a changed event
-- only when its SEQUENCE grew.
--
-- Times: window_start/window_end and the moves' times are RFC 3339 in the
-- tenant's zone offset at that instant, as the planner writes them
-- ("2026-12-05T23:00:00-06:00"); *_utc are the same instants in UTC.

-- Windows a rollout withdrew without a deployment row left to show them: a
-- re-plan (0013) that takes a tenant out of a planned rollout removes its
-- deployment, and the tenant's calendar must still learn that the window
-- is cancelled rather than see the event vanish.  Append-only.
CREATE TABLE windows_withdrawn (
    id            bigserial PRIMARY KEY,
    rollout_id    bigint NOT NULL REFERENCES rollouts (id),
    tenant_id     bigint NOT NULL REFERENCES tenants (id),
    wave_idx      integer NOT NULL,
    wave_name     text NOT NULL,
    window_start  timestamptz,
    window_end    timestamptz,
    moves         jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(moves) = 'array'),
    reason        text NOT NULL,
    at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX windows_withdrawn_tenant_idx ON windows_withdrawn (tenant_id, rollout_id);
CREATE TRIGGER windows_withdrawn_append_only BEFORE UPDATE OR DELETE ON windows_withdrawn
    FOR EACH ROW EXECUTE FUNCTION ws_refuse_change();

-- An instant in a zone's offset at that instant; "+00:00" for UTC (the
-- planner's form).  The caller makes sure the zone is known.
CREATE FUNCTION ws__rfc3339_in(p timestamptz, p_zone text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT to_char(p AT TIME ZONE p_zone, 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE WHEN o.s < 0 THEN '-' ELSE '+' END
        || to_char(abs(o.s) / 3600, 'FM00') || ':' || to_char(abs(o.s) % 3600 / 60, 'FM00')
      FROM (SELECT extract(epoch FROM (p AT TIME ZONE p_zone) - (p AT TIME ZONE 'UTC'))::integer AS s) o
     WHERE p IS NOT NULL
$$;

-- A time the engine wrote into a move (RFC 3339 text), re-written in the
-- tenant's zone.  Anything that is not such a time is passed through as it
-- is: a view shows what is stored rather than failing on it.
CREATE FUNCTION ws__windows_time(p jsonb, p_zone text) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF jsonb_typeof(p) IS DISTINCT FROM 'string'
       OR (p #>> '{}') !~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$' THEN
        RETURN p;
    END IF;
    RETURN to_jsonb(ws__rfc3339_in((p #>> '{}')::timestamptz, p_zone));
EXCEPTION WHEN datetime_field_overflow OR invalid_datetime_format THEN
    RETURN p;
END
$$;

-- The moves of a deployment with their times in the tenant's zone; every
-- other key of a move is kept as the engine wrote it.
CREATE FUNCTION ws__windows_moves(p_moves jsonb, p_zone text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT COALESCE(jsonb_agg(
               CASE WHEN jsonb_typeof(m) = 'object' THEN
                   m || COALESCE((SELECT jsonb_object_agg(k, ws__windows_time(m -> k, p_zone))
                                    FROM unnest(ARRAY['from_start', 'from_end', 'to_start', 'to_end', 'at']) k
                                   WHERE m ? k), '{}')
               ELSE m END ORDER BY n), '[]')
      FROM jsonb_array_elements(CASE WHEN jsonb_typeof(p_moves) = 'array' THEN p_moves ELSE '[]' END)
           WITH ORDINALITY x(m, n)
$$;

-- The windows document of tenant p_slug.  p_tenants NULL: any tenant;
-- otherwise a tenant token's slugs, and a tenant outside them is answered
-- like a missing one (NULL, which the API turns into 404).
CREATE FUNCTION ws_tenant_windows(p_slug text, p_tenants text[]) RETURNS json
LANGUAGE plpgsql STABLE AS $$
DECLARE
    t      tenants%ROWTYPE;
    v_zone text;
BEGIN
    IF p_tenants IS NOT NULL AND NOT (p_slug = ANY (p_tenants)) THEN
        RETURN NULL;
    END IF;
    SELECT * INTO t FROM tenants x WHERE x.slug = p_slug AND x.removed_at IS NULL;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    -- The fleet's zones are checked against libical's; PostgreSQL's own
    -- tzdata might lack a new one: then UTC, said so in "zone_note".
    v_zone := t.timezone;
    BEGIN
        PERFORM now() AT TIME ZONE v_zone;
    EXCEPTION WHEN invalid_parameter_value THEN
        v_zone := 'UTC';
    END;

    RETURN (
    SELECT json_build_object(
        'tenant', t.slug, 'name', t.name, 'zone', v_zone,
        'zone_note', CASE WHEN v_zone <> t.timezone
                          THEN format('zone %s is unknown to the database: times are in UTC', t.timezone) END,
        'generated_at', ws__rfc3339(now()),
        'windows', COALESCE(json_agg(json_build_object(
            'rollout', w.rollout_id, 'rollout_state', w.rollout_state, 'rollout_reason', w.rollout_reason,
            'release', w.release, 'kind', w.kind, 'policy', w.policy,
            'wave', json_build_object('index', w.wave_idx, 'name', w.wave_name, 'state', w.wave_state),
            'state', w.state, 'state_reason', w.state_reason,
            'window_start', ws__rfc3339_in(w.window_start, v_zone),
            'window_end', ws__rfc3339_in(w.window_end, v_zone),
            'window_start_utc', ws__rfc3339(w.window_start), 'window_end_utc', ws__rfc3339(w.window_end),
            'attempt', w.attempt, 'previous_version', w.previous_version, 'target_version', w.target_version,
            'reasons', w.reasons, 'moves', ws__windows_moves(w.moves, v_zone),
            'status', w.status,
            'sequence', w.n_moves + CASE w.status WHEN 'TENTATIVE' THEN 0 WHEN 'CONFIRMED' THEN 1 ELSE 2 END,
            'cancelled', w.cancel_reason IS NOT NULL, 'cancel_reason', w.cancel_reason,
            'updated_at', ws__rfc3339(w.updated_at))
            ORDER BY w.window_start NULLS LAST, w.rollout_id), '[]'))
      FROM (SELECT d.rollout_id, r.state AS rollout_state, r.state_reason AS rollout_reason,
                   rel.version AS release, rel.kind, p.name AS policy,
                   wv.idx AS wave_idx, wv.name AS wave_name, wv.state AS wave_state,
                   d.state, d.state_reason, d.window_start, d.window_end, d.attempt,
                   d.previous_version, d.target_version, d.reasons, d.moves,
                   jsonb_array_length(d.moves) AS n_moves,
                   greatest(d.updated_at, r.updated_at) AS updated_at,
                   c.reason AS cancel_reason,
                   CASE WHEN c.reason IS NOT NULL THEN 'CANCELLED'
                        WHEN r.state = 'planned' THEN 'TENTATIVE'
                        ELSE 'CONFIRMED' END AS status
              FROM deployments d
              JOIN rollouts r ON r.id = d.rollout_id
              JOIN releases rel ON rel.id = r.release_id
              JOIN policies p ON p.id = r.policy_id
              JOIN waves wv ON wv.id = d.wave_id
              -- The rollout's end first: once it is aborted the engine
              -- skips the tenants it had not reached ("rollout aborted"),
              -- and the reason people gave says more than that.
              CROSS JOIN LATERAL (SELECT CASE
                  WHEN d.state IN ('scheduled', 'waiting_window', 'skipped')
                       AND r.state IN ('completed', 'halted', 'aborted', 'rolled_back') THEN
                      format('the rollout was %s before this tenant was updated%s',
                             replace(r.state, '_', ' '),
                             CASE WHEN COALESCE(r.state_reason, '') <> '' THEN ': ' || r.state_reason ELSE '' END)
                  WHEN d.state = 'skipped' THEN
                      'the deployment was skipped: ' || COALESCE(NULLIF(d.state_reason, ''), 'no reason recorded')
                  END AS reason) c
             WHERE d.tenant_id = t.id
               AND (ws__rollout_holds_tenants(r.state) OR r.updated_at >= now() - interval '30 days')
            UNION ALL
            -- Withdrawn by a re-plan, and not put back by a later one: the
            -- latest withdrawal of each rollout, cancelled.
            SELECT x.rollout_id, r.state, r.state_reason, rel.version, rel.kind, p.name,
                   x.wave_idx, x.wave_name, NULL, 'withdrawn', x.reason, x.window_start, x.window_end, 0,
                   NULL, rel.version, '[]'::jsonb, x.moves, jsonb_array_length(x.moves),
                   x.at, x.reason, 'CANCELLED'
              FROM (SELECT DISTINCT ON (y.rollout_id) y.* FROM windows_withdrawn y
                     WHERE y.tenant_id = t.id ORDER BY y.rollout_id, y.id DESC) x
              JOIN rollouts r ON r.id = x.rollout_id
              JOIN releases rel ON rel.id = r.release_id
              JOIN policies p ON p.id = r.policy_id
             WHERE NOT EXISTS (SELECT 1 FROM deployments d WHERE d.rollout_id = x.rollout_id AND d.tenant_id = t.id)
               AND (ws__rollout_holds_tenants(r.state) OR r.updated_at >= now() - interval '30 days')) w);
END
$$;
