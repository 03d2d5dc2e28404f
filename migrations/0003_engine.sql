-- 0003: the rollout engine's tables and the functions every state change goes
-- through (spec/engine.md, docs/design/engine.md).
--
-- Rules the schema itself enforces, so that no caller can get them wrong:
--   * a state changes only along ws_state_transitions (the same table as
--     scheduler/states.c; a unit test proves they agree) and only from the
--     state the writer expected (no lost updates between the leader, a second
--     process and people using the API);
--   * the leader writes only while its lease epoch is current (fencing:
--     ws_engine_tx re-reads the epoch FOR SHARE, so a takeover waits for the
--     old leader's transaction in flight and every later one is refused);
--   * releases are immutable once used, plans and audit rows always;
--   * the audit log is one sha256 hash chain, appended through one function.
--
-- Errors use SQLSTATEs of our own class "WS" (states.h names them):
--   WSE01 stale epoch, WSE02 state conflict, WSE03 transition not allowed,
--   WSE04 invalid op, WSE05 not found, WSE06 forbidden, WSE07 immutable.
--
-- Times: created_at/updated_at/at columns are the database's clock; columns
-- that belong to the schedule (start_at, window_*, started_at, soak_until,
-- gate and event "at") are written by the engine in schedule time, which
-- runs faster under `serve --time-scale`.

-- ---- releases -------------------------------------------------------------

CREATE TABLE releases (
    id          bigserial PRIMARY KEY,
    version     text NOT NULL UNIQUE CHECK (version ~ '^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$'),
    digest      text NOT NULL CHECK (digest ~ '^sha256:[0-9a-f]{64}$'),
    kind        text NOT NULL DEFAULT 'standard' CHECK (kind IN ('standard', 'urgent')),
    notes       text NOT NULL DEFAULT '',
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- ---- backups (the catalog the backup gate reads) --------------------------

CREATE TABLE backups (
    id                  bigserial PRIMARY KEY,
    tenant_id           bigint NOT NULL REFERENCES tenants (id),
    succeeded           boolean NOT NULL DEFAULT true,
    completed_at        timestamptz NOT NULL,
    location            text NOT NULL,
    size_bytes          bigint NOT NULL CHECK (size_bytes >= 0),
    checksum            text NOT NULL,
    restore_verified_at timestamptz,
    restore_result      text CHECK (restore_result IN ('ok', 'failed')),
    restore_duration    interval CHECK (restore_duration >= interval '0'),
    reported_by         text NOT NULL,
    reported_at         timestamptz NOT NULL DEFAULT now(),
    CHECK ((restore_verified_at IS NULL) = (restore_result IS NULL))
);
-- "the latest successful backup of tenant T" and "... with a verified restore"
CREATE INDEX backups_latest_idx ON backups (tenant_id, completed_at DESC) WHERE succeeded;
CREATE INDEX backups_restore_idx ON backups (tenant_id, restore_verified_at DESC)
    WHERE succeeded AND restore_result = 'ok';

-- ---- rollouts, plans, waves, deployments ----------------------------------

-- A rollout names the exact stored policy version it was planned with: the
-- pair (id, sha256) must be a row of policies.
ALTER TABLE policies ADD CONSTRAINT policies_id_sha256_key UNIQUE (id, sha256);

CREATE TABLE rollouts (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    release_id    bigint NOT NULL REFERENCES releases (id),
    policy_id     bigint NOT NULL,
    policy_sha256 text NOT NULL,
    state         text NOT NULL DEFAULT 'planned' CHECK (state IN ('planned', 'approved', 'running',
                      'paused', 'completed', 'preempted', 'halted', 'aborted', 'rolled_back')),
    state_reason  text,
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    start_at      timestamptz,
    plan_version  integer NOT NULL DEFAULT 1 CHECK (plan_version > 0),
    FOREIGN KEY (policy_id, policy_sha256) REFERENCES policies (id, sha256)
);
CREATE INDEX rollouts_release_idx ON rollouts (release_id);
-- the engine's scan of rollouts it still has to advance
CREATE INDEX rollouts_active_idx ON rollouts (id)
    WHERE state IN ('approved', 'running', 'paused', 'preempted', 'halted');

-- Plans are frozen: a re-plan is a new version with its diff, never an edit.
-- sha256 is checked against the text, byte for byte as the planner wrote it.
CREATE TABLE rollout_plans (
    rollout_id  bigint NOT NULL REFERENCES rollouts (id),
    version     integer NOT NULL CHECK (version > 0),
    plan        text NOT NULL,
    sha256      text NOT NULL,
    diff        jsonb,
    reason      text NOT NULL,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rollout_id, version),
    CHECK (sha256 = encode(sha256(convert_to(plan, 'UTF8')), 'hex')),
    CHECK ((version = 1) = (diff IS NULL))
);
-- A rollout's current plan exists (checked at commit: the rollout row comes
-- first).
ALTER TABLE rollouts ADD CONSTRAINT rollouts_plan_fk FOREIGN KEY (id, plan_version)
    REFERENCES rollout_plans (rollout_id, version) DEFERRABLE INITIALLY DEFERRED;

CREATE TABLE waves (
    id            bigserial PRIMARY KEY,
    rollout_id    bigint NOT NULL REFERENCES rollouts (id),
    idx           integer NOT NULL CHECK (idx >= 0),
    name          text NOT NULL,
    state         text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'backup_check',
                      'deploying', 'verifying', 'soaking', 'passed', 'failed')),
    state_reason  text,
    start_at      timestamptz,            -- planned, schedule time
    end_at        timestamptz,
    settings      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(settings) = 'object'),
    started_at    timestamptz,            -- actual, schedule time
    soak_until    timestamptz,
    ended_at      timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (rollout_id, idx),
    UNIQUE (id, rollout_id)
);

CREATE TABLE deployments (
    id               bigserial PRIMARY KEY,
    rollout_id       bigint NOT NULL,
    wave_id          bigint NOT NULL,
    tenant_id        bigint NOT NULL REFERENCES tenants (id),
    slug             text NOT NULL,
    state            text NOT NULL DEFAULT 'scheduled' CHECK (state IN ('scheduled', 'waiting_window',
                         'deploying', 'verifying', 'healthy', 'failed', 'rolling_back',
                         'rolled_back', 'skipped')),
    state_reason     text,
    window_start     timestamptz,
    window_end       timestamptz,
    attempt          integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    reasons          jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(reasons) = 'array'),
    previous_version text,
    target_version   text NOT NULL,
    moves            jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(moves) = 'array'),
    started_at       timestamptz,
    ended_at         timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (wave_id, rollout_id) REFERENCES waves (id, rollout_id),
    UNIQUE (rollout_id, tenant_id),
    CHECK (window_end IS NULL OR window_start IS NULL OR window_end > window_start)
);
CREATE INDEX deployments_wave_idx ON deployments (wave_id, state);
CREATE INDEX deployments_tenant_idx ON deployments (tenant_id, window_start);

