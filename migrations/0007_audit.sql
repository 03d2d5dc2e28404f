-- 0007: every mutating request is audited, the audit log is read and
-- checked through the API (api.md "Audit"), and the service's own role loses
-- the privileges to rewrite it.
--
-- The rows written here use ws_audit_append (0003), so they join the one
-- hash chain in the same transaction as the change they record.

-- ---- privileges ------------------------------------------------------------

-- The append-only triggers of 0003 stop every UPDATE, DELETE and TRUNCATE
-- that goes through SQL, but the table's owner -- the role the service runs
-- as, since it applies the migrations -- may disable its own triggers.  So
-- the privileges go too: without UPDATE, DELETE and TRUNCATE the owner's
-- statements fail before any trigger runs, and the triggers remain the
-- second line for roles granted more later.  An owner can grant the
-- privileges back to itself and a superuser has them all (the test suites
-- run as one), which is why the hash chain, checked by ws_audit_check and
-- by the offline verifier of evidence bundles, is what finally tells.
-- ws_audit_append needs INSERT and SELECT only (the chain lock is advisory,
-- not a row lock).
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;
DO $$
BEGIN
    EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM %I',
                   (SELECT pg_get_userbyid(c.relowner) FROM pg_class c WHERE c.oid = 'audit_log'::regclass));
END
$$;

-- ---- fleet imports and policies ----------------------------------------------

-- The 0001 and 0002 functions keep their bodies under new names; the public
-- names wrap them with the audit row, so every caller (the API, wavectl
-- through the API) is covered without a change in C.
ALTER FUNCTION ws_fleet_import(jsonb, boolean, text, text) RENAME TO ws__fleet_import_0001;

-- A dry run changes nothing and is not audited.  A real import is, even
-- when it changes nothing: it still makes a new fleet generation.
CREATE FUNCTION ws_fleet_import(p_doc jsonb, p_dry_run boolean, p_actor text, p_sha256 text)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_report jsonb := ws__fleet_import_0001(p_doc, p_dry_run, p_actor, p_sha256);
BEGIN
    IF NOT p_dry_run THEN
        PERFORM ws_audit_append(p_actor, 'fleet.import', 'fleet',
            jsonb_build_object('sha256', p_sha256, 'generation', v_report -> 'generation',
                               'added', v_report -> 'added', 'changed', v_report -> 'changed',
                               'removed', v_report -> 'removed'));
    END IF;
    RETURN v_report;
END
$$;

ALTER FUNCTION ws_policy_store(text, text, text, text, text) RENAME TO ws__policy_store_0002;

