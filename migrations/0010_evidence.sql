-- 0010: the evidence bundle of one rollout (api.md, GET
-- /v1/rollouts/{id}/evidence): everything an auditor needs to see what was
-- deployed, under which policy and plan, who approved what, what every gate
-- saw and what the executors answered -- with the audit entries that
-- recorded it, so `wavectl evidence verify` can check the file offline.
--
-- One function, declared STABLE: every query in it reads the snapshot of the
-- statement that calls it, so the bundle is one consistent state even while
-- the engine writes.

-- The audit part: the rollout's entries (object rollout/ID and everything
-- under it) in id order, whole, and between the first and the last of them
-- every other entry as a link only ({"id", "prev_hash", "hash"}), so that the
-- entries form an unbroken stretch of the chain: an entry removed from the
-- file, or two swapped, breaks a link the verifier follows.  The other
-- entries' fields stay out (they may be about other tenants); their hashes
-- are checked by the service's walk of that stretch of the chain (and its
-- link to the entry before), reported as "check" with the log's head, to
-- compare with a later check (a removed tail is only visible that way).
-- The stretch, not the whole log: a bundle stays cheap in a large log.
CREATE FUNCTION ws__evidence_audit(p_id bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_obj text := 'rollout/' || p_id;
    v_lo  bigint;
    v_hi  bigint;
BEGIN
    SELECT min(a.id), max(a.id) INTO v_lo, v_hi FROM audit_log a WHERE ws__audit_under(a.object, v_obj);
    RETURN jsonb_build_object(
        'entries', COALESCE((
            SELECT jsonb_agg(CASE WHEN ws__audit_under(a.object, v_obj) THEN ws_audit_entry_doc(a)
                                  ELSE jsonb_build_object('id', a.id, 'prev_hash', a.prev_hash, 'hash', a.hash) END
                             ORDER BY a.id)
              FROM audit_log a WHERE a.id BETWEEN v_lo AND v_hi), '[]'),
        'check', ws_audit_check(NULL, NULL, COALESCE(v_lo, 0), COALESCE(v_hi, 0)));
END
$$;

-- The bundle, or NULL when the rollout does not exist.  Times are RFC 3339
-- in UTC (audit entries with microseconds: their hashes cover them).
CREATE FUNCTION ws_rollout_evidence(p_id bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'format', 'wavesched-evidence/1',
        'generated_at', ws__audit_at(now()),
        'rollout', jsonb_build_object(
            'id', r.id, 'state', r.state, 'state_reason', r.state_reason, 'created_by', r.created_by,
            'created_at', ws__rfc3339(r.created_at), 'start', ws__rfc3339(r.start_at),
            'plan_version', r.plan_version, 'policy_sha256', r.policy_sha256),
        'release', jsonb_build_object(
            'version', rel.version, 'digest', rel.digest, 'kind', rel.kind, 'notes', rel.notes,
            'created_by', rel.created_by, 'created_at', ws__rfc3339(rel.created_at)),
        'policy', jsonb_build_object(
            'id', p.id, 'name', p.name, 'version', p.version, 'sha256', p.sha256, 'text', p.body,
            'description', p.description, 'created_by', p.created_by, 'created_at', ws__rfc3339(p.created_at)),
        'plans', COALESCE((
            SELECT jsonb_agg(jsonb_build_object(
                       'version', pl.version, 'sha256', pl.sha256, 'plan', pl.plan, 'diff', pl.diff,
                       'reason', pl.reason, 'created_by', pl.created_by, 'created_at', ws__rfc3339(pl.created_at))
                   ORDER BY pl.version)
              FROM rollout_plans pl WHERE pl.rollout_id = r.id), '[]'),
        'waves', COALESCE((
            SELECT jsonb_agg(jsonb_build_object(
                       'index', w.idx, 'name', w.name, 'state', w.state, 'state_reason', w.state_reason,
                       'start', ws__rfc3339(w.start_at), 'end', ws__rfc3339(w.end_at),
                       'started_at', ws__rfc3339(w.started_at), 'soak_until', ws__rfc3339(w.soak_until),
                       'ended_at', ws__rfc3339(w.ended_at), 'settings', w.settings,
                       'approvals', COALESCE((
                           SELECT jsonb_agg(jsonb_build_object('id', a.id, 'actor', a.actor, 'role', a.role,
                                                               'decision', a.decision, 'comment', a.comment,
                                                               'at', ws__rfc3339(a.at)) ORDER BY a.id)
                             FROM approvals a WHERE a.wave_id = w.id), '[]'))
                   ORDER BY w.idx)
              FROM waves w WHERE w.rollout_id = r.id), '[]'),
        'deployments', COALESCE((
            SELECT jsonb_agg(jsonb_build_object(
                       'id', d.id, 'tenant', d.slug, 'wave', w.idx, 'state', d.state, 'state_reason', d.state_reason,
                       'window_start', ws__rfc3339(d.window_start), 'window_end', ws__rfc3339(d.window_end),
                       'attempt', d.attempt, 'reasons', d.reasons, 'moves', d.moves,
                       'previous_version', d.previous_version, 'target_version', d.target_version,
                       'started_at', ws__rfc3339(d.started_at), 'ended_at', ws__rfc3339(d.ended_at))
                   ORDER BY w.idx, d.window_start, d.id)
              FROM deployments d JOIN waves w ON w.id = d.wave_id WHERE d.rollout_id = r.id), '[]'),
        'gate_results', COALESCE((
            SELECT jsonb_agg(jsonb_build_object(
                       'id', g.id, 'wave', w.idx, 'tenant', d.slug, 'gate', g.gate, 'result', g.result,
                       'evidence', g.evidence, 'at', ws__rfc3339(g.at), 'recorded_at', ws__rfc3339(g.recorded_at))
                   ORDER BY g.id)
              FROM gate_results g
              LEFT JOIN waves w ON w.id = g.wave_id
              LEFT JOIN deployments d ON d.id = g.deployment_id
             WHERE g.rollout_id = r.id), '[]'),
        'executor_calls', COALESCE((
            SELECT jsonb_agg(jsonb_build_object(
                       'id', o.id, 'tenant', d.slug, 'kind', o.kind, 'attempt', o.attempt,
                       'idempotency_key', o.idempotency_key, 'request', o.request, 'state', o.state,
                       'result', o.result, 'epoch', o.epoch, 'created_at', ws__rfc3339(o.created_at),
                       'done_at', ws__rfc3339(o.done_at))
                   ORDER BY o.id)
              FROM outbox o JOIN deployments d ON d.id = o.deployment_id
             WHERE o.rollout_id = r.id), '[]'),
        'audit', ws__evidence_audit(r.id))
      FROM rollouts r
      JOIN releases rel ON rel.id = r.release_id
      JOIN policies p ON p.id = r.policy_id
     WHERE r.id = p_id
$$;
