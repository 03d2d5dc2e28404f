-- 0021: release attestations (issue 7): named, digest-bound evidence that a
-- release was tested, scanned, signed ... and the gate a policy builds on it
-- (`gates: {attestations: [tests, image-scan]}`, in waves.settings since
-- 0020).
--
-- An attestation is appended, never changed: a new run of the same check
-- records another row of the same name, and the latest row of a name is
-- the one that counts.  Each row is bound to the artifact digest of its
-- release: a scan of another image is refused, not stored.
--
-- The document's sha256 is taken over the text PostgreSQL prints for it as
-- jsonb (keys shortest first then bytewise, ", " and ": " between items,
-- numbers as written).  That is the text the evidence bundle carries, so
-- `wavectl evidence verify` recomputes it from the bundle exactly as it
-- recomputes the audit entries' hashes (audit_chain.c), without trusting a
-- second serialiser to agree with this one.

CREATE TABLE release_attestations (
    id           bigserial PRIMARY KEY,
    release_id   bigint NOT NULL REFERENCES releases (id),
    name         text NOT NULL CHECK (name ~ '^[a-z0-9-]{1,63}$'),
    result       text NOT NULL CHECK (result IN ('passed', 'failed')),
    digest       text NOT NULL CHECK (digest ~ '^sha256:[0-9a-f]{64}$'),
    document     jsonb NOT NULL CHECK (jsonb_typeof(document) = 'object'),
    sha256       text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    produced_by  text NOT NULL CHECK (length(produced_by) BETWEEN 1 AND 200),
    recorded_by  text NOT NULL CHECK (recorded_by <> ''),
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX release_attestations_latest_idx ON release_attestations (release_id, name, id);

-- Append-only as the audit log is (0003 triggers, 0007 privileges): the
-- triggers stop UPDATE, DELETE and TRUNCATE through SQL, and the owner --
-- the service's role -- loses those privileges so it cannot switch its own
-- triggers off by accident either.
CREATE TRIGGER release_attestations_append_only BEFORE UPDATE OR DELETE ON release_attestations
    FOR EACH ROW EXECUTE FUNCTION ws_refuse_change();
CREATE TRIGGER release_attestations_no_truncate BEFORE TRUNCATE ON release_attestations
    FOR EACH STATEMENT EXECUTE FUNCTION ws_refuse_change();
REVOKE UPDATE, DELETE, TRUNCATE ON release_attestations FROM PUBLIC;
DO $$
BEGIN
    EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON release_attestations FROM %I',
                   (SELECT pg_get_userbyid(c.relowner) FROM pg_class c
                     WHERE c.oid = 'release_attestations'::regclass));
END
$$;

-- The largest document kept (its jsonb text): enough for a test summary, an
-- in-toto statement or a scan report's findings; a full SBOM belongs in an
-- artifact store, with its digest in the document.
CREATE FUNCTION ws__attestation_document_max() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 65536 $$;

CREATE FUNCTION ws__attestation_doc(a release_attestations, p_version text, p_with_document boolean)
RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
               'id', a.id, 'release', p_version, 'name', a.name, 'result', a.result,
               'digest', a.digest, 'sha256', a.sha256, 'produced_by', a.produced_by,
               'recorded_by', a.recorded_by, 'at', ws__rfc3339(a.recorded_at))
           || CASE WHEN p_with_document THEN jsonb_build_object('document', a.document) ELSE '{}' END
$$;

