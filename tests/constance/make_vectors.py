"""Writes tests/constance/codec_vectors.json with REAL django-constance's codec.

    target/pyvenv/bin/python tests/constance/make_vectors.py          # (re)write the file
    target/pyvenv/bin/python tests/constance/make_vectors.py --check  # exit 1 when it is stale

Every vector is produced by running ``constance.codecs.dumps`` / ``constance.codecs.loads`` of the
installed django-constance on a Python value; nothing in the file is typed by hand. The file is read
by rtconfig's byte-exact codec tests (src/constance/codec.rs) and by tests/it/constance_django.rs.

Sections:

- ``vectors``: a Python value → the exact text constance writes to Redis (``bytes``; always ASCII,
  json.dumps escapes the rest), the Python type and ``repr`` constance reads back (``decoded_type``,
  ``decoded_repr``), whether that equals the original value and type (``roundtrip``), and the value
  in rtconfig's terms (``rtconfig``: ``{"type", "value"}`` as the admin API takes it, or ``null``
  when rtconfig's type cannot hold it, with ``note`` saying why).
- ``decode``: values (``bytes_hex``; ``bytes`` is their UTF-8 reading) found in a constance Redis that ``dumps`` would not write (values stored by
  constance 4.0.x, other separators, nested wrappers) → what ``loads`` returns, or the exception it
  raises (``error``: the exception class name) — a mirror must read what constance reads, and
  refuse what constance refuses.
- ``project``: the test project's CONSTANCE_CONFIG (tests/constance/constsite/settings.py): key →
  Python type, rtconfig type and the default's bytes.
"""

from __future__ import annotations

import json
import pickle
import os
import sys
from collections import OrderedDict
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
OUT = HERE / "codec_vectors.json"

UTC = timezone.utc
IST = timezone(timedelta(hours=5, minutes=30))
NYC_WINTER = timezone(timedelta(hours=-5))

# (name, value). Each value is encoded with constance's dumps; names are stable ids for tests.
VALUES: List[Tuple[str, Any]] = [
    # --- default discriminator: str, int, bool, float, None, list, dict --------------------------
    ("str_ascii", "hello"),
    ("str_empty", ""),
    ("str_quotes_backslash", 'say "hi" \\ back/slash'),
    ("str_controls", "line1\nline2\ttab\r\x07bell\x7fdel"),
    ("str_latin1", "h\u00e9llo"),
    ("str_bmp", "snow \u2603 \u20ac"),
    ("str_astral", "smile \U0001F600"),
    ("str_html", "<b>&amp;</b>"),
    ("str_looks_like_json", '{"__type__": "decimal", "__value__": "1"}'),
    ("int_zero", 0),
    ("int_negative", -42),
    ("int_i64_max", 2**63 - 1),
    ("int_i64_min", -(2**63)),
    ("int_beyond_i64", 2**64),
    ("bool_true", True),
    ("bool_false", False),
    ("float_simple", 3.14),
    ("float_whole", 2.0),
    ("float_negative_zero", -0.0),
    ("float_tenth_sum", 0.1 + 0.2),
    ("float_small", 1e-05),
    ("float_tiny", 5e-324),
    ("float_large", 1e16),
    ("float_below_exp", 1234567890123456.0),
    ("float_huge", 1.7976931348623157e308),
    ("float_inf", float("inf")),
    ("float_nan", float("nan")),
    ("none", None),
    ("list_empty", []),
    ("list_mixed", [1, "a", True, None, 2.5]),
    ("list_nested", [[1, 2], {"k": "v"}]),
    ("dict_empty", {}),
    ("dict_simple", {"a": 1}),
    ("dict_nested", {"uploads": 10, "beta": False, "tiers": ["free", "pro"], "x": {"y": None}}),
    ("dict_unicode_key", {"cl\u00e9": "v\u00e4l"}),
    # --- registered discriminators ---------------------------------------------------------------
    ("decimal_scale_2", Decimal("1.10")),
    ("decimal_integer", Decimal("1000")),
    ("decimal_zero_scale_2", Decimal("0.00")),
    ("decimal_negative", Decimal("-0.001")),
    ("decimal_exponent", Decimal("1E+3")),
    ("decimal_many_digits", Decimal("12345678901234567890.123456789")),
    ("date", date(2024, 1, 2)),
    ("date_leap", date(2024, 2, 29)),
    ("time", time(3, 4, 5)),
    ("time_midnight", time(0, 0)),
    ("time_micro", time(3, 4, 5, 123456)),
    ("time_milli", time(23, 59, 59, 500000)),
    ("datetime_naive", datetime(2024, 1, 2, 3, 4, 5)),
    ("datetime_naive_micro", datetime(2024, 1, 2, 3, 4, 5, 6)),
    ("datetime_aware_utc", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ("datetime_aware_plus0530", datetime(2024, 1, 2, 3, 4, 5, tzinfo=IST)),
    ("datetime_aware_minus0500_micro", datetime(2024, 1, 2, 3, 4, 5, 250000, tzinfo=NYC_WINTER)),
    ("timedelta_day_30s", timedelta(days=1, seconds=30)),
    ("timedelta_30min", timedelta(minutes=30)),
    ("timedelta_zero", timedelta(0)),
    ("timedelta_250ms", timedelta(milliseconds=250)),
    ("timedelta_1us", timedelta(microseconds=1)),
    ("timedelta_negative", timedelta(seconds=-1)),
    # --- registered values nested in default ones ------------------------------------------------
    ("list_of_decimal", [Decimal("1.5")]),
    ("dict_of_registered", {"at": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), "ttl": timedelta(seconds=90)}),
]

