-- rtconfig's PostgreSQL ledger (DESIGN §4). Every table is prefixed `rtconfig_` so the ledger can
-- share a database with other applications.

-- The deployment this database belongs to (one row), the relay leaders' fencing term counter,
-- and the key that fingerprints masked secrets (the same on every admin replica).
CREATE TABLE rtconfig_cluster (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    cluster_id  text NOT NULL,
    relay_term  bigint NOT NULL DEFAULT 0,
    mask_key    bytea NOT NULL CHECK (length(mask_key) = 32),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per namespace: its epoch and the version counter. Every write locks this row
-- (`SELECT … FOR UPDATE`) and bumps `version`, so versions are gap-free and commit-ordered.
CREATE TABLE rtconfig_namespaces (
    name           text PRIMARY KEY,
    epoch          bigint NOT NULL DEFAULT 1 CHECK (epoch >= 1),
    version        bigint NOT NULL DEFAULT 0 CHECK (version >= 0),
    -- The oldest version with history: 1, or the version of an adopted Redis image.
    first_version  bigint NOT NULL DEFAULT 1 CHECK (first_version >= 1),
    -- Set by the relay leader while Redis holds versions this ledger does not (a restored
    -- database): commits are refused until `rtconfig admin reconcile --force`.
    ledger_behind  boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- The current state: one row per key ever written; `value` NULL = reset to the schema default.
CREATE TABLE rtconfig_values (
    namespace  text NOT NULL REFERENCES rtconfig_namespaces (name),
    key        text NOT NULL,
    value      jsonb,
    version    bigint NOT NULL CHECK (version >= 1),
    PRIMARY KEY (namespace, key)
);

-- One row per version: who, why, from where, when. Append-only (trigger below).
CREATE TABLE rtconfig_changesets (
    namespace   text NOT NULL REFERENCES rtconfig_namespaces (name),
    version     bigint NOT NULL CHECK (version >= 1),
    epoch       bigint NOT NULL,
    actor       text NOT NULL,
    token_id    text,
    comment     text NOT NULL DEFAULT '',
    request_id  text NOT NULL DEFAULT '',
    client_ip   text,
    user_agent  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, version)
);
CREATE INDEX rtconfig_changesets_actor ON rtconfig_changesets (namespace, actor, version);

-- One row per key a changeset changed, with the old and new value. Append-only.
CREATE TABLE rtconfig_history (
    namespace  text NOT NULL,
    version    bigint NOT NULL,
    ord        integer NOT NULL,
    key        text NOT NULL,
    op         text NOT NULL CHECK (op IN ('set', 'reset')),
    old        jsonb,
    new        jsonb,
    PRIMARY KEY (namespace, version, key),
    UNIQUE (namespace, version, ord),
    FOREIGN KEY (namespace, version) REFERENCES rtconfig_changesets (namespace, version)
);
CREATE INDEX rtconfig_history_key ON rtconfig_history (namespace, key, version);

-- Idempotency-Key → the version it produced, so a retried request is answered, not repeated.
CREATE TABLE rtconfig_idempotency_keys (
    namespace    text NOT NULL REFERENCES rtconfig_namespaces (name),
    key          text NOT NULL,
    fingerprint  text NOT NULL,
    version      bigint NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, key)
);

-- History is the audit trail and the relay's outbox: never rewritten.
CREATE FUNCTION rtconfig_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'rtconfig: % is append-only; % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER rtconfig_changesets_append_only
    BEFORE UPDATE OR DELETE ON rtconfig_changesets
    FOR EACH ROW EXECUTE FUNCTION rtconfig_append_only();
CREATE TRIGGER rtconfig_changesets_no_truncate
    BEFORE TRUNCATE ON rtconfig_changesets
    FOR EACH STATEMENT EXECUTE FUNCTION rtconfig_append_only();
CREATE TRIGGER rtconfig_history_append_only
    BEFORE UPDATE OR DELETE ON rtconfig_history
    FOR EACH ROW EXECUTE FUNCTION rtconfig_append_only();
CREATE TRIGGER rtconfig_history_no_truncate
    BEFORE TRUNCATE ON rtconfig_history
    FOR EACH STATEMENT EXECUTE FUNCTION rtconfig_append_only();
