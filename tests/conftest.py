"""Shared fixtures: a farm of real OpenSSH sshd servers, fleet configs, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pgserver
import ports
import pytest
import smtpserver
import sshd
from hypothesis import settings

from netmetrix.cli import main
from netmetrix.config import AlertRule
from netmetrix.configxml import (
    SMTP,
    SSH,
    Alert,
    Collector,
    ConfigXml,
    Host,
    Receiver,
    RemoteWrite,
    Web,
    render,
)
from netmetrix.model import Sample

# No per-example deadline: on this 2-core machine under load (averages of 20-40) a
# 200 ms deadline fails examples at random; speed is measured in bench/, not here.
settings.register_profile("netmetrix", deadline=None)
settings.load_profile("netmetrix")


@pytest.fixture(autouse=True)
def isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A fresh $HOME, so the user's ~/.ssh/config and known_hosts never leak into a test."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("NETMETRIX_CONFIG", raising=False)
    return home


@pytest.fixture(scope="session")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sshd.Farm]:
    """Three real sshd servers on 127.0.0.1: two with SFTP, the third without."""
    with sshd.farm(tmp_path_factory.mktemp("farm"), 3, sftp=(True, True, False)) as servers:
        yield servers


@pytest.fixture(scope="session")
def test_user(farm: sshd.Farm) -> sshd.User:
    """An unprivileged login user (``nmx-test``) that the farm accepts with its client key."""
    return sshd.ensure_user(farm)


@pytest.fixture
def user_dir(test_user: sshd.User) -> Iterator[Path]:
    """A fresh directory in the test user's home, owned by it; removed afterwards."""
    import secrets

    parent = test_user.make_dir(test_user.home / "t", 0o755)
    path = test_user.make_dir(parent / secrets.token_hex(6))
    try:
        yield path
    finally:
        sshd.remove_tree(path)