-- Storing the same text as the latest version writes nothing and is not
-- audited; a new version is, with the sha256 of its text.
CREATE FUNCTION ws_policy_store(p_name text, p_body text, p_sha256 text, p_description text, p_actor text)
RETURNS TABLE (version integer, created boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_version integer;
    v_created boolean;
BEGIN
    SELECT s.version, s.created INTO v_version, v_created
      FROM ws__policy_store_0002(p_name, p_body, p_sha256, p_description, p_actor) s;
    IF v_created THEN
        PERFORM ws_audit_append(p_actor, 'policy.store', format('policy/%s/%s', p_name, v_version),
            jsonb_build_object('name', p_name, 'version', v_version, 'sha256', p_sha256));
    END IF;
    RETURN QUERY SELECT v_version, v_created;
END
$$;

-- ---- tokens --------------------------------------------------------------------

-- Tokens are created by the API and by `wavesched token create` (which has
-- no API to go through: it makes the first admin token).  A trigger covers
-- both in the INSERT's transaction.  The secret and its hash are never
-- recorded.
CREATE FUNCTION ws__token_created() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ws_audit_append(NEW.created_by, 'token.create', 'token/' || NEW.id,
        jsonb_strip_nulls(jsonb_build_object('name', NEW.name, 'role', NEW.role,
                                             'tenants', to_jsonb(NEW.tenants),
                                             'expires_at', ws__rfc3339(NEW.expires_at))));
    RETURN NULL;
END
$$;
CREATE TRIGGER api_tokens_audit_create AFTER INSERT ON api_tokens
    FOR EACH ROW EXECUTE FUNCTION ws__token_created();

-- Revokes a token and audits it with who did it (the row does not say).
-- Revoking a revoked token keeps the first time and is not audited again.
-- No row: no such token.
CREATE FUNCTION ws_token_revoke(p_id uuid, p_actor text)
RETURNS SETOF api_tokens
LANGUAGE plpgsql AS $$
DECLARE
    v_row api_tokens%ROWTYPE;
    v_was timestamptz;
BEGIN
    SELECT t.revoked_at INTO v_was FROM api_tokens t WHERE t.id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE api_tokens t SET revoked_at = COALESCE(t.revoked_at, now()) WHERE t.id = p_id
    RETURNING t.* INTO v_row;
    IF v_was IS NULL THEN
        PERFORM ws_audit_append(p_actor, 'token.revoke', 'token/' || p_id,
                                jsonb_build_object('name', v_row.name, 'role', v_row.role));
    END IF;
    RETURN NEXT v_row;
END
$$;

-- ---- reading ---------------------------------------------------------------------

CREATE FUNCTION ws__audit_at(p timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
    -- microseconds: the hash covers them, so an offline verifier needs them
    SELECT to_char(p AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

CREATE FUNCTION ws_audit_entry_doc(a audit_log) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', a.id, 'at', ws__audit_at(a.at), 'actor', a.actor, 'action', a.action,
                              'object', a.object, 'details', a.details, 'prev_hash', a.prev_hash,
                              'hash', a.hash)
$$;

-- "object" filters by path segment: "rollout/7" is rollout/7 and everything
-- under it (rollout/7/wave/1), not rollout/70.  Under it means between
-- "rollout/7/" and "rollout/70" bytewise ('/' and '0' are neighbours), a
-- range this index serves whatever the database's collation; an evidence
-- bundle of one rollout in a log of millions of entries reads its own.
CREATE INDEX audit_log_object_bytes_idx ON audit_log (object text_pattern_ops, id);

CREATE FUNCTION ws__audit_under(p_object text, p_prefix text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_object = p_prefix OR (p_object ~>=~ (p_prefix || '/') AND p_object ~<~ (p_prefix || '0'))
$$;

-- One page of entries, oldest first; next_after_id is set when the page is
-- full (there may be more).  The object filter has a query of its own so
-- that its plan can use the index above.
CREATE FUNCTION ws_audit_list(p_since timestamptz, p_actor text, p_object text, p_after_id bigint, p_limit integer)
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_page audit_log[];
BEGIN
    IF p_object IS NULL THEN
        v_page := ARRAY(SELECT a FROM audit_log a
                         WHERE a.id > COALESCE(p_after_id, 0)
                           AND (p_since IS NULL OR a.at >= p_since)
                           AND (p_actor IS NULL OR a.actor = p_actor)
                         ORDER BY a.id LIMIT p_limit);
    ELSE
        v_page := ARRAY(SELECT a FROM audit_log a
                         WHERE (a.object = p_object OR (a.object ~>=~ (p_object || '/') AND a.object ~<~ (p_object || '0')))
                           AND a.id > COALESCE(p_after_id, 0)
                           AND (p_since IS NULL OR a.at >= p_since)
                           AND (p_actor IS NULL OR a.actor = p_actor)
                         ORDER BY a.id LIMIT p_limit);
    END IF;
    RETURN jsonb_build_object(
        'entries', COALESCE((SELECT jsonb_agg(ws_audit_entry_doc(p) ORDER BY p.id) FROM unnest(v_page) p), '[]'),
        'next_after_id', CASE WHEN cardinality(v_page) = p_limit THEN v_page[cardinality(v_page)].id END);
END
$$;

-- ---- checking the chain --------------------------------------------------------------

-- Walks the chain in id order and names the first broken entry with what
-- broke it, as {"ok", "entries", "verified", "head": {"id", "hash"},
-- "first_broken": {"id", "reason", "message"}}: entries counts the rows,
-- verified those checked before the first broken one, head is the newest
-- row as stored (null for an empty log), first_broken null when whole.  ws_audit_verify (0003) stays as it is for its callers.
--
-- Reasons, for the entry at id N:
--   edited     N's hash does not cover its fields, and no other id would
--              make it match;
--   reordered  N's fields match its hash with another id M (the contents
--              of M were moved to N); or N is whole but follows an entry
--              that is stored elsewhere in the log;
--   deleted    N is whole but the entry it was written after is gone
--              (ids have gaps anyway -- a rolled-back append draws one -- so
--              only the missing hash tells);
--   truncated  (with p_known_id/p_known_hash, a head recorded earlier, e.g.
--              from an evidence bundle or an earlier check) that entry is
--              gone from the end of the log; a chain alone cannot show a
--              removed tail, since what is left is a valid chain.
-- With p_from/p_to only that stretch is walked (its first entry checked
-- against the entry before it), for evidence bundles; entries then counts
-- the stretch, and head is still the newest entry of the log.
-- A chain is unkeyed: whoever can write the table and rewrite every hash
-- from some entry onwards leaves a valid chain, which only a head kept
-- outside (the same p_known_* comparison) reveals.
CREATE FUNCTION ws_audit_check(p_known_id bigint DEFAULT NULL, p_known_hash text DEFAULT NULL,
                               p_from bigint DEFAULT NULL, p_to bigint DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r       audit_log%ROWTYPE;
    v_prev  text := repeat('0', 64);
    v_prev_id bigint;
    v_n     bigint := 0;
    v_other bigint;
    v_known text;
    v_head  jsonb;
    v_count bigint;
BEGIN
    -- The newest entry as stored, whatever the walk finds: what an auditor
    -- records to compare with later.
    SELECT jsonb_build_object('id', a.id, 'hash', a.hash) INTO v_head FROM audit_log a ORDER BY a.id DESC LIMIT 1;
    SELECT count(*) INTO v_count FROM audit_log a WHERE a.id BETWEEN COALESCE(p_from, 0) AND COALESCE(p_to, 9223372036854775807);
    IF p_from IS NOT NULL THEN
        -- a stretch: its first entry must follow the entry stored before it
        SELECT a.hash, a.id INTO v_prev, v_prev_id FROM audit_log a WHERE a.id < p_from ORDER BY a.id DESC LIMIT 1;
        v_prev := COALESCE(v_prev, repeat('0', 64));
    END IF;
    FOR r IN SELECT * FROM audit_log a WHERE a.id BETWEEN COALESCE(p_from, 0) AND COALESCE(p_to, 9223372036854775807)
              ORDER BY a.id LOOP
        IF r.hash IS DISTINCT FROM ws_audit_hash(r.prev_hash, r.id, r.at, r.actor, r.action, r.object, r.details) THEN
            SELECT a.id INTO v_other FROM audit_log a
             WHERE a.id <> r.id
               AND ws_audit_hash(r.prev_hash, a.id, r.at, r.actor, r.action, r.object, r.details) = r.hash
             LIMIT 1;
            RETURN jsonb_build_object('ok', false, 'entries', v_count,
                'verified', v_n, 'head', v_head,
                'first_broken', CASE WHEN v_other IS NOT NULL THEN
                    jsonb_build_object('id', r.id, 'reason', 'reordered',
                        'message', format('audit entry %s: holds the entry written as entry %s (reordered)', r.id, v_other))
                ELSE
                    jsonb_build_object('id', r.id, 'reason', 'edited',
                        'message', format('audit entry %s: hash does not match its fields (edited)', r.id))
                END);
        END IF;
        IF r.prev_hash IS DISTINCT FROM v_prev THEN
            SELECT a.id INTO v_other FROM audit_log a WHERE a.hash = r.prev_hash AND a.id <> r.id LIMIT 1;
            RETURN jsonb_build_object('ok', false, 'entries', v_count,
                'verified', v_n, 'head', v_head,
                'first_broken', CASE WHEN v_other IS NOT NULL THEN
                    jsonb_build_object('id', r.id, 'reason', 'reordered',
                        'message', format('audit entry %s: was written after entry %s, which is stored elsewhere (reordered)',
                                          r.id, v_other))
                WHEN v_prev_id IS NULL THEN
                    jsonb_build_object('id', r.id, 'reason', 'deleted',
                        'message', format('audit entry %s: the entries before it are missing (deleted)', r.id))
                ELSE
                    jsonb_build_object('id', r.id, 'reason', 'deleted',
                        'message', format('audit entry %s: does not follow entry %s; an entry between them is missing (deleted)',
                                          r.id, v_prev_id))
                END);
        END IF;
        v_prev := r.hash;
        v_prev_id := r.id;
        v_n := v_n + 1;
    END LOOP;
    IF p_known_id IS NOT NULL THEN
        SELECT a.hash INTO v_known FROM audit_log a WHERE a.id = p_known_id;
        IF NOT FOUND THEN
            RETURN jsonb_build_object('ok', false, 'entries', v_count, 'verified', v_n, 'head', v_head,
                'first_broken', jsonb_build_object('id', p_known_id,
                    'reason', CASE WHEN v_prev_id IS NULL OR p_known_id > v_prev_id THEN 'truncated' ELSE 'deleted' END,
                    'message', CASE WHEN v_prev_id IS NULL OR p_known_id > v_prev_id
                        THEN format('audit entry %s: the head recorded earlier is gone; the log ends at %s (truncated)',
                                    p_known_id, COALESCE(v_prev_id::text, 'no entry'))
                        ELSE format('audit entry %s: the head recorded earlier is missing (deleted)', p_known_id) END));
        END IF;
        IF p_known_hash IS NOT NULL AND v_known IS DISTINCT FROM p_known_hash THEN
            RETURN jsonb_build_object('ok', false, 'entries', v_count, 'verified', v_n, 'head', v_head,
                'first_broken', jsonb_build_object('id', p_known_id, 'reason', 'rewritten',
                    'message', format('audit entry %s: its hash is not the one recorded earlier (rewritten)', p_known_id)));
        END IF;
    END IF;
    RETURN jsonb_build_object('ok', true, 'entries', v_count, 'verified', v_n, 'head', v_head, 'first_broken', NULL);
END
$$;
