"""Shared fixtures: a farm of real OpenSSH sshd servers, fleet configs, the CLI."""

from __future__ import annotations

import os
import shutil
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pytest
import sshd

from netmetrix.cli import main


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

    def write(self, extra: str = "") -> Path:
        ssh = self.settings
        host_lines = "".join(
            "    <host " + " ".join(f"{k}={quoteattr(v)}" for k, v in h.items()) + "/>\n"
            for h in self.hosts
        )
        self.config.write_text(
            "<netmetrix>\n"
            f"  <script>client.py</script>\n"
            f"  <concurrency>{ssh.get('concurrency', '10')}</concurrency>\n"
            f"  <database>netmetrix.db</database>\n"
            f'  <ssh known_hosts="known_hosts" host_key_policy="{ssh.get("policy", "strict")}"'
            f' connect_timeout="{ssh.get("connect_timeout", "5")}"'
            f' command_timeout="{ssh.get("command_timeout", "20")}"/>\n'
            f'  <security encryption="{ssh.get("encryption", "preferred")}"/>\n'
            f"  <hosts>\n{host_lines}  </hosts>\n"
            f"{extra}"
            "</netmetrix>\n"
        )
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


@pytest.fixture
def fleet(farm: sshd.Farm, tmp_path: Path) -> Fleet:
    """An empty fleet whose known_hosts trusts every farm server."""
    result = Fleet(root=tmp_path, farm=farm, hosts=[], settings={})
    result.known_hosts.write_text(farm.known_hosts_text())
    return result


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def netmetrix(capfd: pytest.CaptureFixture[str]) -> object:
    """Run the CLI in-process: ``netmetrix("--config", path, "execute") -> Run``."""

    def run(*args: str | os.PathLike[str]) -> Run:
        capfd.readouterr()
        code = main([os.fspath(a) for a in args])
        out, err = capfd.readouterr()
        return Run(code, out, err)

    return run


def pytest_report_header() -> str:
    found = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else None)
    return f"sshd: {found or 'MISSING (run make system-deps)'}"
