#!/usr/bin/env bash
# coldstart.sh: a sidecar's idle memory and its cold start, in the production shape (issue 12 item 5).
#
# Builds rtconfig in release (thin LTO, 16 codegen units: one build, far shorter than the fat-LTO
# profile of Cargo.toml; pass --no-build to reuse it), spawns its own redis-server on a free
# loopback port, and for each schema (the demo schema of config/, then a generated `demo`
# namespace of --keys string keys, every key set to a ~60-byte value):
#
#   1. starts `rtconfig admin --data-dir` (embedded ledger, its relay on that Redis) and fills the
#      namespace through PATCH /api/v1/namespaces/demo/configs (1,000 keys per changeset);
#   2. starts `rtconfig sidecar --snapshot-path FILE --require-snapshot` against that Redis, waits
#      until it serves the admin's version and has written its disk snapshot, sends one read,
#      lets it idle for --idle seconds and reads VmRSS, VmHWM and smaps_rollup's Pss (anonymous
#      and file-backed) from /proc; the size of the values' JSON is `{"KEY": value, …}` compact,
#      from the sidecar's own GET /v1/configs;
#   3. stops it (SIGTERM) and measures --runs cold starts from exec (time before the fork of the
#      sidecar process) to the first `/readyz` 200 (polled every 0.5 ms on a raw socket), in three
#      situations: the disk snapshot with Redis unreachable (a closed loopback port: the disk
#      path), the disk snapshot with Redis up, and no disk snapshot with Redis up (a new pod's
#      full fetch; its disk snapshot and the compact schema beside it removed before each run).
#      /status must then say where the snapshot came from and its version;
#   4. restarts it once more from its disk snapshot (the compact schema beside it: no TOML
#      parse) and reads its idle memory again, as in 2.
#
# It prints one markdown table per part with the median (and min–max) of the runs and the
# targets: idle RSS <= 8 MiB (demo), RSS <= 3x the values' JSON (--keys), cold start <= 50 ms
# (demo) and <= 500 ms (--keys), and the machine's load average at the start and the end.
#
# Usage: benches/coldstart.sh [options]
#   --runs N        cold starts per situation (default 7; the median is reported)
#   --keys N        keys of the large schema (default 100000; 0 skips it)
#   --idle S        seconds of idle before the RSS is read (default 3)
#   --no-build      use target/release/rtconfig as it is
#   --bin PATH      this rtconfig binary (implies --no-build)
#   --env K=V       extra environment for the sidecar (repeatable), e.g. TOKIO_WORKER_THREADS=1
#   --probe CMD     a shell command run at each idle-memory reading, with PID and LOG (the
#                   sidecar's log file) set; e.g. glibc's heap statistics, printed to its log:
#                   --probe 'gdb -p $PID -batch -ex "call (void) malloc_stats()" >/dev/null; tail -n 12 $LOG'
#
# Needs redis-server, python3 (standard library only) and cargo (unless --no-build). Only loopback
# addresses are used; every process started here is stopped by PID on exit, temp dirs removed.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=7 KEYS=100000 IDLE=3 BUILD=1 BIN="" SIDECAR_ENV=() PROBE=""

while (($#)); do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --keys) KEYS=$2; shift 2 ;;
    --idle) IDLE=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --bin) BIN=$2; BUILD=0; shift 2 ;;
    --env) SIDECAR_ENV+=("$2"); shift 2 ;;
    --probe) PROBE=$2; shift 2 ;;
    -h|--help) sed -n '2,/^# Needs/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v redis-server >/dev/null || die "redis-server not found (apt-get install redis-server)"
command -v python3 >/dev/null || die "python3 not found"

TARGET=${CARGO_TARGET_DIR:-$REPO/target}
if ((BUILD)); then
  log "building rtconfig (release, thin LTO, 16 codegen units)"
  (cd "$REPO" && CARGO_PROFILE_RELEASE_LTO=thin CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo build --release --bin rtconfig)
fi
BIN=${BIN:-$TARGET/release/rtconfig}
[[ -x $BIN ]] || die "no binary at $BIN (build it or pass --bin)"

export COLDSTART_BIN=$BIN COLDSTART_RUNS=$RUNS COLDSTART_KEYS=$KEYS COLDSTART_IDLE=$IDLE
export COLDSTART_REPO=$REPO COLDSTART_PROBE=$PROBE
COLDSTART_ENV=$(printf '%s\n' "${SIDECAR_ENV[@]+"${SIDECAR_ENV[@]}"}")
export COLDSTART_ENV
exec python3 "$REPO/benches/coldstart.py"
