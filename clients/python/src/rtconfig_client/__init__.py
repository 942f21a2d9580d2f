"""Read rtconfig values from the local sidecar (standard library only).

    import rtconfig_client
    rtconfig_client.get_config("SITE_NAME", "fallback")

The sidecar is found at ``RTCONFIG_URL`` (default ``http://127.0.0.1:7070``). The last values seen
are kept in memory: when the sidecar cannot be reached (short timeouts) ``get_config`` answers from
them, then from ``default``. Values are decoded to Python types by the schema type (decimal ->
Decimal, date/time/datetime, duration -> timedelta, json -> dict/list) given by ``types=`` or a
schema file (``RTCONFIG_SCHEMA_FILE``, Python 3.11+ for TOML).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple

__all__ = [
    "Client",
    "Event",
    "decode",
    "default_client",
    "get_config",
    "start_background_refresh",
    "watch",
]

log = logging.getLogger("rtconfig_client")

DEFAULT_URL = "http://127.0.0.1:7070"
_MISSING = object()


# --- decoding: pure ------------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|us|ns|s|m|h|d|w)", re.IGNORECASE)
_DURATION_WORDS = {
    "millisecond": "ms", "milliseconds": "ms", "second": "s", "seconds": "s", "sec": "s",
    "secs": "s", "minute": "m", "minutes": "m", "min": "m", "mins": "m", "hour": "h",
    "hours": "h", "day": "d", "days": "d", "week": "w", "weeks": "w",
}
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """``"30s"``, ``"5m"``, ``"1h30m"``, ``"250ms"``, ``"2 days"`` -> timedelta."""
    s = text.strip().lower()
    for word, unit in sorted(_DURATION_WORDS.items(), key=lambda kv: -len(kv[0])):
        s = re.sub(r"(\d)\s*" + word + r"\b", r"\1" + unit, s)
    s = s.replace(" ", "")
    pos, total = 0, Decimal(0)
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos:
            raise ValueError(f"not a duration: {text!r}")
        total += Decimal(m.group(1)) * Decimal(str(_UNIT_SECONDS[m.group(2).lower()]))
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(f"not a duration: {text!r}")
    return timedelta(seconds=float(total))


def _parse_datetime(text: str) -> datetime:
    # Python < 3.11 does not read a trailing "Z".
    return datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)


def decode(value: Any, type_name: Optional[str]) -> Any:
    """Turn a JSON value from the sidecar into the Python type its schema type names.

    An unknown type (or none) returns the JSON value as it is; a value that does not parse is
    returned unchanged (the sidecar validated it against the schema it serves).
    """
    if value is None or type_name is None:
        return value
    try:
        if type_name == "decimal":
            return Decimal(str(value))
        if type_name == "duration":
            if isinstance(value, (int, float)):
                return timedelta(seconds=value)
            return parse_duration(str(value))
        if type_name == "datetime":
            return _parse_datetime(str(value))
        if type_name == "date":
            return date.fromisoformat(str(value))
        if type_name == "time":
            return _parse_datetime("1970-01-01T" + str(value)).timetz()
        if type_name == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    except (ValueError, InvalidOperation) as exc:
        log.warning("rtconfig_client: value %r is not a %s: %s", value, type_name, exc)
    return value


def load_schema_types(path: str) -> Dict[str, str]:
    """``KEY -> type`` from an rtconfig schema file (TOML; needs Python 3.11+ for ``tomllib``)."""
    try:
        import tomllib  # type: ignore[import-not-found]
    except ImportError as exc:  # pragma: no cover - Python < 3.11
        raise RuntimeError(
            f"reading the schema file {path} (RTCONFIG_SCHEMA_FILE) needs Python 3.11+; "
            "pass types={...} instead"
        ) from exc
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    return {k: str(v.get("type")) for k, v in doc.get("keys", {}).items()}


# --- SSE parsing: pure ---------------------------------------------------------------------------


class Event:
    """One Server-Sent Event from ``/v1/watch`` (``snapshot`` or ``change``)."""

    __slots__ = ("event", "id", "data")

    def __init__(self, event: str, id: Optional[str], data: Any) -> None:
        self.event = event
        self.id = id
        self.data = data

    def __repr__(self) -> str:
        return f"Event({self.event!r}, id={self.id!r}, data={self.data!r})"


def parse_sse_lines(lines: Iterator[str]) -> Iterator[Tuple[str, Optional[str], str]]:
    """(event, id, data) per event, from decoded lines (without line ends)."""
    event, ev_id, data = "message", None, []  # type: str, Optional[str], list
    for line in lines:
        if line == "":
            if data:
                yield event, ev_id, "\n".join(data)
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, val = line.partition(":")
        if val.startswith(" "):
            val = val[1:]
        if field == "event":
            event = val
        elif field == "data":
            data.append(val)
        elif field == "id":
            ev_id = val


# --- the client ----------------------------------------------------------------------------------


class Client:
    """A reader of one sidecar, with the last values seen kept in memory."""

    def __init__(
        self,
        url: Optional[str] = None,
        *,
        timeout: float = 0.5,
        types: Optional[Mapping[str, str]] = None,
        schema_file: Optional[str] = None,
    ) -> None:
        self.url = (url or os.environ.get("RTCONFIG_URL") or DEFAULT_URL).rstrip("/")
        self.timeout = timeout
        schema_file = schema_file or os.environ.get("RTCONFIG_SCHEMA_FILE")
        self.types: Dict[str, str] = dict(load_schema_types(schema_file)) if schema_file else {}
        self.types.update(types or {})
        self._lock = threading.Lock()
        self._values: Dict[str, Any] = {}  # KEY -> raw JSON value, last seen
        self._fresh = False  # True while a background thread keeps _values current
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._last_event_id: Optional[str] = None
        os_register = getattr(os, "register_at_fork", None)
        if os_register is not None:
            os_register(after_in_child=self._after_fork)

    # -- reads

    def _get_json(self, path: str, timeout: Optional[float] = None) -> Any:
        req = urllib.request.Request(self.url + path, headers={"Accept": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
            return json.loads(resp.read().decode("utf-8"))

    def get_config(self, key: str, default: Any = None) -> Any:
        """The value of ``key``: from the sidecar, else the last value seen, else ``default``.

        With the background thread running, answers from the process-local copy it keeps fresh.
        A key the sidecar does not know (404) gives ``default``.
        """
        if self._fresh:
            with self._lock:
                raw = self._values.get(key, _MISSING)
            return default if raw is _MISSING else decode(raw, self.types.get(key))
        try:
            body = self._get_json("/v1/configs/" + urllib.parse.quote(key, safe=""))
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                with self._lock:
                    self._values.pop(key, None)
                return default
            log.warning("rtconfig_client: %s answered %s for %s", self.url, exc.code, key)
            return self._remembered(key, default)
        except (OSError, ValueError) as exc:
            log.warning("rtconfig_client: sidecar %s unreachable (%s); last value seen for %s", self.url, exc, key)
            return self._remembered(key, default)
        with self._lock:
            self._values[key] = body.get("value")
        return decode(body.get("value"), self.types.get(key))

    def _remembered(self, key: str, default: Any) -> Any:
        with self._lock:
            raw = self._values.get(key, _MISSING)
        return default if raw is _MISSING else decode(raw, self.types.get(key))

    def get_all(self) -> Dict[str, Any]:
        """Every value (decoded), from the sidecar or else the last values seen."""
        try:
            body = self._get_json("/v1/configs")
            with self._lock:
                self._values = dict(body.get("values", {}))
        except (OSError, ValueError) as exc:
            log.warning("rtconfig_client: sidecar %s unreachable (%s); last values seen", self.url, exc)
        with self._lock:
            values = dict(self._values)
        return {k: decode(v, self.types.get(k)) for k, v in values.items()}

    # -- watch

    def watch(self, *, reconnect_delay: float = 1.0, read_timeout: float = 30.0) -> Iterator[Event]:
        """Events of ``/v1/watch`` for ever: reconnects with ``Last-Event-ID`` when cut off.

        ``snapshot`` data is the whole state, ``change`` data is ``{"version", "changes"}``;
        values in both are decoded by type. The memory of last values is updated as events come.
        """
        while not self._stop.is_set():
            headers = {"Accept": "text/event-stream"}
            if self._last_event_id:
                headers["Last-Event-ID"] = self._last_event_id
            req = urllib.request.Request(self.url + "/v1/watch", headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=read_timeout) as resp:
                    lines = (raw.decode("utf-8").rstrip("\r\n") for raw in resp)
                    for event, ev_id, data in parse_sse_lines(lines):
                        if ev_id:
                            self._last_event_id = ev_id
                        try:
                            payload = json.loads(data)
                        except ValueError:
                            continue
                        self._apply(event, payload)
                        yield Event(event, ev_id, self._decoded(event, payload))
            except (OSError, ValueError) as exc:
                log.info("rtconfig_client: watch %s cut off (%s); reconnecting", self.url, exc)
            if self._stop.wait(reconnect_delay):
                return

    def _apply(self, event: str, payload: Any) -> None:
        if not isinstance(payload, dict):
            return
        with self._lock:
            if event == "snapshot":
                self._values = dict(payload.get("values", {}))
            elif event == "change":
                for k, v in payload.get("changes", {}).items():
                    if v is None:
                        # A reset: the sidecar answers the default; fetch it lazily.
                        self._values.pop(k, None)
                    else:
                        self._values[k] = v

    def _decoded(self, event: str, payload: Any) -> Any:
        if not isinstance(payload, dict):
            return payload
        field = "values" if event == "snapshot" else "changes"
        if isinstance(payload.get(field), dict):
            payload = dict(payload)
            payload[field] = {k: decode(v, self.types.get(k)) for k, v in payload[field].items()}
        return payload

    # -- background thread

    def start_background_refresh(self) -> None:
        """Keep a process-local copy fresh from ``/v1/watch`` in a daemon thread.

        Reads then never leave the process. After ``fork`` (gunicorn pre-fork, Celery prefork) the
        child restarts its own thread; while the stream is cut off, reads answer the last values.
        """
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="rtconfig-refresh", daemon=True)
            self._thread.start()

    def stop_background_refresh(self) -> None:
        self._stop.set()
        self._fresh = False

    def _run(self) -> None:
        for event in self.watch():
            if event.event == "snapshot":
                self._fresh = True
            elif event.event == "change" and any(v is None for v in event.data.get("changes", {}).values()):
                # Resets give the default: one full read brings it in.
                try:
                    body = self._get_json("/v1/configs")
                    with self._lock:
                        self._values = dict(body.get("values", {}))
                except (OSError, ValueError):
                    pass
        self._fresh = False

    def _after_fork(self) -> None:
        # The parent's thread does not exist in the child: start the child's own.
        was_running = self._thread is not None and not self._stop.is_set()
        self._lock = threading.Lock()
        self._thread = None
        self._fresh = False
        if was_running:
            self.start_background_refresh()


_default: Optional[Client] = None
_default_lock = threading.Lock()


def default_client() -> Client:
    """The process's client for ``RTCONFIG_URL`` (created on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Client()
        return _default


def get_config(key: str, default: Any = None) -> Any:
    """The value of ``key`` from the local sidecar; the last value seen, then ``default``, when unreachable."""
    return default_client().get_config(key, default)


def watch() -> Iterator[Event]:
    """SSE events from the local sidecar (``snapshot``, then ``change``), reconnecting."""
    return default_client().watch()


def start_background_refresh() -> Client:
    """Start the default client's background thread and return the client."""
    client = default_client()
    client.start_background_refresh()
    return client
