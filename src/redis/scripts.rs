//! The Lua scripts: every multi-key step on Redis is one of these, so it is atomic (and, thanks
//! to the `{ns}` hash tag, atomic on a cluster too).
//!
//! Writers (relay): [`APPLY`] one changeset idempotently with gap detection, [`RELAY_TICK`] read
//! meta and refresh `relay_at`, [`SWAP`] finish a rebuild by renaming the temp keys in.
//! Readers (sidecar): [`SYNC_READ`] meta + Redis time + the log after a version in one step, so a
//! rebuild in between cannot mix epochs; [`FULL_READ`] meta + every item as one image.
//!
//! Every writer checks `cluster_id` (never write over another deployment) and the fencing
//! `term` (a paused ex-leader cannot write after a new leader wrote).

use std::sync::LazyLock;

use fred::types::scripts::Script;

/// `local m = HMGET meta <every field of `wire::META_FIELDS`, in order>`: the one field list of
/// `SYNC_READ`, `FULL_READ` and `RELAY_TICK`, decoded by `wire::Meta::decode`. `m[3]` is
/// `version`, `m[4]` `complete`, `m[10]` `term`.
macro_rules! hmget_meta {
    () => {
        "local m = redis.call('HMGET', KEYS[1], 'cluster_id', 'epoch', 'version', 'complete', 'relay_at', 'count', 'generation', 'schema_hash', 'relay_interval_ms', 'term', 'content_hash')\n"
    };
}

/// `KEYS`: meta, items, log. `ARGV`: cluster_id, epoch, term, version, changes JSON (log entry),
/// log maxlen, channel, schema_hash, content_hash (the image's after this change), hint payload
/// (`""`: none), the publish command (`SPUBLISH` for sharded Pub/Sub, anything else `PUBLISH`;
/// [`super::PubSub`]), then pairs `key, envelope` (`""` deletes the item). Publishes the hint
/// `<epoch>:<version>:<generation>:<content_hash>[ <payload>]` (`wire::Hint`). Returns `OK`,
/// `DUP` (already applied), `GAP`, `NOT_READY` (no complete image), `EPOCH`, `FOREIGN` or
/// `FENCED`.
pub const APPLY_LUA: &str = r#"
local m = redis.call('HMGET', KEYS[1], 'cluster_id', 'epoch', 'version', 'complete', 'term', 'generation')
if not m[1] then return 'NOT_READY' end
if m[1] ~= ARGV[1] then return 'FOREIGN' end
if tonumber(m[5] or '0') > tonumber(ARGV[3]) then return 'FENCED' end
if m[4] ~= '1' then return 'NOT_READY' end
if m[2] ~= ARGV[2] then return 'EPOCH' end
local cur = tonumber(m[3] or '0')
local v = tonumber(ARGV[4])
if v <= cur then return 'DUP' end
if v ~= cur + 1 then return 'GAP' end
-- The log first: it is the step that can fail (an id not above the last), and nothing is
-- changed yet if it does.
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], ARGV[4] .. '-0', 'epoch', ARGV[2], 'changes', ARGV[5])
for i = 12, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[2], ARGV[i])
  else
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  end
end
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'version', ARGV[4], 'count', redis.call('HLEN', KEYS[2]),
  'term', ARGV[3], 'relay_at', t[1] .. '.' .. string.format('%06d', tonumber(t[2])),
  'schema_hash', ARGV[8], 'content_hash', ARGV[9])
local hint = ARGV[2] .. ':' .. ARGV[4] .. ':' .. (m[6] or '0') .. ':' .. ARGV[9]
if ARGV[10] ~= '' then hint = hint .. ' ' .. ARGV[10] end
redis.call(ARGV[11] == 'SPUBLISH' and 'SPUBLISH' or 'PUBLISH', ARGV[7], hint)
return 'OK'
"#;

/// `KEYS`: meta. `ARGV`: cluster_id, term, relay interval in ms, the ledger's epoch and
/// version as just read, and the milliseconds since that read began. Returns the meta fields
/// (as `SYNC_READ`) as they were before this tick; refreshes `relay_at`, `relay_interval_ms`
/// (so sidecars know when the relay is late) and `term` when the image is ours, complete, not
/// fenced, and *covers the ledger* (same epoch, version ≥ the ledger's). `relay_at` is then
/// Redis `TIME` minus the time since the ledger read began: the moment as of which Redis
/// provably held every acknowledged write — what a sidecar's `X-Config-Age` counts from.
pub const RELAY_TICK_LUA: &str = concat!(
    hmget_meta!(),
    r#"if m[1] == ARGV[1] and m[4] == '1' and tonumber(m[10] or '0') <= tonumber(ARGV[2])
  and tonumber(m[2] or '-1') == tonumber(ARGV[4]) and tonumber(m[3] or '-1') >= tonumber(ARGV[5]) then
  local t = redis.call('TIME')
  local us = tonumber(t[2]) - 1000 * tonumber(ARGV[6])
  local s = tonumber(t[1])
  while us < 0 do
    us = us + 1000000
    s = s - 1
  end
  redis.call('HSET', KEYS[1], 'relay_at', s .. '.' .. string.format('%06d', us),
    'term', ARGV[2], 'relay_interval_ms', ARGV[3])
end
return m
"#
);

