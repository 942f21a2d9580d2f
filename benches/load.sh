#!/usr/bin/env bash
# load.sh: HTTP load of rtconfig's sidecar against the hyper floor, side by side in one run.
#
# Builds `rtconfig` and `hyper-floor` (../shared/peers/hyper-floor) in release, then for each of
# N rounds (default 3) starts each server on a free loopback port, sends one request, reads its
# idle RSS, warms it up for 2 s (not counted), runs `wrk -t1 -c32 -d10s --latency` against
# GET /v1/configs/SITE_NAME while sampling RSS every 0.5 s, and stops it. The two servers
# alternate and never run at the same time; the order flips every round (r, f | f, r | r, f) so
# that a drift in the machine's load does not favour one of them. It prints every round, the
# median of the rounds, and the median of the per-round ratios rtconfig/floor, with the targets
# of issue 2 item 9 (req/s >= 0.95x, p99 <= 1.2x, idle RSS <= 10 MiB). It also prints the
# server's CPU time (user + system, /proc/PID/stat) per request over the measured load: on a
# shared machine it moves much less with other people's load than req/s and p99 do.
#
# Usage: benches/load.sh [options]
#   --rounds N          rounds (default 3)
#   --duration S        seconds of measured load per server and round (default 10)
#   --connections N     wrk connections (default 32)
#   --warmup S          warm-up seconds, not counted (default 2)
#   --pinned            wrk on CPU 0, every thread of the server on CPU 1 (as the peers' pinned mode)
#   --no-build          use the binaries already built
#   --rtconfig-env K=V  extra environment for rtconfig only (repeatable), e.g. TOKIO_WORKER_THREADS=1
#   --rtconfig-bin PATH load this rtconfig binary instead of building one (e.g. an older build)
#   --peers             afterwards, also run the peers' own run-all.sh with rtconfig as --extra
#                       (PEERS_ONLY, default hyper-floor,nginx-static; unpinned mode only)
#   --peers-only        only the peers' run, not the rounds
#
# Environment: RTCONFIG_PEERS_DIR (the peers folder; default: ../shared/peers from the repo, or
# the first shared/peers found above it), PEERS_WORKDIR (writable copy when the peers folder is
# read-only; default ${TMPDIR:-/tmp}/rtconfig-peers, the same place run-all.sh uses),
# CARGO_TARGET_DIR (honoured for rtconfig), LOAD_RESULTS (where raw outputs go; default
# <target>/load/<UTC time>).
#
# Only loopback addresses are used; every process started here is stopped by PID on exit.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=3 DURATION=10 CONNECTIONS=32 WARMUP=2 PINNED=0 BUILD=1 PEERS=0 ROUNDS_ON=1
RT_ENV=() RT_BIN_ARG=""

while (($#)); do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --pinned) PINNED=1; shift ;;
    --no-build) BUILD=0; shift ;;
    --rtconfig-env) RT_ENV+=("$2"); shift 2 ;;
    --rtconfig-bin) RT_BIN_ARG=$2; shift 2 ;;
    --peers) PEERS=1; shift ;;
    --peers-only) PEERS=1; ROUNDS_ON=0; shift ;;
    -h|--help) sed -n '2,/^# Only loopback/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ------------------------------------------------------------ tools -------
apt_updated=0
need_apt() { # need_apt COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  if ((apt_updated == 0)); then
    log "apt-get update"
    apt-get update -qq
    apt_updated=1
  fi
  log "apt-get install $2"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}
need_apt wrk wrk
need_apt curl curl
need_apt ss iproute2
need_apt taskset util-linux
need_apt top procps

# ------------------------------------------------------------ peers dir ---
find_peers() {
  local d
  if [[ -n ${RTCONFIG_PEERS_DIR:-} ]]; then
    [[ -f $RTCONFIG_PEERS_DIR/hyper-floor/Cargo.toml ]] || die "RTCONFIG_PEERS_DIR=$RTCONFIG_PEERS_DIR has no hyper-floor/"
    (cd "$RTCONFIG_PEERS_DIR" && pwd)
    return
  fi
  # ../shared/peers relative to the repo (as laid out in production), else the nearest
  # shared/peers above the repo (a worktree somewhere deeper).
  d=$REPO
  while [[ $d != / ]]; do
    if [[ -f $d/../shared/peers/hyper-floor/Cargo.toml ]]; then
      (cd "$d/../shared/peers" && pwd)
      return
    fi
    d=$(dirname "$d")
  done
  die "cannot find shared/peers above $REPO: set RTCONFIG_PEERS_DIR"
}
PEERS_DIR=$(find_peers)