@dataclass
class Fleet:
    """A config.xml for hosts on the farm, in its own directory."""

    root: Path
    farm: sshd.Farm
    hosts: list[dict[str, str]]
    settings: dict[str, str]

    @property
    def config(self) -> Path:
        return self.root / "config.xml"

    @property
    def database(self) -> Path:
        return self.root / "netmetrix.db"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    def host(self, name: str, server: int = 0, **attrs: str) -> dict[str, str]:
        """Add a host on farm server ``server``; it gets its own remote directory."""
        entry = {
            "name": name,
            "address": "127.0.0.1",
            "port": str(self.farm.servers[server].port),
            "user": "root",
            "key": str(self.farm.client_key),
            "directory": str(self.root / "remote" / name),
            "python": sys.executable,
        }
        entry.update(attrs)
        self.hosts.append(entry)
        self.write()
        return entry

    def write(
        self,
        *,
        smtp: SMTP | None = None,
        alerts: Sequence[Alert] = (),
        digest_over: int | None = None,
        retention_days: int | None = None,
        web: Web | None = None,
        collector: Collector | None = None,
        remote_write: RemoteWrite | None = None,
        receivers: Sequence[Receiver] = (),
    ) -> Path:
        """Write config.xml for the hosts and settings, with these sections besides."""
        settings = self.settings
        config = ConfigXml(
            script="client.py",
            concurrency=settings.get("concurrency", "10"),
            database=settings.get("database", "netmetrix.db"),
            ssh=SSH(
                known_hosts="known_hosts",
                host_key_policy=settings.get("policy", "strict"),
                connect_timeout=settings.get("connect_timeout", "5"),
                command_timeout=settings.get("command_timeout", "20"),
            ),
            smtp=smtp,
            encryption=settings.get("encryption", "preferred"),
            retention_days=retention_days,
            web=web,
            collector=collector,
            remote_write=remote_write,
            hosts=[Host(**host) for host in self.hosts],
            receivers=receivers,
            alerts=alerts,
            digest_over=digest_over,
        )
        self.config.write_text(render(config))
        return self.config

    def remote_dir(self, name: str) -> Path:
        return self.root / "remote" / name

    def wrapper(self, name: str, body: str) -> str:
        """An executable shell script to use as a host's `python` (to fake a broken host)."""
        path = self.root / "bin" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text("#!/bin/sh\n" + body + "\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
        return str(path)


def line_of(path: Path, text: str) -> int:
    """The number of the one line of ``path`` that holds ``text`` (messages name lines)."""
    lines = path.read_text().splitlines()
    [number] = [number for number, line in enumerate(lines, start=1) if text in line]
    return number


@pytest.fixture
def fleet(farm: sshd.Farm, tmp_path: Path) -> Fleet:
    """An empty fleet whose known_hosts trusts every farm server."""
    result = Fleet(root=tmp_path, farm=farm, hosts=[], settings={})
    result.known_hosts.write_text(farm.known_hosts_text())
    return result


def rule(**overrides: Any) -> AlertRule:
    """An alert rule, ``cpu_percent > 20`` mailing ops@example.com unless overridden."""
    fields: dict[str, Any] = {
        "metric": "cpu_percent",
        "op": ">",
        "limit": 20.0,
        "email": ("ops@example.com",),
    }
    fields.update(overrides)
    return AlertRule(**fields)


def sample(metric: str, value: float, **labels: str) -> Sample:
    """A probe sample; labels as keyword arguments."""
    return Sample(metric=metric, labels=tuple(sorted(labels.items())), value=value)


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def netmetrix(capfd: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """Run the CLI in-process: ``netmetrix("--config", path, "execute") -> Run``."""

    def run(*args: str | os.PathLike[str]) -> Run:
        capfd.readouterr()
        code = main([os.fspath(a) for a in args])
        out, err = capfd.readouterr()
        return Run(code, out, err)

    return run


def sigint_default() -> None:
    """preexec_fn for a child the test interrupts: SIGINT as a terminal would deliver it.

    A shell starts background jobs (`make test &`, nohup, CI runners) with SIGINT
    ignored, children inherit that, and Python then never turns it into Ctrl-C.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Background:
    """A `netmetrix` command running in the background, its stderr read line by line."""

    def __init__(self, config: Path, *args: str) -> None:
        exe = Path(sys.executable).with_name("netmetrix")
        self.process = subprocess.Popen(
            [str(exe), "--config", str(config), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=sigint_default,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self.lines.append("")  # EOF
            self._changed.notify_all()

    @property
    def err(self) -> str:
        return "".join(self.lines)

    def wait_for(self, *texts: str, budget: float = 60.0) -> None:
        """Wait (bounded) until stderr holds every one of ``texts``."""
        deadline = time.monotonic() + budget
        with self._changed:
            while not all(text in self.err for text in texts):
                left = deadline - time.monotonic()
                assert left > 0, f"never logged {texts}:\n{self.err}"
                assert "" not in self.lines, f"netmetrix ended first:\n{self.err}"
                self._changed.wait(left)

    def interrupt(self) -> None:
        self.process.send_signal(signal.SIGINT)

    def finish(self, budget: float = 60.0) -> int:
        code = self.process.wait(timeout=budget)
        self._reader.join(budget)
        return code

    def stop(self) -> None:
        """Clean up, even when the test failed."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(10)
        assert self.process.stderr is not None
        self.process.stderr.close()


@pytest.fixture
def background() -> Iterator[Callable[..., Background]]:
    """Start ``netmetrix`` CLI processes in the background; each is stopped at the end."""
    started: list[Background] = []

    def start(config: Path, *args: str) -> Background:
        started.append(Background(config, *args))
        return started[-1]

    try:
        yield start
    finally:
        for process in started:
            process.stop()


class Served:
    """A running `netmetrix serve` and how to ask it things."""

    def __init__(self, process: Background, base: str, context: ssl.SSLContext | None = None):
        self.process = process
        self.base = base
        self.context = context

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
        """(status, parsed JSON or text, headers) of GET ``path``."""
        request = urllib.request.Request(self.base + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30, context=self.context) as answer:
                status, body, got = answer.status, answer.read(), answer.headers
        except urllib.error.HTTPError as exc:
            status, body, got = exc.code, exc.read(), exc.headers
        kind = got.get("content-type", "")
        return status, json.loads(body) if "json" in kind else body.decode(), got


@pytest.fixture
def serve(fleet: Fleet) -> Iterator[Callable[..., Served]]:
    """Start `netmetrix serve` on a free loopback port (``tls``: over HTTPS); stopped by PID."""
    started: list[Background] = []

    def start(*args: str, tls: ssl.SSLContext | None = None) -> Served:
        port = ports.free_port()
        process = Background(fleet.config, "serve", "--listen", f"127.0.0.1:{port}", *args)
        started.append(process)
        served = Served(process, f"{'https' if tls else 'http'}://127.0.0.1:{port}", tls)
        wait_up(served)
        return served

    try:
        yield start
    finally:
        for process in started:
            process.stop()


def wait_up(served: Served, budget: float = 60.0) -> None:
    deadline = time.monotonic() + budget
    while True:
        try:
            if served.get("/healthz")[0] == 200:
                return
        except OSError:
            pass
        assert served.process.process.poll() is None, f"serve ended:\n{served.process.err}"
        assert time.monotonic() < deadline, f"serve never answered:\n{served.process.err}"
        time.sleep(0.1)


def pytest_report_header() -> str:
    found = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else None)
    return f"sshd: {found or 'MISSING (run make system-deps)'}"


# ---------------------------------------------------------------- PostgreSQL (#4)


@pytest.fixture(scope="session")
def postgres() -> Iterator[pgserver.Postgres]:
    """A real PostgreSQL server on 127.0.0.1 (initdb in a temp dir), stopped by PID at the end."""
    with pgserver.server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL for an empty store: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/var/netmetrix.db"
        return
    server: pgserver.Postgres = request.getfixturevalue("postgres")
    name = server.create_database()
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


# ---------------------------------------------------------------- SMTP (#7)

SMTP_PASSWORD_ENV = "NMX_TEST_SMTP_PASSWORD"


@pytest.fixture(scope="session")
def smtp_tls(tmp_path_factory: pytest.TempPathFactory) -> smtpserver.TLSFiles:
    """A throwaway CA and a certificate for 127.0.0.1, made with `cryptography`."""
    return smtpserver.make_tls(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture
def smtp_servers(
    smtp_tls: smtpserver.TLSFiles, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., smtpserver.SMTPServer]]:
    """Start real SMTP servers: ``smtp_servers(security="starttls", user="u", password="p")``.

    Each listens on its own free 127.0.0.1 port and is running on return.
    Clients trust the test CA (SSL_CERT_FILE); a password is put in
    $NMX_TEST_SMTP_PASSWORD.  Every server is stopped at the end, even on failure.
    """
    import logging

    monkeypatch.setenv("SSL_CERT_FILE", str(smtp_tls.ca))
    # aiosmtpd 1.4 logs a deprecation warning of its own on every login
    monkeypatch.setattr(logging.getLogger("mail.log"), "disabled", True)
    started: list[smtpserver.SMTPServer] = []

    def start(
        security: str = "none", user: str | None = None, password: str | None = None
    ) -> smtpserver.SMTPServer:
        if password is not None:
            monkeypatch.setenv(SMTP_PASSWORD_ENV, password)
        server = smtpserver.SMTPServer(
            port=ports.free_port(), security=security, user=user, password=password, tls=smtp_tls
        )
        started.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def smtp(smtp_servers: Callable[..., smtpserver.SMTPServer]) -> smtpserver.SMTPServer:
    """A plain SMTP server on 127.0.0.1 (no TLS, no login), keeping every message."""
    return smtp_servers()
