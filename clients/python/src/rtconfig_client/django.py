"""Drop-in for ``from constance import config``: ``from rtconfig_client.django import config``.

``config.SITE_NAME`` reads the key from the local sidecar (``settings.RTCONFIG_URL`` or the
``RTCONFIG_URL`` environment variable). Python types come from ``CONSTANCE_CONFIG`` (its third
element, else the type of the default), so ``Decimal``, ``timedelta``, ``date``… arrive as
constance gave them. When the sidecar is unreachable and no value was seen yet, the
``CONSTANCE_CONFIG`` default answers. ``settings.RTCONFIG_BACKGROUND_REFRESH = True`` keeps a
process-local copy fresh (restarted after fork, so gunicorn and Celery prefork are safe).
"""

from __future__ import annotations

import os
import threading
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Dict, Optional, Tuple

from . import Client

__all__ = ["config", "ConstanceConfig", "schema_type_of"]

_PY_TYPES = {
    bool: "bool",
    int: "int",
    float: "float",
    Decimal: "decimal",
    str: "string",
    datetime: "datetime",
    date: "date",
    time: "time",
    timedelta: "duration",
    list: "json",
    dict: "json",
}


def schema_type_of(definition: Tuple[Any, ...]) -> Optional[str]:
    """The rtconfig type of a ``CONSTANCE_CONFIG`` entry ``(default, help[, type])``."""
    if len(definition) >= 3 and isinstance(definition[2], type):
        return _PY_TYPES.get(definition[2])
    if len(definition) >= 3 and isinstance(definition[2], str):
        return None  # an additional field: the sidecar value is kept as JSON gave it
    return _PY_TYPES.get(type(definition[0]))


class ConstanceConfig:
    """Attribute access to configs, like ``constance.config``."""

    def __init__(self) -> None:
        object.__setattr__(self, "_client", None)
        object.__setattr__(self, "_lock", threading.Lock())

    def _setup(self) -> Tuple[Client, Dict[str, Tuple[Any, ...]]]:
        from django.conf import settings

        definitions: Dict[str, Tuple[Any, ...]] = dict(getattr(settings, "CONSTANCE_CONFIG", {}))
        with self._lock:
            client = self._client
            if client is None:
                types = {k: t for k, d in definitions.items() if (t := schema_type_of(d))}
                url = getattr(settings, "RTCONFIG_URL", None) or os.environ.get("RTCONFIG_URL")
                client = Client(url, types=types, timeout=float(getattr(settings, "RTCONFIG_TIMEOUT", 0.5)))
                if getattr(settings, "RTCONFIG_BACKGROUND_REFRESH", False):
                    client.start_background_refresh()
                object.__setattr__(self, "_client", client)
        return client, definitions

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        client, definitions = self._setup()
        if key not in definitions:
            raise AttributeError(key)
        return client.get_config(key, decode_default(definitions[key]))

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError(
            f"config.{key} is read-only here: change it in the rtconfig admin "
            "(UI or PATCH /api/v1/namespaces/{ns}/configs)"
        )

    def __dir__(self) -> Any:
        _, definitions = self._setup()
        return sorted(definitions)


def decode_default(definition: Tuple[Any, ...]) -> Any:
    return definition[0]


config = ConstanceConfig()
