#!/usr/bin/env bash
# icount.sh: instructions per key read, rtconfig against the hyper floor, counted by callgrind.
#
# Instruction counts are exact and do not move with the machine's load, unlike req/s. For each
# server (`rtconfig dev`'s read port with the demo schema, then ../shared/peers/hyper-floor) it:
#   1. starts it under `valgrind --tool=callgrind` on a free loopback port and waits for an answer;
#   2. warms it up with `wrk -t1 -c8 -d1s`, then `callgrind_control --dump` (start-up and warm-up
#      go into a dump that is not counted; callgrind zeroes its counters at every dump);
#   3. runs `wrk -t1 -c8 -d2s`, dumps (I₂ instructions for R₂ requests), runs `wrk -t1 -c8 -d6s`,
#      dumps (I₆ for R₆);
#   4. instructions per request = (I₆ − I₂) / (R₆ − R₂): what a run costs whatever its length
#      (connections opened and closed, the dump itself) cancels.
# Then it prints both counts and the ratio rtconfig / floor (issue 12 item 1: target ≤ 1.25×).
# The requests are `GET /v1/configs/SITE_NAME`, the same key and connection count for both.
#
# Usage: benches/icount.sh [options]
#   --no-build          use the release binaries already built
#   --threads N         tokio worker threads of both servers (default 2, the machine's cores;
#                       both get the same number so the runtimes' costs compare)
#   --annotate N        also print the top N functions (inclusive) of rtconfig's 6 s dump
#   --rtconfig-bin PATH count this rtconfig binary instead of building one (e.g. an older build)
#   --only rtconfig|floor  count one server only (prints no ratio)
#
# Environment: RTCONFIG_PEERS_DIR (the peers folder; default ../shared/peers from the repo or the
# first shared/peers above it), PEERS_WORKDIR (writable copy of hyper-floor when the peers folder
# is read-only; default ${TMPDIR:-/tmp}/rtconfig-peers, as benches/load.sh and run-all.sh),
# ICOUNT_RESULTS (where dumps and logs go; default <target>/icount/<UTC time>).
#
# Needs valgrind (callgrind_control, callgrind_annotate), wrk, curl and ss: installed with apt-get
# when missing (as root), else it says which package to install. Only loopback is used; every
# process started here is stopped by PID on exit.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=1 THREADS=2 ANNOTATE=0 RT_BIN_ARG="" ONLY="" CONNS=8 SHORT=2 LONG=6

while (($#)); do
  case "$1" in
    --no-build) BUILD=0; shift ;;
    --threads) THREADS=$2; shift 2 ;;
    --annotate) ANNOTATE=$2; shift 2 ;;
    --rtconfig-bin) RT_BIN_ARG=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$ONLY" in ""|rtconfig|floor) ;; *) echo "--only takes rtconfig or floor" >&2; exit 2 ;; esac

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ------------------------------------------------------------ tools -------
apt_updated=0
need_apt() { # need_apt COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    die "$1 is missing: install the package $2 (e.g. sudo apt-get install $2)"
  fi
  if ((apt_updated == 0)); then
    log "apt-get update"
    apt-get update -qq
    apt_updated=1
  fi
  log "apt-get install $2"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}
need_apt valgrind valgrind
need_apt callgrind_control valgrind
need_apt wrk wrk
need_apt curl curl
need_apt ss iproute2

