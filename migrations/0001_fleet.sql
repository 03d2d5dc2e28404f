-- 0001: the fleet inventory and API tokens.
--
-- Rows are never deleted by an import: a tenant, cluster or calendar that
-- leaves the fleet file gets removed_at, and coming back revives the same row,
-- so identities (and everything that will reference them: rollouts, audit)
-- survive re-imports.  Columns hold the normalised values the service queries;
-- windows, labels and deploy settings stay JSON in the canonical shape
-- produced by the C validator (tenants/fleet_json.c).

CREATE TABLE clusters (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9-]{1,63}$'),
    hosting      text NOT NULL CHECK (hosting IN ('shared', 'dedicated')),
    region       text,
    max_parallel integer CHECK (max_parallel > 0),
    timezone     text NOT NULL DEFAULT 'UTC',
    labels       jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(labels) = 'object'),
    windows      jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(windows) = 'array'),
    deploy       jsonb CHECK (deploy IS NULL OR jsonb_typeof(deploy) = 'object'),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    removed_at   timestamptz
);

CREATE TABLE tenants (
    id           bigserial PRIMARY KEY,
    slug         text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9-]{1,63}$'),
    name         text NOT NULL,
    cluster_id   bigint NOT NULL REFERENCES clusters (id),
    criticality  text NOT NULL CHECK (criticality IN ('low', 'standard', 'high', 'critical')),
    timezone     text NOT NULL,
    labels       jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(labels) = 'object'),
    health_url   text,
    version      text,
    windows      jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(windows) = 'array'),
    frozen       boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    removed_at   timestamptz
);
CREATE INDEX tenants_cluster_idx ON tenants (cluster_id);

CREATE TABLE tenant_dependencies (
    tenant_id     bigint NOT NULL REFERENCES tenants (id),
    depends_on_id bigint NOT NULL REFERENCES tenants (id),
    PRIMARY KEY (tenant_id, depends_on_id),
    CHECK (tenant_id <> depends_on_id)
);
CREATE INDEX tenant_dependencies_rev_idx ON tenant_dependencies (depends_on_id);

CREATE TABLE calendars (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL UNIQUE,
    hard         boolean NOT NULL DEFAULT false,
    applies_to   jsonb CHECK (applies_to IS NULL OR jsonb_typeof(applies_to) = 'object'),
    occurrences  jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(occurrences) = 'array'),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    removed_at   timestamptz
);

-- One row per applied (not dry-run) import: the fleet's generation number,
-- the sha256 of the canonical document and what changed.
CREATE TABLE fleet_imports (
    id           bigserial PRIMARY KEY,
    sha256       text NOT NULL,
    actor        text NOT NULL,
    summary      jsonb NOT NULL,
    imported_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_tokens (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name         text NOT NULL,
    role         text NOT NULL CHECK (role IN ('admin', 'platform', 'security', 'approver', 'tenant', 'viewer')),
    tenants      text[] NOT NULL DEFAULT '{}',
    secret_hash  text NOT NULL UNIQUE CHECK (secret_hash ~ '^[0-9a-f]{64}$'),
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    CHECK (role <> 'tenant' OR cardinality(tenants) > 0)
);

-- The canonical JSON of one row, in the shape of the fleet file.  Export and
-- change detection both use these, so "changed" means "the export differs".
CREATE FUNCTION ws_cluster_doc(c clusters) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'name', c.name, 'hosting', c.hosting, 'region', c.region,
        'max_parallel', c.max_parallel, 'timezone', c.timezone))
        || jsonb_build_object('labels', c.labels, 'windows', c.windows)
        || CASE WHEN c.deploy IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('deploy', c.deploy) END
$$;

CREATE FUNCTION ws_tenant_doc(t tenants) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'slug', t.slug, 'name', t.name,
        'cluster', (SELECT c.name FROM clusters c WHERE c.id = t.cluster_id),
        'criticality', t.criticality, 'timezone', t.timezone,
        'health_url', t.health_url, 'version', t.version, 'frozen', t.frozen))
        || jsonb_build_object(
        'labels', t.labels, 'windows', t.windows,
        'depends_on', COALESCE((SELECT jsonb_agg(d.slug ORDER BY d.slug)
                                  FROM tenant_dependencies td JOIN tenants d ON d.id = td.depends_on_id
                                 WHERE td.tenant_id = t.id), '[]'::jsonb))
$$;

CREATE FUNCTION ws_calendar_doc(k calendars) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('name', k.name, 'hard', k.hard, 'occurrences', k.occurrences)
        || CASE WHEN k.applies_to IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('applies_to', k.applies_to) END
$$;

-- The whole active fleet as one document (the export).
CREATE FUNCTION ws_fleet_document() RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'apiVersion', 'wavesched/v1', 'kind', 'Fleet',
        'clusters', COALESCE((SELECT jsonb_agg(ws_cluster_doc(c) ORDER BY c.name)
                                FROM clusters c WHERE c.removed_at IS NULL), '[]'::jsonb),
        'tenants', COALESCE((SELECT jsonb_agg(ws_tenant_doc(t) ORDER BY t.slug)
                               FROM tenants t WHERE t.removed_at IS NULL), '[]'::jsonb),
        'calendars', COALESCE((SELECT jsonb_agg(ws_calendar_doc(k) ORDER BY k.name)
                                 FROM calendars k WHERE k.removed_at IS NULL), '[]'::jsonb))
