-- 0002: stored wave policies.  Every version is kept, with the sha256 of its
-- text, so a rollout can name exactly the policy it was planned with.
CREATE TABLE policies (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL CHECK (name ~ '^[a-z0-9-]{1,63}$'),
    version     integer NOT NULL CHECK (version > 0),
    sha256      text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    body        text NOT NULL,
    description text,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (name, version)
);

-- Stores a validated policy text as the next version of its name, unless it
-- is the same text as the latest version (then that version is returned and
-- nothing is written).  Versions of one name are serialised by a lock.
CREATE FUNCTION ws_policy_store(p_name text, p_body text, p_sha256 text, p_description text, p_actor text)
RETURNS TABLE (version integer, created boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_latest policies%ROWTYPE;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('wavesched.policy:' || p_name));
    SELECT * INTO v_latest FROM policies p WHERE p.name = p_name ORDER BY p.version DESC LIMIT 1;
    IF FOUND AND v_latest.sha256 = p_sha256 THEN
        RETURN QUERY SELECT v_latest.version, false;
        RETURN;
    END IF;
    RETURN QUERY
    INSERT INTO policies (name, version, sha256, body, description, created_by)
    VALUES (p_name, COALESCE(v_latest.version, 0) + 1, p_sha256, p_body, p_description, p_actor)
    RETURNING policies.version, true;
END
$$;
