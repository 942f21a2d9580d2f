#!/usr/bin/env python3
"""The demo site of the system rtconfig replaces, as a small app reading every value through its
own rtconfig sidecar (stdlib only).

The sidecar shares this container's network namespace (compose `network_mode: "service:demo"`,
a pod in Kubernetes), so the app reads http://127.0.0.1:7070 exactly as in a pod. One thread
follows the sidecar's Server-Sent Events stream (`GET /v1/watch`): the first `snapshot` event is
the whole state, each `change` event the keys a changeset set, each `status` event staleness. The
app keeps the current values and the change history it has seen (newest first) and relays every
update to the browsers on its own SSE stream, so the page updates live without polling.

Routes:
  GET /             the demo page (site name, theme colour, maintenance banner, welcome message,
                    items per page, change log), live through /events
  GET /api/state    JSON: {"namespace","version","epoch","stale","source","values","history"}
  GET /events       SSE: `state` events with the JSON of /api/state
  GET /healthz      200 once the sidecar has given a state, 503 before

Settings (environment): DEMO_LISTEN (default 0.0.0.0:8000), DEMO_SIDECAR_URL (default
http://127.0.0.1:7070), DEMO_HISTORY_MAX (entries kept, default 1000).
"""

import html
import json
import os
import queue
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SIDECAR = os.environ.get("DEMO_SIDECAR_URL", "http://127.0.0.1:7070").rstrip("/")
LISTEN = os.environ.get("DEMO_LISTEN", "0.0.0.0:8000")
HISTORY_MAX = int(os.environ.get("DEMO_HISTORY_MAX", "1000"))


def log(event, **fields):
    """One JSON log line on stderr."""
    fields.update(ts=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), event=event)
    print(json.dumps(fields), file=sys.stderr, flush=True)


