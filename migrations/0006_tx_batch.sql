-- 0006: ws_engine_tx appends its audit rows at the end of the call.
--
-- 0003's ws_engine_tx took the audit chain's lock at a call's first
-- auditable op and kept it until commit, so the rest of every call (the
-- updates, the events, the outbox rows) ran one call at a time across all
-- connections: at 4 connections the engine committed fewer than half the
-- transactions pgbench -N does on the same server.  Here the call collects
-- its audit rows while it applies the ops and appends them after the last
-- op: the lock is the last one a call takes, and what runs under it is one
-- read of the newest hash, the hashes of this call's rows and one INSERT.
--
-- Everything a caller sees is 0003's: the op vocabulary, the results (the
-- "audit" op's id is its row's id), the errors with their SQLSTATEs and
-- messages, the events, and the audit rows with their hash definition
-- (ws_audit_hash), so ws_audit_verify() walks chains that mix rows written
-- before and after this migration.  What differs: the rows of one call share
-- one "at" (read under the lock, so times still never go back along the
-- chain) and their ids are drawn together under the lock, in op order.
--
-- Cheaper per op as well: the transition table is read once per call rather
-- than once per op, and the helpers 0003 calls for every field (ws__op_id,
-- ws__op_text, ws__op_keys) are called only when a field is wrong, to raise
-- their error; a valid field is taken inline.  A transition's event is
-- queued and inserted with the others of the call in one statement, flushed
-- before any "event" op so event ids keep the order of the ops.

