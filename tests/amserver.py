"""A real Alertmanager for tests (#16), modelled on promserver.py.

Debian's /usr/bin/prometheus-alertmanager (``make system-deps``) on a loopback
port, with a minimal config written here, its storage in the test's directory
and clustering off (``--cluster.listen-address=``).  Started by absolute path,
waited for on ``/-/ready``, stopped by PID (terminate, then kill), its log shown
when it dies or a wait runs out.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ALERTMANAGER = Path("/usr/bin/prometheus-alertmanager")
BUDGET = 120.0  # seconds to start or to show an alert, on a loaded 2-core machine

CONFIG = """\
route:
  receiver: nobody
  group_wait: 1h
receivers:
  - name: nobody
"""


class Alertmanager:
    """One Alertmanager process: ``start`` it, ``stop`` it (also when a test failed)."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = root / "alertmanager.log"
        self.process: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)
        (root / "alertmanager.yml").write_text(CONFIG)

    def start(self) -> Alertmanager:
        args = [
            str(ALERTMANAGER),
            f"--config.file={self.root / 'alertmanager.yml'}",
            f"--storage.path={self.root / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, cwd=self.root
            )
        self.wait_ready()
        return self

    def stop(self) -> None:
        """Stop it (by PID); a no-op when not running."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=30) as answer:
            text = answer.read().decode()
        return json.loads(text) if path.startswith("/api/") else text

    def alerts(self) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts``: the alerts it holds that have not ended."""
        found: list[dict[str, Any]] = self.get("/api/v2/alerts")
        return found

    def wait_ready(self) -> None:
        deadline = time.monotonic() + BUDGET
        while True:
            try:
                self.get("/-/ready")
                return
            except (OSError, urllib.error.URLError):
                pass
            self._check_alive()
            assert time.monotonic() < deadline, f"alertmanager never ready:\n{self.log_text()}"
            time.sleep(0.2)

    def wait_for(
        self, done: Callable[[list[dict[str, Any]]], bool], what: str
    ) -> list[dict[str, Any]]:
        """Poll its alerts (bounded) until ``done(alerts)`` holds."""
        deadline = time.monotonic() + BUDGET
        while True:
            found = self.alerts()
            if done(found):
                return found
            self._check_alive()
            assert time.monotonic() < deadline, f"{what}: got {found}\n{self.log_text()}"
            time.sleep(0.3)

    def _check_alive(self) -> None:
        assert self.process is not None, "never started"
        assert self.process.poll() is None, f"alertmanager ended:\n{self.log_text()}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