-- The latest attestation of each name of a release, {name: summary}, among
-- those bound to the release's digest as it is now: a release corrected
-- before any rollout used it (0003's guard allows that) does not keep the
-- attestations of the artifact it named before.
CREATE FUNCTION ws__attestations_latest(p_release bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT COALESCE(jsonb_object_agg(x.name, jsonb_build_object(
               'result', x.result, 'id', x.id, 'sha256', x.sha256, 'produced_by', x.produced_by,
               'recorded_by', x.recorded_by, 'at', ws__rfc3339(x.recorded_at))), '{}')
      FROM (SELECT DISTINCT ON (a.name) a.*
              FROM release_attestations a
              JOIN releases r ON r.id = a.release_id AND r.digest = a.digest
             WHERE a.release_id = p_release
             ORDER BY a.name, a.id DESC) x
$$;

-- What a list of required names lacks: [{name, state: missing|failed, ...}]
-- in the order required, '[]' when every one has passed.
CREATE FUNCTION ws__attestations_lacking(p_release bigint, p_names jsonb) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH latest AS (SELECT ws__attestations_latest(p_release) AS l)
    SELECT COALESCE(jsonb_agg(CASE WHEN l -> n.name IS NULL
                                   THEN jsonb_build_object('name', n.name, 'state', 'missing')
                                   ELSE jsonb_build_object('name', n.name, 'state', 'failed') || (l -> n.name) END
                              ORDER BY n.ord), '[]')
      FROM latest,
           jsonb_array_elements_text(CASE WHEN jsonb_typeof(p_names) = 'array' THEN p_names ELSE '[]' END)
               WITH ORDINALITY AS n(name, ord)
     WHERE l -> n.name IS NULL OR l -> n.name ->> 'result' <> 'passed'
$$;

-- "image-scan failed (recorded T by X), tests missing"
CREATE FUNCTION ws__attestations_lacking_text(p_lacking jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT string_agg(CASE WHEN e ->> 'state' = 'missing' THEN (e ->> 'name') || ' missing'
                           ELSE format('%s failed (recorded %s by %s, produced by %s)', e ->> 'name',
                                       e ->> 'at', e ->> 'recorded_by', e ->> 'produced_by') END,
                      ', ' ORDER BY o)
      FROM jsonb_array_elements(p_lacking) WITH ORDINALITY AS x(e, o)
$$;

-- Records one attestation of release p_version.  The API has checked each
-- field and names them; the checks here are the second line, with the
-- same field names at the start of each message.  Result: the stored
-- attestation with its document.
CREATE FUNCTION ws_release_attest(p_version text, p_name text, p_result text, p_digest text,
                                  p_document jsonb, p_produced_by text, p_actor text)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_rel  releases%ROWTYPE;
    v_row  release_attestations%ROWTYPE;
    v_sha  text;
    v_ro   bigint;
BEGIN
    IF p_name IS NULL OR p_name !~ '^[a-z0-9-]{1,63}$' THEN
        PERFORM ws__fail('WSE04', format('name must be 1 to 63 characters of a-z 0-9 -, not %s',
                                         COALESCE(quote_literal(p_name), 'null')));
    END IF;
    IF p_result IS NULL OR p_result NOT IN ('passed', 'failed') THEN
        PERFORM ws__fail('WSE04', format('result must be passed or failed, not %s',
                                         COALESCE(quote_literal(p_result), 'null')));
    END IF;
    IF p_digest IS NULL OR p_digest !~ '^sha256:[0-9a-f]{64}$' THEN
        PERFORM ws__fail('WSE04', 'digest must be "sha256:" followed by 64 lowercase hex digits');
    END IF;
    IF jsonb_typeof(p_document) IS DISTINCT FROM 'object' THEN
        PERFORM ws__fail('WSE04', 'document must be a JSON object');
    END IF;
    IF octet_length(p_document::text) > ws__attestation_document_max() THEN
        PERFORM ws__fail('WSE04', format('document is %s bytes as stored; at most %s',
                                         octet_length(p_document::text), ws__attestation_document_max()),
                         jsonb_build_array(jsonb_build_object('field', 'document', 'message',
                             format('document is %s bytes as stored (its jsonb text); at most %s',
                                    octet_length(p_document::text), ws__attestation_document_max())))::text);
    END IF;
    IF p_produced_by IS NULL OR length(p_produced_by) NOT BETWEEN 1 AND 200 THEN
        PERFORM ws__fail('WSE04', 'produced_by must be 1 to 200 characters');
    END IF;
    IF p_actor IS NULL OR p_actor = '' THEN
        PERFORM ws__fail('WSE04', 'an attestation needs an actor');
    END IF;
    -- FOR SHARE: the release cannot be corrected (0003's guard) while an
    -- attestation bound to its digest is being recorded.
    SELECT * INTO v_rel FROM releases r WHERE r.version = p_version FOR SHARE;
    IF NOT FOUND THEN
        PERFORM ws__fail('WSE05', format('release %s does not exist', p_version));
    END IF;
    IF p_digest <> v_rel.digest THEN
        PERFORM ws__fail('WSE04',
            format('digest: the attestation is bound to %s but release %s is %s; an attestation is for exactly the release''s artifact',
                   p_digest, p_version, v_rel.digest),
            jsonb_build_array(jsonb_build_object('field', 'digest', 'message',
                format('digest %s is not the digest of release %s (%s)', p_digest, p_version, v_rel.digest)))::text);
    END IF;
    v_sha := encode(sha256(convert_to(p_document::text, 'UTF8')), 'hex');
    INSERT INTO release_attestations (release_id, name, result, digest, document, sha256, produced_by, recorded_by)
    VALUES (v_rel.id, p_name, p_result, p_digest, p_document, v_sha, p_produced_by, p_actor)
    RETURNING * INTO v_row;
    PERFORM ws_audit_append(p_actor, 'release.attest', 'release/' || p_version,
                            jsonb_build_object('id', v_row.id, 'name', p_name, 'result', p_result,
                                               'digest', p_digest, 'sha256', v_sha, 'produced_by', p_produced_by));
    -- One event per rollout of the release that still moves, so that a
    -- rollout's stream shows why its held wave goes on (one without a
    -- rollout when none moves); the engine is woken for each, and a waiting
    -- wave decides again at once.
    FOR v_ro IN SELECT r.id FROM rollouts r
                 WHERE r.release_id = v_rel.id
                   AND r.state IN ('planned', 'approved', 'running', 'paused', 'preempted')
                UNION ALL
                SELECT NULL WHERE NOT EXISTS (
                    SELECT 1 FROM rollouts r WHERE r.release_id = v_rel.id
                       AND r.state IN ('planned', 'approved', 'running', 'paused', 'preempted'))
                 ORDER BY 1 LOOP
        INSERT INTO events (rollout_id, kind, payload)
        VALUES (v_ro, 'release.attestation', jsonb_strip_nulls(jsonb_build_object(
            'object', 'release', 'release', p_version, 'rollout', v_ro, 'id', v_row.id, 'name', p_name,
            'result', p_result, 'sha256', v_sha, 'produced_by', p_produced_by, 'actor', p_actor)));
        IF v_ro IS NOT NULL THEN
            PERFORM pg_notify('ws_engine', v_ro::text);
        END IF;
    END LOOP;
    PERFORM pg_notify('ws_events', '');
    RETURN ws__attestation_doc(v_row, p_version, true);
END
$$;

-- Every attestation of a release, oldest first, or NULL when the release
-- does not exist (404).
CREATE FUNCTION ws_release_attestations(p_version text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('release', rel.version, 'digest', rel.digest,
               'attestations', COALESCE((SELECT jsonb_agg(ws__attestation_doc(a, rel.version, true) ORDER BY a.id)
                                           FROM release_attestations a WHERE a.release_id = rel.id), '[]'),
               'latest', ws__attestations_latest(rel.id))
      FROM releases rel WHERE rel.version = p_version
$$;

-- A release as the API shows it (0004), with the latest attestation of
-- each name.
CREATE OR REPLACE FUNCTION ws_release_doc(r releases) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('version', r.version, 'digest', r.digest, 'kind', r.kind,
                             'notes', r.notes, 'created_by', r.created_by,
                             'created_at', ws__rfc3339(r.created_at),
                             'attestations', ws__attestations_latest(r.id)::json)
$$;

-- ---- the gate --------------------------------------------------------------

-- The engine's load (0020's ws_engine_rollout) carries this as
-- "release_gates": the latest attestation per name, and per wave of the
-- release's rollouts the last attestation gate result recorded
-- ({result, evidence}), so the decision writes a gate row only when the
-- outcome changes instead of at every decision.
CREATE OR REPLACE FUNCTION ws__release_gate_doc(p_release bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'attestations', ws__attestations_latest(p_release),
        'attestation_gates', COALESCE((
            SELECT jsonb_object_agg(x.wave_id::text, jsonb_build_object('result', x.result, 'evidence', x.evidence))
              FROM (SELECT DISTINCT ON (g.wave_id) g.wave_id, g.result, g.evidence
                      FROM rollouts r
                      JOIN gate_results g ON g.rollout_id = r.id
                     WHERE r.release_id = p_release AND g.gate = 'attestations'
                       AND g.wave_id IS NOT NULL AND g.deployment_id IS NULL
                       AND r.state IN ('planned', 'approved', 'running', 'paused', 'preempted')
                     ORDER BY g.wave_id, g.id DESC) x), '{}'))
$$;

-- A release without a required attestation cannot start: `start` of a
-- planned rollout whose first wave requires attestations that are missing
-- or whose latest result is failed is refused (409) naming them.  Later
-- waves hold at their own boundary in the engine, so they do not stop the
-- start.  Every other action, and a start the state refuses anyway, goes
-- to 0003's function unchanged.
ALTER FUNCTION ws_rollout_command(bigint, text, text, text) RENAME TO ws__rollout_command_0003;
CREATE FUNCTION ws_rollout_command(p_rollout bigint, p_action text, p_actor text, p_reason text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_ro      rollouts%ROWTYPE;
    v_rel     releases%ROWTYPE;
    v_wave    waves%ROWTYPE;
    v_lacking jsonb;
BEGIN
    IF p_action = 'start' THEN
        SELECT * INTO v_ro FROM rollouts r WHERE r.id = p_rollout FOR UPDATE;
        IF FOUND AND v_ro.state = 'planned' THEN
            SELECT * INTO v_wave FROM waves w WHERE w.rollout_id = p_rollout ORDER BY w.idx LIMIT 1;
            IF FOUND AND jsonb_typeof(v_wave.settings -> 'attestations') = 'array' THEN
                SELECT * INTO v_rel FROM releases x WHERE x.id = v_ro.release_id;
                v_lacking := ws__attestations_lacking(v_rel.id, v_wave.settings -> 'attestations');
                IF jsonb_array_length(v_lacking) > 0 THEN
                    PERFORM ws__fail('WSE02',
                        format('rollout %s cannot start: wave %s (%s) requires attestations of release %s: %s',
                               p_rollout, v_wave.idx, v_wave.name, v_rel.version,
                               ws__attestations_lacking_text(v_lacking)),
                        (SELECT jsonb_agg(jsonb_build_object('field', 'attestations.' || (e ->> 'name'),
                                              'message', CASE WHEN e ->> 'state' = 'missing'
                                                              THEN (e ->> 'name') || ' is missing'
                                                              ELSE format('%s failed (attestation %s)',
                                                                          e ->> 'name', e ->> 'id') END)
                                          || e)
                           FROM jsonb_array_elements(v_lacking) e)::text);
                END IF;
            END IF;
        END IF;
    END IF;
    RETURN ws__rollout_command_0003(p_rollout, p_action, p_actor, p_reason);
END
$$;

-- ---- evidence ------------------------------------------------------------------

-- The bundle (0010, 0013, 0015) carries every attestation of the release
-- with its document, and per wave the attestation gate results behind each
-- decision (also among gate_results, here gathered per wave).
ALTER FUNCTION ws_rollout_evidence(bigint) RENAME TO ws__rollout_evidence_before_0021;
CREATE FUNCTION ws_rollout_evidence(p_id bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT e || jsonb_build_object(
                    'attestations', COALESCE((
                        SELECT jsonb_agg(ws__attestation_doc(a, rel.version, true) ORDER BY a.id)
                          FROM release_attestations a WHERE a.release_id = rel.id), '[]'),
                    'attestation_gates', COALESCE((
                        SELECT jsonb_agg(jsonb_build_object(
                                   'wave', w.idx, 'name', w.name,
                                   'required', COALESCE(w.settings -> 'attestations', '[]'),
                                   'results', COALESCE((
                                       SELECT jsonb_agg(jsonb_build_object(
                                                  'id', g.id, 'result', g.result, 'evidence', g.evidence,
                                                  'at', ws__rfc3339(g.at)) ORDER BY g.id)
                                         FROM gate_results g
                                        WHERE g.wave_id = w.id AND g.gate = 'attestations'
                                          AND g.deployment_id IS NULL), '[]'))
                               ORDER BY w.idx)
                          FROM waves w WHERE w.rollout_id = p_id AND w.settings ? 'attestations'), '[]'))
      FROM ws__rollout_evidence_before_0021(p_id) e
      JOIN rollouts r ON r.id = p_id
      JOIN releases rel ON rel.id = r.release_id
     WHERE e IS NOT NULL
$$;