# ------------------------------------------------------------ builds ------
target_dir() {
  cargo metadata --format-version 1 --no-deps --manifest-path "$REPO/Cargo.toml" \
    | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4
}
RT_TARGET=$(target_dir)
RT_BIN=${RT_BIN_ARG:-$RT_TARGET/release/rtconfig}

# hyper-floor is built where it is when the peers folder is writable, else in a writable copy
# (the same copy run-all.sh makes, so one build serves both). The mode bits are checked, not
# `-w`: root passes `-w` even on a folder laid out read-only on purpose.
if [[ -n $(find "$PEERS_DIR" -maxdepth 0 -perm -u+w) && -w $PEERS_DIR ]]; then
  FLOOR_DIR=$PEERS_DIR/hyper-floor
else
  FLOOR_DIR=${PEERS_WORKDIR:-${TMPDIR:-/tmp}/rtconfig-peers}/hyper-floor
fi
FLOOR_BIN=$FLOOR_DIR/target/release/hyper-floor

if ((BUILD)); then
  if [[ -z $RT_BIN_ARG ]]; then
    log "cargo build --release (rtconfig)"
    (cd "$REPO" && cargo build --release --quiet --bin rtconfig)
  fi
  if [[ $FLOOR_DIR != "$PEERS_DIR/hyper-floor" ]]; then
    mkdir -p "$FLOOR_DIR"
    cp -r "$PEERS_DIR/hyper-floor/Cargo.toml" "$PEERS_DIR/hyper-floor/Cargo.lock" "$PEERS_DIR/hyper-floor/src" "$FLOOR_DIR/"
    chmod -R u+w "$FLOOR_DIR"
  fi
  log "cargo build --release (hyper-floor in $FLOOR_DIR)"
  (cd "$FLOOR_DIR" && env -u CARGO_TARGET_DIR cargo build --release --quiet)
fi
[[ -x $RT_BIN ]] || die "$RT_BIN is missing (run without --no-build)"
[[ -x $FLOOR_BIN ]] || die "$FLOOR_BIN is missing (run without --no-build)"

# ------------------------------------------------------------ processes ---
STARTED=()
alive() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) || return 1; [[ -n $s && $s != Z* ]]; }
stop_pid() {
  local pid=$1 i keep=()
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 60; i++)); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  wait "$pid" 2>/dev/null || true
  for i in "${STARTED[@]}"; do [[ $i == "$pid" ]] || keep+=("$i"); done
  STARTED=("${keep[@]}")
}
TMP_DIRS=()
cleanup() {
  local pid d
  for pid in "${STARTED[@]}"; do stop_pid "$pid"; done
  for d in "${TMP_DIRS[@]}"; do rm -rf "$d"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! ss -ltnH "sport = :$1" | grep -q .; }
free_port() { # a free loopback port below the ephemeral range
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 12000))
    port_free "$p" && { echo "$p"; return 0; }
  done
  die "no free port found"
}
wait_http() {
  local i
  for ((i = 0; i < 100; i++)); do
    curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; } # utime + stime
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
sample_rss_max() { # PID SECONDS OUTFILE (bounded)
  local pid=$1 end=$((SECONDS + $2)) max=0 v
  while ((SECONDS < end)); do
    v=$(rss_kb "$pid"); v=${v:-0}
    ((v > max)) && max=$v
    sleep 0.5
  done
  echo "$max" > "$3"
}
busy_others() { # other processes using >= 5% CPU right now
  top -b -n 2 -d 1 -w 200 2>/dev/null | awk '/^top -/ {n++}
    n == 2 && $1 ~ /^[0-9]+$/ && $9 + 0 >= 5 {printf "%s(%s%%) ", $12, $9}'
}

# wrk output -> "req_s p50_us p99_us errors"
parse_wrk() {
  awk '
    function us(v) {
      if (v ~ /us$/) return v + 0
      if (v ~ /ms$/) return (v + 0) * 1000
      if (v ~ /s$/) return (v + 0) * 1000000
      return v + 0
    }
    /^Requests\/sec:/ {rps = $2}
    $1 == "50%" {p50 = us($2)}
    $1 == "99%" {p99 = us($2)}
    /Socket errors:/ {gsub(/,/, ""); err += $4 + $6 + $8 + $10}
    /Non-2xx or 3xx responses:/ {err += $5}
    END {printf "%.0f %.0f %.0f %d\n", rps, p50, p99, err}
  ' "$1"
}