class State:
    """The values, their change history and the browsers listening; one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.doc = None  # the sidecar's last whole state (values, version, stale, source)
        self.history = []  # newest first: {"version","at","changes"}
        self.listeners = set()

    def snapshot(self, doc):
        with self.lock:
            if self.doc is not None and doc.get("epoch") == self.doc.get("epoch"):
                old = self.doc.get("values", {})
                new = doc.get("values", {})
                changed = {k: v for k, v in new.items() if old.get(k) != v}
                if changed and doc.get("version") != self.doc.get("version"):
                    self._record(doc.get("version"), changed)
            self.doc = doc
        self.publish()

    def change(self, data):
        with self.lock:
            if self.doc is None:
                return
            self.doc["values"].update(data.get("changes", {}))
            self.doc["version"] = data.get("version")
            self.doc["epoch"] = data.get("epoch", self.doc.get("epoch"))
            self._record(data.get("version"), data.get("changes", {}))
        self.publish()

    def status(self, data):
        with self.lock:
            if self.doc is None:
                return
            self.doc["stale"] = data.get("stale")
            self.doc["source"] = data.get("source")
        self.publish()

    def _record(self, version, changes):
        at = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        self.history.insert(0, {"version": version, "at": at, "changes": changes})
        del self.history[HISTORY_MAX:]

    def view(self):
        with self.lock:
            if self.doc is None:
                return None
            out = {k: self.doc.get(k) for k in ("namespace", "epoch", "version", "stale", "source")}
            out["values"] = dict(self.doc.get("values", {}))
            out["history"] = list(self.history)
            return out

    def publish(self):
        view = self.view()
        with self.lock:
            listeners = list(self.listeners)
        for q in listeners:
            try:
                q.put_nowait(view)
            except queue.Full:
                pass  # a slow browser misses an intermediate state, never the last one


STATE = State()


def follow_sidecar():
    """Follows GET /v1/watch for ever, reconnecting with Last-Event-ID after a break."""
    last_id = None
    delay = 0.5
    while True:
        headers = {"Accept": "text/event-stream"}
        if last_id:
            headers["Last-Event-ID"] = last_id
        req = urllib.request.Request(SIDECAR + "/v1/watch?mask=secrets", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                log("sidecar_connected", url=SIDECAR)
                delay = 0.5
                event, data, ident = "message", [], None
                for raw in resp:
                    line = raw.decode("utf-8").rstrip("\r\n")
                    if line == "":
                        if data:
                            handle(event, "\n".join(data))
                            if ident:
                                last_id = ident
                        event, data, ident = "message", [], None
                    elif line.startswith(":"):
                        continue  # keep-alive comment
                    else:
                        field, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if field == "event":
                            event = value
                        elif field == "data":
                            data.append(value)
                        elif field == "id":
                            ident = value
        except (urllib.error.URLError, OSError, ValueError) as e:
            log("sidecar_unreachable", url=SIDECAR, error=str(e), retry_in=delay)
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


def handle(event, data):
    try:
        payload = json.loads(data)
    except ValueError:
        log("bad_event", sse_event=event)
        return
    if event == "snapshot":
        STATE.snapshot(payload)
    elif event == "change":
        STATE.change(payload)
        log("config_changed", version=payload.get("version"), keys=sorted(payload.get("changes", {})))
    elif event == "status":
        STATE.status(payload)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rtconfig demo</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font-family:system-ui,sans-serif;margin:0;color:#222;background:#f6f7fb}
 header{padding:1rem 2rem;color:#fff;background:var(--theme,#4a6cf7)}
 main{padding:1rem 2rem;max-width:60rem}
 #banner{display:none;padding:.75rem 2rem;background:#ffcc00;font-weight:600}
 table{border-collapse:collapse;width:100%;background:#fff}
 td,th{border-bottom:1px solid #e3e5ee;padding:.4rem .6rem;text-align:left;font-size:.95rem}
 code{font-size:.9rem}.meta{color:#666;font-size:.85rem}.stale{color:#b00020;font-weight:600}
 ol.items{columns:2}
</style></head>
<body>
<div id="banner">The site is in maintenance mode.</div>
<header><h1 id="site-name">…</h1><p id="welcome"></p></header>
<main>
<p class="meta">Read through the rtconfig sidecar at 127.0.0.1:7070 · version <b id="version">–</b>
 · source <b id="source">–</b> <span id="stale"></span></p>
<h2>Items (<span id="per-page"></span> per page)</h2><ol class="items" id="items"></ol>
<h2>Values</h2><table><thead><tr><th>key</th><th>value</th></tr></thead><tbody id="values"></tbody></table>
<section id="logs"><h2>Change log</h2><table><thead><tr><th>version</th><th>when</th><th>changes</th></tr></thead>
<tbody id="history"></tbody></table></section>
</main>
<script>
const INITIAL = __STATE__;
const text = (id, v) => { document.getElementById(id).textContent = v; };
function cell(row, v) { const td = document.createElement('td'); td.textContent = v; row.appendChild(td); return td; }
function show(s) {
  if (!s) return;
  const v = s.values || {};
  document.title = v.SITE_NAME || 'rtconfig demo';
  text('site-name', v.SITE_NAME || '');
  text('welcome', v.WELCOME_MESSAGE || '');
  if (/^#[0-9a-fA-F]{6}$/.test(v.THEME_COLOR || '')) document.documentElement.style.setProperty('--theme', v.THEME_COLOR);
  document.getElementById('banner').style.display = v.MAINTENANCE_MODE ? 'block' : 'none';
  text('version', s.version); text('source', s.source); text('stale', s.stale ? 'stale' : '');
  document.getElementById('stale').className = s.stale ? 'stale' : '';
  const per = Number(v.ITEMS_PER_PAGE) || 5; text('per-page', per);
  const items = document.getElementById('items'); items.replaceChildren();
  for (let i = 1; i <= per; i++) { const li = document.createElement('li'); li.textContent = 'Item ' + i; items.appendChild(li); }
  const vals = document.getElementById('values'); vals.replaceChildren();
  for (const [k, val] of Object.entries(v)) { const tr = document.createElement('tr'); cell(tr, k); cell(tr, JSON.stringify(val)).className = 'value'; tr.dataset.key = k; vals.appendChild(tr); }
  document.getElementById('logs').style.display = v.SHOW_LOGS === false ? 'none' : 'block';
  const hist = document.getElementById('history'); hist.replaceChildren();
  for (const h of (s.history || []).slice(0, Number(v.LOGS_COUNT) || 10)) {
    const tr = document.createElement('tr'); cell(tr, h.version); cell(tr, h.at);
    cell(tr, Object.entries(h.changes).map(([k, x]) => k + ' = ' + JSON.stringify(x)).join(', ')); hist.appendChild(tr);
  }
}
show(INITIAL);
new EventSource('/events').addEventListener('state', e => show(JSON.parse(e.data)));
</script></body></html>
"""


class Handler(BaseHTTPRequestHandler):
    server_version = "rtconfig-demo"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass  # access logs off; events are logged as JSON

    def send_body(self, status, ctype, body):
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        view = STATE.view()
        if path == "/":
            state = json.dumps(view).replace("</", "<\\/")
            self.send_body(200, "text/html; charset=utf-8", PAGE.replace("__STATE__", state))
        elif path == "/api/state":
            if view is None:
                self.send_body(503, "application/json", json.dumps({"error": "no state from the sidecar yet"}))
            else:
                self.send_body(200, "application/json", json.dumps(view))
        elif path == "/healthz":
            self.send_body(200 if view else 503, "text/plain", "ok\n" if view else "waiting for the sidecar\n")
        elif path == "/events":
            self.events()
        else:
            self.send_body(404, "text/plain", "not found: %s\n" % html.escape(path))

    def events(self):
        q = queue.Queue(maxsize=16)
        with STATE.lock:
            STATE.listeners.add(q)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            q.put_nowait(STATE.view())
            while True:
                try:
                    view = q.get(timeout=15)
                    self.wfile.write(b"event: state\ndata: " + json.dumps(view).encode("utf-8") + b"\n\n")
                except queue.Empty:
                    self.wfile.write(b": keep-alive\n\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with STATE.lock:
                STATE.listeners.discard(q)


def main():
    host, _, port = LISTEN.rpartition(":")
    threading.Thread(target=follow_sidecar, name="sidecar", daemon=True).start()
    server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)
    server.daemon_threads = True
    log("listening", listen=LISTEN, sidecar=SIDECAR)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