CREATE TABLE approvals (
    id          bigserial PRIMARY KEY,
    rollout_id  bigint NOT NULL,
    wave_id     bigint NOT NULL,
    actor       text NOT NULL,
    role        text NOT NULL,
    decision    text NOT NULL CHECK (decision IN ('approve', 'reject')),
    comment     text NOT NULL DEFAULT '',
    at          timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (wave_id, rollout_id) REFERENCES waves (id, rollout_id),
    UNIQUE (wave_id, actor)
);
CREATE INDEX approvals_rollout_idx ON approvals (rollout_id);

CREATE TABLE gate_results (
    id            bigserial PRIMARY KEY,
    rollout_id    bigint NOT NULL REFERENCES rollouts (id),
    wave_id       bigint REFERENCES waves (id),
    deployment_id bigint REFERENCES deployments (id),
    gate          text NOT NULL CHECK (gate ~ '^[a-z][a-z0-9_-]{0,62}$'),
    result        text NOT NULL CHECK (result IN ('pass', 'fail', 'wait')),
    evidence      jsonb NOT NULL DEFAULT '{}',
    at            timestamptz NOT NULL DEFAULT now(),
    recorded_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX gate_results_rollout_idx ON gate_results (rollout_id, wave_id);
CREATE INDEX gate_results_deployment_idx ON gate_results (deployment_id) WHERE deployment_id IS NOT NULL;

-- Effects outside the database: the intent is committed with the transition
-- that needs it, executed with its idempotency key, and its result committed
-- with the next transition.  The key is built here from the deployment row
-- (rollout/tenant/attempt), so two intents for one attempt cannot exist.
CREATE TABLE outbox (
    id              bigserial PRIMARY KEY,
    rollout_id      bigint NOT NULL REFERENCES rollouts (id),
    deployment_id   bigint NOT NULL REFERENCES deployments (id),
    kind            text NOT NULL CHECK (kind IN ('deploy', 'rollback')),
    attempt         integer NOT NULL CHECK (attempt > 0),
    idempotency_key text NOT NULL UNIQUE,
    request         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(request) = 'object'),
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
    result          jsonb,
    epoch           bigint NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    done_at         timestamptz,
    CHECK ((state = 'pending') = (done_at IS NULL))
);
CREATE INDEX outbox_pending_idx ON outbox (id) WHERE state = 'pending';
CREATE INDEX outbox_deployment_idx ON outbox (deployment_id);

-- ---- leadership -------------------------------------------------------------

-- One row.  An ordinary logged table: the lease and its epoch survive a
-- database crash, so an epoch never goes back.
CREATE TABLE engine_lease (
    id          integer PRIMARY KEY CHECK (id = 1),
    holder      text,
    epoch       bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0),
    expires_at  timestamptz NOT NULL DEFAULT '-infinity',
    acquired_at timestamptz,
    renewed_at  timestamptz
);
INSERT INTO engine_lease (id) VALUES (1);

-- ---- audit and events --------------------------------------------------------

CREATE SEQUENCE audit_log_id_seq;
CREATE TABLE audit_log (
    id        bigint PRIMARY KEY DEFAULT nextval('audit_log_id_seq'),
    at        timestamptz NOT NULL,
    actor     text NOT NULL,
    action    text NOT NULL,
    object    text NOT NULL,
    details   jsonb NOT NULL DEFAULT '{}',
    prev_hash text NOT NULL CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
    hash      text NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$')
);
ALTER SEQUENCE audit_log_id_seq OWNED BY audit_log.id;
CREATE INDEX audit_log_object_idx ON audit_log (object, id);

-- Kept durably, published to Redis later by whoever sets published_at.
CREATE TABLE events (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    rollout_id   bigint REFERENCES rollouts (id),
    tenant       text,                   -- slug, for tenant-scoped streams
    kind         text NOT NULL,
    payload      jsonb NOT NULL DEFAULT '{}',
    published_at timestamptz
);
CREATE INDEX events_unpublished_idx ON events (id) WHERE published_at IS NULL;
CREATE INDEX events_rollout_idx ON events (rollout_id, id);

-- ---- the transition table ------------------------------------------------------

CREATE TABLE ws_state_transitions (
    object     text NOT NULL CHECK (object IN ('rollout', 'wave', 'deployment')),
    from_state text NOT NULL,
    event      text NOT NULL,
    to_state   text NOT NULL,
    PRIMARY KEY (object, from_state, event)
);
CREATE UNIQUE INDEX ws_state_transitions_pair_idx
    ON ws_state_transitions (object, from_state, to_state, event);
INSERT INTO ws_state_transitions (object, from_state, event, to_state) VALUES
    ('rollout', 'planned', 'approve', 'approved'),
    ('rollout', 'planned', 'abort', 'aborted'),
    ('rollout', 'approved', 'start', 'running'),
    ('rollout', 'approved', 'abort', 'aborted'),
    ('rollout', 'running', 'pause', 'paused'),
    ('rollout', 'running', 'complete', 'completed'),
    ('rollout', 'running', 'preempt', 'preempted'),
    ('rollout', 'running', 'halt', 'halted'),
    ('rollout', 'running', 'abort', 'aborted'),
    ('rollout', 'running', 'rollback_done', 'rolled_back'),
    ('rollout', 'paused', 'resume', 'running'),
    ('rollout', 'paused', 'halt', 'halted'),
    ('rollout', 'paused', 'abort', 'aborted'),
    ('rollout', 'preempted', 'resume_preempted', 'running'),
    ('rollout', 'preempted', 'abort', 'aborted'),
    ('rollout', 'halted', 'abort', 'aborted'),
    ('rollout', 'halted', 'rollback_done', 'rolled_back'),
    ('wave', 'pending', 'check_backups', 'backup_check'),
    ('wave', 'backup_check', 'deploy', 'deploying'),
    ('wave', 'backup_check', 'fail', 'failed'),
    ('wave', 'deploying', 'verify', 'verifying'),
    ('wave', 'deploying', 'fail', 'failed'),
    ('wave', 'verifying', 'soak', 'soaking'),
    ('wave', 'verifying', 'fail', 'failed'),
    ('wave', 'soaking', 'pass', 'passed'),
    ('wave', 'soaking', 'fail', 'failed'),
    ('deployment', 'scheduled', 'wait', 'waiting_window'),
    ('deployment', 'scheduled', 'skip', 'skipped'),
    ('deployment', 'waiting_window', 'move', 'waiting_window'),
    ('deployment', 'waiting_window', 'deploy', 'deploying'),
    ('deployment', 'waiting_window', 'skip', 'skipped'),
    ('deployment', 'deploying', 'verify', 'verifying'),
    ('deployment', 'deploying', 'fail', 'failed'),
    ('deployment', 'verifying', 'healthy', 'healthy'),
    ('deployment', 'verifying', 'fail', 'failed'),
    ('deployment', 'healthy', 'fail', 'failed'),
    ('deployment', 'healthy', 'rollback', 'rolling_back'),
    ('deployment', 'failed', 'rollback', 'rolling_back'),
    ('deployment', 'rolling_back', 'rollback_done', 'rolled_back'),
    ('deployment', 'rolling_back', 'fail', 'failed');

