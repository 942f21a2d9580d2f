"""Fixtures: a real `rtconfig dev` (embedded ledger, free loopback ports, its own data dir)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[3]
BIN = os.environ.get("RTCONFIG_BIN", str(REPO / "target" / "debug" / "rtconfig"))

SCHEMA = """
namespace = "py"

[[group]]
name = "All"
keys = ["SITE_NAME", "FLAG", "COUNT", "RATIO", "PRICE", "START", "AT", "OPENS", "TTL", "META", "SIZE"]

[keys.SITE_NAME]
type = "string"
default = "Config Manager"

[keys.FLAG]
type = "bool"
default = false

[keys.COUNT]
type = "int"
default = 5

[keys.RATIO]
type = "float"
default = 2.5

[keys.PRICE]
type = "decimal"
default = "1.10"

[keys.START]
type = "date"
default = "2024-01-02"

[keys.AT]
type = "datetime"
default = "2024-01-02T03:04:05+00:00"

[keys.OPENS]
type = "time"
default = "03:04:05"

[keys.TTL]
type = "duration"
default = "30s"

[keys.META]
type = "json"
default = {"a" = [1, 2]}

[keys.SIZE]
type = "enum"
default = "s"
choices = ["s", "l"]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Dev:
    """One `rtconfig dev` process; `stop()` and `start()` keep its ports and data dir."""

    def __init__(self, root: Path) -> None:
        self.schema_dir = root / "schema"
        self.schema_dir.mkdir()
        self.schema_file = self.schema_dir / "py.toml"
        self.schema_file.write_text(SCHEMA)
        self.data_dir = root / "data"
        self.port, self.admin_port, self.probe_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin = f"http://127.0.0.1:{self.admin_port}"
        self.proc: Optional[subprocess.Popen] = None
        self.log = root / "dev.log"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RTCONFIG_")}
        env["RUST_LOG"] = "warn"
        self.proc = subprocess.Popen(
            [BIN, "dev", "--schema-dir", str(self.schema_dir), "--data-dir", str(self.data_dir),
             "--namespace", "py", "--listen", f"127.0.0.1:{self.port}",
             "--admin-listen", f"127.0.0.1:{self.admin_port}",
             "--probe-listen", f"127.0.0.1:{self.probe_port}"],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, env=env,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/v1/configs", timeout=1).read()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"rtconfig dev exited: {self.log.read_text()}")
                time.sleep(0.1)
        raise RuntimeError(f"rtconfig dev did not answer: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
            self.proc = None

    def write(self, changes: Dict[str, Any], comment: str = "pytest") -> int:
        token = (self.data_dir / "dev-token").read_text().strip()
        req = urllib.request.Request(
            self.admin + "/api/v1/namespaces/py/configs", method="PATCH",
            data=json.dumps({"changes": changes, "comment": comment}).encode(),
            headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(json.loads(resp.read())["version"])


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Dev]:
    d = Dev(tmp_path)
    d.start()
    try:
        yield d
    finally:
        d.stop()


def eventually(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    last: List[Any] = [None]
    while time.monotonic() < deadline:
        last[0] = check()
        if last[0]:
            return last[0]
        time.sleep(0.05)
    raise AssertionError(f"not true within {timeout}s: last {last[0]!r}")