# Texts that may be found in a constance Redis (written by another version or by hand).
DECODE: List[Tuple[str, bytes]] = [
    ("bare_int_4_0", b"42"),
    ("bare_str_4_0", b'"hello"'),
    ("bare_list_4_0", b'[1, "a"]'),
    ("compact_separators", b'{"__type__":"default","__value__":42}'),
    ("keys_swapped", b'{"__value__": "1.10", "__type__": "decimal"}'),
    ("non_ascii_unescaped", '{"__type__": "default", "__value__": "h\u00e9llo"}'.encode("utf-8")),
    ("decimal_nested_in_dict", b'{"__type__": "default", "__value__": {"p": {"__type__": "decimal", "__value__": "2.50"}}}'),
    ("unknown_discriminator", b'{"__type__": "money", "__value__": "1"}'),
    ("type_without_value", b'{"__type__": "default"}'),
    ("extra_member", b'{"__type__": "default", "__value__": 1, "x": 2}'),
    ("bad_decimal", b'{"__type__": "decimal", "__value__": "abc"}'),
    ("bad_datetime", b'{"__type__": "datetime", "__value__": "yesterday"}'),
    ("not_json", b"not json"),
    ("pickle_3_x", pickle.dumps(42, protocol=4)),
]


def _py_type(value: Any) -> str:
    return type(value).__name__


def _duration_text(td: timedelta) -> Optional[str]:
    """rtconfig's duration form (humantime): whole units, the largest that is exact."""
    if td < timedelta(0):
        return None
    micros = (td.days * 86400 + td.seconds) * 1_000_000 + td.microseconds
    if micros % 1_000_000 == 0:
        return f"{micros // 1_000_000}s"
    if micros % 1000 == 0:
        return f"{micros // 1000}ms"
    return f"{micros}us"


def _jsonable(value: Any) -> Any:
    """A JSON form of a nested value for rtconfig's `json` type (registered types as their text)."""
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return value