-- ---- immutability ------------------------------------------------------------

CREATE FUNCTION ws_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'WSE07',
        MESSAGE = format('%s rows cannot be changed or removed', TG_TABLE_NAME),
        HINT = 'append a new row instead';
END
$$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION ws_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION ws_refuse_change();
CREATE TRIGGER rollout_plans_frozen BEFORE UPDATE OR DELETE ON rollout_plans
    FOR EACH ROW EXECUTE FUNCTION ws_refuse_change();
CREATE TRIGGER rollout_plans_no_truncate BEFORE TRUNCATE ON rollout_plans
    FOR EACH STATEMENT EXECUTE FUNCTION ws_refuse_change();

-- A release may be corrected until a rollout uses it.  The FOR UPDATE lock
-- conflicts with the KEY SHARE lock a new rollout's foreign key takes, so a
-- rollout being created concurrently is either seen here or waits for this
-- change to commit.
CREATE FUNCTION ws_release_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_rollout bigint;
BEGIN
    PERFORM 1 FROM releases WHERE id = OLD.id FOR UPDATE;
    SELECT r.id INTO v_rollout FROM rollouts r WHERE r.release_id = OLD.id ORDER BY r.id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'WSE07',
            MESSAGE = format('release %s is used by rollout %s and cannot be changed', OLD.version, v_rollout),
            HINT = 'create a new release version instead';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;
CREATE TRIGGER releases_immutable_once_used BEFORE UPDATE OR DELETE ON releases
    FOR EACH ROW EXECUTE FUNCTION ws_release_guard();

-- Separation of duties, whoever inserts the approval.
CREATE FUNCTION ws_approval_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM rollouts r WHERE r.id = NEW.rollout_id AND r.created_by = NEW.actor) THEN
        RAISE EXCEPTION USING ERRCODE = 'WSE06',
            MESSAGE = format('separation of duties: %s created rollout %s and cannot approve or reject it',
                             NEW.actor, NEW.rollout_id);
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER approvals_separation_of_duties BEFORE INSERT OR UPDATE ON approvals
    FOR EACH ROW EXECUTE FUNCTION ws_approval_guard();

-- ---- the audit chain ---------------------------------------------------------