/// `KEYS`: meta, items, log, items_tmp, log_tmp. `ARGV`: cluster_id, epoch, version, term,
/// count, channel, schema_hash, bump_generation (`1`/`0`), content_hash, the publish command (as
/// [`APPLY`]'s). Renames the temp keys over the live
/// ones (or deletes the live ones when a temp key is absent: an empty namespace), then marks
/// the image complete and publishes. Returns `OK`, `FOREIGN`, `FENCED` or `COUNT` (the temp
/// image does not have `count` items; nothing was changed).
pub const SWAP_LUA: &str = r#"
local m = redis.call('HMGET', KEYS[1], 'cluster_id', 'term')
if m[1] and m[1] ~= ARGV[1] then return 'FOREIGN' end
if tonumber(m[2] or '0') > tonumber(ARGV[4]) then return 'FENCED' end
if redis.call('HLEN', KEYS[4]) ~= tonumber(ARGV[5]) then return 'COUNT' end
if redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('RENAME', KEYS[4], KEYS[2])
else
  redis.call('DEL', KEYS[2])
end
if redis.call('EXISTS', KEYS[5]) == 1 then
  redis.call('RENAME', KEYS[5], KEYS[3])
else
  redis.call('DEL', KEYS[3])
end
local generation = redis.call('HGET', KEYS[1], 'generation') or '0'
if ARGV[8] == '1' then
  generation = tostring(redis.call('HINCRBY', KEYS[1], 'generation', 1))
end
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'cluster_id', ARGV[1], 'epoch', ARGV[2], 'version', ARGV[3],
  'complete', '1', 'count', ARGV[5], 'term', ARGV[4],
  'relay_at', t[1] .. '.' .. string.format('%06d', tonumber(t[2])), 'schema_hash', ARGV[7], 'content_hash', ARGV[9])
redis.call(ARGV[10] == 'SPUBLISH' and 'SPUBLISH' or 'PUBLISH', ARGV[6],
  ARGV[2] .. ':' .. ARGV[3] .. ':' .. generation .. ':' .. ARGV[9])
return 'OK'
"#;

/// `KEYS`: meta, log. `ARGV`: after_version (`-1`: no log wanted), max entries. Returns
/// `{meta fields, TIME, log entries after after_version}`; the meta fields are
/// `wire::META_FIELDS`.
pub const SYNC_READ_LUA: &str = concat!(
    hmget_meta!(),
    r#"local t = redis.call('TIME')
local log = {}
local after = tonumber(ARGV[1])
if after >= 0 and m[3] and m[4] == '1' and tonumber(m[3]) > after then
  log = redis.call('XRANGE', KEYS[2], '(' .. ARGV[1] .. '-0', '+', 'COUNT', ARGV[2])
end
return {m, t, log}
"#
);

/// `KEYS`: meta, items. Returns `{meta fields (as SYNC_READ), HGETALL items}`: one consistent
/// image (`wire::Image`).
pub const FULL_READ_LUA: &str = concat!(
    hmget_meta!(),
    r#"return {m, redis.call('HGETALL', KEYS[2])}
"#
);

/// The django-constance mirror's compare-and-set. `KEYS`: constance's key, the record hash
/// (`keys::constance_record`). `ARGV`: record field (the key name), expected and new state as
/// records (`-` missing, `=` + bytes), channel (`""`: none), message. Writes (or deletes) the
/// key only if it still holds the expected state, records the new state, publishes the key's
/// name. Returns 1, or 0 when the key changed in between (nothing written).
pub const CONSTANCE_CAS_LUA: &str = r#"
local cur = redis.call('GET', KEYS[1])
local seen = '-'
if cur then seen = '=' .. cur end
if seen ~= ARGV[2] then return 0 end
if ARGV[3] == '-' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], string.sub(ARGV[3], 2))
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
return 1
"#;

pub static CONSTANCE_CAS: LazyLock<Script> = LazyLock::new(|| Script::from_lua(CONSTANCE_CAS_LUA));
pub static APPLY: LazyLock<Script> = LazyLock::new(|| Script::from_lua(APPLY_LUA));
pub static RELAY_TICK: LazyLock<Script> = LazyLock::new(|| Script::from_lua(RELAY_TICK_LUA));
pub static SWAP: LazyLock<Script> = LazyLock::new(|| Script::from_lua(SWAP_LUA));
pub static SYNC_READ: LazyLock<Script> = LazyLock::new(|| Script::from_lua(SYNC_READ_LUA));
pub static FULL_READ: LazyLock<Script> = LazyLock::new(|| Script::from_lua(FULL_READ_LUA));

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::wire::META_FIELDS;

    #[test]
    fn every_meta_reader_asks_for_the_fields_meta_decodes() {
        let fields: Vec<String> = META_FIELDS.iter().map(|f| format!("'{f}'")).collect();
        let expected = format!(
            "local m = redis.call('HMGET', KEYS[1], {})\n",
            fields.join(", ")
        );
        assert_eq!(hmget_meta!(), expected);
        for script in [SYNC_READ_LUA, FULL_READ_LUA, RELAY_TICK_LUA] {
            assert!(script.starts_with(&expected), "{script}");
            assert_eq!(script.matches("HMGET").count(), 1, "{script}");
        }
        assert_eq!(META_FIELDS[2], "version");
        assert_eq!(META_FIELDS[3], "complete");
        assert_eq!(META_FIELDS[9], "term");
        assert_eq!(META_FIELDS[10], "content_hash");
    }
}
