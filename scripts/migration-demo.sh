#!/usr/bin/env bash
# docs/MIGRATING_FROM_CONSTANCE.md end to end: a live Django + django-constance shop (the project
# in tests/constance) on a spawned redis-server moves to rtconfig step by step, with the real
# `rtconfig` binary (admin + sidecar), checking at every step that no value is lost either way.
#
#   scripts/migration-demo.sh            # needs target/debug/rtconfig and target/pyvenv (scripts/test)
#   RTCONFIG_BIN=… PYTHON=… scripts/migration-demo.sh
#
# Spawns everything it uses on free loopback ports in a temporary directory and stops it on exit;
# touches no shared Redis. Exit 0 when every check passed, 1 at the first failed check.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
BIN=${RTCONFIG_BIN:-$root/target/debug/rtconfig}
PY=${PYTHON:-$root/target/pyvenv/bin/python}
project=$root/tests/constance
[[ -x $BIN ]] || { echo "migration-demo: $BIN is missing: cargo build" >&2; exit 1; }
[[ -x $PY ]] || { echo "migration-demo: $PY is missing: run scripts/test (it makes the venv)" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "migration-demo: redis-server is not installed" >&2; exit 1; }

work=$(mktemp -d -t rtconfig-migration-XXXXXX)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

checks=0
step() { printf '\n=== %s\n' "$*"; }
say() { printf '    %s\n' "$*"; }
ok() { checks=$((checks + 1)); printf '    ok: %s\n' "$*"; }
fail() {
    printf '\nmigration-demo: FAILED: %s\n' "$*" >&2
    for log in "$work"/*.log; do
        [[ -f $log ]] && { printf -- '--- %s (last 30 lines) ---\n' "$log" >&2; tail -n 30 "$log" >&2; }
    done
    exit 1
}
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# Polls "$@" every 0.1 s for up to $WAIT seconds (default 10).
until_true() {
    local i
    for ((i = 0; i < ${WAIT:-10} * 10; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

redis_port=$(free_port)
export CONSTANCE_REDIS_URL=redis://127.0.0.1:$redis_port/0
export CONSTANCE_REDIS_PREFIX=constance:
export PYTHONDONTWRITEBYTECODE=1
token=demo-admin-token-0123456789
admin_port=$(free_port)
admin=http://127.0.0.1:$admin_port
api=$admin/api/v1/namespaces/site
sidecar_port=$(free_port)
probe_port=$(free_port)
export RTCONFIG_URL=http://127.0.0.1:$sidecar_port

django() { (cd "$project" && "$PY" driver.py "$@"); }
manage() { (cd "$project" && "$PY" manage.py "$@"); }
admin_get() { curl -fsS -H "Authorization: Bearer $token" "$api$1"; }
admin_patch() {
    curl -fsS -X PATCH -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        -d "{\"changes\": $1, \"comment\": \"${2:-migration demo}\"}" "$api/configs" >/dev/null
}
sidecar_value() { curl -fsS "$RTCONFIG_URL/v1/configs" | jq -c ".values.$1"; }
# constance's reading of KEY (its JSON form), without constance's default write-back.
constance_value() { django peek "$1" | jq -c ".$1.json"; }
sidecar_is() { [[ $(sidecar_value "$1") == "$2" ]]; }
constance_is() { [[ $(constance_value "$1") == "$2" ]]; }

start_admin() {
    # "$@": extra flags (the mirror's)
    "$BIN" admin --data-dir "$work/ledger" --redis-url "$CONSTANCE_REDIS_URL" \
        --admin-token "$token" --listen "127.0.0.1:$admin_port" --schema-dir "$work/config" \
        "$@" >>"$work/admin.log" 2>&1 &
    admin_pid=$!
    pids+=("$admin_pid")
    local i
    for ((i = 0; i < 200; i++)); do
        curl -fsS "$admin/readyz" >/dev/null 2>&1 && return 0
        kill -0 "$admin_pid" 2>/dev/null || fail "the admin exited"
        sleep 0.1
    done
    fail "the admin did not become ready"
}
stop_admin() {
    kill "$admin_pid"
    wait "$admin_pid" 2>/dev/null || true
}

step "0. The shop as it runs today: Django + django-constance on Redis (127.0.0.1:$redis_port)"
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$work" --notify-keyspace-events KA >"$work/redis.log" 2>&1 &
pids+=("$!")
until_true redis-cli -p "$redis_port" ping || fail "redis-server did not start"
# Values operators saved over the years, through constance's API and its command.
django set SITE_NAME "'Acme Shop'" >/dev/null
django set PRICE "Decimal('12.50')" >/dev/null
django set FEATURE_LIMITS "{'uploads': 5, 'beta': True}" >/dev/null
manage constance set SESSION_TTL 02:00:00
manage constance set LAUNCH_DATE 2025-09-01
django peek >"$work/before.json"
say "constance holds: $(jq -c '{SITE_NAME: .SITE_NAME.json, PRICE: .PRICE.json, SESSION_TTL: .SESSION_TTL.json}' "$work/before.json")"

step "1. Import the definitions (rtconfig import-constance)"
mkdir -p "$work/config"
"$BIN" import-constance --python "$PY" --project-dir "$project" --settings constsite.settings \
    --namespace site --out "$work/config/site.toml" || fail "import-constance"
"$BIN" check --schema-dir "$work/config" || fail "rtconfig check"
ok "schema written and checked ($(grep -c '^\[keys\.' "$work/config/site.toml") keys)"

step "2. Run the admin with the mirror (adopt first, then mirror)"
start_admin --constance-mirror constance: --constance-namespace site --constance-channel configs:invalidate
WAIT=10 until_true bash -c "curl -fsS -H 'Authorization: Bearer $token' '$api/history' |
    jq -e '.changesets | map(select(.actor == \"django-constance\")) | length == 1'" ||
    fail "no adoption changeset (actor django-constance)"
adoption=$(admin_get /history | jq -c '.changesets[-1]')
[[ $(jq -r .comment <<<"$adoption") == "adopted from constance" ]] || fail "adoption comment: $adoption"
for key in SITE_NAME PRICE FEATURE_LIMITS SESSION_TTL LAUNCH_DATE; do
    jq -e --arg k "$key" '.changes | map(.key) | index($k) != null' <<<"$adoption" >/dev/null ||
        fail "the adoption changeset misses $key: $adoption"
done
ok "constance's values adopted as one changeset (actor django-constance, version $(jq .version <<<"$adoption"))"
django peek >"$work/after-adopt.json"
cmp -s <(jq -S . "$work/before.json") <(jq -S . "$work/after-adopt.json") ||
    fail "turning the mirror on changed what constance reads: $(diff <(jq -S . "$work/before.json") <(jq -S . "$work/after-adopt.json"))"
ok "constance reads exactly what it read before (nothing overwritten by defaults)"
say "mirror status: $(admin_get /constance | jq -c '{enabled, prefix} + (if .keys then {keys: (.keys | length)} else {} end)' 2>/dev/null || echo unavailable)"

step "3. Add sidecars next to the Django workers"
"$BIN" sidecar --schema-dir "$work/config" --namespace site --redis-url "$CONSTANCE_REDIS_URL" \
    --listen "127.0.0.1:$sidecar_port" --probe-listen "127.0.0.1:$probe_port" \
    --snapshot-path "$work/sidecar.snapshot" >>"$work/sidecar.log" 2>&1 &
pids+=("$!")
WAIT=20 until_true curl -fsS "http://127.0.0.1:$probe_port/readyz" || fail "the sidecar did not become ready"
until_true sidecar_is PRICE '"12.50"' || fail "sidecar PRICE: $(sidecar_value PRICE)"
until_true sidecar_is SITE_NAME '"Acme Shop"' || fail "sidecar SITE_NAME: $(sidecar_value SITE_NAME)"
ok "the sidecar serves the adopted values (PRICE $(sidecar_value PRICE), SESSION_TTL $(sidecar_value SESSION_TTL))"
# Both directions while both systems take writes.
admin_patch '{"SITE_NAME": "Acme (set in rtconfig)"}'
until_true constance_is SITE_NAME '"Acme (set in rtconfig)"' || fail "constance SITE_NAME: $(constance_value SITE_NAME)"
ok "a change in rtconfig reaches constance.config"
manage constance set ITEMS_PER_PAGE 40
until_true sidecar_is ITEMS_PER_PAGE 40 || fail "sidecar ITEMS_PER_PAGE: $(sidecar_value ITEMS_PER_PAGE)"
admin_get '/history?limit=1' | jq -e '.changesets[0].actor == "django-constance"' >/dev/null ||
    fail "the Django save is not in history as django-constance"
ok "a save through manage.py constance set reaches the sidecar, in history as django-constance"

step "4. Switch code to rtconfig_client.django, one service at a time"
django client >"$work/client.json" || fail "rtconfig_client.django could not read"
django peek >"$work/constance.json"
for key in SITE_NAME ITEMS_PER_PAGE PRICE LAUNCH_DATE SESSION_TTL FEATURE_LIMITS ALLOWED_HOSTS SALE_ENDS; do
    a=$(jq -c --arg k "$key" '.[$k] | {type, repr}' "$work/client.json")
    b=$(jq -c --arg k "$key" '.[$k] | {type, repr}' "$work/constance.json")
    [[ $a == "$b" ]] || fail "$key: rtconfig_client.django reads $a, constance reads $b"
done
ok "from rtconfig_client.django import config reads what constance.config reads (types included)"

step "5. Stop writing through the Django admin"
# (In a real project: remove the constance admin or its change permission; see the guide.) The
# mirror's status tells when the last adoption happened: a quiet period means nobody writes there.
before_adopted=$(admin_get '/history?actor=django-constance' | jq '.changesets | length')
admin_patch '{"PRICE": "13.00"}' "price change after the freeze"
until_true constance_is PRICE '"13.00"' || fail "constance PRICE: $(constance_value PRICE)"
after_adopted=$(admin_get '/history?actor=django-constance' | jq '.changesets | length')
[[ $before_adopted == "$after_adopted" ]] || fail "an rtconfig write was adopted back (echo)"
ok "writes go through rtconfig only; constance still follows (PRICE $(constance_value PRICE)); no echo"

step "6. Turn the mirror off"
stop_admin
start_admin
admin_patch '{"SITE_NAME": "Acme (mirror off)"}'
until_true sidecar_is SITE_NAME '"Acme (mirror off)"' || fail "sidecar SITE_NAME: $(sidecar_value SITE_NAME)"
ok "the sidecar serves rtconfig's change with the mirror off"
sleep 1
constance_is SITE_NAME '"Acme (set in rtconfig)"' ||
    fail "constance changed with the mirror off: $(constance_value SITE_NAME)"
ok "constance's keys are left as they were (no longer written)"
sidecar_is PRICE '"13.00"' && sidecar_is ITEMS_PER_PAGE 40 || fail "values lost at the cut"
ok "every value made on either side during the migration is in rtconfig"

step "Rollback drill: turn the mirror back on (step 6's rollback)"
stop_admin
start_admin --constance-mirror constance: --constance-namespace site --constance-channel configs:invalidate
until_true constance_is SITE_NAME '"Acme (mirror off)"' ||
    fail "constance was not brought up to date: SITE_NAME $(constance_value SITE_NAME)"
sidecar_is SITE_NAME '"Acme (mirror off)"' || fail "a stale constance value was adopted: $(sidecar_value SITE_NAME)"
ok "constance catches up with the change made while the mirror was off; nothing stale is adopted"

printf '\nmigration-demo: %d checks passed, %d failed\n' "$checks" 0
