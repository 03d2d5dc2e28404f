-- 0018: notifications (issue 6; docs/notifications.md).
--
-- Sinks are rows managed through the API (many tenants each with their own
-- webhook: a table is friendlier than a config file that needs a restart).
-- What a sink is sent is queued in PostgreSQL in the same transaction as
-- the event that caused it (a trigger on events and one on gate_results),
-- so a notification is never lost nor sent for a change that rolled back.
-- Reminders and overdue reviews come from a scan (ws_notify_scan) that the
-- notifier runs on a timer; both are de-duplicated by a key per sink.
--
-- The notifier (scheduler/notify.c) claims the oldest pending message of
-- each sink (one at a time per sink: order is kept), posts it through the
-- outbound client and records every attempt in notification_deliveries.
--
-- The triggers never make the engine's transaction fail: a problem while
-- queueing is logged as a warning and the event stands without its
-- notification (a lost message is better than a stuck rollout).

CREATE TABLE notification_sinks (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    format      text NOT NULL CHECK (format IN ('json', 'slack')),
    url         text NOT NULL CHECK (url ~* '^https?://' AND length(url) <= 2048),
    roles       text[] NOT NULL DEFAULT '{}' CHECK (roles <@ ARRAY['admin', 'platform', 'security']),
    tenants     text[] NOT NULL DEFAULT '{}',
    events      text[],                 -- NULL: every kind its audience gets
    secret_env  text CHECK (secret_env ~ '^[A-Z_][A-Z0-9_]{0,127}$'),
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    removed_at  timestamptz,
    removed_by  text,
    CHECK (cardinality(roles) + cardinality(tenants) > 0)
);
CREATE UNIQUE INDEX notification_sinks_name_idx ON notification_sinks (name) WHERE removed_at IS NULL;

CREATE TABLE notification_queue (
    id            bigserial PRIMARY KEY,
    sink_id       bigint NOT NULL REFERENCES notification_sinks (id),
    kind          text NOT NULL,
    rollout_id    bigint,
    tenant        text,
    event_id      bigint,
    dedup         text NOT NULL,
    at            timestamptz NOT NULL,     -- when it happened (schedule time for engine events)
    data          jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(data) = 'object'),
    state         text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts      integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_at       timestamptz NOT NULL DEFAULT now(),   -- database clock: back-off is real time
    claimed_until timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    done_at       timestamptz,
    last_error    text,
    UNIQUE (sink_id, dedup),
    CHECK ((state = 'pending') = (done_at IS NULL))
);
CREATE INDEX notification_queue_pending_idx ON notification_queue (sink_id, id) WHERE state = 'pending';
CREATE INDEX notification_queue_state_idx ON notification_queue (state, id);

CREATE TABLE notification_deliveries (
    id          bigserial PRIMARY KEY,
    queue_id    bigint NOT NULL REFERENCES notification_queue (id),
    attempt     integer NOT NULL CHECK (attempt > 0),
    at          timestamptz NOT NULL DEFAULT now(),
    status      integer,                -- HTTP status; NULL when no answer came
    error       text,
    duration_ms integer NOT NULL CHECK (duration_ms >= 0),
    outcome     text NOT NULL CHECK (outcome IN ('delivered', 'retry', 'failed')),
    retry_in_ms bigint CHECK ((outcome = 'retry') = (retry_in_ms IS NOT NULL)),
    UNIQUE (queue_id, attempt)
);

-- The reminder scan looks at deployments still to come.
CREATE INDEX deployments_upcoming_idx ON deployments (window_start)
    WHERE state IN ('scheduled', 'waiting_window');

