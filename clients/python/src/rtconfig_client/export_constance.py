"""Print a Django project's constance definitions as JSON (read by ``rtconfig import-constance``).

    DJANGO_SETTINGS_MODULE=mysite.settings python -m rtconfig_client.export_constance

Prints ``{"config": {KEY: {"default", "help", "type", "field"}}, "fieldsets": [...],
"additional_fields": {NAME: {"class", "choices", "kwargs"}}, "ordered": bool}`` as Django loaded
them: defaults in constance's JSON form (Decimal -> string, timedelta -> seconds, dates ISO 8601),
lazy translations resolved. Exit 2 when Django cannot be set up.
"""

from __future__ import annotations

import json
import sys
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Dict, List

_TYPE_NAMES = {
    bool: "bool", int: "int", float: "float", Decimal: "Decimal", str: "str",
    datetime: "datetime", date: "date", time: "time", timedelta: "timedelta",
    list: "list", dict: "dict",
}


def _jsonable(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, (int, float, str)):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return {"__unsupported__": type(value).__module__ + "." + type(value).__qualname__, "repr": repr(value)}


def _type_name(value: Any) -> str:
    if isinstance(value, type):
        return _TYPE_NAMES.get(value, value.__module__ + "." + value.__qualname__)
    return str(value)


def export() -> Dict[str, Any]:
    import django
    from django.conf import settings

    django.setup()
    raw = getattr(settings, "CONSTANCE_CONFIG", {})
    config: Dict[str, Any] = {}
    for key, definition in raw.items():
        definition = tuple(definition)
        entry: Dict[str, Any] = {"default": _jsonable(definition[0]), "help": str(definition[1]) if len(definition) > 1 else ""}
        if len(definition) >= 3:
            entry["field"] = _type_name(definition[2])
            entry["type"] = _type_name(definition[2]) if isinstance(definition[2], type) else None
        else:
            entry["field"] = None
            entry["type"] = _TYPE_NAMES.get(type(definition[0]), type(definition[0]).__qualname__)
        if len(definition) not in (2, 3):
            entry["error"] = f"the tuple has {len(definition)} elements (constance wants 2 or 3)"
        config[str(key)] = entry

    fieldsets: List[Dict[str, Any]] = []
    raw_sets = getattr(settings, "CONSTANCE_CONFIG_FIELDSETS", None) or {}
    items = raw_sets.items() if isinstance(raw_sets, dict) else raw_sets
    for title, spec in items:
        if isinstance(spec, dict):
            fields, collapse = list(spec.get("fields", ())), bool(spec.get("collapse", False))
        else:
            fields, collapse = list(spec), False
        fieldsets.append({"title": str(title), "fields": [str(f) for f in fields], "collapse": collapse})

    additional: Dict[str, Any] = {}
    for name, spec in (getattr(settings, "CONSTANCE_ADDITIONAL_FIELDS", None) or {}).items():
        spec = list(spec)
        cls = spec[0] if spec else ""
        kwargs = dict(spec[1]) if len(spec) > 1 and isinstance(spec[1], dict) else {}
        choices = kwargs.pop("choices", None)
        entry = {"class": cls if isinstance(cls, str) else _type_name(cls)}
        if choices is not None:
            entry["choices"] = [[_jsonable(c[0]), str(c[1])] for c in choices]
        entry["kwargs"] = {str(k): (_jsonable(v) if not callable(v) else repr(v)) for k, v in kwargs.items() if k not in ("widget", "widget_kwargs")}
        additional[_type_name(name)] = entry
    return {
        "config": config,
        "fieldsets": fieldsets,
        "additional_fields": additional,
        "ordered": not isinstance(raw, dict) or type(raw).__name__ == "OrderedDict",
    }


def main() -> int:
    try:
        data = export()
    except Exception as exc:  # noqa: BLE001 - any setup failure is reported, not raised
        print(f"export_constance: cannot load the Django settings (DJANGO_SETTINGS_MODULE): {exc}", file=sys.stderr)
        return 2
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
