"""A real Prometheus server receiving remote-write, for tests (#15).

Debian's /usr/bin/prometheus (``make system-deps``) on a loopback port with its
own TSDB directory and a minimal config, ``--web.enable-remote-write-receiver``;
optionally HTTPS and basic auth through its own ``--web.config.file``.  Started
by absolute path, waited for on ``/-/ready``, stopped by PID (terminate, then
kill), its log shown when it dies or a wait runs out.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

PROMETHEUS = Path("/usr/bin/prometheus")
BUDGET = 120.0  # seconds to start or to show samples, on a loaded 2-core machine


class Prometheus:
    """One Prometheus process; ``start`` it (again after ``stop``: same port and TSDB)."""

    def __init__(
        self,
        root: Path,
        port: int,
        *,
        tls: tuple[Path, Path, Path] | None = None,  # (ca, cert, key)
        users: dict[str, str] | None = None,  # basic auth: user -> password
    ) -> None:
        self.root = root
        self.port = port
        self.tls = tls
        self.users = users or {}
        scheme = "https" if tls else "http"
        self.base = f"{scheme}://127.0.0.1:{port}"
        self.write_url = f"{self.base}/api/v1/write"
        self.log = root / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)
        (root / "prometheus.yml").write_text("global:\n  scrape_interval: 1m\n")

    def start(self) -> Prometheus:
        args = [
            str(PROMETHEUS),
            f"--config.file={self.root / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.root / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-remote-write-receiver",
            "--log.level=warn",
        ]
        if self.tls or self.users:
            args.append(f"--web.config.file={self._web_config()}")
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, cwd=self.root
            )
        self.wait_ready()
        return self

    def _web_config(self) -> Path:
        import bcrypt  # paramiko's dependency, so the test extra has it

        lines = []
        if self.tls:
            _, cert, key = self.tls
            lines += ["tls_server_config:", f"  cert_file: {cert}", f"  key_file: {key}"]
        if self.users:
            lines.append("basic_auth_users:")
            for user, password in self.users.items():
                hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
                lines.append(f"  {user}: '{hashed}'")
        path = self.root / "web.yml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def stop(self) -> None:
        """Stop it (by PID), even when a test failed; a no-op when not running."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)

    def get(self, path: str) -> Any:
        headers = {}
        if self.users:
            user, password = next(iter(self.users.items()))
            pair = base64.b64encode(f"{user}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {pair}"
        context = ssl.create_default_context(cafile=str(self.tls[0])) if self.tls else None
        request = urllib.request.Request(self.base + path, headers=headers)
        with urllib.request.urlopen(request, timeout=30, context=context) as answer:
            text = answer.read().decode()
        return json.loads(text) if path.startswith("/api/") else text

    def wait_ready(self) -> None:
        deadline = time.monotonic() + BUDGET
        while True:
            try:
                self.get("/-/ready")
                return
            except (OSError, urllib.error.URLError):
                pass
            self._check_alive()
            assert time.monotonic() < deadline, f"prometheus never ready:\n{self.log_text()}"
            time.sleep(0.2)

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = self.get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def samples(self, expr: str) -> dict[tuple[tuple[str, str], ...], list[tuple[int, float]]]:
        """Every raw sample of the range selector ``expr`` (``name{...}[1h]``): sorted
        labels -> [(ts_ms, value)], as stored, oldest first."""
        return {
            tuple(sorted(series["metric"].items())): [
                (round(float(ts) * 1000), float(value)) for ts, value in series["values"]
            ]
            for series in self.query(expr)
        }

    def wait_for(self, expr: str, done: Any, what: str) -> list[dict[str, Any]]:
        """Poll ``expr`` (bounded) until ``done(result)`` holds."""
        deadline = time.monotonic() + BUDGET
        while True:
            found = self.query(expr)
            if done(found):
                return found
            self._check_alive()
            assert time.monotonic() < deadline, f"{what}: {expr} gave {found}\n{self.log_text()}"
            time.sleep(0.5)

    def _check_alive(self) -> None:
        assert self.process is not None, "never started"
        assert self.process.poll() is None, f"prometheus ended:\n{self.log_text()}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