-- "Tue 2026-12-01 02:00 Europe/Berlin": a time as the tenant's owner reads it.
-- A zone PostgreSQL does not know (the fleet validates zones, but a message
-- must not be lost over one) is written in UTC, saying so.
CREATE FUNCTION ws__notify_local(p_at timestamptz, p_zone text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_at IS NULL THEN
        RETURN NULL;
    END IF;
    BEGIN
        RETURN to_char(p_at AT TIME ZONE COALESCE(p_zone, 'UTC'), 'Dy YYYY-MM-DD HH24:MI') || ' '
               || COALESCE(p_zone, 'UTC');
    EXCEPTION WHEN invalid_parameter_value THEN
        RETURN to_char(p_at AT TIME ZONE 'UTC', 'Dy YYYY-MM-DD HH24:MI') || ' UTC';
    END;
END
$$;

-- An instant from an event's payload; NULL when it is not one.
CREATE FUNCTION ws__notify_time(p_text text) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN p_text::timestamptz;
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
END
$$;

-- What every message about a rollout and a tenant carries.
CREATE FUNCTION ws__notify_context(p_rollout bigint, p_tenant text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'release', (SELECT rel.version FROM rollouts r JOIN releases rel ON rel.id = r.release_id
                     WHERE r.id = p_rollout),
        'release_kind', (SELECT rel.kind FROM rollouts r JOIN releases rel ON rel.id = r.release_id
                          WHERE r.id = p_rollout),
        'tenant_name', (SELECT t.name FROM tenants t WHERE t.slug = p_tenant AND t.removed_at IS NULL),
        'timezone', (SELECT t.timezone FROM tenants t WHERE t.slug = p_tenant AND t.removed_at IS NULL)))
$$;

-- Queues one message for every live sink it is for: a tenant's sinks
-- (p_tenant_audience) or the sinks of the roles in p_roles, narrowed by a
-- sink's `events` list.  Duplicates (same sink, same p_dedup) are dropped.
CREATE FUNCTION ws__notify_enqueue(p_kind text, p_tenant_audience text, p_roles text[], p_rollout bigint,
                                   p_tenant text, p_event bigint, p_dedup text, p_at timestamptz,
                                   p_data jsonb)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_n integer;
BEGIN
    INSERT INTO notification_queue (sink_id, kind, rollout_id, tenant, event_id, dedup, at, data)
    SELECT s.id, p_kind, p_rollout, p_tenant, p_event, p_dedup, p_at, p_data
      FROM notification_sinks s
     WHERE s.removed_at IS NULL
       AND (s.events IS NULL OR p_kind = ANY (s.events))
       AND ((p_tenant_audience IS NOT NULL AND p_tenant_audience = ANY (s.tenants))
            OR (p_roles IS NOT NULL AND s.roles && p_roles))
     ORDER BY s.id
    ON CONFLICT (sink_id, dedup) DO NOTHING;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END
$$;

-- Role messages go to these roles' sinks.
CREATE FUNCTION ws__notify_role_audience() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$ SELECT ARRAY['admin', 'platform', 'security'] $$;

CREATE FUNCTION ws__notify_event(e events) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    p       jsonb := e.payload;
    v_at    timestamptz;
    v_kind  text;
    v_ctx   jsonb;
    v_zone  text;
    v_move  jsonb;
    v_data  jsonb;
    v_dep   deployments%ROWTYPE;
