-- rtconfig's access layer (DESIGN §6 "Auth"): users, server-side sessions, API tokens and the
-- audit log, shared by every admin replica. Secrets are stored only as SHA-256 digests (session
-- ids, API tokens, recovery codes), as argon2id PHC strings (passwords) or encrypted (TOTP
-- secrets).

-- Admin users: local (password_hash) or from SSO (oidc_issuer + oidc_subject).
CREATE TABLE rtconfig_users (
    id                 text PRIMARY KEY,
    username           text NOT NULL UNIQUE,
    -- The grants as a JSON array of strings: ["admin"], ["editor:payments", "viewer"].
    grants             jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(grants) = 'array'),
    disabled           boolean NOT NULL DEFAULT false,
    password_hash      text,
    oidc_issuer        text,
    oidc_subject       text,
    -- The TOTP factor: present when totp_secret is set (encrypted with the deployment's key).
    totp_secret        text,
    totp_confirmed     boolean NOT NULL DEFAULT false,
    -- The last time step accepted: `UPDATE … WHERE totp_last_step < $step` accepts a step once.
    totp_last_step     bigint,
    -- Digests of the unused recovery codes (`array_remove` uses one).
    totp_recovery      text[] NOT NULL DEFAULT '{}',
    -- The login throttle's counts.
    fail_consecutive   integer NOT NULL DEFAULT 0,
    fail_last_at       timestamptz,
    fail_window_start  timestamptz,
    fail_in_window     integer NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    CHECK ((oidc_issuer IS NULL) = (oidc_subject IS NULL)),
    -- An SSO user is found by (issuer, subject) only.
    UNIQUE (oidc_issuer, oidc_subject)
);

-- Server-side sessions; the cookie holds the id, this table only its digest.
CREATE TABLE rtconfig_sessions (
    id_digest     text PRIMARY KEY,
    user_id       text NOT NULL REFERENCES rtconfig_users (id) ON DELETE CASCADE,
    csrf_token    text NOT NULL,
    created_at    timestamptz NOT NULL,
    -- Refreshed at most once a minute (`touch_session`).
    last_seen_at  timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    pending       text CHECK (pending IN ('totp', 'totp_enrolment')),
    ip            text,
    user_agent    text
);
CREATE INDEX rtconfig_sessions_user ON rtconfig_sessions (user_id);
CREATE INDEX rtconfig_sessions_expires ON rtconfig_sessions (expires_at);
CREATE INDEX rtconfig_sessions_last_seen ON rtconfig_sessions (last_seen_at);

-- API tokens (`Authorization: Bearer rtc_…`), found by digest.
CREATE TABLE rtconfig_tokens (
    id            text PRIMARY KEY,
    name          text NOT NULL,
    digest        text NOT NULL UNIQUE,
    grants        jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(grants) = 'array'),
    -- The creating user (its current grants cap the token); NULL: made with the CLI.
    created_by    text REFERENCES rtconfig_users (id),
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz,
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
-- A name is unique among the tokens not revoked.
CREATE UNIQUE INDEX rtconfig_tokens_live_name ON rtconfig_tokens (name) WHERE revoked_at IS NULL;
CREATE INDEX rtconfig_tokens_created ON rtconfig_tokens (created_at DESC, id DESC);

-- The audit log's id counter (one row). An append bumps it and inserts the event in one
-- statement: the row lock is held until COMMIT, so ids are gap-free and commit-ordered (a
-- sequence is neither: a rolled-back insert would burn an id).
CREATE TABLE rtconfig_audit_counter (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_id    bigint NOT NULL DEFAULT 0
);
INSERT INTO rtconfig_audit_counter DEFAULT VALUES;

-- Every auth decision that matters. Append-only (trigger below).
CREATE TABLE rtconfig_audit (
    id          bigint PRIMARY KEY CHECK (id >= 1),
    at          timestamptz NOT NULL,
    action      text NOT NULL,
    actor       text NOT NULL,
    target      text,
    ip          text,
    user_agent  text,
    request_id  text,
    details     jsonb NOT NULL DEFAULT 'null'
);
CREATE INDEX rtconfig_audit_action ON rtconfig_audit (action, id);
CREATE INDEX rtconfig_audit_actor ON rtconfig_audit (actor, id);

CREATE TRIGGER rtconfig_audit_append_only
    BEFORE UPDATE OR DELETE ON rtconfig_audit
    FOR EACH ROW EXECUTE FUNCTION rtconfig_append_only();
CREATE TRIGGER rtconfig_audit_no_truncate
    BEFORE TRUNCATE ON rtconfig_audit
    FOR EACH STATEMENT EXECUTE FUNCTION rtconfig_append_only();
