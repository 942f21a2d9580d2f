"""rtconfig_client.django.config as a drop-in for constance.config, against the real sidecar."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import django
from django.conf import settings


def _configure(url: str) -> None:
    if not settings.configured:
        settings.configure(
            INSTALLED_APPS=[],
            CONSTANCE_CONFIG={
                "SITE_NAME": ("Config Manager", "Name", str),
                "PRICE": (Decimal("1.10"), "Price", Decimal),
                "TTL": (timedelta(seconds=30), "TTL"),
                "SIZE": ("s", "Size", "size_select"),
                "ONLY_IN_DJANGO": (42, "Not in the rtconfig schema"),
            },
            RTCONFIG_URL=url,
        )
        django.setup()


def test_config_object_reads_typed_values_like_constance(dev) -> None:
    _configure(dev.url)
    from rtconfig_client import django as rt_django

    from rtconfig_client import Client

    config = rt_django.ConstanceConfig()
    assert config.PRICE == Decimal("1.10") and isinstance(config.PRICE, Decimal)
    dev.write({"SITE_NAME": "Acme", "TTL": "90s", "PRICE": "3.50", "SIZE": "l"})
    assert config.SITE_NAME == "Acme"
    assert config.TTL == timedelta(seconds=90)
    assert str(config.PRICE) == "3.50"
    assert config.SIZE == "l"
    assert config.ONLY_IN_DJANGO == 42  # unknown to the sidecar: the CONSTANCE_CONFIG default
    assert "SITE_NAME" in dir(config)
    try:
        config.NOT_DEFINED
    except AttributeError:
        pass
    else:
        raise AssertionError("an undefined key must raise AttributeError, like constance")
    try:
        config.SITE_NAME = "x"
    except AttributeError as exc:
        assert "rtconfig admin" in str(exc)
    else:
        raise AssertionError("config is read-only")
    assert isinstance(config._client, Client)
    # The module-level object is the one-line replacement for `from constance import config`.
    from rtconfig_client.django import config as module_config

    assert module_config.SITE_NAME == "Acme"
