"""rtconfig_client against the real sidecar (`rtconfig dev`, started by the fixture)."""

from __future__ import annotations

import os
import threading
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

import rtconfig_client
from rtconfig_client import Client, decode, parse_duration, parse_sse_lines

from conftest import eventually


def test_decode_table() -> None:
    table = [
        ("1.10", "decimal", Decimal("1.10")),
        ("30s", "duration", timedelta(seconds=30)),
        ("1h30m", "duration", timedelta(hours=1, minutes=30)),
        ("250ms", "duration", timedelta(milliseconds=250)),
        ("2 days", "duration", timedelta(days=2)),
        ("2024-01-02", "date", date(2024, 1, 2)),
        ("2024-01-02T03:04:05Z", "datetime", datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)),
        ("03:04:05", "time", time(3, 4, 5)),
        ({"a": 1}, "json", {"a": 1}),
        (5, "float", 5.0),
        ("x", None, "x"),
    ]
    for raw, ty, want in table:
        got = decode(raw, ty)
        assert got == want and type(got) is type(want), (raw, ty, got)


def test_bad_duration_is_refused() -> None:
    for bad in ["", "5", "5x", "s5"]:
        try:
            parse_duration(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} parsed")


def test_sse_parser_reads_events_ids_and_multiline_data() -> None:
    lines = iter([": hi", "event: snapshot", "id: 1-1", "data: {\"a\":", "data: 1}", "", "data: x", ""])
    assert list(parse_sse_lines(lines)) == [("snapshot", "1-1", "{\"a\":\n1}"), ("message", "1-1", "x")]


def test_get_config_returns_every_type_decoded_by_the_schema(dev) -> None:
    client = Client(dev.url, schema_file=str(dev.schema_file))
    assert client.get_config("PRICE") == Decimal("1.10")
    assert str(client.get_config("PRICE")) == "1.10"
    dev.write({"SITE_NAME": "Acme", "FLAG": True, "COUNT": 7, "RATIO": 3, "PRICE": "12.500",
               "START": "2025-06-01", "AT": "2025-06-01T10:00:00+02:00", "OPENS": "08:30:00",
               "TTL": "5m", "META": [1, {"b": None}], "SIZE": "l"})
    want = {
        "SITE_NAME": "Acme", "FLAG": True, "COUNT": 7, "RATIO": 3.0, "PRICE": Decimal("12.500"),
        "START": date(2025, 6, 1),
        "AT": datetime(2025, 6, 1, 10, tzinfo=timezone(timedelta(hours=2))),
        "OPENS": time(8, 30), "TTL": timedelta(minutes=5), "META": [1, {"b": None}], "SIZE": "l",
    }
    for key, value in want.items():
        got = client.get_config(key)
        assert got == value and type(got) is type(value), (key, got)
    assert str(client.get_config("PRICE")) == "12.500"  # scale kept
    assert client.get_all()["TTL"] == timedelta(minutes=5)
    assert client.get_config("NO_SUCH_KEY", "dflt") == "dflt"


def test_module_level_get_config_reads_RTCONFIG_URL(dev, monkeypatch) -> None:
    monkeypatch.setenv("RTCONFIG_URL", dev.url)
    monkeypatch.setattr(rtconfig_client, "_default", None)
    dev.write({"SITE_NAME": "From env"})
    assert rtconfig_client.get_config("SITE_NAME") == "From env"
    assert rtconfig_client.default_client().url == dev.url


def test_falls_back_to_last_values_then_default_while_the_sidecar_is_away(dev) -> None:
    client = Client(dev.url, timeout=0.3)
    dev.write({"SITE_NAME": "Before"})
    assert client.get_config("SITE_NAME") == "Before"
    dev.stop()
    assert client.get_config("SITE_NAME", "dflt") == "Before"  # last value seen
    assert client.get_config("COUNT", 99) == 99  # never seen: the default
    dev.start()
    dev.write({"SITE_NAME": "After"})
    assert client.get_config("SITE_NAME") == "After"
    assert client.get_config("COUNT", 99) == 5


def test_watch_yields_snapshot_then_changes_and_resumes_after_a_restart(dev) -> None:
    client = Client(dev.url, schema_file=str(dev.schema_file))
    events = client.watch(reconnect_delay=0.2, read_timeout=10)
    first = next(events)
    assert first.event == "snapshot" and first.data["values"]["PRICE"] == Decimal("1.10")
    dev.write({"PRICE": "2.00"})
    change = next(events)
    assert change.event == "change" and change.data["changes"] == {"PRICE": Decimal("2.00")}
    assert change.id == f"{change.data['epoch']}-{change.data['version']}"
    dev.stop()
    dev.start()
    dev.write({"COUNT": 11})
    # After the cut the stream resumes from Last-Event-ID: whatever comes first, COUNT=11 comes.
    seen = []
    for ev in events:
        seen.append(ev)
        values = ev.data.get("values") or ev.data.get("changes") or {}
        if values.get("COUNT") == 11:
            break
    assert client._last_event_id is not None and seen


def test_background_thread_keeps_a_local_copy_and_survives_a_restart(dev) -> None:
    client = Client(dev.url, timeout=0.3, schema_file=str(dev.schema_file))
    client.start_background_refresh()
    try:
        eventually(lambda: client._fresh)
        dev.write({"TTL": "1h"})
        eventually(lambda: client.get_config("TTL") == timedelta(hours=1))
        dev.stop()
        assert client.get_config("TTL") == timedelta(hours=1)  # answered in process
        dev.start()
        dev.write({"TTL": "2h"})
        eventually(lambda: client.get_config("TTL") == timedelta(hours=2), timeout=15)
        dev.write({"TTL": None})  # reset to the default
        eventually(lambda: client.get_config("TTL") == timedelta(seconds=30), timeout=15)
    finally:
        client.stop_background_refresh()


def test_background_thread_restarts_in_a_forked_child(dev) -> None:
    client = Client(dev.url, timeout=0.3)
    client.start_background_refresh()
    eventually(lambda: client._fresh)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a gunicorn/Celery prefork worker
        try:
            ok = client._thread is not None and client._thread.is_alive()
            ok = ok and client._thread is not threading.main_thread()
            import time as _t
            deadline = _t.monotonic() + 10
            while _t.monotonic() < deadline and client.get_config("SITE_NAME") != "After fork":
                _t.sleep(0.05)
            ok = ok and client.get_config("SITE_NAME") == "After fork"
            os.write(write_fd, b"ok" if ok else b"no")
        finally:
            os._exit(0)
    os.close(write_fd)
    dev.write({"SITE_NAME": "After fork"})
    answer = os.read(read_fd, 2)
    os.waitpid(pid, 0)
    client.stop_background_refresh()
    assert answer == b"ok"