# ------------------------------------------------------------ peers dir ---
find_peers() {
  local d
  if [[ -n ${RTCONFIG_PEERS_DIR:-} ]]; then
    [[ -f $RTCONFIG_PEERS_DIR/hyper-floor/Cargo.toml ]] || die "RTCONFIG_PEERS_DIR=$RTCONFIG_PEERS_DIR has no hyper-floor/"
    (cd "$RTCONFIG_PEERS_DIR" && pwd)
    return
  fi
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

# ------------------------------------------------------------ builds ------
target_dir() {
  cargo metadata --format-version 1 --no-deps --manifest-path "$REPO/Cargo.toml" \
    | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4
}
RT_TARGET=$(target_dir)
RT_BIN=${RT_BIN_ARG:-$RT_TARGET/release/rtconfig}

if [[ $ONLY != rtconfig ]]; then
  PEERS_DIR=$(find_peers)
  # Built where it is when the peers folder is writable, else in the same writable copy as
  # benches/load.sh (mode bits checked: root passes `-w` on a folder read-only on purpose).
  if [[ -n $(find "$PEERS_DIR" -maxdepth 0 -perm -u+w) && -w $PEERS_DIR ]]; then
    FLOOR_DIR=$PEERS_DIR/hyper-floor
  else
    FLOOR_DIR=${PEERS_WORKDIR:-${TMPDIR:-/tmp}/rtconfig-peers}/hyper-floor
  fi
  FLOOR_BIN=$FLOOR_DIR/target/release/hyper-floor
fi

if ((BUILD)); then
  if [[ $ONLY != floor && -z $RT_BIN_ARG ]]; then
    log "cargo build --release (rtconfig)"
    (cd "$REPO" && cargo build --release --quiet --bin rtconfig)
  fi
  if [[ $ONLY != rtconfig ]]; then
    if [[ $FLOOR_DIR != "$PEERS_DIR/hyper-floor" ]]; then
      mkdir -p "$FLOOR_DIR"
      cp -r "$PEERS_DIR/hyper-floor/Cargo.toml" "$PEERS_DIR/hyper-floor/Cargo.lock" "$PEERS_DIR/hyper-floor/src" "$FLOOR_DIR/"
      chmod -R u+w "$FLOOR_DIR"
    fi
    log "cargo build --release (hyper-floor in $FLOOR_DIR)"
    (cd "$FLOOR_DIR" && env -u CARGO_TARGET_DIR cargo build --release --quiet)
  fi
fi
[[ $ONLY == floor || -x $RT_BIN ]] || die "$RT_BIN is missing (run without --no-build)"
[[ $ONLY == rtconfig || -x $FLOOR_BIN ]] || die "$FLOOR_BIN is missing (run without --no-build)"

# ------------------------------------------------------------ processes ---
STARTED=() TMP_DIRS=()
alive() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) || return 1; [[ -n $s && $s != Z* ]]; }
stop_pid() {
  local pid=$1 i
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local pid d
  for pid in "${STARTED[@]}"; do stop_pid "$pid"; done
  for d in "${TMP_DIRS[@]}"; do rm -rf "$d"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! ss -ltnH "sport = :$1" | grep -q .; }
free_port() {
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 12000))
    port_free "$p" && { echo "$p"; return 0; }
  done
  die "no free port found"
}
wait_http() { # slow under callgrind: up to 60 s
  local i
  for ((i = 0; i < 300; i++)); do
    curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}

# ------------------------------------------------------------ counting ----
if [[ -z ${ICOUNT_RESULTS:-} ]]; then
  ICOUNT_RESULTS=$RT_TARGET/icount/$(date -u +%Y%m%dT%H%M%SZ)
fi
RES=$ICOUNT_RESULTS
mkdir -p "$RES"

# Instructions in one callgrind dump: its `summary:` (or `totals:`) line.
dump_total() { awk '/^(summary|totals):/ {print $2; exit}' "$1"; }
# Requests of one wrk run ("N requests in …"), failing on errors or non-2xx answers.
wrk_requests() {
  awk '/ requests in / {n = $1} /Non-2xx|Socket errors/ {bad = bad $0 "; "}
    END {if (bad != "") {print "wrk: " bad > "/dev/stderr"; exit 1} print n + 0}' "$1"
}
# The newest dump file of PID after `callgrind_control --dump` (waits for it to be written).
dump_now() { # PID LABEL -> path of the dump
  local pid=$1 label=$2 before after i f
  before=$(ls "$RES/callgrind.$NAME".* 2>/dev/null | wc -l)
  callgrind_control --dump="$label" "$pid" > /dev/null
  for ((i = 0; i < 200; i++)); do
    after=$(ls "$RES/callgrind.$NAME".* 2>/dev/null | wc -l)
    if ((after > before)); then
      f=$(ls -t "$RES/callgrind.$NAME".* | head -1)
      # A dump is complete when its `totals:` line (written last) is there.
      grep -q '^totals:' "$f" && { echo "$f"; return 0; }
    fi
    sleep 0.1
  done
  die "no callgrind dump from $NAME (pid $pid)"
}

