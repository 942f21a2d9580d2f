"""Settings of the django-constance test project used by rtconfig's acceptance tests.

A real Django 5.2 project with django-constance 4.x on its Redis backend, exactly as a shop that
migrates to rtconfig runs it. It reads its environment:

- ``CONSTANCE_REDIS_URL``: the Redis constance uses (the tests spawn their own redis-server);
- ``CONSTANCE_REDIS_PREFIX``: the key prefix (constance's default ``constance:``);
- ``DJANGO_SQLITE_PATH``: Django's own database (unused by constance's Redis backend).

``CONSTANCE_CONFIG`` holds one key for every type in constance's codec table (bool, int, float,
Decimal with a scale, str, date, time, naive and aware datetime, timedelta, list, dict), in an
OrderedDict like a project that cares about its admin order; list and dict use Django's JSONField as
constance's docs recommend. ``schema/site.toml`` is the rtconfig schema of the same keys.
"""

import os
from collections import OrderedDict
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "rtconfig-constance-tests-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "constance",
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_SQLITE_PATH", ":memory:"),
    }
}

USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CONSTANCE_BACKEND = "constance.backends.redisd.RedisBackend"
CONSTANCE_REDIS_CONNECTION = os.environ.get("CONSTANCE_REDIS_URL", "redis://127.0.0.1:16379/0")
CONSTANCE_REDIS_PREFIX = os.environ.get("CONSTANCE_REDIS_PREFIX", "constance:")

CONSTANCE_ADDITIONAL_FIELDS = {
    list: ["django.forms.fields.JSONField", {}],
    dict: ["django.forms.fields.JSONField", {}],
}

CONSTANCE_CONFIG = OrderedDict(
    [
        ("SITE_NAME", ("Config Manager", "Display name of the site", str)),
        ("MAINTENANCE_MODE", (False, "Serve the maintenance page", bool)),
        ("ITEMS_PER_PAGE", (25, "Page size of list views", int)),
        ("POLL_RATIO", (2.5, "Seconds between UI polls", float)),
        ("PRICE", (Decimal("1.10"), "Price of the basic plan", Decimal)),
        ("LAUNCH_DATE", (date(2024, 1, 2), "Launch day", date)),
        ("OPENS_AT", (time(9, 30), "Support opens at", time)),
        ("SALE_STARTS", (datetime(2024, 1, 2, 3, 4, 5), "Sale start (naive, local)", datetime)),
        ("SALE_ENDS", (datetime(2024, 2, 3, 4, 5, 6, tzinfo=timezone.utc), "Sale end (aware)", datetime)),
        ("SESSION_TTL", (timedelta(minutes=30), "Session lifetime", timedelta)),
        ("ALLOWED_HOSTS", (["a.example", "b.example"], "Hosts served", list)),
        ("FEATURE_LIMITS", ({"uploads": 10, "beta": False}, "Per-feature limits", dict)),
    ]
)

CONSTANCE_CONFIG_FIELDSETS = OrderedDict(
    [
        ("General", ("SITE_NAME", "MAINTENANCE_MODE", "ITEMS_PER_PAGE", "POLL_RATIO")),
        ("Sales", {"fields": ("PRICE", "LAUNCH_DATE", "OPENS_AT", "SALE_STARTS", "SALE_ENDS"), "collapse": True}),
        ("Advanced", ("SESSION_TTL", "ALLOWED_HOSTS", "FEATURE_LIMITS")),
    ]
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