BEGIN
    -- Which message, if any, before any other work: most events are none.
    v_kind := CASE
        WHEN e.tenant IS NULL AND e.kind <> 'rollout.state' THEN NULL
        WHEN e.kind = 'deployment.state' AND p ->> 'event' = 'move' THEN 'window.moved'
        WHEN e.kind = 'deployment.state' AND p ->> 'to' = 'skipped' THEN 'window.cancelled'
        WHEN e.kind = 'deployment.state' AND p ->> 'to' IN ('healthy', 'failed', 'rolled_back')
            THEN 'deployment.' || (p ->> 'to')
        WHEN e.kind = 'deployment.moved' THEN 'window.moved'
        WHEN e.kind = 'rollout.state' AND p ->> 'to' IN ('halted', 'rolled_back', 'preempted', 'aborted', 'completed')
            THEN 'rollout.' || (p ->> 'to')
        END;
    IF v_kind IS NULL OR NOT EXISTS (SELECT 1 FROM notification_sinks s WHERE s.removed_at IS NULL) THEN
        RETURN;
    END IF;
    v_at := COALESCE(ws__notify_time(p ->> 'at'), e.at);
    IF e.kind = 'rollout.state' THEN
        v_data := ws__notify_context(e.rollout_id, NULL) || jsonb_strip_nulls(jsonb_build_object(
            'reason', p ->> 'reason', 'from', p ->> 'from', 'state', p ->> 'to'));
        PERFORM ws__notify_enqueue(v_kind, NULL, ws__notify_role_audience(), e.rollout_id,
                                   NULL, e.id, 'event/' || e.id, v_at, v_data);
        RETURN;
    END IF;
    v_ctx := ws__notify_context(e.rollout_id, e.tenant);
    v_zone := v_ctx ->> 'timezone';
    IF e.kind = 'deployment.moved' THEN
        -- a re-plan (0013) moved the tenant: {from: {window_start..}, to: {...}}
        v_data := v_ctx || jsonb_strip_nulls(jsonb_build_object('reason', p ->> 'reason',
            'from_start', p #>> '{from,window_start}',
            'from_start_local', ws__notify_local(ws__notify_time(p #>> '{from,window_start}'), v_zone),
            'window_start', p #>> '{to,window_start}', 'window_end', p #>> '{to,window_end}',
            'window_start_local', ws__notify_local(ws__notify_time(p #>> '{to,window_start}'), v_zone),
            'window_end_local', ws__notify_local(ws__notify_time(p #>> '{to,window_end}'), v_zone)));
    ELSE
        SELECT * INTO v_dep FROM deployments d WHERE d.id = (p ->> 'id')::bigint;
        v_data := v_ctx || jsonb_strip_nulls(jsonb_build_object('reason', p ->> 'reason',
            'window_start', ws__rfc3339(v_dep.window_start), 'window_end', ws__rfc3339(v_dep.window_end),
            'window_start_local', ws__notify_local(v_dep.window_start, v_zone),
            'window_end_local', ws__notify_local(v_dep.window_end, v_zone)));
        IF v_kind = 'window.moved' THEN
            v_move := p -> 'add_move';
            v_data := v_data || jsonb_strip_nulls(jsonb_build_object(
                'from_start', v_move ->> 'from_start',
                'from_start_local', ws__notify_local(ws__notify_time(v_move ->> 'from_start'), v_zone),
                'window_start', v_move ->> 'to_start', 'window_end', v_move ->> 'to_end',
                'window_start_local', ws__notify_local(ws__notify_time(v_move ->> 'to_start'), v_zone),
                'window_end_local', ws__notify_local(ws__notify_time(v_move ->> 'to_end'), v_zone)));
        END IF;
    END IF;
    PERFORM ws__notify_enqueue(v_kind, e.tenant, NULL, e.rollout_id, e.tenant, e.id, 'event/' || e.id, v_at, v_data);
END
$$;

CREATE FUNCTION ws__notify_events_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Cheap first: without a sink there is nothing to queue, and the
    -- exception block below is a subtransaction the engine's hot path
    -- should not pay for.
    IF NOT EXISTS (SELECT 1 FROM notification_sinks s WHERE s.removed_at IS NULL) THEN
        RETURN NULL;
    END IF;
    BEGIN
        PERFORM ws__notify_event(NEW);
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'notifications: event % (%) not queued: %', NEW.id, NEW.kind, SQLERRM;
    END;
    RETURN NULL;
END
$$;
-- Only the events that make a message (ws__notify_event's first CASE):
-- most deployment transitions (deploying, verifying) never call it.
CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH ROW WHEN (NEW.kind = 'deployment.moved'
                       OR (NEW.kind = 'deployment.state' AND NEW.tenant IS NOT NULL
                           AND (NEW.payload ->> 'event' = 'move'
                                OR NEW.payload ->> 'to' IN ('skipped', 'healthy', 'failed', 'rolled_back')))
                       OR (NEW.kind = 'rollout.state'
                           AND NEW.payload ->> 'to' IN ('halted', 'rolled_back', 'preempted', 'aborted', 'completed')))
    EXECUTE FUNCTION ws__notify_events_trigger();

CREATE FUNCTION ws__notify_gate_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_slug text;
    v_wave text;
    v_data jsonb;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM notification_sinks s WHERE s.removed_at IS NULL) THEN
        RETURN NULL;
    END IF;
    BEGIN
        SELECT d.slug INTO v_slug FROM deployments d WHERE d.id = NEW.deployment_id;
        SELECT w.name INTO v_wave FROM waves w WHERE w.id = NEW.wave_id;
        v_data := ws__notify_context(NEW.rollout_id, v_slug) || jsonb_strip_nulls(jsonb_build_object(
            'gate', NEW.gate, 'wave', v_wave, 'tenant', v_slug,
            'reason', COALESCE(NEW.evidence ->> 'reason', NEW.evidence ->> 'error'), 'evidence', NEW.evidence));
        PERFORM ws__notify_enqueue('gate.failed', NULL, ws__notify_role_audience(), NEW.rollout_id, v_slug, NULL,
                                   'gate/' || NEW.id, NEW.at, v_data);
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'notifications: gate result % not queued: %', NEW.id, SQLERRM;
    END;
    RETURN NULL;
END
$$;
CREATE TRIGGER gate_results_notify AFTER INSERT ON gate_results
    FOR EACH ROW WHEN (NEW.result = 'fail')
    EXECUTE FUNCTION ws__notify_gate_trigger();

-- Reminders for windows starting within p_lead_s of p_now (schedule time),
-- one per (deployment, window_start): a moved window is a new key, so the
-- reminder is armed again.  Overdue reviews (database clock, like 0015), once
-- per review.  Returns how many messages were queued.
CREATE FUNCTION ws_notify_scan(p_now timestamptz, p_lead_s bigint) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_n   integer := 0;
    v_k   integer;
    x     record;
BEGIN
    -- Set-based, and only for tenants some sink wants reminded and windows
    -- not reminded yet: this runs every second on large fleets.
    WITH due AS MATERIALIZED (
        SELECT s.id AS sink_id, d.rollout_id, d.slug, d.window_start, d.window_end, k.dedup
          FROM deployments d
          JOIN rollouts r ON r.id = d.rollout_id
          JOIN notification_sinks s ON s.removed_at IS NULL AND d.slug = ANY (s.tenants)
                                   AND (s.events IS NULL OR 'window.reminder' = ANY (s.events))
          CROSS JOIN LATERAL (SELECT format('reminder/%s/%s', d.id,
                                            extract(epoch FROM d.window_start)::bigint) AS dedup) k
         WHERE d.state IN ('scheduled', 'waiting_window')
           AND d.window_start > p_now AND d.window_start <= p_now + make_interval(secs => p_lead_s)
           AND r.state IN ('approved', 'running', 'paused')
           AND NOT EXISTS (SELECT 1 FROM notification_queue q WHERE q.sink_id = s.id AND q.dedup = k.dedup)
    )
    INSERT INTO notification_queue (sink_id, kind, rollout_id, tenant, dedup, at, data)
    SELECT u.sink_id, 'window.reminder', u.rollout_id, u.slug, u.dedup, p_now,
           c.ctx || jsonb_build_object(
               'window_start', ws__rfc3339(u.window_start), 'window_end', ws__rfc3339(u.window_end),
               'window_start_local', ws__notify_local(u.window_start, c.ctx ->> 'timezone'),
               'window_end_local', ws__notify_local(u.window_end, c.ctx ->> 'timezone'),
               'lead_s', floor(extract(epoch FROM u.window_start - p_now))::bigint)
      FROM due u
      CROSS JOIN LATERAL (SELECT ws__notify_context(u.rollout_id, u.slug) AS ctx) c
     ORDER BY u.window_start, u.dedup, u.sink_id
    ON CONFLICT (sink_id, dedup) DO NOTHING;
    GET DIAGNOSTICS v_k = ROW_COUNT;
    v_n := v_n + v_k;
    FOR x IN
        SELECT v.id, v.rollout_id, v.due_at, v.opened_at FROM reviews v
         WHERE v.closed_at IS NULL AND now() > v.due_at ORDER BY v.id
    LOOP
        v_n := v_n + ws__notify_enqueue('review.overdue', NULL, ws__notify_role_audience(), x.rollout_id, NULL,
            NULL, format('review-overdue/%s', x.id), now(),
            ws__notify_context(x.rollout_id, NULL) || jsonb_build_object('review', x.id,
                'due_at', ws__rfc3339(x.due_at), 'opened_at', ws__rfc3339(x.opened_at),
                'created_by', (SELECT r.created_by FROM rollouts r WHERE r.id = x.rollout_id)));
    END LOOP;
    RETURN v_n;
END
$$;

-- The message as the generic JSON format has it (text is rendered by the
-- notifier), with its sink.
CREATE FUNCTION ws__notify_doc(q notification_queue) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', q.id, 'kind', q.kind, 'at', ws__rfc3339(q.at), 'rollout', q.rollout_id,
                              'tenant', q.tenant, 'data', q.data)
$$;

-- Claims up to p_limit messages due now, at most one per sink and only the
-- oldest pending one of its sink (a sink's next message waits for the one
-- before it), each held for p_hold_ms so no other process takes it while
-- its call is in flight.  Result: a JSON array of {message, attempt, sink:
-- {id, name, format, url, secret_env}}.
CREATE FUNCTION ws_notify_claim(p_limit integer, p_hold_ms bigint) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_out jsonb := '[]';
    x     record;
    q     notification_queue%ROWTYPE;
    s     notification_sinks%ROWTYPE;
BEGIN
    FOR x IN
        SELECT DISTINCT ON (h.sink_id) h.id, h.sink_id, h.next_at, h.claimed_until
          FROM notification_queue h
         WHERE h.state = 'pending'
         ORDER BY h.sink_id, h.id
    LOOP
        EXIT WHEN jsonb_array_length(v_out) >= p_limit;
        CONTINUE WHEN x.next_at > now() OR (x.claimed_until IS NOT NULL AND x.claimed_until > now());
        SELECT * INTO q FROM notification_queue h
         WHERE h.id = x.id AND h.state = 'pending' AND (h.claimed_until IS NULL OR h.claimed_until <= now())
           FOR UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        SELECT * INTO s FROM notification_sinks k WHERE k.id = q.sink_id;
        UPDATE notification_queue h SET claimed_until = now() + make_interval(secs => p_hold_ms / 1000.0)
         WHERE h.id = q.id;
        v_out := v_out || jsonb_build_array(jsonb_build_object(
            'message', ws__notify_doc(q), 'attempt', q.attempts + 1,
            'sink', jsonb_strip_nulls(jsonb_build_object('id', s.id, 'name', s.name, 'format', s.format,
                                                         'url', s.url, 'secret_env', s.secret_env))));
    END LOOP;
    RETURN v_out;
END
$$;

-- Records attempt p_attempt of message p_id: delivered, retry (again after
-- p_retry_ms) or failed (given up).  An attempt already recorded (a
-- duplicate after a takeover) changes nothing; returns false then.
CREATE FUNCTION ws_notify_record(p_id bigint, p_attempt integer, p_status integer, p_error text,
                                 p_duration_ms integer, p_outcome text, p_retry_ms bigint)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE notification_queue q
       SET attempts = p_attempt, claimed_until = NULL, last_error = p_error,
           state = CASE p_outcome WHEN 'retry' THEN 'pending' ELSE p_outcome END,
           done_at = CASE WHEN p_outcome = 'retry' THEN NULL ELSE now() END,
           next_at = CASE WHEN p_outcome = 'retry' THEN now() + make_interval(secs => p_retry_ms / 1000.0)
                          ELSE q.next_at END
     WHERE q.id = p_id AND q.state = 'pending' AND q.attempts = p_attempt - 1;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO notification_deliveries (queue_id, attempt, status, error, duration_ms, outcome, retry_in_ms)
    VALUES (p_id, p_attempt, p_status, p_error, GREATEST(p_duration_ms, 0), p_outcome,
            CASE WHEN p_outcome = 'retry' THEN p_retry_ms END);
    RETURN true;
END
$$;

-- A call cancelled by a stopping process: the message is free again at
-- once (not counted as an attempt), for whoever leads next.
CREATE FUNCTION ws_notify_unclaim(p_id bigint, p_attempt integer) RETURNS boolean
LANGUAGE sql AS $$
    UPDATE notification_queue q SET claimed_until = NULL
     WHERE q.id = p_id AND q.state = 'pending' AND q.attempts = p_attempt - 1
    RETURNING true
$$;

-- ---- the API -------------------------------------------------------------------

CREATE FUNCTION ws__notify_sink_doc(s notification_sinks) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', s.id, 'name', s.name, 'format', s.format, 'url', s.url,
        'roles', to_jsonb(s.roles), 'tenants', to_jsonb(s.tenants), 'events', to_jsonb(s.events),
        'secret_env', s.secret_env, 'created_by', s.created_by, 'created_at', ws__rfc3339(s.created_at),
        'pending', (SELECT count(*) FROM notification_queue q WHERE q.sink_id = s.id AND q.state = 'pending'),
        'delivered', (SELECT count(*) FROM notification_queue q WHERE q.sink_id = s.id AND q.state = 'delivered'),
        'failed', (SELECT count(*) FROM notification_queue q WHERE q.sink_id = s.id AND q.state = 'failed'))
$$;

-- p_doc was validated by the API (api_notify.c); the table's checks stand
-- behind it.  A live sink's name is taken once.
CREATE FUNCTION ws_notify_sink_create(p_doc jsonb, p_actor text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    s notification_sinks%ROWTYPE;
BEGIN
    IF EXISTS (SELECT 1 FROM notification_sinks k WHERE k.name = p_doc ->> 'name' AND k.removed_at IS NULL) THEN
        PERFORM ws__fail('WSE03', format('sink %s already exists (delete it first to change it)', p_doc ->> 'name'));
    END IF;
    INSERT INTO notification_sinks (name, format, url, roles, tenants, events, secret_env, created_by)
    VALUES (p_doc ->> 'name', p_doc ->> 'format', p_doc ->> 'url',
            ARRAY(SELECT jsonb_array_elements_text(COALESCE(p_doc -> 'roles', '[]'))),
            ARRAY(SELECT jsonb_array_elements_text(COALESCE(p_doc -> 'tenants', '[]'))),
            CASE WHEN jsonb_typeof(p_doc -> 'events') = 'array'
                 THEN ARRAY(SELECT jsonb_array_elements_text(p_doc -> 'events')) END,
            p_doc ->> 'secret_env', p_actor)
    RETURNING * INTO s;
    PERFORM ws_audit_append(p_actor, 'notify.sink.create', format('notify/sink/%s', s.name),
                            ws__notify_sink_doc(s) - 'pending' - 'delivered' - 'failed' - 'url'
                            || jsonb_build_object('url_sha256', encode(sha256(convert_to(s.url, 'UTF8')), 'hex')));
    RETURN ws__notify_sink_doc(s);
END
$$;

-- Removing a sink gives up its pending messages (recorded as failed).
CREATE FUNCTION ws_notify_sink_delete(p_name text, p_actor text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    s notification_sinks%ROWTYPE;
BEGIN
    UPDATE notification_sinks k SET removed_at = now(), removed_by = p_actor
     WHERE k.name = p_name AND k.removed_at IS NULL RETURNING * INTO s;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    UPDATE notification_queue q SET state = 'failed', done_at = now(), claimed_until = NULL,
           last_error = format('sink %s removed by %s', p_name, p_actor)
     WHERE q.sink_id = s.id AND q.state = 'pending';
    PERFORM ws_audit_append(p_actor, 'notify.sink.delete', format('notify/sink/%s', s.name),
                            jsonb_build_object('id', s.id));
    RETURN ws__notify_sink_doc(s);
END
$$;

CREATE FUNCTION ws_notify_sink_list() RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('sinks', COALESCE(jsonb_agg(ws__notify_sink_doc(s) ORDER BY s.name), '[]'))
      FROM notification_sinks s WHERE s.removed_at IS NULL
$$;

-- {"notifications": [...]} oldest first, each with its sink's name and its
-- attempts; p_state pending|delivered|failed or NULL, p_sink a name or NULL.
CREATE FUNCTION ws_notify_list(p_state text, p_sink text, p_limit integer) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('notifications', COALESCE(jsonb_agg(x.doc ORDER BY x.id), '[]'))
      FROM (SELECT q.id, ws__notify_doc(q) || jsonb_build_object(
                'sink', s.name, 'state', q.state, 'attempts', q.attempts, 'next_at', ws__rfc3339(q.next_at),
                'created_at', ws__rfc3339(q.created_at), 'done_at', ws__rfc3339(q.done_at),
                'last_error', q.last_error,
                'deliveries', COALESCE((SELECT jsonb_agg(jsonb_build_object('attempt', d.attempt,
                        'at', ws__rfc3339(d.at), 'status', d.status, 'error', d.error,
                        'duration_ms', d.duration_ms, 'outcome', d.outcome, 'retry_in_ms', d.retry_in_ms)
                        ORDER BY d.attempt) FROM notification_deliveries d WHERE d.queue_id = q.id), '[]')) AS doc
              FROM notification_queue q JOIN notification_sinks s ON s.id = q.sink_id
             WHERE (p_state IS NULL OR q.state = p_state) AND (p_sink IS NULL OR s.name = p_sink)
             ORDER BY q.id
             LIMIT p_limit) x
$$;

-- /metrics (0014, and whatever wrapped it since) counts messages by state.
ALTER FUNCTION ws_metrics_snapshot() RENAME TO ws__metrics_snapshot_before_0018;
CREATE FUNCTION ws_metrics_snapshot() RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT (ws__metrics_snapshot_before_0018()::jsonb || jsonb_build_object('notifications', jsonb_build_object(
        'pending', (SELECT count(*) FROM notification_queue WHERE state = 'pending'),
        'delivered', (SELECT count(*) FROM notification_queue WHERE state = 'delivered'),
        'failed', (SELECT count(*) FROM notification_queue WHERE state = 'failed'))))::json
$$;