# count NAME -> "instructions_per_request I2 R2 I6 R6"
count() {
  NAME=$1
  local port pid url data admin probe d2 d6 r2 r6 i2 i6 cmd=()
  port=$(free_port)
  url=http://127.0.0.1:$port/v1/configs/SITE_NAME
  if [[ $NAME == rtconfig ]]; then
    data=$(mktemp -d "${TMPDIR:-/tmp}/rtconfig-icount.XXXXXX")
    TMP_DIRS+=("$data")
    admin=$(free_port); probe=$(free_port)
    cmd=("$RT_BIN" dev --schema-dir "$REPO/config"
      --data-dir "$data" --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin"
      --probe-listen "127.0.0.1:$probe")
  else
    cmd=("$FLOOR_BIN" "$port" "$THREADS")
  fi
  # The environment is set outside valgrind (callgrind does not follow an exec by default).
  env RUST_LOG=warn TOKIO_WORKER_THREADS="$THREADS" valgrind --tool=callgrind --callgrind-out-file="$RES/callgrind.$NAME.%p" \
    "${cmd[@]}" > "$RES/$NAME.log" 2>&1 &
  pid=$!
  STARTED+=("$pid")
  log "$NAME under callgrind (pid $pid) on $url"
  wait_http "$url" || die "$NAME did not answer on $url (see $RES/$NAME.log)"
  wrk -t1 -c"$CONNS" -d1s "$url" > "$RES/$NAME.warmup.wrk.txt" 2>&1 || true
  dump_now "$pid" start > /dev/null
  wrk -t1 -c"$CONNS" -d"${SHORT}s" "$url" > "$RES/$NAME.${SHORT}s.wrk.txt" 2>&1
  d2=$(dump_now "$pid" "${SHORT}s")
  wrk -t1 -c"$CONNS" -d"${LONG}s" "$url" > "$RES/$NAME.${LONG}s.wrk.txt" 2>&1
  d6=$(dump_now "$pid" "${LONG}s")
  stop_pid "$pid"
  r2=$(wrk_requests "$RES/$NAME.${SHORT}s.wrk.txt") || die "$NAME: errors in the ${SHORT}s run"
  r6=$(wrk_requests "$RES/$NAME.${LONG}s.wrk.txt") || die "$NAME: errors in the ${LONG}s run"
  i2=$(dump_total "$d2"); i6=$(dump_total "$d6")
  ((r6 > r2)) || die "$NAME: the ${LONG}s run did not answer more requests than the ${SHORT}s run ($r6 vs $r2)"
  log "$NAME: ${SHORT}s $i2 instructions / $r2 requests, ${LONG}s $i6 / $r6 (dumps $d2 $d6)"
  echo "$(((i6 - i2) / (r6 - r2))) $i2 $r2 $i6 $r6 $d6"
}

RT="" FL=""
if [[ $ONLY != floor ]]; then RT=$(count rtconfig); fi
if [[ $ONLY != rtconfig ]]; then FL=$(count floor); fi

echo
echo "instructions per GET /v1/configs/SITE_NAME (callgrind; wrk -t1 -c$CONNS, ${LONG}s run minus ${SHORT}s run; $THREADS worker threads)"
row() { # NAME per_req i2 r2 i6 r6 dump
  printf "  %-12s %8d  (${SHORT}s: %s instructions, %s requests; ${LONG}s: %s, %s)\n" "$1" "$2" "$3" "$4" "$5" "$6"
}
[[ -n $RT ]] && row rtconfig $RT
[[ -n $FL ]] && row hyper-floor $FL
if [[ -n $RT && -n $FL ]]; then
  awk -v r="${RT%% *}" -v f="${FL%% *}" 'BEGIN {printf "  ratio        %8.2fx  (target <= 1.25x, issue 12 item 1)\n", r / f}'
fi
echo "  dumps and wrk outputs: $RES"
if ((ANNOTATE > 0)) && [[ -n $RT ]]; then
  echo
  echo "rtconfig, ${LONG}s dump, top $ANNOTATE functions (inclusive):"
  callgrind_annotate --inclusive=yes "${RT##* }" 2>/dev/null | sed -n "1,$((ANNOTATE + 25))p" \
    | grep -E '^ *[0-9,]+ ' | head -n "$ANNOTATE"
fi