def _contains_registered(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return any(_contains_registered(v) for v in value)
    if isinstance(value, dict):
        return any(_contains_registered(v) for v in value.values())
    return isinstance(value, (Decimal, datetime, date, time, timedelta))


def rtconfig_form(value: Any) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """(rtconfig {"type", "value"}, note). The value is what the admin API takes for that type."""
    if isinstance(value, bool):
        return {"type": "bool", "value": value}, None
    if isinstance(value, int):
        if -(2**63) <= value < 2**63:
            return {"type": "int", "value": value}, None
        return None, "beyond i64: rtconfig's int cannot hold it"
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return None, "not finite: rtconfig's float holds finite numbers (JSON has no NaN/Infinity)"
        return {"type": "float", "value": value}, None
    if isinstance(value, str):
        return {"type": "string", "value": value}, None
    if value is None:
        return None, "None: constance reads a null value as missing and falls back to the default"
    if isinstance(value, Decimal):
        return {"type": "decimal", "value": str(value)}, None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return (
                {"type": "datetime", "value": value.isoformat() + "Z"},
                "naive: RFC 3339 needs an offset; rtconfig holds it as UTC (USE_TZ=False projects "
                "store naive datetimes)",
            )
        return {"type": "datetime", "value": value.isoformat()}, None
    if isinstance(value, date):
        return {"type": "date", "value": value.isoformat()}, None
    if isinstance(value, time):
        return {"type": "time", "value": value.isoformat()}, None
    if isinstance(value, timedelta):
        text = _duration_text(value)
        if text is None:
            return None, "negative: rtconfig durations are not negative"
        return {"type": "duration", "value": text}, None
    if isinstance(value, (list, dict)):
        if _contains_registered(value):
            return (
                {"type": "json", "value": _jsonable(value)},
                "holds registered types: rtconfig's json keeps them as text; encoding that JSON "
                "gives a different constance text",
            )
        return {"type": "json", "value": value}, None
    return None, f"{type(value).__name__}: no rtconfig type"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and a != a:
        return isinstance(b, float) and b != b
    if type(a) is not type(b):
        return False
    if isinstance(a, datetime) and (a.tzinfo is None) != (b.tzinfo is None):
        return False
    if isinstance(a, Decimal):
        return str(a) == str(b)
    if isinstance(a, float) and a == 0.0:
        return str(a) == str(b)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def build() -> Dict[str, Any]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "constsite.settings")
    sys.path.insert(0, str(HERE))
    import django

    django.setup()
    import constance
    from constance import codecs
    from django.conf import settings

    vectors = []
    for name, value in VALUES:
        text = codecs.dumps(value)
        decoded = codecs.loads(text)
        rt, note = rtconfig_form(value)
        entry: Dict[str, Any] = OrderedDict(
            name=name,
            python_type=_py_type(value),
            python_repr=repr(value),
            bytes=text,
            decoded_type=_py_type(decoded),
            decoded_repr=repr(decoded),
            roundtrip=_same(value, decoded),
            rtconfig=rt,
        )
        if isinstance(value, datetime):
            entry["aware"] = value.tzinfo is not None
        if note:
            entry["note"] = note
        vectors.append(entry)

    decode = []
    for name, text in DECODE:
        # `bytes` is the text when it is UTF-8 (as Redis returns it), `bytes_hex` always.
        entry = OrderedDict(name=name, bytes=text.decode("utf-8", "replace"), bytes_hex=text.hex())
        try:
            decoded = codecs.loads(text)
        except Exception as exc:  # noqa: BLE001 - the class name is the vector
            entry["error"] = type(exc).__name__
            entry["message"] = str(exc)
        else:
            entry["decoded_type"] = _py_type(decoded)
            entry["decoded_repr"] = repr(decoded)
            entry["reencoded"] = codecs.dumps(decoded)
        decode.append(entry)

    project = OrderedDict()
    for key, definition in settings.CONSTANCE_CONFIG.items():
        default = definition[0]
        rt, note = rtconfig_form(default)
        project[key] = OrderedDict(
            python_type=definition[2].__name__ if len(definition) > 2 else _py_type(default),
            rtconfig_type=rt["type"] if rt else None,
            default_repr=repr(default),
            default_bytes=codecs.dumps(default),
        )

    return OrderedDict(
        about="Generated by tests/constance/make_vectors.py with the django-constance below; do not edit.",
        constance_version=constance.__version__ if hasattr(constance, "__version__") else _dist_version(),
        django_version=django.get_version(),
        python_version=sys.version.split()[0],
        prefix=settings.CONSTANCE_REDIS_PREFIX,
        vectors=vectors,
        decode=decode,
        project=project,
    )


def _dist_version() -> str:
    from importlib.metadata import version

    return version("django-constance")


def render(data: Dict[str, Any]) -> str:
    # ensure_ascii keeps the file ASCII, so `bytes` reads back exactly as constance wrote it.
    return json.dumps(data, indent=2, ensure_ascii=True) + "\n"


def main(argv: List[str]) -> int:
    text = render(build())
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is stale: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT} ({len(VALUES)} vectors, {len(DECODE)} decode cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