$$;

-- Imports a validated canonical fleet document (the C side has checked every
-- rule of fleet.md; the constraints above are a second line of defence).
-- Runs in the caller's statement, so the whole import is one transaction.
-- Returns {"added": {...}, "changed": {...}, "removed": {...}, "generation"}
-- where each {...} has "clusters", "tenants" and "calendars" name lists.
-- With p_dry_run nothing is written.
CREATE FUNCTION ws_fleet_import(p_doc jsonb, p_dry_run boolean, p_actor text, p_sha256 text)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_report jsonb;
    v_gen    bigint;
BEGIN
    -- Imports are serialised: two concurrent ones would each compute a diff
    -- against a state the other is changing.
    PERFORM pg_advisory_xact_lock(hashtext('wavesched.fleet_import'));

    CREATE TEMP TABLE IF NOT EXISTS ws_in_clusters (name text PRIMARY KEY, doc jsonb) ON COMMIT DROP;
    CREATE TEMP TABLE IF NOT EXISTS ws_in_tenants (slug text PRIMARY KEY, doc jsonb) ON COMMIT DROP;
    CREATE TEMP TABLE IF NOT EXISTS ws_in_calendars (name text PRIMARY KEY, doc jsonb) ON COMMIT DROP;
    TRUNCATE ws_in_clusters, ws_in_tenants, ws_in_calendars;
    INSERT INTO ws_in_clusters SELECT e->>'name', e FROM jsonb_array_elements(COALESCE(p_doc->'clusters', '[]')) e;
    INSERT INTO ws_in_tenants SELECT e->>'slug', e FROM jsonb_array_elements(COALESCE(p_doc->'tenants', '[]')) e;
    INSERT INTO ws_in_calendars SELECT e->>'name', e FROM jsonb_array_elements(COALESCE(p_doc->'calendars', '[]')) e;

    WITH cur_c AS (SELECT c.name, ws_cluster_doc(c) AS doc FROM clusters c WHERE c.removed_at IS NULL),
         cur_t AS (SELECT t.slug, ws_tenant_doc(t) AS doc FROM tenants t WHERE t.removed_at IS NULL),
         cur_k AS (SELECT k.name, ws_calendar_doc(k) AS doc FROM calendars k WHERE k.removed_at IS NULL)
    SELECT jsonb_build_object(
        'added', jsonb_build_object(
            'clusters', COALESCE((SELECT jsonb_agg(i.name ORDER BY i.name) FROM ws_in_clusters i WHERE NOT EXISTS (SELECT 1 FROM cur_c WHERE cur_c.name = i.name)), '[]'),
            'tenants', COALESCE((SELECT jsonb_agg(i.slug ORDER BY i.slug) FROM ws_in_tenants i WHERE NOT EXISTS (SELECT 1 FROM cur_t WHERE cur_t.slug = i.slug)), '[]'),
            'calendars', COALESCE((SELECT jsonb_agg(i.name ORDER BY i.name) FROM ws_in_calendars i WHERE NOT EXISTS (SELECT 1 FROM cur_k WHERE cur_k.name = i.name)), '[]')),
        'changed', jsonb_build_object(
            'clusters', COALESCE((SELECT jsonb_agg(i.name ORDER BY i.name) FROM ws_in_clusters i JOIN cur_c USING (name) WHERE cur_c.doc <> i.doc), '[]'),
            'tenants', COALESCE((SELECT jsonb_agg(i.slug ORDER BY i.slug) FROM ws_in_tenants i JOIN cur_t USING (slug) WHERE cur_t.doc <> i.doc), '[]'),
            'calendars', COALESCE((SELECT jsonb_agg(i.name ORDER BY i.name) FROM ws_in_calendars i JOIN cur_k USING (name) WHERE cur_k.doc <> i.doc), '[]')),
        'removed', jsonb_build_object(
            'clusters', COALESCE((SELECT jsonb_agg(c.name ORDER BY c.name) FROM cur_c c WHERE NOT EXISTS (SELECT 1 FROM ws_in_clusters i WHERE i.name = c.name)), '[]'),
            'tenants', COALESCE((SELECT jsonb_agg(t.slug ORDER BY t.slug) FROM cur_t t WHERE NOT EXISTS (SELECT 1 FROM ws_in_tenants i WHERE i.slug = t.slug)), '[]'),
            'calendars', COALESCE((SELECT jsonb_agg(k.name ORDER BY k.name) FROM cur_k k WHERE NOT EXISTS (SELECT 1 FROM ws_in_calendars i WHERE i.name = k.name)), '[]')))
    INTO v_report;

    IF p_dry_run THEN
        RETURN v_report || jsonb_build_object('dry_run', true);
    END IF;

    -- Clusters first (tenants reference them), upserted by name; a removed
    -- row that comes back is revived with its identity.
    INSERT INTO clusters AS c (name, hosting, region, max_parallel, timezone, labels, windows, deploy)
    SELECT i.name, i.doc->>'hosting', i.doc->>'region', (i.doc->>'max_parallel')::int,
           COALESCE(i.doc->>'timezone', 'UTC'), COALESCE(i.doc->'labels', '{}'),
           COALESCE(i.doc->'windows', '[]'), i.doc->'deploy'
      FROM ws_in_clusters i
    ON CONFLICT (name) DO UPDATE SET
        hosting = EXCLUDED.hosting, region = EXCLUDED.region, max_parallel = EXCLUDED.max_parallel,
        timezone = EXCLUDED.timezone, labels = EXCLUDED.labels, windows = EXCLUDED.windows,
        deploy = EXCLUDED.deploy, removed_at = NULL, updated_at = now()
    WHERE c.removed_at IS NOT NULL OR ws_cluster_doc(c) <> (SELECT doc FROM ws_in_clusters WHERE name = EXCLUDED.name);

    INSERT INTO tenants AS t (slug, name, cluster_id, criticality, timezone, labels, health_url, version, windows, frozen)
    SELECT i.slug, COALESCE(i.doc->>'name', i.slug), c.id, COALESCE(i.doc->>'criticality', 'standard'),
           COALESCE(i.doc->>'timezone', c.timezone), COALESCE(i.doc->'labels', '{}'),
           i.doc->>'health_url', i.doc->>'version', COALESCE(i.doc->'windows', '[]'),
           COALESCE((i.doc->>'frozen')::boolean, false)
      FROM ws_in_tenants i JOIN clusters c ON c.name = i.doc->>'cluster'
    ON CONFLICT (slug) DO UPDATE SET
        name = EXCLUDED.name, cluster_id = EXCLUDED.cluster_id, criticality = EXCLUDED.criticality,
        timezone = EXCLUDED.timezone, labels = EXCLUDED.labels, health_url = EXCLUDED.health_url,
        version = EXCLUDED.version, windows = EXCLUDED.windows, frozen = EXCLUDED.frozen,
        removed_at = NULL, updated_at = now()
    WHERE t.removed_at IS NOT NULL OR ws_tenant_doc(t) - 'depends_on' <> (SELECT doc - 'depends_on' FROM ws_in_tenants WHERE slug = EXCLUDED.slug);

    UPDATE tenants t SET removed_at = now(), updated_at = now()
     WHERE t.removed_at IS NULL AND NOT EXISTS (SELECT 1 FROM ws_in_tenants i WHERE i.slug = t.slug);
    UPDATE clusters c SET removed_at = now(), updated_at = now()
     WHERE c.removed_at IS NULL AND NOT EXISTS (SELECT 1 FROM ws_in_clusters i WHERE i.name = c.name);

    -- Dependencies: the edges of the new document replace the old ones.
    -- Edges of removed tenants go too (their dependants were validated away).
    DELETE FROM tenant_dependencies td
     WHERE NOT EXISTS (
        SELECT 1 FROM ws_in_tenants i
          JOIN tenants a ON a.slug = i.slug
          JOIN LATERAL jsonb_array_elements_text(COALESCE(i.doc->'depends_on', '[]')) dep(slug) ON true
          JOIN tenants b ON b.slug = dep.slug
         WHERE a.id = td.tenant_id AND b.id = td.depends_on_id);
    INSERT INTO tenant_dependencies (tenant_id, depends_on_id)
    SELECT a.id, b.id
      FROM ws_in_tenants i
      JOIN tenants a ON a.slug = i.slug
      JOIN LATERAL jsonb_array_elements_text(COALESCE(i.doc->'depends_on', '[]')) dep(slug) ON true
      JOIN tenants b ON b.slug = dep.slug
    ON CONFLICT DO NOTHING;

    INSERT INTO calendars AS k (name, hard, applies_to, occurrences)
    SELECT i.name, COALESCE((i.doc->>'hard')::boolean, false), i.doc->'applies_to', COALESCE(i.doc->'occurrences', '[]')
      FROM ws_in_calendars i
    ON CONFLICT (name) DO UPDATE SET
        hard = EXCLUDED.hard, applies_to = EXCLUDED.applies_to, occurrences = EXCLUDED.occurrences,
        removed_at = NULL, updated_at = now()
    WHERE k.removed_at IS NOT NULL OR ws_calendar_doc(k) <> (SELECT doc FROM ws_in_calendars WHERE name = EXCLUDED.name);
    UPDATE calendars k SET removed_at = now(), updated_at = now()
     WHERE k.removed_at IS NULL AND NOT EXISTS (SELECT 1 FROM ws_in_calendars i WHERE i.name = k.name);

    INSERT INTO fleet_imports (sha256, actor, summary) VALUES (p_sha256, p_actor, v_report)
    RETURNING id INTO v_gen;
    RETURN v_report || jsonb_build_object('dry_run', false, 'generation', v_gen);
END
$$;
