-- Issue 11: a write that changed nothing is remembered under its Idempotency-Key too, so the key
-- cannot be reused for another request. Such a row names the namespace's version at the time
-- and replays with no changes.
ALTER TABLE rtconfig_idempotency_keys ADD COLUMN noop boolean NOT NULL DEFAULT false;
