"""Drives the django-constance test project for rtconfig's tests (run with target/pyvenv/bin/python).

    driver.py set KEY EXPR         config.KEY = EXPR, EXPR a Python expression over
                                   Decimal, date, time, datetime, timedelta, timezone, UTC
                                   (e.g. "Decimal('3.50')", "datetime(2024, 1, 2, tzinfo=UTC)")
    driver.py cli-set KEY VALUE..  `manage.py constance set KEY VALUE..` (the same command, in-process)
    driver.py get [KEY..]          the keys (default: all) as typed JSON, read through
                                   constance.config (a missing key reads as its default, and
                                   constance then writes the default back, as it always does)
    driver.py peek [KEY..]         the same read without that write-back (constance's get_values)
    driver.py client [KEY..]       the same keys through rtconfig_client.django.config (the sidecar at
                                   RTCONFIG_URL): what code reads after the one-line import switch
    driver.py raw KEY              the exact bytes constance's Redis key holds (hex), or null
    driver.py eval EXPR            EXPR as a typed value (what a test expects constance to read)
    driver.py dumps EXPR           the text constance's codec writes for EXPR (constance.codecs.dumps)
    driver.py serve                JSON lines on stdin → one JSON line each on stdout:
                                   {"op": "set", "key", "expr"} | {"op": "cli_set", "key", "args"} |
                                   {"op": "get" | "peek" | "client", "keys"?} | {"op": "raw", "key"} |
                                   {"op": "dumps" | "eval", "expr"}
                                   → {"ok": true, "result": ...} or {"ok": false, "error": "..."}

A typed value is {"type": "Decimal", "repr": "Decimal('1.10')", "json": "1.10", "aware": bool?}:
``type`` is the Python class name, ``repr`` its repr, ``json`` a JSON form (Decimal and dates as
text, timedelta as seconds), ``aware`` only for datetimes. Environment: CONSTANCE_REDIS_URL,
CONSTANCE_REDIS_PREFIX (see constsite/settings.py), RTCONFIG_URL for ``client``. Exit 1 with the error on stderr.
"""

from __future__ import annotations

import json
import math
import os
import sys
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))

NAMES = {
    "Decimal": Decimal,
    "date": date,
    "time": time,
    "datetime": datetime,
    "timedelta": timedelta,
    "timezone": timezone,
    "UTC": timezone.utc,
}


def setup() -> None:
    sys.path.insert(0, HERE)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "constsite.settings")
    import django

    django.setup()


def evaluate(expr: str) -> Any:
    """A Python value from a test's expression; only the names above (no builtins)."""
    return eval(expr, {"__builtins__": {}}, dict(NAMES))  # noqa: S307 - test input, no builtins


def _json(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # strict JSON has no NaN/Infinity
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    return value


def typed(value: Any) -> Dict[str, Any]:
    out: Dict[str, Any] = {"type": type(value).__name__, "repr": repr(value), "json": _json(value)}
    if isinstance(value, datetime):
        out["aware"] = value.tzinfo is not None
    return out


def _keys(keys: Optional[List[str]]) -> List[str]:
    from django.conf import settings

    return list(keys) if keys else list(settings.CONSTANCE_CONFIG)


def op_set(key: str, expr: str) -> Dict[str, Any]:
    from constance import config

    value = evaluate(expr)
    setattr(config, key, value)
    return typed(value)


def op_cli_set(key: str, args: List[str]) -> None:
    from django.core.management import call_command

    call_command("constance", "set", key, *args)


def op_get(keys: Optional[List[str]]) -> Dict[str, Any]:
    from constance import config

    return {key: typed(getattr(config, key)) for key in _keys(keys)}


def op_peek(keys: Optional[List[str]]) -> Dict[str, Any]:
    from constance.utils import get_values_for_keys

    values = get_values_for_keys(_keys(keys))
    return {key: typed(value) for key, value in values.items()}


def op_client(keys: Optional[List[str]]) -> Dict[str, Any]:
    from rtconfig_client.django import config

    return {key: typed(getattr(config, key)) for key in _keys(keys)}


def op_raw(key: str) -> Optional[str]:
    from constance import config

    backend = config._backend
    raw = backend._rd.get(backend.add_prefix(key))
    return None if raw is None else raw.hex()


def op_dumps(expr: str) -> str:
    from constance.codecs import dumps

    return dumps(evaluate(expr))


def dispatch(request: Dict[str, Any]) -> Any:
    op = request.get("op")
    if op == "set":
        return op_set(request["key"], request["expr"])
    if op == "cli_set":
        return op_cli_set(request["key"], list(request["args"]))
    if op == "get":
        return op_get(request.get("keys"))
    if op == "peek":
        return op_peek(request.get("keys"))
    if op == "client":
        return op_client(request.get("keys"))
    if op == "raw":
        return op_raw(request["key"])
    if op == "dumps":
        return op_dumps(request["expr"])
    if op == "eval":
        return typed(evaluate(request["expr"]))
    raise ValueError(f"unknown op {op!r}")


def serve() -> int:
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            reply = {"ok": True, "result": dispatch(json.loads(line))}
        except Exception as exc:  # noqa: BLE001 - reported to the test, which decides
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


def main(argv: List[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 64
    setup()
    command, rest = argv[0], argv[1:]
    try:
        if command == "serve":
            return serve()
        if command == "set" and len(rest) == 2:
            result: Any = op_set(rest[0], rest[1])
        elif command == "cli-set" and len(rest) >= 2:
            result = op_cli_set(rest[0], rest[1:])
        elif command == "get":
            result = op_get(rest)
        elif command == "peek":
            result = op_peek(rest)
        elif command == "client":
            result = op_client(rest)
        elif command == "raw" and len(rest) == 1:
            result = op_raw(rest[0])
        elif command == "dumps" and len(rest) == 1:
            result = op_dumps(rest[0])
        elif command == "eval" and len(rest) == 1:
            result = typed(evaluate(rest[0]))
        else:
            print(__doc__, file=sys.stderr)
            return 64
    except Exception as exc:  # noqa: BLE001 - one line for the calling test
        print(f"driver.py {command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
