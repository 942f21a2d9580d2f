#!/usr/bin/env python3
"""The driver of benches/coldstart.sh (see there for what it measures); standard library only.

Run it through coldstart.sh, which builds the binary and passes the settings in COLDSTART_*.
"""

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

BIN = os.environ["COLDSTART_BIN"]
REPO = os.environ["COLDSTART_REPO"]
RUNS = int(os.environ.get("COLDSTART_RUNS", "7"))
KEYS = int(os.environ.get("COLDSTART_KEYS", "100000"))
IDLE = float(os.environ.get("COLDSTART_IDLE", "3"))
SIDECAR_ENV = dict(
    line.split("=", 1) for line in os.environ.get("COLDSTART_ENV", "").splitlines() if "=" in line
)
# A shell command run at each idle-memory reading with PID and LOG (the sidecar's log) in its
# environment, e.g. gdb calling malloc_stats (coldstart.sh --probe); its output goes to stderr.
PROBE = os.environ.get("COLDSTART_PROBE", "")
TOKEN = "coldstart-admin-token-0123456789"
NS = "demo"
CHUNK = 1000
VALUE_PAD = "x" * 40

started = []  # every process started here, stopped on exit


def log(msg):
    print(time.strftime("[%H:%M:%S] ") + msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def spawn(args, log_path, env=None):
    out = open(log_path, "ab")
    full_env = dict(os.environ)
    full_env.setdefault("RUST_LOG", "warn")
    full_env.update(env or {})
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=full_env)
    started.append(p)
    return p


def stop(p, timeout=10):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in started:
        started.remove(p)


def raw_status(port, path):
    """HTTP/1.1 GET on a fresh connection: the status code, or None if nothing listens yet."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
            )
            head = s.recv(64)
    except (ConnectionRefusedError, ConnectionResetError, socket.timeout, OSError):
        return None
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def http(method, url, body=None, timeout=30):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def wait_until(what, check, timeout=60, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(step)
    raise SystemExit(f"timed out waiting for {what}")


def proc_memory(pid):
    """VmRSS, VmHWM, threads from /proc/PID/status and Pss (+ anon / file) from smaps_rollup, KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
                out[k] = int(v.split()[0])
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Pss", "Pss_Anon", "Pss_File"):
                out[k] = int(v.split()[0])
    return out


def top_mappings(pid, n=6):
    """The n mappings with the most resident memory: (KiB, name), from /proc/PID/smaps."""
    rows, name = {}, "?"
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if parts and "-" in parts[0] and len(parts) >= 5 and not parts[0].endswith(":"):
                name = parts[5] if len(parts) > 5 else "[anon]"
                name = os.path.basename(name) if name.startswith("/") else name
            elif parts and parts[0] == "Rss:":
                rows[name] = rows.get(name, 0) + int(parts[1])
    return sorted(((kib, nm) for nm, kib in rows.items()), reverse=True)[:n]


def probe(label, pid, log_path):
    if not PROBE:
        return
    log(f"{label}: probe (pid {pid})")
    env = dict(os.environ, PID=str(pid), LOG=log_path)
    subprocess.run(["bash", "-c", PROBE], env=env, stdout=sys.stderr, stderr=sys.stderr, timeout=120)


def big_schema(dirname, n):
    names = [f"K{i:06d}" for i in range(n)]
    with open(os.path.join(dirname, f"{NS}.toml"), "w") as f:
        f.write(f'namespace = "{NS}"\ndescription = "{n} keys (coldstart bench)"\n\n')
        f.write('[[group]]\nname = "All"\nkeys = [')
        f.write(", ".join(f'"{k}"' for k in names))
        f.write("]\n")
        for k in names:
            f.write(f'\n[keys.{k}]\ntype = "string"\ndefault = "default of {k}"\nmax_length = 200\n')
    return names


