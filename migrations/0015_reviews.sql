-- 0015: break-glass and its after-the-fact review (issue 6; spec README:
-- "security teams push urgent patches through an expedited policy, with
-- break-glass over soft blackouts, justification and after-the-fact review").
--
-- A rollout whose policy has `break_glass: true` (soft blackouts do not
-- hold it back; hard ones always do) is created only with a justification
-- and a change reference.  Both are kept on the rollout, in its audit row
-- and in its evidence bundle, and the creation opens a review that someone
-- other than the rollout's creator must close, with a comment, before its
-- due time (the service's review_window, default 24h, from creation).
-- Overdue reviews are listed and counted in /metrics.  Times are the
-- database clock: a review is a human process, not part of the schedule.

ALTER TABLE rollouts ADD COLUMN break_glass jsonb
    CHECK (break_glass IS NULL OR (jsonb_typeof(break_glass -> 'justification') = 'string'
                                   AND jsonb_typeof(break_glass -> 'change_ref') = 'string'));

CREATE TABLE reviews (
    id          bigserial PRIMARY KEY,
    rollout_id  bigint NOT NULL UNIQUE REFERENCES rollouts (id),
    opened_at   timestamptz NOT NULL DEFAULT now(),
    due_at      timestamptz NOT NULL,
    closed_at   timestamptz,
    closed_by   text,
    closed_role text,
    comment     text,
    CHECK (due_at > opened_at),
    CHECK ((closed_at IS NULL) = (closed_by IS NULL) AND (closed_at IS NULL) = (comment IS NULL))
);
CREATE INDEX reviews_open_idx ON reviews (due_at) WHERE closed_at IS NULL;

-- A review row changes once (closing); never removed.
CREATE FUNCTION ws_review_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR OLD.closed_at IS NOT NULL OR NEW.id <> OLD.id OR NEW.rollout_id <> OLD.rollout_id
       OR NEW.opened_at <> OLD.opened_at OR NEW.due_at <> OLD.due_at THEN
        RAISE EXCEPTION USING ERRCODE = 'WSE07', MESSAGE = 'a review is closed once and never removed';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER reviews_close_once BEFORE UPDATE OR DELETE ON reviews
    FOR EACH ROW EXECUTE FUNCTION ws_review_guard();

CREATE FUNCTION ws_review_doc(v reviews) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', v.id, 'rollout', v.rollout_id, 'release', rel.version, 'release_kind', rel.kind,
        'rollout_state', r.state, 'created_by', r.created_by,
        'justification', r.break_glass ->> 'justification', 'change_ref', r.break_glass ->> 'change_ref',
        'opened_at', ws__rfc3339(v.opened_at), 'due_at', ws__rfc3339(v.due_at),
        'state', CASE WHEN v.closed_at IS NOT NULL THEN 'closed'
                      WHEN now() > v.due_at THEN 'overdue' ELSE 'open' END,
        'overdue', v.closed_at IS NULL AND now() > v.due_at,
        'closed_at', ws__rfc3339(v.closed_at), 'closed_by', v.closed_by, 'closed_role', v.closed_role,
        'comment', v.comment)
      FROM rollouts r JOIN releases rel ON rel.id = r.release_id
     WHERE r.id = v.rollout_id
$$;

-- ws_rollout_create (0004) for a break-glass policy, in the same
-- transaction: the justification and change reference on the rollout, the
-- review opened, both audited.  Result: ws_rollout_create's, plus
-- "break_glass" and "review".
CREATE FUNCTION ws_rollout_create_break_glass(p_release text, p_kind text, p_policy_id bigint, p_policy_sha text,
                                              p_plan text, p_settings jsonb, p_generation bigint, p_actor text,
                                              p_start timestamptz, p_justification text, p_change_ref text,
                                              p_review_window_s bigint)
RETURNS json
LANGUAGE plpgsql AS $$
DECLARE
    v_out    jsonb;
    v_id     bigint;
    v_review reviews%ROWTYPE;
    v_bg     jsonb;
BEGIN
    IF p_justification IS NULL OR length(btrim(p_justification)) < 10 THEN
        PERFORM ws__fail('WSE04', 'break_glass.justification: say why soft blackouts must be overridden (at least 10 characters)');
    END IF;
    IF p_change_ref IS NULL OR btrim(p_change_ref) = '' THEN
        PERFORM ws__fail('WSE04', 'break_glass.change_ref: the change reference (ticket) is required');
    END IF;
    IF p_review_window_s IS NULL OR p_review_window_s <= 0 THEN
        PERFORM ws__fail('WSE04', 'review window must be positive');
    END IF;
    v_out := ws_rollout_create(p_release, p_kind, p_policy_id, p_policy_sha, p_plan, p_settings, p_generation,
                               p_actor, p_start)::jsonb;
    v_id := (v_out ->> 'id')::bigint;
    v_bg := jsonb_build_object('justification', p_justification, 'change_ref', p_change_ref);
    UPDATE rollouts r SET break_glass = v_bg WHERE r.id = v_id;
    INSERT INTO reviews (rollout_id, due_at) VALUES (v_id, now() + make_interval(secs => p_review_window_s))
    RETURNING * INTO v_review;
    PERFORM ws_audit_append(p_actor, 'rollout.break_glass', format('rollout/%s', v_id),
        v_bg || jsonb_build_object('review', v_review.id, 'review_due', ws__rfc3339(v_review.due_at)));
    INSERT INTO events (rollout_id, kind, payload)
    VALUES (v_id, 'review.opened', jsonb_build_object('object', 'review', 'id', v_review.id, 'rollout', v_id,
            'due_at', ws__rfc3339(v_review.due_at), 'actor', p_actor, 'change_ref', p_change_ref));
    PERFORM pg_notify('ws_events', '');
    RETURN (v_out || jsonb_build_object('break_glass', v_bg, 'review', ws_review_doc(v_review)))::json;
END
$$;

-- Closes review p_id.  The rollout's creator never closes its own review
-- (separation of duties, as for approvals); a comment is required.
CREATE FUNCTION ws_review_close(p_id bigint, p_actor text, p_role text, p_comment text)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v       reviews%ROWTYPE;
    v_creator text;
BEGIN
    SELECT * INTO v FROM reviews x WHERE x.id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM ws__fail('WSE05', format('review %s does not exist', p_id));
    END IF;
    SELECT r.created_by INTO v_creator FROM rollouts r WHERE r.id = v.rollout_id;
    IF v_creator = p_actor THEN
        PERFORM ws__fail('WSE06', format('separation of duties: %s created rollout %s and cannot close its review',
                                         p_actor, v.rollout_id));
    END IF;
    IF v.closed_at IS NOT NULL THEN
        PERFORM ws__fail('WSE02', format('state conflict: review %s was closed by %s at %s', p_id, v.closed_by,
                                         ws__rfc3339(v.closed_at)));
    END IF;
    IF p_comment IS NULL OR btrim(p_comment) = '' THEN
        PERFORM ws__fail('WSE04', 'comment: closing a review needs a comment (what was checked)');
    END IF;
    UPDATE reviews x SET closed_at = now(), closed_by = p_actor, closed_role = p_role, comment = p_comment
     WHERE x.id = p_id RETURNING * INTO v;
    PERFORM ws_audit_append(p_actor, 'review.close', format('rollout/%s/review/%s', v.rollout_id, p_id),
        jsonb_build_object('role', p_role, 'comment', p_comment, 'due_at', ws__rfc3339(v.due_at),
                           'late', v.closed_at > v.due_at));
    INSERT INTO events (rollout_id, kind, payload)
    VALUES (v.rollout_id, 'review.closed', jsonb_build_object('object', 'review', 'id', p_id,
            'rollout', v.rollout_id, 'actor', p_actor, 'late', v.closed_at > v.due_at));
    PERFORM pg_notify('ws_events', '');
    RETURN ws_review_doc(v);
END
$$;

-- {"reviews": [...]} oldest first; p_state: open (includes overdue),
-- overdue, closed, or NULL for all.
CREATE FUNCTION ws_review_list(p_state text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('reviews', COALESCE(jsonb_agg(ws_review_doc(v) ORDER BY v.id), '[]'))
      FROM reviews v
     WHERE p_state IS NULL
        OR (p_state = 'open' AND v.closed_at IS NULL)
        OR (p_state = 'overdue' AND v.closed_at IS NULL AND now() > v.due_at)
        OR (p_state = 'closed' AND v.closed_at IS NOT NULL)
$$;

-- /metrics (0014) counts reviews by state.
ALTER FUNCTION ws_metrics_snapshot() RENAME TO ws__metrics_snapshot_0014;
CREATE FUNCTION ws_metrics_snapshot() RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT (ws__metrics_snapshot_0014()::jsonb || jsonb_build_object('reviews', jsonb_build_object(
        'open', (SELECT count(*) FROM reviews WHERE closed_at IS NULL AND now() <= due_at),
        'overdue', (SELECT count(*) FROM reviews WHERE closed_at IS NULL AND now() > due_at),
        'closed', (SELECT count(*) FROM reviews WHERE closed_at IS NOT NULL))))::json
$$;

-- The evidence bundle (0010, 0013) carries the break-glass record and its review.
ALTER FUNCTION ws_rollout_evidence(bigint) RENAME TO ws__rollout_evidence_0013;
CREATE FUNCTION ws_rollout_evidence(p_id bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT e || jsonb_build_object(
                    'break_glass', (SELECT r.break_glass FROM rollouts r WHERE r.id = p_id),
                    'review', (SELECT ws_review_doc(v) FROM reviews v WHERE v.rollout_id = p_id))
      FROM ws__rollout_evidence_0013(p_id) e
     WHERE e IS NOT NULL
$$;