median() { sort -g | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else printf "%.6g\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

# ------------------------------------------------------------ rounds ------
if [[ -z ${LOAD_RESULTS:-} ]]; then
  LOAD_RESULTS=$RT_TARGET/load/$(date -u +%Y%m%dT%H%M%SZ)
fi
RES=$LOAD_RESULTS
mkdir -p "$RES"
ROWS=$RES/rounds.tsv
printf 'round\tserver\treq_s\tp50_us\tp99_us\terrors\trss_idle_kb\trss_load_kb\thwm_kb\tcpu_us_per_req\n' > "$ROWS"
if ((PINNED)) && (($(nproc) < 2)); then log "one CPU: --pinned ignored"; PINNED=0; fi

# run_one ROUND NAME: start, first request, idle RSS, warm-up, measured load, stop
run_one() {
  local round=$1 name=$2 port pid url data admin probe raw
  port=$(free_port)
  url=http://127.0.0.1:$port/v1/configs/SITE_NAME
  if [[ $name == rtconfig ]]; then
    data=$(mktemp -d "${TMPDIR:-/tmp}/rtconfig-load.XXXXXX")
    TMP_DIRS+=("$data")
    admin=$(free_port); probe=$(free_port)
    env RUST_LOG=warn "${RT_ENV[@]}" "$RT_BIN" dev --schema-dir "$REPO/config" --data-dir "$data" \
      --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" --probe-listen "127.0.0.1:$probe" \
      > "$RES/$name.$round.log" 2>&1 &
  else
    "$FLOOR_BIN" "$port" > "$RES/$name.$round.log" 2>&1 &
  fi
  pid=$!
  STARTED+=("$pid")
  wait_http "$url" || die "$name did not answer on $url (see $RES/$name.$round.log)"
  sleep 0.5
  local idle; idle=$(rss_kb "$pid")
  local wrk=(wrk -t1 -c"$CONNECTIONS" --latency)
  if ((PINNED)); then
    taskset -a -cp 1 "$pid" >/dev/null
    wrk=(taskset -c 0 "${wrk[@]}")
  fi
  timeout $((WARMUP + 10)) "${wrk[@]}" -d"${WARMUP}s" "$url" > /dev/null 2>&1 || true
  local how=""; ((PINNED)) && how=", pinned"
  log "round $round: $name  ($url, ${DURATION}s, $CONNECTIONS connections$how)"
  raw=$RES/$name.$round.wrk.txt
  sample_rss_max "$pid" "$DURATION" "$RES/$name.$round.rss" &
  local sampler=$! ticks0 ticks1
  ticks0=$(cpu_ticks "$pid")
  timeout $((DURATION + 20)) "${wrk[@]}" -d"${DURATION}s" "$url" > "$raw" 2>&1 || true
  ticks1=$(cpu_ticks "$pid")
  wait "$sampler" || true
  local load hwm
  load=$(cat "$RES/$name.$round.rss")
  hwm=$(hwm_kb "$pid")
  stop_pid "$pid"
  read -r rps p50 p99 err < <(parse_wrk "$raw")
  ((rps > 0)) || die "no wrk result for $name (see $raw)"
  # server CPU (user + system) per request over the measured load, in microseconds
  local cpu_us
  cpu_us=$(awk -v t=$((ticks1 - ticks0)) -v hz="$(getconf CLK_TCK)" -v d="$DURATION" -v r="$rps" \
    'BEGIN {printf "%.2f", t / hz * 1e6 / (r * d)}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$name" "$rps" "$p50" "$p99" "$err" "$idle" "$load" "$hwm" "$cpu_us" >> "$ROWS"
}

fmt_table() {
  awk -F'\t' 'NR > 1 {
      printf "  %-5s %-9s %10s %9.0f %9.0f %6s %9.1f %9.1f %9.1f %9.2f\n", $1, $2, $3, $4, $5, $6, $7 / 1024, $8 / 1024, $9 / 1024, $10
    }' "$ROWS"
}

col() { # col SERVER FIELD: that column of every round of SERVER
  awk -F'\t' -v s="$1" -v f="$2" 'NR > 1 && $2 == s {print $f}' "$ROWS"
}

if ((ROUNDS_ON)); then
  log "results in $RES"
  log "rtconfig: $RT_BIN"
  log "floor:    $FLOOR_BIN"
  BUSY_START=$(busy_others)
  for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2)); then order=(rtconfig floor); else order=(floor rtconfig); fi
    for name in "${order[@]}"; do run_one "$r" "$name"; done
  done
  BUSY_END=$(busy_others)

  {
    echo
    echo "rtconfig vs hyper-floor: wrk -t1 -c$CONNECTIONS -d${DURATION}s --latency, GET /v1/configs/SITE_NAME, $ROUNDS rounds$( ((PINNED)) && echo ', pinned (wrk CPU 0, server CPU 1)')"
    ((${#RT_ENV[@]})) && echo "rtconfig environment: ${RT_ENV[*]}"
    echo "machine: $(nproc) CPU, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(uname -r)"
    echo "other processes >= 5% CPU: start: ${BUSY_START:-none}; end: ${BUSY_END:-none}"
    echo
    printf '  %-5s %-9s %10s %9s %9s %6s %9s %9s %9s %9s\n' round server req/s 'p50 us' 'p99 us' errors 'idle MiB' 'load MiB' 'HWM MiB' 'CPU us/r'
    fmt_table
    echo
    for s in rtconfig floor; do
      printf '  median %-9s req/s %s  p50 %s us  p99 %s us  idle RSS %s MiB  load RSS (max) %s MiB  server CPU %s us/request\n' "$s" \
        "$(col "$s" 3 | median)" "$(col "$s" 4 | median)" "$(col "$s" 5 | median)" \
        "$(col "$s" 7 | median | awk '{printf "%.1f", $1 / 1024}')" \
        "$(col "$s" 8 | sort -g | tail -1 | awk '{printf "%.1f", $1 / 1024}')" \
        "$(col "$s" 10 | median)"
    done
    echo
    # per-round ratios rtconfig/floor, then their median
    rr=$(paste <(col rtconfig 3) <(col floor 3) | awk '{printf "%.3f ", $1 / $2}')
    pr=$(paste <(col rtconfig 5) <(col floor 5) | awk '{printf "%.3f ", $1 / $2}')
    rr_med=$(tr ' ' '\n' <<< "$rr" | grep . | median)
    pr_med=$(tr ' ' '\n' <<< "$pr" | grep . | median)
    idle_med=$(col rtconfig 7 | median | awk '{printf "%.1f", $1 / 1024}')
    verdict() { awk -v v="$1" -v t="$2" -v op="$3" 'BEGIN {ok = (op == ">=") ? v >= t : v <= t; print ok ? "MET" : "MISSED"}'; }
    printf '  req/s ratio rtconfig/floor per round: %s-> median %s   (target >= 0.95: %s)\n' "$rr" "$rr_med" "$(verdict "$rr_med" 0.95 '>=')"
    printf '  p99 ratio rtconfig/floor per round:   %s-> median %s   (target <= 1.2: %s)\n' "$pr" "$pr_med" "$(verdict "$pr_med" 1.2 '<=')"
    cr=$(paste <(col rtconfig 10) <(col floor 10) | awk '{printf "%.3f ", $1 / $2}')
    printf '  server CPU per request rtconfig/floor:  %s-> median %s   (no target; less sensitive to other load)\n' "$cr" "$(tr ' ' '\n' <<< "$cr" | grep . | median)"
    printf '  rtconfig idle RSS (after the first request), median: %s MiB   (target <= 10: %s)\n' "$idle_med" "$(verdict "$idle_med" 10 '<=')"
    echo
    echo "  raw wrk outputs and rounds.tsv: $RES"
  } | tee "$RES/summary.txt"
fi

# ------------------------------------------------------------ peers -------
if ((PEERS)); then
  [[ -x $PEERS_DIR/run-all.sh ]] || die "$PEERS_DIR/run-all.sh not found"
  p=$(free_port); a=$(free_port); q=$(free_port)
  data=$(mktemp -d "${TMPDIR:-/tmp}/rtconfig-load.XXXXXX")
  TMP_DIRS+=("$data")
  log "peers' run-all.sh with rtconfig as the extra target (${PEERS_ONLY:-hyper-floor,nginx-static})"
  # run-all.sh copies itself to a writable folder when it cannot write its own, but as root it
  # always can: make the copy here so that nothing is written into a read-only peers folder.
  runner=$PEERS_DIR/run-all.sh
  if [[ -z $(find "$PEERS_DIR" -maxdepth 0 -perm -u+w) ]]; then
    work=${PEERS_WORKDIR:-${TMPDIR:-/tmp}/rtconfig-peers}
    mkdir -p "$work"
    cp -r "$PEERS_DIR"/. "$work"/ 2>/dev/null || true
    chmod -R u+w "$work"
    runner=$work/run-all.sh
  fi
  bash "$runner" --modes unpinned --only "${PEERS_ONLY:-hyper-floor,nginx-static}" \
    --duration "$DURATION" --connections "$CONNECTIONS" \
    --extra-name rtconfig \
    --extra-cmd "env RUST_LOG=warn $RT_BIN dev --schema-dir $REPO/config --data-dir $data --listen 127.0.0.1:$p --admin-listen 127.0.0.1:$a --probe-listen 127.0.0.1:$q" \
    "http://127.0.0.1:$p/v1/configs/SITE_NAME"
fi
