"""`rtconfig import-constance` against the real Django project in /work/shared/peers (copied)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BIN

PEER = Path(os.environ.get("RTCONFIG_CONSTANCE_PEER", "/work/shared/peers/django-constance"))

EXTRA_SETTINGS = '''
from collections import OrderedDict
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

from configsite.settings import *  # noqa: F401,F403
from configsite.settings import CONSTANCE_CONFIG as BASE

CONSTANCE_ADDITIONAL_FIELDS = {
    "size_select": ["django.forms.fields.ChoiceField", {"widget": "django.forms.Select",
                    "choices": (("s", "Small"), ("l", "Large"))}],
    "image_field": ["django.forms.ImageField", {}],
    "json_field": ["django.forms.fields.JSONField", {}],
}
CONSTANCE_CONFIG = OrderedDict(list(BASE.items()) + [
    ("PRICE", (Decimal("1.10"), "Price", Decimal)),
    ("LAUNCH_DAY", (date(2024, 1, 2), "Launch day", date)),
    ("LAUNCH_AT", (datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc), "Launch", datetime)),
    ("OPENS", (time(8, 30), "Opening time", time)),
    ("CACHE_TTL", (timedelta(days=1, seconds=30), "Cache TTL", timedelta)),
    ("TAGS", (["a", "b"], "Tags", list)),
    ("LIMITS", ({"a": 1}, "Limits", "json_field")),
    ("SIZE", ("s", "Default size", "size_select")),
    ("LOGO", ("", "Site logo", "image_field")),
])
CONSTANCE_CONFIG_FIELDSETS = {
    "General": ("SITE_NAME", "SUPPORT_EMAIL", "BANNER_MESSAGE", "LOGO"),
    "Advanced": {"fields": ("PRICE", "CACHE_TTL", "SIZE"), "collapse": True},
}
'''


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTCONFIG_")}
    return subprocess.run([BIN, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    if not PEER.is_dir():
        pytest.fail(f"the django-constance peer project is missing at {PEER} (RTCONFIG_CONSTANCE_PEER)")
    dst = tmp_path / "project"
    shutil.copytree(PEER, dst, ignore=shutil.ignore_patterns("__pycache__", "db.sqlite3"))
    (dst / "configsite" / "extra_settings.py").write_text(EXTRA_SETTINGS)
    (tmp_path / "schema").mkdir()
    return dst


def test_the_peer_project_imports_and_check_accepts_it(project: Path) -> None:
    out = project.parent / "schema" / "constance.toml"
    r = run("import-constance", "--python", sys.executable, "--project-dir", str(project),
            "--settings", "configsite.settings", "--out", str(out), cwd=project)
    assert r.returncode == 0, r.stderr
    assert "imported 8 key(s) into namespace constance; 0 unsupported" in r.stderr
    text = out.read_text()
    assert '[keys.UI_POLLING_INTERVAL]\ntype = "float"\ndefault = 2.5\ndescription = "Seconds between UI polls"' in text
    c = run("check", "--schema-dir", str(out.parent), cwd=project)
    assert c.returncode == 0, c.stderr
    assert "8 key(s)" in c.stdout


def test_every_type_fieldsets_choices_and_unsupported_fields(project: Path) -> None:
    out = project.parent / "schema" / "constance.toml"
    r = run("import-constance", "--python", sys.executable, "--project-dir", str(project),
            "--settings", "configsite.extra_settings", "--namespace", "constance", "--out", str(out),
            cwd=project)
    assert r.returncode == 2, r.stderr  # written, with an unsupported field listed
    assert "unsupported: LOGO: ImageField is a file upload" in r.stderr
    text = out.read_text()
    for snippet in [
        '[keys.PRICE]\ntype = "decimal"\ndefault = "1.10"',
        '[keys.LAUNCH_DAY]\ntype = "date"\ndefault = "2024-01-02"',
        '[keys.LAUNCH_AT]\ntype = "datetime"\ndefault = "2024-01-02T03:04:05+00:00"',
        '[keys.OPENS]\ntype = "time"\ndefault = "08:30:00"',
        '[keys.CACHE_TTL]\ntype = "duration"\ndefault = "86430s"',
        '[keys.TAGS]\ntype = "json"\ndefault = ["a", "b"]',
        '[keys.LIMITS]\ntype = "json"',
        'type = "enum"\ndefault = "s"\ndescription = "Default size"\nchoices = ["s", "l"]',
        'name = "Advanced"\ncollapse = true\nkeys = ["PRICE", "CACHE_TTL", "SIZE"]',
        'name = "General"\nkeys = ["SITE_NAME", "SUPPORT_EMAIL", "BANNER_MESSAGE"]',
        'name = "Other"',
    ]:
        assert snippet in text, snippet + "\n---\n" + text
    assert "LOGO" not in text
    c = run("check", "--schema-dir", str(out.parent), cwd=project)
    assert c.returncode == 0, c.stderr + text

    # The same through a saved export (--from-json), e.g. made on another machine.
    exported = subprocess.run(
        [sys.executable, "-m", "rtconfig_client.export_constance"], cwd=project, capture_output=True,
        text=True, timeout=60,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "configsite.extra_settings", "PYTHONPATH": str(project)},
    )
    assert exported.returncode == 0, exported.stderr
    data = json.loads(exported.stdout)
    assert data["config"]["CACHE_TTL"] == {"default": 86430.0, "help": "Cache TTL", "field": "timedelta", "type": "timedelta"}
    saved = project.parent / "export.json"
    saved.write_text(exported.stdout)
    again = run("import-constance", "--from-json", str(saved), "--namespace", "constance", cwd=project)
    assert again.returncode == 2 and again.stdout == text


def test_a_broken_settings_module_exits_64_naming_the_flag(project: Path) -> None:
    r = run("import-constance", "--python", sys.executable, "--project-dir", str(project),
            "--settings", "configsite.no_such_settings", cwd=project)
    assert r.returncode == 64
    assert "--project-dir and --settings" in r.stderr