CREATE OR REPLACE FUNCTION ws_engine_tx(p_epoch bigint, p_ops jsonb)
RETURNS jsonb
LANGUAGE plpgsql
-- Every statement here finds its rows by key, and PL/pgSQL keeps a plan for
-- the connection's lifetime: one made while a table was still small (a fresh
-- database, the outbox at a leader's start) would scan the whole table for
-- every op ever after -- measured: each outbox_done op scanned the outbox and
-- each call the audit log.  So the plans use the indexes whatever the size.
SET enable_seqscan = off
AS $$
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
    v_trans   jsonb;             -- {object: {from: [to, ...]}}, read at the first transition
    v_audit   boolean;           -- the op appends the audit row in v_a*
    v_aactor  text;
    v_aaction text;
    v_aobject text;
    -- the call's audit rows, in op order, appended at the end
    v_na      integer := 0;
    a_actor   text[] := '{}';
    a_action  text[] := '{}';
    a_object  text[] := '{}';
    a_details jsonb[] := '{}';
    a_op      integer[] := '{}'; -- the "audit" op a row answers, else 0
    a_prev    text[] := '{}';
    a_hash    text[] := '{}';
    v_ids     bigint[];
    v_at      timestamptz;
    v_chain   text;
    -- transition events not inserted yet
    v_ne      integer := 0;
    e_rollout bigint[] := '{}';
    e_tenant  text[] := '{}';
    e_kind    text[] := '{}';
    e_payload jsonb[] := '{}';
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
        v_audit := false;

        IF v_kind IN ('rollout', 'wave', 'deployment') THEN
            -- the helpers only to raise their error for a field that is wrong
            IF jsonb_typeof(v_op -> 'id') = 'number' AND (v_op ->> 'id') ~ '^[0-9]{1,18}$' THEN
                v_id := (v_op ->> 'id')::bigint;
            ELSE
                v_id := ws__op_id(v_op, 'id', v_n);
            END IF;
            IF jsonb_typeof(v_op -> 'from') = 'string' THEN
                v_from := v_op ->> 'from';
            ELSE
                v_from := ws__op_text(v_op, 'from', v_n);
            END IF;
            IF jsonb_typeof(v_op -> 'to') = 'string' THEN
                v_to := v_op ->> 'to';
            ELSE
                v_to := ws__op_text(v_op, 'to', v_n);
            END IF;
            IF v_trans IS NULL THEN
                SELECT jsonb_object_agg(o.object, o.froms) INTO v_trans
                  FROM (SELECT f.object, jsonb_object_agg(f.from_state, f.tos) AS froms
                          FROM (SELECT t.object, t.from_state, jsonb_agg(t.to_state) AS tos
                                  FROM ws_state_transitions t GROUP BY t.object, t.from_state) f
                         GROUP BY f.object) o;
            END IF;
            IF NOT COALESCE(v_trans -> v_kind -> v_from ? v_to, false) THEN
                PERFORM ws__fail('WSE03', format('transition not allowed: %s from %s to %s (op %s)',
                                                 v_kind, v_from, v_to, v_n));
            END IF;
            v_actor := COALESCE(v_op ->> 'actor', 'engine');

            IF v_kind = 'rollout' THEN
                IF v_set IS NOT NULL AND (jsonb_typeof(v_set) <> 'object'
                                          OR v_set - ARRAY['start_at', 'plan_version'] <> '{}') THEN
                    PERFORM ws__op_keys(v_set, ARRAY['start_at', 'plan_version'], '"set"', v_n);
                END IF;
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
                IF v_set IS NOT NULL AND (jsonb_typeof(v_set) <> 'object'
                                          OR v_set - ARRAY['started_at', 'soak_until', 'ended_at', 'settings'] <> '{}') THEN
                    PERFORM ws__op_keys(v_set, ARRAY['started_at', 'soak_until', 'ended_at', 'settings'], '"set"', v_n);
                END IF;
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
                IF v_set IS NOT NULL AND (jsonb_typeof(v_set) <> 'object'
                                          OR v_set - ARRAY['window_start', 'window_end', 'attempt', 'previous_version',
                                                           'started_at', 'ended_at'] <> '{}') THEN
                    PERFORM ws__op_keys(v_set, ARRAY['window_start', 'window_end', 'attempt', 'previous_version',
                                                     'started_at', 'ended_at'], '"set"', v_n);
                END IF;
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
            v_audit := true;
            v_aactor := v_actor;
            v_aaction := v_kind || '.' || v_to;
            v_aobject := v_object;
            v_ne := v_ne + 1;
            e_rollout[v_ne] := v_rollout;
            e_tenant[v_ne] := v_slug;
            e_kind[v_ne] := v_kind || '.state';
            e_payload[v_ne] := v_details - 'epoch' || jsonb_strip_nulls(jsonb_build_object(
                                   'object', v_kind, 'rollout', v_rollout, 'wave', v_idx, 'tenant', v_slug));
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
            v_audit := true;
            v_aactor := COALESCE(v_op ->> 'actor', 'engine');
            v_aaction := 'outbox.' || (v_op ->> 'kind');
            v_aobject := format('rollout/%s/tenant/%s', v_rollout, v_slug);
            v_details := jsonb_build_object('outbox', v_id, 'key', v_key, 'epoch', p_epoch);
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
            v_audit := true;
            v_aactor := COALESCE(v_op ->> 'actor', 'engine');
            v_aaction := 'outbox.' || (v_op ->> 'state');
            v_aobject := format('rollout/%s/outbox/%s', v_rollout, v_id);
            v_details := jsonb_strip_nulls(jsonb_build_object('key', v_key, 'result', v_op -> 'result', 'epoch', p_epoch));
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
            v_audit := true;
            v_aactor := ws__op_text(v_op, 'actor', v_n);
            v_aaction := ws__op_text(v_op, 'action', v_n);
            v_aobject := ws__op_text(v_op, 'object', v_n);
            v_details := COALESCE(v_op -> 'details', '{}');
            v_res := NULL;   -- the row's id, known once the rows are appended

        ELSIF v_kind = 'event' THEN
            -- the queued transition events first, so that ids follow the ops
            IF v_ne > 0 THEN
                INSERT INTO events (rollout_id, tenant, kind, payload)
                SELECT * FROM unnest(e_rollout, e_tenant, e_kind, e_payload);
                v_ne := 0;
                e_rollout := '{}';
                e_tenant := '{}';
                e_kind := '{}';
                e_payload := '{}';
            END IF;
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

        IF v_audit THEN
            -- 0003 refused a snapshot older than READ COMMITTED at the op
            -- that took the audit lock; the same error at the same op.
            IF v_na = 0 AND current_setting('transaction_isolation') <> 'read committed' THEN
                RAISE EXCEPTION 'ws_audit_append needs READ COMMITTED isolation, not %',
                    current_setting('transaction_isolation');
            END IF;
            v_na := v_na + 1;
            a_actor[v_na] := v_aactor;
            a_action[v_na] := v_aaction;
            a_object[v_na] := v_aobject;
            a_details[v_na] := v_details;
            a_op[v_na] := CASE WHEN v_kind = 'audit' THEN v_n ELSE 0 END;
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

    IF v_ne > 0 THEN
        INSERT INTO events (rollout_id, tenant, kind, payload)
        SELECT * FROM unnest(e_rollout, e_tenant, e_kind, e_payload);
    END IF;

    -- The audit rows, last: from taking the lock to the commit that frees
    -- it, a call only reads the newest hash, hashes its own rows and inserts
    -- them.  Ids are drawn under the lock, in op order, like 0003's.
    IF v_na > 0 THEN
        -- ws__audit_lock's steps (the isolation level was checked at the
        -- first auditable op), here so that the read of the newest hash is
        -- planned under this function's enable_seqscan = off.
        PERFORM pg_advisory_xact_lock(2003, 1);   -- (migration 0003, audit chain)
        SELECT a.hash INTO v_chain FROM audit_log a ORDER BY a.id DESC LIMIT 1;
        v_chain := COALESCE(v_chain, repeat('0', 64));
        v_at := clock_timestamp();
        v_ids := ARRAY(SELECT nextval('audit_log_id_seq') FROM generate_series(1, v_na) ORDER BY 1);
        -- ws_audit_hash's expression, written out: that function is not
        -- inlined (declared IMMUTABLE over STABLE functions), and calling
        -- it per row costs several times the hash itself, under the lock.
        -- ws_audit_verify checks these rows with ws_audit_hash.
        FOR i IN 1 .. v_na LOOP
            a_prev[i] := v_chain;
            v_chain := encode(sha256(convert_to(jsonb_build_array(
                v_chain, v_ids[i], (extract(epoch FROM v_at) * 1000000)::bigint,
                a_actor[i], a_action[i], a_object[i], a_details[i])::text, 'UTF8')), 'hex');
            a_hash[i] := v_chain;
        END LOOP;
        INSERT INTO audit_log (id, at, actor, action, object, details, prev_hash, hash)
        SELECT u.id, v_at, u.actor, u.action, u.object, u.details, u.prev_hash, u.hash
          FROM unnest(v_ids, a_actor, a_action, a_object, a_details, a_prev, a_hash)
               AS u (id, actor, action, object, details, prev_hash, hash);
        FOR i IN 1 .. v_na LOOP
            IF a_op[i] > 0 THEN
                v_out[a_op[i]] := jsonb_build_object('id', v_ids[i]);
            END IF;
        END LOOP;
    END IF;

    IF v_events THEN
        PERFORM pg_notify('ws_events', '');
    END IF;
    RETURN to_jsonb(v_out);
END
$$;
