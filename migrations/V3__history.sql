-- History that shows the value in effect, and indexes for the history filters (issue 9).

-- The schema default of the key when the change was committed, recorded when `old` or `new` is
-- the default (NULL), so history shows "Config Manager (default)" rather than null, even after
-- the schema's default changes. NULL in rows written before this column existed.
ALTER TABLE rtconfig_history ADD COLUMN default_value jsonb;

-- `since` / `until`: changesets of a namespace by time.
CREATE INDEX rtconfig_changesets_created ON rtconfig_changesets (namespace, created_at);

-- `q` (text in the comment, ILIKE '%…%'): a trigram index where the pg_trgm extension can be
-- had (contrib; trusted since PostgreSQL 13, so a database owner may create it). Without it
-- the filter still works, scanning the namespace's changesets newest first.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'rtconfig: pg_trgm is not available (%); history text search runs without an index', SQLERRM;
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        CREATE INDEX rtconfig_changesets_comment_trgm ON rtconfig_changesets
            USING gin (comment gin_trgm_ops);
    END IF;
END
$$;