-- The hash of one row: sha256 over a JSON array of the previous row's hash
-- and the row's own fields.  JSON (not a separator-joined string) so that no
-- two different rows have the same text; the time as integer microseconds so
-- the text does not depend on the session's time zone or DateStyle.
CREATE FUNCTION ws_audit_hash(p_prev text, p_id bigint, p_at timestamptz, p_actor text,
                              p_action text, p_object text, p_details jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT encode(sha256(convert_to(jsonb_build_array(
        p_prev, p_id, (extract(epoch FROM p_at) * 1000000)::bigint,
        p_actor, p_action, p_object, p_details)::text, 'UTF8')), 'hex')
$$;

-- Appends one row after the row whose hash is p_prev and returns the new
-- hash.  Internal: only valid while holding the audit lock with p_prev read
-- under it (ws_audit_append, ws_engine_tx).
CREATE FUNCTION ws__audit_insert(p_prev text, p_actor text, p_action text, p_object text, p_details jsonb)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_id   bigint := nextval('audit_log_id_seq');
    v_at   timestamptz := clock_timestamp();
    v_hash text;
BEGIN
    IF p_actor IS NULL OR p_action IS NULL OR p_object IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'WSE04', MESSAGE = 'audit entry: actor, action and object are required';
    END IF;
    v_hash := ws_audit_hash(p_prev, v_id, v_at, p_actor, p_action, p_object, COALESCE(p_details, '{}'));
    INSERT INTO audit_log (id, at, actor, action, object, details, prev_hash, hash)
    VALUES (v_id, v_at, p_actor, p_action, p_object, COALESCE(p_details, '{}'), p_prev, v_hash);
    RETURN v_hash;
END
$$;

-- Takes the audit lock (held until commit) and returns the newest hash,
-- zeros for an empty log.  Appends are serialised by this lock and the
-- previous hash is read after taking it; under READ COMMITTED that read sees
-- every earlier append, so the rows form one chain in id order (ids are
-- drawn under the lock too).  An older snapshot (REPEATABLE READ) could fork
-- the chain, so it is refused.
CREATE FUNCTION ws__audit_lock() RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_prev text;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'ws_audit_append needs READ COMMITTED isolation, not %',
            current_setting('transaction_isolation');
    END IF;
    PERFORM pg_advisory_xact_lock(2003, 1);   -- (migration 0003, audit chain)
    SELECT a.hash INTO v_prev FROM audit_log a ORDER BY a.id DESC LIMIT 1;
    RETURN COALESCE(v_prev, repeat('0', 64));
END
$$;

-- The one way to append to the audit log from outside: returns the new
-- row's id.
CREATE FUNCTION ws_audit_append(p_actor text, p_action text, p_object text, p_details jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ws__audit_insert(ws__audit_lock(), p_actor, p_action, p_object, p_details);
    RETURN currval('audit_log_id_seq');
END
$$;

-- Walks the chain in id order.  ok = false names the first row whose
-- prev_hash is not its predecessor's hash (a row removed or reordered) or
-- whose hash does not cover its fields (a row edited).  Removing the newest
-- rows is only visible against a hash kept elsewhere (last_hash).
CREATE FUNCTION ws_audit_verify()
RETURNS TABLE (ok boolean, checked bigint, first_bad_id bigint, problem text, last_hash text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r      audit_log%ROWTYPE;
    v_prev text := repeat('0', 64);
    v_n    bigint := 0;
BEGIN
    FOR r IN SELECT * FROM audit_log ORDER BY id LOOP
        IF r.prev_hash <> v_prev THEN
            RETURN QUERY SELECT false, v_n, r.id,
                format('entry %s does not follow the entry before it (an entry was removed or reordered)', r.id),
                v_prev;
            RETURN;
        END IF;
        IF r.hash <> ws_audit_hash(r.prev_hash, r.id, r.at, r.actor, r.action, r.object, r.details) THEN
            RETURN QUERY SELECT false, v_n, r.id,
                format('entry %s was changed after it was written (its hash does not match)', r.id),
                v_prev;
            RETURN;
        END IF;
        v_prev := r.hash;
        v_n := v_n + 1;
    END LOOP;
    RETURN QUERY SELECT true, v_n, NULL::bigint, NULL::text, v_prev;
END
$$;

-- ---- leadership -----------------------------------------------------------------

-- Takes, renews or reports the lease, judged by the database's clock alone
-- (clock_timestamp() read after the row lock, so waiting for the lock does
-- not eat into the term).  An expired lease is a new term even for the same
-- holder: whatever that holder did while it was not sure of its lease is
-- fenced off by the new epoch.
CREATE FUNCTION ws_lease_acquire(p_holder text, p_ttl_ms integer)
RETURNS TABLE (epoch bigint, leader boolean, remaining_ms integer, holder text)
LANGUAGE plpgsql AS $$
DECLARE
    l     engine_lease%ROWTYPE;
    v_now timestamptz;
BEGIN
    IF p_holder IS NULL OR p_holder = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'WSE04', MESSAGE = 'lease holder must not be empty';
    END IF;
    IF p_ttl_ms IS NULL OR p_ttl_ms < 100 OR p_ttl_ms > 3600000 THEN
        RAISE EXCEPTION USING ERRCODE = 'WSE04',
            MESSAGE = format('lease ttl_ms %s is out of range (100 to 3600000)', p_ttl_ms);
    END IF;
    SELECT * INTO l FROM engine_lease e WHERE e.id = 1 FOR UPDATE;
    v_now := clock_timestamp();
    IF l.holder = p_holder AND l.expires_at > v_now THEN
        UPDATE engine_lease e SET expires_at = v_now + p_ttl_ms * interval '1 millisecond', renewed_at = v_now
         WHERE e.id = 1;
        RETURN QUERY SELECT l.epoch, true, p_ttl_ms, p_holder;
    ELSIF l.holder IS NULL OR l.expires_at <= v_now THEN
        UPDATE engine_lease e SET holder = p_holder, epoch = l.epoch + 1,
               expires_at = v_now + p_ttl_ms * interval '1 millisecond', acquired_at = v_now, renewed_at = v_now
         WHERE e.id = 1;
        RETURN QUERY SELECT l.epoch + 1, true, p_ttl_ms, p_holder;
    ELSE
        RETURN QUERY SELECT l.epoch, false,
            LEAST(ceil(extract(epoch FROM l.expires_at - v_now) * 1000), 2147483647)::integer, l.holder;
    END IF;
END
$$;

-- Clean shutdown: frees the lease at once (the next acquire takes it with
-- epoch + 1).  False when the caller no longer held that term.
CREATE FUNCTION ws_lease_release(p_holder text, p_epoch bigint)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE engine_lease e SET holder = NULL, expires_at = clock_timestamp()
     WHERE e.id = 1 AND e.holder = p_holder AND e.epoch = p_epoch;
    RETURN FOUND;
END
$$;

-- ---- internal helpers of the transaction functions --------------------------------

CREATE FUNCTION ws__fail(p_code text, p_message text, p_detail text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_detail IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = p_code, MESSAGE = p_message;
    END IF;
    RAISE EXCEPTION USING ERRCODE = p_code, MESSAGE = p_message, DETAIL = p_detail;
END
$$;

-- The id of a JSON number field, or a WSE04 error naming the op and field.
CREATE FUNCTION ws__op_id(p_op jsonb, p_field text, p_n integer, p_optional boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v jsonb := p_op -> p_field;
BEGIN
    IF v IS NULL OR v = 'null' THEN
        IF p_optional THEN
            RETURN NULL;
        END IF;
        PERFORM ws__fail('WSE04', format('invalid op %s: "%s" is required', p_n, p_field));
    END IF;
    IF jsonb_typeof(v) <> 'number' OR (v #>> '{}') !~ '^[0-9]{1,18}$' THEN
        PERFORM ws__fail('WSE04', format('invalid op %s: "%s" must be a positive integer, not %s', p_n, p_field, v));
    END IF;
    RETURN (v #>> '{}')::bigint;
END
$$;

CREATE FUNCTION ws__op_text(p_op jsonb, p_field text, p_n integer) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v jsonb := p_op -> p_field;
BEGIN
    IF v IS NULL OR jsonb_typeof(v) <> 'string' THEN
        PERFORM ws__fail('WSE04', format('invalid op %s: "%s" must be a string', p_n, p_field));
    END IF;
    RETURN v #>> '{}';
END
$$;

-- A schedule time from an op: RFC 3339 with an explicit offset only.  A bare
-- cast would also take 'tomorrow', 'now' or a local time in the session's
-- zone, none of which belongs in a committed decision.
CREATE FUNCTION ws__op_time(p_val jsonb, p_field text, p_n integer) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_val IS NULL OR p_val = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(p_val) <> 'string' OR (p_val #>> '{}') !~
       '^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?([Zz]|[+-][0-9]{2}:[0-9]{2})$' THEN
        PERFORM ws__fail('WSE04', format('invalid op %s: "%s" must be an RFC 3339 time such as 2026-12-01T00:00:00Z, not %s',
                                         p_n, p_field, p_val));
    END IF;
    RETURN (p_val #>> '{}')::timestamptz;
END
$$;

-- Refuses keys a caller may not set (a typo would otherwise be ignored).
CREATE FUNCTION ws__op_keys(p_obj jsonb, p_allowed text[], p_what text, p_n integer) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_bad text;
BEGIN
    IF p_obj IS NULL THEN
        RETURN;
    END IF;
    IF jsonb_typeof(p_obj) <> 'object' THEN
        PERFORM ws__fail('WSE04', format('invalid op %s: %s must be an object', p_n, p_what));
    END IF;
    SELECT k INTO v_bad FROM jsonb_object_keys(p_obj) k WHERE k <> ALL (p_allowed) ORDER BY k LIMIT 1;
    IF FOUND THEN
        PERFORM ws__fail('WSE04', format('invalid op %s: unknown key "%s" in %s (allowed: %s)',
                                         p_n, v_bad, p_what, array_to_string(p_allowed, ', ')));
    END IF;
END
$$;

CREATE FUNCTION ws__check_transition(p_object text, p_from text, p_to text, p_n integer) RETURNS void
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM 1 FROM ws_state_transitions t
     WHERE t.object = p_object AND t.from_state = p_from AND t.to_state = p_to;
    IF NOT FOUND THEN
        PERFORM ws__fail('WSE03', format('transition not allowed: %s from %s to %s (op %s)',
                                         p_object, p_from, p_to, p_n));
    END IF;
END
$$;

-- After 0 rows were updated: tells "gone" from "somebody else moved it".
CREATE FUNCTION ws__conflict(p_object text, p_id bigint, p_expected text, p_actual text, p_n integer)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_actual IS NULL THEN
        PERFORM ws__fail('WSE05', format('%s %s does not exist (op %s)', p_object, p_id, p_n));
    END IF;
    PERFORM ws__fail('WSE02', format('state conflict: %s %s is %s, expected %s (op %s)',
                                     p_object, p_id, p_actual, p_expected, p_n));
END
$$;

-- ---- ws_engine_tx ---------------------------------------------------------------------

-- ws_engine_tx(epoch, ops): everything the leader changes, one call = one
-- transaction.  The epoch is checked first (WSE01 "stale epoch" when the
-- lease has moved on); then the ops are applied in order and any failure
-- rolls back the whole call.  Returns a JSON array with one object per op.
--
-- ops is a JSON array of objects, "op" naming the kind:
--
--   {"op": "rollout" | "wave" | "deployment", "id": N, "from": S, "to": S,
--    "event"?: E, "reason"?: text, "at"?: schedule time, "actor"?: text,
--    "set"?: {...}, "add_reason"?: {...}, "add_move"?: {...}}
--       moves one row from state `from` to `to` (a transition of
--       ws_state_transitions, else WSE03); 0 rows with that id and state is
--       WSE02 "state conflict" (WSE05 when the row does not exist).  "set"
--       writes columns, null clearing them:
--         rollout:    start_at, plan_version
--         wave:       started_at, soak_until, ended_at, settings
--         deployment: window_start, window_end, attempt, previous_version,
--                     started_at, ended_at
--       add_reason / add_move append to a deployment's reasons / moves.
--       Each transition appends an audit entry (actor default "engine",
--       action "<object>.<to>", object "rollout/R[/wave/I|/tenant/SLUG]")
--       and an event "<object>.state".  Result: {"id", "rollout"}.
--   {"op": "check", "object": "rollout" | "wave" | "deployment", "id": N,
--    "state": S | [S, ...]}
--       locks the row FOR SHARE and requires one of the states, so that a
--       person's pause or abort cannot slip between the engine's decision
--       and its effect.  Result: {"state"}.
--   {"op": "outbox", "deployment": N, "kind": "deploy" | "rollback",
--    "attempt": K, "request"?: {...}}
--       the intent of an external effect.  The deployment must be in
--       deploying (kind deploy) or rolling_back (kind rollback) at attempt K;
--       the key is "rollout/slug/K" and unique.  Result: {"id", "key"}.
--   {"op": "outbox_done", "id": N, "state": "done" | "failed", "result"?: {...}}
--       records the result of a pending intent.  Result: {"id"}.
--   {"op": "gate", "rollout": N, "wave"?: N, "deployment"?: N, "gate": G,
--    "result": "pass" | "fail" | "wait", "evidence"?: {...}, "at"?: time}
--   {"op": "audit", "actor": A, "action": X, "object": O, "details"?: {...}}
--   {"op": "event", "rollout"?: N, "tenant"?: slug, "kind": K, "payload"?: {...}, "at"?: time}
--       Results: {"id"}.
--
-- Each op is a few statements with plans cached by PL/pgSQL (no dynamic
-- SQL), so batching many ops into one call is how the engine amortises the
-- round trip and the commit.  Listeners on "ws_events" are told once per
-- call that events were added.
CREATE FUNCTION ws_engine_tx(p_epoch bigint, p_ops jsonb)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_epoch   bigint;
    v_op      jsonb;
    v_n       integer := 0;
    v_kind    text;
    v_out     jsonb[] := '{}';   -- an array, appended in place (a jsonb would be copied per op)
    v_res     jsonb;
    v_events  boolean := false;
    v_id      bigint;
    v_from    text;
    v_to      text;
    v_actual  text;
    v_set     jsonb;
    v_rollout bigint;
    v_wave    bigint;
    v_dep     bigint;
    v_idx     integer;
    v_slug    text;
    v_object  text;
    v_attempt integer;
    v_key     text;
    v_states  text[];
    v_actor   text;
    v_details jsonb;
    v_err_detail text;
    v_err_constraint text;
    v_chain   text;              -- newest audit hash once we hold the audit lock
BEGIN
    SELECT e.epoch INTO v_epoch FROM engine_lease e WHERE e.id = 1 FOR SHARE;
    IF v_epoch IS DISTINCT FROM p_epoch THEN
        PERFORM ws__fail('WSE01', 'stale epoch',
                         format('the transaction carries epoch %s but the lease is at epoch %s', p_epoch, v_epoch));
    END IF;
    IF p_ops IS NULL OR jsonb_typeof(p_ops) <> 'array' THEN
        PERFORM ws__fail('WSE04', 'invalid ops: expected a JSON array of op objects');
    END IF;

    -- One block around all ops (one subtransaction per call, not per op) so
    -- that a foreign error -- a bad timestamp, a foreign key -- names the op
    -- it came from; our own WSE errors already do and pass unchanged.
    BEGIN
    FOR v_op IN SELECT value FROM jsonb_array_elements(p_ops) LOOP
        v_n := v_n + 1;
        IF jsonb_typeof(v_op) <> 'object' THEN
            PERFORM ws__fail('WSE04', format('invalid op %s: expected an object, not %s', v_n, v_op));
        END IF;
        v_kind := v_op ->> 'op';
        v_set := v_op -> 'set';

        IF v_kind IN ('rollout', 'wave', 'deployment') THEN
            v_id := ws__op_id(v_op, 'id', v_n);
            v_from := ws__op_text(v_op, 'from', v_n);
            v_to := ws__op_text(v_op, 'to', v_n);
            PERFORM ws__check_transition(v_kind, v_from, v_to, v_n);
            v_actor := COALESCE(v_op ->> 'actor', 'engine');

            IF v_kind = 'rollout' THEN
                PERFORM ws__op_keys(v_set, ARRAY['start_at', 'plan_version'], '"set"', v_n);
                v_set := COALESCE(v_set, '{}');
                UPDATE rollouts r SET state = v_to,
                       state_reason = CASE WHEN v_op ? 'reason' THEN v_op ->> 'reason' ELSE r.state_reason END,
                       start_at = CASE WHEN v_set ? 'start_at' THEN ws__op_time(v_set -> 'start_at', 'start_at', v_n) ELSE r.start_at END,
                       plan_version = CASE WHEN v_set ? 'plan_version' THEN (v_set ->> 'plan_version')::integer ELSE r.plan_version END,
                       updated_at = now()
                 WHERE r.id = v_id AND r.state = v_from
                RETURNING r.id INTO v_rollout;
                IF NOT FOUND THEN
                    SELECT r.state INTO v_actual FROM rollouts r WHERE r.id = v_id;
                    PERFORM ws__conflict('rollout', v_id, v_from, v_actual, v_n);
                END IF;
                v_object := format('rollout/%s', v_rollout);
                v_slug := NULL;
                v_idx := NULL;
            ELSIF v_kind = 'wave' THEN
                PERFORM ws__op_keys(v_set, ARRAY['started_at', 'soak_until', 'ended_at', 'settings'], '"set"', v_n);
                v_set := COALESCE(v_set, '{}');
                UPDATE waves w SET state = v_to,
                       state_reason = CASE WHEN v_op ? 'reason' THEN v_op ->> 'reason' ELSE w.state_reason END,
                       started_at = CASE WHEN v_set ? 'started_at' THEN ws__op_time(v_set -> 'started_at', 'started_at', v_n) ELSE w.started_at END,
                       soak_until = CASE WHEN v_set ? 'soak_until' THEN ws__op_time(v_set -> 'soak_until', 'soak_until', v_n) ELSE w.soak_until END,
                       ended_at = CASE WHEN v_set ? 'ended_at' THEN ws__op_time(v_set -> 'ended_at', 'ended_at', v_n) ELSE w.ended_at END,
                       settings = CASE WHEN v_set ? 'settings' THEN v_set -> 'settings' ELSE w.settings END,
                       updated_at = now()
                 WHERE w.id = v_id AND w.state = v_from
                RETURNING w.rollout_id, w.idx INTO v_rollout, v_idx;
                IF NOT FOUND THEN
                    SELECT w.state INTO v_actual FROM waves w WHERE w.id = v_id;
                    PERFORM ws__conflict('wave', v_id, v_from, v_actual, v_n);
                END IF;
                v_object := format('rollout/%s/wave/%s', v_rollout, v_idx);
                v_slug := NULL;
            ELSE
                PERFORM ws__op_keys(v_set, ARRAY['window_start', 'window_end', 'attempt', 'previous_version',
                                                 'started_at', 'ended_at'], '"set"', v_n);
                v_set := COALESCE(v_set, '{}');
                UPDATE deployments d SET state = v_to,
                       state_reason = CASE WHEN v_op ? 'reason' THEN v_op ->> 'reason' ELSE d.state_reason END,
                       window_start = CASE WHEN v_set ? 'window_start' THEN ws__op_time(v_set -> 'window_start', 'window_start', v_n) ELSE d.window_start END,
                       window_end = CASE WHEN v_set ? 'window_end' THEN ws__op_time(v_set -> 'window_end', 'window_end', v_n) ELSE d.window_end END,
                       attempt = CASE WHEN v_set ? 'attempt' THEN (v_set ->> 'attempt')::integer ELSE d.attempt END,
                       previous_version = CASE WHEN v_set ? 'previous_version' THEN v_set ->> 'previous_version' ELSE d.previous_version END,
                       started_at = CASE WHEN v_set ? 'started_at' THEN ws__op_time(v_set -> 'started_at', 'started_at', v_n) ELSE d.started_at END,
                       ended_at = CASE WHEN v_set ? 'ended_at' THEN ws__op_time(v_set -> 'ended_at', 'ended_at', v_n) ELSE d.ended_at END,
                       reasons = CASE WHEN v_op ? 'add_reason' THEN d.reasons || jsonb_build_array(v_op -> 'add_reason') ELSE d.reasons END,
                       moves = CASE WHEN v_op ? 'add_move' THEN d.moves || jsonb_build_array(v_op -> 'add_move') ELSE d.moves END,
                       updated_at = now()
                 WHERE d.id = v_id AND d.state = v_from
                RETURNING d.rollout_id, d.slug INTO v_rollout, v_slug;
                IF NOT FOUND THEN
                    SELECT d.state INTO v_actual FROM deployments d WHERE d.id = v_id;
                    PERFORM ws__conflict('deployment', v_id, v_from, v_actual, v_n);
                END IF;
                v_object := format('rollout/%s/tenant/%s', v_rollout, v_slug);
                v_idx := NULL;
            END IF;

            v_details := jsonb_strip_nulls(jsonb_build_object(
                'id', v_id, 'from', v_from, 'to', v_to, 'event', v_op -> 'event',
                'reason', v_op -> 'reason', 'at', v_op -> 'at', 'epoch', p_epoch,
                'set', v_op -> 'set', 'add_reason', v_op -> 'add_reason', 'add_move', v_op -> 'add_move'));
            v_chain := ws__audit_insert(COALESCE(v_chain, ws__audit_lock()), v_actor, v_kind || '.' || v_to, v_object, v_details);
            INSERT INTO events (rollout_id, tenant, kind, payload)
            VALUES (v_rollout, v_slug, v_kind || '.state',
                    v_details - 'epoch' || jsonb_strip_nulls(jsonb_build_object(
                        'object', v_kind, 'rollout', v_rollout, 'wave', v_idx, 'tenant', v_slug)));
            v_events := true;
            v_res := jsonb_build_object('id', v_id, 'rollout', v_rollout);

        ELSIF v_kind = 'check' THEN
            v_id := ws__op_id(v_op, 'id', v_n);
            IF jsonb_typeof(v_op -> 'state') = 'string' THEN
                v_states := ARRAY[v_op ->> 'state'];
            ELSIF jsonb_typeof(v_op -> 'state') = 'array' THEN
                v_states := ARRAY(SELECT jsonb_array_elements_text(v_op -> 'state'));
            ELSE
                PERFORM ws__fail('WSE04', format('invalid op %s: "state" must be a string or an array of strings', v_n));
            END IF;
            CASE v_op ->> 'object'
            WHEN 'rollout' THEN
                SELECT r.state INTO v_actual FROM rollouts r WHERE r.id = v_id FOR SHARE;
            WHEN 'wave' THEN
                SELECT w.state INTO v_actual FROM waves w WHERE w.id = v_id FOR SHARE;
            WHEN 'deployment' THEN
                SELECT d.state INTO v_actual FROM deployments d WHERE d.id = v_id FOR SHARE;
            ELSE
                PERFORM ws__fail('WSE04', format('invalid op %s: "object" must be rollout, wave or deployment', v_n));
            END CASE;
            IF v_actual IS NULL OR NOT (v_actual = ANY (v_states)) THEN
                PERFORM ws__conflict(v_op ->> 'object', v_id, array_to_string(v_states, ' or '), v_actual, v_n);
            END IF;
            v_res := jsonb_build_object('state', v_actual);

        ELSIF v_kind = 'outbox' THEN
            v_dep := ws__op_id(v_op, 'deployment', v_n);
            v_attempt := ws__op_id(v_op, 'attempt', v_n);
            IF v_op ->> 'kind' IS DISTINCT FROM 'deploy' AND v_op ->> 'kind' IS DISTINCT FROM 'rollback' THEN
                PERFORM ws__fail('WSE04', format('invalid op %s: "kind" must be deploy or rollback', v_n));
            END IF;
            SELECT d.rollout_id, d.slug, d.state, d.attempt INTO v_rollout, v_slug, v_actual, v_idx
              FROM deployments d WHERE d.id = v_dep;
            IF NOT FOUND THEN
                PERFORM ws__fail('WSE05', format('deployment %s does not exist (op %s)', v_dep, v_n));
            END IF;
            v_to := CASE WHEN v_op ->> 'kind' = 'deploy' THEN 'deploying' ELSE 'rolling_back' END;
            IF v_actual <> v_to THEN
                PERFORM ws__fail('WSE02', format('state conflict: deployment %s is %s, a %s intent needs %s (op %s)',
                    v_dep, v_actual, v_op ->> 'kind', v_to, v_n));
            END IF;
            IF v_idx <> v_attempt THEN
                PERFORM ws__fail('WSE02', format('state conflict: deployment %s is at attempt %s, the intent names attempt %s (op %s)',
                    v_dep, v_idx, v_attempt, v_n));
            END IF;
            v_key := format('%s/%s/%s', v_rollout, v_slug, v_attempt);
            INSERT INTO outbox (rollout_id, deployment_id, kind, attempt, idempotency_key, request, epoch)
            VALUES (v_rollout, v_dep, v_op ->> 'kind', v_attempt, v_key, COALESCE(v_op -> 'request', '{}'), p_epoch)
            RETURNING outbox.id INTO v_id;
            v_chain := ws__audit_insert(COALESCE(v_chain, ws__audit_lock()), COALESCE(v_op ->> 'actor', 'engine'), 'outbox.' || (v_op ->> 'kind'),
                                    format('rollout/%s/tenant/%s', v_rollout, v_slug),
                                    jsonb_build_object('outbox', v_id, 'key', v_key, 'epoch', p_epoch));
            v_res := jsonb_build_object('id', v_id, 'key', v_key);

        ELSIF v_kind = 'outbox_done' THEN
            v_id := ws__op_id(v_op, 'id', v_n);
            IF v_op ->> 'state' IS DISTINCT FROM 'done' AND v_op ->> 'state' IS DISTINCT FROM 'failed' THEN
                PERFORM ws__fail('WSE04', format('invalid op %s: "state" must be done or failed', v_n));
            END IF;
            UPDATE outbox o SET state = v_op ->> 'state', result = v_op -> 'result', done_at = now()
             WHERE o.id = v_id AND o.state = 'pending'
            RETURNING o.idempotency_key, o.rollout_id INTO v_key, v_rollout;
            IF NOT FOUND THEN
                SELECT o.state INTO v_actual FROM outbox o WHERE o.id = v_id;
                PERFORM ws__conflict('outbox', v_id, 'pending', v_actual, v_n);
            END IF;
            v_chain := ws__audit_insert(COALESCE(v_chain, ws__audit_lock()), COALESCE(v_op ->> 'actor', 'engine'), 'outbox.' || (v_op ->> 'state'),
                                    format('rollout/%s/outbox/%s', v_rollout, v_id),
                                    jsonb_strip_nulls(jsonb_build_object('key', v_key, 'result', v_op -> 'result', 'epoch', p_epoch)));
            v_res := jsonb_build_object('id', v_id);

        ELSIF v_kind = 'gate' THEN
            v_rollout := ws__op_id(v_op, 'rollout', v_n);
            v_wave := ws__op_id(v_op, 'wave', v_n, true);
            v_dep := ws__op_id(v_op, 'deployment', v_n, true);
            INSERT INTO gate_results (rollout_id, wave_id, deployment_id, gate, result, evidence, at)
            VALUES (v_rollout, v_wave, v_dep, ws__op_text(v_op, 'gate', v_n), ws__op_text(v_op, 'result', v_n),
                    COALESCE(v_op -> 'evidence', '{}'), COALESCE(ws__op_time(v_op -> 'at', 'at', v_n), now()))
            RETURNING gate_results.id INTO v_id;
            v_res := jsonb_build_object('id', v_id);

        ELSIF v_kind = 'audit' THEN
            v_chain := ws__audit_insert(COALESCE(v_chain, ws__audit_lock()), ws__op_text(v_op, 'actor', v_n),
                                        ws__op_text(v_op, 'action', v_n), ws__op_text(v_op, 'object', v_n),
                                        COALESCE(v_op -> 'details', '{}'));
            v_id := currval('audit_log_id_seq');
            v_res := jsonb_build_object('id', v_id);

        ELSIF v_kind = 'event' THEN
            INSERT INTO events (rollout_id, tenant, kind, payload, at)
            VALUES (ws__op_id(v_op, 'rollout', v_n, true), v_op ->> 'tenant', ws__op_text(v_op, 'kind', v_n),
                    COALESCE(v_op -> 'payload', '{}'), COALESCE(ws__op_time(v_op -> 'at', 'at', v_n), now()))
            RETURNING events.id INTO v_id;
            v_events := true;
            v_res := jsonb_build_object('id', v_id);

        ELSE
            PERFORM ws__fail('WSE04', format('invalid op %s: unknown "op" %s (expected rollout, wave, deployment, check, outbox, outbox_done, gate, audit or event)',
                                             v_n, COALESCE(v_op -> 'op', 'null'::jsonb)));
        END IF;
        v_out := array_append(v_out, v_res);
    END LOOP;
    EXCEPTION WHEN OTHERS THEN
        IF SQLSTATE LIKE 'WSE%' THEN
            RAISE;
        END IF;
        GET STACKED DIAGNOSTICS v_err_detail = PG_EXCEPTION_DETAIL, v_err_constraint = CONSTRAINT_NAME;
        RAISE EXCEPTION USING ERRCODE = SQLSTATE,
            MESSAGE = format('op %s (%s): %s', v_n, COALESCE(v_kind, '?'), SQLERRM),
            DETAIL = COALESCE(v_err_detail, ''), CONSTRAINT = COALESCE(v_err_constraint, '');
    END;

    IF v_events THEN
        PERFORM pg_notify('ws_events', '');
    END IF;
    RETURN to_jsonb(v_out);
END
$$;

-- ---- person actions (no epoch: any process serving the API) ----------------

-- start | pause | resume | abort a rollout.  Guarded by the state the row is
-- in (locked FOR UPDATE, so the leader's "check" ops and this serialise),
-- audited, announced as an event, and the leader is woken with
-- NOTIFY ws_engine '<rollout id>'.  Result: {"id", "from", "to"}.
CREATE FUNCTION ws_rollout_command(p_rollout bigint, p_action text, p_actor text, p_reason text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_from  text;
    v_to    text;
    v_event text;
BEGIN
    v_event := CASE p_action WHEN 'start' THEN 'approve' WHEN 'pause' THEN 'pause'
                             WHEN 'resume' THEN 'resume' WHEN 'abort' THEN 'abort' END;
    IF v_event IS NULL THEN
        PERFORM ws__fail('WSE04', format('unknown rollout action "%s" (expected start, pause, resume or abort)', p_action));
    END IF;
    IF p_actor IS NULL OR p_actor = '' THEN
        PERFORM ws__fail('WSE04', 'a rollout action needs an actor');
    END IF;
    SELECT r.state INTO v_from FROM rollouts r WHERE r.id = p_rollout FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM ws__fail('WSE05', format('rollout %s does not exist', p_rollout));
    END IF;
    SELECT t.to_state INTO v_to FROM ws_state_transitions t
     WHERE t.object = 'rollout' AND t.from_state = v_from AND t.event = v_event;
    IF NOT FOUND THEN
        PERFORM ws__fail('WSE02', format('state conflict: rollout %s is %s and cannot be %s', p_rollout, v_from,
            CASE p_action WHEN 'start' THEN 'started' WHEN 'pause' THEN 'paused'
                          WHEN 'resume' THEN 'resumed' ELSE 'aborted' END));
    END IF;
    UPDATE rollouts r SET state = v_to, state_reason = p_reason, updated_at = now() WHERE r.id = p_rollout;
    PERFORM ws_audit_append(p_actor, 'rollout.' || p_action, format('rollout/%s', p_rollout),
                            jsonb_strip_nulls(jsonb_build_object('from', v_from, 'to', v_to, 'reason', p_reason)));
    INSERT INTO events (rollout_id, kind, payload)
    VALUES (p_rollout, 'rollout.state', jsonb_strip_nulls(jsonb_build_object(
        'object', 'rollout', 'id', p_rollout, 'rollout', p_rollout, 'from', v_from, 'to', v_to,
        'event', v_event, 'reason', p_reason, 'actor', p_actor)));
    PERFORM pg_notify('ws_events', '');
    PERFORM pg_notify('ws_engine', p_rollout::text);
    RETURN jsonb_build_object('id', p_rollout, 'from', v_from, 'to', v_to);
END
$$;

-- An approver's decision on a pending wave (wave given by its index).  The
-- role's eligibility under the policy is the caller's check; separation of
-- duties and one decision per person and wave are enforced here.
-- Result: {"id", "approvals", "rejections"} (counts for the wave so far).
CREATE FUNCTION ws_wave_decide(p_rollout bigint, p_wave integer, p_actor text, p_role text,
                               p_decision text, p_comment text DEFAULT '')
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_ro    rollouts%ROWTYPE;
    v_wave  waves%ROWTYPE;
    v_id    bigint;
BEGIN
    IF p_decision IS DISTINCT FROM 'approve' AND p_decision IS DISTINCT FROM 'reject' THEN
        PERFORM ws__fail('WSE04', format('decision must be approve or reject, not "%s"', p_decision));
    END IF;
    SELECT * INTO v_ro FROM rollouts r WHERE r.id = p_rollout FOR SHARE;
    IF NOT FOUND THEN
        PERFORM ws__fail('WSE05', format('rollout %s does not exist', p_rollout));
    END IF;
    IF v_ro.created_by = p_actor THEN
        PERFORM ws__fail('WSE06', format('separation of duties: %s created rollout %s and cannot approve or reject it',
                                         p_actor, p_rollout));
    END IF;
    IF v_ro.state IN ('completed', 'aborted', 'rolled_back') THEN
        PERFORM ws__fail('WSE02', format('state conflict: rollout %s is %s', p_rollout, v_ro.state));
    END IF;
    SELECT * INTO v_wave FROM waves w WHERE w.rollout_id = p_rollout AND w.idx = p_wave FOR SHARE;
    IF NOT FOUND THEN
        PERFORM ws__fail('WSE05', format('rollout %s has no wave %s', p_rollout, p_wave));
    END IF;
    IF v_wave.state <> 'pending' THEN
        PERFORM ws__fail('WSE02', format('state conflict: wave %s of rollout %s is %s; decisions are taken while it is pending',
                                         p_wave, p_rollout, v_wave.state));
    END IF;
    INSERT INTO approvals (rollout_id, wave_id, actor, role, decision, comment)
    VALUES (p_rollout, v_wave.id, p_actor, p_role, p_decision, COALESCE(p_comment, ''))
    ON CONFLICT (wave_id, actor) DO NOTHING
    RETURNING approvals.id INTO v_id;
    IF v_id IS NULL THEN
        PERFORM ws__fail('WSE02', format('state conflict: %s has already decided on wave %s of rollout %s',
                                         p_actor, p_wave, p_rollout));
    END IF;
    PERFORM ws_audit_append(p_actor, 'wave.' || p_decision, format('rollout/%s/wave/%s', p_rollout, p_wave),
                            jsonb_build_object('role', p_role, 'comment', COALESCE(p_comment, '')));
    INSERT INTO events (rollout_id, kind, payload)
    VALUES (p_rollout, 'wave.decision', jsonb_build_object('rollout', p_rollout, 'wave', p_wave,
            'actor', p_actor, 'role', p_role, 'decision', p_decision));
    PERFORM pg_notify('ws_events', '');
    PERFORM pg_notify('ws_engine', p_rollout::text);
    RETURN jsonb_build_object('id', v_id,
        'approvals', (SELECT count(*) FROM approvals a WHERE a.wave_id = v_wave.id AND a.decision = 'approve'),
        'rejections', (SELECT count(*) FROM approvals a WHERE a.wave_id = v_wave.id AND a.decision = 'reject'));
END
$$;
