-- 0008_events.sql - the delivery order of events.
--
-- Event ids come from a sequence at INSERT, but transactions commit in
-- another order: a reader that resumes with "id > N" can miss an id smaller
-- than N that committed late.  So each event also gets a delivery sequence
-- number `seq`, given by ws_events_stamp() under one advisory lock: stamping
-- transactions run one at a time and commit in seq order, and seq is dense
-- (max + 1, 2, ...), so whoever sees seq N committed sees every seq below it.
-- SSE ids and Redis messages carry seq.
--
-- published_at is the moment an event got its seq (PostgreSQL is the
-- record; Redis is only told afterwards, and readers that missed a Redis
-- message catch up from here).

ALTER TABLE events ADD COLUMN seq bigint;
CREATE UNIQUE INDEX events_seq_idx ON events (seq);
CREATE INDEX events_rollout_seq_idx ON events (rollout_id, seq) WHERE seq IS NOT NULL;
CREATE INDEX events_tenant_seq_idx ON events (tenant, seq) WHERE seq IS NOT NULL AND tenant IS NOT NULL;

-- Which database an event comes from: a random name made once.  Two
-- deployments may share a Redis; a reader ignores messages of the other.
CREATE TABLE events_origin (
    one    boolean PRIMARY KEY DEFAULT true CHECK (one),
    origin text NOT NULL
);
INSERT INTO events_origin (origin) VALUES (substr(md5(random()::text || clock_timestamp()::text), 1, 16));

-- Whatever inserts events, the publisher is woken once per statement (the
-- functions of 0003-0006 also notify; PostgreSQL folds the duplicates of
-- one transaction into one notification).
CREATE FUNCTION ws__events_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ws_events', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER events_inserted AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION ws__events_inserted();

-- The JSON every reader gets: {"id": seq, "at", "kind", "rollout", "tenant",
-- "payload", "origin"} (rollout and tenant null when the event has none).
CREATE FUNCTION ws__event_doc(p_seq bigint, p_at timestamptz, p_kind text, p_rollout bigint,
                              p_tenant text, p_payload jsonb) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', p_seq, 'at', ws__rfc3339(p_at), 'kind', p_kind,
                              'rollout', p_rollout, 'tenant', p_tenant, 'payload', p_payload,
                              'origin', (SELECT o.origin FROM events_origin o))::text
$$;

-- Stamps up to p_limit unstamped events, oldest id first, and returns them
-- in seq order.  Listeners on "ws_events_seq" are told the highest seq.
CREATE FUNCTION ws_events_stamp(p_limit integer)
RETURNS TABLE (seq bigint, tenant text, rollout bigint, doc text)
LANGUAGE plpgsql AS $$
DECLARE
    v_base bigint;
    v_top  bigint;
BEGIN
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 10000 THEN
        RAISE EXCEPTION USING ERRCODE = 'WSE04',
            MESSAGE = format('ws_events_stamp: limit %s is out of range (1-10000)', p_limit);
    END IF;
    -- Held to the commit: the next stamper reads max(seq) after ours is
    -- visible.  Each statement below takes a new snapshot (READ COMMITTED).
    PERFORM pg_advisory_xact_lock(7310594562004931);
    SELECT COALESCE(max(e.seq), 0) INTO v_base FROM events e;
    RETURN QUERY
    WITH todo AS (
        SELECT e.id, row_number() OVER (ORDER BY e.id) AS rn
          FROM events e
         WHERE e.published_at IS NULL
         ORDER BY e.id
         LIMIT p_limit
    ), upd AS (
        UPDATE events e SET seq = v_base + t.rn, published_at = clock_timestamp()
          FROM todo t
         WHERE e.id = t.id
        RETURNING e.seq, e.at, e.kind, e.rollout_id, e.tenant, e.payload
    )
    SELECT u.seq, u.tenant, u.rollout_id, ws__event_doc(u.seq, u.at, u.kind, u.rollout_id, u.tenant, u.payload)
      FROM upd u
     ORDER BY u.seq;
    SELECT max(e.seq) INTO v_top FROM events e;
    IF v_top > v_base THEN
        PERFORM pg_notify('ws_events_seq', v_top::text);
    END IF;
END
$$;

-- Stamped events after p_after in seq order, at most p_limit; p_rollout and
-- p_tenants (a tenant token's slugs) filter when not NULL.  A tenant-scoped
-- reader gets only events that name one of its tenants.
CREATE FUNCTION ws_events_since(p_after bigint, p_limit integer, p_rollout bigint, p_tenants text[])
RETURNS TABLE (seq bigint, tenant text, rollout bigint, doc text)
LANGUAGE sql STABLE AS $$
    SELECT e.seq, e.tenant, e.rollout_id, ws__event_doc(e.seq, e.at, e.kind, e.rollout_id, e.tenant, e.payload)
      FROM events e
     WHERE e.seq > p_after
       AND (p_rollout IS NULL OR e.rollout_id = p_rollout)
       AND (p_tenants IS NULL OR e.tenant = ANY (p_tenants))
     ORDER BY e.seq
     LIMIT LEAST(GREATEST(p_limit, 1), 10000)
$$;

-- The highest stamped seq (0 when none): where a live reader starts; and
-- the origin its Redis messages carry.
CREATE FUNCTION ws_events_top(OUT top bigint, OUT origin text)
LANGUAGE sql STABLE AS $$
    SELECT COALESCE((SELECT max(e.seq) FROM events e), 0), (SELECT o.origin FROM events_origin o)
$$;
