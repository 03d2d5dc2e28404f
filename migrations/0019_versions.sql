-- 0019: a tenant's recorded version follows what the engine did to it.
--
-- The fleet file's `version` is "the currently deployed release version"
-- (fleet.md).  Once the engine deploys a tenant, the file is behind: the
-- deployment's outcome is now the truth, and the next rollout must take the
-- tenant's real version as its previous version, or a rollback would
-- redeploy a version two releases old.  So, in the same transaction as the
-- deployment's transition:
--   healthy      -> the tenant runs the deployment's target version;
--   rolled_back  -> it runs the deployment's previous version again.
-- A failed deploy says nothing certain about the version: left as it was.
-- `GET /v1/tenants`, `GET /v1/fleet` (export) and the next rollout's
-- previous_version see it at once; a later fleet import that states another
-- version wins and says so in its report (it is a person's explicit act).
-- The fleet generation is not bumped: the planner's snapshot may list a
-- tenant already on the release as a candidate until the next import, which
-- only costs an idempotent redeploy, while bumping it would make every
-- replica re-read the whole fleet after every deploy.
CREATE FUNCTION ws_deployment_version() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_version text;
BEGIN
    v_version := CASE NEW.state WHEN 'healthy' THEN NEW.target_version
                                WHEN 'rolled_back' THEN NEW.previous_version END;
    IF v_version IS NOT NULL THEN
        UPDATE tenants t SET version = v_version, updated_at = now()
         WHERE t.id = NEW.tenant_id AND t.version IS DISTINCT FROM v_version;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER deployments_tenant_version AFTER UPDATE OF state ON deployments
    FOR EACH ROW WHEN (NEW.state IN ('healthy', 'rolled_back') AND OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION ws_deployment_version();