def median_range(xs):
    return f"{statistics.median(xs):.1f} [{min(xs):.1f}–{max(xs):.1f}]"


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def case(label, schema_dir, keys, redis_port, work):
    """One schema: fill, measure idle memory, then the cold starts. Returns the result rows."""
    admin_port, read_port, probe_port = free_port(), free_port(), free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}"
    admin = spawn(
        [BIN, "admin", "--data-dir", f"{work}/admin", "--redis-url", redis_url,
         "--admin-token", TOKEN, "--listen", f"127.0.0.1:{admin_port}", "--schema-dir", schema_dir],
        f"{work}/admin.log",
    )
    wait_until("the admin", lambda: raw_status(admin_port, "/readyz") == 200)
    api = f"http://127.0.0.1:{admin_port}/api/v1/namespaces/{NS}/configs"
    version = 0
    t = time.monotonic()
    if keys is None:  # the demo schema: two changes, so there is a version to restore
        version = http("PATCH", api, {"changes": {"SITE_NAME": "coldstart"}})["version"]
        version = http("PATCH", api, {"changes": {"ITEMS_PER_PAGE": 42}})["version"]
    else:
        for i in range(0, len(keys), CHUNK):
            changes = {k: f"value of {k} {VALUE_PAD}" for k in keys[i : i + CHUNK]}
            version = http("PATCH", api, {"changes": changes}, timeout=120)["version"]
    log(f"{label}: admin at version {version} ({time.monotonic() - t:.1f} s to fill)")

    snap = f"{work}/sidecar.snapshot"

    def sidecar_args(redis, snapshot):
        return [BIN, "sidecar", "--namespace", NS, "--redis-url", redis, "--schema-dir", schema_dir,
                "--listen", f"127.0.0.1:{read_port}", "--probe-listen", f"127.0.0.1:{probe_port}",
                "--snapshot-path", snapshot, "--require-snapshot"]

    def status():
        with urllib.request.urlopen(f"http://127.0.0.1:{probe_port}/status", timeout=10) as r:
            return json.loads(r.read())

    # --- idle memory, production shape (sidecar + Redis) ---
    side = spawn(sidecar_args(redis_url, snap), f"{work}/sidecar.log", SIDECAR_ENV)
    wait_until("the sidecar at the admin's version", lambda: raw_status(probe_port, "/readyz") == 200
               and status()["version"] == version, timeout=120)
    wait_until("the disk snapshot", lambda: os.path.exists(snap), timeout=30)
    with urllib.request.urlopen(f"http://127.0.0.1:{read_port}/v1/configs", timeout=30) as r:
        doc = json.loads(r.read())
    values_json = len(json.dumps(doc["values"], separators=(",", ":"), ensure_ascii=False).encode())
    time.sleep(IDLE)
    mem = proc_memory(side.pid)
    mem["top"] = top_mappings(side.pid)
    probe(f"{label}, first start", side.pid, f"{work}/sidecar.log")
    snap_bytes = os.path.getsize(snap)
    stop(side)

    # --- cold starts ---
    dead_port = free_port()  # nothing listens there: connection refused at once
    situations = [
        ("disk snapshot, Redis unreachable", f"redis://127.0.0.1:{dead_port}", snap, "disk"),
        ("disk snapshot, Redis up", redis_url, snap, None),
        ("no disk snapshot, Redis up", redis_url, f"{work}/fresh.snapshot", "redis"),
    ]
    starts = []
    for name, redis, snapshot, want_source in situations:
        times, sources = [], set()
        for run in range(RUNS):
            if snapshot.endswith("fresh.snapshot"):
                # A new pod: no disk snapshot and no compact schema beside it.
                for suffix in ("", ".prev", ".schema"):
                    if os.path.exists(snapshot + suffix):
                        os.remove(snapshot + suffix)
            t0 = time.perf_counter()
            p = spawn(sidecar_args(redis, snapshot), f"{work}/coldstart.log", SIDECAR_ENV)
            while True:
                code = raw_status(probe_port, "/readyz")
                if code == 200:
                    break
                if p.poll() is not None:
                    raise SystemExit(f"{name}: the sidecar exited ({p.returncode}); see {work}/coldstart.log")
                if time.perf_counter() - t0 > 30:
                    raise SystemExit(f"{name}: not ready after 30 s")
                time.sleep(0.0005)
            times.append((time.perf_counter() - t0) * 1000)
            st = status()
            if st["version"] != version:
                raise SystemExit(f"{name}: ready at version {st['version']}, not {version}")
            sources.add(st["source"])
            stop(p)
        if want_source and sources != {want_source}:
            raise SystemExit(f"{name}: snapshot source {sources}, expected {want_source}")
        starts.append((name, times, "/".join(sorted(sources))))
        log(f"{label}: {name}: {median_range(times)} ms")

    # --- idle memory after a restart: the disk snapshot (and its compact schema) loaded ---
    side = spawn(sidecar_args(redis_url, snap), f"{work}/sidecar.log", SIDECAR_ENV)
    wait_until("the restarted sidecar at the admin's version",
               lambda: raw_status(probe_port, "/readyz") == 200 and status()["version"] == version,
               timeout=120)
    with urllib.request.urlopen(f"http://127.0.0.1:{read_port}/v1/configs", timeout=30) as r:
        r.read()
    time.sleep(IDLE)
    mem_restart = proc_memory(side.pid)
    mem_restart["top"] = top_mappings(side.pid)
    probe(f"{label}, after a restart", side.pid, f"{work}/sidecar.log")
    stop(side)
    stop(admin)
    return {"label": label, "values_json": values_json, "mem": mem, "snap_bytes": snap_bytes,
            "starts": starts, "version": version, "mem_restart": mem_restart}


