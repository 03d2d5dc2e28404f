-- 0012: the backup gate's second source (engine.md "backup gate", `source:
-- http`): waves.settings.backup may carry {"source": "http", "url": TEMPLATE}.
-- The check of 0004 is replaced so that a settings row naming an unknown
-- source, or http without a URL template, is refused when the rollout is
-- created rather than found out by the engine when the wave checks backups.
--    "backup": {"enabled": true, "max_age_s": 86400}                      (catalog)
--    "backup": {"enabled": true, "max_age_s": 86400, "source": "catalog"}
--    "backup": {"enabled": true, "max_age_s": 86400, "source": "http",
--               "url": "https://backups.example/{slug}/status"}
CREATE OR REPLACE FUNCTION ws__wave_settings_problem(s jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN jsonb_typeof(s) IS DISTINCT FROM 'object' THEN 'settings must be an object'
        WHEN jsonb_typeof(s -> 'soak_s') IS DISTINCT FROM 'number' THEN 'soak_s is missing'
        WHEN jsonb_typeof(s -> 'max_parallel_per_cluster') IS DISTINCT FROM 'number' THEN 'max_parallel_per_cluster is missing'
        WHEN jsonb_typeof(s #> '{backup,enabled}') IS DISTINCT FROM 'boolean'
          OR jsonb_typeof(s #> '{backup,max_age_s}') IS DISTINCT FROM 'number' THEN 'backup.enabled or backup.max_age_s is missing'
        WHEN (s #> '{backup,source}') IS NOT NULL
         AND (jsonb_typeof(s #> '{backup,source}') IS DISTINCT FROM 'string'
              OR (s #>> '{backup,source}') NOT IN ('catalog', 'http')) THEN 'backup.source must be "catalog" or "http"'
        WHEN (s #>> '{backup,source}') = 'http'
         AND (jsonb_typeof(s #> '{backup,url}') IS DISTINCT FROM 'string'
              OR (s #>> '{backup,url}') !~ '^https?://') THEN 'backup.url must be an http(s) URL template with source http'
        WHEN (s #>> '{backup,source}') IS DISTINCT FROM 'http'
         AND (s #> '{backup,url}') IS NOT NULL THEN 'backup.url is only used with source http'
        WHEN jsonb_typeof(s #> '{health,enabled}') IS DISTINCT FROM 'boolean'
          OR jsonb_typeof(s #> '{health,interval_s}') IS DISTINCT FROM 'number'
          OR jsonb_typeof(s #> '{health,timeout_s}') IS DISTINCT FROM 'number'
          OR jsonb_typeof(s #> '{health,consecutive_successes}') IS DISTINCT FROM 'number'
          OR jsonb_typeof(s #> '{health,max_consecutive_failures}') IS DISTINCT FROM 'number'
          OR jsonb_typeof(s #> '{health,max_latency_ms}') IS DISTINCT FROM 'number'
          OR jsonb_typeof(s #> '{health,latency_regression}') IS DISTINCT FROM 'number' THEN 'a health setting is missing'
        WHEN jsonb_typeof(s #> '{approval,min}') IS DISTINCT FROM 'number'
          OR jsonb_typeof(s #> '{approval,roles}') IS DISTINCT FROM 'array' THEN 'approval.min or approval.roles is missing'
        WHEN jsonb_typeof(s #> '{failure,max_failed}') IS DISTINCT FROM 'number'
          OR (s #>> '{failure,action}') IS NULL
          OR (s #>> '{failure,action}') NOT IN ('halt', 'rollback_wave', 'continue') THEN 'failure.max_failed or failure.action is missing'
    END
$$;