def main():
    log(f"binary {BIN}; load average {loadavg()}")
    load_start = loadavg()
    results = []
    with tempfile.TemporaryDirectory(prefix="rtconfig-coldstart-") as root:
        redis_port = free_port()
        redis = spawn(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                       "--appendonly", "no", "--dir", root], f"{root}/redis.log")
        wait_until("redis-server", lambda: _redis_ping(redis_port))
        try:
            work = f"{root}/demo"
            os.makedirs(work)
            results.append(case("demo schema (8 keys)", f"{REPO}/config", None, redis_port, work))
            if KEYS > 0:
                _redis_flush(redis_port)
                work = f"{root}/big"
                os.makedirs(work)
                schema_dir = f"{work}/schema"
                os.makedirs(schema_dir)
                names = big_schema(schema_dir, KEYS)
                results.append(case(f"{KEYS:,} keys", schema_dir, names, redis_port, work))
        finally:
            for p in list(started):
                stop(p)
    load_end = loadavg()

    target_rss = {"demo": "≤ 8 MiB", "big": "≤ 3× values' JSON"}
    print(f"\nload average {load_start} at the start, {load_end} at the end; "
          f"{RUNS} runs per cold start; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print("| schema | values' JSON | disk snapshot | VmRSS idle | Pss (anon + file) | RSS anon / file | threads | RSS ÷ values' JSON | target |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    rows = [(r, r["mem"], "first start (schema parsed)") for r in results]
    rows += [(r, r["mem_restart"], "after a restart (disk snapshot)") for r in results]
    for r, m, when in rows:
        big = not r["label"].startswith("demo")
        print(f"| {r['label']}, {when} | {r['values_json']:,} B | {r['snap_bytes']:,} B | {mib(m['VmRSS'])} | "
              f"{mib(m['Pss'])} ({mib(m['Pss_Anon'])} + {mib(m['Pss_File'])}) | "
              f"{mib(m['RssAnon'])} / {mib(m['RssFile'])} | {m['Threads']} | "
              f"{m['VmRSS'] * 1024 / r['values_json']:.1f}× | {target_rss['big' if big else 'demo']} |")
    for r, m, when in rows:
        top = ", ".join(f"{nm} {kib / 1024:.2f}" for kib, nm in m["top"])
        print(f"\n{r['label']}, {when}: resident MiB by mapping (largest first): {top}")
    print("\n| schema | cold start from exec to `/readyz` 200 | median ms [min–max] | served from | target |")
    print("|---|---|---:|---|---|")
    for r in results:
        big = not r["label"].startswith("demo")
        for name, times, source in r["starts"]:
            target = ("≤ 500 ms" if big else "≤ 50 ms") if name.startswith("disk snapshot, Redis unreachable") else ""
            print(f"| {r['label']} | {name} | {median_range(times)} | {source} | {target} |")


def _redis_cmd(port, payload):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(payload)
            return s.recv(64)
    except OSError:
        return b""


def _redis_ping(port):
    return _redis_cmd(port, b"PING\r\n").startswith(b"+PONG")


def _redis_flush(port):
    """Our own redis-server only (never 6379): the second schema starts from an empty Redis."""
    assert port != 6379
    if not _redis_cmd(port, b"FLUSHALL\r\n").startswith(b"+OK"):
        raise SystemExit("FLUSHALL on the bench's redis-server failed")


if __name__ == "__main__":
    main()
